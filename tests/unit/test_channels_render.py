from __future__ import annotations

import math

import pytest

from monitoring.notify.channels.render import (
    SUBJECT_MAX,
    alert_fields,
    alert_line,
    alert_lines,
    alert_url,
    format_value,
    render_html,
    render_subject,
    render_summary,
    render_text,
)
from monitoring.notify.model import Alert, Message

T0 = 1_767_225_600_000


def alert(instance: str = "web-1", status: str = "firing", **annotations: str) -> Alert:
    return Alert({"alertname": "HighLatency", "severity": "critical", "instance": instance,
                  "job": "api"}, annotations, status, T0,
                 T0 + 1_800_000 if status == "resolved" else None, 1.2345678, "HighLatency")


def msg(*alerts: Alert, kind: str = "firing", **kw: object) -> Message:
    return Message("id1", "email", kind, "g", alerts, T0 + 300_000, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("kind", "alerts", "extra", "subject"), [
    ("firing", ("a", "b"), {}, "[FIRING:2] HighLatency (job=api severity=critical)"),
    ("repeat", ("a",), {}, "[FIRING:1] (still firing) HighLatency "
                           "(instance=a job=api severity=critical)"),
    ("resolved", ("a",), {}, "[RESOLVED] HighLatency (instance=a job=api severity=critical)"),
    ("escalation", ("a",), {"stage": 1}, "[ESCALATION stage 1] [FIRING:1] HighLatency "
                                         "(instance=a job=api severity=critical)"),
    ("acknowledged", ("a",), {}, "[ACKNOWLEDGED] HighLatency "
                                 "(instance=a job=api severity=critical)"),
    ("test", ("a",), {}, "[TEST] HighLatency (instance=a job=api severity=critical)"),
])
def test_subject_per_kind(kind: str, alerts: tuple[str, ...], extra: dict[str, int],
                          subject: str) -> None:
    status = "resolved" if kind == "resolved" else "firing"
    m = msg(*(alert(i, status) for i in alerts), kind=kind, **extra)
    assert render_subject(m) == subject
    assert render_summary(m) == subject


def test_summary_adds_the_single_alerts_summary_and_subject_is_one_bounded_line() -> None:
    m = msg(alert(summary="p99 latency\nabove 2s"))
    assert render_summary(m) == ("[FIRING:1] HighLatency (instance=web-1 job=api "
                                 "severity=critical): p99 latency above 2s")
    long = msg(alert(summary="x" * 500))
    subject = render_subject(long)
    assert len(subject) == SUBJECT_MAX and subject.endswith("…") and "\n" not in subject


def test_alert_line_and_fields() -> None:
    a = alert(summary="slow")
    assert alert_line(a) == "[FIRING] critical HighLatency instance=web-1 job=api " \
        "value=1.23457: slow"
    assert alert_line(alert(status="resolved")) == \
        "[RESOLVED] critical HighLatency instance=web-1 job=api"
    assert alert_lines(msg(alert("r", "resolved"), alert("f"))) == [
        "[FIRING] critical HighLatency instance=f job=api value=1.23457",
        "[RESOLVED] critical HighLatency instance=r job=api"]
    assert alert_fields(alert(status="resolved")) == [
        ("Alert", "HighLatency"), ("Status", "resolved"), ("Severity", "critical"),
        ("Started", "2026-01-01T00:00:00Z"), ("Resolved", "2026-01-01T00:30:00Z"),
        ("Value", "1.23457"), ("instance", "web-1"), ("job", "api")]
    assert alert_url(a, "http://h:1/") == f"http://h:1/api/v1/alerts/{a.fingerprint}"


def test_format_value() -> None:
    assert [format_value(v) for v in (None, math.nan, math.inf, -math.inf, 0.1 + 0.2, 1e21)] \
        == ["", "NaN", "+Inf", "-Inf", "0.3", "1e+21"]


def test_text_body_lists_firing_then_resolved() -> None:
    text = render_text(msg(alert("r", "resolved"), alert("f", description="p99 is 2.5s",
                                                          runbook_url="https://rb/lat")))
    assert text.index("Firing (1):") < text.index("Resolved (1):")
    assert "  Started: 2026-01-01T00:00:00Z (firing for 5m)\n" in text
    assert "  p99 is 2.5s\n  Labels: instance=f job=api severity=critical\n" \
        "  Runbook: https://rb/lat\n" in text
    assert "  Started: 2026-01-01T00:00:00Z, resolved: 2026-01-01T00:30:00Z (lasted 30m)\n" \
        in text
    assert text.endswith("Sent 2026-01-01T00:05:00Z by monitoring-system "
                         "(http://127.0.0.1:9464), message id1.\n")


def test_html_is_autoescaped_and_links_are_there() -> None:
    evil = Alert({"alertname": "X<script>", "path": "<img src=x onerror=alert(1)>"},
                 {"summary": "a & b", "description": "<b>bold</b>"}, "firing", T0)
    html = render_html(msg(evil), "https://mon.example.org")
    assert "<script>" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "X&lt;script&gt;" in html
    assert "<code>&lt;img src=x onerror=alert(1)&gt;</code>" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert f'<a href="https://mon.example.org/api/v1/alerts/{evil.fingerprint}">Details</a>' \
        in html


def test_escalation_and_acknowledgement_bodies() -> None:
    esc = msg(alert(), kind="escalation", stage=2, policy="db-critical", person="carol")
    text = render_text(esc)
    assert "Escalation policy db-critical, stage 2, on call: carol.\n" in text
    assert f"  monitoring ack {alert().fingerprint}\n" in text
    ack = msg(alert(acknowledged_by="dave", acknowledged_comment="on it <now>"),
              kind="acknowledged")
    assert "Acknowledged by dave: escalation stopped.\nComment: on it <now>\n" in render_text(ack)
    assert "Acknowledged by <strong>dave</strong>: escalation stopped. Comment: on it " \
        "&lt;now&gt;</p>" in render_html(ack)
