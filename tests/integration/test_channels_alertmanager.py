"""The Alertmanager channel: against a loopback API, and through a REAL Alertmanager.

The real test starts the Debian ``prometheus-alertmanager`` on free ports with
clustering off and a webhook receiver pointing at a loopback receiver: our alert,
posted by :class:`AlertmanagerChannel`, must come out of Alertmanager's webhook with
our labels and annotations, then its resolution. Alertmanager's own webhook payloads
also pass our v4 validator, which shows that validator describes the real format.
Under CI=true a missing Alertmanager fails the test instead of skipping it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from monitoring.notify.channels.alertmanager import AlertmanagerChannel
from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.model import Alert, DeliveryResult, Message, SystemClock
from tests.support.alertmanager import AlertmanagerServer, require_alertmanager
from tests.support.channel_messages import EXTERNAL_URL, context, cpu_alert, message, send_all
from tests.support.loopback import LoopbackReceiver, Received
from tests.support.prometheus import peer

AM_HOOK = "/alertmanager-webhook"


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver() as r:
        yield r


def send(url: str, msg: Message, ctx: ChannelContext | None = None) -> DeliveryResult:
    channel = AlertmanagerChannel("am", {"url": url, "alert_ttl": "2h"}, ctx or context())
    return send_all(channel, [msg])[0]


def test_posts_postable_alerts(receiver: LoopbackReceiver) -> None:
    msg = message(cpu_alert("web-1"), cpu_alert("web-2", resolved=True), channel="am")
    result = send(receiver.base_url + "/", msg)
    assert result == DeliveryResult(True, False, "2 alert(s) posted")
    assert receiver.problems == []
    [req] = receiver.requests("/api/v2/alerts")
    firing, resolved = req.json
    assert firing["labels"] == dict(msg.alerts[0].labels)
    assert firing["annotations"]["summary"] == "CPU above 90% on web-1"
    assert (firing["startsAt"], firing["endsAt"]) == ("2026-01-01T00:00:00Z",
                                                      "2026-01-01T02:01:00Z")
    assert resolved["endsAt"] == "2026-01-01T00:10:00Z"
    assert firing["generatorURL"] == "https://git.example.org/rules/cpu.yaml#L3"


def test_acknowledgement_sends_nothing(receiver: LoopbackReceiver) -> None:
    result = send(receiver.base_url, message(kind="acknowledged"))
    assert result == DeliveryResult(True, False,
                                    "not sent: Alertmanager has no acknowledgements")
    assert receiver.requests() == []


def test_rejected_alerts_are_final(receiver: LoopbackReceiver) -> None:
    receiver.fail("/api/v2/alerts", 400, body='"start time must be before end time"')
    result = send(receiver.base_url, message())
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == 'HTTP 400 Bad Request: "start time must be before end time"'


@pytest.fixture
def alertmanager(tmp_path: Path, receiver: LoopbackReceiver) -> Iterator[AlertmanagerServer]:
    peer(require_alertmanager)
    with AlertmanagerServer(tmp_path / "am", receiver.url(AM_HOOK)) as server:
        yield server


def _with_status(status: str) -> Callable[[Received], bool]:
    def match(r: Received) -> bool:
        return bool(r.json.get("status") == status)
    return match


def test_real_alertmanager_receives_our_alert_and_its_resolution(
        alertmanager: AlertmanagerServer, receiver: LoopbackReceiver) -> None:
    clock = SystemClock()
    now = clock.now_ms()
    alert = Alert({"alertname": "ChannelTestCPU", "severity": "critical", "instance": "web-1",
                   "team": "ops"},
                  {"summary": "CPU above 90% on web-1",
                   "runbook_url": "https://runbooks.example.org/cpu"},
                  "firing", now - 60_000, None, 0.97, "ChannelTestCPU")
    ctx = ChannelContext(clock=clock, external_url=EXTERNAL_URL)
    fired = send(alertmanager.url, message(alert, channel="am", created_ms=now), ctx)
    assert fired.ok, fired.detail
    [got] = receiver.wait_for(AM_HOOK, where=_with_status("firing"))
    payload = got.json
    assert payload["receiver"] == "loopback"
    [am_alert] = payload["alerts"]
    assert am_alert["labels"] == dict(alert.labels)
    assert am_alert["annotations"] == dict(alert.annotations)
    assert am_alert["status"] == "firing"
    assert am_alert["generatorURL"] == f"{EXTERNAL_URL}/api/v1/alerts/{alert.fingerprint}"

    resolved = alert.resolved(clock.now_ms())
    done = send(alertmanager.url, message(resolved, channel="am", kind="resolved",
                                          created_ms=clock.now_ms()), ctx)
    assert done.ok, done.detail
    [back] = receiver.wait_for(AM_HOOK, where=_with_status("resolved"))
    [am_resolved] = back.json["alerts"]
    assert am_resolved["status"] == "resolved"
    assert am_resolved["labels"] == dict(alert.labels)
    assert epoch_ms(am_resolved["endsAt"]) == resolved.ends_at_ms
    assert epoch_ms(am_resolved["startsAt"]) == alert.starts_at_ms
    assert receiver.problems == []  # Alertmanager's own payloads pass our v4 validator


def epoch_ms(rfc3339: str) -> int:
    """Alertmanager's time stamps (Go RFC 3339 with nanoseconds) in epoch milliseconds."""
    when = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return round(when.timestamp() * 1000)
