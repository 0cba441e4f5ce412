"""Retention: prune expired payloads and keep every checkpoint and every remaining proof valid.

The ledger is one Merkle tree (docs/audit.md). Pruning never touches the tree: an expired
entry loses its *payload* (the envelope bytes, its unverified search columns and its sealed
personal data) while its leaf hash, every stored node and every signed checkpoint stay. Every
checkpoint therefore still verifies, and so does every inclusion proof of a remaining entry
and every consistency proof (the tlog-tiles "minimum index" idea, generalised to any set of
entries, because retention classes interleave in one tree).

A removal is legal only when a signed record in the ledger says so. Before deleting anything,
:func:`prune` appends a ``system``/``retention.prune`` event (class, policy, cut, seq ranges,
count, checkpoint size at the cut, approver) and waits until it is durable and checkpointed;
:mod:`monitoring.audit.archive` appends ``system``/``retention.archive`` before it evicts
archived payloads from the hot store. **The rule verifiers apply** (verify.verify_full uses
:class:`RemovalCoverage`):

    An entry at seq ``s`` whose envelope is missing (NULL) while its leaf hash is kept is
    accepted if and only if a *verified* envelope at some seq ``p`` (its leaf recomputed from
    its bytes and covered by a signed checkpoint, like every entry) has category ``system``,
    action ``retention.prune`` or ``retention.archive``, and ``data.ranges`` (a list of
    half-open ``[start, end)`` integer pairs) contains ``s`` with
    ``end <= data.checkpoint_size <= p``: the record was written after a checkpoint that
    already covered the whole range. Anything else (a payload gone without a record, a
    record covering entries newer than its cut, a middle entry deleted behind the ledger's
    back) fails at the first such ``s``. A missing *leaf* (or row) is never accepted.

Meta-events that verifiers need (genesis, key rotations, retention and erasure records) and
the ``meta`` retention class are never pruned. A class under legal hold (``hold: true``) is
never pruned either.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from monitoring.audit.errors import AuditError
from monitoring.audit.fsutil import unlink_durably
from monitoring.audit.merkle import leaf_hash

if TYPE_CHECKING:
    import duckdb

    from monitoring.audit.ledger import Appended, Ledger
    from monitoring.audit.storage import LedgerStorage

RECORD_CATEGORY = "system"
PRUNE_ACTION = "retention.prune"
ARCHIVE_ACTION = "retention.archive"
RECORD_ACTIONS = (PRUNE_ACTION, ARCHIVE_ACTION)
"""Actions of the signed records that allow an entry's payload to leave the hot store."""

META_CLASS = "meta"
"""The retention class of ledger meta-events: never pruned, never archived."""

PROTECTED_EVENTS = frozenset({
    ("system", "ledger.open"),
    ("system", "key.rotate"),
    ("system", PRUNE_ACTION),
    ("system", ARCHIVE_ACTION),
    ("security", "gdpr.erasure"),
})
"""(category, action) pairs a verifier needs forever: key history, retention and erasure."""

MAX_RANGES_PER_RECORD = 1000
"""Seq ranges one record (or one archive file) names; more are split over several parts, so
a record stays far below the envelope size limit."""

T = TypeVar("T")
Range = tuple[int, int]
"""A half-open seq range ``[start, end)``."""

_PAYLOAD_COLUMNS = ("envelope", "ts_us", "category", "action", "severity", "resource",
                    "outcome", "actor", "correlation_id", "retention")
"""Columns of ``audit_entries`` a removal sets to NULL: the envelope and every unverified
search copy of it (verify_rows.py requires all of them NULL on a removed entry). ``seq`` and
``leaf`` stay."""


# --------------------------------------------------------------------------- ranges


def to_ranges(seqs: Iterable[int]) -> list[Range]:
    """Sorted, merged half-open ranges covering exactly ``seqs``."""
    out: list[list[int]] = []
    for s in sorted(set(seqs)):
        if out and out[-1][1] == s:
            out[-1][1] = s + 1
        else:
            out.append([s, s + 1])
    return [(a, b) for a, b in out]


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted union of possibly overlapping half-open ranges."""
    out: list[list[int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(a, b) for a, b in out]


def range_count(ranges: Iterable[Range]) -> int:
    """Number of seqs in disjoint ``ranges``."""
    return sum(b - a for a, b in ranges)


def chunks(ranges: Sequence[Range], size: int = MAX_RANGES_PER_RECORD) -> list[list[Range]]:
    """``ranges`` cut into lists of at most ``size`` ranges (at least one list)."""
    return [list(ranges[i:i + size]) for i in range(0, len(ranges), size)] or [[]]


def parse_ranges(value: object, where: str) -> list[Range]:
    """The ``ranges`` field of a record: ``[[start, end], ...]`` with 0 <= start < end."""
    if not isinstance(value, list):
        raise AuditError(f"{where}: ranges must be a list of [start, end] pairs")
    out: list[Range] = []
    for i, item in enumerate(value):
        if (not isinstance(item, list) or len(item) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in item)
                or not 0 <= item[0] < item[1]):
            raise AuditError(f"{where}: ranges[{i}] must be [start, end] with "
                             f"0 <= start < end, got {item!r:.60}")
        out.append((item[0], item[1]))
    return out


# --------------------------------------------------------------------------- the coverage rule


@dataclass(frozen=True)
class RetentionRecord:
    """A verified ``retention.prune`` / ``retention.archive`` record and what it covers."""

    seq: int
    action: str
    ranges: tuple[Range, ...]
    checkpoint_size: int
    data: Mapping[str, Any]

    @property
    def kind(self) -> str:
        """``prune`` or ``archive``."""
        return self.action.removeprefix("retention.")


def record_from_envelope(seq: int, envelope: Mapping[str, Any]) -> RetentionRecord | None:
    """The retention record an already verified envelope carries, None if it is none.

    A record whose data is malformed (it could only have been signed by a buggy writer) covers
    nothing, so the entries it names fail verification instead of being silently accepted.
    """
    if envelope.get("category") != RECORD_CATEGORY or envelope.get("action") not in RECORD_ACTIONS:
        return None
    data = envelope.get("data")
    if not isinstance(data, Mapping):
        return None
    size = data.get("checkpoint_size")
    if not isinstance(size, int) or isinstance(size, bool):
        return None
    try:
        ranges = parse_ranges(data.get("ranges"), f"seq {seq}")
    except AuditError:
        return None
    return RetentionRecord(seq, str(envelope["action"]), tuple(ranges), size, data)


class RemovalCoverage:
    """Which removed payloads are covered by signed retention records (the rule above).

    Feed it every verified envelope (:meth:`add`, any order), then ask :meth:`covers` or
    :meth:`first_uncovered` about the seqs whose envelope is missing.
    """

    def __init__(self) -> None:
        self.records: list[RetentionRecord] = []
        self._starts: list[int] | None = None
        self._ends: list[int] = []

    def add(self, seq: int, envelope: Mapping[str, Any]) -> RetentionRecord | None:
        """Take note of ``envelope`` (verified, at ``seq``) if it is a retention record."""
        record = record_from_envelope(seq, envelope)
        if record is not None:
            self.add_record(record)
        return record

    def add_record(self, record: RetentionRecord) -> None:
        """Take note of a parsed record."""
        self.records.append(record)
        self._starts = None

    def _index(self) -> tuple[list[int], list[int]]:
        if self._starts is None:
            valid = [r for rec in self.records if rec.checkpoint_size <= rec.seq
                     for r in rec.ranges if r[1] <= rec.checkpoint_size]
            merged = merge_ranges(valid)
            self._starts = [a for a, _ in merged]
            self._ends = [b for _, b in merged]
        return self._starts, self._ends

    def covers(self, seq: int) -> bool:
        """Whether a valid record allows the payload of ``seq`` to be missing."""
        starts, ends = self._index()
        i = bisect.bisect_right(starts, seq) - 1
        return i >= 0 and seq < ends[i]

    def first_uncovered(self, seqs: Iterable[int]) -> int | None:
        """The smallest of ``seqs`` no valid record covers, None if all are covered."""
        bad = [s for s in seqs if not self.covers(s)]
        return min(bad) if bad else None


# --------------------------------------------------------------------------- ledger access


def parse_verified(seq: int, envelope: bytes, leaf: bytes, origin: str) -> dict[str, Any]:
    """The fields of a stored envelope after checking it against its stored leaf hash.

    Retention decides from the envelope, never from the unverified search columns; an entry
    whose bytes do not match its leaf (or its seq/origin) stops the operation: the ledger must
    be verified and the tampering investigated before anything is deleted.
    """
    from monitoring.audit.envelope import parse_envelope

    if leaf_hash(envelope) != leaf:
        raise AuditError(f"seq {seq}: the stored envelope does not match its leaf hash; run "
                         "`monitoring audit verify --full` before any retention operation")
    fields = parse_envelope(envelope)
    if fields.get("seq") != seq or fields.get("origin") != origin:
        raise AuditError(f"seq {seq}: the stored envelope names seq {fields.get('seq')!r} of "
                         f"{fields.get('origin')!r}; run `monitoring audit verify --full`")
    return fields


def is_protected(fields: Mapping[str, Any]) -> bool:
    """Whether an entry must stay in the hot store forever (meta-event or ``meta`` class)."""
    return (fields.get("retention") == META_CLASS
            or (fields.get("category"), fields.get("action")) in PROTECTED_EVENTS)


def retention_records(storage: LedgerStorage) -> list[RetentionRecord]:
    """Every retention record in the ledger, in seq order, each checked against its leaf.

    Records are selected by the envelope's own ``action``, never by the unverified search
    columns, so altering a column cannot hide one.
    """
    rows = query(storage, "SELECT seq, envelope, leaf FROM audit_entries WHERE envelope IS NOT "
                 "NULL AND try(json_extract_string(decode(envelope), '$.action')) IN (?, ?) "
                 "ORDER BY seq", list(RECORD_ACTIONS))
    out: list[RetentionRecord] = []
    for seq, envelope, leaf in rows:
        record = record_from_envelope(seq, parse_verified(seq, envelope, leaf, storage.origin))
        if record is not None:
            out.append(record)
    return out


def query(storage: LedgerStorage, sql: str, params: Sequence[object] = ()) -> list[Any]:
    """Rows of one query, run on a cursor of its own.

    The storage's connection may be in use by another thread, and a DuckDB connection object
    runs one statement at a time.
    """
    cur = storage.conn.cursor()
    try:
        return cur.execute(sql, params).fetchall()
    finally:
        cur.close()


def run_maintenance(ledger: Ledger, work: Callable[[duckdb.DuckDBPyConnection], T], *,
                    checkpoint: bool = True) -> T:
    """Run ``work(cursor)`` in one transaction on the ledger's store, then CHECKPOINT.

    The work runs through :meth:`Ledger.exclusive`: on the committer thread with the write
    cursor, after every event queued before it is durable and before any queued after it is
    written, so it never conflicts with a commit and the CHECKPOINT (which DuckDB refuses while
    another write transaction is open) finds none.
    """
    def body(cur: duckdb.DuckDBPyConnection) -> T:
        cur.execute("BEGIN TRANSACTION")
        try:
            result = work(cur)
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")
        if checkpoint:
            checkpoint_now(cur)
        return result

    return ledger.exclusive(body)


CHECKPOINT_TRIES = 400
"""CHECKPOINT attempts while the writer's transactions are active (5 ms apart: 2 s)."""


def checkpoint_now(cur: duckdb.DuckDBPyConnection) -> bool:
    """DuckDB's CHECKPOINT (deleted rows leave the WAL); False if it had to be left to DuckDB."""
    import duckdb

    for _ in range(CHECKPOINT_TRIES):
        try:
            cur.execute("CHECKPOINT")
            return True
        except duckdb.TransactionException as exc:
            if "CHECKPOINT" not in str(exc):
                raise
            time.sleep(0.005)
    return False


def _ranges_param(ranges: Sequence[Range]) -> list[list[int]]:
    return [[a for a, _ in ranges], [b for _, b in ranges]]


RANGES_CTE = "WITH r AS (SELECT unnest(?::BIGINT[]) AS a, unnest(?::BIGINT[]) AS b) "
"""A parameterised table ``r(a, b)`` of half-open ranges (two BIGINT[] parameters)."""


def remove_payloads(cur: duckdb.DuckDBPyConnection, ranges: Sequence[Range]) -> int:
    """NULL the payload columns of ``ranges`` and delete their sealed personal data.

    Leaf hashes, nodes and checkpoints are left alone. Returns the number of entries whose
    envelope was still present.
    """
    if not ranges:
        return 0
    params = _ranges_param(ranges)
    where = "EXISTS (SELECT 1 FROM r WHERE {col} >= r.a AND {col} < r.b)"
    row = cur.execute(RANGES_CTE + "SELECT count(*) FROM audit_entries WHERE envelope IS NOT "
                      "NULL AND " + where.format(col="seq"), params).fetchone()
    present = int(row[0]) if row else 0
    sets = ", ".join(f"{c} = NULL" for c in _PAYLOAD_COLUMNS)
    cur.execute(RANGES_CTE + f"UPDATE audit_entries SET {sets} WHERE envelope IS NOT NULL AND "
                + where.format(col="audit_entries.seq"), params)
    cur.execute(RANGES_CTE + "DELETE FROM audit_pii WHERE "
                + where.format(col="audit_pii.seq"), params)
    return present


def append_record(ledger: Ledger, category: str, action: str, resource: str,
                  details: Mapping[str, Any]) -> Appended:
    """Append a meta-event and wait until it is durable and checkpointed; refuse if filtered."""
    from monitoring.audit.envelope import AuditEvent

    event = AuditEvent(event_type=category, action=action, severity="notice",
                       resource=resource, outcome="success", details=dict(details))
    appended = ledger.append(event)
    if not appended.recorded or appended.seq is None:
        raise AuditError(f"the audit policy did not record the {category}/{action} event "
                         f"({appended.reason or 'filtered'}); nothing was changed")
    return appended


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class ExpiredArchive:
    """An archive file whose every entry is past its class's retention."""

    file: str
    folder: str
    manifest: str
    ranges: tuple[Range, ...]
    max_ts_us: int


@dataclass(frozen=True)
class ClassCut:
    """What pruning removes from one retention class."""

    retention: str
    retain_ms: int
    cut_us: int
    """Entries with ``ts`` (µs) strictly before this are expired."""
    hot_ranges: tuple[Range, ...]
    """Expired entries whose payload is still in the hot store."""
    archives: tuple[ExpiredArchive, ...] = ()
    """Archive files wholly expired (deleted with their manifests)."""

    @property
    def ranges(self) -> list[Range]:
        """All seq ranges this cut covers."""
        return merge_ranges([*self.hot_ranges, *(r for a in self.archives for r in a.ranges)])

    @property
    def count(self) -> int:
        """Entries this cut removes."""
        return range_count(self.ranges)


@dataclass(frozen=True)
class PrunePlan:
    """A prune computed at ``now_ms`` against the checkpoint of ``checkpoint_size`` entries."""

    origin: str
    now_ms: int
    checkpoint_size: int
    cuts: tuple[ClassCut, ...]
    skipped: tuple[str, ...] = ()
    """Classes not pruned and why (``meta``, held, no retention limit)."""

    @property
    def count(self) -> int:
        """Entries the plan removes."""
        return sum(c.count for c in self.cuts)

    @property
    def empty(self) -> bool:
        """Nothing to remove."""
        return self.count == 0


@dataclass
class PruneResult:
    """What :func:`prune` did."""

    records: list[Appended] = field(default_factory=list)
    removed: int = 0
    """Payloads deleted from the hot store."""
    archived_removed: int = 0
    """Entries whose (wholly expired) archive files were deleted."""
    files_deleted: list[Path] = field(default_factory=list)


def class_hold(retention_class: object) -> bool:
    """Whether a retention class is under legal hold (``hold: true`` in the policy)."""
    return bool(getattr(retention_class, "hold", False))


def plan_prune(ledger: Ledger, now_ms: int) -> PrunePlan:
    """Which entries have outlived their retention class at ``now_ms``.

    Only entries covered by the newest checkpoint are considered; each candidate's class and
    time are read from its envelope after checking it against its leaf (never from the
    search columns). Archived entries are pruned a whole archive file at a time, when the
    newest entry of the file has expired, so an archive never has to be rewritten.
    """
    ledger.flush()
    storage = ledger.storage
    latest = storage.latest_checkpoint()
    size = latest.size if latest is not None else 0
    archives = live_archives(storage)
    cuts: list[ClassCut] = []
    skipped: list[str] = []
    for name, rc in sorted(ledger.policy.retention_classes.items()):
        if name == META_CLASS:
            skipped.append(f"{name}: ledger meta-events are never pruned")
            continue
        if class_hold(rc):
            skipped.append(f"{name}: under legal hold")
            continue
        if rc.retain_ms is None:
            skipped.append(f"{name}: kept without limit")
            continue
        cut_us = (now_ms - rc.retain_ms) * 1000
        rows = query(storage, "SELECT seq, envelope, leaf FROM audit_entries WHERE envelope IS "
                     "NOT NULL AND retention = ? AND ts_us < ? AND seq < ? ORDER BY seq",
                     [name, cut_us, size])
        seqs: list[int] = []
        for seq, envelope, leaf in rows:
            fields = parse_verified(seq, envelope, leaf, storage.origin)
            if (fields.get("retention") == name and fields.get("ts", cut_us) < cut_us
                    and not is_protected(fields)):
                seqs.append(seq)
        expired = tuple(
            ExpiredArchive(str(rec.data["file"]), str(rec.data.get("folder", "")),
                           str(rec.data.get("manifest", "")), rec.ranges,
                           int(rec.data["max_ts_us"]))
            for rec in archives
            if rec.data.get("retention") == name and int(rec.data["max_ts_us"]) < cut_us)
        cut = ClassCut(name, rc.retain_ms, cut_us, tuple(to_ranges(seqs)), expired)
        if cut.count:
            cuts.append(cut)
    return PrunePlan(storage.origin, now_ms, size, tuple(cuts), tuple(skipped))


def live_archives(storage: LedgerStorage) -> list[RetentionRecord]:
    """Archive records whose file no later prune record deleted."""
    records = retention_records(storage)
    deleted = {str(f) for r in records if r.action == PRUNE_ACTION
               for f in r.data.get("files", []) if isinstance(f, str)}
    return [r for r in records if r.action == ARCHIVE_ACTION
            and isinstance(r.data.get("file"), str) and r.data["file"] not in deleted
            and isinstance(r.data.get("max_ts_us"), int)]


# --------------------------------------------------------------------------- pruning


def prune(ledger: Ledger, plan: PrunePlan, approver: str, *,
          force_unanchored: bool = False) -> PruneResult:
    """Carry out ``plan``: signed records first, then one deleting transaction, then CHECKPOINT.

    Refuses a plan made for another ledger or against a checkpoint the ledger no longer has,
    and (unless ``force_unanchored``) a prune while an external anchor holds no checkpoint at
    least as large as the plan's: monitors must stay ahead of what is deleted (§7).
    """
    approver = approver.strip()
    if not approver:
        raise AuditError("prune: --approver is required (who authorised this prune)")
    if plan.origin != ledger.origin:
        raise AuditError(f"prune: the plan is for {plan.origin}, this ledger is {ledger.origin}")
    latest = ledger.storage.latest_checkpoint()
    if latest is None or latest.size < plan.checkpoint_size:
        raise AuditError(f"prune: the plan was made at checkpoint size {plan.checkpoint_size}, "
                         "which this ledger does not have")
    result = PruneResult()
    if plan.empty:
        return result
    if not force_unanchored:
        check_anchors(ledger, plan.checkpoint_size)
    for cut in plan.cuts:
        parts = chunks(cut.ranges)
        files = [a.file for a in cut.archives]
        for i, part in enumerate(parts, 1):
            details: dict[str, Any] = {
                "retention": cut.retention, "retain_ms": cut.retain_ms, "cut_ts_us": cut.cut_us,
                "now_ms": plan.now_ms, "ranges": [[a, b] for a, b in part],
                "count": range_count(part), "checkpoint_size": plan.checkpoint_size,
                "approver": approver, "files": files if i == 1 else [],
                "part": i, "parts": len(parts)}
            result.records.append(append_record(
                ledger, RECORD_CATEGORY, PRUNE_ACTION, f"retention/{cut.retention}", details))
    result.removed = run_maintenance(
        ledger, lambda cur: sum(remove_payloads(cur, cut.ranges) for cut in plan.cuts))
    for cut in plan.cuts:
        for archive in cut.archives:
            result.archived_removed += range_count(archive.ranges)
            result.files_deleted.extend(_delete_archive(archive))
    return result


def _delete_archive(archive: ExpiredArchive) -> list[Path]:
    folder = Path(archive.folder)
    return unlink_durably(*(folder / name for name in (archive.file, archive.manifest) if name))


def check_anchors(ledger: Ledger, size: int) -> None:
    """Refuse when an external anchor of the ledger holds no checkpoint of ``size`` or more."""
    from monitoring.audit.external import anchor_latest
    from monitoring.audit.note import Checkpoint, parse_note

    for anchor in ledger.anchors:
        note = anchor_latest(anchor, ledger.origin)
        held = Checkpoint.parse(parse_note(note).body).size if note else 0
        if held < size:
            raise AuditError(
                f"prune: anchor {anchor.name} holds checkpoint size {held}, below the cut's "
                f"{size}; publish first (or force it), so monitors stay ahead of the prune")
