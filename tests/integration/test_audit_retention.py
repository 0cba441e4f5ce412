"""Retention of the audit ledger: pruning (T35, T36) and Parquet archives with signed manifests.

Real DuckDB files, keys in 0600 files, a fake clock so events can be made months old. Tamper
cases change the store or the archive files directly (SQL on the closed store, rewritten
Parquet files, edited manifests) and assert the specific detection.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.audit.archive import (
    archive,
    archive_files,
    archived_personal,
    verify_archive,
)
from monitoring.audit.envelope import AuditEvent, parse_envelope
from monitoring.audit.errors import AuditError
from monitoring.audit.keys import SigningKey
from monitoring.audit.ledger import Ledger
from monitoring.audit.merkle import leaf_hash, root_at, verify_consistency, verify_inclusion
from monitoring.audit.note import open_checkpoint, parse_note, sign_note
from monitoring.audit.policy import AuditPolicy
from monitoring.audit.presets import BUILTIN_CLASSES, RetentionClass
from monitoring.audit.retention import RemovalCoverage, plan_prune, prune
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import LedgerStorage
from monitoring.audit.verify import Report, verify_full
from monitoring.cli import main
from tests.support.audit_files import T0_MS, LedgerFiles

DAY = 86_400_000
T0 = T0_MS
"""The fake clock's start (ms since the epoch)."""


def make_policy(*, hold: str | None = None) -> AuditPolicy:
    """standard: 30 days, 7 hot; long: 400 days, 90 hot; ``hold`` puts a class on hold."""
    classes = dict(BUILTIN_CLASSES)
    classes["standard"] = RetentionClass("standard", 30 * DAY, 7 * DAY, hold=hold == "standard")
    classes["long"] = RetentionClass("long", 400 * DAY, 90 * DAY, hold=hold == "long")
    return AuditPolicy(retention_classes=classes)


@dataclass
class Files(LedgerFiles):
    """The shared test ledger files (store, 0600 keys, fake clock) with a retention policy."""

    policy: AuditPolicy = field(default_factory=make_policy)

    def open(self, **options: Any) -> Ledger:
        options.setdefault("policy", self.policy)
        return super().open(**options)

    @property
    def sidecar(self) -> Path:
        return self.db.with_name(self.db.name + ".checkpoints")

    def args(self, *args: str) -> list[str]:
        """``monitoring audit ARGS`` on this store, for :func:`monitoring.cli.main`."""
        return ["audit", *args, "--db", str(self.db), "--key", str(self.key),
                "--kek", str(self.kek)]

    def verify(self) -> Report:
        """Full verification of the closed store, read-only."""
        conn = duckdb.connect(str(self.db), read_only=True)
        try:
            return verify_full(LedgerStorage(conn), Sidecar(self.sidecar))
        finally:
            conn.close()


@dataclass
class Populated:
    """Which seqs ``populate`` wrote, by class."""

    standard_old: list[int]
    long_old: list[int]
    standard_new: list[int]
    personal: dict[int, str]
    """seq -> user id of the entries with personal data."""


def populate(files: Files, ledger: Ledger) -> Populated:
    """Day 0: 20 logins alternating standard/long (even ones with a user); day 35: 5 edits."""
    files.now_ms = T0
    out = Populated([], [], [], {})
    for i in range(20):
        user = f"user{i % 3}@example.com" if i % 2 == 0 else None
        ev = AuditEvent(event_type="authentication", action="login", user_id=user,
                        resource="auth", retention="long" if i % 4 in (1, 2) else None,
                        details={"attempt": i})
        seq = ledger.append(ev).seq
        assert seq is not None
        (out.long_old if i % 4 in (1, 2) else out.standard_old).append(seq)
        if user:
            out.personal[seq] = user
    files.now_ms = T0 + 35 * DAY
    for i in range(5):
        seq = ledger.append(AuditEvent(event_type="configuration_change", action="edit",
                                       resource="rules", details={"n": i})).seq
        assert seq is not None
        out.standard_new.append(seq)
    return out


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def ranges_of(seqs: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] == s:
            out[-1][1] += 1
        else:
            out.append([s, s + 1])
    return [(a, b) for a, b in out]


def assert_every_checkpoint_verifies(ledger: Ledger) -> None:
    """Signature, root recomputed from the kept tree, and consistency with the next one."""
    storage = ledger.storage
    assert ledger.history is not None
    stored = storage.checkpoints()
    for cp in stored:
        opened, _ = open_checkpoint(cp.note, ledger.history.verifiers, ledger.origin)
        assert (opened.size, opened.root) == (cp.size, cp.root)
        assert root_at(storage, cp.size) == cp.root
    for a, b in itertools.pairwise(stored):
        verify_consistency(a.size, b.size, a.root, b.root,
                           ledger.consistency_proof(a.size, b.size))


def assert_remaining_proofs_verify(ledger: Ledger) -> int:
    """Every entry that still has its envelope is provably in the newest checkpoint."""
    latest = ledger.storage.latest_checkpoint()
    assert latest is not None
    checked = 0
    for entry in ledger.storage.entries(0, latest.size):
        if entry.envelope:
            verify_inclusion(leaf_hash(entry.envelope), entry.seq, latest.size,
                             ledger.inclusion_proof(entry.seq), latest.root)
            checked += 1
    return checked


def record(ledger: Ledger, seq: int) -> dict[str, Any]:
    entry = ledger.storage.entry(seq)
    assert entry is not None and entry.envelope
    return parse_envelope(entry.envelope)


# ---------------------------------------------------------------------- T35: legal prune


def test_t35_legal_prune_keeps_every_checkpoint_and_proof_valid(files: Files) -> None:
    with files.open() as ledger:
        seqs = populate(files, ledger)
        before = {e.seq: e.leaf for e in ledger.storage.entries(0, ledger.size)}
        old_cp = ledger.storage.latest_checkpoint()
        assert old_cp is not None
        files.now_ms = T0 + 40 * DAY
        plan = plan_prune(ledger, files.now_ms)
        assert [c.retention for c in plan.cuts] == ["standard"]
        assert plan.cuts[0].ranges == ranges_of(seqs.standard_old)
        assert plan.count == len(seqs.standard_old) == 10
        assert any(s.startswith("meta:") for s in plan.skipped)
        result = prune(ledger, plan, "ops-lead")
        assert result.removed == 10 and len(result.records) == 1
        rec_seq = result.records[0].seq
        assert rec_seq is not None and rec_seq > max(seqs.standard_old)

        # the prune record is present, signed and says exactly what was removed
        rec = record(ledger, rec_seq)
        assert (rec["category"], rec["action"], rec["retention"]) == (
            "system", "retention.prune", "meta")
        data = rec["data"]
        assert data["ranges"] == [list(r) for r in ranges_of(seqs.standard_old)]
        assert data["count"] == 10 and data["approver"] == "ops-lead"
        assert data["retention"] == "standard" and data["retain_ms"] == 30 * DAY
        assert data["checkpoint_size"] == plan.checkpoint_size == old_cp.size
        assert data["cut_ts_us"] == (files.now_ms - 30 * DAY) * 1000
        latest = ledger.storage.latest_checkpoint()
        assert latest is not None
        cp, _ = open_checkpoint(latest.note, [ledger.key.verifier()], ledger.origin)
        rec_entry = ledger.storage.entry(rec_seq)
        assert rec_entry is not None
        verify_inclusion(leaf_hash(rec_entry.envelope), rec_seq, cp.size,
                         ledger.inclusion_proof(rec_seq), cp.root)

        # payloads gone, leaf hashes and everything else kept
        for s in seqs.standard_old:
            entry = ledger.storage.entry(s)
            assert entry is not None
            assert entry.envelope == b"" and entry.leaf == before[s]
            assert ledger.storage.pii(s) is None
        for s in seqs.long_old + seqs.standard_new:
            entry = ledger.storage.entry(s)
            assert entry is not None and entry.envelope
        assert root_at(ledger.storage, old_cp.size) == old_cp.root
        assert_every_checkpoint_verifies(ledger)
        assert assert_remaining_proofs_verify(ledger) == ledger.size - 10
        # the sealed data of a remaining entry still decrypts
        kept = next(s for s in seqs.long_old if s in seqs.personal)
        assert (ledger.personal(kept) or {}).get("user_id") == seqs.personal[kept]
    report = files.verify()
    assert report.ok, report.summary()
    assert report.pruned == 10
    with files.open() as ledger:  # the startup check accepts the pruned store
        assert_every_checkpoint_verifies(ledger)


def test_t35_prune_is_idempotent_and_never_touches_meta_or_held_classes(files: Files) -> None:
    files.policy = make_policy(hold="long")
    with files.open() as ledger:
        seqs = populate(files, ledger)
        files.now_ms = T0 + 1000 * DAY
        plan = plan_prune(ledger, files.now_ms)
        assert [c.retention for c in plan.cuts] == ["standard"]
        assert plan.cuts[0].ranges == ranges_of(seqs.standard_old + seqs.standard_new)
        assert "long: under legal hold" in plan.skipped
        first = prune(ledger, plan, "ops")
        again = plan_prune(ledger, files.now_ms)
        assert again.empty  # the genesis and the prune record itself (meta) are never pruned
        assert prune(ledger, again, "ops").records == []
        assert record(ledger, 0)["action"] == "ledger.open"
        assert first.records[0].seq is not None
        assert record(ledger, first.records[0].seq)["action"] == "retention.prune"
    assert files.verify().ok


def test_prune_refuses_a_bad_approver_plan_or_tampered_candidate(files: Files,
                                                                 tmp_path: Path) -> None:
    with files.open() as ledger:
        seqs = populate(files, ledger)
        plan = plan_prune(ledger, T0 + 40 * DAY)
        with pytest.raises(AuditError, match="approver"):
            prune(ledger, plan, "  ")
        (tmp_path / "other").mkdir()
        with Files(tmp_path / "other").open() as foreign, \
                pytest.raises(AuditError, match="the plan is for"):
            prune(foreign, plan, "ops")
    victim = seqs.standard_old[3]
    files.sql(f"UPDATE audit_entries SET envelope = encode(replace(decode(envelope), 'login', "
              f"'logon')) WHERE seq = {victim}")
    with files.open() as ledger:
        with pytest.raises(AuditError, match=f"seq {victim}: the stored envelope does not "
                                             "match its leaf hash"):
            plan_prune(ledger, T0 + 40 * DAY)
        assert ledger.storage.entry(seqs.standard_old[0]).envelope  # type: ignore[union-attr]


class LaggingAnchor:
    """An anchor that holds only the genesis checkpoint."""

    name = "lagging"

    def __init__(self, note: str) -> None:
        self.note = note

    def latest(self) -> str | None:
        return self.note

    def publish(self, note: str, cp: Any, proof_from: Any) -> None:
        pass


def test_prune_waits_until_the_anchors_hold_the_cut(files: Files) -> None:
    with files.open() as ledger:
        populate(files, ledger)
        genesis = ledger.storage.checkpoint(1)
        assert genesis is not None
        ledger.anchors = [LaggingAnchor(genesis.note)]
        plan = plan_prune(ledger, T0 + 40 * DAY)
        with pytest.raises(AuditError, match="anchor lagging holds checkpoint size 1"):
            prune(ledger, plan, "ops")
        assert ledger.storage.entries(0, ledger.size)[1].envelope  # nothing deleted
        result = prune(ledger, plan, "ops", force_unanchored=True)
        assert result.removed == plan.count
        ledger.anchors = []


# ---------------------------------------------------------------------- T36: beyond policy


@pytest.fixture
def pruned(files: Files) -> Populated:
    """A ledger with a legal prune of the day-0 standard entries, closed."""
    with files.open() as ledger:
        seqs = populate(files, ledger)
        prune(ledger, plan_prune(ledger, T0 + 40 * DAY), "ops")
    assert files.verify().ok
    return seqs


def remove_payload_sql(seq: int) -> list[str]:
    cols = ("envelope", "ts_us", "category", "action", "severity", "resource", "outcome",
            "actor", "correlation_id", "retention")
    return [f"UPDATE audit_entries SET {', '.join(c + ' = NULL' for c in cols)} "
            f"WHERE seq = {seq}", f"DELETE FROM audit_pii WHERE seq = {seq}"]


def test_t36_middle_entry_removed_without_a_record_fails_at_its_seq(files: Files,
                                                                   pruned: Populated) -> None:
    victim = pruned.long_old[2]  # a middle entry of a class that has not expired
    files.sql(*remove_payload_sql(victim))
    report = files.verify()
    assert not report.ok
    assert report.first_bad_seq == victim
    assert "no signed retention record covers it" in report.reason


def test_t36_entry_newer_than_the_cut_removed_fails(files: Files, pruned: Populated) -> None:
    victim = pruned.standard_new[1]  # same class, but after the prune's cut
    files.sql(*remove_payload_sql(victim))
    report = files.verify()
    assert report.first_bad_seq == victim
    assert "no signed retention record covers it" in report.reason


def test_t36_pruned_row_deleted_entirely_fails(files: Files, pruned: Populated) -> None:
    victim = pruned.standard_old[4]  # legally pruned, but its leaf must stay
    files.sql(f"DELETE FROM audit_entries WHERE seq = {victim}")
    report = files.verify()
    assert report.first_bad_seq == victim
    assert f"seqs {victim}..{victim} are missing" in report.reason


def test_t36_a_record_covers_only_what_its_checkpoint_covered() -> None:
    coverage = RemovalCoverage()

    def env(action: str, data: Any, category: str = "system") -> dict[str, Any]:
        return {"category": category, "action": action, "data": data}

    coverage.add(20, env("retention.prune", {"ranges": [[2, 4], [6, 9]], "checkpoint_size": 8}))
    coverage.add(5, env("retention.prune", {"ranges": [[0, 2]], "checkpoint_size": 9}))
    coverage.add(30, env("retention.prune", {"ranges": [[12, 14]], "checkpoint_size": 14},
                         category="security"))
    coverage.add(31, env("login", {"ranges": [[14, 16]], "checkpoint_size": 20}))
    coverage.add(32, env("retention.archive", {"ranges": [[16, 17]], "checkpoint_size": 17}))
    coverage.add(33, env("retention.prune", {"ranges": "1-4", "checkpoint_size": 20}))
    covered = [s for s in range(20) if coverage.covers(s)]
    # [6, 9) ends after the record's checkpoint size 8; the record at seq 5 precedes its own
    # cut; a security or login event is no retention record; a malformed one covers nothing
    assert covered == [2, 3, 16]
    assert coverage.first_uncovered([2, 3, 6, 16]) == 6
    assert coverage.first_uncovered([3, 16]) is None


# ---------------------------------------------------------------------- archives


@pytest.fixture
def archived(files: Files) -> Iterator[tuple[Ledger, Populated, Path]]:
    """Day-0 long entries and all standard entries archived at day 100 (their hot age past)."""
    folder = files.root / "archive"
    with files.open() as ledger:
        seqs = populate(files, ledger)
        files.now_ms = T0 + 100 * DAY
        written = archive(ledger, folder, now_ms=files.now_ms)
        assert [(f.retention, f.count) for f in written] == [("long", 10), ("standard", 15)]
        yield ledger, seqs, folder


def test_archive_is_queryable_verifiable_and_leaves_the_ledger_valid(
        files: Files, archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, seqs, folder = archived
    pattern = str(folder / "*.parquet")
    conn = duckdb.connect()
    rows = conn.execute(
        "SELECT retention, count(*), min(ts), count(pii_ciphertext) FROM read_parquet(?) "
        "GROUP BY retention ORDER BY retention", [pattern]).fetchall()
    conn.close()
    assert [(r[0], r[1], r[3]) for r in rows] == [("long", 10, 5), ("standard", 15, 5)]
    assert str(rows[0][2]).startswith("2023-11-14")  # ts is a TIMESTAMP DuckDB can filter on

    report = verify_archive(folder, ledger)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.files, report.rows) == (2, 25)
    by_key = verify_archive(folder, ledger.key.vkey(), origin=ledger.origin)
    assert by_key.ok and by_key.rows == 25

    # payloads left the hot store under signed retention.archive records
    for s in seqs.long_old + seqs.standard_old + seqs.standard_new:
        assert ledger.storage.entry(s).envelope == b""  # type: ignore[union-attr]
    live = archive_files(ledger)
    assert [f.path.name for f in live] == sorted(p.name for p in folder.glob("*.parquet"))
    rec = record(ledger, live[0].record_seq)
    assert (rec["action"], rec["data"]["sha256"]) == ("retention.archive", live[0].sha256)
    assert_every_checkpoint_verifies(ledger)
    assert_remaining_proofs_verify(ledger)
    some = next(iter(seqs.personal))
    assert (archived_personal(ledger, some) or {}).get("user_id") == seqs.personal[some]
    assert archive(ledger, folder, now_ms=files.now_ms) == []  # nothing left to archive
    ledger.close()
    report_full = files.verify()
    assert report_full.ok, report_full.summary()
    assert report_full.pruned == 25


def rewrite_parquet(path: Path, set_sql: str) -> None:
    """Rewrite an archive file with one SQL change (``SELECT * REPLACE (...)``)."""
    tmp = path.with_name("tmp.parquet")
    conn = duckdb.connect()
    conn.execute(f"COPY (SELECT * REPLACE ({set_sql}) FROM read_parquet('{path}') ORDER BY seq)"
                 f" TO '{tmp}' (FORMAT parquet)")
    conn.close()
    os.replace(tmp, path)


def resign_manifest(manifest: Path, key: SigningKey, **changes: Any) -> None:
    """Adversary A3: rewrite the manifest body and sign it again with the ledger key."""
    import json

    import rfc8785

    body = json.loads(parse_note(manifest.read_text()).body)
    body.update(changes)
    manifest.write_text(sign_note(rfc8785.dumps(body).decode() + "\n", [key.signer()]))


def problems(report: Any) -> list[str]:
    return [str(p) for p in report.problems]


def test_archive_edited_value_detected_by_file_hash(
        archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, _seqs, folder = archived
    target = archive_files(ledger)[0].path
    rewrite_parquet(target, "CASE WHEN seq = 2 THEN 'critical' ELSE severity END AS severity")
    for against in (ledger, ledger.key.vkey()):
        found = problems(verify_archive(folder, against))
        assert f"{target.name}: file SHA-256 does not match its signed manifest (file " \
               "altered or swapped)" in found
        assert f"{target.name}: seq 2: column severity 'critical' differs from the signed " \
               "envelope's 'info'" in found


def test_archive_resigned_after_editing_an_envelope_detected(
        archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, seqs, folder = archived
    f = archive_files(ledger)[0]
    victim = seqs.long_old[1]
    from monitoring.audit.archive import sha256_file

    rewrite_parquet(f.path, f"CASE WHEN seq = {victim} THEN encode(replace(decode(envelope), "
                    "'\"login\"', '\"logon\"')) ELSE envelope END AS envelope")
    rewrite_parquet(f.path, f"CASE WHEN seq = {victim} THEN unhex(sha256('\\x00'::BLOB || "
                    "envelope)) ELSE leaf END AS leaf")  # a consistent leaf for the new bytes
    conn = duckdb.connect()
    env, leaf = conn.execute("SELECT envelope, leaf FROM read_parquet(?) WHERE seq = ?",
                             [str(f.path), victim]).fetchone()  # type: ignore[misc]
    conn.close()
    assert b'"logon"' in env and leaf == leaf_hash(env)
    resign_manifest(f.manifest, ledger.key, sha256=sha256_file(f.path))
    by_key = problems(verify_archive(folder, ledger.key.vkey()))
    assert len(by_key) == 1
    assert by_key[0].startswith(f"{f.path.name}: seq {victim}: inclusion proof against the "
                                "manifest checkpoint fails")
    by_ledger = problems(verify_archive(folder, ledger))
    assert f"{f.manifest.name}: manifest differs from the one recorded at seq " \
           f"{f.record_seq}" in by_ledger
    assert f"{f.path.name}: seq {victim}: archived leaf differs from the ledger's kept leaf " \
           "hash" in by_ledger


def test_archive_swapped_files_detected(archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, _seqs, folder = archived
    a, b = (f.path for f in archive_files(ledger))
    tmp = folder / "swap"
    os.replace(a, tmp)
    os.replace(b, a)
    os.replace(tmp, b)
    found = problems(verify_archive(folder, ledger))
    for path in (a, b):
        assert f"{path.name}: file SHA-256 does not match its signed manifest (file altered or " \
               "swapped)" in found
        assert any(p.startswith(f"{path.name}: seq ") and "rows do not match the manifest's "
                   "ranges" in p for p in found)


def test_archive_edited_manifest_detected(archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, _seqs, folder = archived
    manifest = archive_files(ledger)[1].manifest
    manifest.write_text(manifest.read_text().replace('"count":15', '"count":14'))
    parquet = manifest.with_suffix(".parquet").name
    expected = [f"{manifest.name}: manifest rejected: invalid signature for key "
                f"{ledger.origin}+{ledger.key.verifier().key_id.hex()}",
                f"{parquet}: no manifest names this file (unsigned data)"]
    assert problems(verify_archive(folder, ledger.key.vkey())) == expected
    assert problems(verify_archive(folder, ledger)) == [*expected, (
        f"{parquet}: recorded by the ledger at seq {archive_files(ledger)[1].record_seq} but "
        "missing from this folder (or its manifest is)")]


def test_archive_of_another_ledger_or_missing_files_detected(
        files: Files, archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, _seqs, folder = archived
    first = archive_files(ledger)[0]
    found = problems(verify_archive(folder, ledger.key.vkey(), origin="example.org/other"))
    assert found[0].startswith(f"{first.manifest.name}: manifest rejected: checkpoint is for "
                               f"origin '{ledger.origin}'")
    first.path.unlink()
    first.manifest.unlink()
    found = problems(verify_archive(folder, ledger))
    assert found == [f"{first.path.name}: recorded by the ledger at seq {first.record_seq} but "
                     "missing from this folder (or its manifest is)"]


def test_expired_archives_are_deleted_by_prune(
        files: Files, archived: tuple[Ledger, Populated, Path]) -> None:
    ledger, seqs, folder = archived
    plan = plan_prune(ledger, T0 + 500 * DAY)
    assert sorted(c.retention for c in plan.cuts) == ["long", "standard"]
    assert plan.count == 25 and all(len(c.archives) == 1 for c in plan.cuts)
    result = prune(ledger, plan, "ops")
    assert result.removed == 0 and result.archived_removed == 25
    assert not list(folder.glob("*.parquet")) and not list(folder.glob("*.manifest"))
    assert archive_files(ledger) == []
    assert archived_personal(ledger, next(iter(seqs.personal))) is None
    assert_every_checkpoint_verifies(ledger)
    ledger.close()
    assert files.verify().ok


# ---------------------------------------------------------------------- CLI


def test_cli_prune_archive_and_verify_archive(files: Files, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "audit_filters.yaml").write_text(
        "authentication:\n  min_severity: info\n"
        "retention:\n  standard:\n    retain: 30d\n    hot: 7d\n")
    files.now_ms = 1_000 * DAY  # 1972-09-27: long before any --now below
    with files.open() as ledger:
        for i in range(6):
            ledger.append({"event_type": "authentication", "action": "login",
                           "details": {"n": i}})
        vkey = ledger.key.vkey()
    folder = tmp_path / "arch"
    base = ["--config", str(config)]
    assert main(files.args("prune", "--dry-run", "--now", "1972-10-10T00:00:00Z") + base) == 0
    out = capsys.readouterr().out
    assert "prune plan at 1972-10-10T00:00:00Z (checkpoint size 7):" in out
    assert "nothing has expired" in out and "dry run: nothing was deleted" in out

    assert main(files.args("archive", "--to", str(folder), "--now", "1972-10-10T00:00:00Z")
                + base) == 0
    out = capsys.readouterr().out
    assert "6 entries of class standard (seq 1-6), recorded at seq 7" in out
    assert main(["audit", "verify-archive", str(folder), "--db", str(files.db)]) == 0
    assert "OK: 1 archive file(s), 6 rows verified" in capsys.readouterr().out
    assert main(["audit", "verify-archive", str(folder), "--vkey", vkey]) == 0
    capsys.readouterr()

    parquet = next(folder.glob("*.parquet"))
    rewrite_parquet(parquet, "CASE WHEN seq = 3 THEN 'logout' ELSE action END AS action")
    assert main(["audit", "verify-archive", str(folder), "--vkey", vkey]) == 1
    out = capsys.readouterr().out
    assert f"FAILED: {parquet.name}: seq 3: column action 'logout' differs from the signed " \
           "envelope's 'login'" in out
    assert main(["audit", "verify-archive", str(folder)]) == 2
    assert "give either --db or --vkey" in capsys.readouterr().err

    assert main(files.args("prune", "--now", "1972-11-01T00:00:00Z") + base) == 2
    assert "--approver is required" in capsys.readouterr().err
    assert main(files.args("prune", "--now", "1972-11-01T00:00:00Z", "--approver", "ops")
                + base) == 0
    out = capsys.readouterr().out
    assert "standard: before 1972-10-02T00:00:00Z: 6 entries (seq 1-6), 1 archive file(s)" in out
    assert "pruned 0 hot payloads and 6 archived entries; signed prune record(s) at seq 8" in out
    assert not parquet.exists()
    assert files.verify().ok
    with pytest.raises(SystemExit) as exc:
        main(files.args("prune", "--now", "yesterday-ish"))
    assert exc.value.code == 2
    assert "invalid time 'yesterday-ish'" in capsys.readouterr().err


def test_cli_archive_refuses_a_locked_ledger(files: Files,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with files.open():
        assert main(files.args("archive", "--to", str(files.root / "a"))) == 2
    assert "monitoring audit: error:" in capsys.readouterr().err


def test_prune_archive_and_erase_while_producers_append(files: Files) -> None:
    """Prune, archive and erasure run between the writer's batches while 4 producers append.

    The first prune runs on a fresh store (the schema allows pruned rows from the start); the
    later ones run while the producers keep the writer busy: none of them may fail, lose an
    event or leave the ledger unverifiable.
    """
    import threading

    from monitoring.audit.erasure import erase

    with files.open() as ledger:
        seqs = populate(files, ledger)
        files.now_ms = T0 + 40 * DAY
        first = prune(ledger, plan_prune(ledger, files.now_ms), "ops")
        assert first.removed > 0
        stop = threading.Event()
        appended: list[int] = []
        errors: list[BaseException] = []

        def produce(k: int) -> None:
            while not stop.is_set():
                try:
                    seq = ledger.append({"event_type": "data_access", "action": "read",
                                         "user_id": f"reader{k}", "details": {"k": k}}).seq
                    appended.append(seq or 0)
                except BaseException as exc:
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        try:
            files.now_ms = T0 + 100 * DAY
            written = archive(ledger, files.root / "archive", now_ms=files.now_ms)
            erased = erase(ledger, next(iter(seqs.personal.values())), "request #1")
            result = prune(ledger, plan_prune(ledger, T0 + 500 * DAY), "ops")
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert errors == [] and ledger.failed is None
        assert written and erased.recorded
        assert result.archived_removed == sum(f.count for f in written)
        assert len(appended) > 10 and len(set(appended)) == len(appended)
    report = files.verify()
    assert report.ok, report.summary()
