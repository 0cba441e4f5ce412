"""Tamper cases of the catalogue (T01-T21, T33, T44) against real DuckDB files.

Each test builds a ledger through the real writer, closes it, tampers with the store file by
SQL (or with the sidecar file, or restores an older copy) as the adversaries of docs/audit.md
would, and asserts the specific detection the catalogue names: the first bad seq and the
reason of ``verify_full``, or the alarm kind of the startup check (and that Ledger.open
refuses to sign).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.envelope import AuditEvent, build_envelope
from monitoring.audit.errors import AuditError, LedgerAlarmError
from monitoring.audit.keys import SigningKey
from monitoring.audit.merkle import leaf_hash
from monitoring.audit.note import Checkpoint, sign_checkpoint
from monitoring.audit.recovery import acknowledge, startup_check
from monitoring.audit.sidecar import Sidecar
from tests.support.audit_store import ENTRY_PLACEHOLDERS, Store, event


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path)


@pytest.fixture
def built(store: Store) -> Store:
    """Seqs 0 (genesis) and 1..12 each in a batch of its own, 13..22 in one batch."""
    store.build().close()
    assert store.verify().ok
    return store


def value(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The single value a query returns."""
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def kinds(alarms: list[Alarm]) -> set[AlarmKind]:
    return {a.kind for a in alarms}


def test_honest_ledger_verifies_and_raises_no_alarm(built: Store) -> None:
    report = built.verify()
    assert report.ok, report.problems
    assert (report.entries, report.size, report.uncovered) == (23, 23, 0)
    assert report.checkpoints == 14
    assert built.alarms() == []


# -- entries edited (A1) -----------------------------------------------------------------


def test_t01_flipped_envelope_byte_is_a_leaf_mismatch(built: Store) -> None:
    with built.connect() as conn:
        data = bytearray(value(conn, "SELECT envelope FROM audit_entries WHERE seq = 5"))
        data[len(data) // 2] ^= 0x01
        conn.execute("UPDATE audit_entries SET envelope = ? WHERE seq = 5", [bytes(data)])
    report = built.verify()
    assert not report.ok
    assert report.first_bad_seq == 5
    assert "do not match its stored leaf hash" in report.reason
    assert any("root of the first 6 entries is not the one the checkpoint of size 6 signs"
               in p for p in report.problems)


def test_t02_envelope_and_leaf_edited_is_a_root_mismatch(built: Store) -> None:
    built.rewrite(5, leaf=True, action="logout")
    report = built.verify()
    assert not report.ok
    assert (report.first_bad_seq, report.bad_range) == (5, (5, 6))
    assert "root of the first 6 entries is not the one the checkpoint of size 6 signs" \
        in report.reason


def test_t02_inside_a_batch_names_the_batch(built: Store) -> None:
    built.rewrite(17, leaf=True, action="write")  # seqs 13..22 were one batch
    report = built.verify()
    assert (report.first_bad_seq, report.bad_range) == (13, (13, 23))
    assert "an entry in seqs 13..22 was changed" in report.reason


def test_t03_rewritten_tree_still_fails_the_signed_root(built: Store) -> None:
    built.rewrite(5, leaf=True, action="logout")
    built.rebuild_tree()
    report = built.verify()
    assert (report.first_bad_seq, report.bad_range) == (5, (5, 6))
    assert "checkpoint of size 6 signs" in report.reason
    assert not any("stored tree node" in p for p in report.problems)  # the tree is consistent
    # ...but neither the signed checkpoint nor the sidecar's agrees with it
    alarms = built.alarms(anchors=False)
    assert kinds(alarms) == {AlarmKind.TAMPERED}
    assert "its signed checkpoint says" in alarms[0].message


def test_t04_severity_edited_in_the_envelope_is_a_leaf_mismatch(built: Store) -> None:
    built.rewrite(4, leaf=False, severity="debug", category="system")
    report = built.verify()
    assert report.first_bad_seq == 4
    assert "do not match its stored leaf hash" in report.reason


def test_t04_severity_edited_in_the_search_column_is_caught(built: Store) -> None:
    with built.connect() as conn:
        conn.execute("UPDATE audit_entries SET severity = 'debug' WHERE seq = 4")
    report = built.verify()
    assert report.first_bad_seq == 4
    assert "search column severity differs from the envelope" in report.reason


def test_t05_ts_edited_in_the_envelope(built: Store) -> None:
    earlier = built.envelope(3)["ts"] - 1
    built.rewrite(7, leaf=False, ts=earlier)
    with built.connect() as conn:
        conn.execute("UPDATE audit_entries SET ts_us = ? WHERE seq = 7", [earlier])
    report = built.verify()
    assert report.first_bad_seq == 7
    assert "do not match its stored leaf hash" in report.reason
    assert "timestamp is earlier than the previous entry's" in report.reason


def test_t05_ts_edited_in_the_search_column(built: Store) -> None:
    with built.connect() as conn:
        conn.execute("UPDATE audit_entries SET ts_us = ts_us + 1 WHERE seq = 7")
    report = built.verify()
    assert report.first_bad_seq == 7
    assert report.reason == ("search column ts_us differs from the envelope (the unverified "
                             "copy was changed)")


# -- entries deleted, inserted, reordered (A1) -----------------------------------------------


def test_t07_deleted_middle_entry_is_a_seq_gap(built: Store) -> None:
    with built.connect() as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 5")
    report = built.verify()
    assert (report.first_bad_seq, report.bad_range) == (5, (5, 6))
    assert "seqs 5..5 are missing (rows deleted)" in report.reason
    assert "checkpoint of size 6 signs" in report.reason


def test_t08_deleted_and_renumbered_is_a_seq_mismatch(built: Store) -> None:
    rows = built.rows()
    renumbered = [r if r[0] < 5 else (r[0] - 1, *r[1:]) for r in rows if r[0] != 5]
    built.replace_rows(renumbered)
    report = built.verify()
    assert report.first_bad_seq == 5
    assert "the envelope's seq differs from the row's seq" in report.reason
    assert "checkpoint of size 6 signs" in report.reason


def test_t09_forged_entry_inserted_in_the_middle(built: Store) -> None:
    rows = built.rows()
    with built.storage() as storage:
        origin = storage.origin
    forged_ts = rows[4][1]
    forged = build_envelope(AuditEvent(event_type="configuration_change", action="grant",
                                       resource="admin"),
                            origin=origin, seq=5, ts_us=forged_ts, actor=None,
                            retention="default", pii=None)
    new = (5, forged_ts, "configuration_change", "grant", "info", "admin", None, None, None,
           "default", forged, leaf_hash(forged))
    shifted = [r if r[0] < 5 else (r[0] + 1, *r[1:]) for r in rows]
    built.replace_rows(sorted([*shifted, new]))
    built.rebuild_tree()
    report = built.verify()
    assert (report.first_bad_seq, report.bad_range) == (5, (5, 6))
    assert "checkpoint of size 6 signs" in report.reason
    assert any(p.startswith("seq 6: the envelope's seq differs") for p in report.problems)


def test_t10_swapped_entries(built: Store) -> None:
    rows = {r[0]: r for r in built.rows()}
    a, b = rows[5], rows[8]
    with built.connect() as conn:
        conn.execute("UPDATE audit_entries SET envelope = ?, leaf = ? WHERE seq = 5",
                     [b[10], b[11]])
        conn.execute("UPDATE audit_entries SET envelope = ?, leaf = ? WHERE seq = 8",
                     [a[10], a[11]])
    report = built.verify()
    assert report.first_bad_seq == 5
    assert "the envelope's seq differs from the row's seq" in report.reason
    assert "checkpoint of size 6 signs" in report.reason


def test_t11_replayed_entry(built: Store) -> None:
    row = next(r for r in built.rows() if r[0] == 5)
    with built.connect() as conn:
        conn.execute(f"INSERT INTO audit_entries VALUES ({ENTRY_PLACEHOLDERS})",
                     [23, *row[1:]])
    report = built.verify()
    assert report.first_bad_seq == 23
    assert "the envelope's seq differs from the row's seq" in report.reason
    assert "1 entries (seqs 23..23) are not covered by any signed checkpoint" in report.reason


def test_t11_replayed_entry_under_the_same_seq_without_the_key_constraint(built: Store) -> None:
    with built.connect() as conn:  # a careful A1 rebuilds the table without its primary key
        conn.execute("CREATE TABLE copy AS SELECT * FROM audit_entries")
        conn.execute("DROP TABLE audit_entries")
        conn.execute("ALTER TABLE copy RENAME TO audit_entries")
        conn.execute("INSERT INTO audit_entries SELECT * FROM audit_entries WHERE seq = 5")
    report = built.verify()
    assert report.first_bad_seq == 5
    assert "this seq is stored twice" in report.reason


def test_t12_entry_spliced_from_another_ledger(built: Store, tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    other = Store(tmp_path / "other")
    other.build(singles=6, batch=0).close()
    foreign = next(r for r in other.rows() if r[0] == 5)
    with built.connect() as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 5")
        conn.execute(f"INSERT INTO audit_entries VALUES ({ENTRY_PLACEHOLDERS})", foreign)
    built.rebuild_tree()
    report = built.verify()
    assert report.first_bad_seq == 5
    assert "the envelope belongs to another ledger" in report.reason
    assert "checkpoint of size 6 signs" in report.reason


def test_t13_unsigned_tail_is_reported_and_acked_events_are_never_in_it(store: Store) -> None:
    ledger = store.open()
    acked = [ledger.append(event(i)) for i in range(1, 6)]
    ledger.close()
    assert all(a.seq is not None and a.seq < a.checkpoint_size for a in acked)
    assert store.verify().uncovered == 0
    # An entry added behind the writer's back has no checkpoint: reported explicitly.
    with store.storage() as storage:
        origin = storage.origin
    ts = store.envelope(5)["ts"]
    extra = build_envelope(AuditEvent(event_type="system", action="x"), origin=origin, seq=6,
                           ts_us=ts, actor=None, retention="default", pii=None)
    with store.connect() as conn:
        conn.execute(f"INSERT INTO audit_entries VALUES ({ENTRY_PLACEHOLDERS})",
                     [6, ts, "system", "x", "info", None, None, None, None, "default", extra,
                      leaf_hash(extra)])
    report = store.verify()
    assert (report.uncovered, report.first_bad_seq) == (1, 6)
    assert "1 entries (seqs 6..6) are not covered by any signed checkpoint" in report.reason
    # Cutting that unsigned tail again loses nothing that was acknowledged.
    with store.connect() as conn:
        conn.execute("DELETE FROM audit_entries WHERE seq = 6")
    assert store.verify().ok


# -- tail truncation, rollback, fork, missing log (A1/A2) ------------------------------------


def test_t14_truncated_store_behind_the_sidecar_is_a_rollback(built: Store) -> None:
    built.truncate(10)
    alarms = built.alarms(anchors=False)
    assert kinds(alarms) == {AlarmKind.ROLLBACK}
    assert "holds a signed checkpoint of size 23, but the store's newest is size 10" \
        in alarms[0].message
    report = built.verify()
    assert report.first_bad_seq == 10
    assert report.reason.startswith("ROLLBACK:")
    with pytest.raises(LedgerAlarmError) as raised:
        built.open()
    assert {a.kind for a in raised.value.alarms} == {AlarmKind.ROLLBACK}


def test_t15_truncated_store_and_sidecar_is_a_rollback_by_the_anchor(built: Store) -> None:
    with built.open() as ledger:
        anchored = built.publish(ledger)
    built.truncate(10)
    built.truncate_sidecar(10)
    assert built.alarms(anchors=False) == []  # store and sidecar agree with each other...
    alarms = built.alarms()
    assert kinds(alarms) == {AlarmKind.ROLLBACK}  # ...but not with the anchor
    assert f"holds a signed checkpoint of size {anchored}, but the store's newest is size 10" \
        in alarms[0].message
    assert alarms[0].evidence["source"].startswith("anchor folder")
    with pytest.raises(LedgerAlarmError) as raised:
        built.open(anchors=[built.anchor()])
    assert {a.kind for a in raised.value.alarms} == {AlarmKind.ROLLBACK}
    report = built.verify(anchors=True)
    assert report.first_bad_seq == 10 and report.reason.startswith("ROLLBACK:")


def test_t16_truncate_and_continue_is_a_fork(built: Store) -> None:
    with built.open() as ledger:
        anchored = built.publish(ledger)
    built.truncate(10)
    built.truncate_sidecar(10)
    with built.open() as ledger:  # no anchor given: the attacker continues the log
        for i in range(20):
            ledger.append(event(200 + i))
        assert ledger.size > anchored
    alarms = built.alarms()
    assert kinds(alarms) == {AlarmKind.FORK}
    assert f"holds a signed checkpoint of size {anchored} with root" in alarms[0].message
    assert alarms[0].evidence["foreign_note"] != alarms[0].evidence["store_note"]
    report = built.verify(anchors=True)
    assert not report.ok and "FORK:" in report.reason


def test_t17_restored_backup_is_a_rollback_until_acknowledged(built: Store) -> None:
    backup = built.root / "backup.duckdb"
    shutil.copy2(built.db, backup)
    with built.open() as ledger:
        for i in range(5):
            ledger.append(event(300 + i))
        built.publish(ledger)
    shutil.copy2(backup, built.db)  # the old copy comes back; sidecar and anchor are newer
    alarms = built.alarms()
    assert kinds(alarms) == {AlarmKind.ROLLBACK}
    assert {a.evidence["source"].split(" ")[0] for a in alarms} == {"the", "anchor"}
    with pytest.raises(LedgerAlarmError):
        built.open(anchors=[built.anchor()])
    done = acknowledge(built.db, built.sidecar, "restored from backup after disk failure",
                       lambda: built.open(check=False), [built.anchor()])
    assert {a.kind for a in done.alarms} == {AlarmKind.ROLLBACK}
    assert done.incarnation == 1 and done.previous_sidecar is not None
    assert done.previous_sidecar.exists()
    assert built.alarms() == []  # the acknowledged checkpoints raise no alarm any more
    with built.open(anchors=[built.anchor()]) as ledger:
        ledger.append(event(400))
    report = built.verify(anchors=True)
    assert report.ok, report.problems


def test_t18_deleted_store_and_sidecar_is_a_missing_log(built: Store) -> None:
    with built.open() as ledger:
        built.publish(ledger)
        origin = ledger.origin
    built.db.unlink()
    built.sidecar.unlink()
    alarms = startup_check(None, Sidecar(built.sidecar), [built.anchor()])
    assert kinds(alarms) == {AlarmKind.MISSING_LOG}
    assert origin in alarms[0].message
    with pytest.raises(LedgerAlarmError) as raised:
        built.open(anchors=[built.anchor()])
    assert {a.kind for a in raised.value.alarms} == {AlarmKind.MISSING_LOG}


# -- checkpoints edited (A1) -----------------------------------------------------------------


def test_t21_edited_note_text_fails_its_signature(built: Store) -> None:
    with built.connect() as conn:
        note = value(conn, "SELECT note FROM audit_checkpoints WHERE size = 6")
        other = value(conn, "SELECT note FROM audit_checkpoints WHERE size = 7")
        lines = note.split("\n")
        lines[2] = other.split("\n")[2]  # another checkpoint's root, same signature
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 6", ["\n".join(lines)])
        note8 = value(conn, "SELECT note FROM audit_checkpoints WHERE size = 8")
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 8",
                     [note8.replace("\n8\n", "\n9\n")])  # the size line says 9
    report = built.verify()
    assert not report.ok
    failures = [p for p in report.problems if "does not verify" in p]
    assert any("checkpoint of size 6 does not verify: invalid signature" in p for p in failures)
    assert any("checkpoint of size 8 does not verify: invalid signature" in p for p in failures)


def test_t25_old_size_resigned_with_the_new_key_is_outside_its_window(store: Store) -> None:
    ledger = store.build(singles=4, batch=0)
    new = SigningKey.generate(ledger.origin)
    rotated = ledger.rotate_key(new)
    ledger.append(event(50))
    origin = ledger.origin
    ledger.close()
    assert store.verify().ok
    with store.connect() as conn:  # the holder of the new key re-signs size 3 (before rotation)
        root = value(conn, "SELECT root FROM audit_checkpoints WHERE size = 3")
        note = sign_checkpoint(Checkpoint(origin, 3, bytes(root)), new.signer())
        conn.execute("UPDATE audit_checkpoints SET note = ? WHERE size = 3", [note])
    report = store.verify()
    assert not report.ok
    window = f"outside its validity window (sizes {rotated.checkpoint_size + 1}..)"
    assert any("checkpoint of size 3 does not verify: checkpoint of size 3 is signed by key"
               in p and window in p for p in report.problems), report.problems


def test_t33_ts_shifted_out_of_a_window(built: Store) -> None:
    later = built.envelope(20)["ts"] + 10_000_000
    built.rewrite(9, leaf=True, ts=later)
    with built.connect() as conn:
        conn.execute("UPDATE audit_entries SET ts_us = ? WHERE seq = 9", [later])
    report = built.verify()
    assert report.first_bad_seq == 9
    assert "checkpoint of size 10 signs" in report.reason
    assert any(p.startswith("seq 10: the timestamp is earlier than the previous entry's")
               for p in report.problems)


# -- T44: any single stored byte --------------------------------------------------------------

BLOB_COLUMNS = {
    "audit_entries": ("envelope", "leaf"), "audit_pii": ("nonce", "ciphertext"),
    "audit_nodes": ("hash",), "audit_checkpoints": ("root",),
}
TEXT_COLUMNS = {
    "audit_entries": ("category", "action", "severity", "resource", "outcome", "actor",
                      "correlation_id", "retention"),
    "audit_pii": ("ref",), "audit_checkpoints": ("note",), "audit_meta": ("key", "value"),
}
INT_COLUMNS = {
    "audit_entries": ("seq", "ts_us"), "audit_pii": ("seq",), "audit_nodes": ("level", "idx"),
    "audit_checkpoints": ("size",),
}
"""Every stored column except ``created_us`` (informational wall-clock readings that nothing
else records, so no check can tell a changed value from a true one)."""
KEYS = {"audit_entries": ("seq",), "audit_pii": ("seq",), "audit_nodes": ("level", "idx"),
        "audit_checkpoints": ("size",), "audit_meta": ("key",)}


def _mutate(store: Store, data: st.DataObject) -> str:
    """Change one byte of one stored value (or of the sidecar file); describe what."""
    target = data.draw(st.sampled_from(["sidecar", "blob", "text", "int"]))
    if target == "sidecar":
        raw = bytearray(store.sidecar.read_bytes())
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        store.sidecar.write_bytes(bytes(raw))
        return f"sidecar byte {at}"
    columns = {"blob": BLOB_COLUMNS, "text": TEXT_COLUMNS, "int": INT_COLUMNS}[target]
    table = data.draw(st.sampled_from(sorted(columns)))
    column = data.draw(st.sampled_from(columns[table]))
    keys = KEYS[table]
    with store.connect() as conn:
        rows = conn.execute(f"SELECT {', '.join(keys)}, {column} FROM {table} "
                            f"WHERE {column} IS NOT NULL ORDER BY ALL").fetchall()
        if not rows:
            return "nothing"
        row = data.draw(st.sampled_from(rows))
        value = row[-1]
        if target == "blob":
            raw = bytearray(value)
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
            new: Any = bytes(raw)
        elif target == "text":
            raw = bytearray(value.encode())
            ascii_at = [i for i, b in enumerate(raw) if b < 0x80]
            if not ascii_at:
                return "nothing"
            at = data.draw(st.sampled_from(ascii_at))
            raw[at] ^= data.draw(st.integers(1, 127))  # stays ASCII: DuckDB keeps valid UTF-8
            new = raw.decode()
        else:
            width = 4 if column == "level" else 8  # INTEGER / BIGINT
            raw = bytearray(int(value).to_bytes(width, "little", signed=True))
            at = data.draw(st.integers(0, width - 1))
            raw[at] ^= data.draw(st.integers(1, 255))
            new = int.from_bytes(raw, "little", signed=True)
        where = " AND ".join(f"{k} = ?" for k in keys)
        try:
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {where}", [new, *row[:-1]])
        except duckdb.ConstraintException:
            return "nothing"  # a duplicate key: not a state the store can hold
        return f"{table}.{column} of {row[:-1]}: {value!r:.80} -> {new!r:.80}"


def detected(store: Store) -> bool:
    """Whether full verification or the startup check notices the change."""
    try:
        return not store.verify().ok or bool(store.alarms(anchors=False))
    except AuditError as exc:  # a damaged audit_meta origin: the store is no ledger any more
        return "audit_meta" in str(exc)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_t44_every_single_byte_mutation_is_detected(tmp_path_factory: pytest.TempPathFactory,
                                                    data: st.DataObject) -> None:
    root = tmp_path_factory.mktemp("t44")
    store = Store(root)
    sizes = data.draw(st.lists(st.integers(1, 40), min_size=1, max_size=8)
                      .filter(lambda s: 20 <= sum(s) <= 200), label="batch sizes")
    with store.open() as ledger:
        i = 0
        for size in sizes:
            ledger.append_many([event(i + k) for k in range(size)])
            i += size
    assert store.verify().ok
    pristine = root / "pristine"
    pristine.mkdir()
    shutil.copy2(store.db, pristine / store.db.name)
    shutil.copy2(store.sidecar, pristine / store.sidecar.name)
    for _ in range(6):
        what = _mutate(store, data)
        if what != "nothing":
            assert detected(store), f"undetected: {what}"
        shutil.copy2(pristine / store.db.name, store.db)
        shutil.copy2(pristine / store.sidecar.name, store.sidecar)
