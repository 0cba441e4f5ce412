"""Archives: payloads older than their class's hot age move to Parquet with a signed manifest.

PCI DSS 10.5.1 asks for 12 months of audit history with 3 months immediately available.
:func:`archive` exports entries older than the hot age (per retention class, default 90 days)
to Parquet files that DuckDB queries in place (``read_parquet``), one file per class and run,
so an expired archive is deleted whole. Each file gets a manifest: a C2SP signed note (signed
with the ledger key) whose body is one line of canonical JSON naming the file, its SHA-256, the
seq ranges, the count, the time span and the newest checkpoint note covering them. Every row
carries its inclusion proof against that checkpoint, so an archive can be re-checked with the
public key alone (:func:`verify_archive` with a vkey) as well as against the ledger's kept leaf
hashes. Only then is a signed ``system``/``retention.archive`` record appended and the payloads
evicted from the hot store (leaf hashes stay; see :mod:`monitoring.audit.retention` for the
rule verifiers apply). Sealed personal data moves along as ciphertext
(erasing a subject destroys its key, which makes the archived ciphertext unreadable too): no
Parquet file ever holds plaintext personal data.

A crash between the steps leaves either an unrecorded archive file (reported by
:func:`verify_archive`, harmless) or a recorded archive whose payloads are still hot.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import rfc8785

from monitoring.audit.errors import AuditError, NoteError, ProofError, VerifyFailure
from monitoring.audit.fsutil import replace_durably, temp_path, write_atomic
from monitoring.audit.merkle import MemoryTree, leaf_hash, verify_inclusion
from monitoring.audit.retention import (
    ARCHIVE_ACTION,
    META_CLASS,
    RECORD_CATEGORY,
    Range,
    RetentionRecord,
    append_record,
    chunks,
    is_protected,
    live_archives,
    parse_ranges,
    parse_verified,
    query,
    range_count,
    remove_payloads,
    run_maintenance,
    to_ranges,
)

if TYPE_CHECKING:
    from monitoring.audit.ledger import Ledger
    from monitoring.audit.note import Checkpoint, NoteVerifier
    from monitoring.audit.storage import LedgerStorage

MANIFEST_FORMAT = "monitoring-audit-archive/v1"
PARQUET_SUFFIX = ".parquet"
MANIFEST_SUFFIX = ".manifest"
DEFAULT_HOT_MS = 90 * 86_400_000
"""Hot age of a class that states none: 90 days (PCI DSS 10.5.1: three months at hand)."""

COLUMNS = ("seq", "ts", "ts_us", "category", "action", "severity", "resource", "outcome",
           "actor", "correlation_id", "retention", "envelope", "leaf", "proof", "pii_ref",
           "pii_nonce", "pii_ciphertext")
"""Columns of an archive file. ``ts`` (a TIMESTAMP for queries) and the search columns come
from the verified envelope; ``proof`` is the concatenated inclusion proof against the
manifest's checkpoint; ``pii_*`` is the entry's sealed personal data (AES-256-GCM under the
subject's key: unreadable once the subject is erased), NULL when it has none."""
_SEARCH = ("category", "action", "severity", "resource", "outcome", "actor",
           "correlation_id", "retention")


@dataclass(frozen=True)
class ArchiveFile:
    """A live archive file as the ledger's signed ``retention.archive`` record describes it."""

    path: Path
    manifest: Path
    retention: str
    ranges: tuple[Range, ...]
    count: int
    min_ts_us: int
    max_ts_us: int
    sha256: str
    record_seq: int


@dataclass(frozen=True)
class ArchiveProblem:
    """One thing wrong with an archive folder: which file, which seq (if any), and why."""

    file: str
    seq: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: " + (f"seq {self.seq}: " if self.seq is not None else "")
        return where + self.reason


@dataclass
class ArchiveReport:
    """What :func:`verify_archive` checked and found."""

    files: int = 0
    rows: int = 0
    problems: list[ArchiveProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems

    def raise_for_problems(self) -> None:
        """Raise :class:`VerifyFailure` for the first problem, if any."""
        if self.problems:
            first = self.problems[0]
            raise VerifyFailure(first.seq, f"archive {first.file}: {first.reason}")


# --------------------------------------------------------------------------- writing


def archive(ledger: Ledger, folder: Path, *, now_ms: int | None = None,
            older_than_ms: int | None = None, evict: bool = True) -> list[ArchiveFile]:
    """Export entries past their class's hot age (or ``older_than_ms``) to ``folder``.

    Returns the files written. With ``evict`` (the default) their payloads then leave the hot
    store, covered by the signed ``retention.archive`` records.
    """
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    ledger.flush()
    storage = ledger.storage
    latest = storage.latest_checkpoint()
    if latest is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    folder = folder.resolve()
    batches = _candidates(ledger, latest.size, now, older_than_ms)
    if not batches:
        return []
    tree = _tree(storage, latest.size, latest.root)
    written: list[ArchiveFile] = []
    for name, rows in batches.items():
        for part in chunks(to_ranges(int(r["seq"]) for r in rows)):
            wanted = {s for a, b in part for s in range(a, b)}
            subset = [r for r in rows if r["seq"] in wanted]
            written.append(_write_archive(ledger, folder, name, subset, part, latest.note,
                                          latest.size, tree, evict))
    return written


def _candidates(ledger: Ledger, size: int, now_ms: int,
                older_than_ms: int | None) -> dict[str, list[dict[str, Any]]]:
    """Verified envelope fields (plus ``_envelope``/``_leaf``) per class, past the hot age."""
    storage = ledger.storage
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rc in sorted(ledger.policy.retention_classes.items()):
        if name == META_CLASS:
            continue
        hot = older_than_ms if older_than_ms is not None else (rc.hot_ms or DEFAULT_HOT_MS)
        cut_us = (now_ms - hot) * 1000
        rows = query(storage, "SELECT seq, envelope, leaf FROM audit_entries WHERE envelope IS "
                     "NOT NULL AND retention = ? AND ts_us < ? AND seq < ? ORDER BY seq",
                     [name, cut_us, size])
        chosen: list[dict[str, Any]] = []
        for seq, envelope, leaf in rows:
            fields = parse_verified(seq, envelope, leaf, storage.origin)
            if (fields.get("retention") == name and fields.get("ts", cut_us) < cut_us
                    and not is_protected(fields)):
                fields["_envelope"], fields["_leaf"] = envelope, leaf
                chosen.append(fields)
        if chosen:
            sealed = {int(r[0]): r[1:] for r in query(
                storage, "SELECT seq, ref, nonce, ciphertext FROM audit_pii WHERE seq BETWEEN ? "
                "AND ?", [chosen[0]["seq"], chosen[-1]["seq"]])}
            for fields in chosen:
                ref, nonce, ct = sealed.get(int(fields["seq"]), (None, None, None))
                fields["_pii"] = (ref, nonce, ct)
            out[name] = chosen
    return out


def _tree(storage: LedgerStorage, size: int, root: bytes) -> MemoryTree:
    """The tree of the first ``size`` kept leaf hashes, checked against the signed root."""
    leaves = [bytes(r[0]) for r in query(
        storage, "SELECT leaf FROM audit_entries WHERE seq < ? ORDER BY seq", [size])]
    tree = MemoryTree(leaves)
    if tree.size != size or tree.root() != root:
        raise AuditError(f"the stored leaf hashes do not reproduce the checkpoint of size {size};"
                         " run `monitoring audit verify --full` before archiving")
    return tree


def _file_stem(origin: str, retention: str, ranges: Sequence[Range]) -> str:
    ident = re.sub(r"[^A-Za-z0-9]+", "-", origin.rsplit("/", 1)[-1])[:32]
    cls = re.sub(r"[^A-Za-z0-9_.-]+", "-", retention)[:40]
    return f"audit-{ident}-{cls}-{ranges[0][0]:012d}-{ranges[-1][1] - 1:012d}"


def _write_archive(ledger: Ledger, folder: Path, retention: str, rows: list[dict[str, Any]],
                   ranges: list[Range], note: str, size: int, tree: MemoryTree,
                   evict: bool) -> ArchiveFile:
    stem = _file_stem(ledger.origin, retention, ranges)
    parquet = folder / (stem + PARQUET_SUFFIX)
    manifest = folder / (stem + MANIFEST_SUFFIX)
    if parquet.exists() or manifest.exists():
        raise AuditError(f"{parquet}: an archive of these entries already exists in {folder}")
    _write_parquet(parquet, rows, [b"".join(_proof(tree, int(r["seq"]), size)) for r in rows])
    digest = sha256_file(parquet)
    times = [int(r["ts"]) for r in rows]
    body: dict[str, Any] = {
        "format": MANIFEST_FORMAT, "origin": ledger.origin, "file": parquet.name,
        "sha256": digest, "retention": retention, "ranges": [[a, b] for a, b in ranges],
        "count": len(rows), "min_ts_us": min(times), "max_ts_us": max(times),
        "checkpoint": note}
    from monitoring.audit.note import sign_note

    text = sign_note(rfc8785.dumps(body).decode("utf-8") + "\n", [ledger.key.signer()])
    write_atomic(manifest, text.encode("utf-8"))
    details = {key: body[key] for key in ("file", "sha256", "retention", "ranges", "count",
                                          "min_ts_us", "max_ts_us")}
    details.update(folder=str(folder), manifest=manifest.name,
                   manifest_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
                   checkpoint_size=size, evicted=evict)
    record = append_record(ledger, RECORD_CATEGORY, ARCHIVE_ACTION, f"retention/{retention}",
                           details)
    if evict:
        run_maintenance(ledger, lambda cur: remove_payloads(cur, ranges))
    return ArchiveFile(parquet, manifest, retention, tuple(ranges), len(rows), min(times),
                       max(times), digest, record.seq or 0)


def _proof(tree: MemoryTree, seq: int, size: int) -> list[bytes]:
    from monitoring.audit.merkle import inclusion_proof

    return inclusion_proof(tree, seq, size)


def _write_parquet(path: Path, rows: list[dict[str, Any]], proofs: list[bytes]) -> None:
    """Write ``rows`` (verified envelope fields) as Parquet through DuckDB, durably."""
    tmp = temp_path(path)
    lists: list[list[Any]] = [[int(r["seq"]) for r in rows], [int(r["ts"]) for r in rows]]
    lists += [[r.get(c) for r in rows] for c in _SEARCH]
    lists += [[r["_envelope"] for r in rows], [r["_leaf"] for r in rows], proofs]
    lists += [[r["_pii"][i] for r in rows] for i in range(3)]
    select = ", ".join(
        [f"unnest(?::BIGINT[]) AS {c}" for c in ("seq", "ts_us")]
        + [f"unnest(?::VARCHAR[]) AS {c}" for c in _SEARCH]
        + [f"unnest(?::BLOB[]) AS {c}" for c in ("envelope", "leaf", "proof")]
        + ["unnest(?::VARCHAR[]) AS pii_ref"]
        + [f"unnest(?::BLOB[]) AS {c}" for c in ("pii_nonce", "pii_ciphertext")])
    cols = ", ".join("make_timestamp(ts_us) AS ts" if c == "ts" else c for c in COLUMNS)
    target = str(tmp).replace("'", "''")
    try:
        mem = duckdb.connect()
        try:
            mem.execute(f"CREATE TABLE rows AS SELECT {select}", lists)
            mem.execute(f"COPY (SELECT {cols} FROM rows ORDER BY seq) TO '{target}' "
                        "(FORMAT parquet)")
        finally:
            mem.close()
        replace_durably(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; a partial file after an error


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading


def archive_files(source: Ledger | LedgerStorage) -> list[ArchiveFile]:
    """The live archive files of a ledger (recorded, not yet pruned), from its signed records.

    Search (``--include-archive``) reads these with DuckDB's ``read_parquet``; run
    :func:`verify_archive` on a folder before trusting its rows.
    """
    storage = _storage(source)
    out: list[ArchiveFile] = []
    for rec in live_archives(storage):
        folder = Path(str(rec.data.get("folder", ".")))
        out.append(ArchiveFile(
            folder / str(rec.data["file"]), folder / str(rec.data.get("manifest", "")),
            str(rec.data.get("retention", "")), rec.ranges, range_count(rec.ranges),
            int(rec.data.get("min_ts_us", 0)), int(rec.data["max_ts_us"]),
            str(rec.data.get("sha256", "")), rec.seq))
    return out


def archived_entries(path: Path) -> list[tuple[int, bytes, bytes]]:
    """``(seq, envelope, leaf)`` of every row of an archive file, in seq order (unverified)."""
    mem = duckdb.connect()
    try:
        rows = mem.execute("SELECT seq, envelope, leaf FROM read_parquet(?) ORDER BY seq",
                           [str(path)]).fetchall()
    finally:
        mem.close()
    return [(int(s), bytes(e), bytes(f)) for s, e, f in rows]


def archived_refs(path: Path) -> set[str]:
    """The subject refs whose sealed personal data an archive file holds."""
    mem = duckdb.connect()
    try:
        rows = mem.execute("SELECT DISTINCT pii_ref FROM read_parquet(?) WHERE pii_ref IS NOT "
                           "NULL", [str(path)]).fetchall()
    finally:
        mem.close()
    return {str(r[0]) for r in rows}


def archived_personal(ledger: Ledger, seq: int) -> dict[str, Any] | None:
    """The decrypted personal data of an archived entry (``Ledger.personal`` for the hot ones).

    None when the entry is in no live archive, has no personal data, or its subject was
    erased. The archived row is checked against the ledger's kept leaf hash and the sealed
    data against the envelope's commitment before decrypting.
    """
    from monitoring.audit.errors import ErasedError

    for f in archive_files(ledger):
        if not any(a <= seq < b for a, b in f.ranges):
            continue
        mem = duckdb.connect()
        try:
            row = mem.execute(f"SELECT {', '.join(COLUMNS)} FROM read_parquet(?) WHERE seq = ?",
                              [str(f.path), seq]).fetchone()
        finally:
            mem.close()
        if row is None:
            raise VerifyFailure(seq, f"archive {f.path.name} lacks this entry")
        fields = dict(zip(COLUMNS, row, strict=True))
        kept = ledger.storage.node(0, seq)
        envelope = bytes(fields["envelope"])
        if leaf_hash(envelope) != kept:
            raise VerifyFailure(seq, f"archive {f.path.name}: the envelope does not match the "
                                "ledger's leaf hash")
        from monitoring.audit.envelope import parse_envelope

        commitment = parse_envelope(envelope).get("pii")
        problem = _pii_problem(fields, commitment)
        if problem:
            raise VerifyFailure(seq, f"archive {f.path.name}: {problem}")
        if commitment is None or fields["pii_ciphertext"] is None:
            return None
        try:
            plain = ledger.vault.open_sealed(str(fields["pii_ref"]), bytes(fields["pii_nonce"]),
                                             bytes(fields["pii_ciphertext"]),
                                             f"{ledger.origin}|{seq}".encode())
        except ErasedError:
            return None
        value = json.loads(plain)
        return value if isinstance(value, dict) else None
    return None


def _storage(source: Ledger | LedgerStorage) -> LedgerStorage:
    from monitoring.audit.storage import LedgerStorage

    return source if isinstance(source, LedgerStorage) else source.storage


# --------------------------------------------------------------------------- verification


@dataclass
class _Trust:
    """What an archive is checked against: verifiers, origin pin, and maybe the ledger."""

    verifiers: list[NoteVerifier]
    origin: str | None
    storage: LedgerStorage | None = None
    records: dict[str, RetentionRecord] = field(default_factory=dict)


def verify_archive(folder: Path, against: Ledger | LedgerStorage | str | Sequence[str],
                   *, origin: str | None = None) -> ArchiveReport:
    """Re-check every archive file in ``folder``.

    ``against`` is the ledger (or its storage): manifests and checkpoints are checked with the
    keys of its key history, every archived leaf is compared with the kept leaf hash and every
    file with the ledger's signed ``retention.archive`` record. Or it is a vkey (or several):
    then only the signatures and each row's inclusion proof against the manifest's checkpoint
    are checked (pin the ``origin`` to refuse another ledger's archives). Either way each
    row's envelope is re-hashed and its columns compared with the envelope.
    """
    trust = _trust(against, origin)
    report = ArchiveReport()
    if not folder.is_dir():
        raise AuditError(f"{folder}: not a folder")
    manifests = sorted(folder.glob("*" + MANIFEST_SUFFIX))
    named: set[str] = set()
    for manifest in manifests:
        report.files += 1
        named.add(_verify_manifest(manifest, trust, report) or "")
    for parquet in sorted(folder.glob("*" + PARQUET_SUFFIX)):
        if parquet.name not in named:
            report.problems.append(ArchiveProblem(parquet.name, None, "no manifest names "
                                                  "this file (unsigned data)"))
    if trust.storage is not None:
        here = folder.resolve()
        for name, rec in sorted(trust.records.items()):
            if Path(str(rec.data.get("folder", ""))) == here and name not in named:
                report.problems.append(ArchiveProblem(
                    name, None, f"recorded by the ledger at seq {rec.seq} but missing from "
                                "this folder (or its manifest is)"))
    return report


def _trust(against: Ledger | LedgerStorage | str | Sequence[str], origin: str | None) -> _Trust:
    from monitoring.audit.note import NoteVerifier

    if isinstance(against, str):
        against = [against]
    if isinstance(against, Sequence):
        if not against:
            raise AuditError("verify-archive: give the ledger or at least one vkey")
        return _Trust([NoteVerifier.from_vkey(v) for v in against], origin)
    storage = _storage(against)
    from monitoring.audit.verify import key_history

    history = key_history(storage)
    records = {str(r.data["file"]): r for r in live_archives(storage)}
    return _Trust([w.verifier for w in history.windows], origin or storage.origin, storage,
                  records)


def _verify_manifest(path: Path, trust: _Trust, report: ArchiveReport) -> str | None:
    """Check one manifest and its file; returns the file name it names (None if unreadable)."""
    from monitoring.audit.note import open_checkpoint, open_note

    def problem(reason: str, seq: int | None = None, name: str = path.name) -> None:
        report.problems.append(ArchiveProblem(name, seq, reason))

    raw = path.read_bytes()
    try:
        body, _signers = open_note(raw, trust.verifiers)
        manifest = json.loads(body)
        if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
            raise AuditError(f"not a {MANIFEST_FORMAT} manifest")
        name = manifest["file"]
        ranges = parse_ranges(manifest["ranges"], "manifest")
        if not isinstance(name, str) or "/" in name or not name.endswith(PARQUET_SUFFIX):
            raise AuditError(f"file name {name!r:.60} is not a Parquet file in this folder")
        cp, cp_signers = open_checkpoint(str(manifest["checkpoint"]), trust.verifiers,
                                         trust.origin)
        if manifest.get("origin") != cp.origin:
            raise AuditError(f"origin {manifest.get('origin')!r} differs from its "
                             f"checkpoint's {cp.origin!r}")
    except (NoteError, AuditError, ValueError, KeyError, TypeError) as exc:
        problem(f"manifest rejected: {exc}")
        return None
    if trust.storage is not None:
        _check_against_ledger(name, cp, cp_signers, raw, trust, problem)
    parquet = path.parent / name
    if not parquet.exists():
        problem("the archive file its manifest names is missing", name=name)
        return name
    if sha256_file(parquet) != manifest.get("sha256"):
        problem("file SHA-256 does not match its signed manifest (file altered or swapped)",
                name=name)
    _verify_rows(parquet, manifest, ranges, cp, trust, report)
    return name


def _check_against_ledger(name: str, cp: Checkpoint, cp_signers: Sequence[NoteVerifier],
                          raw: bytes, trust: _Trust, problem: Any) -> None:
    storage = trust.storage
    assert storage is not None
    from monitoring.audit.verify import key_history

    try:
        history = key_history(storage)
        for v in cp_signers:
            if v.name == cp.origin:
                history.check(v, cp.size)
    except VerifyFailure as exc:
        problem(f"manifest checkpoint: {exc.reason}")
    stored = {c.size: c.root for c in storage.checkpoints()}
    if stored.get(cp.size) != cp.root:
        problem(f"manifest checkpoint (size {cp.size}) is not a checkpoint of this ledger")
    rec = trust.records.get(name)
    if rec is None:
        problem("no retention.archive record of this ledger names this file", name=name)
    elif rec.data.get("manifest_sha256") != hashlib.sha256(raw).hexdigest():
        problem(f"manifest differs from the one recorded at seq {rec.seq}")


def _verify_rows(parquet: Path, manifest: dict[str, Any], ranges: list[Range], cp: Checkpoint,
                 trust: _Trust, report: ArchiveReport) -> None:
    name = parquet.name

    def problem(reason: str, seq: int | None = None) -> None:
        report.problems.append(ArchiveProblem(name, seq, reason))

    mem = duckdb.connect()
    try:
        cols = ", ".join("epoch_us(ts) AS ts" if c == "ts" else c for c in COLUMNS)
        rows = mem.execute(f"SELECT {cols} FROM read_parquet(?) ORDER BY seq",
                           [str(parquet)]).fetchall()
    except duckdb.Error as exc:
        problem(f"cannot read the Parquet file: {str(exc).splitlines()[0]}")
        return
    finally:
        mem.close()
    wanted = [s for a, b in ranges for s in range(a, b)]
    seqs = [int(r[0]) for r in rows]
    if seqs != wanted or len(rows) != manifest.get("count"):
        extra = sorted(set(seqs) - set(wanted))
        missing = sorted(set(wanted) - set(seqs))
        first = min([*extra, *missing]) if extra or missing else None
        problem(f"rows do not match the manifest's ranges ({len(missing)} missing, "
                f"{len(extra)} extra or duplicated)", first)
    kept = _kept_leaves(trust.storage, seqs)
    for row in rows:
        report.rows += 1
        reason = _row_problem(dict(zip(COLUMNS, row, strict=True)), manifest, cp, kept)
        if reason:
            problem(reason, int(row[0]))


def _kept_leaves(storage: LedgerStorage | None, seqs: list[int]) -> dict[int, bytes] | None:
    if storage is None or not seqs:
        return None
    rows = query(storage, "SELECT seq, leaf FROM audit_entries WHERE seq >= ? AND seq <= ?",
                 [min(seqs), max(seqs)])
    return {int(s): bytes(f) for s, f in rows}


def _row_problem(row: dict[str, Any], manifest: dict[str, Any], cp: Checkpoint,
                 kept: dict[int, bytes] | None) -> str | None:
    from monitoring.audit.envelope import parse_envelope

    seq, envelope, leaf = int(row["seq"]), bytes(row["envelope"]), bytes(row["leaf"])
    if leaf_hash(envelope) != leaf:
        return "envelope does not hash to the archived leaf hash"
    if kept is not None and kept.get(seq) != leaf:
        return "archived leaf differs from the ledger's kept leaf hash"
    proof = bytes(row["proof"] or b"")
    try:
        verify_inclusion(leaf, seq, cp.size, [proof[i:i + 32] for i in range(0, len(proof), 32)],
                         cp.root)
    except ProofError as exc:
        return f"inclusion proof against the manifest checkpoint fails: {exc}"
    try:
        fields = parse_envelope(envelope)
    except AuditError as exc:
        return f"envelope does not parse: {exc}"
    if fields.get("origin") != manifest.get("origin") or fields.get("seq") != seq:
        return (f"envelope is seq {fields.get('seq')!r} of {fields.get('origin')!r}, not this "
                "archive's")
    if fields.get("retention") != manifest.get("retention"):
        return f"envelope's retention class {fields.get('retention')!r} is not the manifest's"
    if fields.get("ts") != row["ts_us"] or row["ts"] != row["ts_us"]:
        return f"column ts differs from the signed envelope's ts {fields.get('ts')!r}"
    for col in _SEARCH:
        if row[col] != fields.get(col):
            return (f"column {col} {row[col]!r:.60} differs from the signed envelope's "
                    f"{fields.get(col)!r:.60}")
    return _pii_problem(row, fields.get("pii"))


def _pii_problem(row: dict[str, Any], commitment: Any) -> str | None:
    """The archived sealed data must be exactly what the envelope commits to."""
    from monitoring.audit.vault import pii_sha256

    if commitment is None:
        if row["pii_ref"] is not None or row["pii_ciphertext"] is not None:
            return "sealed personal data is archived for an entry that commits to none"
        return None
    if row["pii_ciphertext"] is None or row["pii_nonce"] is None:
        return None  # the subject was erased before archiving: nothing sealed is left
    if row["pii_ref"] != commitment.get("ref"):
        return "archived sealed data's subject ref differs from the envelope's"
    if pii_sha256(bytes(row["pii_nonce"]), bytes(row["pii_ciphertext"])) != commitment.get(
            "sha256"):
        return "archived sealed data does not match the envelope's sha256 commitment"
    return None
