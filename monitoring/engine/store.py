"""The metric-history store: every series and sample in one DuckDB file.

Why this shape
--------------
Evaluators ask one kind of question: "every series of metric M (maybe narrowed
by a few labels) with its samples between two times". So the schema separates
the small part that matchers look at from the large part that is only sliced by
id and time:

``series(id BIGINT PRIMARY KEY, name VARCHAR, labels MAP(VARCHAR, VARCHAR), key VARCHAR UNIQUE)``
    One row per label set (thousands of rows). ``name`` is ``__name__`` in its own
    column because nearly every selector has ``__name__="..."``: a plain column
    comparison, the most selective filter, needs no map look-up. The other labels
    are a ``MAP`` rather than JSON or a struct: ``map_extract_value(labels, k)`` is a
    vectorised hash look-up of one key (no JSON parsing per row), and a struct
    cannot hold label names that vary between series. ``key`` is the canonical
    text of the whole label set (JSON of the sorted pairs), the identity used when
    writing: resolving the label sets of a batch is one join on ``key``.

``blocks(series_id BIGINT, mint BIGINT, maxt BIGINT, n INTEGER, ts BLOB, vals BLOB)``
    The read-optimised bulk of the history: one row per series and aligned UTC
    day (:data:`BLOCK_MS`), its times and values as raw little-endian int64 and
    float64 arrays (staleness markers as the
    :data:`~monitoring.engine.model.STALE_NAN` bit pattern). Reading a block is
    one copy of its bytes into a NumPy array: DuckDB neither decodes nor
    copies per sample, which made row-per-sample reads four times slower. The
    blob columns are stored uncompressed: DuckDB's FSST compression of binary
    strings gains little on float bits and its decoding cost most of the gain.
    ``mint``/``maxt`` (the block's first and last times) select the blocks a
    time range needs. Blocks never change in place: a write into a day that
    has a block rewrites that block.

``samples(series_id BIGINT, ts BIGINT, value DOUBLE)``
    The head: where writes land. Head and blocks never hold the same series
    and day, so no sample is in both. Millions of rows, no index (an ART
    index would be larger than the data and slow every insert). Each write
    inserts its batch sorted by ``(series_id, ts)``, so DuckDB's per-row-group
    min/max statistics (zone maps) on ``series_id`` and ``ts`` let a selection
    skip every row group outside its ids and time range. :meth:`Store.compact`
    moves the whole head into blocks; writes do it by themselves for all but
    the newest day once the head holds more than ``_HEAD_LIMIT`` older rows.
    ``value`` NULL is a staleness marker: SQL NULL is the one value that cannot
    collide with a real float, and it round-trips to
    :data:`~monitoring.engine.model.STALE_NAN` on reading. Ordinary NaNs are
    stored as DuckDB's NaN (their payload bits are not kept: only the
    staleness bit pattern carries meaning).

``meta(key VARCHAR PRIMARY KEY, value VARCHAR)``
    The schema version, and the next series id (ids are never reused, so an id
    names one label set for the life of the file).

Matchers
--------
Equality and inequality matchers, and regular expressions that are a plain
string or a list of plain alternatives (``a|b|c``), become SQL predicates on the
series table, built with sqlglot and bound as named parameters (never pasted
into the SQL text). Other regular expressions are checked in Python with
:func:`monitoring.dsl.regex.full_match` on the rows SQL let through: DuckDB's
``regexp_full_match`` is RE2 too, but its bundled RE2 release and its default
flags (``.`` does not match a newline) differ from the ``google-re2`` build the
rest of the engine uses, and the series table is small, so exact agreement with
:class:`~monitoring.engine.memory.MemorySource` costs little.

Writes
------
Every write is one transaction (a failed write leaves the store as it was).
Bulk data goes in as NumPy arrays that DuckDB scans in place (a registered dict
of arrays: no pandas, no Arrow, no per-row Python); ``executemany`` is two
orders of magnitude slower. Bulk writes go in pieces of about a million
samples, in order, so temporary arrays stay small. Duplicate ``(series, ts)``
samples: the last write wins, within a batch and against what is stored, as in
``MemorySource``: samples that fall in a day holding a block of their series
are merged into that block (they replace block samples at the same time),
the others replace head rows.

Reads
-----
Per group of series holding about four million samples, one query fetches the
blocks overlapping the range (their bytes become the arrays with
``numpy.frombuffer``, a series' blocks concatenated in time order, the ends cut
with ``searchsorted``), and one more the head rows through ``fetchnumpy`` (no
Python object per sample) when the group has any; a series with both is
sorted by time.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
from sqlglot import exp

from monitoring.dsl.regex import compile_anchored, is_literal, literal_alternatives
from monitoring.engine.memory import matches
from monitoring.engine.model import (
    METRIC_NAME,
    STALE_NAN,
    Labels,
    Matcher,
    Series,
    TimeArray,
    ValueArray,
    labels_of,
    stale_mask,
)

SCHEMA_VERSION = 2
OLD_VERSIONS = ("1",)
"""Schema versions a writable open upgrades in place (version 1 had no ``blocks``)."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

LabelsLike = Labels | Mapping[str, str]
"""A label set as :data:`~monitoring.engine.model.Labels` or a plain mapping."""

IndexArray = npt.NDArray[np.int64]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS series (id BIGINT PRIMARY KEY, name VARCHAR,"
    " labels MAP(VARCHAR, VARCHAR) NOT NULL, key VARCHAR NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS samples (series_id BIGINT NOT NULL, ts BIGINT NOT NULL,"
    " value DOUBLE)",
    "CREATE TABLE IF NOT EXISTS blocks (series_id BIGINT NOT NULL, mint BIGINT NOT NULL,"
    " maxt BIGINT NOT NULL, n INTEGER NOT NULL, ts BLOB NOT NULL USING COMPRESSION uncompressed,"
    " vals BLOB NOT NULL USING COMPRESSION uncompressed)",
)
_SAMPLES_DDL = ("CREATE TABLE {table} (series_id BIGINT NOT NULL, ts BIGINT NOT NULL,"
                " value DOUBLE)")

_CHUNK = 1 << 20
"""Samples per write: bounds the temporary arrays of a bulk append."""

_READ_GROUP = 1 << 22
"""Samples per query when reading: a result is fetched whole (block bytes, head
rows) before it is cut into series, so one query for tens of millions of
samples would hold two copies at once; groups of series of about this many
samples (64 MB) bound that, and are few enough that the cost of each query
does not show."""

_MATCHED_LIMIT = 4096
"""Matcher answers a store keeps at most (see ``Store._matching``)."""

_IDS_LIMIT = 1 << 20
"""Label set -> series id entries a store keeps at most (see ``Store._resolve_ids``)."""

BLOCK_MS = 86_400_000
"""The time windows of blocks: a block holds one series' samples of one aligned
UTC day ``[k * BLOCK_MS, (k + 1) * BLOCK_MS)``. A week of a series is then 7
rows whose bytes are concatenated on reading (2-hour blocks measured a third
slower: 12 times the rows); a write into a compacted day rewrites that day of
its series (92 KB at a 15 s interval), which only corrections and backfills do,
since the automatic fold leaves the newest day in the head."""

_HEAD_LIMIT = 1 << 22
"""Head (``samples``) rows above which a write call folds the head into blocks
before it commits, so that reads stay fast without an explicit compaction."""

_BLOCK_ROWS = 4096
"""Blocks per INSERT statement when writing blocks."""

_PIECE = 1 << 16
"""Elements per piece when scanning large arrays in cache-sized steps."""

_VIEW_IDS = itertools.count()


class StoreError(Exception):
    """The store cannot be opened or used (locked, not a store, read-only, ...)."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """How much the store holds."""

    series: int
    samples: int
    bytes: int


@dataclass(frozen=True, slots=True)
class Retention:
    """What a retention pass deleted."""

    samples: int
    series: int


class Store:
    """A metric-history store in one DuckDB file; see the module docstring.

    A :class:`~monitoring.engine.model.SeriesSource`. Use as a context manager
    or call :meth:`close`. One store object may be shared between threads: calls
    are serialised.
    """

    def __init__(self, path: str | Path, read_only: bool = False,
                 memory_limit: str | None = None) -> None:
        """Open (or create) the store at ``path``.

        ``memory_limit`` caps DuckDB's memory, its buffer cache included, e.g.
        ``"256MB"``: a single pass over a long history (a dry-run) gains nothing
        from keeping what it has read, and by default DuckDB may keep up to 80 %
        of the machine's memory.
        """
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.RLock()
        self._depth = 0
        self._doomed = False
        # Matchers -> chosen series, valid while the series table shows the same stamp
        # (see :meth:`_matching`).
        self._matched: dict[tuple[tuple[str, ...], ...], dict[int, Labels]] = {}
        # Bounds of the head's times (oldest, newest): every head row lies within
        # them. Widened by each insert, so removing rows keeps them true; dropped
        # on compaction and rollback, then asked again (see :meth:`_maybe_compact`).
        self._head_bounds: tuple[int, int] | None = None
        self._matched_stamp: tuple[int, int] | None = None
        # Normalised label set -> series id, dropped with the matcher answers: a
        # collector writes the same series every scrape, and each look-up by key
        # costs a JSON encoding and a query (see :meth:`_resolve_ids`).
        self._ids: dict[Labels, int] = {}
        self._con = _connect(self.path, read_only)
        if memory_limit is not None:
            try:
                self._con.execute(f"SET memory_limit = {_sql_string(memory_limit)}")
            except duckdb.Error as e:
                self._con.close()
                raise StoreError(f"memory limit {memory_limit!r}: {e}") from None
        try:
            self._init_schema()
        except BaseException:
            self._con.close()
            raise

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the database file (idempotent)."""
        with self._lock:
            self._con.close()

    def _init_schema(self) -> None:
        if self.read_only:
            self._check_version()
            return
        with self.transaction():
            for statement in _SCHEMA:
                self._con.execute(statement)
            self._con.execute(
                "INSERT INTO meta VALUES ('schema_version', $v), ('next_series_id', '1')"
                " ON CONFLICT DO NOTHING", {"v": str(SCHEMA_VERSION)})
            # An older store is a valid store of this version with no blocks (all
            # of its samples are head rows): upgrading it is recording the version.
            self._con.execute(
                "UPDATE meta SET value = $v WHERE key = 'schema_version'"
                " AND value IN (SELECT unnest($old::VARCHAR[]))",
                {"v": str(SCHEMA_VERSION), "old": list(OLD_VERSIONS)})
        self._check_version()

    def _check_version(self) -> None:
        try:
            row = self._con.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except duckdb.CatalogException:
            row = None
        if row is None:
            raise StoreError(f"{self.path}: not a metric store (no schema version)")
        if row[0] in OLD_VERSIONS:
            raise StoreError(f"{self.path}: schema version {row[0]} must be upgraded to "
                             f"{SCHEMA_VERSION}: open the store for writing once (for "
                             "example, import into it)")
        if row[0] != str(SCHEMA_VERSION):
            raise StoreError(f"{self.path}: schema version {row[0]} is not supported "
                             f"(this program reads version {SCHEMA_VERSION})")

    # ------------------------------------------------------------ transactions

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction: all of them happen, or none.

        Nested uses join the outer transaction. An exception rolls everything
        back: DuckDB has no savepoints, so an exception that leaves a nested
        use dooms the outer transaction too, even if the caller catches it;
        the outer one then rolls back and raises :class:`StoreError` instead of
        committing half of its writes.
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._doomed = True
                    raise
                finally:
                    self._depth -= 1
                return
            self._con.begin()
            self._depth = 1
            self._doomed = False
            try:
                yield
            except BaseException:
                self._depth = 0
                self._con.rollback()
                self._forget_series()
                raise
            self._depth = 0
            if self._doomed:
                self._con.rollback()
                self._forget_series()
                raise StoreError(f"{self.path}: a write inside the transaction failed; "
                                 "nothing was written")
            self._con.commit()

    def _writable(self) -> None:
        if self.read_only:
            raise StoreError(f"{self.path}: the store is open read-only")

    # ------------------------------------------------------------ writing

    def append(self, samples: Iterable[tuple[LabelsLike, int, float]]) -> int:
        """Write ``(labels, ts_ms, value)`` samples in one transaction; returns how many.

        Values that are :data:`~monitoring.engine.model.STALE_NAN` are stored as
        staleness markers. For large volumes prefer :meth:`append_arrays`.
        """
        self._writable()
        total = 0
        with self.transaction():
            builder = BatchBuilder()
            for labels, ts, value in samples:
                builder.add(labels, ts, value)
                if len(builder) >= _CHUNK:
                    total += self._write_batch(builder)
                    builder = BatchBuilder()
            total += self._write_batch(builder)
            self._maybe_compact()
        return total

    def append_series(self, series: Series | Iterable[Series]) -> int:
        """Write whole series (one transaction for all); returns the number of samples.

        Series are written in groups of about a million samples, so memory stays
        bounded by the caller's own arrays however many series are given.
        """
        self._writable()
        items = [series] if isinstance(series, Series) else series
        total = 0
        with self.transaction():
            group: list[Series] = []
            size = 0
            for s in items:
                if not len(s.ts):
                    continue
                group.append(s)
                size += len(s.ts)
                if size >= _CHUNK:
                    total += self._write_series(group)
                    group, size = [], 0
            total += self._write_series(group)
            self._maybe_compact()
        return total

    def _write_series(self, group: list[Series]) -> int:
        if not group:
            return 0
        index = np.repeat(np.arange(len(group), dtype=np.int64), [len(s.ts) for s in group])
        ts = np.concatenate([np.asarray(s.ts, dtype=np.int64) for s in group])
        values = np.concatenate([np.asarray(s.values, dtype=np.float64) for s in group])
        self._write([normalise_labels(s.labels) for s in group], index, ts, values)
        return len(index)

    def append_arrays(
        self,
        label_sets: Sequence[LabelsLike],
        series_index: npt.ArrayLike,
        ts: npt.ArrayLike,
        values: npt.ArrayLike,
    ) -> int:
        """The bulk path: sample ``i`` belongs to ``label_sets[series_index[i]]``.

        Three parallel arrays (index, epoch ms, float64 value), written in one
        transaction, in pieces of about a million samples. Returns the number of
        samples given.
        """
        self._writable()
        idx = np.asarray(series_index, dtype=np.int64)
        times = np.asarray(ts, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        if idx.ndim != 1 or times.ndim != 1 or vals.ndim != 1:
            raise ValueError("series_index, ts and values must be one-dimensional")
        if not (len(idx) == len(times) == len(vals)):
            raise ValueError("series_index, ts and values differ in length")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(label_sets)):
            raise ValueError("series_index out of range of label_sets")
        normal = [self._normal(ls) for ls in label_sets]
        if not len(idx):
            return 0  # nothing to write: no transaction, no compaction check
        with self.transaction():
            # Pieces in order: a later piece replaces what an earlier one wrote
            # at the same (series, time), so the last write still wins.
            for a in range(0, len(idx), _CHUNK):
                b = a + _CHUNK
                self._write(normal, idx[a:b], times[a:b], vals[a:b])
            self._maybe_compact()
        return len(idx)

    def _head_span(self) -> tuple[int, int] | None:
        """The oldest and newest head times; None for an empty head (a scan of ``ts``)."""
        row = self._con.execute("SELECT min(ts), max(ts) FROM samples").fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def _normal(self, labels: LabelsLike) -> Labels:
        """``labels`` normalised; a tuple equal to a known series' labels is taken as is.

        Only normalised label sets are kept in ``_ids``, so a tuple found there
        is normalised already (callers such as the read cache normalise first).
        """
        if type(labels) is tuple:
            try:
                if labels in self._ids:
                    return labels
            except TypeError:  # unhashable pairs (lists): normalise below
                pass
        return normalise_labels(labels)

    def _write_batch(self, builder: BatchBuilder) -> int:
        idx, ts, values = builder.arrays()
        self._write(builder.label_sets, idx, ts, values)
        return len(idx)

    def _write(self, label_sets: list[Labels], idx: IndexArray, ts: TimeArray,
               values: ValueArray) -> None:
        if not len(idx):
            return
        used = np.flatnonzero(np.bincount(idx, minlength=len(label_sets)))
        ids = np.zeros(len(label_sets), dtype=np.int64)
        resolved, existed = self._resolve_ids([label_sets[i] for i in used])
        ids[used] = resolved
        sid, ts, values = sort_last_wins(ids[idx], ts, values)
        if existed:
            # Samples in a window that already has a block of their series are
            # merged into that block, so head and blocks never share a window.
            in_block = self._in_blocks(sid, ts)
            if in_block is not None:
                self._fold(sid[in_block], ts[in_block], values[in_block])
                keep = ~in_block
                sid, ts, values = sid[keep], ts[keep], values[keep]
                if not len(sid):
                    return
            self._delete_overlap(sid, ts)  # replace samples stored in the head
        self._insert_samples(sid, ts, values)

    def _maybe_compact(self) -> None:
        """Fold the head into blocks when it holds more than ``_HEAD_LIMIT`` older rows.

        Rows of the newest day (the window of the newest head sample) stay in
        the head: that is where ongoing writes land, and folding it would make
        each later write rewrite that day's blocks.
        """
        # Bounds of the head's times kept by this store (``_head_bounds``) settle
        # the usual case, all rows in the newest window, without a query; else
        # the exact bounds, then the count (each a scan of the head).
        for exact in (False, True):
            if exact or self._head_bounds is None:
                self._head_bounds = self._head_span()
            if self._head_bounds is None:
                return
            lo, hi = self._head_bounds
            cut = _window_start(hi)
            if lo >= cut:
                return
            if exact:
                break
        row = self._con.execute("SELECT count(*) FROM samples WHERE ts < $cut",
                                {"cut": cut}).fetchone()
        if row is not None and int(row[0]) > _HEAD_LIMIT:
            self._compact_head(cut)

    def _in_blocks(self, sid: IndexArray, ts: TimeArray) -> npt.NDArray[np.bool_] | None:
        """Which samples fall in a window that has a block of their series (None: none)."""
        psid, plo, phi, starts = window_pairs(sid, ts)
        with self._view({"sid": psid, "lo": plo, "hi": phi}) as pairs:
            rows = self._con.execute(
                f"SELECT DISTINCT p.sid, p.lo FROM blocks AS b JOIN {pairs} AS p"
                " ON b.series_id = p.sid AND b.mint BETWEEN p.lo AND p.hi").fetchall()
        if not rows:
            return None
        hit = {(int(a), int(b)) for a, b in rows}
        pair_hit = np.array([(a, b) in hit for a, b in zip(psid.tolist(), plo.tolist(),
                                                            strict=True)], dtype=bool)
        lengths = np.diff(np.append(starts, len(sid)))
        mask: npt.NDArray[np.bool_] = np.repeat(pair_hit, lengths)
        return mask

    def _fold(self, sid: IndexArray, ts: TimeArray, values: ValueArray) -> None:
        """Merge samples (sorted by series and time, unique) into blocks; they win.

        The blocks of the windows the samples fall in are read, merged with the
        samples (a sample replaces a block sample at the same time), deleted and
        written anew, one block per series and window.
        """
        if not len(sid):
            return
        psid, plo, phi, _ = window_pairs(sid, ts)
        with self._view({"sid": psid, "lo": plo, "hi": phi}) as pairs:
            cols = self._con.execute(
                f"SELECT b.series_id, b.mint, b.n, b.ts, b.vals FROM blocks AS b"
                f" JOIN {pairs} AS p ON b.series_id = p.sid AND b.mint BETWEEN p.lo AND p.hi"
            ).fetchnumpy()
            if len(cols["series_id"]):
                self._con.execute(
                    f"DELETE FROM blocks USING {pairs} AS p WHERE blocks.series_id = p.sid"
                    " AND blocks.mint BETWEEN p.lo AND p.hi")
                osid, ots, ovals = decode_blocks(cols)
                sid, ts, values = sort_last_wins(np.concatenate([osid, sid]),
                                                 np.concatenate([ots, ts]),
                                                 np.concatenate([ovals, values]))
        self._insert_blocks(sid, ts, values)

    def _insert_blocks(self, sid: IndexArray, ts: TimeArray, values: ValueArray) -> None:
        """Write samples sorted by (series, time), unique, as one block per window."""
        _, _, _, starts = window_pairs(sid, ts)
        ends = np.append(starts[1:], len(sid))
        for a in range(0, len(starts), _BLOCK_ROWS):
            s0, s1 = starts[a : a + _BLOCK_ROWS], ends[a : a + _BLOCK_ROWS]
            self._con.execute(
                "INSERT INTO blocks SELECT unnest($sid::BIGINT[]), unnest($mint::BIGINT[]),"
                " unnest($maxt::BIGINT[]), unnest($n::INTEGER[]), unnest($ts::BLOB[]),"
                " unnest($vals::BLOB[])",
                {"sid": sid[s0].tolist(), "mint": ts[s0].tolist(), "maxt": ts[s1 - 1].tolist(),
                 "n": (s1 - s0).tolist(),
                 "ts": [ts[i:j].astype("<i8").tobytes() for i, j in zip(s0, s1, strict=True)],
                 "vals": [values[i:j].astype("<f8").tobytes()
                          for i, j in zip(s0, s1, strict=True)]})

    def _compact_head(self, cut: int | None = None) -> None:
        """Fold head rows (those before ``cut``; all by default) into blocks.

        Inside a transaction. The folded rows leave the head: all of them by
        replacing the table, or by one delete when some are kept.
        """
        self._head_bounds = None  # rows leave the head
        hi = INT64_MAX if cut is None else cut - 1
        ids = np.array([r[0] for r in self._con.execute(
            "SELECT DISTINCT series_id FROM samples WHERE ts <= $hi ORDER BY series_id",
            {"hi": hi}).fetchall()], dtype=np.int64)
        for group in _groups(self._head_counts(ids, INT64_MIN, hi), _CHUNK):
            self._fold(*self._read_head(group, INT64_MIN, hi))
        if cut is None:
            self._con.execute("DROP TABLE samples")
            self._con.execute(_SAMPLES_DDL.format(table="samples"))
        else:
            self._con.execute("DELETE FROM samples WHERE ts < $cut", {"cut": cut})

    def _resolve_ids(self, label_sets: list[Labels]) -> tuple[IndexArray, bool]:
        """Ids of the label sets, creating missing series; also whether any existed.

        The same label set may appear more than once (given as a mapping and as
        pairs, say): it gets one id. Ids found are kept in ``_ids`` while the
        series table shows the same stamp (as matcher answers are).
        """
        self._check_series_stamp()
        cached = self._ids
        hits = [cached.get(ls) for ls in label_sets]
        if None not in hits:
            return np.array(hits, dtype=np.int64), bool(hits)
        if len(cached) + len(label_sets) > _IDS_LIMIT:
            cached.clear()
        pos = [i for i, sid in enumerate(hits) if sid is None]
        ids, existed = self._resolve_keys([label_sets[i] for i in pos])
        for i, sid in zip(pos, ids.tolist(), strict=True):
            hits[i] = sid
            cached[label_sets[i]] = sid
        return np.array(hits, dtype=np.int64), existed or len(pos) < len(hits)

    def _resolve_keys(self, label_sets: list[Labels]) -> tuple[IndexArray, bool]:
        """:meth:`_resolve_ids` by the ``series`` table alone."""
        keys = [series_key(ls) for ls in label_sets]
        unique = list(dict.fromkeys(keys))
        rows = self._con.execute(
            "SELECT key, id FROM series WHERE key IN (SELECT unnest($keys::VARCHAR[]))",
            {"keys": unique}).fetchall()
        known: dict[str, int] = dict(rows)
        existed = bool(known)
        first_of = {k: i for i, k in reversed(list(enumerate(keys)))}
        missing = [k for k in unique if k not in known]
        if missing:
            first = self._take_ids(len(missing))
            for n, k in enumerate(missing):
                known[k] = first + n
            self._insert_series([label_sets[first_of[k]] for k in missing], missing, first)
        return np.array([known[k] for k in keys], dtype=np.int64), existed

    def _take_ids(self, count: int) -> int:
        row = self._con.execute(
            "SELECT CAST(value AS BIGINT) FROM meta WHERE key = 'next_series_id'").fetchone()
        assert row is not None
        first = int(row[0])
        self._con.execute("UPDATE meta SET value = $v WHERE key = 'next_series_id'",
                          {"v": str(first + count)})
        return first

    def _insert_series(self, label_sets: list[Labels], keys: list[str], first: int) -> None:
        self._forget_series()
        names = [dict(ls).get(METRIC_NAME) for ls in label_sets]
        rest = [[p for p in ls if p[0] != METRIC_NAME] for ls in label_sets]
        self._con.execute(
            "INSERT INTO series SELECT u.id, u.name, map(u.k, u.v), u.key FROM ("
            "SELECT unnest($ids::BIGINT[]) AS id, unnest($names::VARCHAR[]) AS name,"
            " unnest($ks::VARCHAR[][]) AS k, unnest($vs::VARCHAR[][]) AS v,"
            " unnest($keys::VARCHAR[]) AS key) AS u",
            {"ids": list(range(first, first + len(keys))), "names": names,
             "ks": [[k for k, _ in r] for r in rest], "vs": [[v for _, v in r] for r in rest],
             "keys": keys})

    def _delete_overlap(self, sid: IndexArray, ts: TimeArray) -> None:
        with self._view({"series_id": sid, "ts": ts}) as batch:
            self._con.execute(
                f"DELETE FROM samples USING {batch} AS b WHERE samples.series_id = b.series_id"
                " AND samples.ts = b.ts AND samples.ts BETWEEN $lo AND $hi"
                " AND samples.series_id BETWEEN $slo AND $shi",
                {"lo": int(ts.min()), "hi": int(ts.max()),
                 "slo": int(sid.min()), "shi": int(sid.max())})

    def _insert_samples(self, sid: IndexArray, ts: TimeArray, values: ValueArray) -> None:
        if self._head_bounds is not None:
            lo, hi = self._head_bounds
            self._head_bounds = (min(lo, int(ts.min())), max(hi, int(ts.max())))
        nan = np.isnan(values)
        columns: dict[str, npt.NDArray[Any]] = {"series_id": sid, "ts": ts, "value": values}
        if not nan.any():
            select = "series_id, ts, value"
        else:
            # NumPy scans read NaN as NULL; say explicitly which is which.
            columns["kind"] = nan.astype(np.uint8) + stale_mask(values).astype(np.uint8)
            select = ("series_id, ts, CASE kind WHEN 0 THEN value"
                      " WHEN 1 THEN CAST('NaN' AS DOUBLE) END")
        with self._view(columns) as batch:
            self._con.execute(f"INSERT INTO samples SELECT {select} FROM {batch}")

    @contextmanager
    def _view(self, columns: Mapping[str, npt.NDArray[Any]]) -> Iterator[str]:
        """NumPy arrays visible to SQL under a fresh name (our own, never user text)."""
        name = f"_arrays_{next(_VIEW_IDS)}"
        self._con.register(name, dict(columns))
        try:
            yield name
        finally:
            self._con.unregister(name)

    # ------------------------------------------------------------ reading

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """See :meth:`monitoring.engine.model.SeriesSource.select`.

        Series come in order of creation (as ``MemorySource`` keeps insertion order).
        An invalid regular expression raises ``ValueError`` even when no series exist.
        """
        out: list[Series] = []
        for group in self.select_groups(matchers, mint_ms, maxt_ms):
            out.extend(group)
        return out

    def select_groups(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int,
                      group_samples: int = _READ_GROUP) -> Iterator[list[Series]]:
        """Like :meth:`select`, in groups of a few million samples, as they are read.

        A caller can work on one group while the next is read (the evaluator's
        range functions do), and only one group's arrays need be in memory at a
        time (``group_samples`` is about how many samples a group holds). The store
        stays locked until the last group has been read (or the
        iterator is closed), so the groups show one state of the store.
        """
        lo, hi = max(int(mint_ms), INT64_MIN), min(int(maxt_ms), INT64_MAX)
        with self._lock:
            chosen = self._matching(matchers)
            if not chosen or lo > hi:
                return
            yield from self._read_groups(chosen, lo, hi, group_samples)

    def _read_groups(self, chosen: Mapping[int, Labels], lo: int, hi: int,
                     limit: int) -> Iterator[list[Series]]:
        """The samples of the chosen series in ``[lo, hi]``, about ``limit`` per group.

        The caller holds the lock. The usual read (an evaluation's recent
        window: head rows only, far fewer than ``limit``) is two queries: the
        blocks' sizes, then the head rows, at most ``limit`` of them; only when
        that many come back are the head rows counted per series to split the
        read into groups. Reads that would exceed ``limit`` at one sample per
        second per series are counted first, so a long read does not fetch a
        group's worth of rows only to throw them away.
        """
        ids = np.array(sorted(chosen), dtype=np.int64)
        blocks = self._block_counts(ids, lo, hi)
        room = limit - sum(n for _, n in blocks)
        if room > 0 and len(ids) * ((hi - lo) // 1000 + 1) <= room:
            rows = self._read_head(ids, lo, hi, room + 1)
            if len(rows[0]) <= room:
                yield self._read_series(chosen, ids, lo, hi, rows, bool(blocks))
                return
        head_counts = self._head_counts(ids, lo, hi)
        head = {sid for sid, _ in head_counts}
        for group in _groups(self._sample_counts(ids, lo, hi, head_counts, blocks), limit):
            rows = self._read_head(group, lo, hi) if any(int(i) in head for i in group) \
                else _NO_ROWS
            yield self._read_series(chosen, group, lo, hi, rows, True)

    def _read_series(self, chosen: Mapping[int, Labels], ids: IndexArray, lo: int,
                     hi: int, head_rows: tuple[IndexArray, TimeArray, ValueArray],
                     blocks: bool) -> list[Series]:
        """The series ``ids`` (sorted) with their samples in ``[lo, hi]``, in id order.

        Blocks are fetched whole (their bytes are the arrays) and cut per series
        with ``searchsorted``; head rows are added to the series that have any.
        Head and blocks never share a window, so a series holding both needs
        only a sort by time, no de-duplication. ``head_rows`` are the series'
        head rows in the interval, already read; ``blocks`` says whether any
        of the series may have blocks there (if not, that query is skipped).
        """
        parts: dict[int, tuple[TimeArray, ValueArray]] = {}
        cols: dict[str, Any] = {"series_id": ()}
        if blocks:
            with self._view({"id": ids}) as chosen_ids:
                cols = self._con.execute(
                    f"SELECT series_id, mint, n, ts, vals FROM blocks WHERE maxt >= $lo"
                    f" AND mint <= $hi AND series_id BETWEEN $slo AND $shi"
                    f" AND series_id IN (SELECT id FROM {chosen_ids})",
                    {"lo": lo, "hi": hi, "slo": int(ids[0]), "shi": int(ids[-1])}).fetchnumpy()
        if len(cols["series_id"]):
            bsid = np.asarray(cols["series_id"], dtype=np.int64)
            order = np.lexsort((np.asarray(cols["mint"], dtype=np.int64), bsid))
            bsid = bsid[order]
            counts = np.asarray(cols["n"], dtype=np.int64)[order]
            ts = np.concatenate([np.frombuffer(b, dtype="<i8") for b in cols["ts"][order]]
                                ).astype(np.int64, copy=False)
            values = np.concatenate([np.frombuffer(b, dtype="<f8")
                                     for b in cols["vals"][order]]).astype(np.float64,
                                                                           copy=False)
            ends = np.cumsum(counts)
            last = np.flatnonzero(np.append(bsid[1:] != bsid[:-1], True))
            firsts = np.concatenate([[0], last[:-1] + 1])
            for f, l_ in zip(firsts.tolist(), last.tolist(), strict=True):
                a, b = int(ends[f] - counts[f]), int(ends[l_])
                i = a + int(np.searchsorted(ts[a:b], lo, side="left"))
                j = a + int(np.searchsorted(ts[a:b], hi, side="right"))
                if j > i:
                    parts[int(bsid[f])] = (ts[i:j], values[i:j])
        hsid, hts, hvalues = head_rows
        if len(hsid):
            starts = np.flatnonzero(np.diff(hsid)) + 1
            for a, b in itertools.pairwise([0, *starts.tolist(), len(hsid)]):
                key = int(hsid[a])
                if key in parts:
                    bts, bvalues = parts[key]
                    both_ts = np.concatenate([bts, hts[a:b]])
                    order = np.argsort(both_ts, kind="stable")
                    parts[key] = (both_ts[order], np.concatenate([bvalues, hvalues[a:b]])[order])
                else:
                    parts[key] = (hts[a:b], hvalues[a:b])
        return [Series(chosen[k], *parts[k]) for k in sorted(parts)]

    def change_stamp(self) -> tuple[int, ...]:
        """Row counts of the tables and the largest series id: changed by any write.

        Except a write that replaces samples at times they already had (same
        counts): callers that keep what they read (the live engine's read
        cache) learn of their own writes otherwise and use this only to notice
        writes made around them.
        """
        with self._lock:
            [row] = self._con.execute(
                "SELECT (SELECT count(*) FROM samples), (SELECT count(*) FROM blocks),"
                " (SELECT coalesce(sum(n), 0) FROM blocks), (SELECT count(*) FROM series),"
                " (SELECT coalesce(max(id), 0) FROM series)").fetchall()
        return tuple(int(v) for v in row)

    def series_matching(self, matchers: Sequence[Matcher]) -> list[Labels]:
        """The label sets of every stored series that satisfies all ``matchers``."""
        with self._lock:
            chosen = self._matching(matchers)
        return [chosen[i] for i in sorted(chosen)]

    def _matching(self, matchers: Sequence[Matcher]) -> dict[int, Labels]:
        """The series (id -> labels) the matchers choose; the caller holds the lock.

        Evaluations ask the same selectors again and again (every rule group,
        every evaluation) while the series table rarely changes, so answers are
        kept. They are dropped when this store inserts, deletes or rolls back
        series, and checked against a stamp of the series table (its row count
        and largest id: ids only grow, so any insert or delete changes it) in
        case another connection to the same database changed it. The returned
        mapping is shared: callers must not change it.
        """
        key = tuple(tuple(m) for m in matchers)
        self._check_series_stamp()
        found = self._matched.get(key)
        if found is None:
            if len(self._matched) >= _MATCHED_LIMIT:  # ad-hoc queries: keep it bounded
                self._matched.clear()
            found = self._matched[key] = self._match(matchers)
        return found

    def _check_series_stamp(self) -> None:
        """Drop what is kept of the series table if its stamp moved (see :meth:`_matching`)."""
        [(count, last)] = self._con.execute(
            "SELECT count(*), coalesce(max(id), 0) FROM series").fetchall()
        stamp = (int(count), int(last))
        if stamp != self._matched_stamp:
            self._forget_series()
            self._matched_stamp = stamp

    def _forget_series(self) -> None:
        """Drop the kept matcher answers, series ids and head bounds (a change or rollback)."""
        self._matched.clear()
        self._ids.clear()
        self._matched_stamp = None
        self._head_bounds = None

    def _match(self, matchers: Sequence[Matcher]) -> dict[int, Labels]:
        for _name, op, want in matchers:
            if op in ("=~", "!~"):
                try:
                    compile_anchored(want)
                except ValueError:
                    raise ValueError(f"invalid regular expression {want!r}") from None
        sql, params = series_query(matchers)
        out: dict[int, Labels] = {}
        for sid, name, labels in self._con.execute(sql, params).fetchall():
            ls = labels_from_row(name, labels)
            if matches(ls, matchers):
                out[int(sid)] = ls
        return out

    def _read_head(self, ids: IndexArray, mint_ms: int, maxt_ms: int, limit: int | None = None
                   ) -> tuple[IndexArray, TimeArray, ValueArray]:
        """Head rows of the series ``ids`` (sorted) in ``[mint_ms, maxt_ms]``, sorted.

        With ``limit``, at most that many rows (any of them: the caller uses a
        result that short of the limit, which is then every row).
        """
        cap = "" if limit is None else f" LIMIT {int(limit)}"
        with self._view({"id": ids}) as chosen:
            cols = self._con.execute(
                f"SELECT series_id, ts, value FROM samples WHERE ts BETWEEN $lo AND $hi"
                f" AND series_id BETWEEN $slo AND $shi"
                f" AND series_id IN (SELECT id FROM {chosen}){cap}",
                {"lo": mint_ms, "hi": maxt_ms, "slo": int(ids[0]), "shi": int(ids[-1])},
            ).fetchnumpy()
        sid = np.asarray(cols["series_id"], dtype=np.int64)
        ts = np.asarray(cols["ts"], dtype=np.int64)
        values = staleness_from_nulls(cols["value"])
        if not is_sorted_unique(sid, ts):
            order = sort_order(sid, ts)
            sid, ts, values = sid[order], ts[order], values[order]
        return sid, ts, values

    def time_range(self) -> tuple[int, int] | None:
        """The first and last sample times (ms), or ``None`` when the store is empty."""
        with self._lock:
            row = self._con.execute(
                "SELECT min(lo), max(hi) FROM (SELECT min(ts) AS lo, max(ts) AS hi FROM samples"
                " UNION ALL SELECT min(mint), max(maxt) FROM blocks)").fetchone()
        if row is None or row[0] is None:
            return None
        return int(row[0]), int(row[1])

    def stats(self) -> StoreStats:
        """Series and sample counts, and the size of the file (with its WAL) in bytes."""
        with self._lock:
            row = self._con.execute(
                "SELECT (SELECT count(*) FROM series), (SELECT count(*) FROM samples)"
                " + (SELECT coalesce(sum(n), 0) FROM blocks)"
            ).fetchone()
        assert row is not None
        return StoreStats(int(row[0]), int(row[1]), store_size(self.path))

    def iter_series(self, selectors: Sequence[Sequence[Matcher]] = ((),),
                    mint_ms: int | None = None, maxt_ms: int | None = None,
                    batch_samples: int = 4_000_000) -> Iterator[Series]:
        """Series matching any of ``selectors`` (each a list of matchers), streamed.

        For exports: like :meth:`select` over the union of the selectors (all
        series by default; no time bound when ``None``), read in groups of
        about ``batch_samples`` samples so memory stays bounded. The store is
        locked while the series are read, between the groups too: an export
        sees one state of the store.
        """
        lo = INT64_MIN if mint_ms is None else max(int(mint_ms), INT64_MIN)
        hi = INT64_MAX if maxt_ms is None else min(int(maxt_ms), INT64_MAX)
        with self._lock:
            chosen: dict[int, Labels] = {}
            for matchers in selectors:
                chosen.update(self._matching(matchers))
            if not chosen or lo > hi:
                return
            for group in self._read_groups(chosen, lo, hi, batch_samples):
                yield from group

    def _sample_counts(self, ids: IndexArray, lo: int, hi: int,
                       head: list[tuple[int, int]] | None = None,
                       blocks: list[tuple[int, int]] | None = None) -> list[tuple[int, int]]:
        """(series id, about how many samples in ``[lo, hi]``) of the ids that may have any.

        Blocks overlapping the interval count whole: the figure only sizes the
        read groups.
        """
        if not len(ids):
            return []
        counts = dict(self._head_counts(ids, lo, hi) if head is None else head)
        for sid, n in self._block_counts(ids, lo, hi) if blocks is None else blocks:
            counts[sid] = counts.get(sid, 0) + n
        return sorted(counts.items())

    def _block_counts(self, ids: IndexArray, lo: int, hi: int) -> list[tuple[int, int]]:
        """(series id, samples of its blocks overlapping ``[lo, hi]``) of the ids with any.

        Recent windows usually lie after every block (the newest day stays in
        the head): one cheap look at the blocks' times answers those.
        """
        if not len(ids):
            return []
        [(overlapping,)] = self._con.execute(
            "SELECT count(*) FROM blocks WHERE maxt >= $lo AND mint <= $hi",
            {"lo": lo, "hi": hi}).fetchall()
        if not overlapping:
            return []
        with self._view({"id": ids}) as chosen:
            rows = self._con.execute(
                f"SELECT series_id, sum(n) FROM blocks WHERE maxt >= $lo AND mint <= $hi"
                f" AND series_id BETWEEN $slo AND $shi"
                f" AND series_id IN (SELECT id FROM {chosen}) GROUP BY series_id",
                {"lo": lo, "hi": hi, "slo": int(ids[0]), "shi": int(ids[-1])}).fetchall()
        return [(int(sid), int(n)) for sid, n in rows]

    def _head_counts(self, ids: IndexArray, lo: int, hi: int) -> list[tuple[int, int]]:
        """(series id, head rows in ``[lo, hi]``) of the given ids that have any, by id."""
        if not len(ids):
            return []
        with self._view({"id": ids}) as chosen:
            rows = self._con.execute(
                f"SELECT series_id, count(*) FROM samples WHERE ts BETWEEN $lo AND $hi"
                f" AND series_id BETWEEN $slo AND $shi"
                f" AND series_id IN (SELECT id FROM {chosen}) GROUP BY series_id"
                f" ORDER BY series_id",
                {"lo": lo, "hi": hi, "slo": int(ids[0]), "shi": int(ids[-1])}).fetchall()
        return [(int(a), int(b)) for a, b in rows]

    # ------------------------------------------------------------ maintenance

    def drop_before(self, ts_ms: int) -> Retention:
        """Delete samples older than ``ts_ms`` and the series left without samples."""
        self._writable()
        ts_ms = min(max(int(ts_ms), INT64_MIN), INT64_MAX)
        with self.transaction():
            row = self._con.execute(
                "DELETE FROM samples WHERE ts < $t", {"t": ts_ms}).fetchone()
            deleted = int(row[0]) if row else 0
            deleted += self._drop_blocks_before(ts_ms)
            row = self._con.execute(
                "DELETE FROM series WHERE id NOT IN (SELECT DISTINCT series_id FROM samples"
                " UNION SELECT DISTINCT series_id FROM blocks)"
            ).fetchone()
            gone = int(row[0]) if row else 0
            if gone:
                self._forget_series()
        return Retention(deleted, gone)

    def _drop_blocks_before(self, ts_ms: int) -> int:
        """Delete block samples older than ``ts_ms``; returns how many.

        Blocks wholly older go; a block straddling the cut is rewritten with its
        newer samples, so retention really removes the old data.
        """
        row = self._con.execute(
            "SELECT coalesce(sum(n), 0) FROM blocks WHERE mint < $t", {"t": ts_ms}).fetchone()
        before = int(row[0]) if row else 0
        if not before:
            return 0
        cols = self._con.execute(
            "SELECT series_id, mint, n, ts, vals FROM blocks WHERE mint < $t AND maxt >= $t",
            {"t": ts_ms}).fetchnumpy()
        self._con.execute("DELETE FROM blocks WHERE mint < $t", {"t": ts_ms})
        if not len(cols["series_id"]):
            return before
        sid, ts, values = decode_blocks(cols)
        keep = ts >= ts_ms
        self._insert_blocks(sid[keep], ts[keep], values[keep])
        return before - int(keep.sum())

    def retain(self, older_than_ms: int, now_ms: int | None = None) -> Retention:
        """Delete samples more than ``older_than_ms`` before ``now_ms``.

        ``now_ms`` defaults to the newest sample, not the wall clock: like
        Prometheus's retention, which counts from the newest block, so a store
        of old history is not emptied by its age alone.
        """
        if older_than_ms < 0:
            raise ValueError("older_than_ms must not be negative")
        if now_ms is None:
            span = self.time_range()
            if span is None:
                return Retention(0, 0)
            now_ms = span[1]
        return self.drop_before(now_ms - older_than_ms)

    def compact(self) -> None:
        """Move every head row (``samples``) into blocks, in one transaction.

        Reads of blocks are several times faster than of head rows (no per-row
        decoding). Writes fold the head into blocks by themselves once it holds
        more than ``_HEAD_LIMIT`` rows; call this after loading history to have
        all of it in blocks. The file does not shrink (DuckDB reuses the freed
        space for later writes).
        """
        self._writable()
        with self.transaction():
            self._compact_head()
        with self._lock:
            if not self._depth:
                self._con.execute("CHECKPOINT")


# ---------------------------------------------------------------- helpers


def _sql_string(text: str) -> str:
    """A SQL string literal (SET takes no bound parameters)."""
    return "'" + text.replace("'", "''") + "'"


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    if read_only and not path.exists():
        raise StoreError(f"{path}: no such store")
    try:
        return duckdb.connect(str(path), read_only=read_only)
    except duckdb.IOException as e:
        raise StoreError(describe_open_error(path, str(e))) from None
    except duckdb.Error as e:
        raise StoreError(f"{path}: cannot open the store: {e}") from None


def describe_open_error(path: Path, message: str) -> str:
    """DuckDB's complaint on opening, reworded for people."""
    if "lock" in message.lower():
        pid = re.search(r"PID (\d+)", message)
        held = f" (PID {pid.group(1)})" if pid else ""
        return f"{path}: the store is in use by another process{held}"
    return f"{path}: cannot open the store: {message}"


class BatchBuilder:
    """Gathers ``(labels, ts, value)`` tuples into the arrays of a bulk write."""

    def __init__(self) -> None:
        self.label_sets: list[Labels] = []
        self._index: dict[Any, int] = {}
        self._idx: list[int] = []
        self._ts: list[int] = []
        self._values: list[float] = []

    def __len__(self) -> int:
        return len(self._idx)

    def add(self, labels: LabelsLike, ts: int, value: float) -> None:
        """Add one sample."""
        hashable = labels if isinstance(labels, tuple) else None
        pos = self._index.get(hashable) if hashable is not None else None
        if pos is None:
            normal = normalise_labels(labels)
            pos = self._index.get(normal)
            if pos is None:
                pos = len(self.label_sets)
                self.label_sets.append(normal)
                self._index[normal] = pos
            if hashable is not None:
                self._index[hashable] = pos
        self._idx.append(pos)
        self._ts.append(ts)
        self._values.append(value)

    def arrays(self) -> tuple[IndexArray, TimeArray, ValueArray]:
        """The gathered samples as (series index, ts, value) arrays."""
        return (np.array(self._idx, dtype=np.int64), np.array(self._ts, dtype=np.int64),
                np.array(self._values, dtype=np.float64))


def normalise_labels(labels: LabelsLike) -> Labels:
    """A label set sorted by name, without empty values; duplicate names are an error."""
    if isinstance(labels, Mapping):
        return labels_of(labels)
    pairs = [(str(k), str(v)) for k, v in labels]
    as_dict = dict(pairs)
    if len(as_dict) != len(pairs):
        raise ValueError(f"duplicate label name in {labels!r}")
    return labels_of(as_dict)


def series_key(labels: Labels) -> str:
    """The canonical text of a label set: the identity of a series in the table."""
    return json.dumps(labels, ensure_ascii=False, separators=(",", ":"))


def labels_from_row(name: str | None, labels: Mapping[str, str]) -> Labels:
    """A label set from the ``name`` and ``labels`` columns of a series row."""
    pairs = list(labels.items())
    if name is not None:
        pairs.append((METRIC_NAME, name))
    return tuple(sorted(pairs))


def is_sorted_unique(sid: IndexArray, ts: TimeArray) -> bool:
    """Whether samples are strictly ordered by (series id, time).

    Checked in cache-sized pieces: on tens of millions of samples whole-array
    temporaries make this memory-bound and several times slower.
    """
    n = len(sid)
    for a in range(0, n - 1, _PIECE):
        s = sid[a : a + _PIECE + 1]
        t = ts[a : a + _PIECE + 1]
        ds = s[1:] - s[:-1]
        if not np.all((ds > 0) | ((ds == 0) & (t[1:] > t[:-1]))):
            return False
    return True


def sort_order(sid: IndexArray, ts: TimeArray) -> npt.NDArray[np.intp]:
    """A stable order by (series id, time).

    One stable sort of a combined key when it fits in 64 bits: NumPy's stable
    sort is a merge of runs, and our inputs are runs of sorted samples (one per
    series or per DuckDB chunk), so this is close to linear. Otherwise two
    stable sorts.
    """
    s0, s1, t0, t1 = int(sid.min()), int(sid.max()), int(ts.min()), int(ts.max())
    span = t1 - t0 + 1
    if (s1 - s0 + 1) * span < 2**63:
        key = (sid - s0) * np.int64(span) + (ts - t0)
        return np.argsort(key, kind="stable")
    order = np.argsort(ts, kind="stable")
    return order[np.argsort(sid[order], kind="stable")]


def sort_last_wins(sid: IndexArray, ts: TimeArray, values: ValueArray
                   ) -> tuple[IndexArray, TimeArray, ValueArray]:
    """Sort by (series, time); of duplicate (series, time) samples keep the last given."""
    if is_sorted_unique(sid, ts):
        return sid, ts, values
    order = run_order(sid, ts)
    if order is not None:
        return sid[order], ts[order], values[order]
    order = sort_order(sid, ts)
    sid, ts, values = sid[order], ts[order], values[order]
    keep = np.ones(len(sid), dtype=bool)
    keep[:-1] = (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])
    return sid[keep], ts[keep], values[keep]


def run_order(sid: IndexArray, ts: TimeArray) -> npt.NDArray[np.int64] | None:
    """The order that sorts whole runs, when samples come as one sorted run per series.

    The usual bulk shape (series after series, each in time order) is then put
    in id order by moving runs, without sorting samples. ``None`` otherwise.
    """
    starts = np.flatnonzero(np.diff(sid)) + 1
    run_ids = sid[np.concatenate([[0], starts])]
    if len(np.unique(run_ids)) != len(run_ids):
        return None
    rising = np.diff(ts) > 0
    rising[starts - 1] = True
    if not rising.all():
        return None
    bounds = np.concatenate([[0], starts, [len(sid)]])
    lengths = np.diff(bounds)
    perm = np.argsort(run_ids, kind="stable")
    new_starts = np.concatenate([[0], np.cumsum(lengths[perm])[:-1]])
    shift = np.repeat(bounds[:-1][perm] - new_starts, lengths[perm])
    order: npt.NDArray[np.int64] = np.arange(len(sid), dtype=np.int64) + shift
    return order


def staleness_from_nulls(column: Any) -> ValueArray:
    """A fetched value column with SQL NULLs turned into staleness markers."""
    if isinstance(column, np.ma.MaskedArray):
        values = np.asarray(column.filled(0.0), dtype=np.float64)
        values[np.ma.getmaskarray(column)] = STALE_NAN
        return values
    return np.asarray(column, dtype=np.float64)


def _window_start(ts: int) -> int:
    """The start of the block window holding ``ts`` (clamped to int64)."""
    return max(ts // BLOCK_MS * BLOCK_MS, INT64_MIN)


def window_pairs(sid: IndexArray, ts: TimeArray
                 ) -> tuple[IndexArray, TimeArray, TimeArray, IndexArray]:
    """The (series, block window) runs of samples sorted by (series, time).

    Returns each run's series id, window start and end (inclusive, clamped to
    int64) and its first sample's index.
    """
    window = ts // BLOCK_MS
    change = np.ones(len(sid), dtype=bool)
    change[1:] = (sid[1:] != sid[:-1]) | (window[1:] != window[:-1])
    starts = np.flatnonzero(change)
    w = window[starts]
    # Window bounds without int64 overflow at the ends of the time range.
    inner = np.clip(w, INT64_MIN // BLOCK_MS + 1, INT64_MAX // BLOCK_MS - 1)
    lo = np.where(w < inner, INT64_MIN, np.where(w > inner, (inner + 1) * BLOCK_MS,
                                                 inner * BLOCK_MS))
    hi = np.where(w > inner, INT64_MAX, np.where(w < inner, inner * BLOCK_MS - 1,
                                                 (inner + 1) * BLOCK_MS - 1))
    return sid[starts], lo.astype(np.int64), hi.astype(np.int64), starts


def decode_blocks(cols: Mapping[str, Any]) -> tuple[IndexArray, TimeArray, ValueArray]:
    """Fetched block rows (``series_id, mint, n, ts, vals``) as samples sorted by series, time."""
    bsid = np.asarray(cols["series_id"], dtype=np.int64)
    order = np.lexsort((np.asarray(cols["mint"], dtype=np.int64), bsid))
    counts = np.asarray(cols["n"], dtype=np.int64)[order]
    sid = np.repeat(bsid[order], counts)
    ts = np.concatenate([np.frombuffer(b, dtype="<i8") for b in cols["ts"][order]])
    values = np.concatenate([np.frombuffer(b, dtype="<f8") for b in cols["vals"][order]])
    return sid, ts.astype(np.int64), values.astype(np.float64)


_NO_ROWS: tuple[IndexArray, TimeArray, ValueArray] = (
    np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64))


def _groups(counts: list[tuple[int, int]], limit: int) -> Iterator[IndexArray]:
    group: list[int] = []
    size = 0
    for sid, n in counts:
        if group and size + n > limit:
            yield np.array(group, dtype=np.int64)
            group, size = [], 0
        group.append(sid)
        size += n
    if group:
        yield np.array(group, dtype=np.int64)


# ---------------------------------------------------------------- matchers -> SQL


def series_query(matchers: Sequence[Matcher]) -> tuple[str, dict[str, object]]:
    """SQL selecting ``id, name, labels`` of the series the SQL-able matchers allow.

    Values are named parameters; the caller re-checks every matcher in Python,
    so regular expressions that SQL cannot express exactly are simply left out.
    """
    params: dict[str, object] = {}
    conditions = [c for m in matchers if (c := _condition(m, params)) is not None]
    query = exp.select("id", "name", "labels").from_("series").order_by("id")
    if conditions:
        query = query.where(exp.and_(*conditions))
    return query.sql(dialect="duckdb"), params


def _condition(matcher: Matcher, params: dict[str, object]) -> exp.Expression | None:
    name, op, want = matcher
    if op in ("=", "!=") or is_literal(want):
        values = [want]
    else:
        alternatives = literal_alternatives(want)
        if alternatives is None:
            return None
        values = alternatives
    column = _label_value(name, params)
    holders = [_param(params, v) for v in values]
    test: exp.Expression = (exp.EQ(this=column, expression=holders[0]) if len(holders) == 1
                            else exp.In(this=column, expressions=holders))
    return exp.Not(this=test) if op in ("!=", "!~") else test


def _label_value(name: str, params: dict[str, object]) -> exp.Expression:
    """The value of label ``name`` of a series row, ``''`` when absent."""
    if name == METRIC_NAME:
        raw: exp.Expression = exp.column("name")
    else:
        raw = exp.Anonymous(this="map_extract_value",
                            expressions=[exp.column("labels"), _param(params, name)])
    return exp.Coalesce(this=raw, expressions=[exp.Literal.string("")])


def _param(params: dict[str, object], value: str) -> exp.Placeholder:
    key = f"p{len(params)}"
    params[key] = value
    return exp.Placeholder(this=key)


def store_size(path: str | Path) -> int:
    """Bytes on disk of a store file and its write-ahead log."""
    p = Path(path)
    return sum(os.path.getsize(f) for f in (p, Path(f"{p}.wal")) if f.exists())
