"""The ledger's tables in the DuckDB store, and the read side every verifier uses.

All tables are prefixed ``audit_`` and live in the same file as the metrics, so one backup
holds both. What is authoritative and what is a copy:

* ``audit_entries.envelope`` (the canonical bytes) and ``leaf`` (their leaf hash) are what the
  Merkle tree commits to; the other columns (``ts_us``, ``category``, ``actor``, ...) are
  *unverified* copies kept for search, and whoever shows them re-checks them against the
  envelope. A pruned entry keeps its seq and leaf hash; its envelope and every search column
  are NULL (so the schema makes only ``seq`` and ``leaf`` NOT NULL), and its envelope is
  ``b""`` in :class:`StoredEntry`.
* ``audit_nodes`` holds the hashes of complete subtrees (level >= 1), so proofs need
  ``log2(n)`` lookups instead of rehashing; ``audit_checkpoints`` every signed checkpoint;
  ``audit_pii`` the sealed personal data (deleted on erasure); ``audit_meta`` the origin and
  the writer's frontier (the compact range of the whole tree, <= log2(n) hashes).

:class:`LedgerStorage` only reads, so it works on a read-only connection without a writer; the
writer (writer.py) writes through :func:`insert_batch` inside its own transaction.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from monitoring.audit.errors import AuditError, ProofError
from monitoring.audit.merkle import Frontier

SCHEMA_VERSION = "1"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    # Only seq and leaf are NOT NULL: a pruned entry keeps those two and nothing else.
    "CREATE TABLE IF NOT EXISTS audit_entries (seq BIGINT PRIMARY KEY, ts_us BIGINT,"
    " category VARCHAR, action VARCHAR, severity VARCHAR,"
    " resource VARCHAR, outcome VARCHAR, actor VARCHAR, correlation_id VARCHAR,"
    " retention VARCHAR, envelope BLOB,"
    " leaf BLOB NOT NULL USING COMPRESSION uncompressed)",
    "CREATE TABLE IF NOT EXISTS audit_pii (seq BIGINT PRIMARY KEY, ref VARCHAR NOT NULL,"
    " nonce BLOB NOT NULL USING COMPRESSION uncompressed,"
    " ciphertext BLOB NOT NULL USING COMPRESSION uncompressed)",
    "CREATE TABLE IF NOT EXISTS audit_nodes (level INTEGER NOT NULL, idx BIGINT NOT NULL,"
    " hash BLOB NOT NULL USING COMPRESSION uncompressed, PRIMARY KEY (level, idx))",
    "CREATE TABLE IF NOT EXISTS audit_checkpoints (size BIGINT PRIMARY KEY,"
    " root BLOB NOT NULL USING COMPRESSION uncompressed, note VARCHAR NOT NULL,"
    " created_us BIGINT NOT NULL)",
)

ENTRY_COLUMNS = ("seq", "ts_us", "category", "action", "severity", "resource", "outcome",
                 "actor", "correlation_id", "retention", "envelope", "leaf")
"""The columns of ``audit_entries`` in table order (rows given to :func:`insert_batch`)."""

_NEWEST = "size = (SELECT max(size) FROM audit_checkpoints)"
"""The newest checkpoint. Not ``ORDER BY size DESC LIMIT 1``: DuckDB 2.0.1's top-N returns
an older row when rows were deleted and new ones inserted after the file was reopened
(tests/unit/test_audit_ledger.py reproduces it); ``max`` and ``arg_max`` are right."""

META_ORIGIN = "origin"
META_SCHEMA = "schema_version"
META_CREATED = "created_us"
META_FRONTIER = "frontier"


@dataclass(frozen=True)
class StoredEntry:
    """One row of ``audit_entries``; only ``envelope`` and ``leaf`` are authenticated.

    Every column but ``seq`` and ``leaf`` is None once retention pruned the entry (its
    payload and every search copy of it are gone; see retention.py).
    """

    seq: int
    ts_us: int | None
    category: str | None
    action: str | None
    severity: str | None
    resource: str | None
    outcome: str | None
    actor: str | None
    correlation_id: str | None
    retention: str | None
    envelope: bytes
    """The canonical envelope; ``b""`` once retention pruned it."""
    leaf: bytes


@dataclass(frozen=True)
class StoredCheckpoint:
    """One row of ``audit_checkpoints``: the signed note for tree ``size``."""

    size: int
    root: bytes
    note: str
    created_us: int


@dataclass(frozen=True)
class StoredPii:
    """The sealed personal data of one entry (AES-256-GCM; AAD ``origin|seq``)."""

    seq: int
    ref: str
    nonce: bytes
    ciphertext: bytes


@dataclass(frozen=True)
class BatchRows:
    """Everything one committed batch adds, ready for :func:`insert_batch`."""

    entries: Sequence[tuple[object, ...]]
    """Rows in :data:`ENTRY_COLUMNS` order."""
    pii: Sequence[tuple[int, str, bytes, bytes]]
    nodes: Sequence[tuple[int, int, bytes]]
    checkpoint: StoredCheckpoint
    frontier: str
    """The frontier after the batch, as stored in ``audit_meta`` (see :func:`frontier_json`)."""


def create_schema(conn: duckdb.DuckDBPyConnection) -> None:
    """Create the ledger's tables if they are missing (idempotent)."""
    for ddl in _SCHEMA:
        conn.execute(ddl)


def init_meta(conn: duckdb.DuckDBPyConnection, origin: str, created_us: int) -> None:
    """Record a new ledger's identity and an empty frontier."""
    conn.execute("INSERT INTO audit_meta VALUES (?, ?), (?, ?), (?, ?), (?, ?)", [
        META_SCHEMA, SCHEMA_VERSION, META_ORIGIN, origin, META_CREATED, str(created_us),
        META_FRONTIER, frontier_json(Frontier())])


def frontier_json(frontier: Frontier) -> str:
    """The frontier as stored in ``audit_meta``: ``{"size": n, "hashes": [hex, ...]}``."""
    return json.dumps({"size": frontier.size, "hashes": frontier.to_json()},
                      separators=(",", ":"))


def head_size(conn: duckdb.DuckDBPyConnection) -> int:
    """The size of the newest stored checkpoint (0 when there is none)."""
    return stored_head(conn)[0]


def insert_batch(conn: duckdb.DuckDBPyConnection, rows: BatchRows, base: tuple[int, bytes],
                 *, begin: bool = False) -> bool:
    """Write one batch in the caller's transaction (or one it opens first, with ``begin``).

    ``base`` is the (size, root) of the newest checkpoint the batch extends; the checkpoint
    row is inserted only while the stored newest checkpoint is exactly that (a
    compare-and-swap in one statement, which looks rows up by size rather than scanning
    every checkpoint a long-lived ledger holds). Returns False when the head moved; the
    caller must then roll back (the frontier row was already updated). The rows go in with
    DuckDB appenders, which respect the open transaction. Measured here (bench/ledger.py
    workload, 100,000 events, 3 runs each, and single-threaded commits of 700 events):
    appenders and one multi-statement call reading NumPy columns were equal within the
    run-to-run noise; the appenders need no replacement scan of Python variables (which an
    application sharing the connection may switch off), so they stay.
    """
    cp = rows.checkpoint
    # One call for the opening statements (DuckDB binds the parameters to the last one): each
    # call into DuckDB gives the GIL up and may wait milliseconds to get it back.
    inserted = conn.execute(
        ("BEGIN TRANSACTION; " if begin else "")
        + f"UPDATE audit_meta SET value = {_sql_text(rows.frontier)} WHERE key = "
        f"'{META_FRONTIER}'; INSERT INTO audit_checkpoints SELECT ?, ?, ?, ? WHERE"
        " NOT EXISTS (SELECT 1 FROM audit_checkpoints WHERE size > ?) AND"
        " (? = 0 OR EXISTS (SELECT 1 FROM audit_checkpoints WHERE size = ? AND root = ?))",
        [cp.size, cp.root, cp.note, cp.created_us, base[0], base[0], base[0], base[1]]
    ).fetchall()
    if not inserted or inserted[0][0] != 1:
        return False
    _append(conn, "audit_entries", rows.entries)
    _append(conn, "audit_pii", rows.pii)
    _append(conn, "audit_nodes", rows.nodes)
    return True


def _sql_text(text: str) -> str:
    """A SQL string literal (the frontier is JSON of digits and hex; quotes are doubled)."""
    return "'" + text.replace("'", "''") + "'"


WAL_CHECKPOINT_BYTES = 256 * 1024 * 1024
"""The write-ahead log size at which DuckDB checkpoints by itself, as the ledger sets it.

DuckDB's default (16 MiB) made a group-commit ledger checkpoint every ~25,000 events, inside
a commit: each checkpoint stalled the commit path for 100-400 ms, and checkpoints of a
growing table get slower at powers of two (compressed columns are rewritten). Measured here
(bench/ledger.py workload: 200,000 events, 4 producers x 250 in flight; two runs each):
p99 acknowledgement 214 / 263 ms with the default threshold; 198 / 275 ms with a CHECKPOINT
from the commit thread each time the WAL passed 4 MiB (29 checkpoints, 2.1 s in all);
56 / 57 ms with this threshold, which no checkpoint reached during the run (the one at
close took 0.32 s for all 200,000 events: rarer checkpoints cost far less in total), and
24-26k events/s instead of 20-22k. The price: under a sustained load the WAL grows to
256 MiB (about 400,000 events) before DuckDB checkpoints, a crash replays it at the next
open (126 MiB replayed in 0.54 s here), and that one checkpoint stalls the commit path for
about a second. To keep the WAL small in normal operation, the writer checkpoints whenever
it has been idle for :data:`IDLE_CHECKPOINT_S` with at least :data:`IDLE_CHECKPOINT_BYTES`
of WAL (writer.py). The setting is database-wide: a metric store sharing the connection
gets it too; an application that set a larger threshold keeps its own.
"""
IDLE_CHECKPOINT_S = 0.5
"""How long the writer must have had nothing to do before it checkpoints."""
IDLE_CHECKPOINT_BYTES = 16 * 1024 * 1024
"""The WAL size worth an idle-time checkpoint (DuckDB's own default threshold)."""

_UNITS = {"bytes": 1, "B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
          "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4}


def configure_checkpoints(conn: duckdb.DuckDBPyConnection,
                          threshold: int = WAL_CHECKPOINT_BYTES) -> None:
    """Raise DuckDB's ``checkpoint_threshold`` to ``threshold`` bytes (never lower it)."""
    rows = conn.execute("SELECT value FROM duckdb_settings() WHERE name = "
                        "'checkpoint_threshold'").fetchall()
    if rows and _memory_bytes(str(rows[0][0])) >= threshold:
        return
    conn.execute(f"SET checkpoint_threshold = '{int(threshold)}B'")


def _memory_bytes(text: str) -> int:
    """``'16.0 MiB'`` (how DuckDB shows a memory setting) in bytes; 0 if unreadable."""
    number, _, unit = text.strip().partition(" ")
    try:
        return int(float(number) * _UNITS.get(unit or "B", 0))
    except ValueError:
        return 0


def checkpoint_if_large(conn: duckdb.DuckDBPyConnection, wal: Path,
                        minimum: int = IDLE_CHECKPOINT_BYTES) -> bool:
    """CHECKPOINT when the WAL at ``wal`` holds at least ``minimum`` bytes.

    True when it checkpointed. A checkpoint DuckDB refuses (another connection has a write
    transaction open) is left for later: the WAL stays, nothing is lost.
    """
    try:
        if wal.stat().st_size < minimum:
            return False
    except OSError:
        return False
    try:
        conn.execute("CHECKPOINT")
    except duckdb.TransactionException:
        return False
    return True


def stored_head(conn: duckdb.DuckDBPyConnection) -> tuple[int, bytes]:
    """The (size, root) of the newest stored checkpoint; (0, b"") when there is none."""
    found = conn.execute(f"SELECT size, root FROM audit_checkpoints WHERE {_NEWEST}").fetchall()
    return (int(found[0][0]), bytes(found[0][1])) if found else (0, b"")


def _append(conn: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Sequence[object]]) -> None:
    if rows:
        appender = conn.appender(table)
        appender.append_rows(rows)
        appender.flush()


class LedgerStorage:
    """Read access to a ledger's tables (a :class:`~monitoring.audit.merkle.NodeReader`).

    Every query holds a lock, so one object may be shared by threads; give it its own
    connection or cursor (``conn.cursor()``) when a writer uses the same database.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self._lock = threading.Lock()
        if not self.exists(conn):
            raise AuditError("this store holds no audit ledger (no audit_meta table)")
        origin = self.meta(META_ORIGIN)
        if origin is None:
            raise AuditError("audit_meta has no 'origin' row: the ledger's identity was "
                             "removed or altered")
        self.origin = origin

    @classmethod
    def exists(cls, conn: duckdb.DuckDBPyConnection) -> bool:
        """Whether the store behind ``conn`` holds a ledger's tables."""
        rows = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'audit_meta'"
                            " AND database_name = current_database()").fetchall()
        return bool(rows and rows[0][0])

    def _rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[object] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            rows = self.conn.execute(sql, params).fetchall()
        return rows[0] if rows else None

    def meta(self, key: str) -> str | None:
        """One ``audit_meta`` value."""
        row = self._one("SELECT value FROM audit_meta WHERE key = ?", [key])
        return str(row[0]) if row else None

    def size(self) -> int:
        """One past the highest stored seq (the tree size the entries claim; 0 if none)."""
        row = self._one("SELECT coalesce(max(seq) + 1, 0) FROM audit_entries")
        return int(row[0]) if row else 0

    def entry_count(self) -> int:
        """How many entry rows are stored (less than :meth:`size` when rows are missing)."""
        row = self._one("SELECT count(*) FROM audit_entries")
        return int(row[0]) if row else 0

    def newest_ts_us(self) -> int:
        """The largest stored timestamp (0 if none): what the writer's clamp starts from.

        Timestamps never decrease, so this is the newest entry's, also when retention has
        pruned that entry's row down to its leaf (its ``ts_us`` is then NULL).
        """
        row = self._one("SELECT coalesce(max(ts_us), 0) FROM audit_entries")
        return int(row[0]) if row else 0

    def head_size(self) -> int:
        """The size of the newest stored checkpoint (0 when there is none)."""
        with self._lock:
            return head_size(self.conn)

    def frontier(self) -> Frontier:
        """The writer's frontier as last committed."""
        text = self.meta(META_FRONTIER)
        if text is None:
            raise AuditError("audit_meta has no frontier row")
        try:
            obj = json.loads(text)
            return Frontier.from_json(int(obj["size"]), list(obj["hashes"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AuditError(f"audit_meta frontier: malformed ({exc})") from None

    def node(self, level: int, index: int) -> bytes:
        """The hash of the complete subtree (level, index); level 0 is leaf ``index``."""
        if level == 0:
            row = self._one("SELECT leaf FROM audit_entries WHERE seq = ?", [index])
        else:
            row = self._one("SELECT hash FROM audit_nodes WHERE level = ? AND idx = ?",
                            [level, index])
        if row is None:
            what = f"leaf {index}" if level == 0 else f"node (level {level}, index {index})"
            raise ProofError(f"the store has no tree {what}")
        return bytes(row[0])

    def node_rows(self, level: int | None = None) -> list[tuple[int, int, bytes]]:
        """Stored subtree hashes ``(level, index, hash)`` (one level or all), in order."""
        if level is None:
            rows = self._rows("SELECT level, idx, hash FROM audit_nodes ORDER BY level, idx")
        else:
            rows = self._rows("SELECT level, idx, hash FROM audit_nodes WHERE level = ? "
                              "ORDER BY idx", [level])
        return [(int(lv), int(ix), bytes(h)) for lv, ix, h in rows]

    def entries(self, start: int, end: int) -> list[StoredEntry]:
        """Entries with ``start <= seq < end``, in seq order."""
        rows = self._rows(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entries "
                          "WHERE seq >= ? AND seq < ? ORDER BY seq", [start, end])
        return [_entry(row) for row in rows]

    def entry(self, seq: int) -> StoredEntry | None:
        """The entry with this seq, or None."""
        row = self._one(f"SELECT {', '.join(ENTRY_COLUMNS)} FROM audit_entries WHERE seq = ?",
                        [seq])
        return _entry(row) if row else None

    def envelopes(self, start: int, end: int) -> tuple[list[int], list[bytes], list[bytes]]:
        """(seqs, envelopes, leaves) of ``start <= seq < end`` in seq order, in bulk.

        Three Python lists from one row of DuckDB lists: much cheaper per entry than rows of
        tuples, which is what full verification needs. Pruned envelopes are ``b""``.
        """
        row = self._one("SELECT coalesce(list(seq ORDER BY seq), []),"
                        " coalesce(list(envelope ORDER BY seq), []),"
                        " coalesce(list(leaf ORDER BY seq), []) FROM audit_entries"
                        " WHERE seq >= ? AND seq < ?", [start, end])
        if row is None:
            return [], [], []
        seqs, envs, leaves = (list(v) for v in row)
        if None in envs:
            envs = [b"" if e is None else e for e in envs]
        return seqs, envs, leaves

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, by size."""
        rows = self._rows("SELECT size, root, note, created_us FROM audit_checkpoints "
                          "ORDER BY size")
        return [_checkpoint(row) for row in rows]

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest size, or None."""
        row = self._one("SELECT size, root, note, created_us FROM audit_checkpoints "
                        f"WHERE {_NEWEST}")
        return _checkpoint(row) if row else None

    def checkpoint(self, size: int) -> StoredCheckpoint | None:
        """The checkpoint of exactly this size, or None."""
        row = self._one("SELECT size, root, note, created_us FROM audit_checkpoints "
                        "WHERE size = ?", [size])
        return _checkpoint(row) if row else None

    def pii(self, seq: int) -> StoredPii | None:
        """The sealed personal data of entry ``seq`` (None: none, or erased)."""
        row = self._one("SELECT seq, ref, nonce, ciphertext FROM audit_pii WHERE seq = ?", [seq])
        if row is None:
            return None
        s, ref, nonce, ct = row
        return StoredPii(int(s), str(ref), bytes(nonce), bytes(ct))


def _entry(row: tuple[Any, ...]) -> StoredEntry:
    values = list(row)
    if values[10] is None:
        values[10] = b""
    return StoredEntry(*values)


def _checkpoint(row: tuple[Any, ...]) -> StoredCheckpoint:
    size, root, note, created = row
    return StoredCheckpoint(int(size), bytes(root), str(note), int(created))
