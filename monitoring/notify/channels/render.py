"""What a notification says: subject, plain text and HTML from Jinja2 templates.

Every channel describes alerts the same way, so the wording lives here once: the
templates in ``monitoring/notify/templates/`` (subject, text, HTML email) and the
Python helpers other channels reuse for their own formats (:func:`render_summary`
for a one-line title, :func:`alert_line` for one line per alert, :func:`alert_fields`
for Slack fields or PagerDuty custom details, :func:`alert_url` for links).

Templates see :class:`AlertView` objects, already formatted (UTC times, values with
six significant digits, sorted labels), so they hold no logic beyond layout. HTML
is autoescaped: label values and annotations come from metrics and rule files and
may contain markup. Undefined names raise (``StrictUndefined``) so a template
mistake fails its test rather than sending an empty field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from monitoring.dsl.ast import format_duration
from monitoring.engine.timeparse import format_time
from monitoring.notify.model import FIRING, Alert, Message

TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates"
SUBJECT_MAX = 200
"""Longest subject line (RFC 5322 recommends 78 per line; mail clients cut long ones)."""
DEFAULT_EXTERNAL_URL = "http://127.0.0.1:9464"
SEVERITY_COLOURS = {"critical": "#b71c1c", "error": "#d84315", "warning": "#f9a825",
                    "info": "#1565c0"}
RESOLVED_COLOUR = "#2e7d32"
_HIDDEN_LABELS = ("alertname",)


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert, formatted for templates."""

    name: str
    status: str
    severity: str
    fingerprint: str
    labels: tuple[tuple[str, str], ...]
    summary: str
    description: str
    runbook: str
    starts: str
    ends: str
    duration: str
    value: str
    url: str
    generator_url: str
    colour: str
    line: str

    @property
    def label_text(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.labels)


def format_value(value: float | None) -> str:
    """An alert's value for people: six significant digits, empty when unknown."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def format_ms(ms: int) -> str:
    """An epoch-milliseconds time in UTC, RFC 3339 (``2026-01-01T00:00:00Z``)."""
    return format_time(ms)


def alert_url(alert: Alert, external_url: str = DEFAULT_EXTERNAL_URL) -> str:
    """The engine's API page of the alert (what "details" buttons and links open)."""
    return f"{external_url.rstrip('/')}/api/v1/alerts/{alert.fingerprint}"


def runbook(alert: Alert) -> str:
    """The alert's runbook link, if its rule has one (``runbook_url`` or ``runbook``)."""
    return alert.annotations.get("runbook_url") or alert.annotations.get("runbook", "")


def shown_labels(alert: Alert) -> tuple[tuple[str, str], ...]:
    """The labels worth showing (sorted, without ``alertname``)."""
    return tuple(sorted((k, v) for k, v in alert.labels.items() if k not in _HIDDEN_LABELS))


def alert_line(alert: Alert) -> str:
    """One readable line: ``[FIRING] critical HighCPU instance=a value=0.93: CPU high``."""
    parts = [f"[{alert.status.upper()}]"]
    if alert.severity:
        parts.append(alert.severity)
    parts.append(alert.name or alert.rule or alert.fingerprint)
    parts.extend(f"{k}={v}" for k, v in shown_labels(alert) if k != "severity")
    if alert.value is not None and alert.status == FIRING:
        parts.append(f"value={format_value(alert.value)}")
    line = " ".join(parts)
    summary = alert.annotations.get("summary", "")
    return f"{line}: {summary}" if summary else line


def alert_lines(message: Message) -> list[str]:
    """:func:`alert_line` for every alert of a message, firing ones first."""
    return [alert_line(a) for a in (*message.firing, *message.resolved)]


def alert_fields(alert: Alert) -> list[tuple[str, str]]:
    """``(title, text)`` pairs describing an alert (Slack fields, PagerDuty details)."""
    fields = [("Alert", alert.name or alert.rule), ("Status", alert.status)]
    if alert.severity:
        fields.append(("Severity", alert.severity))
    fields.append(("Started", format_ms(alert.starts_at_ms)))
    if alert.ends_at_ms is not None:
        fields.append(("Resolved", format_ms(alert.ends_at_ms)))
    if alert.value is not None:
        fields.append(("Value", format_value(alert.value)))
    fields.extend((k, v) for k, v in shown_labels(alert) if k != "severity")
    return fields


def view(alert: Alert, external_url: str = DEFAULT_EXTERNAL_URL,
         now_ms: int | None = None) -> AlertView:
    """The template view of an alert; ``duration`` runs to its end, or to ``now_ms``."""
    end = alert.ends_at_ms if alert.ends_at_ms is not None else now_ms
    colour = RESOLVED_COLOUR if alert.status != FIRING else \
        SEVERITY_COLOURS.get(alert.severity, SEVERITY_COLOURS["warning"])
    return AlertView(
        name=alert.name or alert.rule, status=alert.status, severity=alert.severity,
        fingerprint=alert.fingerprint, labels=shown_labels(alert),
        summary=alert.annotations.get("summary", ""),
        description=alert.annotations.get("description", ""), runbook=runbook(alert),
        starts=format_ms(alert.starts_at_ms),
        ends="" if alert.ends_at_ms is None else format_ms(alert.ends_at_ms),
        duration="" if end is None or end - alert.starts_at_ms < 1000 else
        format_duration((end - alert.starts_at_ms) // 1000 * 1000),
        value=format_value(alert.value), url=alert_url(alert, external_url),
        generator_url=alert.generator_url, colour=colour, line=alert_line(alert))


def headline(message: Message) -> str:
    """The status part of a title: ``[FIRING:2]``, ``[RESOLVED]``, ``[ESCALATION stage 2] ...``."""
    count = len(message.firing)
    state = f"[FIRING:{count}]" if count else "[RESOLVED]"
    if message.kind == "escalation":
        stage = "" if message.stage is None else f" stage {message.stage}"
        return f"[ESCALATION{stage}] {state}"
    if message.kind == "acknowledged":
        return "[ACKNOWLEDGED]"
    if message.kind == "test":
        return "[TEST]"
    if message.kind == "repeat":
        return f"{state} (still firing)" if count else state
    return state


def common_labels(alerts: Sequence[Alert]) -> dict[str, str]:
    """Labels every alert has with the same value (the group's identity)."""
    if not alerts:
        return {}
    first = dict(alerts[0].labels)
    return {k: v for k, v in sorted(first.items())
            if all(a.labels.get(k) == v for a in alerts[1:])}


def render_summary(message: Message) -> str:
    """One line naming the message's state, alert names and shared labels (Slack text)."""
    common = common_labels(message.alerts)
    names = list(dict.fromkeys(a.name or a.rule for a in message.alerts))
    labels = " ".join(f"{k}={v}" for k, v in common.items() if k not in _HIDDEN_LABELS)
    text = f"{headline(message)} {', '.join(names)}".rstrip()
    if labels:
        text += f" ({labels})"
    if len(message.alerts) == 1 and (summary := message.alerts[0].annotations.get("summary")):
        text += f": {summary}"
    return " ".join(text.split())


def _context(message: Message, external_url: str, has_plot: bool) -> dict[str, Any]:
    now = message.created_ms
    return {
        "message": message,
        "headline": headline(message),
        "summary": render_summary(message),
        "firing": [view(a, external_url, now) for a in message.firing],
        "resolved": [view(a, external_url, now) for a in message.resolved],
        "common": common_labels(message.alerts),
        "created": format_ms(message.created_ms),
        "external_url": external_url.rstrip("/"),
        "has_plot": has_plot,
        "acknowledged_by": acknowledgement(message, "acknowledged_by"),
        "acknowledged_comment": acknowledgement(message, "acknowledged_comment"),
    }


def acknowledgement(message: Message, key: str) -> str:
    """Who acknowledged (``acknowledged_by``) or why (``acknowledged_comment``).

    The escalation puts them in the alert's annotations of an ``acknowledged`` message.
    """
    for alert in message.alerts:
        if value := alert.annotations.get(key):
            return value
    return str(message.target.get(key, ""))


@cache
def environment() -> jinja2.Environment:
    """The templates' environment (HTML autoescaped; undefined names are errors)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",),
                                            default_for_string=False, default=False),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def _render(name: str, context: Mapping[str, Any]) -> str:
    return environment().get_template(name).render(context)


def render_subject(message: Message, external_url: str = DEFAULT_EXTERNAL_URL) -> str:
    """The email subject: one line, at most :data:`SUBJECT_MAX` characters."""
    text = " ".join(_render("subject.txt", _context(message, external_url, False)).split())
    return text if len(text) <= SUBJECT_MAX else text[:SUBJECT_MAX - 1] + "…"


def render_text(message: Message, external_url: str = DEFAULT_EXTERNAL_URL) -> str:
    """The plain-text body."""
    return _render("text.txt", _context(message, external_url, False))


def render_html(message: Message, external_url: str = DEFAULT_EXTERNAL_URL,
                has_plot: bool = False) -> str:
    """The HTML body; ``has_plot`` mentions the attached plot."""
    return _render("email.html", _context(message, external_url, has_plot))
