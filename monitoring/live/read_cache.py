"""Samples read by one group evaluation, kept for the next ones until the store changes.

A live cycle evaluates every group once a minute, each at its own time: rules
of different groups select the same series (``m{job="a"}`` under ten
thresholds, say) over windows that overlap almost entirely, and each
selection costs a DuckDB scan of the head. :class:`ReadCache` is the
:class:`~monitoring.engine.model.SeriesSource` the scheduler evaluates on: a
selection is read from the store once, from the start of the window asked up
to the newest sample the store holds, and is then *open-ended*: every later
sample reaches the store through the cache (below), so the selection stays
complete for any later time, and later selections (the next groups of the
minute, the next minutes) are cut from it with one vectorised search instead
of another scan. What is older than the widest window ever asked of a
selection is forgotten as the clock moves on, so what is kept follows the
clock instead of growing.

What was read is only valid while the store holds the same samples. A
collector's write goes through :meth:`StoreAccess.append
<monitoring.live.store_access.StoreAccess.append>`, which tells the cache what
was written (:meth:`ReadCache.append`): a running engine writes a batch every
few seconds, and emptying the cache each time would leave later groups of the
minute nothing to share. The written samples are merged into the selections
whose matchers choose their series, exactly as the store merges them (the last
write of a series and time wins; a new series comes after the ones before it);
a selection that would gain a series it cannot place (one the store held
before but that had no samples in the selection's window) is dropped. Any
other store work that is not an evaluation empties the cache, the scheduler
empties it after writing recording rules' samples, and :meth:`ReadCache.check`
empties it when the store's row counts changed anyway (a write that bypassed
the store thread). A cut is the same as the store's own answer: samples in
``[mint, maxt]``, series without any left out, in the store's order.

The cache lives on the store thread only (no locking of its own).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.engine.fast.samples import Samples, with_markers
from monitoring.engine.fast.selectors import Selection, selection_of
from monitoring.engine.memory import matches
from monitoring.engine.model import Labels, Matcher, Series, stale_mask
from monitoring.engine.store import BatchBuilder, LabelsLike, Store

_SHIFT = 42  # bits of a time offset in a search key (139 years of milliseconds)
_SPAN = (1 << _SHIFT) - 1
WIDEST_KEPT = 4096
"""Selections whose widest window is remembered (forgotten all at once past it)."""


@dataclass(frozen=True, slots=True)
class _Entry:
    """One selection: its series' samples from ``lo`` on, concatenated and searchable.

    Open-ended: appends keep it complete for any later time (see the module docstring).
    """

    lo: int
    labels: list[Labels]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    bounds: npt.NDArray[np.int64]  # series i is ts[bounds[i]:bounds[i + 1]]
    keys: npt.NDArray[np.int64]  # series index << _SHIFT | (ts - base), ascending
    base: int
    order: npt.NDArray[np.int64]  # the series in label order

    @classmethod
    def of(cls, lo: int, series: Sequence[Series]) -> _Entry | None:
        """The entry, or None when its times span too much for the search keys."""
        lens = np.fromiter((len(s.ts) for s in series), dtype=np.int64, count=len(series))
        bounds = np.zeros(len(series) + 1, dtype=np.int64)
        np.cumsum(lens, out=bounds[1:])
        ts = (np.concatenate([np.asarray(s.ts, dtype=np.int64) for s in series]) if series
              else np.zeros(0, dtype=np.int64))
        values = (np.concatenate([np.asarray(s.values, dtype=np.float64) for s in series])
                  if series else np.zeros(0, dtype=np.float64))
        base = int(ts.min()) if len(ts) else 0
        if len(ts) and int(ts.max()) - base > _SPAN:
            return None
        keys = (np.repeat(np.arange(len(series), dtype=np.int64), lens) << _SHIFT) + (ts - base)
        for a in (ts, values, keys, bounds):
            a.setflags(write=False)  # handed out as views: nobody may change them
        labels = [s.labels for s in series]
        return cls(lo, labels, ts, values, bounds, keys, base, _label_order(labels))

    @classmethod
    def _sorted(cls, lo: int, labels: list[Labels], idx: npt.NDArray[np.int64],
                ts: npt.NDArray[np.int64], values: npt.NDArray[np.float64],
                labels_order: npt.NDArray[np.int64] | None) -> _Entry | None:
        """The entry of samples ``(idx, ts, values)`` given in any order.

        Of equal ``(idx, ts)`` the last given wins. ``labels_order``: the label order
        of ``labels`` if known. None as in :meth:`of`.
        """
        base = int(ts.min()) if len(ts) else 0
        if len(ts) and int(ts.max()) - base > _SPAN:
            return None
        keys = (idx << _SHIFT) + (ts - base)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        keep = np.ones(len(keys), dtype=bool)
        keep[:-1] = keys[1:] != keys[:-1]
        order, keys = order[keep], keys[keep]
        bounds = np.searchsorted(idx[order], np.arange(len(labels) + 1, dtype=np.int64),
                                 "left").astype(np.int64)
        out = (ts[order], values[order], keys, bounds)
        for a in out:
            a.setflags(write=False)
        return cls(lo, labels, out[0], out[1], out[3], out[2], base,
                   _label_order(labels) if labels_order is None else labels_order)

    @property
    def samples(self) -> int:
        return len(self.ts)

    def merged(self, batch: _Batch, chosen: list[int], known: set[Labels]) -> _Entry | None:
        """The entry after the store appended ``batch``, or None when it cannot say.

        ``chosen``: the batch's series (positions) that the entry's matchers
        choose; ``known``: the series the store held before the batch.
        """
        where = np.full(len(batch.labels), -1, dtype=np.int64)
        own = {ls: i for i, ls in enumerate(self.labels)}
        labels = list(self.labels)
        in_range = batch.ts >= self.lo
        present = np.zeros(len(batch.labels), dtype=bool)
        present[batch.idx[in_range]] = True
        for pos in chosen:  # positions ascend: new series in the store's id order
            if not present[pos]:
                continue
            ls = batch.labels[pos]
            i = own.get(ls)
            if i is None:
                if ls in known:  # held before, none in the window: its place is unknown
                    return None
                i = len(labels)
                labels.append(ls)
            where[pos] = i
        mask = in_range & (where[batch.idx] >= 0)
        if not mask.any():
            return self
        idx = np.concatenate([np.repeat(np.arange(len(self.labels), dtype=np.int64),
                                        np.diff(self.bounds)), where[batch.idx[mask]]])
        return _Entry._sorted(self.lo, labels, idx,
                              np.concatenate([self.ts, batch.ts[mask]]),
                              np.concatenate([self.values, batch.read_values[mask]]),
                              self.order if len(labels) == len(self.labels) else None)

    def since(self, lo: int) -> _Entry:
        """The entry without its samples before ``lo`` (``lo >= self.lo``)."""
        keep = self.ts >= lo
        ts, values, keys = self.ts[keep], self.values[keep], self.keys[keep]
        bounds = np.searchsorted(keys >> _SHIFT, np.arange(len(self.labels) + 1,
                                                           dtype=np.int64)).astype(np.int64)
        for a in (ts, values, keys, bounds):
            a.setflags(write=False)
        return _Entry(lo, self.labels, ts, values, bounds, keys, self.base, self.order)

    def _edges(self, mint: int, maxt: int, rows: npt.NDArray[np.int64] | None = None
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Where the samples in ``[mint, maxt]`` of each series (or of ``rows``) start and stop."""
        index = (np.arange(len(self.labels), dtype=np.int64) if rows is None else rows) << _SHIFT
        # Offsets clipped to the key range: -1 (before every sample) up to _SPAN.
        start = np.searchsorted(self.keys, index + min(max(mint - self.base, 0), _SPAN), "left")
        stop = np.searchsorted(self.keys, index + min(max(maxt - self.base, -1), _SPAN), "right")
        return start, stop

    def selection(self, mint: int, maxt: int) -> Selection:
        """The series in label order with their samples in ``[mint, maxt]``, concatenated."""
        start, stop = self._edges(mint, maxt, self.order)
        whole = Samples.of_flat(self.ts, self.values, np.diff(self.bounds),
                                first=self.bounds[:-1])
        kept, samples = whole.gather(start, stop)
        labels = self.labels
        return Selection([labels[i] for i in self.order[kept].tolist()],
                         with_markers(samples))

    def cut(self, mint: int, maxt: int) -> list[Series]:
        """The series with their samples in ``[mint, maxt]`` (views of the entry)."""
        if not self.labels:
            return []
        start, stop = self._edges(mint, maxt)
        some = stop > start
        return [Series(self.labels[i], self.ts[a:b], self.values[a:b])
                for i, a, b in zip(np.flatnonzero(some).tolist(), start[some].tolist(),
                                   stop[some].tolist(), strict=True)]


def _label_order(labels: list[Labels]) -> npt.NDArray[np.int64]:
    """Positions of ``labels`` in label order (the order evaluators work in)."""
    return np.asarray(sorted(range(len(labels)), key=labels.__getitem__), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Batch:
    """Samples a collector appends, as the store normalises them (see ``BatchBuilder``)."""

    labels: list[Labels]
    idx: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]  # as given (staleness markers and NaNs as they came)
    read_values: npt.NDArray[np.float64]  # as the store reads them back
    pairs: dict[tuple[str, str], list[int]]  # (label, value) -> positions, ascending

    @classmethod
    def of(cls, samples: Iterable[tuple[LabelsLike, int, float]]) -> _Batch:
        builder = BatchBuilder()
        for labels, ts, value in samples:
            builder.add(labels, ts, value)
        idx, ts_, values = builder.arrays()
        # The store keeps the staleness marker's bits, not an ordinary NaN's.
        read_values = values.copy()
        read_values[np.isnan(values) & ~stale_mask(values)] = np.nan
        pairs: dict[tuple[str, str], list[int]] = defaultdict(list)
        for pos, ls in enumerate(builder.label_sets):
            for pair in ls:
                pairs[pair].append(pos)
        return cls(builder.label_sets, idx, ts_, values, read_values, dict(pairs))

    def chosen(self, matchers: Sequence[Matcher]) -> list[int]:
        """Positions of the series the matchers choose, ascending.

        Equality matchers narrow the candidates by look-up; every matcher is
        then checked as the store checks it.
        """
        candidates: set[int] | None = None
        for name, op, want in matchers:
            if op == "=" and want:
                found = self.pairs.get((name, want), ())
                candidates = set(found) if candidates is None else candidates & set(found)
                if not candidates:
                    return []
        order = sorted(candidates) if candidates is not None else range(len(self.labels))
        return [p for p in order if matches(self.labels[p], matchers)]


class ReadCache:
    """A :class:`~monitoring.engine.model.SeriesSource` over a store; see the module docstring.

    ``limit_samples`` bounds what is kept: past it, everything is dropped
    before the next read is kept. A selection keeps the samples of the widest
    window asked of it, and forgets older ones once they are ``trim_ms`` old.
    """

    def __init__(self, store: Store, *, limit_samples: int = 8_000_000,
                 trim_ms: int = 60_000) -> None:
        self.store = store
        self.limit_samples = limit_samples
        self.trim_ms = trim_ms
        self._entries: dict[tuple[Matcher, ...], _Entry] = {}
        self._widest: dict[tuple[Matcher, ...], int] = {}  # the widest window asked
        self._kept = 0
        self._stamp: tuple[int, ...] | None = None
        self._known: set[Labels] | None = None  # the store's series, once a write asked
        self._newest: int | None = None  # the store's newest sample time, once a read asked
        self.reads = 0  # selections that went to the store (for tests and the bench)
        self.hits = 0  # selections cut from what was read

    @property
    def kept(self) -> int:
        """Samples kept (for tests and the bench)."""
        return self._kept

    def clear(self) -> None:
        """Forget everything read (the store changed)."""
        self._entries.clear()
        self._kept = 0
        self._stamp = None
        self._known = None
        self._newest = None

    def wrote(self) -> None:
        """The holder wrote to the store: forget everything, note the store's new state."""
        self.clear()
        self.check()

    def append(self, samples: Sequence[tuple[LabelsLike, int, float]]) -> int:
        """Write ``samples`` as :meth:`Store.append` does and merge them into what is kept.

        Each kept selection whose matchers choose a written series gets the
        written samples inside its window; one that cannot be brought up to
        date is dropped (see the module docstring). A failed write empties
        the cache.
        """
        if not self._entries:
            try:
                return self.store.append(samples)
            finally:
                self.wrote()
        if self._known is None:
            self._known = set(self.store.series_matching([]))
        try:
            batch = _Batch.of(samples)
            written = self.store.append_arrays(batch.labels, batch.idx, batch.ts, batch.values)
            self._merge(batch, self._known)
            if self._newest is not None and len(batch.ts):
                self._newest = max(self._newest, int(batch.ts.max()))
        except BaseException:
            self.clear()
            raise
        self._stamp = self.store.change_stamp()
        return written

    def _merge(self, batch: _Batch, known: set[Labels]) -> None:
        for key, entry in list(self._entries.items()):
            chosen = batch.chosen(key)
            if not chosen:
                continue
            after = entry.merged(batch, chosen, known)
            if after is entry:
                continue
            self._kept -= entry.samples
            if after is None:
                del self._entries[key]
            else:
                self._entries[key] = after
                self._kept += after.samples
        known.update(batch.labels)

    def check(self) -> None:
        """Forget everything if the store's row counts changed since it was read."""
        stamp = self.store.change_stamp()
        if stamp != self._stamp:
            self.clear()
            self._stamp = stamp

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """See :meth:`monitoring.engine.model.SeriesSource.select`."""
        mint, maxt = int(mint_ms), int(maxt_ms)
        entry = self._entry(matchers, mint, maxt)
        if entry is None:
            return self.store.select(matchers, mint, maxt)
        return entry.cut(mint, maxt)

    def select_samples(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int
                       ) -> Selection:
        """:meth:`select` sorted by labels and concatenated.

        See :class:`~monitoring.engine.fast.selectors.SortedSource`.
        """
        mint, maxt = int(mint_ms), int(maxt_ms)
        entry = self._entry(matchers, mint, maxt)
        if entry is None:
            return selection_of(self.store.select(matchers, mint, maxt))
        return entry.selection(mint, maxt)

    def _entry(self, matchers: Sequence[Matcher], mint: int, maxt: int) -> _Entry | None:
        """What holds ``[mint, maxt]`` of the selection, read now if needed.

        None when the store must answer directly.
        """
        key: tuple[Matcher, ...] = tuple((m[0], m[1], m[2]) for m in matchers)
        if mint > maxt:  # nothing to keep (the store still checks the matchers)
            return None
        if len(self._widest) > WIDEST_KEPT:
            self._widest.clear()
        widest = self._widest[key] = max(self._widest.get(key, 0), maxt - mint)
        entry = self._entries.get(key)
        if entry is not None and entry.lo <= mint:
            self.hits += 1
            floor = maxt - widest
            if floor - entry.lo > self.trim_ms:  # the clock moved on: forget the oldest
                self._kept -= entry.samples
                entry = self._entries[key] = entry.since(floor)
                self._kept += entry.samples
            return entry
        self.reads += 1
        if entry is not None:  # asked for earlier samples than it holds: read anew
            self._kept -= entry.samples
            del self._entries[key]
        if self._newest is None:
            span = self.store.time_range()
            self._newest = span[1] if span is not None else mint
        # Up to the newest sample: nothing later is in the store, so the selection is
        # complete for any later time as long as writes go through :meth:`append`.
        end = max(maxt, self._newest)
        read = _Entry.of(mint, self.store.select(matchers, mint, end))
        if read is None:
            return None
        return self._keep(key, read)

    def _keep(self, key: tuple[Matcher, ...], entry: _Entry) -> _Entry:
        """Keep ``entry`` if it fits (a week's window does not), and return it."""
        if entry.samples > self.limit_samples:
            return entry
        if self._kept + entry.samples > self.limit_samples:
            self._entries.clear()
            self._kept = 0
        self._entries[key] = entry
        self._kept += entry.samples
        return entry
