"""The HTTP channels' pure parts: reply mapping, settings, and payloads against the formats.

Payloads are checked with the same validators the loopback receivers use
(tests/support/loopback.py); the validators themselves are shown to reject broken
payloads, so a passing payload check means something.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.notify.channels.alertmanager import AlertmanagerChannel, postable_alert
from monitoring.notify.channels.http import (
    Reply,
    SettingError,
    exception_result,
    parse_retry_after,
    retry_after_ms,
    status_result,
    timeout_seconds,
)
from monitoring.notify.channels.pagerduty import (
    PagerDutyChannel,
    dedup_key,
    event_action,
    pagerduty_severity,
)
from monitoring.notify.channels.registry import ChannelConfigError, build_channel
from monitoring.notify.channels.slack import SlackChannel, slack_blocks
from monitoring.notify.channels.webhook import WebhookChannel, sign, verify, webhook_payload
from monitoring.notify.model import Alert, DeliveryResult, Message
from tests.support.channel_messages import EXTERNAL_URL, T0, context, cpu_alert, message
from tests.support.loopback import (
    pagerduty_problems,
    postable_alerts_problems,
    slack_block_problems,
    slack_message_problems,
    webhook_v4_problems,
)

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"


# ---------------------------------------------------------------- reply mapping


@pytest.mark.parametrize(("status", "ok", "retryable"), [
    (200, True, False), (202, True, False), (204, True, False),
    (400, False, False), (401, False, False), (403, False, False), (404, False, False),
    (410, False, False), (413, False, False),
    (408, False, True), (429, False, True),
    (500, False, True), (502, False, True), (503, False, True), (504, False, True),
])
def test_status_mapping(status: int, ok: bool, retryable: bool) -> None:
    result = status_result(Reply(status, "Reason", "body text"))
    assert (result.ok, result.retryable) == (ok, retryable)
    if not ok:
        assert result.detail == f"HTTP {status} Reason: body text"


def test_retry_after_is_kept_in_the_detail() -> None:
    result = status_result(Reply(429, "Too Many Requests", "slow down", 30_000))
    assert result.retryable
    assert retry_after_ms(result) == 30_000
    assert "retry after 30s" in result.detail
    assert retry_after_ms(status_result(Reply(503, "Service Unavailable", ""))) is None


def test_parse_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("120", T0) == 120_000
    date = format_datetime(datetime.fromtimestamp(T0 / 1000 + 45, tz=UTC), usegmt=True)
    assert parse_retry_after(date, T0) == 45_000
    past = format_datetime(datetime.fromtimestamp(T0 / 1000 - 45, tz=UTC), usegmt=True)
    assert parse_retry_after(past, T0) == 0
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None


def test_exception_results() -> None:
    timeout = exception_result(aiohttp.ServerTimeoutError("read timed out"), 2.5)
    assert (timeout.ok, timeout.retryable) == (False, True)
    assert timeout.detail == "timed out after 2.5s"
    refused = exception_result(
        aiohttp.ClientConnectionError("[Errno 111] Connection refused"), 10)
    assert refused.retryable
    assert refused.detail == "connection error: [Errno 111] Connection refused"
    bad = exception_result(aiohttp.InvalidURL("no-protocol"), 10)
    assert (bad.ok, bad.retryable) == (False, False)


@pytest.mark.parametrize(("value", "seconds"), [
    (None, 10.0), (5, 5.0), ("2.5", 2.5), ("1m30s", 90.0), ("500ms", 0.5)])
def test_timeout_setting(value: object, seconds: float) -> None:
    assert timeout_seconds(value) == seconds


@pytest.mark.parametrize(("value", "message"), [
    ("soon", "'timeout': invalid duration 'soon'"),
    (0, "'timeout': must be positive, got 0"),
    (True, "'timeout': expected seconds or a duration such as 10s"),
])
def test_bad_timeout_names_the_setting(value: object, message: str) -> None:
    with pytest.raises(SettingError) as err:
        timeout_seconds(value)
    assert str(err.value).startswith(message)


def test_constructors_reject_missing_settings() -> None:
    with pytest.raises(ChannelConfigError, match=r"^channel 'hook': 'url' is required$"):
        build_channel("hook", "webhook", {}, context())
    with pytest.raises(SettingError, match=r"^'url' is required$"):
        WebhookChannel("hook", {}, context())
    with pytest.raises(SettingError, match="may not set idempotency-key"):
        WebhookChannel("hook", {"url": "http://x", "headers": {"idempotency-key": "1"}},
                       context())
    with pytest.raises(SettingError, match=r"^'webhook_url' \(incoming webhook\) or 'bot_token'"):
        SlackChannel("chat", {"channel": "#a"}, context())
    with pytest.raises(SettingError, match="'routing_key' is required"):
        PagerDutyChannel("pd", {}, context())
    with pytest.raises(SettingError, match=r"^'alert_ttl': invalid duration 'forever'"):
        AlertmanagerChannel("am", {"url": "http://x", "alert_ttl": "forever"}, context())


def test_missing_secret_is_a_final_failure_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PD_ROUTING_KEY", raising=False)
    monkeypatch.delenv("PD_ROUTING_KEY_FILE", raising=False)
    channel = PagerDutyChannel("pd", {"routing_key": "${PD_ROUTING_KEY}",
                                      "url": "http://127.0.0.1:9/unused"}, context())
    result = asyncio.run(channel.send(message()))
    assert (result.ok, result.retryable) == (False, False)
    assert "secret ${PD_ROUTING_KEY}: environment variable PD_ROUTING_KEY is not set" \
        in result.detail


# ---------------------------------------------------------------- PagerDuty


def test_dedup_key_is_stable_per_channel_and_group() -> None:
    key = dedup_key("pd", '{}:{alertname="HighCPU"}')
    assert key == dedup_key("pd", '{}:{alertname="HighCPU"}')
    assert key != dedup_key("pd2", '{}:{alertname="HighCPU"}')
    assert key != dedup_key("pd", '{}:{alertname="DiskFull"}')
    assert key.startswith("monitoring-") and len(key) == 59
    assert "HighCPU" not in key


@pytest.mark.parametrize(("label", "severity"), [
    ("critical", "critical"), ("page", "critical"), ("CRITICAL", "critical"),
    ("error", "error"), ("high", "error"), ("warning", "warning"), ("warn", "warning"),
    ("info", "info"), ("low", "info"), ("", "error"), ("whatever", "error")])
def test_severity_mapping(label: str, severity: str) -> None:
    assert pagerduty_severity(label) == severity


def test_event_actions_by_kind() -> None:
    assert event_action(message()) == "trigger"
    assert event_action(message(kind="repeat")) == "trigger"
    assert event_action(message(kind="escalation", stage=2)) == "trigger"
    assert event_action(message(kind="acknowledged")) == "acknowledge"
    assert event_action(message(cpu_alert(resolved=True), kind="resolved")) == "resolve"
    mixed = message(cpu_alert("a"), cpu_alert("b", resolved=True))
    assert event_action(mixed) == "trigger"


def test_pagerduty_trigger_event_is_valid_and_complete() -> None:
    channel = PagerDutyChannel("pd", {"routing_key": ROUTING_KEY}, context())
    msg = message(cpu_alert("web-1"), cpu_alert("web-2", severity="warning"), channel="pd")
    event = channel.event(msg)
    assert pagerduty_problems(event) == []
    payload = event["payload"]
    assert payload["severity"] == "critical"  # the most severe of the alerts
    assert payload["summary"].startswith("[FIRING:2] HighCPU")
    assert payload["source"] == "monitoring-system"  # no common instance or job
    assert payload["timestamp"] == "2026-01-01T00:00:00Z"
    assert payload["class"] == "HighCPU"
    details = payload["custom_details"]
    assert (details["message_id"], details["firing"], details["resolved"]) == (msg.id, 2, 0)
    assert details["alerts"][0]["value"] == "0.9734"
    assert event["links"][0] == {"href": f"{EXTERNAL_URL}/api/v1/alerts/"
                                          f"{msg.alerts[0].fingerprint}",
                                 "text": f"HighCPU ({msg.alerts[0].fingerprint})"}
    assert {"href": "https://runbooks.example.org/cpu", "text": "Runbook: HighCPU"} \
        in event["links"]
    assert event["dedup_key"] == dedup_key("pd", msg.group_key)


def test_pagerduty_summary_is_cut_to_1024_characters() -> None:
    long = Alert({"alertname": "Long", "instance": "i"}, {"summary": "x" * 5000}, "firing", T0)
    event = PagerDutyChannel("pd", {"routing_key": ROUTING_KEY}, context()).event(
        message(long))
    assert len(event["payload"]["summary"]) == 1024
    assert event["payload"]["summary"].endswith("…")
    assert event["payload"]["source"] == "i"
    assert pagerduty_problems(event) == []


def test_pagerduty_acknowledge_and_resolve_carry_no_payload() -> None:
    channel = PagerDutyChannel("pd", {"routing_key": ROUTING_KEY}, context())
    for msg, action in ((message(kind="acknowledged"), "acknowledge"),
                        (message(cpu_alert(resolved=True), kind="resolved"), "resolve")):
        event = channel.event(msg)
        assert event == {"routing_key": ROUTING_KEY, "event_action": action,
                         "dedup_key": dedup_key("pd", msg.group_key)}
        assert pagerduty_problems(event) == []


def test_pagerduty_validator_rejects_broken_events() -> None:
    event = PagerDutyChannel("pd", {"routing_key": ROUTING_KEY}, context()).event(message())
    event["payload"]["severity"] = "fatal"
    event["routing_key"] = "short"
    problems = pagerduty_problems(event)
    assert "routing_key: must be a 32-character integration key" in problems
    assert any(p.startswith("payload.severity: 'fatal'") for p in problems)
    assert pagerduty_problems({"routing_key": ROUTING_KEY, "event_action": "resolve"}) == \
        ["dedup_key: required for resolve"]


# ---------------------------------------------------------------- Slack


def test_slack_blocks_layout() -> None:
    msg = message(cpu_alert("web-1"), cpu_alert("web-2", resolved=True), kind="escalation",
                  stage=2, policy="critical_alerts", person="alice")
    blocks = slack_blocks(msg, EXTERNAL_URL)
    assert slack_block_problems(blocks) == []
    assert [b["type"] for b in blocks] == ["header", "section", "actions", "section",
                                           "actions", "context"]
    assert blocks[0]["text"]["text"].startswith(":arrow_double_up: [ESCALATION stage 2]")
    section = blocks[1]
    assert section["text"]["text"].startswith(":red_circle: *HighCPU* - CPU above 90% on web-1")
    fields = [f["text"] for f in section["fields"]]
    assert "*team*\n&lt;ops &amp; infra&gt;" in fields
    assert "*Value*\n0.9734" in fields
    buttons = blocks[2]["elements"]
    fp = msg.firing[0].fingerprint
    assert [(b["text"]["text"], b["url"]) for b in buttons] == [
        ("View alert", f"{EXTERNAL_URL}/api/v1/alerts/{fp}"),
        ("Runbook", "https://runbooks.example.org/cpu"),
        ("Source", "https://git.example.org/rules/cpu.yaml#L3")]
    assert blocks[3]["text"]["text"].startswith(":large_green_circle:")
    notes = [e["text"] for e in blocks[-1]["elements"]]
    assert notes == ["escalation stage 2 of critical_alerts", "on call: alice",
                     f"escalation - message `{msg.id}`"]


def test_slack_blocks_of_a_large_group_stay_within_limits() -> None:
    alerts = [cpu_alert(f"web-{i}") for i in range(40)]
    blocks = slack_blocks(message(*alerts), EXTERNAL_URL)
    assert slack_block_problems(blocks) == []
    assert len(blocks) == 1 + 2 * 10 + 1
    assert blocks[-1]["elements"][0]["text"] == "and 30 more alert(s)"


_text = st.text(max_size=3000)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True),
                                          _text, max_size=15),
                          _text, _text, st.booleans()), min_size=1, max_size=14),
       st.sampled_from(["firing", "resolved", "repeat", "escalation", "acknowledged", "test"]))
def test_slack_blocks_are_valid_for_any_alerts(
        specs: list[tuple[dict[str, str], str, str, bool]], kind: str) -> None:
    alerts = []
    for labels, summary, runbook, resolved in specs:
        a = Alert({"alertname": "A", **labels}, {"summary": summary, "runbook_url": runbook},
                  "firing", T0, None, 1.5)
        alerts.append(a.resolved(T0 + 1) if resolved else a)
    msg = message(*alerts, kind=kind)
    blocks = slack_blocks(msg, EXTERNAL_URL)
    assert slack_block_problems(blocks) == []
    channel = SlackChannel("s", {"webhook_url": "http://x"}, context())
    assert slack_message_problems(channel.payload(msg), api=False) == []


def test_slack_validator_rejects_broken_blocks() -> None:
    blocks = slack_blocks(message(), EXTERNAL_URL)
    blocks[0]["text"]["text"] = "h" * 151
    blocks[2]["elements"].append(dict(blocks[2]["elements"][0]))
    problems = slack_block_problems(blocks)
    assert "blocks[0].text.text: 151 characters, limit 150" in problems
    assert "blocks[2].elements[3].action_id: must be unique, at most 255 characters" in problems
    assert slack_block_problems([{"type": "divider"}] * 51) == \
        ["blocks: 51 blocks, limit 50"]
    assert slack_message_problems({"blocks": blocks[:1], "thread_ts": "abc"}, api=True)[:1] \
        == ["channel: required"]


# ---------------------------------------------------------------- webhook, Alertmanager


def test_hmac_signature_known_vector() -> None:
    body = b"The quick brown fox jumps over the lazy dog"
    assert sign("key", body) == ("sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479"
                                 "dbc2d1a3cd8")
    assert verify("key", body, sign("key", body))
    assert not verify("key", body + b" ", sign("key", body))
    assert not verify("other", body, sign("key", body))


def test_webhook_payload_is_alertmanager_v4_plus_message_id() -> None:
    msg = message(cpu_alert("web-1"), cpu_alert("web-2", resolved=True), kind="escalation",
                  stage=1, policy="critical_alerts", person="alice")
    payload = webhook_payload(msg, "hook", context())
    assert webhook_v4_problems(payload, extensions=True) == []
    assert webhook_v4_problems(payload, extensions=False) == [
        "unknown fields ['kind', 'message_id', 'person', 'policy', 'stage']"]
    assert payload["status"] == "firing"
    assert payload["commonLabels"] == {"alertname": "HighCPU", "severity": "critical",
                                       "team": "<ops & infra>"}
    first, second = payload["alerts"]
    assert first["endsAt"] == "0001-01-01T00:00:00Z"
    assert second["endsAt"] == "2026-01-01T00:10:00Z"
    assert (first["fingerprint"], payload["message_id"]) == (msg.alerts[0].fingerprint, msg.id)
    assert first["generatorURL"] == "https://git.example.org/rules/cpu.yaml#L3"
    del payload["alerts"][0]["startsAt"]
    assert webhook_v4_problems(payload, extensions=True) == [
        "alerts[0]: expected exactly ['annotations', 'endsAt', 'fingerprint', 'generatorURL', "
        "'labels', 'startsAt', 'status']"]


def test_postable_alert_ends() -> None:
    ctx = context()
    now = ctx.clock.now_ms()
    firing = postable_alert(cpu_alert(), ctx, 3_600_000)
    resolved = postable_alert(cpu_alert(resolved=True), ctx, 3_600_000)
    assert postable_alerts_problems([firing, resolved]) == []
    assert firing["endsAt"] == "2026-01-01T01:01:00Z" and now == T0 + 60_000
    assert resolved["endsAt"] == "2026-01-01T00:10:00Z"
    assert firing["startsAt"] == "2026-01-01T00:00:00Z"
    assert postable_alerts_problems([{"labels": {}, "endsAt": "yesterday"}]) == [
        "[0].labels: required, non-empty", "[0].endsAt: 'yesterday' is not an RFC 3339 time"]


def test_an_unexpected_error_is_a_retryable_result_with_secrets_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "hush-hush-1234")

    class Broken(WebhookChannel):
        async def deliver(self, message: Message) -> DeliveryResult:
            raise RuntimeError("bug near hush-hush-1234")

    channel = Broken("hook", {"url": "http://127.0.0.1:9/", "secret": "${HOOK_SECRET}"},
                     context())
    result = asyncio.run(channel.send(message()))
    assert result == DeliveryResult(False, True, "unexpected error: RuntimeError: bug near ***")
