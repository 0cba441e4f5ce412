"""The Slack channel against loopback Slack endpoints that check Block Kit and the Web API.

The chat.postMessage receiver hands out ``ts`` values and refuses a ``thread_ts`` it
did not hand out in that channel, so the thread tests show the channel really keeps
and reuses the first post's ``ts`` (through the channel state, across instances).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.notify.channels.base import ChannelState, MemoryChannelState
from monitoring.notify.channels.http import retry_after_ms
from monitoring.notify.channels.slack import SlackChannel
from monitoring.notify.channels.state import DuckChannelState
from monitoring.notify.model import DeliveryResult, Message
from tests.support.channel_messages import (
    EXTERNAL_URL,
    GROUP,
    context,
    cpu_alert,
    message,
    send_all,
)
from tests.support.loopback import LoopbackReceiver

TOKEN = "xoxb-1111-2222-secret"
API = "/slack/api/chat.postMessage"


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(slack_token=TOKEN) as r:
        yield r


def send(settings: dict[str, Any], messages: Sequence[Message],
         state: ChannelState | None = None, *, concurrent: bool = False
         ) -> list[DeliveryResult]:
    channel = SlackChannel("slack", settings, context(state=state))
    return send_all(channel, messages, concurrent=concurrent)


def bot(receiver: LoopbackReceiver, **extra: Any) -> dict[str, Any]:
    return {"bot_token": TOKEN, "channel": "#alerts", "api_url": receiver.url("/slack/api"),
            **extra}


def test_incoming_webhook_posts_block_kit(receiver: LoopbackReceiver) -> None:
    msg = message(channel="slack")
    [result] = send({"webhook_url": receiver.url("/slack/webhook"), "channel": "#alerts",
                         "username": "monitoring"}, [msg])
    assert result == DeliveryResult(True, False, "posted by incoming webhook")
    assert receiver.problems == []
    [req] = receiver.requests("/slack/webhook")
    body = req.json
    assert (body["channel"], body["username"]) == ("#alerts", "monitoring")
    assert body["text"] == "[FIRING:1] HighCPU (instance=web-1 severity=critical " \
                           "team=<ops & infra>): CPU above 90% on web-1"
    header, section, actions, ctx = body["blocks"]
    assert header == {"type": "header", "text": {
        "type": "plain_text", "text": ":rotating_light: " + body["text"], "emoji": True}}
    assert section["type"] == "section" and len(section["fields"]) == 7
    assert actions["elements"][0]["url"] == \
        f"{EXTERNAL_URL}/api/v1/alerts/{msg.alerts[0].fingerprint}"
    assert actions["elements"][0]["style"] == "primary"
    assert ctx["elements"][-1]["text"] == f"firing - message `{msg.id}`"


def test_incoming_webhook_errors(receiver: LoopbackReceiver) -> None:
    settings = {"webhook_url": receiver.url("/slack/webhook")}
    receiver.fail("/slack/webhook", 400, body="invalid_blocks")
    receiver.fail("/slack/webhook", 429, retry_after="30", body="rate_limited")
    receiver.fail("/slack/webhook", 404, body="no_service")
    bad, limited, gone = send(settings, [message(), message(), message()])
    assert (bad.ok, bad.retryable, bad.detail) == (False, False,
                                                   "HTTP 400 Bad Request: invalid_blocks")
    assert (limited.retryable, retry_after_ms(limited)) == (True, 30_000)
    assert (gone.retryable, gone.detail) == (False, "HTTP 404 Not Found: no_service")


def test_webhook_url_never_appears_in_a_detail(receiver: LoopbackReceiver,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = receiver.url("/slack/webhook")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", url)
    receiver.fail("/slack/webhook", 400, body=f"bad request to {url}")
    [result] = send({"webhook_url": "${SLACK_WEBHOOK_URL}"}, [message()])
    assert result.detail == "HTTP 400 Bad Request: bad request to ***"


def test_bot_threads_updates_escalation_and_resolution(receiver: LoopbackReceiver) -> None:
    state = MemoryChannelState()
    first = message(cpu_alert("web-1"), channel="slack")
    update = message(cpu_alert("web-1"), cpu_alert("web-2"), channel="slack",
                     created_ms=first.created_ms + 300_000)
    escalation = message(cpu_alert("web-1"), channel="slack", kind="escalation", stage=2,
                         policy="critical_alerts", created_ms=first.created_ms + 900_000)
    results = send(bot(receiver), [first, update, escalation], state)
    # a new channel instance (a restart) continues the same thread through the state
    resolved = message(cpu_alert("web-1", resolved=True), cpu_alert("web-2", resolved=True),
                       channel="slack", kind="resolved", created_ms=first.created_ms + 1_200_000)
    results += send(bot(receiver), [resolved], state)
    again = message(cpu_alert("web-1"), channel="slack", created_ms=first.created_ms + 7_200_000)
    results += send(bot(receiver), [again], state)
    assert [r.ok for r in results] == [True] * 5
    assert receiver.problems == []
    bodies = [r.json for r in receiver.requests(API)]
    ts = results[0].remote_id
    assert ts is not None
    assert [b.get("thread_ts") for b in bodies] == [None, ts, ts, ts, None]
    assert [b.get("reply_broadcast") for b in bodies] == [None, None, True, True, None]
    assert {b["channel"] for b in bodies} == {"#alerts"}
    assert results[0].detail == "posted to #alerts (new thread)"
    assert results[1].detail == f"posted to #alerts (in thread {ts})"
    assert results[4].remote_id != ts  # the next episode opened a thread of its own
    assert state.get("slack", f"group:#alerts:{GROUP}") == results[4].remote_id
    assert all(r.headers["Authorization"] == f"Bearer {TOKEN}" for r in receiver.requests(API))


def test_target_channel_gets_its_own_thread(receiver: LoopbackReceiver) -> None:
    state = MemoryChannelState()
    first = message(channel="slack")
    stage = message(channel="slack", kind="escalation", stage=2,
                    target={"channel": "#alerts-critical"}, created_ms=first.created_ms + 1)
    later = message(channel="slack", kind="repeat", target={"channel": "#alerts-critical"},
                    created_ms=first.created_ms + 2)
    results = send(bot(receiver), [first, stage, later], state)
    bodies = [r.json for r in receiver.requests(API)]
    assert [(b["channel"], b.get("thread_ts")) for b in bodies] == [
        ("#alerts", None), ("#alerts-critical", None),
        ("#alerts-critical", results[1].remote_id)]


def test_concurrent_messages_of_a_group_share_one_thread(receiver: LoopbackReceiver) -> None:
    msgs = [message(channel="slack", created_ms=1_000 + i) for i in range(4)]
    results = send(bot(receiver), msgs, concurrent=True)
    assert all(r.ok for r in results)
    threads = [r.json.get("thread_ts") for r in receiver.requests(API)]
    assert threads.count(None) == 1
    assert set(threads) - {None} == {results[0].remote_id}


def test_slack_api_errors(receiver: LoopbackReceiver) -> None:
    [bad_auth] = send(bot(receiver, bot_token="xoxb-wrong"), [message()])
    assert (bad_auth.ok, bad_auth.retryable, bad_auth.detail) == (
        False, False, "Slack error: invalid_auth")
    receiver.fail(API, 200, body='{"ok": false, "error": "ratelimited"}')
    receiver.fail(API, 429, retry_after="12", body='{"ok": false, "error": "ratelimited"}')
    receiver.fail(API, 502, body="bad gateway")
    limited_ok_false, limited_429, gateway = send(bot(receiver),
                                                      [message(), message(), message()])
    assert (limited_ok_false.retryable, limited_ok_false.detail) == (
        True, "Slack error: ratelimited")
    assert (limited_429.retryable, retry_after_ms(limited_429)) == (True, 12_000)
    assert (gateway.ok, gateway.retryable) == (False, True)


def test_bot_without_channel_is_a_final_failure(receiver: LoopbackReceiver) -> None:
    [result] = send({"bot_token": TOKEN, "api_url": receiver.url("/slack/api")},
                        [message()])
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == \
        "'bot_token' needs a 'channel' (in the settings or the message's target)"
    assert receiver.requests() == []


def test_thread_survives_a_restart_in_the_duckdb_file(receiver: LoopbackReceiver,
                                                      tmp_path: Path) -> None:
    db = tmp_path / "monitoring.duckdb"
    first = message(channel="slack")
    with duckdb.connect(str(db)) as conn:
        [opened] = send(bot(receiver), [first], DuckChannelState(conn.cursor()))
    resolved = message(cpu_alert(resolved=True), channel="slack", kind="resolved",
                       created_ms=first.created_ms + 600_000)
    with duckdb.connect(str(db)) as conn:  # the engine restarted
        [closed] = send(bot(receiver), [resolved], DuckChannelState(conn.cursor()))
    assert opened.ok and closed.ok
    assert [r.json.get("thread_ts") for r in receiver.requests(API)] == [None, opened.remote_id]
    assert closed.detail == f"posted to #alerts (in thread {opened.remote_id})"


def test_escalation_episode_joins_the_alerts_thread(receiver: LoopbackReceiver) -> None:
    # the escalation side groups by episode (its own group key), not by routing group
    alert = cpu_alert("web-1")
    episode = f"escalation/critical_alerts/{alert.fingerprint}/{alert.starts_at_ms}"
    t = alert.starts_at_ms
    msgs = [message(alert, channel="slack", created_ms=t + 1),
            message(alert, channel="slack", kind="escalation", stage=1, group_key=episode,
                    policy="critical_alerts", created_ms=t + 2),
            message(alert, channel="slack", kind="acknowledged", group_key=episode,
                    created_ms=t + 3),
            message(alert.resolved(t + 4), channel="slack", kind="resolved", created_ms=t + 4),
            message(alert.resolved(t + 4), channel="slack", kind="resolved", group_key=episode,
                    created_ms=t + 5),
            message(cpu_alert("web-1"), channel="slack", kind="escalation", group_key="other",
                    created_ms=t + 6)]
    results = send(bot(receiver), msgs, MemoryChannelState())
    assert all(r.ok for r in results)
    ts = results[0].remote_id
    threads = [r.json.get("thread_ts") for r in receiver.requests(API)]
    assert threads == [None, ts, ts, ts, ts, None]  # after the resolution: a new thread
