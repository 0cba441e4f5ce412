"""``monitoring silence``, ``monitoring ack`` and ``monitoring serve`` as an operator runs them.

Against a running engine (``--url``), and with no engine (the store file, ``--db``): both
paths record the same rows and the same audit events. ``serve`` refuses bad input with the
documented exit codes: 2 for a missing path or a port in use, 1 for a rule file with errors
(the diagnostic printed with its file:line:col).
"""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

import pytest

from monitoring import MonitoringSystem
from monitoring.notify.model import FakeClock
from tests.support.prometheus import free_port
from tests.support.serve_process import ServeProcess, ledger_events, monitoring, query

RULE = """\
group cli every 1m {
  alert Hot {
    when temp_c > 80
    severity warning
    notify console
    summary "hot"
  }
}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A rules folder and the XDG folder the subprocesses use too (same audit keys)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "cli.rules").write_text(RULE)
    return tmp_path


def create_store(home: Path, db: Path) -> None:
    async def make() -> None:
        m = MonitoringSystem(config_dir=home / "rules", db=db, clock=FakeClock(),
                             collect_system=False)
        await m.log_audit_event(event_type="system", action="test.setup", severity="info")
        await m.stop()

    asyncio.run(make())


def test_silence_and_ack_without_an_engine_write_the_store(home: Path) -> None:
    db = home / "m.duckdb"
    nobody = f"http://127.0.0.1:{free_port()}"
    missing = monitoring(["silence", "list", "--url", nobody, "--db", str(db)], home)
    assert missing.returncode == 2 and "no store at" in missing.stderr
    create_store(home, db)

    added = monitoring(["silence", "add", 'alertname="Hot"', 'room=~"lab-.*"', "--duration",
                        "2h", "--comment", "maintenance", "--by", "ann", "--url", nobody,
                        "--db", str(db)], home)
    assert added.returncode == 0, added.stderr
    sid = re.match(r"silence (\w+) until ", added.stdout)
    assert sid is not None
    listed = monitoring(["silence", "list", "--url", nobody, "--db", str(db)], home)
    assert listed.returncode == 0 and sid.group(1) in listed.stdout
    assert 'alertname="Hot" room=~"lab-.*"' in listed.stdout
    bad = monitoring(["silence", "add", "alertname", "--duration", "1h", "--comment", "c",
                      "--url", nobody, "--db", str(db)], home)
    assert bad.returncode == 2 and "matchers" in bad.stderr
    gone = monitoring(["silence", "expire", "nope", "--url", nobody, "--db", str(db)], home)
    assert gone.returncode == 1 and "no silence" in gone.stderr
    expired = monitoring(["silence", "expire", sid.group(1), "--url", nobody, "--db", str(db)],
                         home)
    assert expired.returncode == 0, expired.stderr

    acked = monitoring(["ack", "0123456789abcdef", "--by", "ann", "--comment", "looking",
                        "--url", nobody, "--db", str(db)], home)
    assert acked.returncode == 0, acked.stderr
    assert monitoring(["ack", "NOPE", "--url", nobody, "--db", str(db)], home).returncode == 2
    assert query(db, "SELECT fingerprint, acked_by, comment FROM notify_acks") == \
        [("0123456789abcdef", "ann", "looking")]
    events = [(e["category"], e["action"]) for e in ledger_events(db)]
    assert events.count(("silence", "create")) == 1 and events.count(("silence", "expire")) == 1
    assert ("acknowledgement", "acknowledge") in events


def test_silence_and_ack_through_a_running_engine(home: Path) -> None:
    db = home / "m.duckdb"
    args = [str(home / "rules"), "--db", str(db), "--no-system-metrics", "--no-console"]
    with ServeProcess(home, args) as engine:
        url = ["--url", engine.url, "--db", str(home / "elsewhere.duckdb")]
        added = monitoring(["silence", "add", 'alertname="Hot"', "--duration", "30m",
                            "--comment", "deploy", "--by", "bob", *url], home)
        assert added.returncode == 0, added.stderr
        sid = added.stdout.split()[1]
        listed = monitoring(["silence", "list", "--format", "json", *url], home)
        assert listed.returncode == 0 and f'"id": "{sid}"' in listed.stdout
        assert monitoring(["silence", "expire", sid, *url], home).returncode == 0
        unknown = monitoring(["ack", "0123456789abcdef", "--by", "bob", *url], home)
        assert unknown.returncode == 1 and "no active alert" in unknown.stderr
        assert engine.terminate() == 0
    assert not (home / "elsewhere.duckdb").exists()
    rows = query(db, "SELECT created_by, comment, expired_by IS NOT NULL FROM notify_silences")
    assert rows == [("bob", "deploy", True)]


def test_serve_refuses_bad_input_with_exit_codes(home: Path) -> None:
    missing = monitoring(["serve", str(home / "nowhere")], home)
    assert missing.returncode == 2 and "no such file or directory" in missing.stderr
    (home / "broken").mkdir()
    (home / "broken" / "b.rules").write_text("group g {\n  alert A {\n    when cpu >\n  }\n}\n")
    broken = monitoring(["serve", str(home / "broken"), "--db", str(home / "b.duckdb"),
                         "--port", "0"], home)
    assert broken.returncode == 1
    assert f"{home / 'broken' / 'b.rules'}:4:" in broken.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = monitoring(["serve", str(home / "rules"), "--db", str(home / "p.duckdb"),
                           "--port", str(port), "--no-system-metrics"], home)
    assert busy.returncode == 2 and f"cannot serve on 127.0.0.1:{port}" in busy.stderr
    speed = monitoring(["serve", "--demo", "--speed", "0"], home)
    assert speed.returncode == 2 and "--speed" in speed.stderr


def test_serve_stops_by_itself_after_stop_after(home: Path) -> None:
    db = home / "s.duckdb"
    ran = monitoring(["serve", str(home / "rules"), "--db", str(db), "--port", "0",
                      "--no-system-metrics", "--stop-after", "2"], home)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("monitoring: serving http://127.0.0.1:")
    assert ran.stdout.rstrip().endswith("monitoring: stopping")
    assert [e["action"] for e in ledger_events(db)][-1] == "engine.stop"
    bad = monitoring(["serve", str(home / "rules"), "--stop-after", "0"], home)
    assert bad.returncode == 2 and "--stop-after" in bad.stderr


def test_alerts_history_and_stats_ask_the_engine_that_holds_the_store(home: Path) -> None:
    import json

    db = home / "h.duckdb"
    args = [str(home / "rules"), "--db", str(db), "--no-system-metrics", "--no-console"]
    with ServeProcess(home, args) as engine:
        url = ["--db", str(db), "--url", engine.url]
        history = monitoring(["alerts", "history", *url, "--format", "json"], home)
        assert history.returncode == 0, history.stderr
        assert json.loads(history.stdout) == []  # nothing has changed state yet
        stats = monitoring(["alerts", "stats", *url, "--since", "1h", "--format", "json"], home)
        assert stats.returncode == 0, stats.stderr
        data = json.loads(stats.stdout)
        assert data["firings"] == 0 and data["until_ms"] - data["since_ms"] == 3_600_000
        table = monitoring(["alerts", "stats", *url], home)
        assert table.returncode == 0 and "alert statistics from" in table.stdout
        bad = monitoring(["alerts", "history", "--db", str(db), "--url", engine.url,
                          "--since", "2h", "--until", "nonsense"], home)
        assert bad.returncode == 2
        assert engine.terminate() == 0
