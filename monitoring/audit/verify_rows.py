"""The row-level checks of full verification, as vectorised DuckDB queries.

Python touches each entry once (to build the tree from its leaf hash); everything that can be
checked row by row runs inside DuckDB, in parallel and without creating Python objects:

* every envelope is parsed once (``json_transform_strict``: exactly the envelope's keys with
  their JSON types, no duplicates, valid UTF-8) and its ``seq``, ``origin``, ``ts`` and ``v``
  are compared with the row and the ledger; seqs must be contiguous from 0 and the envelopes'
  timestamps non-decreasing;
* the *unverified* search columns (``ts_us``, ``category``, ``action``, ``severity``,
  ``resource``, ``outcome``, ``actor``, ``correlation_id``, ``retention``) must equal the
  envelope's fields, so a changed column is found even though no hash covers it; a pruned
  entry (envelope NULL) must have all of them NULL;
* sealed personal data (``audit_pii``) must match the envelope's commitment: same ``ref``
  and ``sha256(nonce || ciphertext)``; a missing row is reported with its ref so the caller
  can look for the erasure record that allows it;
* every stored tree node (``audit_nodes``) must be the hash of its two children (stored
  leaves at level 1), and every level must hold exactly the complete subtrees of the tree.

* every stored leaf hash must equal SHA-256(0x00 || envelope) recomputed by DuckDB, so the
  tree built from stored leaves (verify_full.py) is the tree of the envelopes; when any row
  fails a check the tree is rebuilt from recomputed hashes (:func:`chunk_leaves`).

Every stored value may have been tampered with, so nothing here may fail on one: JSON is
parsed under ``try``, seq and index arithmetic is done in HUGEINT, shifts only on valid levels.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from monitoring.audit.storage import LedgerStorage
from monitoring.dsl.config import AUDIT_CATEGORIES, AUDIT_SEVERITIES

ENVELOPE_TYPES = {
    "v": "BIGINT", "origin": "VARCHAR", "seq": "BIGINT", "ts": "BIGINT",
    "category": "VARCHAR", "action": "VARCHAR", "severity": "VARCHAR", "resource": "VARCHAR",
    "outcome": "VARCHAR", "actor": "VARCHAR", "correlation_id": "VARCHAR",
    "retention": "VARCHAR", "data": "JSON", "pii": {"ref": "VARCHAR", "sha256": "VARCHAR"},
}
"""The envelope's keys and their types (envelope.py ENVELOPE_FIELDS): strict parsing rejects
a missing, extra or duplicated key and a value of another JSON type."""

SEARCH_COLUMNS = {"ts_us": "ts", "category": "category", "action": "action",
                  "severity": "severity", "resource": "resource", "outcome": "outcome",
                  "actor": "actor", "correlation_id": "correlation_id",
                  "retention": "retention"}
"""Unverified search column -> the envelope field it copies."""

META_EVENTS = (
    ("system", "ledger.open"), ("system", "key.rotate"), ("system", "retention.prune"),
    ("system", "retention.archive"), ("security", "gdpr.erasure"),
    ("security", "ledger.alarm_acknowledged"),
)
"""Events verification reads in full: key history, retention and erasure records, alarm
acknowledgements. Selected by the envelope's own fields, never by the search columns."""

FLAG_TEXT = {
    "unreadable": "the envelope is not a well-formed envelope (UTF-8 JSON with exactly the "
                  "envelope's fields and types)",
    "version": "the envelope's schema version is not 1",
    "seq": "the envelope's seq differs from the row's seq (entries renumbered, moved or "
           "copied)",
    "origin": "the envelope belongs to another ledger (its origin differs from this ledger's)",
    "enum": "the envelope's category, severity or outcome is not a known value",
    "ts_back": "the timestamp is earlier than the previous entry's (timestamps never "
               "decrease)",
    "gap": "seqs are not contiguous: entries before this one are missing",
    "dup": "this seq is stored twice",
    "first": "the first stored entry is not seq 0",
    "leaf_size": "the stored leaf hash is missing or not 32 bytes",
    "leaf": "the envelope's bytes do not match its stored leaf hash (the envelope or the leaf "
            "was changed)",
    "pruned_cols": "the envelope was removed but search columns were kept or added",
    "pii_orphan": "sealed personal data is stored for an entry whose envelope commits to none",
    "pii_ref": "the sealed personal data's subject ref differs from the envelope's",
    "pii_hash": "the sealed personal data does not match the envelope's sha256 commitment",
}
"""What each row flag means (column flags read ``search column X ...``)."""

MAX_FLAGGED = 1000
"""Flagged rows returned in detail (in seq order); the rest are only counted."""


def _quote(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def _conditions() -> list[tuple[str, str]]:
    """(flag, SQL condition) for every row check over ``w`` (see :data:`FLAG_TEXT`)."""
    has = "envelope IS NOT NULL"
    parsed = f"{has} AND j IS NOT NULL"
    conds = [
        ("unreadable", f"{has} AND j IS NULL"),
        ("version", f"{parsed} AND j.v IS DISTINCT FROM 1"),
        ("seq", f"{parsed} AND j.seq IS DISTINCT FROM seq"),
        ("origin", f"{parsed} AND j.origin IS DISTINCT FROM $origin"),
        ("enum", f"{parsed} AND (j.category NOT IN ({_quote(AUDIT_CATEGORIES)}) OR j.severity"
                 f" NOT IN ({_quote(AUDIT_SEVERITIES)}) OR coalesce(j.outcome, 'success') NOT IN"
                 " ('success', 'failure'))"),
        ("leaf_size", "leaf IS NULL OR octet_length(leaf) <> 32"),
        ("leaf", f"{has} AND unhex(sha256('\\x00'::BLOB || envelope)) IS DISTINCT FROM leaf"),
        ("pruned_cols", "envelope IS NULL AND coalesce(" + ", ".join(
            f"{c}::VARCHAR" for c in SEARCH_COLUMNS) + ") IS NOT NULL"),
        ("pii_orphan", "p_seq IS NOT NULL AND (envelope IS NULL OR j.pii IS NULL)"),
        ("pii_ref", f"{parsed} AND p_seq IS NOT NULL AND p_ref IS DISTINCT FROM j.pii.ref"),
        ("pii_hash", f"{parsed} AND p_seq IS NOT NULL AND p_hash IS DISTINCT FROM j.pii.sha256"),
    ]
    conds += [(f"col:{col}", f"{parsed} AND {col} IS DISTINCT FROM j.{fld}")
              for col, fld in SEARCH_COLUMNS.items()]
    return conds


def _meta_sql() -> str:
    pairs = " OR ".join(f"(j.category = '{c}' AND j.action = '{a}')" for c, a in META_EVENTS)
    return f"(j IS NOT NULL AND ({pairs}))"


_BAD = " OR ".join(f"coalesce({cond}, false)" for _, cond in _conditions())
_FLAGS = ("list_filter([" + ", ".join(f"CASE WHEN {cond} THEN '{flag}' END"
                                      for flag, cond in _conditions())
          + "], lambda x: x IS NOT NULL)")

_SCAN_SQL = f"""
WITH p AS (
  SELECT seq AS p_seq, ref AS p_ref, lower(sha256(nonce || ciphertext)) AS p_hash FROM audit_pii
), e AS (
  SELECT a.*, p.*, try(json_transform_strict(decode(envelope), $types)) AS j
  FROM audit_entries a LEFT JOIN p ON p.p_seq = a.seq
), b AS (
  SELECT *, ({_BAD}) AS bad, {_meta_sql()} AS meta,
         CASE WHEN envelope IS NOT NULL AND j.pii IS NOT NULL AND p_seq IS NULL
              THEN j.pii.ref END AS missing_ref
  FROM e
)
SELECT seq, CASE WHEN bad THEN {_FLAGS} END, CASE WHEN meta THEN envelope END, missing_ref
FROM b
WHERE bad OR meta OR missing_ref IS NOT NULL
ORDER BY seq
"""

_ORDER_SQL = """
WITH t AS (
  SELECT seq, CASE WHEN envelope IS NOT NULL THEN ts_us END AS ts FROM audit_entries
), w AS (
  SELECT seq, ts, lag(seq) OVER (ORDER BY seq) AS prev_seq,
         lag(ts IGNORE NULLS) OVER (ORDER BY seq) AS prev_ts
  FROM t
)
SELECT seq, prev_seq, list_filter([
    CASE WHEN seq::HUGEINT - prev_seq > 1 THEN 'gap' END,
    CASE WHEN seq = prev_seq THEN 'dup' END,
    CASE WHEN prev_seq IS NULL AND seq <> 0 THEN 'first' END,
    CASE WHEN ts < prev_ts THEN 'ts_back' END], lambda x: x IS NOT NULL) AS flags
FROM w
WHERE seq::HUGEINT - prev_seq <> 1 OR (prev_seq IS NULL AND seq <> 0) OR ts < prev_ts
ORDER BY seq
"""
"""Contiguous seqs from 0 and non-decreasing timestamps (the ``ts_us`` copies, which the
row checks compare with the envelopes)."""


@dataclass
class RowScan:
    """What the row checks found."""

    rows: int = 0
    """Stored entry rows."""
    size: int = 0
    """One past the highest stored seq."""
    flagged: list[tuple[int, list[str], int | None]] = field(default_factory=list)
    """The first :data:`MAX_FLAGGED` rows with problems, in seq order: seq, flags and the
    previous stored seq."""
    flagged_total: int = 0
    meta: list[tuple[int, bytes]] = field(default_factory=list)
    """(seq, envelope) of the meta-events (:data:`META_EVENTS`), in seq order."""
    missing_pii: dict[str, list[int]] = field(default_factory=dict)
    """Subject ref -> seqs whose envelope commits to sealed data that is not stored."""
    pruned: list[tuple[int, int]] = field(default_factory=list)
    """Half-open seq ranges whose envelope is NULL."""
    orphan_pii: list[int] = field(default_factory=list)
    """Seqs of sealed-data rows that have no entry row at all."""


def scan_rows(conn: duckdb.DuckDBPyConnection, origin: str) -> RowScan:
    """Run the row checks over every stored entry (vectorised)."""
    out = RowScan()
    out.rows, out.size = extent(conn)
    params: dict[str, Any] = {"origin": origin, "types": json.dumps(ENVELOPE_TYPES)}
    flagged: dict[int, tuple[list[str], int | None]] = {}
    for seq, flags, envelope, missing_ref in conn.execute(_SCAN_SQL, params).fetchall():
        if flags:
            flagged[int(seq)] = (list(flags), None)
        if envelope is not None:
            out.meta.append((int(seq), bytes(envelope)))
        if missing_ref is not None:
            out.missing_pii.setdefault(str(missing_ref), []).append(int(seq))
    # Order checks on two narrow columns: windows over the wide rows cost more than the rest.
    for seq, previous, flags in conn.execute(_ORDER_SQL).fetchall():
        old = flagged.get(int(seq), ([], None))[0]
        flagged[int(seq)] = (old + list(flags), None if previous is None else int(previous))
    out.flagged_total = len(flagged)
    out.flagged = [(seq, flags, previous) for seq, (flags, previous)
                   in sorted(flagged.items())[:MAX_FLAGGED]]
    out.pruned = [(int(a), int(b)) for a, b in conn.execute(
        "SELECT min(seq), max(seq)::HUGEINT + 1 FROM (SELECT seq,"
        " seq::HUGEINT - row_number() OVER (ORDER BY seq)"
        " AS g FROM audit_entries WHERE envelope IS NULL) GROUP BY g ORDER BY 1").fetchall()]
    out.orphan_pii = [int(s) for (s,) in conn.execute(
        "SELECT seq FROM audit_pii WHERE seq NOT IN (SELECT seq FROM audit_entries) "
        "ORDER BY seq LIMIT 100").fetchall()]
    return out


def chunk_leaves(conn: duckdb.DuckDBPyConnection, start: int, end: int, *, recompute: bool
                 ) -> tuple[list[int], list[bytes | None], list[bytes | None]]:
    """(seqs, recomputed leaf hashes, stored leaf hashes) of ``start <= seq < end``.

    The recomputed hash is SHA-256(0x00 || envelope) by DuckDB; it is None for a pruned
    entry (no envelope: only its stored hash is left). Without ``recompute`` (the row checks
    already found every stored leaf equal to its recomputed hash) the stored hashes are
    returned in both lists, which saves hashing every envelope twice.
    """
    fresh = ("list(CASE WHEN envelope IS NOT NULL THEN unhex(sha256('\\x00'::BLOB || envelope))"
             " END ORDER BY seq)" if recompute else "NULL")
    row = conn.execute(
        f"SELECT coalesce(list(seq ORDER BY seq), []), {fresh},"
        " coalesce(list(leaf ORDER BY seq), [])"
        " FROM audit_entries WHERE seq >= ? AND seq < ?", [start, end]).fetchone()
    if row is None:
        return [], [], []
    stored = list(row[2])
    return list(row[0]), list(row[1]) if recompute else stored, stored


MAX_LEVEL = 63
"""A tree of fewer than 2^63 leaves has no node above this level."""


@dataclass(frozen=True)
class NodeProblem:
    """A stored tree node that is wrong, missing or extra."""

    level: int
    index: int
    reason: str

    @property
    def leaves(self) -> tuple[int, int] | None:
        """The half-open range of leaves the node covers (None for an impossible node)."""
        if not 0 <= self.level <= MAX_LEVEL or self.index < 0:
            return None
        return self.index << self.level, (self.index + 1) << self.level


def check_nodes(conn: duckdb.DuckDBPyConnection, size: int, limit: int = 20) -> list[NodeProblem]:
    """Stored complete subtrees vs their children, and which ones are missing or extra.

    Any stored value is possible here (a tampered level or index too), so the arithmetic
    is done in HUGEINT and shifts only on valid levels: the check reports, never fails.
    """
    problems: list[NodeProblem] = []
    rows = conn.execute(
        "WITH ch AS (SELECT 0 AS level, seq::HUGEINT AS idx, leaf AS hash FROM audit_entries "
        " UNION ALL SELECT level, idx::HUGEINT, hash FROM audit_nodes) "
        "SELECT n.level, n.idx FROM audit_nodes n "
        "LEFT JOIN ch l ON l.level = n.level - 1 AND l.idx = 2 * n.idx::HUGEINT "
        "LEFT JOIN ch r ON r.level = n.level - 1 AND r.idx = 2 * n.idx::HUGEINT + 1 "
        "WHERE l.hash IS NULL OR r.hash IS NULL "
        " OR n.hash IS DISTINCT FROM unhex(sha256('\\x01'::BLOB || l.hash || r.hash)) "
        f"ORDER BY CASE WHEN n.level BETWEEN 0 AND {MAX_LEVEL} "
        "THEN n.idx::HUGEINT * (1::HUGEINT << n.level) END NULLS LAST, n.level "
        "LIMIT ?", [limit]).fetchall()
    problems += [NodeProblem(int(lv), int(ix), "its hash is not the hash of its two children")
                 for lv, ix in rows]
    counts = {int(lv): (int(c), int(lo), int(hi)) for lv, c, lo, hi in conn.execute(
        "SELECT level, count(*), min(idx), max(idx) FROM audit_nodes GROUP BY level").fetchall()}
    for level in sorted(set(counts) | set(range(1, size.bit_length()))):
        want = size >> level if 1 <= level <= MAX_LEVEL else 0
        have = counts.get(level, (0, 0, -1))
        if have[0] == want and (want == 0 or have[1:] == (0, want - 1)):
            continue
        index = 0 if have[0] == 0 or want == 0 else min(max(have[1], 0), want)
        problems.append(NodeProblem(level, index,
                                    f"level {level} holds {have[0]} nodes (indexes "
                                    f"{have[1]}..{have[2]}), the tree of {size} entries has "
                                    f"{want}"))
    return problems


def extent(conn: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """(row count, one past the highest seq) of ``audit_entries``, overflow-safe."""
    row = conn.execute("SELECT count(*), coalesce(max(seq)::HUGEINT + 1, 0) FROM audit_entries"
                       ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def snapshot(storage: LedgerStorage) -> tuple[duckdb.DuckDBPyConnection, LedgerStorage]:
    """A cursor in its own read transaction and a storage over it.

    One consistent view of the store, even while a writer commits on the same database.
    """
    cur = storage.conn.cursor()
    cur.execute("BEGIN TRANSACTION")
    return cur, LedgerStorage(cur)


def release(cur: duckdb.DuckDBPyConnection) -> None:
    """End a :func:`snapshot` (or any read transaction) and close its cursor."""
    try:
        cur.execute("ROLLBACK")
    finally:
        cur.close()
