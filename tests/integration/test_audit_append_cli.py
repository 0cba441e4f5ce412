"""``monitoring audit init | append | keygen | rotate-key | status`` as real processes.

Events piped as JSON lines into ``monitoring audit append``: bad lines are reported with their
line numbers and skipped, every good line is durable, exit codes say whether anything was bad;
``--strict`` appends nothing unless all lines are good.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.audit.envelope import parse_envelope
from monitoring.audit.ledger import Ledger
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import LedgerStorage
from tests.support.audit_files import LedgerFiles

ROOT = Path(__file__).resolve().parents[2]

GOOD: list[dict[str, Any]] = [
    {"event_type": "authentication", "action": "login", "user_id": "user123",
     "severity": "info", "details": {"ip_address": "192.168.1.1", "success": True}},
    {"event_type": "data_access", "action": "read", "resource": "data", "user_id": "u2"},
    {"event_type": "system", "action": "backup.done", "details": {"bytes": 1024}},
]


class Env(LedgerFiles):
    """The shared test ledger files, and the CLI to run on them."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith("MONITORING_AUDIT_")}
        self.env["XDG_CONFIG_HOME"] = str(self.root / "config-home")  # never the user's keys

    def run(self, *args: str, stdin: bytes = b"", key: Path | None = None
            ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "monitoring", "audit", *args]
        if args and args[0] not in ("keygen",):
            cmd += ["--db", str(self.db), "--key", str(key or self.key), "--kek", str(self.kek)]
        done = subprocess.run(cmd, cwd=ROOT, input=stdin, capture_output=True, env=self.env,
                              timeout=120, check=False)
        return subprocess.CompletedProcess(done.args, done.returncode,
                                           done.stdout.decode(), done.stderr.decode())

    def entries(self) -> list[dict[str, Any]]:
        conn = duckdb.connect(str(self.db), read_only=True)
        try:
            storage = LedgerStorage(conn)
            return [parse_envelope(e.envelope) for e in storage.entries(0, storage.size())]
        finally:
            conn.close()


def lines(*items: Any) -> bytes:
    return "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items).encode()


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_init_creates_the_ledger_and_status_reports_it(env: Env) -> None:
    done = env.run("init")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("created ledger monitoring.local/audit/")
    origin = done.stdout.split()[2]
    again = env.run("init")
    assert again.returncode == 0 and again.stdout.startswith(f"ledger exists {origin}")
    status = env.run("status")
    assert status.returncode == 0, status.stderr
    assert f"origin:     {origin}" in status.stdout
    assert "entries:    1 (seq 0..0)" in status.stdout
    assert "1 checkpoints, newest size 1, agrees with the store" in status.stdout


def test_append_good_lines_all_durable_exit_0(env: Env) -> None:
    done = env.run("append", stdin=lines(*GOOD))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "appended 3, filtered 0, rejected 0; newest checkpoint size 4"
    assert done.stderr == ""
    entries = env.entries()
    assert [(e["category"], e["action"]) for e in entries[1:]] == [
        ("authentication", "login"), ("data_access", "read"), ("system", "backup.done")]
    assert entries[3]["data"] == {"bytes": 1024}
    sidecar = Sidecar(Path(str(env.db) + ".checkpoints")).latest()
    assert sidecar is not None and sidecar.size == 4


def test_append_reports_bad_lines_by_number_and_keeps_the_good_ones(env: Env) -> None:
    data = lines(
        GOOD[0],                                                     # 1
        "this is not json",                                          # 2
        {"event_type": "authentication", "action": "login",
         "severity": "loud"},                                        # 3
        "",                                                          # 4 (blank: skipped)
        {"event_type": "system", "action": "x", "details": {"ms": 1.5}},  # 5
        GOOD[1],                                                     # 6
        {"event_type": "system"},                                    # 7
        '{"event_type": "system", "action": "a", "action": "b"}',     # 8
        {"event_type": "system", "action": "y", "ip": "10.0.0.1"},   # 9
        "[1, 2]",                                                    # 10
        GOOD[2],                                                     # 11
    )
    done = env.run("append", stdin=data)
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        "<stdin>:2: error: not JSON: Expecting value (column 1)",
        "<stdin>:3: error: severity: unknown value 'loud' (one of debug, info, notice, "
        "warning, error, critical)",
        done.stderr.splitlines()[2],
        "<stdin>:7: error: action: missing required field",
        "<stdin>:8: error: action: duplicate key",
        done.stderr.splitlines()[5],
        done.stderr.splitlines()[6],
    ]
    assert done.stderr.splitlines()[2].startswith("<stdin>:5: error: details.ms: floats are "
                                                  "not allowed")
    assert done.stderr.splitlines()[5].startswith("<stdin>:9: error: ip: unknown field 'ip'")
    assert done.stderr.splitlines()[6].startswith("<stdin>:10: error: an event must be a JSON "
                                                  "object")
    assert "appended 3, filtered 0, rejected 7; newest checkpoint size 4" in done.stdout
    assert [e["action"] for e in env.entries()[1:]] == ["login", "read", "backup.done"]


def test_append_strict_appends_nothing_when_a_line_is_bad(env: Env) -> None:
    env.run("init")
    bad = {"event_type": "x", "action": "y"}
    done = env.run("append", "--strict", stdin=lines(GOOD[0], bad, GOOD[1]))
    assert done.returncode == 1
    assert "<stdin>:2: error: event_type: unknown value 'x'" in done.stderr
    assert "--strict: 1 bad line(s); nothing appended" in done.stderr
    assert len(env.entries()) == 1
    done = env.run("append", "--strict", stdin=lines(*GOOD))
    assert done.returncode == 0, done.stderr
    assert len(env.entries()) == 4
    conn = duckdb.connect(str(env.db), read_only=True)
    sizes = [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints ORDER BY size")
             .fetchall()]
    conn.close()
    assert sizes == [1, 4]  # --strict commits the whole input as one batch


def test_append_reports_fields_the_compliance_presets_require(env: Env) -> None:
    config = env.root / "config"
    config.mkdir()
    (config / "audit_filters.yaml").write_text(
        'compliance: [pci_dss]\nauthentication:\n  min_severity: "warning"\n')
    complete = {"event_type": "data_access", "action": "read", "user_id": "u1",
                "resource": "data", "source": "10.0.0.1", "outcome": "success"}
    unfiltered = {"event_type": "system", "action": "noise", "severity": "debug"}
    done = env.run("append", "--config", str(config),
                   stdin=lines(complete, {**complete, "source": None}, unfiltered))
    assert done.returncode == 1
    assert done.stderr.startswith("<stdin>:2: error: source: missing; the compliance presets")
    assert "appended 2, filtered 0, rejected 1" in done.stdout


def test_append_counts_filtered_events(env: Env) -> None:
    config = env.root / "config"
    config.mkdir()
    (config / "audit_filters.yaml").write_text(
        'authentication:\n  min_severity: "warning"\n  actions: ["login"]\n')
    done = env.run("append", "--config", str(config), stdin=lines(
        GOOD[0], {**GOOD[0], "severity": "error"}, {**GOOD[0], "action": "logout",
                                                    "severity": "error"}))
    assert done.returncode == 0, done.stderr
    assert "appended 1, filtered 2, rejected 0; newest checkpoint size 2" in done.stdout


def test_append_from_a_file_names_it_in_messages(env: Env) -> None:
    events = env.root / "events.jsonl"
    events.write_bytes(lines(GOOD[0], "{"))
    done = env.run("append", str(events))
    assert done.returncode == 1
    assert done.stderr.startswith(f"{events}:2: error: not JSON")
    missing = env.run("append", str(env.root / "nope.jsonl"))
    assert missing.returncode == 2
    assert "nope.jsonl: cannot read" in missing.stderr and "Traceback" not in missing.stderr


def test_append_to_a_ledger_held_by_another_process_exit_2(env: Env) -> None:
    with Ledger.open(env.db, key_path=env.key, kek_path=env.kek):
        done = env.run("append", stdin=lines(GOOD[0]))
    assert done.returncode == 2
    assert f"already open for writing by process {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr


def test_keygen_writes_a_private_key_and_refuses_to_overwrite(env: Env) -> None:
    path = env.key.parent / "new.key"
    done = env.run("keygen", str(path), "--origin", "x.local/a")
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "vkey: x.local/a+" in done.stdout
    again = env.run("keygen", str(path))
    assert again.returncode == 2 and "Traceback" not in again.stderr


def test_rotate_key_then_the_new_key_opens_the_ledger(env: Env) -> None:
    env.run("append", stdin=lines(GOOD[2]))
    new = env.key.parent / "new.key"
    assert env.run("keygen", str(new)).returncode == 0
    done = env.run("rotate-key", "--new-key", str(new))
    assert done.returncode == 0, done.stderr
    assert "rotated the signing key at size 3 (seq 2)" in done.stdout
    assert "valid for checkpoints of sizes 1..3" in done.stdout
    old = env.run("append", stdin=lines(GOOD[2]))
    assert old.returncode == 2 and "not this ledger's current key" in old.stderr
    ok = env.run("append", stdin=lines(GOOD[2]), key=new)
    assert ok.returncode == 0, ok.stderr
    status = env.run("status")
    assert "(1 rotation)" in status.stdout
    assert env.entries()[2]["action"] == "key.rotate"


def test_status_exit_1_when_the_sidecar_is_ahead(env: Env) -> None:
    env.run("append", stdin=lines(*GOOD))
    sidecar = Path(str(env.db) + ".checkpoints")
    record = json.loads(sidecar.read_text().splitlines()[-1])
    with sidecar.open("a") as f:
        f.write(json.dumps({**record, "size": 99}) + "\n")
    status = env.run("status")
    assert status.returncode == 1
    assert "AHEAD of the store" in status.stdout


def test_status_of_a_missing_store_is_a_clear_error(env: Env) -> None:
    done = env.run("status")
    assert done.returncode == 1
    assert "no such store" in done.stderr and "Traceback" not in done.stderr
