"""PagerDuty Events API v2: one incident per alert group, triggered, acknowledged, resolved.

The ``dedup_key`` is derived from the channel name and the message's group key, so
every message of a group (the first firing, updates, repeats) lands on the same
incident and the group's resolution resolves it. Which incident a group and its alerts
are on is kept in the channel state (:class:`~.http.Conversations`), so an escalation
stage for an alert already paged continues that incident, and the escalation's
acknowledgement acknowledges it. Trigger events carry ``payload`` (``summary`` at most
1024 characters, ``source``, ``severity`` mapped to PagerDuty's four levels,
``timestamp``, ``custom_details``), ``links`` to the engine's alert pages and runbooks,
and ``client``/``client_url``.

Settings: ``routing_key`` (required, usually ``${PAGERDUTY_ROUTING_KEY}``), ``url``
(default PagerDuty's endpoint), ``source`` (default: the alerts' common ``instance`` or
``job`` label, else ``monitoring-system``), ``timeout``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.http import (
    Conversations,
    HttpChannel,
    Reply,
    SettingError,
    status_result,
)
from monitoring.notify.channels.render import (
    alert_url,
    common_labels,
    format_ms,
    format_value,
    render_summary,
    runbook,
)
from monitoring.notify.model import RESOLVED, DeliveryResult, Message

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
SEVERITIES = ("critical", "error", "warning", "info")
"""PagerDuty's severities, most severe first."""
SEVERITY_MAP = {
    "critical": "critical", "page": "critical", "fatal": "critical", "emergency": "critical",
    "alert": "critical", "error": "error", "high": "error", "major": "error",
    "warning": "warning", "warn": "warning", "medium": "warning", "minor": "warning",
    "info": "info", "low": "info", "notice": "info", "none": "info", "debug": "info",
}
DEFAULT_SEVERITY = "error"
"""For alerts without a (known) severity label, as Alertmanager's PagerDuty receiver does."""
MAX_LINKS = 10
MAX_DETAILED_ALERTS = 20


def pagerduty_severity(label: str) -> str:
    """Our ``severity`` label as one of PagerDuty's four severities."""
    return SEVERITY_MAP.get(label.strip().lower(), DEFAULT_SEVERITY)


def dedup_key(channel: str, group_key: str) -> str:
    """The incident key of a group on a channel: stable, at most 255 characters, no labels."""
    digest = hashlib.sha256(f"{channel}\x00{group_key}".encode()).hexdigest()
    return f"monitoring-{digest[:48]}"


def event_action(message: Message) -> str:
    """``acknowledge`` for an acknowledgement, ``resolve`` once all resolved, else ``trigger``."""
    if message.kind == "acknowledged":
        return "acknowledge"
    if message.status == RESOLVED and message.kind != "test":
        return "resolve"
    return "trigger"


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


class PagerDutyChannel(HttpChannel):
    """Sends Events API v2 events (settings in the module docstring)."""

    type = "pagerduty"

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name, settings, context)
        if not self.settings.get("routing_key"):
            raise SettingError("'routing_key' is required "
                               "(the service's Events API v2 integration key)")
        self.incidents = Conversations(context.state, name)

    def event(self, message: Message) -> dict[str, Any]:
        """The event to send for ``message``: on the incident its group or alerts are in."""
        action = event_action(message)
        key = self.incidents.find(message) or dedup_key(self.name, message.group_key)
        event: dict[str, Any] = {"routing_key": self.required("routing_key"),
                                 "event_action": action, "dedup_key": key}
        if action == "trigger":
            event["payload"] = self.payload(message)
            event["client"] = "monitoring-system"
            event["client_url"] = self.context.external_url
            event["links"] = self.links(message)
        return event

    def payload(self, message: Message) -> dict[str, Any]:
        """The trigger event's ``payload``."""
        alerts = message.firing or message.alerts
        common = common_labels(alerts)
        severity = min((pagerduty_severity(a.severity) for a in alerts),
                       key=SEVERITIES.index, default=DEFAULT_SEVERITY)
        source = self.setting("source") or common.get("instance") or common.get("job") \
            or "monitoring-system"
        payload: dict[str, Any] = {
            "summary": truncate(render_summary(message), SUMMARY_MAX),
            "source": source,
            "severity": severity,
            "custom_details": self.details(message),
        }
        if alerts:
            payload["timestamp"] = format_ms(min(a.starts_at_ms for a in alerts))
        if common.get("alertname"):
            payload["class"] = common["alertname"]
        if common.get("job"):
            payload["group"] = common["job"]
        return payload

    def details(self, message: Message) -> dict[str, Any]:
        """``custom_details``: counts, the message id, and each alert's labels and values."""
        details: dict[str, Any] = {
            "message_id": message.id, "kind": message.kind,
            "firing": len(message.firing), "resolved": len(message.resolved),
            "alerts": [{"status": a.status, "labels": dict(a.labels),
                        "annotations": dict(a.annotations),
                        "starts_at": format_ms(a.starts_at_ms),
                        **({"ends_at": format_ms(a.ends_at_ms)}
                           if a.ends_at_ms is not None else {}),
                        **({"value": format_value(a.value)} if a.value is not None else {})}
                       for a in message.alerts[:MAX_DETAILED_ALERTS]],
        }
        if len(message.alerts) > MAX_DETAILED_ALERTS:
            details["alerts_not_shown"] = len(message.alerts) - MAX_DETAILED_ALERTS
        for key in ("stage", "policy", "person"):
            value = getattr(message, key)
            if value is not None:
                details[key] = value
        return details

    def links(self, message: Message) -> list[dict[str, str]]:
        """Links to each alert's page and runbook (at most :data:`MAX_LINKS`)."""
        links: list[dict[str, str]] = []
        for a in message.alerts:
            links.append({"href": alert_url(a, self.context.external_url),
                          "text": f"{a.name or a.rule} ({a.fingerprint})"})
            book = runbook(a)
            if book.startswith(("http://", "https://")) and \
                    all(link["href"] != book for link in links):
                links.append({"href": book, "text": f"Runbook: {a.name or a.rule}"})
        return links[:MAX_LINKS]

    async def deliver(self, message: Message) -> DeliveryResult:
        event = self.event(message)
        outcome = await self.post_json(self.setting("url") or EVENTS_URL, event)
        if not isinstance(outcome, Reply):
            return outcome
        data = outcome.json()
        if not outcome.ok:
            if isinstance(data, dict) and data.get("errors"):
                errors = "; ".join(str(e) for e in data["errors"])
                return status_result(outcome, f"HTTP {outcome.status} "
                                              f"{data.get('message', '')}: {errors}")
            return status_result(outcome)
        if event["event_action"] == "resolve":
            self.incidents.close(message)
        else:
            self.incidents.remember(message, event["dedup_key"])
        key = data.get("dedup_key") if isinstance(data, dict) else None
        return DeliveryResult(True, False, f"{event['event_action']} accepted",
                              remote_id=str(key or event["dedup_key"]))
