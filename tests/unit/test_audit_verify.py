"""Verification, startup checks, acknowledgement and the verify/receipt CLI.

Small ledgers in temporary folders (keys in 0600 files); the tree is rebuilt in chunks of 8
leaves here so that every chunk boundary of full verification is exercised.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from monitoring.audit import verify_full as verify_full_module
from monitoring.audit.alarms import AlarmKind
from monitoring.audit.cli import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE
from monitoring.audit.envelope import AuditEvent, build_envelope
from monitoring.audit.errors import VerifyFailure
from monitoring.audit.external import StoreView, compare_foreign, sidecar_line
from monitoring.audit.keys import KeyHistory, SigningKey
from monitoring.audit.merkle import MemoryTree, leaf_hash, root_from_leaves
from monitoring.audit.note import Checkpoint, sign_checkpoint
from monitoring.audit.recovery import acknowledge, startup_check
from monitoring.audit.retention import (
    append_record,
    remove_payloads,
    run_maintenance,
)
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import StoredCheckpoint
from monitoring.audit.verify import (
    Finding,
    history_from_events,
    key_history,
    verify_full,
    verify_quick,
)
from monitoring.audit.verify_full import _fold
from monitoring.audit.verify_report import make_report
from monitoring.cli import main
from tests.support.audit_store import Store, event


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_full_module, "CHUNK_LEVEL", 3)
    monkeypatch.setattr(verify_full_module, "CHUNK", 8)


def run_cli(files: Store, *argv: str) -> int:
    """``monitoring audit ARGV`` in this process, on the store of ``files``."""
    return main(["audit", *argv, "--db", str(files.db), "--key", str(files.key),
                 "--kek", str(files.kek)])


@pytest.fixture
def files(tmp_path: Path) -> Store:
    return Store(tmp_path)


# -- the tree, chunk by chunk -----------------------------------------------------------------


@pytest.mark.parametrize("batches", [[7], [3, 4, 1, 8, 15], [31], [8, 8, 8, 8, 8, 2]])
def test_full_verification_recomputes_every_root_across_chunks(files: Store,
                                                                batches: list[int]) -> None:
    files.build_batches(batches)
    report = files.verify()
    assert report.ok, report.problems
    assert report.entries == 1 + sum(batches)
    assert report.checkpoints == 1 + len(batches)
    assert report.entries_per_second > 0
    assert report.summary().startswith(f"OK (full): {report.entries} entries")


@pytest.mark.parametrize("n", [1, 2, 7, 8, 9, 16, 17, 40, 64, 65])
def test_fold_of_chunk_frontier_and_tail_is_the_rfc6962_root(n: int) -> None:
    leaves = [leaf_hash(bytes([i])) for i in range(n)]
    chunk = 8
    full = n // chunk * chunk
    prefix = MemoryTree([MemoryTree(leaves[i:i + chunk]).root()
                         for i in range(0, full, chunk)])
    from monitoring.audit.merkle import Frontier

    frontier = Frontier()
    for h in prefix.levels[0]:
        frontier.append(h)
    if full == n:
        assert frontier.root() == root_from_leaves(leaves)
    else:
        assert _fold(frontier.hashes, root_from_leaves(leaves[full:])) == \
            root_from_leaves(leaves)


# -- the report ----------------------------------------------------------------------------


def test_report_names_an_entry_before_a_tree_node_and_joins_reasons() -> None:
    report = make_report([Finding("node", 4, 8, rank=1), Finding("no seq"),
                      Finding("leaf", 6), Finding("column", 6), Finding("later", 9)],
                     uncovered=0, entries=10, checkpoints=1, seconds=1.0)
    assert (report.ok, report.first_bad_seq, report.bad_range) == (False, 6, (6, 7))
    assert report.reason == "leaf; column"
    assert report.problems[0] == "seq 6: leaf"
    assert report.summary() == "FAILED at seq 6: leaf; column"
    assert json.loads(json.dumps(report.to_json()))["first_bad_seq"] == 6


def test_report_without_a_seq_still_fails() -> None:
    report = make_report([Finding("the sidecar is missing")], uncovered=0, entries=1,
                     checkpoints=1, seconds=0.1)
    assert (report.ok, report.first_bad_seq, report.reason) == \
        (False, None, "the sidecar is missing")
    assert report.summary() == "FAILED: the sidecar is missing"


# -- key history ---------------------------------------------------------------------------


def _genesis(origin: str, vkey: str) -> dict[str, Any]:
    return {"category": "system", "action": "ledger.open", "data": {"origin": origin,
                                                                     "vkey": vkey}}


def test_history_from_events_follows_rotations() -> None:
    a, b = SigningKey.generate("o"), SigningKey.generate("o")
    rotate = {"category": "system", "action": "key.rotate",
              "data": {"old_vkey": a.vkey(), "new_vkey": b.vkey()}}
    derived = history_from_events("o", [(0, _genesis("o", a.vkey())), (5, rotate)])
    assert derived.rotations == [5]
    assert [(w.verifier, w.valid_from, w.valid_to) for w in derived.history.windows] == \
        [(a.verifier(), 1, 6), (b.verifier(), 7, None)]


@pytest.mark.parametrize(("events", "seq", "reason"), [
    ([], 0, "genesis entry (seq 0) is missing"),
    ([(0, {"category": "system", "action": "x"})], 0, "not the genesis event"),
    ([(0, _genesis("other", "k"))], 0, "names origin 'other'"),
    ([(0, _genesis("o", "not a vkey"))], 0, "data.vkey: malformed verifier key"),
])
def test_history_from_events_rejects(events: list[tuple[int, dict[str, Any]]], seq: int,
                                     reason: str) -> None:
    with pytest.raises(VerifyFailure) as raised:
        history_from_events("o", events)
    assert raised.value.seq == seq and reason in raised.value.reason


def test_rotation_must_name_the_current_key() -> None:
    a, b, c = (SigningKey.generate("o") for _ in range(3))
    rotate = {"category": "system", "action": "key.rotate",
              "data": {"old_vkey": c.vkey(), "new_vkey": b.vkey()}}
    with pytest.raises(VerifyFailure, match="names old key") as raised:
        history_from_events("o", [(0, _genesis("o", a.vkey())), (3, rotate)])
    assert raised.value.seq == 3


def test_forged_rotation_without_the_current_key_is_rejected(files: Store) -> None:
    files.build_batches([3])
    with files.storage() as storage:
        origin = storage.origin
        last = storage.entry(3)
        assert last is not None and last.ts_us is not None
    mine = SigningKey.generate(origin)
    forged = build_envelope(
        AuditEvent(event_type="system", action="key.rotate", severity="notice",
                   resource="signing-key",
                   details={"old_key_id": "x", "old_vkey": key_history_vkey(files),
                            "new_vkey": mine.vkey()}),
        origin=origin, seq=4, ts_us=last.ts_us, actor=None, retention="default", pii=None)
    leaves = [bytes(r[0]) for r in files.query("SELECT leaf FROM audit_entries ORDER BY seq")]
    leaves.append(leaf_hash(forged))
    root = root_from_leaves(leaves)
    files.query("INSERT INTO audit_entries VALUES (4, ?, 'system', 'key.rotate', 'notice', "
              "'signing-key', NULL, NULL, NULL, 'default', ?, ?)",
              [last.ts_us, forged, leaf_hash(forged)])
    files.query("INSERT INTO audit_checkpoints VALUES (5, ?, ?, 0)",
              [root, sign_checkpoint(Checkpoint(origin, 5, root), mine.signer())])
    with files.storage() as storage, pytest.raises(VerifyFailure) as raised:
        key_history(storage)
    assert raised.value.seq == 4
    assert "no checkpoint of size 5 vouches" not in raised.value.reason
    assert "does not verify" in raised.value.reason
    assert AlarmKind.TAMPERED in {a.kind for a in files_alarms(files)}


def key_history_vkey(files: Store) -> str:
    with files.storage() as storage:
        return key_history(storage).current.vkey()


def files_alarms(files: Store) -> list[Any]:
    with files.storage() as storage:
        return startup_check(storage, Sidecar(files.sidecar), [])


# -- quick verification and the startup check --------------------------------------------------


def test_quick_verification_checks_the_newest_checkpoint_against_the_stored_tree(
        files: Store) -> None:
    files.build_batches([5, 6])
    assert files.quick().ok
    files.query("UPDATE audit_nodes SET hash = ? WHERE level = 2 AND idx = 2", [b"\x00" * 32])
    report = files.quick()
    assert not report.ok and report.reason.startswith("TAMPERED: the store's tree gives root")


def test_quick_verification_checks_the_frontier(files: Store) -> None:
    files.build_batches([5])
    files.query("UPDATE audit_meta SET value = '{\"size\":0,\"hashes\":[]}' "
              "WHERE key = 'frontier'")
    report = files.quick()
    assert "audit_meta's frontier (size 0) does not give the signed root" in report.reason


def test_sidecar_line_is_what_the_sidecar_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sidecar = Sidecar(path)
    sidecar.append(3, b"\x01" * 32, "o\n3\nAQ==\n\n\u2014 o AAAA\n")
    sidecar.close()
    assert path.read_bytes() == sidecar_line(3, b"\x01" * 32, "o\n3\nAQ==\n\n\u2014 o AAAA\n")


def test_torn_sidecar_line_is_fine_only_as_a_prefix_of_the_next_checkpoint(
        files: Store) -> None:
    files.build_batches([2, 3])
    lines = files.sidecar.read_bytes().splitlines(keepends=True)
    files.sidecar.write_bytes(b"".join(lines[:-1]) + lines[-1][:40])
    assert files_alarms(files) == []  # a write cut short: the store is ahead of the sidecar
    files.sidecar.write_bytes(b"".join(lines[:-1]) + lines[-1][:39] + b"X")
    alarms = files_alarms(files)
    assert [a.kind for a in alarms] == [AlarmKind.SIDECAR_CORRUPT]
    assert "neither a record nor a cut-short write" in alarms[0].message


def test_acknowledged_foreign_checkpoint_raises_no_alarm() -> None:
    key = SigningKey.generate("o")
    history = KeyHistory.genesis(key.verifier())
    cp = Checkpoint("o", 9, b"\x02" * 32)
    note = sign_checkpoint(cp, key.signer())
    latest = StoredCheckpoint(5, b"\x03" * 32, "n", 0)

    def view(acked: frozenset[tuple[int, bytes]]) -> StoreView:
        return StoreView("o", history, latest, lambda _s: None, lambda _s: None,
                         lambda _s: b"", acked)

    alarm = compare_foreign(view(frozenset()), cp, note, "anchor x")
    assert alarm is not None and alarm.kind is AlarmKind.ROLLBACK
    assert alarm.evidence["foreign_note"] == note
    assert compare_foreign(view(frozenset({(9, b"\x02" * 32)})), cp, note, "anchor x") is None


def test_missing_store_with_a_sidecar_is_a_missing_log(files: Store) -> None:
    files.build_batches([2])
    files.db.unlink()
    alarms = startup_check(None, Sidecar(files.sidecar), [])
    assert [a.kind for a in alarms] == [AlarmKind.MISSING_LOG]
    assert "the sidecar" in alarms[0].message


# -- removed payloads and erased subjects ------------------------------------------------------


PRUNE = ("UPDATE audit_entries SET envelope = NULL, ts_us = NULL, category = NULL, "
         "action = NULL, severity = NULL, resource = NULL, outcome = NULL, actor = NULL, "
         "correlation_id = NULL, retention = NULL WHERE ")


def prune_behind_the_ledgers_back(files: Store, where: str) -> None:
    with files.connect() as conn:
        conn.execute(PRUNE + where)


def test_pruned_payloads_need_a_signed_retention_record(files: Store) -> None:
    files.build_batches([4, 4])
    prune_behind_the_ledgers_back(files, "seq IN (2, 3)")
    report = files.verify()
    assert (report.ok, report.first_bad_seq) == (False, 2)
    assert "no signed retention record covers it" in report.reason


def test_pruned_payloads_with_a_retention_record_verify(files: Store) -> None:
    files.build_batches([4, 4])
    with files.open() as ledger:
        append_record(ledger, "system", "retention.prune", "audit",
                      {"ranges": [[2, 4]], "checkpoint_size": ledger.size, "class": "x"})
        assert run_maintenance(ledger, lambda cur: remove_payloads(cur, [(2, 4)])) == 2
    report = files.verify()
    assert report.ok, report.problems
    assert report.pruned == 2
    # a payload removed outside the recorded ranges still fails
    prune_behind_the_ledgers_back(files, "seq = 6")
    assert files.verify().first_bad_seq == 6


def test_erased_subject_verifies_and_deleted_sealed_data_does_not(files: Store) -> None:
    with files.open() as ledger:
        for i in range(4):
            ledger.append({"event_type": "authentication", "action": "login",
                           "user_id": f"user{i % 2}", "source": "10.0.0.1",
                           "details": {"n": i}})
        ledger.erase("user0", "subject request")
    report = files.verify()
    assert report.ok, report.problems
    assert report.erased == 2
    files.query("DELETE FROM audit_pii WHERE seq = 2")  # user1's data, never erased
    report = files.verify()
    assert report.first_bad_seq == 2
    assert "no later signed gdpr.erasure record names that ref" in report.reason


def test_sealed_data_must_match_its_commitment(files: Store) -> None:
    with files.open() as ledger:
        ledger.append({"event_type": "authentication", "action": "login", "user_id": "u",
                       "details": {"n": 1}})
    files.query("UPDATE audit_pii SET ciphertext = ciphertext || '\\x00'::BLOB WHERE seq = 1")
    report = files.verify()
    assert report.first_bad_seq == 1
    assert "does not match the envelope's sha256 commitment" in report.reason


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_verify_ok_and_failed(files: Store, capsys: pytest.CaptureFixture[str]) -> None:
    files.build_batches([3, 4])
    assert run_cli(files, "verify") == EXIT_OK
    assert capsys.readouterr().out.startswith("OK (quick): 8 entries")
    assert run_cli(files, "verify", "--full") == EXIT_OK
    assert "entries/s" in capsys.readouterr().out
    files.query("UPDATE audit_entries SET action = 'nothing' WHERE seq = 5")
    assert run_cli(files, "verify", "--full") == EXIT_PROBLEMS
    out = capsys.readouterr().out
    assert out.startswith("FAILED at seq 5: search column action differs from the envelope")
    assert run_cli(files, "verify", "--full", "--json") == EXIT_PROBLEMS
    data = json.loads(capsys.readouterr().out)
    assert (data["ok"], data["first_bad_seq"]) == (False, 5)


def test_cli_verify_pinned_key(files: Store, capsys: pytest.CaptureFixture[str]) -> None:
    files.build_batches([2])
    other = SigningKey.generate("x").vkey()
    assert run_cli(files, "verify", "--full", "--vkey", other) == EXIT_PROBLEMS
    assert "does not verify" in capsys.readouterr().out
    assert run_cli(files, "verify", "--full", "--vkey", key_history_vkey(files)) == EXIT_OK


def test_cli_verify_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "verify", "--db", str(tmp_path / "none.duckdb")]) == EXIT_USAGE
    assert "no such store" in capsys.readouterr().err


def test_cli_receipt_round_trip(files: Store, capsys: pytest.CaptureFixture[str]) -> None:
    files.build_batches([3, 4])
    receipt = files.root / "r.txt"
    assert run_cli(files, "receipt", "4", "-o", str(receipt), "--since", "4") == EXIT_OK
    err = capsys.readouterr().err
    vkey = err.split("--vkey ")[1].strip()
    assert main(["audit", "verify-receipt", str(receipt), "--vkey", vkey]) == EXIT_OK
    assert capsys.readouterr().out.startswith("OK seq=4 ")
    receipt.write_text(receipt.read_text().replace("index 4", "index 5"))
    assert main(["audit", "verify-receipt", str(receipt), "--vkey", vkey]) == EXIT_PROBLEMS
    assert run_cli(files, "receipt", "99") == EXIT_PROBLEMS
    assert "not in the newest checkpoint" in capsys.readouterr().err


def test_cli_acknowledge(files: Store, capsys: pytest.CaptureFixture[str]) -> None:
    files.build_batches([2, 2])
    assert run_cli(files, "acknowledge", "--reason", "drill") == EXIT_OK
    assert "nothing to acknowledge" in capsys.readouterr().out
    lines = files.sidecar.read_bytes().splitlines(keepends=True)
    files.truncate(3)
    assert [a.kind for a in files_alarms(files)] == [AlarmKind.ROLLBACK]
    assert run_cli(files, "acknowledge", "--reason", "restored a backup") == EXIT_OK
    out = capsys.readouterr().out
    assert "acknowledged ROLLBACK" in out and "incarnation 1 started" in out
    assert files.sidecar.with_name(files.sidecar.name + ".incarnation-1").read_bytes() == \
        b"".join(lines)
    assert files_alarms(files) == []
    assert files.verify().ok


def test_verification_of_a_live_ledger_sees_one_consistent_state(files: Store) -> None:
    """The sidecar and anchors are read before the store's snapshot: a writer committing
    meanwhile never makes the sidecar look ahead of the store (a false ROLLBACK)."""
    ledger = files.open(batch_ms=1.0)
    stop = threading.Event()

    def write() -> None:
        i = 0
        while not stop.is_set():
            ledger.append_many([event(i + k) for k in range(20)])
            i += 20

    writer = threading.Thread(target=write)
    writer.start()
    try:
        reports = [check(ledger.storage, ledger.sidecar) for _ in range(4)
                   for check in (verify_full, verify_quick)]
    finally:
        stop.set()
        writer.join()
        ledger.close()
    assert [r.problems for r in reports if not r.ok] == []
    assert reports[-2].entries > 1


def test_anchor_note_signed_by_a_foreign_key_is_a_fork_until_acknowledged(files: Store) -> None:
    files.build_batches([3])
    with files.storage() as storage:
        origin = storage.origin
    impostor = SigningKey.generate(origin)
    cp = Checkpoint(origin, 9, b"\x05" * 32)
    files.anchor().publish(sign_checkpoint(cp, impostor.signer()), cp, lambda _old: [])
    alarms = files.alarms()
    assert [a.kind for a in alarms] == [AlarmKind.FORK]
    assert "does not verify under the store's key history" in alarms[0].message
    assert alarms[0].evidence["foreign_size"] == "9"
    done = acknowledge(files.db, files.sidecar, "the impostor's note is known",
                       lambda: files.open(check=False), [files.anchor()])
    assert [a.kind for a in done.alarms] == [AlarmKind.FORK]
    assert files.alarms() == []
