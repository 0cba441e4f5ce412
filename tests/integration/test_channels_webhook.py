"""The webhook channel against a loopback receiver that verifies format and signature.

The receiver recomputes the HMAC of the exact body bytes with its own copy of the
secret, checks the Alertmanager v4 shape plus ``message_id``, and answers with
scripted failures or stalls; the channel's results must say what retrying can do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from monitoring.notify.channels.http import retry_after_ms
from monitoring.notify.channels.webhook import WebhookChannel
from monitoring.notify.model import DeliveryResult, FakeClock, Message
from tests.support.channel_messages import T0, context, cpu_alert, message, send_all
from tests.support.loopback import LoopbackReceiver
from tests.support.prometheus import free_port

SECRET = "whsec-0123456789-abcdef"
TOKEN = "tok-9f8e7d6c5b4a"


@pytest.fixture
def receiver() -> Iterator[LoopbackReceiver]:
    with LoopbackReceiver(webhook_secret=SECRET) as r:
        yield r


def send(settings: dict[str, Any], msg: Message, clock: FakeClock | None = None
         ) -> DeliveryResult:
    return send_all(WebhookChannel("hook", settings, context(clock)), [msg])[0]


def test_signed_delivery_with_custom_headers(receiver: LoopbackReceiver,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    msg = message(cpu_alert("web-1"), cpu_alert("web-2", resolved=True), channel="hook")
    result = send({"url": receiver.url("/webhook"), "secret": "${HOOK_SECRET}",
                   "headers": {"X-Team": "ops", "Authorization": "Bearer ${HOOK_TOKEN}"}}, msg)
    assert result == DeliveryResult(True, False, "HTTP 200")
    [req] = receiver.requests("/webhook")
    assert receiver.problems == []
    assert req.status == 200
    assert req.headers["Idempotency-Key"] == msg.id
    assert req.headers["X-Monitoring-Timestamp"] == str((T0 + 60_000) // 1000)
    assert req.headers["X-Team"] == "ops"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"
    assert req.headers["Content-Type"] == "application/json"
    body = req.json
    assert body["message_id"] == msg.id and body["receiver"] == "hook"
    assert [a["status"] for a in body["alerts"]] == ["firing", "resolved"]
    assert body["alerts"][0]["labels"]["team"] == "<ops & infra>"


def test_wrong_secret_is_rejected_and_not_retried(receiver: LoopbackReceiver) -> None:
    result = send({"url": receiver.url("/webhook"), "secret": "not-the-secret"}, message())
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail.startswith("HTTP 401 Unauthorized")
    assert len(receiver.requests("/webhook")) == 1


def test_server_errors_are_retried_in_channel_on_the_clock(receiver: LoopbackReceiver) -> None:
    receiver.fail("/webhook", 500, times=2)
    clock = FakeClock(T0)
    result = send({"url": receiver.url("/webhook"), "secret": SECRET}, message(), clock)
    assert result.ok
    assert [r.status for r in receiver.requests("/webhook")] == [500, 500, 200]
    assert clock.now_ms() == T0 + 500 + 1000  # back-off 0.5 s, then 1 s, on the engine clock
    ids = {r.headers["Idempotency-Key"] for r in receiver.requests("/webhook")}
    assert len(ids) == 1


def test_server_error_without_retries_is_retryable(receiver: LoopbackReceiver) -> None:
    receiver.fail("/webhook", 503, body="maintenance")
    result = send({"url": receiver.url("/webhook"), "secret": SECRET, "retries": 0}, message())
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail == "HTTP 503 Service Unavailable: maintenance"
    assert len(receiver.requests("/webhook")) == 1


def test_429_retry_after_is_reported_or_waited(receiver: LoopbackReceiver) -> None:
    receiver.fail("/webhook", 429, retry_after="7")
    result = send({"url": receiver.url("/webhook"), "secret": SECRET, "retries": 0}, message())
    assert (result.ok, result.retryable, retry_after_ms(result)) == (False, True, 7000)
    receiver.fail("/webhook", 429, retry_after="2")
    clock = FakeClock(T0)
    result = send({"url": receiver.url("/webhook"), "secret": SECRET, "retries": 1},
                  message(), clock)
    assert result.ok and clock.now_ms() == T0 + 2000


def test_client_error_is_final(receiver: LoopbackReceiver) -> None:
    receiver.fail("/webhook", 400, times=5, body='{"error": "unknown receiver"}')
    result = send({"url": receiver.url("/webhook"), "secret": SECRET}, message())
    assert (result.ok, result.retryable) == (False, False)
    assert result.detail == 'HTTP 400 Bad Request: {"error": "unknown receiver"}'
    assert len(receiver.requests("/webhook")) == 1


def test_stalled_receiver_times_out_once(receiver: LoopbackReceiver) -> None:
    receiver.stall("/webhook", 30)
    result = send({"url": receiver.url("/webhook"), "secret": SECRET, "timeout": "300ms"},
                  message())
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail == "timed out after 0.3s"
    assert len(receiver.requests("/webhook")) == 1  # a timeout is not retried in-channel


def test_connection_refused_is_retryable() -> None:
    result = send({"url": f"http://127.0.0.1:{free_port()}/hook", "retries": 0}, message())
    assert (result.ok, result.retryable) == (False, True)
    assert result.detail.startswith("connection error:")


def test_secrets_never_reach_the_detail(receiver: LoopbackReceiver,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", TOKEN)
    echo = json.dumps({"error": f"token Bearer {TOKEN} revoked"})
    receiver.fail("/webhook", 403, body=echo)
    result = send({"url": receiver.url("/webhook"), "secret": SECRET,
                   "headers": {"Authorization": "Bearer ${HOOK_TOKEN}"}}, message())
    assert not result.ok
    assert TOKEN not in result.detail
    assert result.detail == 'HTTP 403 Forbidden: {"error": "token *** revoked"}'
