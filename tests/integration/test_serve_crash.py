"""Crash: SIGKILL ``monitoring serve`` with notifications in the outbox; none is lost.

The SMTP server first answers every DATA with a temporary failure (451), so the firing emails
stay pending in the durable outbox, retried with backoff. The test reads their ids from the
running engine's API, SIGKILLs the whole process group, lets the SMTP server accept mail, and
restarts the engine on the same store: every message id that was pending before the crash
arrives (the Message-ID header carries it), its outbox row ends ``delivered``, and the ledger
still verifies after the crash.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.serve_process import (
    ServeProcess,
    audit_verify,
    ledger_events,
    query,
    wait_until,
)
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.slow

RULES = """\
group crash every 30s {
  alert ApiErrors {
    when avg_over_time(error_rate{job="api", instance="api-1:8080"}[2m]) > 5
    for 1m
    severity critical
    notify email
    summary "Error rate {{ $value }}% on {{ $labels.instance }}"
  }
  alert AnyApiErrors {
    when max(error_rate{job="api"}) > 5
    severity warning
    notify email
    summary "an API instance fails {{ $value }}% of requests"
  }
}
"""


def pending_emails(url: str) -> list[dict[str, Any]]:
    """Outbox rows of the email channel that were tried and wait for a retry."""
    response = httpx.get(f"{url}/api/v1/notifications",
                         params={"status": "pending", "channel": "email"}, timeout=30)
    assert response.status_code == 200
    return [e for e in response.json()["outbox"] if e["attempts"] >= 1]


def received_ids(smtp: SmtpServer) -> set[str]:
    with smtp.lock:
        return {str(r.message["Message-ID"]).strip("<>").split("@")[0] for r in smtp.received}


def test_sigkill_with_pending_notifications_loses_none(tmp_path: Path) -> None:
    config, db = tmp_path / "config", tmp_path / "crash.duckdb"
    config.mkdir()
    (config / "crash.rules").write_text(RULES)
    with SmtpServer(tmp_path, data_reply="451 4.3.0 try again later") as smtp:
        (config / "notification_config.yaml").write_text(
            f'email:\n  smtp_server: "127.0.0.1"\n  smtp_port: {smtp.port}\n'
            '  from: "alerts@test.local"\n  to: ["team@test.local"]\n')
        args = [str(config), "--demo", "--db", str(db), "--no-system-metrics", "--no-console"]
        first = ServeProcess(tmp_path, args)
        with first:
            pending = wait_until(lambda: pending_emails(first.url), 240,
                                 "refused emails pending in the outbox")
            first.kill()
        before = {e["id"] for e in pending}
        assert before and smtp.received == []
        assert all(e["last_error"] for e in pending)

        smtp.data_reply = None
        with ServeProcess(tmp_path, args) as second:
            def all_arrived() -> set[str] | None:
                got = received_ids(smtp)
                return got if before <= got else None

            got = wait_until(all_arrived, 300, "every pending email delivered after the restart")
            assert second.terminate() == 0, second.stderr()

    assert before <= got
    rows = query(db, "SELECT id, status FROM notify_outbox WHERE id IN (SELECT unnest(?))",
                 [sorted(before)])
    assert sorted(rows) == sorted((i, "delivered") for i in before)
    # Each pending message failed at least once before the crash, and was delivered after.
    log = query(db, "SELECT message_id, ok FROM notify_deliveries "
                "WHERE message_id IN (SELECT unnest(?)) ORDER BY at_ms", [sorted(before)])
    for message_id in before:
        outcomes = [ok for mid, ok in log if mid == message_id]
        assert outcomes[0] is False and outcomes[-1] is True
    check = audit_verify(db, tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    starts = [e for e in ledger_events(db) if e["action"] == "engine.start"]
    assert len(starts) == 2
