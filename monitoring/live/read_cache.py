"""Samples read by one group evaluation, kept for the next ones until the store changes.

A live cycle evaluates every group once a minute, each at its own time: rules
of different groups select the same series (``m{job="a"}`` under ten
thresholds, say) over windows that overlap almost entirely, and each
selection costs a DuckDB scan of the head. :class:`ReadCache` is the
:class:`~monitoring.engine.model.SeriesSource` the scheduler evaluates on: a
selection is read from the store once, a little further ahead than asked
(``ahead_ms``, so the next groups of the minute find their later windows in
it), and later selections inside what was read are cut from it with one
vectorised search instead of another scan.

What was read is only valid while the store holds the same samples.
:class:`~monitoring.live.store_access.StoreAccess` drops everything after any
store work that is not an evaluation (a collector's write), the scheduler drops
it after writing recording rules' samples, and :meth:`ReadCache.check` drops
it when the store's row counts changed anyway (a write that bypassed the store
thread). A cut is the same as the store's own answer: samples in
``[mint, maxt]``, series without any left out, in the store's order.

The cache lives on the store thread only (no locking of its own).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.engine.model import Labels, Matcher, Series
from monitoring.engine.store import Store

_SHIFT = 42  # bits of a time offset in a search key (139 years of milliseconds)
_SPAN = (1 << _SHIFT) - 1


@dataclass(frozen=True, slots=True)
class _Entry:
    """One selection as read: ``[lo, hi]`` of its series, concatenated and searchable."""

    lo: int
    hi: int
    labels: list[Labels]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    bounds: npt.NDArray[np.int64]  # series i is ts[bounds[i]:bounds[i + 1]]
    keys: npt.NDArray[np.int64]  # series index << _SHIFT | (ts - base), ascending
    base: int

    @classmethod
    def of(cls, lo: int, hi: int, series: Sequence[Series]) -> _Entry | None:
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
        return cls(lo, hi, [s.labels for s in series], ts, values, bounds, keys, base)

    @property
    def samples(self) -> int:
        return len(self.ts)

    def cut(self, mint: int, maxt: int) -> list[Series]:
        """The series with their samples in ``[mint, maxt]`` (views of the entry)."""
        if not self.labels:
            return []
        index = np.arange(len(self.labels), dtype=np.int64) << _SHIFT
        # Offsets clipped to the key range: -1 (before every sample) up to _SPAN.
        start = np.searchsorted(self.keys, index + min(max(mint - self.base, 0), _SPAN), "left")
        stop = np.searchsorted(self.keys, index + min(max(maxt - self.base, -1), _SPAN), "right")
        some = stop > start
        return [Series(self.labels[i], self.ts[a:b], self.values[a:b])
                for i, a, b in zip(np.flatnonzero(some).tolist(), start[some].tolist(),
                                   stop[some].tolist(), strict=True)]


class ReadCache:
    """A :class:`~monitoring.engine.model.SeriesSource` over a store; see the module docstring.

    ``limit_samples`` bounds what is kept: past it, everything is dropped
    before the next read is kept.
    """

    def __init__(self, store: Store, *, ahead_ms: int = 60_000,
                 limit_samples: int = 8_000_000) -> None:
        self.store = store
        self.ahead_ms = ahead_ms
        self.limit_samples = limit_samples
        self._entries: dict[tuple[tuple[str, ...], ...], _Entry] = {}
        self._kept = 0
        self._stamp: tuple[int, ...] | None = None
        self.reads = 0  # selections that went to the store (for tests and the bench)
        self.hits = 0  # selections cut from what was read

    def clear(self) -> None:
        """Forget everything read (the store changed)."""
        self._entries.clear()
        self._kept = 0
        self._stamp = None

    def wrote(self) -> None:
        """The holder wrote to the store: forget everything, note the store's new state."""
        self.clear()
        self.check()

    def check(self) -> None:
        """Forget everything if the store's row counts changed since it was read."""
        stamp = self.store.change_stamp()
        if stamp != self._stamp:
            self.clear()
            self._stamp = stamp

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """See :meth:`monitoring.engine.model.SeriesSource.select`."""
        key = tuple(tuple(m) for m in matchers)
        mint, maxt = int(mint_ms), int(maxt_ms)
        if mint > maxt:  # nothing to keep (the store still checks the matchers)
            return self.store.select(matchers, mint, maxt)
        entry = self._entries.get(key)
        if entry is not None and entry.lo <= mint and maxt <= entry.hi:
            self.hits += 1
            return entry.cut(mint, maxt)
        lo, hi = mint, maxt + self.ahead_ms
        if entry is not None:
            lo, hi = min(lo, entry.lo), max(hi, entry.hi)
            self._kept -= entry.samples
            del self._entries[key]
        self.reads += 1
        entry = _Entry.of(lo, hi, self.store.select(matchers, lo, hi))
        if entry is None:
            return self.store.select(matchers, mint, maxt)
        if entry.samples > self.limit_samples:  # too large to keep (a week's window)
            return entry.cut(mint, maxt)
        if self._kept + entry.samples > self.limit_samples:
            self._entries.clear()
            self._kept = 0
        self._entries[key] = entry
        self._kept += entry.samples
        return entry.cut(mint, maxt)
