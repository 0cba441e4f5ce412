"""The generic webhook: Alertmanager's webhook JSON (version 4), signed, with an idempotency key.

Receivers written for Alertmanager's webhook read our payload unchanged; we add
``message_id`` (and ``kind``, and the escalation fields when set). Each request carries

- ``Idempotency-Key``: the message id, the same on every retry, so a receiver drops a
  redelivery after a crash (delivery is at-least-once);
- ``X-Monitoring-Timestamp``: the send time in Unix seconds (engine clock);
- ``X-Monitoring-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes with the
  ``secret`` setting, when one is configured (docs/notifications.md shows how to verify).

Custom ``headers`` (values may be ``${NAME}``) are sent too, but cannot replace these.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from monitoring.notify.channels import secrets
from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.http import GO_ZERO_TIME, HttpChannel, SettingError, dumps
from monitoring.notify.channels.render import alert_url, common_labels, format_ms
from monitoring.notify.model import Alert, DeliveryResult, Message

SIGNATURE_HEADER = "X-Monitoring-Signature"
TIMESTAMP_HEADER = "X-Monitoring-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RESERVED = {h.lower() for h in (SIGNATURE_HEADER, TIMESTAMP_HEADER, IDEMPOTENCY_HEADER,
                                 "Content-Type", "Content-Length", "Host")}


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time compare; receivers)."""
    return hmac.compare_digest(sign(secret, body), header.strip())


def webhook_alert(alert: Alert, context: ChannelContext) -> dict[str, Any]:
    """One alert as Alertmanager's webhook writes it."""
    return {
        "status": alert.status,
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": format_ms(alert.starts_at_ms),
        "endsAt": GO_ZERO_TIME if alert.ends_at_ms is None else format_ms(alert.ends_at_ms),
        "generatorURL": alert.generator_url or alert_url(alert, context.external_url),
        "fingerprint": alert.fingerprint,
    }


def webhook_payload(message: Message, receiver: str, context: ChannelContext
                    ) -> dict[str, Any]:
    """The body: Alertmanager webhook version 4, plus ``message_id`` and ``kind``.

    ``groupLabels`` are the labels all alerts share (the pipeline groups by labels, so
    they include the ``group_by`` labels).
    """
    common = common_labels(message.alerts)
    payload: dict[str, Any] = {
        "version": "4",
        "groupKey": message.group_key,
        "truncatedAlerts": 0,
        "status": message.status,
        "receiver": receiver,
        "groupLabels": common,
        "commonLabels": common,
        "commonAnnotations": _common_annotations(message.alerts),
        "externalURL": context.external_url,
        "alerts": [webhook_alert(a, context) for a in message.alerts],
        "message_id": message.id,
        "kind": message.kind,
    }
    for key in ("stage", "policy", "person"):
        value = getattr(message, key)
        if value is not None:
            payload[key] = value
    if message.recipients:
        payload["recipients"] = list(message.recipients)
    return payload


def _common_annotations(alerts: tuple[Alert, ...]) -> dict[str, str]:
    if not alerts:
        return {}
    first = alerts[0].annotations
    return {k: v for k, v in sorted(first.items())
            if all(a.annotations.get(k) == v for a in alerts[1:])}


class WebhookChannel(HttpChannel):
    """POSTs each message as signed JSON to ``url``; settings in the module docstring."""

    type = "webhook"
    default_retries = 3

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name, settings, context)
        if not self.settings.get("url"):
            raise SettingError("'url' is required")
        headers = self.settings.get("headers") or {}
        if not isinstance(headers, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise SettingError("'headers' must map header names to strings")
        clash = sorted(k for k in headers if k.lower() in _RESERVED)
        if clash:
            raise SettingError(f"'headers' may not set {', '.join(clash)} "
                               f"(the channel sets them)")

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        """The request headers for ``body``: custom ones, then ours (signature last)."""
        out = {k: secrets.resolve(v) for k, v in (self.settings.get("headers") or {}).items()}
        out[IDEMPOTENCY_HEADER] = message.id
        out[TIMESTAMP_HEADER] = str(self.context.clock.now_ms() // 1000)
        secret = self.setting("secret")
        if secret:
            out[SIGNATURE_HEADER] = sign(secret, body)
        return out

    async def deliver(self, message: Message) -> DeliveryResult:
        url = self.required("url")
        body = dumps(webhook_payload(message, self.name, self.context))
        return await self.post_for_result(url, body, self.headers(message, body))
