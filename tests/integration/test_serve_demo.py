"""End to end: ``monitoring serve --demo`` with a real SMTP server, then the ledger verifies.

The engine runs as a subprocess on a free port with a config folder whose rule reads the
demo feed's ``error_rate`` (in percent) of api-1, whose email channel points at aiosmtpd on
127.0.0.1 and whose ``critical_alerts`` policy escalates to oncall@ (stage 1, 60 s) and boss@
(stage 2, 300 s). The demo feed (60x) plants an error spike on api-1 for the first fifteen
simulated minutes: the firing email, both escalation stages (nobody acknowledges) and the
resolution must arrive, the engine must stop cleanly on SIGTERM, ``monitoring audit verify
--full`` must pass, and the ledger must hold the alert's transitions and a successful
delivery entry for every email received.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.serve_process import (
    ServeProcess,
    audit_verify,
    ledger_events,
    query,
    wait_until,
)
from tests.support.smtp import Received, SmtpServer

pytestmark = pytest.mark.slow

RULE = "ApiErrors"
TEAM, ONCALL, BOSS = "team@test.local", "oncall@test.local", "boss@test.local"


RULES = """\
group e2e every 30s {
  alert ApiErrors {
    when avg_over_time(error_rate{job="api", instance="api-1:8080"}[2m]) > 5
    for 1m
    severity critical
    notify email
    escalate critical_alerts
    summary "Error rate {{ $value }}% on {{ $labels.instance }}"
  }
}
"""


def write_config(folder: Path, smtp_port: int) -> None:
    """A rule on the demo's error spike, email to the test server, a two-stage escalation."""
    folder.mkdir()
    (folder / "e2e.rules").write_text(RULES)
    (folder / "notification_config.yaml").write_text(
        "email:\n"
        '  smtp_server: "127.0.0.1"\n'
        f"  smtp_port: {smtp_port}\n"
        '  from: "alerts@test.local"\n'
        f'  to: ["{TEAM}"]\n')
    (folder / "escalation_policies.yaml").write_text(
        '- name: "critical_alerts"\n'
        "  stages:\n"
        "    - delay: 60\n"
        "      channels:\n"
        '        - type: "email"\n'
        f'          recipients: ["{ONCALL}"]\n'
        "    - delay: 300\n"
        "      channels:\n"
        '        - type: "email"\n'
        f'          recipients: ["{BOSS}"]\n')


def about(received: Received, kind: str, rcpt: str) -> bool:
    """An email of ``kind`` about the rule, to ``rcpt``."""
    mail = received.message
    text = _text(mail)
    return mail["X-Monitoring-Kind"] == kind and rcpt in received.rcpt_tos and RULE in text


def _text(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    return part.get_content() if part is not None else ""


def test_demo_fires_escalates_resolves_and_the_ledger_verifies(tmp_path: Path) -> None:
    db = tmp_path / "demo.duckdb"
    with SmtpServer(tmp_path) as smtp:
        write_config(tmp_path / "config", smtp.port)
        args = [str(tmp_path / "config"), "--demo", "--db", str(db), "--no-system-metrics"]
        with ServeProcess(tmp_path, args) as engine:
            assert engine.url.startswith("http://127.0.0.1:")

            def find(kind: str, rcpt: str) -> Received | None:
                with smtp.lock:
                    return next((r for r in smtp.received if about(r, kind, rcpt)), None)

            firing = wait_until(lambda: find("firing", TEAM), 240, "the firing email")
            stage1 = wait_until(lambda: find("escalation", ONCALL), 240, "escalation stage 1")
            stage2 = wait_until(lambda: find("escalation", BOSS), 240, "escalation stage 2")
            resolved = wait_until(lambda: find("resolved", TEAM), 300, "the resolution")
            assert engine.terminate() == 0, engine.stderr()
            assert "monitoring: stopping" in engine.lines

    # What arrived: HTML alternative, the right recipients, stage numbers in the text, and
    # a plot of the rule's value (the store's demo data, evaluated) as a PNG attachment.
    assert firing.message.get_body(("html",)) is not None
    pngs = [part.get_content() for part in firing.message.iter_attachments()
            if part.get_content_type() == "image/png"]
    assert len(pngs) == 1 and pngs[0].startswith(b"\x89PNG\r\n\x1a\n") and len(pngs[0]) > 5000
    assert "stage 1" in _text(stage1.message) and "stage 2" in _text(stage2.message)
    assert stage1.rcpt_tos == (ONCALL,) and stage2.rcpt_tos == (BOSS,)
    assert "monitoring ack " in _text(stage2.message)

    check = audit_verify(db, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.startswith("OK")

    events = ledger_events(db)
    transitions = [e["action"] for e in events if e["category"] == "alert"
                   and e["data"]["rule"] == RULE]
    assert "firing" in transitions and "resolved" in transitions
    assert transitions.index("firing") < transitions.index("resolved")
    delivered = {e["data"]["message_id"] for e in events
                 if e["category"] == "notification" and e["action"] == "delivery"
                 and e["data"]["ok"] is True}
    for mail in (firing, stage1, stage2, resolved):
        message_id = str(mail.message["Message-ID"]).strip("<>").split("@")[0]
        assert message_id in delivered
        rows = query(db, "SELECT status FROM notify_outbox WHERE id = ?", [message_id])
        assert rows == [("delivered",)]
    assert [e["action"] for e in events if e["category"] == "system"][-2:] == \
        ["engine.start", "engine.stop"]
