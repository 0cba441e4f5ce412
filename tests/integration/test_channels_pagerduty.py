"""The PagerDuty channel against a loopback Events API v2 that checks each event.

One group's life (trigger, update, acknowledge, resolve) must reach PagerDuty as
valid events sharing one dedup_key; PagerDuty's refusals and overloads must come back
as final or retryable failures.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from monitoring.notify.channels.http import retry_after_ms
from monitoring.notify.channels.pagerduty import PagerDutyChannel, dedup_key
from monitoring.notify.model import DeliveryResult, Message
from tests.support.channel_messages import GROUP, context, cpu_alert, message, send_all
from tests.support.loopback import LoopbackReceiver

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
PATH = "/pagerduty/v2/enqueue"


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as r:
        yield r


def send(settings: dict[str, Any], messages: Sequence[Message]) -> list[DeliveryResult]:
    return send_all(PagerDutyChannel("pd", settings, context()), messages)


def test_group_lifecycle_shares_one_dedup_key(receiver: LoopbackReceiver,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PD_KEY", ROUTING_KEY)
    settings = {"routing_key": "${PD_KEY}", "url": receiver.url(PATH), "source": "prod-eu"}
    msgs = [message(cpu_alert("web-1"), channel="pd"),
            message(cpu_alert("web-1"), cpu_alert("web-2"), channel="pd", kind="repeat"),
            message(cpu_alert("web-1"), channel="pd", kind="acknowledged"),
            message(cpu_alert("web-1", resolved=True), cpu_alert("web-2", resolved=True),
                    channel="pd", kind="resolved")]
    results = send(settings, msgs)
    key = dedup_key("pd", GROUP)
    assert [(r.ok, r.detail, r.remote_id) for r in results] == [
        (True, "trigger accepted", key), (True, "trigger accepted", key),
        (True, "acknowledge accepted", key), (True, "resolve accepted", key)]
    assert receiver.problems == []
    events = [r.json for r in receiver.requests(PATH)]
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "acknowledge",
                                                  "resolve"]
    assert {e["dedup_key"] for e in events} == {key}
    assert {e["routing_key"] for e in events} == {ROUTING_KEY}
    update = events[1]["payload"]
    assert update["source"] == "prod-eu"
    assert update["severity"] == "critical"
    assert update["summary"] == \
        "[FIRING:2] (still firing) HighCPU (severity=critical team=<ops & infra>)"
    assert update["custom_details"]["kind"] == "repeat"
    assert [a["labels"]["instance"] for a in update["custom_details"]["alerts"]] == \
        ["web-1", "web-2"]
    assert events[1]["client"] == "monitoring-system"


def test_invalid_event_is_final_with_pagerduty_errors(receiver: LoopbackReceiver) -> None:
    [result] = send({"routing_key": "too-short", "url": receiver.url(PATH)}, [message()])
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == ("HTTP 400 Event object is invalid: "
                             "routing_key: must be a 32-character integration key")


def test_overload_and_outage_are_retryable(receiver: LoopbackReceiver) -> None:
    receiver.fail(PATH, 429, retry_after="60", body='{"status": "throttled"}')
    receiver.fail(PATH, 500, body="oops")
    settings = {"routing_key": ROUTING_KEY, "url": receiver.url(PATH)}
    throttled, broken = send(settings, [message(), message()])
    assert (throttled.ok, throttled.retryable, retry_after_ms(throttled)) == (False, True, 60_000)
    assert (broken.ok, broken.retryable, broken.detail) == (
        False, True, "HTTP 500 Internal Server Error: oops")
    assert len(receiver.requests(PATH)) == 2  # PagerDuty: no in-channel retries by default


def test_routing_key_never_appears_in_a_detail(receiver: LoopbackReceiver) -> None:
    receiver.fail(PATH, 400, body=f'{{"status": "invalid", "message": "bad key {ROUTING_KEY}"}}')
    [result] = send({"routing_key": ROUTING_KEY, "url": receiver.url(PATH)}, [message()])
    assert ROUTING_KEY not in result.detail
    assert result.detail == 'HTTP 400 Bad Request: {"status": "invalid", "message": "bad key ***"}'


def test_escalation_episode_continues_the_paged_incident(receiver: LoopbackReceiver) -> None:
    alert = cpu_alert("web-1")
    other = cpu_alert("db-1")
    episode = f"escalation/critical_alerts/{alert.fingerprint}/{alert.starts_at_ms}"
    lone = f"escalation/critical_alerts/{other.fingerprint}/{other.starts_at_ms}"
    msgs = [message(alert, channel="pd"),
            message(alert, channel="pd", kind="escalation", stage=1, group_key=episode),
            message(alert, channel="pd", kind="acknowledged", group_key=episode),
            message(alert.resolved(alert.starts_at_ms + 60_000), channel="pd", kind="resolved",
                    group_key=episode),
            message(other, channel="pd", kind="escalation", stage=1, group_key=lone)]
    results = send({"routing_key": ROUTING_KEY, "url": receiver.url(PATH)}, msgs)
    assert all(r.ok for r in results) and receiver.problems == []
    events = [(e["event_action"], e["dedup_key"]) for e in
              (r.json for r in receiver.requests(PATH))]
    paged = dedup_key("pd", GROUP)
    assert events == [("trigger", paged), ("trigger", paged), ("acknowledge", paged),
                      ("resolve", paged), ("trigger", dedup_key("pd", lone))]
