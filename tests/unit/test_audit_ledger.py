"""The ledger core: storage, the group-commit writer, the sidecar, the lock, clock clamping.

Real DuckDB files in a temporary folder (one per test); keys in files of mode 0600, so no
test touches the user's config folder.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.audit.alarms import AlarmKind
from monitoring.audit.cli import load_policy
from monitoring.audit.envelope import AuditEvent, parse_envelope
from monitoring.audit.errors import (
    AuditError,
    EventError,
    LedgerAlarmError,
    LedgerLockedError,
    SigningKeyError,
)
from monitoring.audit.faults import FAULT_ENV
from monitoring.audit.keys import SigningKey, write_key_file
from monitoring.audit.ledger import Ledger, alog_audit_event, log_audit_event
from monitoring.audit.lock import WriterLock
from monitoring.audit.merkle import (
    leaf_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from monitoring.audit.note import open_checkpoint
from monitoring.audit.sidecar import Sidecar, SidecarError
from monitoring.audit.storage import LedgerStorage
from tests.support.audit_files import LedgerFiles

LOGIN = {"event_type": "authentication", "action": "login", "user_id": "user123",
         "severity": "info", "resource": "auth",
         "details": {"ip_address": "192.168.1.1", "success": True}}
RULE = {"event_type": "system", "action": "rule.evaluated", "resource": "rules",
        "details": {"rule": "high_error_rate"}}


class Files(LedgerFiles):
    """The shared test ledger files (fake clock at ``now_ms``), plus the sidecar."""

    @property
    def sidecar(self) -> Path:
        return self.db.with_name(self.db.name + ".checkpoints")

    def sidecar_sizes(self) -> list[int]:
        return [r.size for r in Sidecar(self.sidecar).read()]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def ledger(files: Files) -> Iterator[Ledger]:
    with files.open() as opened:
        yield opened


def policy_folder(tmp_path: Path, text: str) -> Any:
    folder = tmp_path / "config"
    folder.mkdir()
    (folder / "audit_filters.yaml").write_text(text)
    return load_policy(str(folder))


def envelope(ledger: Ledger, seq: int) -> dict[str, Any]:
    entry = ledger.storage.entry(seq)
    assert entry is not None
    return parse_envelope(entry.envelope)


# ---------------------------------------------------------------------- basics


def test_new_ledger_has_a_signed_genesis_entry(files: Files, ledger: Ledger) -> None:
    genesis = envelope(ledger, 0)
    assert (genesis["category"], genesis["action"]) == ("system", "ledger.open")
    assert genesis["data"] == {"origin": ledger.origin, "vkey": ledger.key.vkey()}
    assert ledger.origin.startswith("monitoring.local/audit/")
    assert ledger.key.name == ledger.origin  # the key file's name was replaced by the origin
    cp = ledger.storage.latest_checkpoint()
    assert cp is not None and cp.size == 1
    opened, signers = open_checkpoint(cp.note, [ledger.key.verifier()], ledger.origin)
    assert opened.root == cp.root == leaf_hash(ledger.storage.entry(0).envelope)  # type: ignore[union-attr]
    assert signers == [ledger.key.verifier()]
    assert files.sidecar_sizes() == [1]


def test_append_is_durable_and_covered_by_a_checkpoint(files: Files) -> None:
    with files.open() as ledger:
        first = ledger.append(LOGIN)
        second = log_audit_event(ledger, **RULE)
        origin = ledger.origin
    assert (first.seq, first.recorded, first.checkpoint_size) == (1, True, 2)
    assert (second.seq, second.checkpoint_size) == (2, 3)
    with files.open() as ledger:
        assert ledger.origin == origin
        assert ledger.size == 3
        entries = ledger.storage.entries(0, 10)
        assert [e.seq for e in entries] == [0, 1, 2]
        cp = ledger.storage.latest_checkpoint()
        assert cp is not None
        assert root_from_leaves([leaf_hash(e.envelope) for e in entries]) == cp.root
        assert files.sidecar_sizes() == [1, 2, 3]
        sidecar = Sidecar(files.sidecar).latest()
        assert sidecar is not None and sidecar.note == cp.note


def test_personal_data_is_sealed_not_in_the_envelope(ledger: Ledger) -> None:
    appended = ledger.append(LOGIN)
    assert appended.seq is not None
    entry = ledger.storage.entry(appended.seq)
    assert entry is not None
    for plain in (b"user123", b"192.168.1.1"):
        assert plain not in entry.envelope
    fields = parse_envelope(entry.envelope)
    assert fields["data"] is None and fields["pii"]["ref"] == fields["actor"] == entry.actor
    assert ledger.personal(appended.seq) == {
        "user_id": "user123", "source": None,
        "details": {"ip_address": "192.168.1.1", "success": True}}
    plain_event = ledger.append(RULE)
    assert plain_event.seq is not None
    assert envelope(ledger, plain_event.seq)["data"] == {"rule": "high_error_rate"}
    assert ledger.personal(plain_event.seq) is None


def test_concurrent_producers_get_contiguous_unique_seqs(files: Files) -> None:
    seqs: list[int] = []
    lock = threading.Lock()

    with files.open(batch_ms=5.0) as ledger:
        def produce(n: int) -> None:
            futures = [ledger.submit({**RULE, "details": {"n": n, "i": i}}) for i in range(50)]
            got = [f.result().seq for f in futures]
            with lock:
                seqs.extend(s for s in got if s is not None)

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        checkpoints = ledger.storage.checkpoints()
    assert sorted(seqs) == list(range(1, 201))
    # group commit: far fewer checkpoints than events
    assert len(checkpoints) < 100
    assert files.sidecar_sizes() == [cp.size for cp in checkpoints]


def test_append_many_is_one_batch(ledger: Ledger) -> None:
    before = len(ledger.storage.checkpoints())
    results = ledger.append_many([RULE, LOGIN, RULE])
    assert [r.seq for r in results] == [1, 2, 3]
    assert {r.checkpoint_size for r in results} == {4}
    assert len(ledger.storage.checkpoints()) == before + 1


def test_append_many_fails_whole_when_one_event_lacks_a_required_field(
        tmp_path: Path, files: Files) -> None:
    policy = policy_folder(tmp_path, "compliance: [pci_dss]\n")
    with files.open(policy=policy) as ledger:
        complete = {**LOGIN, "source": "192.168.1.1", "outcome": "success"}
        with pytest.raises(EventError) as info:
            ledger.append_many([complete, {**complete, "resource": None}])
        assert info.value.field == "[1].resource"
        assert "pci" in str(info.value).lower() or "compliance" in str(info.value)
        assert ledger.size == 1
        assert ledger.append(complete).recorded


def test_a_bad_event_fails_alone_and_the_batch_goes_on(ledger: Ledger) -> None:
    bad = ledger.submit({**RULE, "retention": "no-such-class"})
    good = ledger.submit(RULE)
    with pytest.raises(EventError) as info:
        bad.result()
    assert info.value.field == "retention"
    assert good.result().seq == 1
    assert ledger.failed is None
    assert ledger.append(RULE).seq == 2


def test_malformed_events_are_refused_at_submit_naming_the_field(ledger: Ledger) -> None:
    with pytest.raises(EventError) as info:
        ledger.submit({**RULE, "details": {"latency": 0.5}})
    assert "details.latency" in str(info.value)
    with pytest.raises(EventError) as info:
        ledger.append({"event_type": "nope", "action": "x"})
    assert info.value.field == "event_type"


def test_filtered_events_resolve_unrecorded_with_the_reason(tmp_path: Path, files: Files) -> None:
    policy = policy_folder(tmp_path, 'authentication:\n  min_severity: "warning"\n')
    with files.open(policy=policy) as ledger:
        dropped = ledger.append({**LOGIN, "severity": "info"})
        kept = ledger.append({**LOGIN, "severity": "error"})
        assert (dropped.seq, dropped.recorded, dropped.checkpoint_size) == (None, False, 1)
        assert "below min_severity warning" in dropped.reason
        assert (kept.seq, kept.recorded) == (1, True)
        assert ledger.storage.entry_count() == 2


def test_async_log_audit_event_returns_once_durable(ledger: Ledger) -> None:
    async def main() -> list[Any]:
        one = await ledger.log_audit_event(**LOGIN)
        two = await alog_audit_event(ledger, **RULE)
        three = await ledger.log(AuditEvent("security", "scan"))
        return [one, two, three]

    results = asyncio.run(main())
    assert [r.seq for r in results] == [1, 2, 3]
    assert ledger.storage.head_size() == 4


def test_flush_waits_for_queued_events(files: Files) -> None:
    with files.open(batch_ms=10_000.0) as ledger:  # only flush or a full batch commits
        futures = [ledger.submit(RULE) for _ in range(3)]
        ledger.flush()
        assert all(f.done() for f in futures)
        assert ledger.storage.head_size() == 4


def test_close_commits_what_is_queued_and_refuses_more(files: Files) -> None:
    ledger = files.open(batch_ms=10_000.0)
    future = ledger.submit(RULE)
    ledger.close()
    assert future.result().seq == 1
    with pytest.raises(AuditError, match="closed"):
        ledger.append(RULE)
    ledger.close()  # idempotent


def test_proofs_verify_against_the_signed_checkpoints(ledger: Ledger) -> None:
    for i in range(6):
        ledger.append_many([{**RULE, "details": {"i": i, "j": j}} for j in range(i + 1)])
    checkpoints = ledger.storage.checkpoints()
    for cp in checkpoints:
        for seq in range(cp.size):
            entry = ledger.storage.entry(seq)
            assert entry is not None
            verify_inclusion(leaf_hash(entry.envelope), seq, cp.size,
                             ledger.inclusion_proof(seq, cp.size), cp.root)
    for old in checkpoints:
        for new in checkpoints:
            if old.size <= new.size:
                verify_consistency(old.size, new.size, old.root, new.root,
                                   ledger.consistency_proof(old.size, new.size))
    with pytest.raises(AuditError, match="not in the tree"):
        ledger.inclusion_proof(99)


def test_shares_an_existing_connection(files: Files) -> None:
    conn = duckdb.connect(str(files.db))
    conn.execute("CREATE TABLE metrics (ts BIGINT)")
    with Ledger.open(conn, key_path=files.key, kek_path=files.kek, batch_ms=1.0) as ledger:
        ledger.append(RULE)
        conn.execute("INSERT INTO metrics VALUES (1)")
        assert ledger.paths.sidecar == files.sidecar
    assert conn.execute("SELECT count(*) FROM audit_entries").fetchall() == [(2,)]
    assert conn.execute("SELECT count(*) FROM metrics").fetchall() == [(1,)]
    conn.close()


def test_in_memory_store_needs_an_explicit_sidecar(files: Files) -> None:
    conn = duckdb.connect()
    with pytest.raises(AuditError, match="sidecar"):
        Ledger.open(conn, key_path=files.key, kek_path=files.kek)
    with Ledger.open(conn, key_path=files.key, kek_path=files.kek,
                     sidecar=files.root / "mem.checkpoints") as ledger:
        assert ledger.append(RULE).seq == 1
    assert Sidecar(files.root / "mem.checkpoints").latest().size == 2  # type: ignore[union-attr]
    conn.close()


def test_unknown_fault_point_is_a_clear_error(files: Files, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    monkeypatch.setenv(FAULT_ENV, "after_lunch")
    with pytest.raises(AuditError, match=r"after_lunch.*before_commit"):
        files.open()


# ---------------------------------------------------------------------- T42: clock


def test_t42_clock_backwards_is_clamped_and_recorded(files: Files) -> None:
    files.now_ms = 1_800_000_000_000
    with files.open() as ledger:
        ledger.append(RULE)  # seq 1 at t0
        files.now_ms -= 500  # half a second back: clamped, not recorded
        ledger.append(RULE)  # seq 2
        files.now_ms = 1_799_999_990_000  # ten seconds back: clamped and recorded
        ledger.append(RULE)  # seq 3 is clock.backwards, seq 4 the event
        files.now_ms += 1000  # still behind the newest entry, but the clock moved on
        ledger.append(RULE)  # seq 5
        files.now_ms = 1_800_000_100_000  # forwards
        ledger.append(RULE)  # seq 6
        rows = [envelope(ledger, s) for s in range(7)]
    t0 = 1_800_000_000_000_000
    assert [r["ts"] for r in rows[1:]] == [t0, t0, t0, t0, t0, 1_800_000_100_000_000]
    actions = [r["action"] for r in rows]
    assert actions == ["ledger.open", "rule.evaluated", "rule.evaluated", "clock.backwards",
                       "rule.evaluated", "rule.evaluated", "rule.evaluated"]
    clock_event = rows[3]
    assert clock_event["category"] == "system" and clock_event["severity"] == "warning"
    assert clock_event["data"]["behind_us"] == 9_500_000
    assert clock_event["data"]["clock_us"] == 1_799_999_990_000_000


def test_t42_clock_behind_the_stored_ledger_at_open_is_recorded(files: Files) -> None:
    files.now_ms = 1_800_000_000_000
    with files.open() as ledger:
        ledger.append(RULE)
    files.now_ms = 1_700_000_000_000
    with files.open() as ledger:
        appended = ledger.append(RULE)
        assert appended.seq == 3
        assert envelope(ledger, 2)["action"] == "clock.backwards"
        assert envelope(ledger, 3)["ts"] == 1_800_000_000_000_000


# ---------------------------------------------------------------------- CAS / FORK


def test_head_changed_behind_the_writer_is_a_fork_and_signing_stops(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
        latest = ledger.storage.latest_checkpoint()
        assert latest is not None
        other = ledger.storage.conn.cursor()
        # Another writer (bypassing the lock) committed a checkpoint of its own.
        other.execute("INSERT INTO audit_checkpoints VALUES (?, ?, ?, ?)",
                      [latest.size + 1, b"\x11" * 32, "forged", 0])
        other.close()
        with pytest.raises(LedgerAlarmError) as info:
            ledger.append(RULE)
        alarm = info.value.alarms[0]
        assert alarm.kind is AlarmKind.FORK
        assert "changed behind the writer" in alarm.message
        assert alarm.evidence["store_size"] == str(latest.size + 1)
        assert isinstance(ledger.failed, LedgerAlarmError)
        with pytest.raises(LedgerAlarmError):  # nothing more is signed
            ledger.append(RULE)
        assert ledger.storage.entry_count() == 2
    assert files.sidecar_sizes() == [1, 2]


def test_same_size_different_root_is_a_fork(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
        cur = ledger.storage.conn.cursor()
        cur.execute("UPDATE audit_checkpoints SET root = ? WHERE size = 2", [b"\x22" * 32])
        cur.close()
        with pytest.raises(LedgerAlarmError, match="different root"):
            ledger.append(RULE)


# ---------------------------------------------------------------------- lock (T19 in-process)


def test_t19_second_ledger_in_the_same_process_is_refused(files: Files, ledger: Ledger
                                                          ) -> None:
    with pytest.raises(LedgerLockedError) as info:
        files.open()
    assert f"process {os.getpid()} (this process)" in str(info.value)
    assert ledger.append(RULE).seq == 1  # the first one is unaffected


def test_lock_is_released_on_close_and_on_failed_open(files: Files) -> None:
    files.open().close()
    with files.open() as ledger:
        ledger.append(RULE)
    bad_key = files.key.parent / "other.key"
    write_key_file(bad_key, SigningKey.generate("x"))
    with pytest.raises(SigningKeyError, match="not this ledger's current key"):
        Ledger.open(files.db, key_path=bad_key, kek_path=files.kek)
    with files.open() as ledger:  # the failed open released the lock
        assert ledger.size == 2


def test_writer_lock_file_names_the_holder(tmp_path: Path) -> None:
    first = WriterLock(tmp_path / "x.lock")
    first.acquire()
    assert (tmp_path / "x.lock").read_text() == f"{os.getpid()}\n"
    with pytest.raises(LedgerLockedError, match=str(os.getpid())):
        WriterLock(tmp_path / "x.lock").acquire()
    first.release()
    second = WriterLock(tmp_path / "x.lock")
    second.acquire()
    assert second.held
    second.release()


# ---------------------------------------------------------------------- key rotation


def test_rotate_key_switches_signers_at_the_rotation_size(files: Files) -> None:
    new_path = files.key.parent / "new.key"
    write_key_file(new_path, SigningKey.generate("whatever"))
    with files.open() as ledger:
        ledger.append(RULE)
        old = ledger.key.verifier()
        rotated = ledger.rotate_key(SigningKey(ledger.origin, SigningKey.generate("n").private))
        assert rotated.seq == 2 and rotated.checkpoint_size == 3
        new = ledger.key.verifier()
        ledger.append(RULE)
        fields = envelope(ledger, 2)
        assert (fields["category"], fields["action"]) == ("system", "key.rotate")
        assert fields["data"]["old_vkey"] == old.vkey()
        assert fields["data"]["new_vkey"] == new.vkey()
        notes = {cp.size: cp.note for cp in ledger.storage.checkpoints()}
        origin = ledger.origin
        seed = ledger.key.seed()
    for size, note in notes.items():
        signer = old if size <= 3 else new
        _, signers = open_checkpoint(note, [old, new], origin)
        assert signers == [signer], size
    with pytest.raises(SigningKeyError, match="not this ledger's current key"):
        files.open()  # the old key no longer opens it
    write_key_file(new_path.with_name("current.key"), SigningKey.from_seed("x", seed))
    with Ledger.open(files.db, key_path=new_path.with_name("current.key"),
                     kek_path=files.kek) as ledger:
        assert ledger.history is not None
        assert [w.valid_to for w in ledger.history.windows] == [3, None]
        assert ledger.append(RULE).seq == 4


# ---------------------------------------------------------------------- sidecar (T41)


def test_sidecar_records_round_trip(tmp_path: Path) -> None:
    sidecar = Sidecar(tmp_path / "s.checkpoints")
    assert sidecar.scan().exists is False and sidecar.latest() is None
    sidecar.append(1, b"\x01" * 32, "note one\n")
    sidecar.append(2, b"\x02" * 32, "note two\n")
    sidecar.close()
    records = sidecar.read()
    assert [(r.size, r.root, r.note, r.line) for r in records] == [
        (1, b"\x01" * 32, "note one\n", 1), (2, b"\x02" * 32, "note two\n", 2)]
    line = json.loads((tmp_path / "s.checkpoints").read_text().splitlines()[0])
    assert line == {"size": 1, "root": base64.b64encode(b"\x01" * 32).decode(),
                    "note": "note one\n"}


def test_t41_torn_final_line_is_ignored_reported_and_truncated(tmp_path: Path) -> None:
    path = tmp_path / "s.checkpoints"
    sidecar = Sidecar(path)
    sidecar.append(1, b"\x01" * 32, "n1\n")
    sidecar.close()
    whole = path.read_bytes()
    path.write_bytes(whole + b'{"size":2,"root":"AQ')  # a write cut short by a crash
    scan = sidecar.scan()
    assert [r.size for r in scan.records] == [1]
    assert scan.torn == '{"size":2,"root":"AQ' and scan.errors == []
    with pytest.raises(SidecarError, match="torn"):
        sidecar.append(2, b"\x02" * 32, "n2\n")  # never glue a record onto a torn line
    assert sidecar.truncate_torn() == '{"size":2,"root":"AQ'
    assert path.read_bytes() == whole
    assert sidecar.truncate_torn() is None
    sidecar.append(2, b"\x02" * 32, "n2\n")
    assert [r.size for r in sidecar.read()] == [1, 2]


def test_t41_ledger_open_repairs_a_torn_sidecar_line(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
    whole = files.sidecar.read_bytes()
    # A crash in the middle of appending the line of checkpoint 2 (committed, never acked).
    files.sidecar.write_bytes(whole[:len(whole) - 40])
    assert Sidecar(files.sidecar).scan().torn is not None
    with files.open() as ledger:
        assert files.sidecar.read_bytes() == whole  # cut off, then restored from the store
        assert ledger.append(RULE).seq == 2
    scan = Sidecar(files.sidecar).scan()
    assert scan.torn is None and [r.size for r in scan.records] == [1, 2, 3]


def test_t41_torn_line_that_is_no_checkpoint_of_the_store_is_an_alarm(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
    with files.sidecar.open("ab") as f:
        f.write(b'{"size":3,"ro')  # size 3 was never committed: not a cut-short write of ours
    with pytest.raises(LedgerAlarmError) as info:
        files.open()
    assert info.value.alarms[0].kind is AlarmKind.SIDECAR_CORRUPT


def test_sidecar_corrupt_complete_line_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "s.checkpoints"
    Sidecar(path).append(1, b"\x01" * 32, "n1\n")
    with path.open("a") as f:
        f.write('{"size": 2, "root": "not base64!", "note": "x"}\n')
        f.write("garbage\n")
    scan = Sidecar(path).scan()
    assert [r.size for r in scan.records] == [1]
    assert scan.errors[0] == f"{path}:2: root: not valid base64"
    assert scan.errors[1].startswith(f"{path}:3: not a JSON object")
    with pytest.raises(SidecarError, match=r":2: root: not valid base64 \(and 1 more\)"):
        Sidecar(path).read()


def test_store_ahead_of_sidecar_is_repaired_after_checking_signatures(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
        ledger.append(RULE)
    lines = files.sidecar.read_text().splitlines(keepends=True)
    files.sidecar.write_text("".join(lines[:1]))  # as if we crashed before two appends
    with files.open() as ledger:
        assert files.sidecar_sizes() == [1, 2, 3]
        assert files.sidecar.read_text() == "".join(lines)
        ledger.append(RULE)
    assert files.sidecar_sizes() == [1, 2, 3, 4]


def test_store_checkpoint_with_a_bad_signature_is_not_copied(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
        cp = ledger.storage.latest_checkpoint()
    assert cp is not None
    files.sidecar.write_text(files.sidecar.read_text().splitlines(keepends=True)[0])
    body, _, signature = cp.note.rpartition("\n\u2014 ")
    name, _, sig = signature.strip().partition(" ")
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    forged = f"{body}\n\u2014 {name} {base64.b64encode(bytes(raw)).decode()}\n"
    conn = duckdb.connect(str(files.db))
    conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 2", [forged])
    conn.close()
    with pytest.raises(AuditError):
        files.open()
    assert files.sidecar_sizes() == [1]


# ---------------------------------------------------------------------- storage


def test_storage_reads_on_a_read_only_connection(files: Files) -> None:
    with files.open() as ledger:
        ledger.append_many([RULE, LOGIN, RULE])
        origin = ledger.origin
    conn = duckdb.connect(str(files.db), read_only=True)
    try:
        assert LedgerStorage.exists(conn)
        storage = LedgerStorage(conn)
        assert storage.origin == origin and storage.size() == 4 == storage.head_size()
        seqs, envelopes, leaves = storage.envelopes(1, 3)
        assert seqs == [1, 2] and [leaf_hash(e) for e in envelopes] == leaves
        assert storage.envelopes(10, 20) == ([], [], [])
        assert storage.frontier().root() == storage.latest_checkpoint().root  # type: ignore[union-attr]
        assert storage.node(0, 1) == leaves[0]
        assert storage.node(2, 0) == root_from_leaves([storage.node(0, i) for i in range(4)])
        assert [r[:2] for r in storage.node_rows()] == [(1, 0), (1, 1), (2, 0)]
        assert storage.pii(2) is not None and storage.pii(1) is None
        assert storage.checkpoint(2) is None and storage.checkpoint(4) is not None
    finally:
        conn.close()


def test_storage_refuses_a_store_without_a_ledger(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "plain.duckdb"))
    assert not LedgerStorage.exists(conn)
    with pytest.raises(AuditError, match="no audit ledger"):
        LedgerStorage(conn)
    conn.close()


def test_pruned_envelopes_read_as_empty_bytes(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
    conn = duckdb.connect(str(files.db))
    conn.execute("UPDATE audit_entries SET envelope = NULL WHERE seq = 1")
    storage = LedgerStorage(conn)
    entry = storage.entry(1)
    assert entry is not None and entry.envelope == b"" and len(entry.leaf) == 32
    assert storage.envelopes(0, 2)[1][1] == b""
    conn.close()


def test_commit_listener_runs_after_each_durable_batch(ledger: Ledger) -> None:
    seen: list[int] = []
    ledger.on_commit(lambda cp, note: seen.append(cp.size))

    def broken(_cp: Any, _note: str) -> None:
        raise RuntimeError("anchor down")

    ledger.on_commit(broken)
    ledger.append(RULE)
    ledger.append(RULE)
    assert seen == [2, 3]
    assert [str(e) for e in ledger.listener_errors] == ["anchor down", "anchor down"]


@pytest.mark.parametrize("call", ["append", "exclusive"])
def test_a_listener_waiting_on_the_ledger_gets_an_error_not_a_deadlock(ledger: Ledger,
                                                                       call: str) -> None:
    errors: list[BaseException] = []

    def waits(_cp: Any, _note: str) -> None:
        try:
            if call == "append":
                ledger.append(RULE)
            else:
                ledger.exclusive(lambda cur: None)
        except AuditError as exc:
            errors.append(exc)

    ledger.on_commit(waits)
    ledger.append(RULE)
    assert "cannot wait for its own commits" in str(errors[0])


def test_newest_checkpoint_is_right_after_deletes_and_a_reopen(files: Files) -> None:
    """DuckDB 2.0.1's top-N (ORDER BY size DESC LIMIT 1) returns an older row once rows were
    deleted and others inserted after a reopen; the storage must not rely on it (this is what
    a truncate-and-continue attacker, T16, leaves behind)."""
    with files.open() as ledger:
        for _ in range(5):
            ledger.append(RULE)  # checkpoints 1..6
    files.sql("DELETE FROM audit_checkpoints WHERE size > 3",
              "DELETE FROM audit_entries WHERE seq >= 3")
    conn = duckdb.connect(str(files.db))
    try:
        conn.execute("INSERT INTO audit_checkpoints VALUES (4, '\\x01'::BLOB, 'n4', 0)")
        top = conn.execute("SELECT size FROM audit_checkpoints ORDER BY size DESC LIMIT 1"
                           ).fetchall()
        storage = LedgerStorage(conn)
        newest = storage.latest_checkpoint()
        assert newest is not None and (newest.size, newest.note) == (4, "n4")
        assert storage.head_size() == 4
        # The DuckDB behaviour this guards against (if it is fixed, this line says so).
        assert top in ([(3,)], [(4,)])  # [(3,)] with DuckDB 2.0.1
    finally:
        conn.close()


# -- exclusive work on the write cursor -------------------------------------------------------


def test_exclusive_runs_on_the_committer_after_queued_events(files: Files) -> None:
    with files.open(batch_ms=10_000.0) as ledger:  # only a full batch or urgent work commits
        queued = [ledger.submit({**RULE, "details": {"i": i}}) for i in range(3)]

        def count(cur: duckdb.DuckDBPyConnection) -> tuple[int, str]:
            row = cur.execute("SELECT count(*) FROM audit_entries").fetchone()
            assert row is not None
            return int(row[0]), threading.current_thread().name

        rows, thread = ledger.exclusive(count)
        assert rows == 4  # genesis + the three queued before the call
        assert all(f.done() for f in queued)
        assert thread.startswith("audit-commit")
        assert ledger.append(RULE).seq == 4


def test_exclusive_error_reaches_the_caller_and_the_writer_goes_on(ledger: Ledger) -> None:
    def fails(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("BEGIN TRANSACTION")
        cur.execute("DELETE FROM audit_pii")
        raise ValueError("maintenance broke")

    with pytest.raises(ValueError, match="maintenance broke"):
        ledger.exclusive(fails)
    assert ledger.failed is None
    assert ledger.append(LOGIN).seq == 1  # the open transaction was rolled back
    assert ledger.storage.pii(1) is not None


def test_pruned_row_keeps_only_seq_and_leaf_without_schema_changes(files: Files) -> None:
    with files.open() as ledger:
        ledger.append(RULE)
        ledger.append(RULE)
    payload = ("envelope", "ts_us", "category", "action", "severity", "resource", "outcome",
               "actor", "correlation_id", "retention")
    files.sql(f"UPDATE audit_entries SET {', '.join(c + ' = NULL' for c in payload)} "
              "WHERE seq = 2")
    conn = duckdb.connect(str(files.db), read_only=True)
    try:
        entry = LedgerStorage(conn).entry(2)
        newest = LedgerStorage(conn).newest_ts_us()
    finally:
        conn.close()
    assert entry is not None and len(entry.leaf) == 32 and entry.envelope == b""
    assert all(getattr(entry, c) is None for c in payload if c != "envelope")
    assert newest == files.now_ms * 1000  # seq 1's: the pruned newest row does not matter
    with files.open() as ledger:  # the writer's clamp starts from the newest stored ts
        assert ledger.append(RULE).seq == 3


# -- correlation ids from the producer's context ----------------------------------------------


def test_correlation_id_is_filled_from_the_producers_context(ledger: Ledger) -> None:
    from monitoring.audit.context import correlation

    def envelope_of(seq: int | None) -> dict[str, Any]:
        assert seq is not None
        entry = ledger.storage.entry(seq)
        assert entry is not None
        return parse_envelope(entry.envelope)

    async def notify(channel: str) -> int | None:
        sent = await ledger.log({"event_type": "notification", "action": "sent",
                                 "resource": channel})
        return sent.seq

    async def alert_flow() -> tuple[str, list[int | None]]:
        with correlation() as cid:
            fired = ledger.append({"event_type": "alert", "action": "firing",
                                   "resource": "high_error_rate"})
            sent = await asyncio.gather(notify("slack"), notify("email"))
            explicit = ledger.append(AuditEvent("acknowledgement", "ack",
                                                correlation_id="ticket-7"))
            login = ledger.append(LOGIN)  # a subject's event: the id stays in the clear
        return cid, [fired.seq, *sent, explicit.seq, login.seq]

    cid, seqs = asyncio.run(alert_flow())
    ids = [envelope_of(s)["correlation_id"] for s in seqs]
    assert ids == [cid, cid, cid, "ticket-7", cid]
    outside = ledger.append(RULE)
    assert envelope_of(outside.seq)["correlation_id"] is None
    with correlation("thread-flow"):
        done = threading.Event()
        result: list[int | None] = []
        # the writer's threads never see the producer's context: the id is taken at submit
        future = ledger.submit(RULE)

        def acked(f: Any) -> None:
            result.append(f.result().seq)
            done.set()

        future.add_done_callback(acked)
    assert done.wait(10)
    assert envelope_of(result[0])["correlation_id"] == "thread-flow"


# -- DuckDB checkpoints -----------------------------------------------------------------------


def checkpoint_threshold(conn: duckdb.DuckDBPyConnection) -> str:
    rows = conn.execute("SELECT value FROM duckdb_settings() WHERE name = "
                        "'checkpoint_threshold'").fetchall()
    return str(rows[0][0])


def test_the_ledger_raises_the_checkpoint_threshold_but_never_lowers_it(files: Files) -> None:
    conn = duckdb.connect(str(files.db))
    try:
        with Ledger.open(conn, key_path=files.key, kek_path=files.kek):
            assert checkpoint_threshold(conn) == "256.0 MiB"
        conn.execute("SET checkpoint_threshold = '1GiB'")
        with Ledger.open(conn, key_path=files.key, kek_path=files.kek):
            assert checkpoint_threshold(conn) == "1.0 GiB"
    finally:
        conn.close()


def test_an_idle_writer_checkpoints_a_large_wal(files: Files) -> None:
    wal = files.db.with_name(files.db.name + ".wal")
    with files.open() as ledger:
        writer = ledger._writer
        writer.idle_checkpoint_bytes = 1  # any WAL is worth a checkpoint here
        writer.idle_checkpoint_s = 0.05
        ledger.append(RULE)
        assert wal.exists() and wal.stat().st_size > 0
        deadline = time.monotonic() + 10
        while writer.idle_checkpoints == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.idle_checkpoints == 1
        assert not wal.exists() or wal.stat().st_size == 0
        time.sleep(0.2)  # nothing committed since: no second checkpoint
        assert writer.idle_checkpoints == 1
        assert ledger.append(RULE).seq == 2


def test_a_busy_writer_does_not_checkpoint_while_idle_time_is_short(files: Files) -> None:
    with files.open() as ledger:
        writer = ledger._writer
        writer.idle_checkpoint_bytes = 1
        writer.idle_checkpoint_s = 60.0
        for _ in range(5):
            ledger.append(RULE)
        assert writer.idle_checkpoints == 0


# -- the writer's memory of policy decisions --------------------------------------------------


def test_remembered_admissions_equal_the_policys_own_decisions(tmp_path: Path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from monitoring.audit.writer import Admissions, admit

    policy = policy_folder(tmp_path, "compliance: [pci_dss]\nauthentication:\n"
                           "  min_severity: warning\n  actions: [login, logout]\n"
                           "system:\n  resources: [rules]\n")
    admissions = Admissions()
    maybe = st.none() | st.sampled_from(["u1", "u2"])

    @settings(max_examples=300, deadline=None)
    @given(st.sampled_from(["authentication", "system", "data_access"]),
           st.sampled_from(["login", "logout", "read", "key.rotate"]),
           st.sampled_from(["info", "warning", "critical"]),
           st.none() | st.sampled_from(["rules", "auth"]), maybe, maybe,
           st.none() | st.sampled_from(["success"]),
           st.none() | st.sampled_from(["standard", "pci_dss", "nope"]))
    def check(category: str, action: str, severity: str, resource: str | None,
              user: str | None, source: str | None, outcome: str | None,
              retention: str | None) -> None:
        ev = AuditEvent(category, action, user_id=user, severity=severity, resource=resource,
                        source=source, outcome=outcome, retention=retention)
        try:
            want: object = admit(policy, ev)
        except EventError as exc:
            want = (exc.field, exc.message)
        try:
            got: object = admissions.admit(policy, ev)
        except EventError as exc:
            got = (exc.field, exc.message)
        assert got == want

    check()
