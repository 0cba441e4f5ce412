"""Verified search over a real ledger: filters, text in sealed data, window proofs, tampering.

Real DuckDB files and 0600 key files in a temporary folder; a settable clock gives each event
its own second. Tamper cases change the closed store with SQL (adversary A1) and search it
read-only, with the key history taken from the honest ledger, asserting the specific
detection: the TAMPERED finding's seq and reason, a window proof that cannot be built or does
not verify.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.audit.archive import archive
from monitoring.audit.envelope import parse_envelope
from monitoring.audit.errors import AuditError, VerifyFailure
from monitoring.audit.keys import KeyHistory, SigningKey
from monitoring.audit.ledger import Ledger
from monitoring.audit.loghandler import LedgerHandler
from monitoring.audit.search import SearchResult, search
from monitoring.audit.storage import LedgerStorage
from monitoring.audit.window import WindowProof, range_proof, verify_window_proof
from tests.support.audit_files import T0_MS, LedgerFiles

DAY_MS = 86_400_000
ALICE_IP = "203.0.113.7"


def ts_us(seq: int) -> int:
    """The timestamp the fixture gives entry ``seq`` (one second apart)."""
    return (T0_MS + seq * 1000) * 1000


@dataclass
class Files(LedgerFiles):
    history: KeyHistory | None = None
    refs: dict[str, str] = field(default_factory=dict)

    def edit_envelope(self, seq: int, old: bytes, new: bytes, *, fix_leaf: bool = False,
                      **columns: object) -> None:
        """Replace bytes inside a stored envelope (and maybe its leaf and search columns)."""
        from monitoring.audit.merkle import leaf_hash

        conn = duckdb.connect(str(self.db))
        try:
            row = conn.execute("SELECT envelope FROM audit_entries WHERE seq = ?",
                               [seq]).fetchone()
            assert row is not None
            envelope = bytes(row[0])
            assert old in envelope
            forged = envelope.replace(old, new)
            sets = ["envelope = ?"] + (["leaf = ?"] if fix_leaf else []) + [
                f"{name} = ?" for name in columns]
            values = [forged] + ([leaf_hash(forged)] if fix_leaf else []) + list(columns.values())
            conn.execute(f"UPDATE audit_entries SET {', '.join(sets)} WHERE seq = ?",
                         [*values, seq])
        finally:
            conn.close()

    def search(self, **kwargs: Any) -> SearchResult:
        """Search the closed store read-only, trusting the honest ledger's keys."""
        conn = duckdb.connect(str(self.db), read_only=True)
        try:
            return search(LedgerStorage(conn), keys=self.history, **kwargs)
        finally:
            conn.close()


def populate(files: Files, ledger: Ledger) -> None:
    """30 events after genesis, seq i+1 at T0 + (i+1) s: logins of alice (with her IP) and
    bob, and rule edits without personal data in two correlations."""
    for i in range(30):
        files.now_ms = T0_MS + (i + 1) * 1000
        if i % 3 == 0:
            ev: dict[str, Any] = {"event_type": "authentication", "action": "login",
                                  "user_id": "alice", "source": ALICE_IP,
                                  "details": {"attempt": i}}
        elif i % 3 == 1:
            ev = {"event_type": "authentication", "action": "login", "user_id": "bob",
                  "outcome": "failure"}
        else:
            ev = {"event_type": "configuration_change", "action": "rule.edit",
                  "resource": f"rule{i}", "correlation_id": "corr-A" if i < 15 else "corr-B",
                  "details": {"change": f"threshold {i}"}}
        assert ledger.append(ev).seq == i + 1
    files.now_ms = T0_MS + 40_000
    files.history = KeyHistory(list(ledger.history.windows)) if ledger.history else None
    for user in ("alice", "bob"):
        ref = ledger.vault.ref_for(user, create=False)
        assert ref is not None
        files.refs[user] = ref


ALICE = [i + 1 for i in range(30) if i % 3 == 0]
BOB = [i + 1 for i in range(30) if i % 3 == 1]
EDITS = [i + 1 for i in range(30) if i % 3 == 2]


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


@pytest.fixture
def ledger(files: Files) -> Iterator[Ledger]:
    with files.open() as opened:
        populate(files, opened)
        yield opened


@pytest.fixture
def closed(files: Files) -> Files:
    """A populated ledger, closed (ready for SQL tampering)."""
    with files.open() as opened:
        populate(files, opened)
    return files


def seqs(result: SearchResult) -> list[int]:
    return [row.seq for row in result.rows]


# --------------------------------------------------------------------------- filters


def test_actor_is_looked_up_as_its_pseudonym(ledger: Ledger, files: Files) -> None:
    result = search(ledger, actor="alice", log=False)
    assert result.ok and seqs(result) == ALICE
    assert {row.actor for row in result.rows} == {files.refs["alice"]}
    assert all(b"alice" not in row.envelope and ALICE_IP.encode() not in row.envelope
               for row in result.rows)
    assert search(ledger, actor="mallory", log=False).rows == []
    assert seqs(search(ledger, actor_ref=files.refs["bob"], log=False)) == BOB


def test_filters_combine_and_are_rechecked_on_the_envelope(ledger: Ledger) -> None:
    assert seqs(search(ledger, action="rule.edit", log=False)) == EDITS
    assert seqs(search(ledger, resource="rule5", log=False)) == [6]
    assert seqs(search(ledger, category="configuration_change", correlation_id="corr-B",
                       log=False)) == [e for e in EDITS if e > 15]
    window = search(ledger, since_us=ts_us(10), until_us=ts_us(14), log=False)
    assert seqs(window) == [10, 11, 12, 13]
    assert all(ts_us(10) <= row.ts_us < ts_us(14) for row in window.rows)
    assert seqs(search(ledger, action="login", since_us=ts_us(20), actor="bob",
                       log=False)) == [b for b in BOB if b >= 20]


def test_limit_and_newest_first(ledger: Ledger) -> None:
    first = search(ledger, action="login", limit=3, log=False)
    assert seqs(first) == sorted(ALICE + BOB)[:3] and first.more
    newest = search(ledger, action="login", limit=3, newest_first=True, log=False)
    assert seqs(newest) == sorted(ALICE + BOB, reverse=True)[:3]
    assert not search(ledger, action="login", limit=100, log=False).more


def test_text_reaches_sealed_personal_data_until_the_subject_is_erased(ledger: Ledger,
                                                                      files: Files) -> None:
    assert seqs(search(ledger, text="threshold 5", log=False)) == [6]  # clear details
    found = search(ledger, text=ALICE_IP, log=False)  # only inside alice's sealed data
    assert seqs(found) == ALICE and all(row.personal is None for row in found.rows)
    shown = search(ledger, actor="alice", decrypt=True, limit=1, log=False).rows[0]
    assert shown.personal == {"user_id": "alice", "source": ALICE_IP,
                              "details": {"attempt": 0}}
    ledger.erase("alice", "test: right to erasure")
    assert search(ledger, text=ALICE_IP, log=False).rows == []
    after = search(ledger, actor_ref=files.refs["alice"], decrypt=True, log=False)
    assert seqs(after) == ALICE and after.ok
    assert all(row.erased and row.personal is None for row in after.rows)


def test_bad_filters_are_clear_errors(ledger: Ledger) -> None:
    with pytest.raises(AuditError, match=r"ends .* before it starts"):
        search(ledger, since_us=10, until_us=5, log=False)
    with pytest.raises(AuditError, match="unknown category 'logins'"):
        search(ledger, category="logins", log=False)
    with pytest.raises(AuditError, match="limit: expected at least 1"):
        search(ledger, limit=0, log=False)


# --------------------------------------------------------------------------- the search's record


def test_each_search_is_recorded_with_the_searcher_sealed(ledger: Ledger) -> None:
    result = search(ledger, actor="alice", text="secret", requested_by="auditor7")
    assert result.logged is not None and result.logged.recorded
    seq = result.logged.seq
    assert seq is not None
    entry = ledger.storage.entry(seq)
    assert entry is not None
    fields = parse_envelope(entry.envelope)
    assert (fields["category"], fields["action"]) == ("data_access", "audit.search")
    assert fields["data"] is None and fields["pii"] is not None
    for plain in (b"alice", b"auditor7", b"secret"):
        assert plain not in entry.envelope
    sealed = ledger.personal(seq)
    assert sealed is not None and sealed["user_id"] == "auditor7"
    assert sealed["details"]["filters"]["actor"] == "alice"
    assert sealed["details"]["filters"]["text"] == "secret"
    assert sealed["details"]["rows"] == 0 and sealed["details"]["tampered"] == 0


def test_an_anonymous_search_record_keeps_user_ids_and_text_out(ledger: Ledger,
                                                                files: Files) -> None:
    result = search(ledger, actor="alice", text="203.0", complete=True)
    assert result.logged is not None and result.logged.seq is not None
    entry = ledger.storage.entry(result.logged.seq)
    assert entry is not None
    data = parse_envelope(entry.envelope)["data"]
    assert data["filters"]["actor_ref"] == files.refs["alice"]
    assert data["filters"]["actor_given"] and data["filters"]["text_given"]
    assert b"alice" not in entry.envelope and b"203.0" not in entry.envelope
    assert data["window_proven"] is True and data["rows"] == len(ALICE)


# --------------------------------------------------------------------------- window proofs


def test_complete_window_search_is_proven_offline(ledger: Ledger) -> None:
    result = search(ledger, since_us=ts_us(10), until_us=ts_us(20), action="rule.edit",
                    complete=True, log=False)
    assert result.ok and result.window is not None
    assert seqs(result) == [e for e in EDITS if 10 <= e < 20]
    assert (result.window.start, result.window.end) == (9, 21)  # boundaries 9 and 20
    found = verify_window_proof(result.window.dumps(), ledger.key.vkey(), ledger.origin)
    assert [e["seq"] for e in found.entries] == list(range(10, 20))
    assert [e["seq"] for e in found.entries if e["action"] == "rule.edit"] == seqs(result)
    assert not found.open_end


def test_window_to_the_end_is_open_and_whole_ledger_is_provable(ledger: Ledger) -> None:
    tail = search(ledger, since_us=ts_us(25), complete=True, log=False)
    assert tail.window is not None
    found = verify_window_proof(tail.window, ledger.key.vkey())
    assert found.open_end and found.first == 25 and found.end == tail.checkpoint.size
    whole = search(ledger, complete=True, limit=5, log=False)
    assert whole.window is not None and whole.window.start == 0 and whole.more
    assert whole.matched == whole.checkpoint.size and len(whole.rows) == 5
    assert verify_window_proof(whole.window, ledger.key.vkey()).end == whole.checkpoint.size


def test_empty_window_is_proven_by_its_neighbours(ledger: Ledger) -> None:
    result = search(ledger, since_us=ts_us(12) + 1, until_us=ts_us(13), complete=True,
                    log=False)
    assert result.rows == [] and result.window is not None
    found = verify_window_proof(result.window, ledger.key.vkey())
    assert found.entries == [] and (found.first, found.end) == (13, 13)


def test_searches_see_one_snapshot_while_the_writer_appends(ledger: Ledger,
                                                            files: Files) -> None:
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set() and n < 400:
            files.now_ms += 1
            ledger.append({"event_type": "system", "action": "tick", "details": {"n": n}})
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(15):
            result = search(ledger, since_us=ts_us(5), complete=True, log=False)
            assert result.ok and result.window is not None
            found = verify_window_proof(result.window, ledger.key.vkey())
            assert found.end == result.checkpoint.size
    finally:
        stop.set()
        thread.join()


def test_search_across_a_key_rotation_checks_key_windows(ledger: Ledger, files: Files) -> None:
    old_vkey = ledger.key.vkey()
    rotated = ledger.rotate_key(SigningKey.generate(ledger.origin))
    files.now_ms += 1000
    ledger.append({"event_type": "system", "action": "after.rotation"})
    result = search(ledger, since_us=ts_us(20), complete=True, log=False)
    assert result.ok and result.window is not None
    assert result.signed_by == ledger.key.verifier().key_hex
    assert ledger.history is not None
    assert verify_window_proof(result.window, ledger.history).open_end
    windows = [f"{old_vkey}@1-{rotated.checkpoint_size}",
               f"{ledger.key.vkey()}@{rotated.checkpoint_size + 1}-"]
    assert verify_window_proof(result.window, windows).end == result.checkpoint.size
    with pytest.raises(VerifyFailure, match="no valid signature from a known key"):
        verify_window_proof(result.window, old_vkey)  # the newest checkpoint is the new key's


def test_a_read_only_store_derives_its_key_history_itself(closed: Files) -> None:
    conn = duckdb.connect(str(closed.db), read_only=True)
    try:
        result = search(LedgerStorage(conn), action="rule.edit", complete=True)
    finally:
        conn.close()
    assert result.ok and seqs(result) == EDITS and result.logged is None


# --------------------------------------------------------------------------- tampering


def test_a_row_with_altered_bytes_is_reported_never_shown(closed: Files) -> None:
    closed.edit_envelope(4, b'"login"', b'"logon"')
    result = closed.search(actor_ref=closed.refs["alice"])
    assert 4 not in seqs(result) and seqs(result) == [s for s in ALICE if s != 4]
    assert [(f.seq, f.reason) for f in result.tampered] == [
        (4, "not shown: its envelope does not match its stored leaf hash (checkpoint size "
            f"{result.checkpoint.size})")]
    assert not result.ok


def test_a_row_with_recomputed_leaf_still_fails_against_the_signed_root(closed: Files) -> None:
    closed.edit_envelope(7, b'"severity":"info"', b'"severity":"debug"', fix_leaf=True,
                         severity="debug")
    result = closed.search(actor_ref=closed.refs["alice"])
    assert 7 not in seqs(result)
    assert [f.seq for f in result.tampered] == [7]
    assert "does not lead to the signed root" in result.tampered[0].reason


def test_t32_a_misattributed_row_is_flagged_and_not_shown(closed: Files) -> None:
    """Bob's failed login pinned on alice through the actor column: verify-on-read catches it."""
    closed.sql(f"UPDATE audit_entries SET actor = '{closed.refs['alice']}' WHERE seq = 5")
    result = closed.search(actor_ref=closed.refs["alice"])
    assert seqs(result) == ALICE  # seq 5 is bob's by its signed envelope
    assert [(f.seq, f.reason) for f in result.tampered] == [
        (5, f"search column actor is {closed.refs['alice']!r} but the signed envelope says "
            f"{closed.refs['bob']!r} (the search index was altered)")]
    assert not result.ok


def test_t32_an_entry_hidden_from_the_index_is_found_by_the_complete_window(closed: Files
                                                                          ) -> None:
    alice = closed.refs["alice"]
    closed.sql("UPDATE audit_entries SET actor = NULL WHERE seq = 10")
    hidden = closed.search(actor_ref=alice, since_us=ts_us(1), until_us=ts_us(20))
    assert 10 not in seqs(hidden)  # the predicate search trusts the index to select rows
    complete = closed.search(actor_ref=alice, since_us=ts_us(1), until_us=ts_us(20),
                             complete=True)
    assert seqs(complete) == [s for s in ALICE if s < 20]  # 10 is back, from its envelope
    assert [(f.seq, f.reason) for f in complete.tampered] == [
        (10, f"search column actor is None but the signed envelope says {alice!r} (the "
             "search index was altered)")]
    assert not complete.ok
    # the proof itself stays authentic: offline, the window holds seq 10 as alice's
    assert complete.window is not None and closed.history is not None
    found = verify_window_proof(complete.window, closed.history)
    assert any(e["seq"] == 10 and e["actor"] == alice for e in found.entries)


def test_t32_a_deleted_row_makes_the_window_unprovable(closed: Files) -> None:
    closed.sql("DELETE FROM audit_entries WHERE seq = 12")
    result = closed.search(since_us=ts_us(10), until_us=ts_us(15), complete=True)
    assert result.window is None and not result.ok
    assert sorted((f.seq, f.reason) for f in result.tampered) == [
        (12, "the entry is missing from the store (its row was deleted)"),
        # its neighbour's proof needs the deleted leaf: not shown either, and said why
        (13, "not shown: it cannot be verified: the store has no tree leaf 12 (checkpoint "
             f"size {result.checkpoint.size})")]
    # A store that serves a proof without seq 12 anyway is caught offline.
    conn = duckdb.connect(str(closed.db), read_only=True)
    try:
        storage = LedgerStorage(conn)
        size = result.checkpoint.size
        kept = [e.envelope for e in storage.entries(9, 16)]
        lying = WindowProof(result.note, ts_us(10), ts_us(15), 9, tuple(kept), {},
                            tuple(range_proof(storage, 9, 15, size)))
    finally:
        conn.close()
    assert closed.history is not None
    with pytest.raises(VerifyFailure, match="do not lead to the signed root"):
        verify_window_proof(lying, closed.history)


def test_t33_a_shifted_timestamp_column_cannot_move_an_entry_out_of_its_window(
        closed: Files) -> None:
    closed.sql(f"UPDATE audit_entries SET ts_us = {ts_us(10_000)} WHERE seq = 12")
    predicate = closed.search(since_us=ts_us(10), until_us=ts_us(15))
    assert seqs(predicate) == [10, 11, 13, 14]  # the index alone would hide seq 12
    complete = closed.search(since_us=ts_us(10), until_us=ts_us(15), complete=True)
    assert seqs(complete) == [10, 11, 12, 13, 14]
    assert [(f.seq, f.reason.split(" (")[0]) for f in complete.tampered] == [
        (12, f"search column ts_us is {ts_us(10_000)} but the signed envelope says "
             f"{ts_us(12)}")]


def test_t33_a_shifted_timestamp_in_the_envelope_is_a_leaf_mismatch(closed: Files) -> None:
    closed.edit_envelope(12, str(ts_us(12)).encode(), str(ts_us(10_000)).encode(),
                         ts_us=ts_us(10_000))
    complete = closed.search(since_us=ts_us(10), until_us=ts_us(15), complete=True)
    assert 12 not in seqs(complete) and complete.window is None
    assert [f.seq for f in complete.tampered] == [12]
    assert "does not match its stored leaf hash" in complete.tampered[0].reason


def test_an_altered_tree_shows_nothing(closed: Files) -> None:
    closed.sql("UPDATE audit_nodes SET hash = sha256('x')::BLOB WHERE level = 4 AND idx = 0")
    result = closed.search()
    assert result.rows == [] and not result.ok
    assert "stored tree does not lead to the signed root" in result.tampered[0].reason


def test_a_forged_checkpoint_stops_the_search(closed: Files) -> None:
    closed.sql("UPDATE audit_checkpoints SET note = replace(note, '\n31\n', '\n30\n') "
               "WHERE size = 31")
    with pytest.raises(VerifyFailure, match="invalid signature"):
        closed.search()


# --------------------------------------------------------------------------- archives


def test_archived_entries_are_searched_and_proven_with_include_archive(files: Files,
                                                                      tmp_path: Path) -> None:
    with files.open() as ledger:
        populate(files, ledger)
        files.now_ms = T0_MS + 100 * DAY_MS
        written = archive(ledger, tmp_path / "archive", older_than_ms=30 * DAY_MS)
        assert written
        hot = search(ledger, action="rule.edit", log=False)
        assert hot.rows == []  # payloads evicted from the hot store
        with_archive = search(ledger, action="rule.edit", include_archive=True, log=False)
        assert seqs(with_archive) == EDITS and with_archive.ok
        assert all(row.archived for row in with_archive.rows)
        window = search(ledger, since_us=ts_us(5), until_us=ts_us(9), complete=True,
                        log=False)
        # every event but genesis was archived: the window reaches out to seq 0 and to the
        # archive record, and carries the archived entries as leaf hashes
        assert window.window is not None and window.window.start == 0
        assert window.pruned == list(range(1, 31)) and window.rows == []
        both = search(ledger, since_us=ts_us(5), until_us=ts_us(9), complete=True,
                      include_archive=True, log=False)
        assert seqs(both) == [5, 6, 7, 8] and both.pruned == [] and both.window is not None
        found = verify_window_proof(both.window, ledger.key.vkey())
        assert [e["seq"] for e in found.entries] == [5, 6, 7, 8]


# --------------------------------------------------------------------------- logging handler


def test_log_records_become_durable_ledger_events(ledger: Ledger) -> None:
    from monitoring.audit.context import correlation

    log = logging.getLogger("tests.audit.search.handler")
    log.propagate = False
    handler = LedgerHandler(ledger)
    log.addHandler(handler)
    try:
        with correlation("alert-1234"):
            log.warning("rule %s fired", "HighCPU")
            log.error("notify failed", extra={"audit": {"event_type": "notification",
                                                        "outcome": "failure"}})
        handler.flush()
    finally:
        log.removeHandler(handler)
    found = search(ledger, correlation_id="alert-1234", log=False)
    assert [(r.category, r.action, r.severity) for r in found.rows] == [
        ("system", "tests.audit.search.handler", "warning"),
        ("notification", "tests.audit.search.handler", "error")]
    assert found.rows[0].data is not None
    assert found.rows[0].data["message"] == "rule HighCPU fired"
    assert found.rows[1].outcome == "failure"


# --------------------------------------------------------------------------- command line


def test_cli_search_table_jsonl_and_window_proof(closed: Files, tmp_path: Path) -> None:
    table = closed.cli("search", "--action", "rule.edit", "--limit", "3")
    assert table.returncode == 0, table.stderr
    assert "rule.edit" in table.stdout and "✓" in table.stdout
    assert "3 rows (more may match" in table.stderr
    lines = closed.cli("search", "--actor", "alice", "--decrypt", "--format", "jsonl")
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert [r["seq"] for r in rows] == ALICE
    assert rows[0]["personal"]["source"] == ALICE_IP and rows[0]["verified"] is True
    proof = tmp_path / "window.json"
    since = str(ts_us(10) / 1e6)
    done = closed.cli("search", "--since", since, "--prove-complete", "--proof-out", str(proof),
                      "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["ok"] is True and proof.exists()
    assert closed.history is not None
    vkey = closed.history.current.vkey()
    checked = subprocess.run(
        [sys.executable, "-m", "monitoring", "audit", "verify-window", str(proof), "--vkey",
         vkey], capture_output=True, text=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("OK window seq 10..")
    doc = json.loads(proof.read_text())
    del doc["entries"][3]
    doc["start"] = doc["start"]  # same start, one entry fewer: a lying server
    proof.write_text(json.dumps(doc))
    bad = subprocess.run(
        [sys.executable, "-m", "monitoring", "audit", "verify-window", str(proof), "--vkey",
         vkey], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and bad.stderr.startswith("FAIL: ")


def test_cli_reports_tampering_with_exit_1(closed: Files) -> None:
    closed.sql(f"UPDATE audit_entries SET actor = '{closed.refs['alice']}' WHERE seq = 5")
    done = closed.cli("search", "--actor-ref", closed.refs["alice"])
    assert done.returncode == 1
    assert f"TAMPERED seq 5: search column actor is {closed.refs['alice']!r}" in done.stderr


def test_cli_usage_errors_exit_2(closed: Files, tmp_path: Path) -> None:
    bad_time = closed.cli("search", "--since", "last tuesday")
    assert bad_time.returncode == 2 and "--since: invalid time 'last tuesday'" in bad_time.stderr
    assert closed.cli("search", "--proof-out", "x.json").returncode == 2
    missing = subprocess.run(
        [sys.executable, "-m", "monitoring", "audit", "search", "--db",
         str(tmp_path / "none.duckdb")], capture_output=True, text=True, timeout=60,
        check=False)
    assert missing.returncode == 2 and "no such store" in missing.stderr
    assert not (tmp_path / "none.duckdb").exists()


def test_replace_keeps_the_query_immutable(ledger: Ledger) -> None:
    result = search(ledger, action="login", limit=2, log=False)
    changed = replace(result.query, limit=5)
    assert result.query.limit == 2 and changed.limit == 5
