"""GDPR erasure by crypto-shredding (T37), no plain hashes of personal data (T38), and a scan
of everything the ledger writes for plaintext personal data (T39).

Real DuckDB files and vault folders; the test subject's email and IP address are searched for
byte by byte in the store file, its WAL, the sidecar, the archives and the vault folder.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from monitoring.audit.archive import archive, archived_personal
from monitoring.audit.envelope import AuditEvent, parse_envelope
from monitoring.audit.erasure import ErasureHeldError, erase
from monitoring.audit.errors import AuditError, ErasedError
from monitoring.audit.ledger import Ledger
from monitoring.audit.merkle import leaf_hash
from monitoring.cli import main
from tests.integration.test_audit_retention import (
    DAY,
    T0,
    Files,
    assert_every_checkpoint_verifies,
    assert_remaining_proofs_verify,
    make_policy,
)

EMAIL = "alice.erasure-test@example.com"
IP = "198.51.100.23"
OTHER = "bob.keeps@example.com"
SECRET_NOTE = "Alice-private-note-7c1f"


@pytest.fixture
def files(tmp_path: Path) -> Files:
    return Files(tmp_path)


def record_subjects(ledger: Ledger, *, retention: str | None = None) -> tuple[list[int],
                                                                               list[int]]:
    """Events of Alice (email, IP, a private note in details) and of Bob; their seqs."""
    alice, bob = [], []
    for i in range(4):
        a = ledger.append(AuditEvent(
            event_type="authentication", action="login", user_id=EMAIL, source=IP,
            resource="auth", retention=retention,
            details={"success": i % 2 == 0, "email": EMAIL, "note": SECRET_NOTE}))
        b = ledger.append(AuditEvent(event_type="data_access", action="read", user_id=OTHER,
                                     resource="report", details={"rows": i}))
        assert a.seq is not None and b.seq is not None
        alice.append(a.seq)
        bob.append(b.seq)
    ledger.append(AuditEvent(event_type="system", action="rule.evaluated", resource="rules",
                             details={"rule": "high_error_rate"}))
    return alice, bob


def pii_needles() -> list[bytes]:
    """The test subject's personal data as it could appear in a file."""
    out = []
    for text in (EMAIL, IP, SECRET_NOTE):
        out += [text.encode(), text.encode("utf-16-le"), text.upper().encode()]
    return out


def hash_needles() -> list[bytes]:
    """Plain hashes a dictionary attack would try, raw and hex, and as leaf hashes."""
    out: list[bytes] = []
    for text in (EMAIL, EMAIL.lower(), IP, SECRET_NOTE):
        for algo in ("sha256", "sha1", "md5", "sha512", "blake2b"):
            digest = hashlib.new(algo, text.encode()).digest()
            out += [digest, digest.hex().encode()]
        out.append(leaf_hash(text.encode()))
    return out


def files_under(*roots: Path) -> Iterator[Path]:
    for root in roots:
        if root.is_file():
            yield root
        elif root.is_dir():
            yield from (p for p in sorted(root.rglob("*")) if p.is_file())


def hits(needles: list[bytes], *roots: Path) -> list[str]:
    found = []
    for path in files_under(*roots):
        data = path.read_bytes()
        found += [f"{path.name}: {n!r}" for n in needles if n in data]
    return found


# ---------------------------------------------------------------------- T37


def test_t37_erasure_shreds_the_key_and_every_checkpoint_still_verifies(files: Files) -> None:
    with files.open() as ledger:
        alice, bob = record_subjects(ledger)
        assert (ledger.personal(alice[0]) or {}).get("user_id") == EMAIL
        ref = ledger.vault.ref_for(EMAIL, create=False)
        assert ref is not None
        sealed = {s: ledger.storage.pii(s) for s in alice}
        key_files = {p: p.read_bytes() for p in files_under(ledger.paths.vault)}
        before = {cp.size: cp.root for cp in ledger.storage.checkpoints()}

        appended = ledger.erase(EMAIL, "GDPR Art. 17 request #4711")
        assert appended.recorded and appended.seq is not None

        # every checkpoint ever signed still verifies, and so does every proof
        assert {cp.size: cp.root for cp in ledger.storage.checkpoints()
                if cp.size in before} == before
        assert_every_checkpoint_verifies(ledger)
        assert assert_remaining_proofs_verify(ledger) == ledger.size
        # the personal data is gone; Bob's is untouched
        for s in alice:
            assert ledger.personal(s) is None
            assert ledger.storage.pii(s) is None
        assert (ledger.personal(bob[0]) or {}).get("user_id") == OTHER
        # decryption is impossible even with a saved copy of the ciphertext
        for s, row in sealed.items():
            assert row is not None
            with pytest.raises(ErasedError):
                ledger.vault.open_sealed(row.ref, row.nonce, row.ciphertext,
                                         f"{ledger.origin}|{s}".encode())
        assert ledger.vault.is_erased(ref)
        assert ledger.vault.ref_for(EMAIL, create=False) is None
        # the wrapped key is not anywhere in the vault folder any more
        remaining = b"".join(p.read_bytes() for p in files_under(ledger.paths.vault))
        shredded = [data for path, data in key_files.items() if not path.exists()]
        assert len(shredded) == 1 and shredded[0] not in remaining
        # the erasure record names the ref, never the subject
        entry = ledger.storage.entry(appended.seq)
        assert entry is not None
        rec = parse_envelope(entry.envelope)
        assert (rec["category"], rec["action"], rec["retention"]) == (
            "security", "gdpr.erasure", "meta")
        assert rec["data"]["subject_ref"] == ref and rec["data"]["sealed_rows_deleted"] == 4
        assert rec["pii"] is None and rec["actor"] is None
        assert EMAIL.encode() not in entry.envelope
        with pytest.raises(AuditError, match="no key for this subject"):
            ledger.erase(EMAIL, "again")
    report = files.verify()
    assert report.ok, report.summary()
    assert report.erased == 4
    # plaintext absent from the store file and its WAL after the CHECKPOINT
    store = [files.db, files.db.with_name(files.db.name + ".wal")]
    assert hits(pii_needles(), *store) == []
    with files.open() as ledger:  # the erased store opens and keeps working
        assert ledger.append(AuditEvent(event_type="authentication", action="login",
                                        user_id=EMAIL)).recorded
        assert ledger.vault.ref_for(EMAIL, create=False) not in (None, ref)


def test_t37_erasure_reaches_archived_ciphertext(files: Files) -> None:
    with files.open() as ledger:
        alice, _bob = record_subjects(ledger)
        files.now_ms = T0 + 400 * DAY
        written = archive(ledger, files.root / "archive", now_ms=files.now_ms)
        assert sum(f.count for f in written) == 9
        assert (archived_personal(ledger, alice[1]) or {}).get("source") == IP
        appended = erase(ledger, EMAIL, "request #4712")
        rec = parse_envelope(ledger.storage.entry(appended.seq).envelope)  # type: ignore[arg-type,union-attr]
        assert rec["data"]["sealed_rows_deleted"] == 0  # the sealed rows live in the archive
        assert archived_personal(ledger, alice[1]) is None  # now undecryptable there too
    assert files.verify().ok


def test_legal_hold_refuses_erasure_unless_forced(files: Files) -> None:
    files.policy = make_policy(hold="long")
    with files.open() as ledger:
        alice, _bob = record_subjects(ledger, retention="long")
        with pytest.raises(ErasureHeldError, match=r"under legal hold \(long\); nothing was "
                                                   r"erased"):
            ledger.erase(EMAIL, "request #4713")
        assert (ledger.personal(alice[0]) or {}).get("user_id") == EMAIL
        assert ledger.vault.ref_for(EMAIL, create=False) is not None
        # the hold follows the events (and their sealed data) into the archive
        files.now_ms = T0 + 100 * DAY
        assert archive(ledger, files.root / "archive", now_ms=files.now_ms)
        assert ledger.storage.pii(alice[0]) is None
        with pytest.raises(ErasureHeldError, match=r"\(long\)"):
            ledger.erase(EMAIL, "request #4713")
        assert (archived_personal(ledger, alice[0]) or {}).get("user_id") == EMAIL
        # Bob's events are in the standard class: not held
        ledger.erase(OTHER, "request #4714")
        appended = ledger.erase(EMAIL, "court order 12/2024", force=True)
        rec = parse_envelope(ledger.storage.entry(appended.seq).envelope)  # type: ignore[arg-type,union-attr]
        assert rec["data"]["forced"] is True and rec["data"]["held_classes"] == ["long"]
        assert archived_personal(ledger, alice[0]) is None
    assert files.verify().ok


def test_cli_erase(files: Files, capsys: pytest.CaptureFixture[str]) -> None:
    with files.open() as ledger:
        record_subjects(ledger)
    with pytest.raises(SystemExit) as exc:  # --reason is required
        main(files.args("erase", EMAIL))
    assert exc.value.code == 2
    capsys.readouterr()
    assert main(files.args("erase", EMAIL, "--reason", "request #4715")) == 0
    out, err = capsys.readouterr()
    assert "subject key destroyed and sealed data deleted; recorded as seq 10" in out
    assert EMAIL not in out + err
    assert main(files.args("erase", EMAIL, "--reason", "again")) == 1
    assert "monitoring audit: error: erase: the vault holds no key for this subject" in \
        capsys.readouterr().err
    assert files.verify().ok


# ---------------------------------------------------------------------- T38, T39


def test_t38_no_leaf_or_envelope_commits_to_a_plain_hash_of_personal_data(files: Files) -> None:
    with files.open() as ledger:
        record_subjects(ledger)
        entries = ledger.storage.entries(0, ledger.size)
        nodes = {h for _lv, _ix, h in ledger.storage.node_rows()}
    needles = hash_needles()
    for e in entries:
        assert not [n for n in needles if n in e.envelope], e.seq
        assert e.leaf not in needles and e.leaf != leaf_hash(EMAIL.encode())
    assert not nodes & set(needles)
    conn = duckdb.connect(str(files.db), read_only=True)
    checkpoints = [r[0] for r in conn.execute("SELECT note FROM audit_checkpoints").fetchall()]
    conn.close()
    assert not [n for n in needles for note in checkpoints if n in note.encode()]
    assert hits(needles, files.db, files.sidecar) == []


def test_t39_no_plaintext_personal_data_anywhere_the_ledger_writes(files: Files) -> None:
    with files.open() as ledger:
        record_subjects(ledger)
        files.now_ms = T0 + 400 * DAY
        archive(ledger, files.root / "archive", now_ms=files.now_ms)
        record_subjects(ledger)  # some in the hot store as well
        envelopes = [e.envelope for e in ledger.storage.entries(0, ledger.size)]
        vault = ledger.paths.vault
    needles = pii_needles()
    assert [e for e in envelopes if any(n in e for n in needles)] == []
    wal = files.db.with_name(files.db.name + ".wal")
    assert hits(needles, files.db, wal, files.sidecar, files.root / "archive", vault) == []
    conn = duckdb.connect()
    text = conn.execute("SELECT string_agg(decode(envelope), '') FROM read_parquet(?)",
                        [str(files.root / "archive" / "*.parquet")]).fetchone()
    conn.close()
    assert text is not None and text[0] and EMAIL not in text[0] and IP not in text[0]
