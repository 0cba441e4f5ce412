"""Verified search: every row shown comes from authenticated bytes, and windows prove complete.

The search columns of ``audit_entries`` (``ts_us``, ``actor``, ``action``...) are unverified
copies: anyone who can write the store can change them to hide an entry from a query or pin it
on somebody else (the journald CVE-2023-31437 pattern). So they only *select candidates*:

* every candidate's leaf hash is recomputed from its envelope bytes and checked against the
  newest signed checkpoint (one multiproof per chunk of rows, :mod:`monitoring.audit.window`);
  a row that fails is reported as TAMPERED and never shown;
* the filters are applied again to the verified envelope, and every search column is compared
  with it: a candidate the index misattributed is dropped and reported;
* ``complete=True`` does not trust the index at all: it reads the whole time window as a
  contiguous seq range (timestamps never decrease), verifies it with one range proof, filters
  the envelopes itself and returns a :class:`~monitoring.audit.window.WindowProof` with which
  a client proves offline that nothing in the window was left out. A deleted row makes the
  range unprovable; an altered column is reported.

Text search looks at the envelope's values and, where the subject's key still exists, at the
decrypted personal data (never shown unless ``decrypt=True``). Every search through a writable
:class:`~monitoring.audit.ledger.Ledger` is itself recorded as a ``data_access``/``audit.search``
event (PCI DSS 10.2.1.3: access to audit logs); plain user ids and search text appear in it
only sealed with the searcher's personal data, never in the clear.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit.context import current_correlation_id
from monitoring.audit.envelope import ENVELOPE_FIELDS, AuditEvent
from monitoring.audit.errors import AuditError, ProofError, VerifyFailure
from monitoring.audit.keys import KeyHistory
from monitoring.audit.merkle import leaf_hashes, root_at
from monitoring.audit.note import Checkpoint
from monitoring.audit.offline import check_envelope
from monitoring.audit.storage import ENTRY_COLUMNS, LedgerStorage, StoredEntry
from monitoring.audit.window import (
    WindowProof,
    multiproof,
    open_signed_checkpoint,
    root_from_multiproof,
    verify_window_proof,
)
from monitoring.dsl.config import AUDIT_CATEGORIES

if TYPE_CHECKING:
    from monitoring.audit.ledger import Appended, Ledger

DEFAULT_LIMIT = 100
CHUNK = 512
"""Candidates fetched and verified together (one multiproof each)."""
MAX_FINDINGS = 100
"""Tamper findings kept per search; beyond this only the count grows."""

COLUMN_FIELDS = (("ts_us", "ts"), ("category", "category"), ("action", "action"),
                 ("severity", "severity"), ("resource", "resource"), ("outcome", "outcome"),
                 ("actor", "actor"), ("correlation_id", "correlation_id"),
                 ("retention", "retention"))
"""Search column -> envelope field: the copies verify-on-read compares."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class SearchQuery:
    """What was asked. ``actor_ref`` is the pseudonym the plain ``actor`` maps to."""

    since_us: int | None = None
    until_us: int | None = None
    actor: str | None = None
    actor_ref: str | None = None
    action: str | None = None
    resource: str | None = None
    category: str | None = None
    correlation_id: str | None = None
    text: str | None = None
    limit: int | None = DEFAULT_LIMIT
    complete: bool = False
    newest_first: bool = False
    include_archive: bool = False
    decrypt: bool = False

    def check(self) -> None:
        """Raise :class:`AuditError` naming the first unusable filter."""
        for name in ("since_us", "until_us", "limit"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise AuditError(f"search: {name}: expected an integer, got {value!r}")
        if self.since_us is not None and self.until_us is not None \
                and self.until_us < self.since_us:
            raise AuditError(f"search: the window ends ({self.until_us}) before it starts "
                             f"({self.since_us})")
        if self.limit is not None and self.limit < 1:
            raise AuditError(f"search: limit: expected at least 1, got {self.limit}")
        if self.category is not None and self.category not in AUDIT_CATEGORIES:
            raise AuditError(f"search: unknown category {self.category!r} (one of "
                             f"{', '.join(AUDIT_CATEGORIES)})")
        for name in ("actor", "actor_ref", "action", "resource", "correlation_id", "text"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise AuditError(f"search: {name}: expected a non-empty string")

    def matches(self, fields: Mapping[str, Any], personal: Mapping[str, Any] | None) -> bool:
        """Whether a verified envelope (and its decrypted personal data) passes the filters."""
        ts = fields["ts"]
        if self.since_us is not None and ts < self.since_us:
            return False
        if self.until_us is not None and ts >= self.until_us:
            return False
        if (self.actor is not None or self.actor_ref is not None) and (
                self.actor_ref is None or fields["actor"] != self.actor_ref):
            return False
        for name in ("action", "resource", "category", "correlation_id"):
            wanted = getattr(self, name)
            if wanted is not None and fields[name] != wanted:
                return False
        if self.text is not None:
            needle = self.text.casefold()
            if needle not in _flat_text(fields).casefold() and (
                    personal is None or needle not in _flat_text(personal).casefold()):
                return False
        return True

    def public(self, sealed: bool) -> dict[str, Any]:
        """The filters as recorded in the search's own audit event.

        The plain actor and the search text can be personal data: they are included only
        when ``sealed`` (the event has a subject, so its details are encrypted).
        """
        out: dict[str, Any] = {
            "since_us": self.since_us, "until_us": self.until_us, "action": self.action,
            "resource": self.resource, "category": self.category,
            "correlation_id": self.correlation_id, "actor_ref": self.actor_ref,
            "limit": self.limit, "complete": self.complete,
            "include_archive": self.include_archive, "decrypt": self.decrypt,
            "actor_given": self.actor is not None, "text_given": self.text is not None}
        if sealed:
            out["actor"] = self.actor
            out["text"] = self.text
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True)
class SearchRow:
    """One verified entry: every field comes from its authenticated envelope."""

    seq: int
    ts_us: int
    category: str
    action: str
    severity: str
    resource: str | None
    outcome: str | None
    actor: str | None
    correlation_id: str | None
    retention: str
    data: dict[str, Any] | None
    pii_ref: str | None
    envelope: bytes
    leaf: bytes
    personal: dict[str, Any] | None = None
    """Decrypted user id, source and details (only with ``decrypt=True`` and a live key)."""
    erased: bool = False
    """The entry had personal data whose subject key is destroyed."""
    archived: bool = False
    """The envelope was read from an archive file, not the hot store."""
    verified: bool = True
    """Always True: a row that fails verification is never returned as a row."""

    @classmethod
    def from_envelope(cls, fields: Mapping[str, Any], envelope: bytes, leaf: bytes,
                      archived: bool) -> SearchRow:
        """A row from a verified envelope's fields."""
        pii = fields.get("pii")
        return cls(fields["seq"], fields["ts"], fields["category"], fields["action"],
                   fields["severity"], fields["resource"], fields["outcome"], fields["actor"],
                   fields["correlation_id"], fields["retention"], fields["data"],
                   pii["ref"] if isinstance(pii, dict) else None, envelope, leaf,
                   archived=archived)

    def to_json(self) -> dict[str, Any]:
        """The row as a JSON object (envelope and leaf hash in hex)."""
        out: dict[str, Any] = {
            "seq": self.seq, "ts_us": self.ts_us, "category": self.category,
            "action": self.action, "severity": self.severity, "resource": self.resource,
            "outcome": self.outcome, "actor": self.actor,
            "correlation_id": self.correlation_id, "retention": self.retention,
            "data": self.data, "pii_ref": self.pii_ref, "verified": self.verified,
            "leaf": self.leaf.hex()}
        if self.personal is not None:
            out["personal"] = self.personal
        if self.erased:
            out["erased"] = True
        if self.archived:
            out["archived"] = True
        return out


@dataclass(frozen=True)
class Finding:
    """Something the search refused to show, and why (a TAMPERED report)."""

    seq: int | None
    reason: str

    def __str__(self) -> str:
        return f"TAMPERED seq {self.seq}: {self.reason}" if self.seq is not None \
            else f"TAMPERED: {self.reason}"


@dataclass
class SearchResult:
    """Verified rows, what was refused, and the proof material."""

    query: SearchQuery
    checkpoint: Checkpoint
    note: str
    signed_by: str
    rows: list[SearchRow] = field(default_factory=list)
    tampered: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    """All findings, also those beyond :data:`MAX_FINDINGS` that were not kept."""
    matched: int = 0
    """Rows that matched (complete mode: all matches in the window, before ``limit``)."""
    more: bool = False
    """The limit cut the result: more rows may match."""
    scanned: int = 0
    """Candidates read and verified."""
    uncovered: int = 0
    """Stored entries after the newest checkpoint (not searched: they cannot be verified)."""
    pruned: list[int] = field(default_factory=list)
    """Complete mode: seqs in the window whose payload retention removed (not searchable)."""
    window: WindowProof | None = None
    """Complete mode: the proof that the window is complete (None if it could not be built)."""
    logged: Appended | None = None
    """The search's own audit event (None when searching a read-only store)."""

    @property
    def ok(self) -> bool:
        """No tampering found (and, in complete mode, the window proof was built)."""
        return not self.findings_total and (not self.query.complete or self.window is not None)

    def add(self, seq: int | None, reason: str) -> None:
        """Record a finding (kept up to :data:`MAX_FINDINGS`)."""
        self.findings_total += 1
        if len(self.tampered) < MAX_FINDINGS:
            self.tampered.append(Finding(seq, reason))


# --------------------------------------------------------------------------- entry point


def search(source: Ledger | LedgerStorage, *, since_us: int | None = None,
           until_us: int | None = None, actor: str | None = None,
           actor_ref: str | None = None, action: str | None = None,
           resource: str | None = None, category: str | None = None,
           correlation_id: str | None = None, text: str | None = None,
           limit: int | None = DEFAULT_LIMIT, complete: bool = False,
           newest_first: bool = False, include_archive: bool = False, decrypt: bool = False,
           requested_by: str | None = None, keys: KeyHistory | None = None,
           log: bool = True) -> SearchResult:
    """Search the ledger; every returned row is verified against the newest signed checkpoint.

    ``actor`` is a plain user id (looked up in the subject vault: the envelope holds only its
    pseudonym); ``actor_ref`` the pseudonym itself. The time window is ``[since_us,
    until_us)`` in µs. ``complete`` scans the verified window instead of trusting the search
    columns and returns a :class:`WindowProof`. ``keys`` overrides the key history (default:
    the ledger's, derived from its verified genesis and rotation events). With a
    :class:`Ledger`, the search is recorded as an audit event with ``requested_by`` as its
    user (set ``log=False`` only for internal checks).
    """
    query = SearchQuery(since_us, until_us, actor, actor_ref, action, resource, category,
                        correlation_id, text, limit, complete, newest_first, include_archive,
                        decrypt)
    query.check()
    ledger, storage = _resolve(source)
    if actor is not None and actor_ref is None:
        if ledger is None:
            raise AuditError("search: --actor needs the ledger's subject vault to map the user "
                             "id to its pseudonym; open the ledger, or give actor_ref")
        query = replace(query, actor_ref=ledger.vault.ref_for(actor, create=False))
    if decrypt and ledger is None:
        raise AuditError("search: decrypting personal data needs the ledger's subject vault")
    try:
        with _snapshot(storage) as snap:
            cp, note, signer = trusted_checkpoint(snap, ledger, keys)
            result = SearchResult(query, cp, note, signer)
            _Search(snap, ledger, result).run()
    except AuditError as exc:
        if ledger is not None and log:
            _log_search(ledger, query, None, requested_by, failure=str(exc))
        raise
    if ledger is not None and log:
        result.logged = _log_search(ledger, query, result, requested_by)
    return result


def _resolve(source: Ledger | LedgerStorage) -> tuple[Ledger | None, LedgerStorage]:
    if isinstance(source, LedgerStorage):
        return None, source
    return source, source.storage


@contextmanager
def _snapshot(storage: LedgerStorage) -> Iterator[LedgerStorage]:
    """A storage reading one consistent snapshot: its own cursor in a read transaction.

    A search is then never confused by batches the writer commits meanwhile.
    """
    cur = storage.conn.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        yield LedgerStorage(cur)
    finally:
        try:
            cur.execute("ROLLBACK")
        finally:
            cur.close()


def key_history_for(snap: LedgerStorage, ledger: Ledger | None = None,
                    keys: KeyHistory | None = None) -> KeyHistory:
    """The keys to trust: ``keys``, else the open ledger's history, else the store's own.

    The store's own history is derived from its verified genesis and rotation events.
    """
    if keys is not None:
        return keys
    if ledger is not None and ledger.history is not None:
        return ledger.history
    import importlib

    # The contract puts key_history in recovery.py; the verifier keeps it in verify.py.
    for module in ("monitoring.audit.recovery", "monitoring.audit.verify"):
        derive = getattr(importlib.import_module(module), "key_history", None)
        if derive is not None:
            history: KeyHistory = derive(snap)
            return history
    raise AuditError("search: the ledger's key history is unknown; pass keys=")


def trusted_checkpoint(snap: LedgerStorage, ledger: Ledger | None = None,
                       keys: KeyHistory | None = None) -> tuple[Checkpoint, str, str]:
    """The newest stored checkpoint, its note and its signer's key id, once verified.

    The signature must be by the ledger's key within that key's validity window, for the
    store's origin; :class:`VerifyFailure` otherwise.
    """
    latest = snap.latest_checkpoint()
    if latest is None:
        raise AuditError("search: the ledger has no signed checkpoint yet")
    history = key_history_for(snap, ledger, keys)
    if ledger is not None and ledger.key.verifier() not in history.verifiers:
        raise VerifyFailure(None, "the ledger's signing key is not in the key history recorded "
                            "in the store")
    cp, signer = open_signed_checkpoint(latest.note, history, snap.origin)
    if cp.size != latest.size or cp.root != latest.root:
        raise VerifyFailure(None, f"the newest checkpoint row (size {latest.size}) disagrees "
                            f"with its signed note (size {cp.size})")
    return cp, latest.note, signer.key_hex


# --------------------------------------------------------------------------- the search


@dataclass
class _Candidate:
    """A row selected by the (unverified) search columns, or read for a window."""

    seq: int
    envelope: bytes
    columns: Mapping[str, Any] | None
    """The search columns as stored (None for a pruned entry)."""
    stored_leaf: bytes
    archived: bool = False


class _BulkNodes:
    """A node reader over a snapshot that fetches a whole proof's nodes in two queries.

    :class:`LedgerStorage` answers one node per query; a multiproof of a chunk of scattered
    rows needs thousands, so they are read here in bulk (and kept for the next chunk).
    """

    def __init__(self, storage: LedgerStorage) -> None:
        self.conn = storage.conn
        self.cache: dict[tuple[int, int], bytes] = {}

    def node(self, level: int, index: int) -> bytes:
        return self.nodes([(level, index)])[0]

    def nodes(self, coords: Sequence[tuple[int, int]]) -> list[bytes]:
        want = [c for c in dict.fromkeys(coords) if c not in self.cache]
        leaves = [i for level, i in want if level == 0]
        inner = [(level, i) for level, i in want if level > 0]
        if leaves:
            for seq, leaf in self.conn.execute(
                    "SELECT seq, leaf FROM audit_entries WHERE seq IN "
                    "(SELECT unnest(?::BIGINT[]))", [leaves]).fetchall():
                self.cache[(0, int(seq))] = bytes(leaf)
        if inner:
            for level, idx, digest in self.conn.execute(
                    "SELECT n.level, n.idx, n.hash FROM audit_nodes n JOIN (SELECT "
                    "unnest(?::INTEGER[]) AS level, unnest(?::BIGINT[]) AS idx) q "
                    "ON n.level = q.level AND n.idx = q.idx",
                    [[c[0] for c in inner], [c[1] for c in inner]]).fetchall():
                self.cache[(int(level), int(idx))] = bytes(digest)
        out = []
        for level, index in coords:
            found = self.cache.get((level, index))
            if found is None:
                what = f"leaf {index}" if level == 0 else f"node (level {level}, index {index})"
                raise ProofError(f"the store has no tree {what}")
            out.append(found)
        return out


class _Search:
    def __init__(self, snap: LedgerStorage, ledger: Ledger | None,
                 result: SearchResult) -> None:
        self.snap = snap
        self.reader = _BulkNodes(snap)
        self.ledger = ledger
        self.result = result
        self.query = result.query
        self.cp = result.checkpoint
        self.size = result.checkpoint.size

    def run(self) -> None:
        self.result.uncovered = max(0, self.snap.size() - self.size)
        if root_at(self.reader, self.size) != self.cp.root:
            self.result.add(None, f"the stored tree does not lead to the signed root of size "
                            f"{self.size} (audit_nodes or leaves altered); nothing can be "
                            "verified")
            return
        if self.query.complete:
            self._complete()
        else:
            self._predicate()

    # ------------------------------------------------------------ verification

    def _verify(self, items: Sequence[_Candidate]) -> list[tuple[_Candidate, dict[str, Any]]]:
        """The candidates that verify, with their parsed envelopes; the rest become findings."""
        leaves = leaf_hashes(c.envelope for c in items)
        bad = self._bad_indices([c.seq for c in items], leaves)
        good: list[tuple[_Candidate, dict[str, Any]]] = []
        for cand, leaf in zip(items, leaves, strict=True):
            if cand.seq in bad:
                missing = bad[cand.seq]
                if missing:
                    why = f"it cannot be verified: {missing}"
                elif leaf != cand.stored_leaf:
                    why = "its envelope does not match its stored leaf hash"
                else:
                    why = "its entry does not lead to the signed root"
                self.result.add(cand.seq, f"not shown: {why} (checkpoint size {self.size})")
                continue
            try:
                fields = authenticated_fields(cand.envelope, cand.seq, self.cp.origin)
            except VerifyFailure as exc:
                self.result.add(cand.seq, f"not shown: {exc.reason}")
                continue
            good.append((cand, fields))
        return good

    def _bad_indices(self, seqs: Sequence[int], leaves: Sequence[bytes]) -> dict[int, str]:
        """Seqs whose leaf does not lead to the signed root, bisecting a failed multiproof.

        The value is why the proof could not even be computed (a tree node the store lacks),
        or ``""`` when it was computed and led elsewhere.
        """
        if not seqs:
            return {}
        order = sorted(range(len(seqs)), key=seqs.__getitem__)
        bad: dict[int, str] = {}
        self._bisect([seqs[i] for i in order], [leaves[i] for i in order], bad)
        return bad

    def _bisect(self, idx: list[int], leaves: list[bytes], bad: dict[int, str]) -> None:
        missing = ""
        try:
            proof = multiproof(self.reader, idx, self.size)
            if root_from_multiproof(idx, leaves, self.size, proof) == self.cp.root:
                return
        except ProofError as exc:
            missing = str(exc)
        if len(idx) == 1:
            bad[idx[0]] = missing
            return
        mid = len(idx) // 2
        self._bisect(idx[:mid], leaves[:mid], bad)
        self._bisect(idx[mid:], leaves[mid:], bad)

    def _check_columns(self, cand: _Candidate, fields: Mapping[str, Any]) -> bool:
        """Compare the search columns with the envelope; False (and a finding) on a mismatch."""
        if cand.columns is None:
            return True
        wrong = [(col, cand.columns.get(col), fields[name]) for col, name in COLUMN_FIELDS
                 if cand.columns.get(col) != fields[name]]
        for col, stored, signed in wrong:
            self.result.add(cand.seq, f"search column {col} is {stored!r} but the signed "
                            f"envelope says {signed!r} (the search index was altered)")
        return not wrong

    def _personal(self, fields: Mapping[str, Any]) -> dict[str, Any] | None:
        """The decrypted personal data of an entry (None if it has none, or it was erased)."""
        if fields.get("pii") is None or self.ledger is None:
            return None
        try:
            return self.ledger.personal(fields["seq"])
        except VerifyFailure as exc:
            self.result.add(fields["seq"], f"sealed personal data: {exc.reason}")
            return None

    def _accept(self, cand: _Candidate, fields: dict[str, Any]) -> SearchRow | None:
        """The row for a verified candidate if it matches the query by its envelope."""
        personal = None
        if self.query.text is not None or self.query.decrypt:
            personal = self._personal(fields)
        if not self.query.matches(fields, personal):
            return None
        row = SearchRow.from_envelope(fields, cand.envelope, cand.stored_leaf, cand.archived)
        erased = (row.pii_ref is not None and personal is None and self.ledger is not None
                  and self.ledger.vault.is_erased(row.pii_ref))
        return replace(row, personal=personal if self.query.decrypt else None, erased=erased)

    # ------------------------------------------------------------ predicate search

    def _predicate(self) -> None:
        q = self.query
        if (q.actor is not None or q.actor_ref is not None) and q.actor_ref is None:
            return  # the user id has no pseudonym: no entry can name it
        sources = [self._hot_candidates()]
        if q.include_archive:
            sources.extend(self._archive_candidates(path) for path in self._archive_paths())
        merged = heapq.merge(*sources, key=lambda c: c.seq, reverse=q.newest_first)
        previous: int | None = None
        while True:
            chunk = []
            for cand in itertools.islice(merged, CHUNK):
                if cand.seq != previous:  # an archived entry whose payload is still hot
                    chunk.append(cand)
                previous = cand.seq
            if not chunk:
                return
            self.result.scanned += len(chunk)
            for cand, fields in self._verify(chunk):
                self._check_columns(cand, fields)  # a misattributed row is reported ...
                row = self._accept(cand, fields)  # ... and shown only if its envelope matches
                if row is None:
                    continue
                self.result.rows.append(row)
                self.result.matched += 1
                if q.limit is not None and len(self.result.rows) >= q.limit:
                    self.result.more = True
                    return

    def _filters(self) -> tuple[list[str], list[Any]]:
        q = self.query
        where: list[str] = ["seq < ?", "envelope IS NOT NULL"]
        params: list[Any] = [self.size]
        if q.since_us is not None:
            where.append("ts_us >= ?")
            params.append(q.since_us)
        if q.until_us is not None:
            where.append("ts_us < ?")
            params.append(q.until_us)
        for column, value in (("actor", q.actor_ref), ("action", q.action),
                              ("resource", q.resource), ("category", q.category),
                              ("correlation_id", q.correlation_id)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        return where, params

    def _select(self, table: str, table_params: Sequence[Any]) -> Iterator[_Candidate]:
        """Candidates from ``table`` (the hot table or an archive file) in seq order.

        Keyset pagination keeps memory bounded however many rows the filters select.
        """
        where, params = self._filters()
        desc = self.query.newest_first
        cur = self.snap.conn
        last: int | None = None
        cols = ", ".join(ENTRY_COLUMNS)
        while True:
            extra = [] if last is None else [f"seq {'<' if desc else '>'} ?"]
            sql = (f"SELECT {cols} FROM {table} WHERE {' AND '.join(where + extra)} "
                   f"ORDER BY seq {'DESC' if desc else 'ASC'} LIMIT {CHUNK}")
            rows = cur.execute(sql, [*table_params, *params,
                                     *([] if last is None else [last])]).fetchall()
            for row in rows:
                yield _candidate(row, archived=bool(table_params))
            if len(rows) < CHUNK:
                return
            last = int(rows[-1][0])

    def _hot_candidates(self) -> Iterator[_Candidate]:
        return self._select("audit_entries", ())

    def _archive_candidates(self, path: Path) -> Iterator[_Candidate]:
        for cand in self._select("read_parquet(?)", [str(path)]):
            cand.stored_leaf = self._kept_leaf(cand.seq)
            yield cand

    def _kept_leaf(self, seq: int) -> bytes:
        entry = self.snap.entry(seq)
        return entry.leaf if entry is not None else b""

    def _archive_paths(self) -> list[Path]:
        from monitoring.audit.archive import archive_files

        q = self.query
        out = []
        for found in archive_files(self.snap):
            if q.since_us is not None and found.max_ts_us < q.since_us:
                continue
            if q.until_us is not None and found.min_ts_us >= q.until_us:
                continue
            if not found.path.exists():
                self.result.add(None, f"archive file {found.path} named by the signed record "
                                f"at seq {found.record_seq} is missing")
                continue
            out.append(found.path)
        return out

    # ------------------------------------------------------------ complete (window) search

    def _complete(self) -> None:
        q = self.query
        lo, hi = self._window_guess()
        loaded: dict[int, _Candidate] = {}
        parsed: dict[int, dict[str, Any]] = {}
        archived = self._archived_envelopes(lo, hi) if q.include_archive else {}
        while True:
            self._load(lo, hi, loaded, parsed, archived)
            step = max(1, hi - lo)
            need_left = lo > 0 and (q.since_us is None or lo not in parsed
                                    or parsed[lo]["ts"] >= q.since_us)
            need_right = hi < self.size and (q.until_us is None or (hi - 1) not in parsed
                                             or parsed[hi - 1]["ts"] < q.until_us)
            if not (need_left or need_right):
                break
            if need_left:
                lo = 0 if q.since_us is None else max(0, lo - step)
            if need_right:
                hi = self.size if q.until_us is None else min(self.size, hi + step)
            if q.include_archive:
                archived = self._archived_envelopes(lo, hi)
        self._finish_window(lo, hi, loaded, parsed)

    def _window_guess(self) -> tuple[int, int]:
        """A seq range likely to hold the window plus its boundaries, from the ts column."""
        q = self.query
        cur = self.snap.conn
        lo, hi = 0, self.size
        if q.since_us is not None:
            row = cur.execute("SELECT max(seq) FROM audit_entries WHERE seq < ? AND ts_us < ?",
                              [self.size, q.since_us]).fetchone()
            lo = int(row[0]) if row and row[0] is not None else 0
        if q.until_us is not None:
            row = cur.execute("SELECT min(seq) FROM audit_entries WHERE seq < ? AND ts_us >= ?",
                              [self.size, q.until_us]).fetchone()
            hi = int(row[0]) + 1 if row and row[0] is not None else self.size
        return lo, max(hi, lo + 1)

    def _archived_envelopes(self, lo: int, hi: int) -> dict[int, bytes]:
        from monitoring.audit.archive import archive_files, archived_entries

        out: dict[int, bytes] = {}
        for found in archive_files(self.snap):
            if not any(s < hi and lo < e for s, e in found.ranges):
                continue
            if not found.path.exists():
                self.result.add(None, f"archive file {found.path} named by the signed record "
                                f"at seq {found.record_seq} is missing")
                continue
            for seq, envelope, _leaf in archived_entries(found.path):
                if lo <= seq < hi:
                    out[seq] = envelope
        return out

    def _load(self, lo: int, hi: int, loaded: dict[int, _Candidate],
              parsed: dict[int, dict[str, Any]], archived: Mapping[int, bytes]) -> None:
        """Read and verify the entries of ``[lo, hi)`` not read yet."""
        fresh: list[_Candidate] = []
        for start, end in _gaps(lo, hi, loaded):
            stored = {e.seq: e for e in self.snap.entries(start, end)}
            for seq in range(start, end):
                entry = stored.get(seq)
                if entry is None:
                    continue
                cand = _from_entry(entry)
                if not cand.envelope and seq in archived:
                    cand = _Candidate(seq, archived[seq], None, entry.leaf, archived=True)
                loaded[seq] = cand
                if cand.envelope:
                    fresh.append(cand)
            self.result.scanned += end - start
        for cand, fields in self._verify(fresh):
            self._check_columns(cand, fields)
            parsed[cand.seq] = fields

    def _finish_window(self, lo: int, hi: int, loaded: Mapping[int, _Candidate],
                       parsed: Mapping[int, dict[str, Any]]) -> None:
        q = self.query
        missing = [s for s in range(lo, hi) if s not in loaded]
        for seq in missing[:MAX_FINDINGS]:
            self.result.add(seq, "the entry is missing from the store (its row was deleted)")
        unverified = [s for s in range(lo, hi) if s in loaded and loaded[s].envelope
                      and s not in parsed]
        pruned = [s for s in range(lo, hi) if s in loaded and not loaded[s].envelope]
        self.result.pruned = pruned
        last_ts: int | None = None
        for seq in range(lo, hi):
            fields = parsed.get(seq)
            if fields is None:
                continue
            if last_ts is not None and fields["ts"] < last_ts:
                self.result.add(seq, f"ts {fields['ts']} is before the previous entry's "
                                f"{last_ts}; the window cannot be proven complete")
            last_ts = fields["ts"]
        for seq in range(lo, hi):
            fields = parsed.get(seq)
            if fields is None:
                continue
            row = self._accept(loaded[seq], fields)
            if row is not None:
                self.result.matched += 1
                self.result.rows.append(row)
        if q.newest_first:
            self.result.rows.reverse()
        if q.limit is not None and len(self.result.rows) > q.limit:
            self.result.rows = self.result.rows[:q.limit]
            self.result.more = True
        if missing or unverified:
            return  # the range cannot be proven: an entry is gone or does not verify
        seqs = range(lo, hi)
        envelopes = tuple(loaded[s].envelope for s in seqs)
        pruned_leaves = {s: loaded[s].stored_leaf for s in pruned}
        proof = tuple(multiproof(self.reader, seqs, self.size))
        self.result.window = WindowProof(self.result.note, q.since_us, q.until_us, lo,
                                         envelopes, pruned_leaves, proof)


def _gaps(lo: int, hi: int, loaded: Mapping[int, _Candidate]) -> list[tuple[int, int]]:
    """The sub-ranges of ``[lo, hi)`` not loaded yet (loaded seqs form one range)."""
    if not loaded:
        return [(lo, hi)]
    have_lo, have_hi = min(loaded), max(loaded) + 1
    out = []
    if lo < have_lo:
        out.append((lo, min(have_lo, hi)))
    if hi > have_hi:
        out.append((max(have_hi, lo), hi))
    return out


def _candidate(row: Sequence[Any], *, archived: bool) -> _Candidate:
    columns = dict(zip(ENTRY_COLUMNS, row, strict=True))
    envelope = columns.pop("envelope")
    leaf = columns.pop("leaf")
    return _Candidate(int(columns["seq"]), bytes(envelope or b""), columns,
                      bytes(leaf or b""), archived)


def _from_entry(entry: StoredEntry) -> _Candidate:
    columns = {col: getattr(entry, col) for col, _name in COLUMN_FIELDS}
    return _Candidate(entry.seq, entry.envelope, columns if entry.envelope else None,
                      entry.leaf)


def authenticated_fields(envelope: bytes, seq: int, origin: str) -> dict[str, Any]:
    """The fields of an envelope whose bytes already verified against the signed root.

    Authenticated bytes are what the writer signed, so the strict canonical-form check of
    ``parse_envelope`` (a quarter of the search's time) is not needed; the shape still is,
    so a signed but malformed entry is reported instead of crashing the search.
    """
    fields = check_envelope(envelope, seq, origin)
    missing = [name for name in ENVELOPE_FIELDS if name not in fields]
    if missing:
        raise VerifyFailure(seq, f"the signed envelope lacks {', '.join(missing)}")
    if not isinstance(fields["ts"], int) or isinstance(fields["ts"], bool):
        raise VerifyFailure(seq, "the signed envelope has no integer ts")
    return fields


def _flat_text(value: Any) -> str:
    """Every key and scalar of a JSON value, one per line (what text search looks in)."""
    out: list[str] = []

    def walk(v: Any) -> None:
        if isinstance(v, Mapping):
            for k, item in v.items():
                out.append(str(k))
                walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)
        elif v is not None:
            out.append(str(v))

    walk(value)
    return "\n".join(out)


# --------------------------------------------------------------------------- the search's record


def _log_search(ledger: Ledger, query: SearchQuery, result: SearchResult | None,
                requested_by: str | None, failure: str | None = None) -> Appended:
    """Record the search as ``data_access``/``audit.search`` (PCI DSS 10.2.1.3)."""
    details: dict[str, Any] = {"filters": query.public(sealed=requested_by is not None)}
    severity = "info"
    if result is not None:
        details.update({"rows": len(result.rows), "matched": result.matched,
                        "checkpoint_size": result.checkpoint.size,
                        "tampered": result.findings_total,
                        "window_proven": result.window is not None})
        if result.findings_total:
            severity = "critical"
    if failure is not None:
        details["error"] = failure[:500]
        severity = "error"
    event = AuditEvent(event_type="data_access", action="audit.search", user_id=requested_by,
                       severity=severity, resource="audit-ledger",
                       outcome="failure" if failure or (result and result.findings_total)
                       else "success", details=details,
                       correlation_id=current_correlation_id())
    return ledger.append(event)


__all__ = [
    "DEFAULT_LIMIT",
    "Finding",
    "SearchQuery",
    "SearchResult",
    "SearchRow",
    "WindowProof",
    "authenticated_fields",
    "key_history_for",
    "search",
    "trusted_checkpoint",
    "verify_window_proof",
]

