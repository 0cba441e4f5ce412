"""Forwarding to an existing Alertmanager: ``POST {url}/api/v2/alerts``.

Teams that already route, silence and page with Alertmanager receive our alerts there,
as Prometheus would send them: ``labels``, ``annotations``, ``startsAt``, ``endsAt`` and
``generatorURL`` (Alertmanager's OpenAPI ``postableAlert``).

Prometheus re-sends firing alerts every minute and sets ``endsAt`` a few minutes ahead,
so Alertmanager resolves them when Prometheus goes away. Our pipeline sends a group
again only at its repeat interval (4 h by default), so a firing alert gets ``endsAt`` =
now + ``alert_ttl`` (default 24 h, longer than any repeat interval one should use) and a
resolved alert its resolution time: resolution arrives explicitly, and an alert of an
engine that stopped for good still ends in Alertmanager a day later.

An acknowledgement has no meaning in Alertmanager: it is reported delivered without a
request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.http import HttpChannel, SettingError, dumps, duration_seconds
from monitoring.notify.channels.render import alert_url, format_ms
from monitoring.notify.model import Alert, DeliveryResult, Message

DEFAULT_ALERT_TTL_S = 86_400.0


def postable_alert(alert: Alert, context: ChannelContext, ttl_ms: int) -> dict[str, Any]:
    """One alert in Alertmanager's ``postableAlert`` form."""
    ends = alert.ends_at_ms if alert.ends_at_ms is not None else context.clock.now_ms() + ttl_ms
    return {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": format_ms(alert.starts_at_ms),
        "endsAt": format_ms(max(ends, alert.starts_at_ms)),
        "generatorURL": alert.generator_url or alert_url(alert, context.external_url),
    }


class AlertmanagerChannel(HttpChannel):
    """Posts a message's alerts to Alertmanager (settings: url, alert_ttl, timeout)."""

    type = "alertmanager"

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name, settings, context)
        if not self.settings.get("url"):
            raise SettingError("'url' is required "
                               "(the Alertmanager base URL, e.g. http://localhost:9093)")
        self.ttl_ms = int(1000 * duration_seconds(self.settings.get("alert_ttl"),
                                                  "alert_ttl",
                                                  DEFAULT_ALERT_TTL_S))

    def endpoint(self) -> str:
        """``{url}/api/v2/alerts`` (a URL already ending in /api/v2/alerts is kept)."""
        base = self.required("url").rstrip("/")
        return base if base.endswith("/api/v2/alerts") else f"{base}/api/v2/alerts"

    async def deliver(self, message: Message) -> DeliveryResult:
        if message.kind == "acknowledged":
            return DeliveryResult(True, False, "not sent: Alertmanager has no acknowledgements")
        if not message.alerts:
            return DeliveryResult(True, False, "not sent: no alerts")
        body = dumps([postable_alert(a, self.context, self.ttl_ms) for a in message.alerts])
        result = await self.post_for_result(self.endpoint(), body)
        if result.ok:
            return DeliveryResult(True, False, f"{len(message.alerts)} alert(s) posted")
        return result
