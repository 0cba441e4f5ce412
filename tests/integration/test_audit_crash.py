"""Crash safety and the single writer, with real processes (catalogue T40, T13, T19).

T40: a child process appends events and prints each acknowledged seq (flushed) as soon as
its future resolves; then ``MONITORING_AUDIT_FAULT`` names one step of the commit path and the
child's writer SIGKILLs its own process there. The test reopens the ledger: the startup check
raises no alarm, every acknowledged event is present, full verification passes, nothing is
left uncovered by a checkpoint, the sidecar agrees with the store, and appending goes on
(no fork). T13: an unsigned tail is reported as "N entries ... not covered" and never holds an
acknowledged event. T19: a second writer process is refused with the holder's PID; a writer
that bypasses the lock is stopped by the head compare-and-swap (FORK).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pytest

from monitoring.audit.alarms import AlarmKind
from monitoring.audit.errors import LedgerAlarmError, LedgerLockedError
from monitoring.audit.faults import FAULT_ENV, FAULT_POINTS
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.verify import key_history, verify_full
from tests.support.audit_files import LedgerFiles

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os, sys, threading
    from pathlib import Path
    from monitoring.audit.ledger import Ledger

    db, key, kek, point, before, after = sys.argv[1:7]
    ledger = Ledger.open(Path(db), key_path=Path(key), kek_path=Path(kek), batch_ms=2.0)
    out = threading.Lock()

    def acked(seq):
        with out:
            sys.stdout.write(f"{seq}\\n")
            sys.stdout.flush()

    def event(i):
        if i % 2:
            return {"event_type": "authentication", "action": "login", "user_id": f"u{i % 7}",
                    "details": {"ip_address": f"10.0.0.{i % 250}", "success": True}}
        return {"event_type": "system", "action": "tick", "details": {"i": i}}

    def producer(start, n):
        for i in range(start, start + n):
            acked(ledger.append(event(i)).seq)

    threads = [threading.Thread(target=producer, args=(p * 1000, int(before)))
               for p in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    os.environ[sys.argv[7]] = point  # from here on the writer dies at this step
    futures = [ledger.submit(event(10_000 + i)) for i in range(int(after))]
    for f in futures:
        f.add_done_callback(lambda f: acked(f.result().seq))
    ledger.flush()
    print("SURVIVED", flush=True)
""")


class Files(LedgerFiles):
    """The shared test ledger files on the real clock (the children use it too)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sidecar = Sidecar(self.db.with_name(self.db.name + ".checkpoints"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MONITORING_AUDIT")}
        self.env["PYTHONPATH"] = str(ROOT)
        self.env["XDG_CONFIG_HOME"] = str(self.root / "config-home")

    def clock(self) -> int:
        return time.time_ns()

    def child(self, point: str, before: int = 10, after: int = 60
              ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", CHILD, str(self.db), str(self.key), str(self.kek), point,
             str(before), str(after), FAULT_ENV],
            cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def check_recovered(files: Files, acked: set[int]) -> int:
    """Reopen, verify everything, append once more; returns the size before that append."""
    with files.open() as ledger:  # raises LedgerAlarmError on ROLLBACK / FORK / TAMPERED
        storage = ledger.storage
        size = storage.size()
        assert storage.head_size() == size  # no entry left outside a checkpoint
        present = {e.seq for e in storage.entries(0, size)}
        assert acked <= present, sorted(acked - present)
        report = verify_full(storage, files.sidecar, (), key_history(storage))
        assert report.ok, report.reason
        assert report.uncovered == 0 and report.entries == size
        records = files.sidecar.read()
        assert records[-1].size == size
        assert [r.size for r in records] == [cp.size for cp in storage.checkpoints()]
        more = ledger.append({"event_type": "system", "action": "after.crash"})
        assert more.seq == size
    return size


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_t40_kill_at_each_step_of_the_commit_path(files: Files, point: str) -> None:
    files.open().close()  # created (genesis) without a fault
    done = files.child(point)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "SURVIVED" not in done.stdout
    acked = {int(line) for line in done.stdout.split()}
    assert acked == set(range(1, 31))  # the 30 events before the fault; none after it
    size = check_recovered(files, acked)
    if point == "before_commit":
        assert size == 31  # the batch being written was rolled back
    else:
        assert size > 31  # committed; the store is ahead of what was acknowledged


def test_t40_kill_after_commit_leaves_the_sidecar_behind_and_open_repairs_it(
        files: Files) -> None:
    files.open().close()
    done = files.child("after_commit", before=2, after=5)
    assert done.returncode == -signal.SIGKILL
    conn = duckdb.connect(str(files.db), read_only=True)
    stored = [r[0] for r in conn.execute("SELECT size FROM audit_checkpoints ORDER BY size")
              .fetchall()]
    conn.close()
    assert files.sidecar.read()[-1].size < stored[-1]  # the crash window itself
    check_recovered(files, {int(line) for line in done.stdout.split()})


@pytest.mark.parametrize("point", FAULT_POINTS)
def test_t40_kill_while_creating_the_ledger(files: Files, point: str) -> None:
    script = ("import sys; from pathlib import Path; from monitoring.audit.ledger import "
              "Ledger; Ledger.open(Path(sys.argv[1]), key_path=Path(sys.argv[2]), "
              "kek_path=Path(sys.argv[3]))")
    done = subprocess.run([sys.executable, "-c", script, str(files.db), str(files.key),
                           str(files.kek)], cwd=ROOT, env={**files.env, FAULT_ENV: point},
                          capture_output=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    # Tables and genesis are one transaction: no ledger at all, or one with its genesis.
    conn = duckdb.connect(str(files.db), read_only=True)
    tables = {r[0] for r in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    conn.close()
    assert ("audit_meta" in tables) == (point != "before_commit")
    check_recovered(files, set())


# ---------------------------------------------------------------------- T13


def test_t13_unsigned_tail_is_reported_and_never_holds_acked_events(files: Files) -> None:
    done = files.child("before_commit", before=5, after=20)
    assert done.returncode == -signal.SIGKILL
    acked = {int(line) for line in done.stdout.split()}
    with files.open() as ledger:
        assert ledger.storage.size() == ledger.storage.head_size()  # nothing unsigned
        assert acked <= {e.seq for e in ledger.storage.entries(0, ledger.size)}
        size = ledger.size
    # An unsigned tail as a writer that commits entries before signing would leave it
    # (ours never does): two entry rows past the newest checkpoint.
    conn = duckdb.connect(str(files.db))
    conn.execute("INSERT INTO audit_entries SELECT seq + 2, ts_us, category, action, severity,"
                 " resource, outcome, actor, correlation_id, retention, envelope, leaf "
                 "FROM audit_entries WHERE seq >= ? - 2", [size])
    conn.execute("CHECKPOINT")
    from monitoring.audit.storage import LedgerStorage

    storage = LedgerStorage(conn)
    report = verify_full(storage, files.sidecar, (), key_history(storage))
    conn.close()
    assert not report.ok
    assert report.uncovered == 2
    assert f"2 entries (seqs {size}..{size + 1}) are not covered by any signed checkpoint" in (
        " ".join(report.problems) + report.reason)
    assert not acked & {size, size + 1}


# ---------------------------------------------------------------------- T19


HOLDER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from monitoring.audit.ledger import Ledger
    ledger = Ledger.open(Path(sys.argv[1]), key_path=Path(sys.argv[2]),
                         kek_path=Path(sys.argv[3]))
    print("ready", flush=True)
    sys.stdin.read()
    ledger.close()
""")


def test_t19_second_writer_process_is_refused_naming_the_holder(files: Files) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(files.db), str(files.key),
                               str(files.kek)], cwd=ROOT, env=files.env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        with pytest.raises(LedgerLockedError) as info:
            files.open()
        assert f"already open for writing by process {holder.pid}" in str(info.value)
        second = subprocess.run(
            [sys.executable, "-m", "monitoring", "audit", "append", "--db", str(files.db),
             "--key", str(files.key), "--kek", str(files.kek)],
            input='{"event_type": "system", "action": "x"}\n', cwd=ROOT, env=files.env,
            capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 2
        assert f"by process {holder.pid}" in second.stderr
    finally:
        holder.communicate("", timeout=60)
    assert holder.returncode == 0
    with files.open() as ledger:  # released when the holder closed
        assert ledger.size == 1


def test_t19_a_writer_that_bypasses_the_lock_is_stopped_by_the_head_cas(files: Files,
                                                                        tmp_path: Path) -> None:
    first = files.open(batch_ms=1.0)
    # A second writer on the same store that does not share the lock file (a misconfigured
    # instance); in one process DuckDB lets both connect.
    second = files.open(batch_ms=1.0, lock_path=tmp_path / "elsewhere.lock")
    try:
        assert first.append({"event_type": "system", "action": "one"}).seq == 1
        with pytest.raises(LedgerAlarmError) as info:
            second.append({"event_type": "system", "action": "two"})
        assert info.value.alarms[0].kind is AlarmKind.FORK
        assert second.failed is not None
        assert first.append({"event_type": "system", "action": "three"}).seq == 2
    finally:
        second.close()
        first.close()
    with files.open() as ledger:
        report = verify_full(ledger.storage, files.sidecar, (), key_history(ledger.storage))
        assert report.ok, report.reason
        assert ledger.size == 3
