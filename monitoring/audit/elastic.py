"""Shipping the ledger to Elasticsearch, and checking that the copy there still matches.

Elasticsearch is an index and an extra anchor here, never the source of truth (§8.11 of the
design): what it holds is outside the ledger's guarantees, so :func:`reconcile` compares it
with the ledger and raises alarms when they differ.

* One document per entry, id ``<origin>:<seq>``, written with the bulk API's ``create``
  operation (``op_type=create``): a shipper can add documents but never overwrite one. A 409
  on create is read back: the same document (a resend after a lost answer) is fine, a
  different one is a conflict that is reported (T34).
* A document holds the envelope's fields exactly (so anyone can recompute its leaf hash: the
  RFC 8785 JSON of those fields, SHA-256 with the 0x00 prefix), plus ``leaf`` (hex),
  ``checkpoint_size`` (the size of the checkpoint that first covered it) and ``@timestamp``.
  Envelopes never hold plaintext personal data (it is sealed in the vault), so neither does
  Elasticsearch.
* Checkpoints go to a separate index, id ``<origin>:<size>``, also created only.
* Requests that fail with 429, 5xx or a connection error are retried with exponential backoff
  and full jitter; items of a bulk request that fail that way are retried alone.
* Shipping resumes after the highest seq already in the index for this origin.

:class:`ElasticAnchor` publishes checkpoints to the checkpoint index as an
:class:`~monitoring.audit.anchors.Anchor`, refusing one that does not extend the newest it
holds there.

No Elasticsearch server can be installed where this was built: the tests run the official
client against a loopback stand-in (``tests/support/fake_elasticsearch.py``) that implements
the bulk, search, document and index APIs used here.
"""

from __future__ import annotations

import bisect
import datetime as dt
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from monitoring.audit.anchors import AnchorConflict, ProofFrom, check_extends
from monitoring.audit.envelope import ENVELOPE_FIELDS, canonical_json
from monitoring.audit.errors import AnchorError, AuditError, EventError, NoteError, VerifyFailure
from monitoring.audit.merkle import leaf_hash, verify_consistency
from monitoring.audit.note import Checkpoint, open_checkpoint
from monitoring.audit.recovery import Alarm, AlarmKind
from monitoring.audit.search import authenticated_fields, key_history_for, trusted_checkpoint
from monitoring.audit.sidecar import SidecarRecord
from monitoring.audit.storage import LedgerStorage
from monitoring.audit.window import multiproof, root_from_multiproof

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from monitoring.audit.keys import KeyHistory
    from monitoring.audit.ledger import Ledger

DEFAULT_EVENTS_INDEX = "monitoring-audit-events"
DEFAULT_CHECKPOINTS_INDEX = "monitoring-audit-checkpoints"
DEFAULT_BATCH = 500
PAGE = 1000
"""Documents read per search request while reconciling."""
MAX_REPORTED = 100
"""Findings of each kind kept in a report; the counts go on."""
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

_KEYWORD = {"type": "keyword"}
EVENT_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {
        "v": {"type": "integer"}, "origin": _KEYWORD, "seq": {"type": "long"},
        "ts": {"type": "long"}, "@timestamp": {"type": "date"}, "category": _KEYWORD,
        "action": _KEYWORD, "severity": _KEYWORD, "resource": _KEYWORD, "outcome": _KEYWORD,
        "actor": _KEYWORD, "correlation_id": _KEYWORD, "retention": _KEYWORD,
        "data": {"type": "flattened"},
        "pii": {"properties": {"ref": _KEYWORD, "sha256": _KEYWORD}},
        "leaf": _KEYWORD, "checkpoint_size": {"type": "long"},
    },
}
"""The events index: envelope fields as keywords, ``data`` flattened (any shape per event)."""
CHECKPOINT_MAPPINGS: dict[str, Any] = {
    "dynamic": "strict",
    "properties": {"origin": _KEYWORD, "size": {"type": "long"}, "root": _KEYWORD,
                   "note": {"type": "text", "index": False}, "created_us": {"type": "long"}},
}

_T = TypeVar("_T")


class ElasticError(AuditError):
    """Elasticsearch refused a request (the message has the status and the reason)."""


class ElasticUnavailable(ElasticError):
    """Elasticsearch could not be reached, or stayed overloaded through every retry."""


# --------------------------------------------------------------------------- connection, retries


def connect(url: str, *, api_key: str | None = None, timeout_s: float = 10.0) -> Elasticsearch:
    """An official client for ``url`` with its own retries off (:class:`Retry` does them)."""
    try:
        from elasticsearch import Elasticsearch
    except ModuleNotFoundError:
        raise AuditError("shipping to Elasticsearch needs the official client: pip install "
                         "'monitoring-system[elasticsearch]'") from None
    try:
        return Elasticsearch(url, api_key=api_key, request_timeout=timeout_s, max_retries=0,
                             retry_on_timeout=False)
    except ValueError as exc:
        raise AuditError(f"--es {url!r}: {exc}") from None


@dataclass
class Retry:
    """Exponential backoff with full jitter, against synchronised retries.

    The wait before retry ``n`` (from 0) is ``uniform(0, min(cap_s, base_s * 2**n))`` s.
    """

    attempts: int = 6
    base_s: float = 0.2
    cap_s: float = 10.0
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random
    retries: int = 0
    """Retries done so far (for reports and tests)."""

    def delays(self) -> Iterator[float]:
        """The waits before attempts 2, 3, ... (``attempts - 1`` of them)."""
        for n in range(self.attempts - 1):
            yield self.jitter() * min(self.cap_s, self.base_s * 2 ** n)

    def wait(self, delay: float) -> None:
        """Sleep before the next attempt, and count it."""
        self.retries += 1
        self.sleep(delay)

    def call(self, what: str, func: Callable[[], _T],
             passthrough: tuple[type[Exception], ...] = ()) -> _T:
        """``func()``, retried on 429, 5xx and connection errors; AuditError when it gives up.

        Errors of the ``passthrough`` types are raised unchanged (the caller handles them).
        """
        delays = self.delays()
        while True:
            try:
                return func()
            except passthrough:
                raise
            except Exception as exc:
                if not client_error(exc):
                    raise
                if not retryable(exc):
                    raise ElasticError(f"Elasticsearch: {what}: {describe(exc)}") from None
                delay = next(delays, None)
                if delay is None:
                    raise ElasticUnavailable(f"Elasticsearch: {what}: still failing after "
                                             f"{self.attempts} attempts: {describe(exc)}") \
                        from None
                self.wait(delay)


def client_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the Elasticsearch client (an answer or the transport)."""
    from elasticsearch import ApiError, TransportError

    return isinstance(exc, ApiError | TransportError)


def retryable(exc: BaseException) -> bool:
    """Whether an error of the client is worth retrying (overload, outage, network)."""
    from elasticsearch import ApiError, ConnectionError, ConnectionTimeout

    if isinstance(exc, ApiError):
        return exc.meta.status in RETRY_STATUSES
    return isinstance(exc, ConnectionError | ConnectionTimeout)


def describe(exc: BaseException) -> str:
    """A one-line description of a client error."""
    from elasticsearch import ApiError

    if isinstance(exc, ApiError):
        return f"HTTP {exc.meta.status} {exc.error}"
    return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- documents


def _iso(ts_us: int) -> str:
    stamp = dt.datetime.fromtimestamp(ts_us / 1_000_000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_document(fields: Mapping[str, Any], leaf: bytes, checkpoint_size: int) -> dict[str, Any]:
    """The document of one entry: its envelope fields, leaf hash and covering checkpoint."""
    doc = {name: fields[name] for name in ENVELOPE_FIELDS}
    doc["@timestamp"] = _iso(int(fields["ts"]))
    doc["leaf"] = leaf.hex()
    doc["checkpoint_size"] = checkpoint_size
    return doc


def document_leaf(doc: Mapping[str, Any]) -> bytes | None:
    """The leaf hash a document's envelope fields hash to (None if they cannot be an envelope)."""
    try:
        return leaf_hash(canonical_json({name: doc[name] for name in ENVELOPE_FIELDS}))
    except (KeyError, EventError):
        return None


def checkpoint_document(origin: str, size: int, root: bytes, note: str,
                        created_us: int) -> dict[str, Any]:
    """The document of one signed checkpoint."""
    return {"origin": origin, "size": size, "root": root.hex(), "note": note,
            "created_us": created_us}


def doc_id(origin: str, number: int) -> str:
    """``<origin>:<seq>`` (events) or ``<origin>:<size>`` (checkpoints)."""
    return f"{origin}:{number}"


def _covering(sizes: Sequence[int], seq: int) -> int:
    """The smallest checkpoint size that covers ``seq`` (sizes ascending)."""
    i = bisect.bisect_right(sizes, seq)
    return sizes[i] if i < len(sizes) else 0


def _index_exists(es: Elasticsearch, index: str) -> bool:
    return bool(es.indices.exists(index=index))


def _bulk(es: Elasticsearch, operations: Sequence[Mapping[str, Any]],
          refresh: bool) -> dict[str, Any]:
    body: dict[str, Any] = es.bulk(operations=operations, refresh=refresh).body
    return body


def verified_chunk(storage: LedgerStorage, cp: Checkpoint, lo: int, hi: int,
                   consequence: str) -> list[tuple[int, bytes, bytes]]:
    """``(seq, envelope, leaf)`` of entries ``[lo, hi)``, checked against the signed root.

    Leaves are recomputed from the envelope bytes (a pruned entry keeps its stored leaf and
    an empty envelope); one range proof checks the chunk. A missing row or a mismatch raises
    :class:`VerifyFailure` naming the first bad seq where it can, then ``consequence``.
    """
    seqs, envelopes, stored = storage.envelopes(lo, hi)
    if seqs != list(range(lo, hi)):
        gap = next((s for s, want in zip(seqs, range(lo, hi), strict=False) if s != want),
                   len(seqs) + lo)
        raise VerifyFailure(gap, f"the entry is missing from the store; {consequence} (run "
                            "`monitoring audit verify --full`)")
    leaves = [leaf_hash(e) if e else bytes(s) for e, s in zip(envelopes, stored, strict=True)]
    if seqs:
        proof = multiproof(storage, seqs, cp.size)
        if root_from_multiproof(seqs, leaves, cp.size, proof) != cp.root:
            bad = next((q for q, e, s in zip(seqs, envelopes, stored, strict=True)
                        if e and leaf_hash(e) != bytes(s)), None)
            raise VerifyFailure(bad, f"entries {lo}..{hi - 1} do not lead to the signed root "
                                f"of size {cp.size}; {consequence} (run `monitoring audit "
                                "verify --full`)")
    return list(zip(seqs, envelopes, leaves, strict=True))


def _storage(source: Ledger | LedgerStorage) -> tuple[Ledger | None, LedgerStorage]:
    if isinstance(source, LedgerStorage):
        return None, source
    return source, source.storage


# --------------------------------------------------------------------------- shipping


@dataclass(frozen=True)
class Conflict:
    """A document id that already holds something else than the ledger's entry (T34)."""

    doc_id: str
    index: str
    fields: tuple[str, ...]
    """The fields that differ."""

    def __str__(self) -> str:
        return (f"{self.index}/{self.doc_id}: a different document already exists (fields "
                f"{', '.join(self.fields) or '?'} differ); create refused to overwrite it")


@dataclass
class ShipReport:
    """What one :meth:`ElasticShipper.ship` run did."""

    origin: str
    start: int = 0
    end: int = 0
    """Entries ``[start, end)`` were considered."""
    shipped: int = 0
    already: int = 0
    """Documents found already present and identical (a resend)."""
    skipped_pruned: int = 0
    checkpoints: int = 0
    conflicts: list[Conflict] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        """No conflict and no failed document."""
        return not self.conflicts and not self.failed


class ElasticShipper:
    """Ships a ledger's entries and checkpoints with bulk ``create`` operations."""

    def __init__(self, es: Elasticsearch, *, index: str = DEFAULT_EVENTS_INDEX,
                 checkpoint_index: str = DEFAULT_CHECKPOINTS_INDEX, batch: int = DEFAULT_BATCH,
                 retry: Retry | None = None) -> None:
        if batch < 1:
            raise AuditError(f"batch: expected at least 1, got {batch}")
        self.es = es
        self.index = index
        self.checkpoint_index = checkpoint_index
        self.batch = batch
        self.retry = retry or Retry()

    def ensure_indices(self) -> None:
        """Create both indices with their mappings unless they exist."""
        for name, mappings in ((self.index, EVENT_MAPPINGS),
                               (self.checkpoint_index, CHECKPOINT_MAPPINGS)):
            if not self.retry.call(f"check index {name}",
                                   partial(_index_exists, self.es, name)):
                self.retry.call(f"create index {name}",
                                partial(self.es.indices.create, index=name, mappings=mappings))

    def highest(self, index: str, origin: str, number_field: str) -> int | None:
        """The highest ``seq``/``size`` this origin has in ``index`` (None if none)."""
        body = self.retry.call(f"search {index}", lambda: self.es.search(
            index=index, query={"term": {"origin": origin}},
            sort=[{number_field: {"order": "desc"}}], size=1).body)
        hits = body["hits"]["hits"]
        return int(hits[0]["_source"][number_field]) if hits else None

    def ship(self, source: Ledger | LedgerStorage, *, keys: KeyHistory | None = None,
             start: int | None = None, refresh: bool = False) -> ShipReport:
        """Ship every entry after the highest one already shipped, then the checkpoints.

        Only entries covered by the newest signed checkpoint are shipped, each chunk after
        recomputing its leaves from the envelope bytes and checking them against that
        checkpoint's root (a tampered store is never copied out; VerifyFailure says where).
        """
        ledger, storage = _storage(source)
        retries_before = self.retry.retries
        self.ensure_indices()
        cp, _note, _signer = trusted_checkpoint(storage, ledger, keys)
        origin = storage.origin
        report = ShipReport(origin)
        shipped_to = self.highest(self.index, origin, "seq")
        report.start = start if start is not None else (0 if shipped_to is None
                                                       else shipped_to + 1)
        report.end = cp.size
        sizes = [c.size for c in storage.checkpoints()]
        for lo in range(report.start, cp.size, self.batch):
            hi = min(cp.size, lo + self.batch)
            ops = self._event_ops(storage, cp, sizes, lo, hi, report)
            report.shipped += self._send(ops, report, refresh)
        self._ship_checkpoints(storage, ledger, keys, report, refresh)
        report.retries = self.retry.retries - retries_before
        if ledger is not None and not report.ok:
            _record(ledger, "elasticsearch.conflict", "critical",
                    {"index": self.index, "conflicts": [c.doc_id for c in
                                                        report.conflicts[:MAX_REPORTED]],
                     "failed": report.failed[:MAX_REPORTED]})
        return report

    def _event_ops(self, storage: LedgerStorage, cp: Checkpoint, sizes: Sequence[int],
                   lo: int, hi: int, report: ShipReport) -> list[tuple[str, dict[str, Any]]]:
        ops = []
        for seq, envelope, leaf in verified_chunk(storage, cp, lo, hi, "not shipping"):
            if not envelope:
                report.skipped_pruned += 1
                continue
            fields = authenticated_fields(envelope, seq, storage.origin)
            ops.append((doc_id(storage.origin, seq),
                        event_document(fields, leaf, _covering(sizes, seq))))
        return ops

    def _ship_checkpoints(self, storage: LedgerStorage, ledger: Ledger | None,
                          keys: KeyHistory | None, report: ShipReport, refresh: bool) -> None:
        origin = storage.origin
        shipped = self.highest(self.checkpoint_index, origin, "size") or 0
        history = key_history_for(storage, ledger, keys)
        ops = []
        for stored in storage.checkpoints():
            if stored.size <= shipped:
                continue
            try:
                found, signers = open_checkpoint(stored.note, history.verifiers, origin)
                history.check_any(signers, found.size)
            except (NoteError, VerifyFailure) as exc:
                report.failed.append(f"checkpoint {stored.size}: does not verify ({exc}); "
                                     "not shipped")
                continue
            ops.append((doc_id(origin, stored.size),
                        checkpoint_document(origin, found.size, found.root, stored.note,
                                            stored.created_us)))
        for i in range(0, len(ops), self.batch):
            report.checkpoints += self._send(ops[i:i + self.batch], report, refresh,
                                             index=self.checkpoint_index)

    def _send(self, ops: Sequence[tuple[str, dict[str, Any]]], report: ShipReport,
              refresh: bool, index: str | None = None) -> int:
        """Bulk-create ``ops``; retry the items that failed for overload; sort out 409s.

        Returns how many documents were created; conflicts, resends and failures go into
        ``report``.
        """
        index = index or self.index
        created = 0
        pending = list(ops)
        conflicts: list[tuple[str, dict[str, Any]]] = []
        delays = self.retry.delays()
        while pending:
            body: list[Mapping[str, Any]] = []
            for did, doc in pending:
                body.append({"create": {"_index": index, "_id": did}})
                body.append(doc)
            answer = self.retry.call(f"bulk create into {index}",
                                     partial(_bulk, self.es, body, refresh))
            again = []
            for (did, doc), item in zip(pending, answer["items"], strict=True):
                result = item.get("create", {})
                status = int(result.get("status", 0))
                if 200 <= status < 300:
                    created += 1
                elif status == 409:
                    conflicts.append((did, doc))
                elif status in RETRY_STATUSES:
                    again.append((did, doc))
                else:
                    reason = (result.get("error") or {}).get("reason", f"HTTP {status}")
                    report.failed.append(f"{index}/{did}: {reason}")
            if again:
                delay = next(delays, None)
                if delay is None:
                    report.failed.extend(f"{index}/{did}: still refused after "
                                         f"{self.retry.attempts} attempts" for did, _ in again)
                    break
                self.retry.wait(delay)
            pending = again
        self._resolve_conflicts(index, conflicts, report)
        return created

    def _resolve_conflicts(self, index: str, conflicts: Sequence[tuple[str, dict[str, Any]]],
                           report: ShipReport) -> None:
        if not conflicts:
            return
        ids = [did for did, _ in conflicts]
        body = self.retry.call(f"read back {len(ids)} existing documents", lambda: self.es.search(
            index=index, query={"ids": {"values": ids}}, size=len(ids)).body)
        existing = {hit["_id"]: hit["_source"] for hit in body["hits"]["hits"]}
        for did, doc in conflicts:
            held = existing.get(did)
            if held == doc:
                report.already += 1
                continue
            differing = tuple(sorted(k for k in set(doc) | set(held or {})
                                     if (held or {}).get(k) != doc.get(k)))
            report.conflicts.append(Conflict(did, index, differing))


# --------------------------------------------------------------------------- reconciliation


@dataclass(frozen=True)
class Discrepancy:
    """One way the Elasticsearch copy differs from the ledger."""

    kind: str
    """``altered``, ``missing``, ``extra``, ``forged`` (checkpoint), ``rollback`` or ``fork``."""
    index: str
    doc_id: str
    seq: int | None
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.index}/{self.doc_id}: {self.detail}"


@dataclass
class ReconcileReport:
    """What :func:`reconcile` compared and found."""

    origin: str
    ledger_size: int = 0
    documents: int = 0
    checkpoints: int = 0
    not_shipped: int = 0
    """Ledger entries after the highest shipped one (not yet shipped: not an alarm)."""
    discrepancies: list[Discrepancy] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Elasticsearch agrees with the ledger."""
        return not self.counts

    def add(self, kind: str, index: str, did: str, seq: int | None, detail: str) -> None:
        """Record a discrepancy (up to :data:`MAX_REPORTED` of each kind; all are counted)."""
        n = self.counts.get(kind, 0)
        self.counts[kind] = n + 1
        if n < MAX_REPORTED:
            self.discrepancies.append(Discrepancy(kind, index, did, seq, detail))

    def alarms(self) -> list[Alarm]:
        """The discrepancies as alarms: ROLLBACK/FORK for checkpoints, TAMPERED otherwise."""
        kinds = {"rollback": AlarmKind.ROLLBACK, "fork": AlarmKind.FORK}
        out = []
        for d in self.discrepancies:
            out.append(Alarm(kinds.get(d.kind, AlarmKind.TAMPERED),
                             f"Elasticsearch {d}", {"where": "elasticsearch", "kind": d.kind,
                                                    "index": d.index, "doc_id": d.doc_id}))
        return out


def _scan(es: Elasticsearch, retry: Retry, index: str, origin: str,
          number_field: str) -> Iterator[dict[str, Any]]:
    """Every hit of ``origin`` in ``index`` in ``number_field`` order (search_after pages).

    An index that does not exist holds nothing.
    """
    if not retry.call(f"check index {index}", partial(_index_exists, es, index)):
        return
    after: list[Any] | None = None
    while True:
        def page(a: list[Any] | None = after) -> dict[str, Any]:
            kwargs: dict[str, Any] = {"search_after": a} if a is not None else {}
            body: dict[str, Any] = es.search(
                index=index, query={"term": {"origin": origin}},
                sort=[{number_field: {"order": "asc"}}], size=PAGE, **kwargs).body
            return body
        hits = retry.call(f"scan {index}", page)["hits"]["hits"]
        yield from hits
        if len(hits) < PAGE:
            return
        after = hits[-1]["sort"]


def reconcile(source: Ledger | LedgerStorage, es: Elasticsearch, *,
              index: str = DEFAULT_EVENTS_INDEX,
              checkpoint_index: str = DEFAULT_CHECKPOINTS_INDEX,
              keys: KeyHistory | None = None, retry: Retry | None = None) -> ReconcileReport:
    """Compare the Elasticsearch copy of a ledger with the ledger itself.

    Every document of this origin is compared, field by field, with the document built from
    the ledger's verified entry: a different one is ``altered``, one the ledger does not have
    (or under the wrong id) is ``extra``, a ledger entry up to the highest shipped seq without
    a document is ``missing``. Checkpoint documents must carry a valid signature of the
    ledger's key (else ``forged``); a valid one larger than the ledger's newest checkpoint
    means the ledger lost entries (``rollback``), one with another root at a size the ledger
    has, or not consistent with it, a ``fork``. With a :class:`Ledger`, discrepancies are
    recorded as a ``security``/``elasticsearch.mismatch`` event.
    """
    ledger, storage = _storage(source)
    retry = retry or Retry()
    cp, _note, _signer = trusted_checkpoint(storage, ledger, keys)
    report = ReconcileReport(storage.origin, cp.size)
    highest = _reconcile_events(storage, cp, es, retry, index, report)
    report.not_shipped = cp.size - (highest + 1)
    _reconcile_checkpoints(storage, ledger, keys, cp, es, retry, checkpoint_index, report)
    if ledger is not None and not report.ok:
        _record(ledger, "elasticsearch.mismatch", "critical",
                {"index": index, "counts": dict(report.counts),
                 "documents": [d.doc_id for d in report.discrepancies[:MAX_REPORTED]]})
    return report


class _LedgerView:
    """Verified expected documents of a ledger, loaded in chunks as the scan advances."""

    def __init__(self, storage: LedgerStorage, cp: Checkpoint) -> None:
        self.storage = storage
        self.cp = cp
        self.sizes = [c.size for c in storage.checkpoints()]
        self._lo = self._hi = 0
        self._docs: dict[int, dict[str, Any] | bytes | None] = {}

    def expected(self, seq: int) -> dict[str, Any] | bytes | None:
        """The document of ``seq``; its leaf hash (bytes) if pruned; None if not stored.

        Raises :class:`VerifyFailure` if the ledger's own entries do not verify.
        """
        if not self._lo <= seq < self._hi:
            self._load(seq, min(self.cp.size, seq + PAGE))
        return self._docs.get(seq)

    def _load(self, lo: int, hi: int) -> None:
        self._docs = {}
        for seq, envelope, leaf in verified_chunk(self.storage, self.cp, lo, hi,
                                                  "verify the ledger before reconciling"):
            self._docs[seq] = leaf if not envelope else event_document(
                authenticated_fields(envelope, seq, self.cp.origin), leaf,
                _covering(self.sizes, seq))
        self._lo, self._hi = lo, hi


def _reconcile_events(storage: LedgerStorage, cp: Checkpoint, es: Elasticsearch, retry: Retry,
                      index: str, report: ReconcileReport) -> int:
    """Compare the event documents; returns the highest seq shipped (-1 if none)."""
    view = _LedgerView(storage, cp)
    origin = storage.origin
    previous = -1
    for hit in _scan(es, retry, index, origin, "seq"):
        report.documents += 1
        source: dict[str, Any] = hit["_source"]
        did, seq = hit["_id"], source.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            report.add("extra", index, did, None, "a document of this origin without a seq")
            continue
        if did != doc_id(origin, seq):
            report.add("extra", index, did, seq, f"a document for seq {seq} under another id "
                       f"(expected {doc_id(origin, seq)})")
            continue
        if seq >= cp.size:
            report.add("extra", index, did, seq, f"the ledger has no seq {seq} (newest "
                       f"checkpoint size {cp.size})")
            continue
        for gap in range(previous + 1, seq):
            _missing(view, report, index, origin, gap)
        previous = max(previous, seq)
        want = view.expected(seq)
        if want is None:
            report.add("extra", index, did, seq, "the store has no entry with this seq")
        elif isinstance(want, bytes):  # pruned in the ledger: the document must hash to its leaf
            if document_leaf(source) != want:
                report.add("altered", index, did, seq, "the document does not hash to the "
                           "ledger's kept leaf of this pruned entry")
        elif source != want:
            differing = sorted(k for k in set(source) | set(want)
                               if source.get(k) != want.get(k))
            report.add("altered", index, did, seq, f"fields {', '.join(differing)} differ from "
                       "the ledger's entry")
    return previous


def _missing(view: _LedgerView, report: ReconcileReport, index: str, origin: str,
             seq: int) -> None:
    if isinstance(view.expected(seq), dict):  # a pruned entry may never have been shipped
        report.add("missing", index, doc_id(origin, seq), seq,
                   "the ledger has this entry, the index does not")


def _reconcile_checkpoints(storage: LedgerStorage, ledger: Ledger | None,
                           keys: KeyHistory | None, cp: Checkpoint, es: Elasticsearch,
                           retry: Retry, index: str, report: ReconcileReport) -> None:
    history = key_history_for(storage, ledger, keys)
    origin = storage.origin
    stored = {c.size: c for c in storage.checkpoints()}
    seen: set[int] = set()
    for hit in _scan(es, retry, index, origin, "size"):
        report.checkpoints += 1
        did, note = hit["_id"], hit["_source"].get("note")
        try:
            found, signers = open_checkpoint(str(note), history.verifiers, origin)
            history.check_any(signers, found.size)
        except (NoteError, VerifyFailure) as exc:
            report.add("forged", index, did, None, f"the checkpoint does not verify: {exc}")
            continue
        seen.add(found.size)
        if did != doc_id(origin, found.size) or hit["_source"].get("size") != found.size \
                or hit["_source"].get("root") != found.root.hex():
            report.add("altered", index, did, None, "the document's id, size or root "
                       "disagrees with its signed note")
        if found.size > cp.size:
            report.add("rollback", index, did, None, f"Elasticsearch holds a signed checkpoint "
                       f"of size {found.size}, the ledger's newest is {cp.size}: the ledger "
                       "lost entries")
            continue
        local = stored.get(found.size)
        if local is not None:
            if local.root != found.root:
                report.add("fork", index, did, None, f"two signed roots for size {found.size}")
            continue
        try:
            proof = ledger.consistency_proof(found.size, cp.size) if ledger else []
            verify_consistency(found.size, cp.size, found.root, cp.root, proof)
        except AuditError as exc:
            report.add("fork", index, did, None, f"the ledger does not extend this signed "
                       f"checkpoint of size {found.size}: {exc}")
    top = max(seen, default=0)
    for size in sorted(stored):
        if size <= top and size not in seen:
            report.add("missing", index, doc_id(origin, size), None,
                       f"the ledger's checkpoint of size {size} is not in the index")


def _record(ledger: Ledger, action: str, severity: str, details: Mapping[str, Any]) -> None:
    from monitoring.audit.context import current_correlation_id
    from monitoring.audit.envelope import AuditEvent

    ledger.append(AuditEvent(event_type="security", action=action, severity=severity,
                             resource="elasticsearch", outcome="failure", details=dict(details),
                             correlation_id=current_correlation_id()))


# --------------------------------------------------------------------------- anchor


class ElasticAnchor:
    """The checkpoint index as an external anchor (an :class:`~monitoring.audit.anchors.Anchor`).

    A checkpoint is published only if it extends the newest one the index holds for its
    origin (consistency proof), and with ``create``, so a rolled-back or forked log is refused
    here just as by a witness.
    """

    def __init__(self, es: Elasticsearch, *, origin: str | None = None,
                 index: str = DEFAULT_CHECKPOINTS_INDEX, retry: Retry | None = None,
                 url: str = "") -> None:
        self.es = es
        self.origin = origin
        self.index = index
        self.retry = retry or Retry(attempts=3)
        self.name = f"elasticsearch:{url or index}"
        self._ready = False

    def _ensure_index(self) -> None:
        if not self._ready:
            if not self.retry.call(f"check index {self.index}",
                                   partial(_index_exists, self.es, self.index)):
                self.retry.call(f"create index {self.index}", partial(
                    self.es.indices.create, index=self.index, mappings=CHECKPOINT_MAPPINGS))
            self._ready = True

    def _newest(self, origin: str | None) -> dict[str, Any] | None:
        query = {"term": {"origin": origin}} if origin else {"match_all": {}}
        body = self.retry.call(f"search {self.index}", lambda: self.es.search(
            index=self.index, query=query, sort=[{"size": {"order": "desc"}}], size=1).body)
        hits = body["hits"]["hits"]
        return hits[0]["_source"] if hits else None

    def held(self, origin: str) -> SidecarRecord | None:
        """The newest checkpoint the index holds for ``origin``."""
        src = self._newest(origin)
        if src is None:
            return None
        try:
            return SidecarRecord(int(src["size"]), bytes.fromhex(str(src["root"])),
                                 str(src["note"]), 0)
        except (KeyError, ValueError, TypeError) as exc:
            raise AnchorError(f"{self.name}: malformed checkpoint document: {exc}") from None

    def publish(self, note: str, cp: Checkpoint, proof_from: ProofFrom) -> None:
        """Store ``note`` unless the index already holds it; refuse a non-extension."""
        from elasticsearch import ConflictError

        try:
            self._ensure_index()
            held = self.held(cp.origin)
            if not check_extends(self.name, held, cp, proof_from):
                return
            doc = checkpoint_document(cp.origin, cp.size, cp.root, note,
                                      time.time_ns() // 1000)
            self.retry.call(f"create checkpoint {cp.size}", lambda: self.es.create(
                index=self.index, id=doc_id(cp.origin, cp.size), document=doc),
                passthrough=(ConflictError,))
        except ConflictError:
            raise AnchorConflict("FORK", self.name, cp.size, f"another checkpoint of size "
                                 f"{cp.size} is already stored for {cp.origin}") from None
        except AnchorConflict:
            raise
        except AuditError as exc:
            raise AnchorError(f"{self.name}: {exc}") from None

    def latest(self, origin: str | None = None) -> str | None:
        """The newest note held for ``origin`` (default: this anchor's).

        None if the index holds none or cannot be reached.
        """
        try:
            src = self._newest(origin or self.origin)
        except AuditError:
            return None
        return str(src["note"]) if src and "note" in src else None


__all__ = [
    "CHECKPOINT_MAPPINGS",
    "DEFAULT_CHECKPOINTS_INDEX",
    "DEFAULT_EVENTS_INDEX",
    "EVENT_MAPPINGS",
    "Conflict",
    "Discrepancy",
    "ElasticAnchor",
    "ElasticError",
    "ElasticShipper",
    "ElasticUnavailable",
    "ReconcileReport",
    "Retry",
    "ShipReport",
    "checkpoint_document",
    "connect",
    "doc_id",
    "document_leaf",
    "event_document",
    "reconcile",
]
