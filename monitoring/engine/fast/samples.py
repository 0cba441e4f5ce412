"""The samples of several series, laid out one after another or series by series.

Readers that work on all series at once want the samples concatenated: one
evaluation time (live evaluation) is one search over every series, and the
range kernels run on concatenated windows. Readers that go series by series
over many steps (a week's range query) want one array per series, and
concatenating gigabytes for them would only cost memory. :class:`Samples`
holds whichever layout it was made with and makes the other only when a reader
asks, once. The live read cache hands out the concatenated layout directly, so
a selection reaches the kernels without a Python object per series.

A third, optional column marks staleness markers (``None``: the series have
none, the usual case, which readers test first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from monitoring.engine.fast.search import search_all
from monitoring.engine.model import TimeArray, ValueArray, stale_mask

BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.int64]

FLAT_SAMPLES = 1 << 22
"""Most samples a selection read series by series is concatenated for. Searching all
series at once saves a NumPy call per series, which matters when each call finds
little (one evaluation time, short series); on larger selections the calls are a
small share of the work and the copy would only cost memory."""

_NO_TIMES: TimeArray = np.zeros(0, dtype=np.int64)
_NO_VALUES: ValueArray = np.zeros(0, dtype=np.float64)


def starts_of(lens: IndexArray) -> IndexArray:
    """Where each series starts when series of ``lens`` samples follow each other."""
    first = np.zeros(len(lens), dtype=np.int64)
    if len(lens) > 1:
        np.cumsum(lens[:-1], out=first[1:])
    return first


class Samples:
    """Samples of ``n`` series (see the module docstring); immutable once made.

    Made by :meth:`of_lists` or :meth:`of_flat`.
    """

    __slots__ = ("_first", "_lens", "_stale", "_stale_list", "_ts", "_ts_list", "_vs",
                 "_vs_list", "has_stale", "n")

    def __init__(self, n: int, has_stale: bool) -> None:
        self.n = n
        self.has_stale = has_stale
        self._ts: TimeArray | None = None
        self._vs: ValueArray | None = None
        self._first: IndexArray | None = None
        self._lens: IndexArray | None = None
        self._stale: BoolArray | None = None
        self._ts_list: list[TimeArray] | None = None
        self._vs_list: list[ValueArray] | None = None
        self._stale_list: list[BoolArray | None] | None = None

    @classmethod
    def of_lists(cls, ts_list: list[TimeArray], vs_list: list[ValueArray],
                 stale_list: Sequence[BoolArray | None] | None = None) -> Samples:
        """Series by series; ``stale_list``: each series' marker mask, or None if it has none."""
        has_stale = stale_list is not None and any(m is not None for m in stale_list)
        out = cls(len(ts_list), has_stale)
        out._ts_list, out._vs_list = ts_list, vs_list
        if has_stale and stale_list is not None:
            out._stale_list = list(stale_list)
        return out

    @classmethod
    def of_flat(cls, ts: TimeArray, vs: ValueArray, lens: IndexArray,
                stale: BoolArray | None = None, first: IndexArray | None = None) -> Samples:
        """Concatenated: series ``i`` has the next ``lens[i]`` samples.

        ``stale``: the marker mask of every sample, or None when there is none;
        ``first``: where each series starts, when the caller has it.
        """
        out = cls(len(lens), stale is not None)
        out._ts, out._vs, out._lens, out._stale = ts, vs, lens, stale
        out._first = starts_of(lens) if first is None else first
        return out

    @property
    def is_flat(self) -> bool:
        """Whether the concatenated layout is at hand (no copy needed)."""
        return self._ts is not None

    @property
    def total(self) -> int:
        """Samples of all series."""
        if self._lens is not None:
            return int(self._lens.sum())
        assert self._ts_list is not None
        return sum(len(t) for t in self._ts_list)

    # ------------------------------------------------------------ concatenated

    def _flatten(self) -> None:
        if self._ts is not None:
            return
        assert self._ts_list is not None and self._vs_list is not None
        lens = np.fromiter((len(t) for t in self._ts_list), dtype=np.int64, count=self.n)
        self._lens, self._first = lens, starts_of(lens)
        self._ts = _join(self._ts_list, _NO_TIMES)
        self._vs = _join(self._vs_list, _NO_VALUES)
        if self._stale_list is not None:
            self._stale = _join([m if m is not None else np.zeros(len(t), dtype=bool)
                                 for m, t in zip(self._stale_list, self._ts_list, strict=True)],
                                np.zeros(0, dtype=bool))

    @property
    def ts(self) -> TimeArray:
        """Every series' sample times, one series after another."""
        self._flatten()
        assert self._ts is not None
        return self._ts

    @property
    def vs(self) -> ValueArray:
        """Their values."""
        self._flatten()
        assert self._vs is not None
        return self._vs

    @property
    def first(self) -> IndexArray:
        """Where each series starts in :attr:`ts`."""
        self._flatten()
        assert self._first is not None
        return self._first

    @property
    def lens(self) -> IndexArray:
        """Samples per series."""
        if self._lens is None:
            assert self._ts_list is not None
            self._lens = np.fromiter((len(t) for t in self._ts_list), dtype=np.int64,
                                     count=self.n)
        return self._lens

    @property
    def stale(self) -> BoolArray | None:
        """Which of :attr:`ts` are staleness markers; None when none is."""
        if not self.has_stale:
            return None
        self._flatten()
        return self._stale

    # ------------------------------------------------------------ series by series

    def _split(self) -> None:
        if self._ts_list is not None:
            return
        assert self._ts is not None and self._vs is not None and self._first is not None
        assert self._lens is not None
        bounds = (self._first + self._lens).tolist()
        starts = self._first.tolist()
        ts, vs = self._ts, self._vs
        self._ts_list = [ts[a:b] for a, b in zip(starts, bounds, strict=True)]
        self._vs_list = [vs[a:b] for a, b in zip(starts, bounds, strict=True)]
        if self._stale is not None:
            st = self._stale
            self._stale_list = [m if (m := st[a:b]).any() else None
                                for a, b in zip(starts, bounds, strict=True)]

    @property
    def ts_list(self) -> list[TimeArray]:
        """Each series' sample times."""
        self._split()
        assert self._ts_list is not None
        return self._ts_list

    @property
    def vs_list(self) -> list[ValueArray]:
        """Each series' values."""
        self._split()
        assert self._vs_list is not None
        return self._vs_list

    @property
    def stale_list(self) -> list[BoolArray | None]:
        """Each series' staleness markers (None for a series without any)."""
        if not self.has_stale:
            return [None] * self.n
        self._split()
        assert self._stale_list is not None
        return self._stale_list

    # ------------------------------------------------------------ derived

    def rows(self, start: int, stop: int) -> Samples:
        """Series ``[start, stop)`` (views, in the layout at hand)."""
        if start == 0 and stop >= self.n:
            return self
        if self._ts is None:
            return Samples.of_lists(self.ts_list[start:stop], self.vs_list[start:stop],
                                    self._stale_list[start:stop]
                                    if self._stale_list is not None else None)
        first, lens = self.first[start:stop], self.lens[start:stop]
        a = int(first[0]) if len(first) else 0
        b = int(first[-1] + lens[-1]) if len(first) else 0
        stale = self._stale[a:b] if self._stale is not None else None
        return Samples.of_flat(self.ts[a:b], self.vs[a:b], lens,
                               stale if stale is not None and stale.any() else None,
                               first - a)

    def cut(self, mint: int, maxt: int) -> tuple[IndexArray, Samples]:
        """The samples in ``[mint, maxt]``: the series that keep some, and their samples.

        In the layout at hand: concatenated samples are gathered, series by series
        ones are sliced (views). Either way small selections are searched at once.
        """
        times = np.array([mint, maxt], dtype=np.int64)
        if self._ts is not None:
            found = _search_edges(self.ts, self.first, self.lens, times)
            if found is not None:
                return self.gather(*found)
        los: list[int] | None = None
        if self.n > 1 and self.total <= FLAT_SAMPLES:
            lens = self.lens
            first = starts_of(lens)
            found = _search_edges(_join(self.ts_list, _NO_TIMES), first, lens, times)
            if found is not None:
                los, his = (found[0] - first).tolist(), (found[1] - first).tolist()
        if los is None:
            los = [int(np.searchsorted(t, mint, side="left")) for t in self.ts_list]
            his = [int(np.searchsorted(t, maxt, side="right")) for t in self.ts_list]
        keep = [i for i in range(self.n) if his[i] > los[i]]
        stale_list = self.stale_list
        stale = []
        for i in keep:
            m = stale_list[i]
            stale.append(None if m is None or not (c := m[los[i]:his[i]]).any() else c)
        return np.asarray(keep, dtype=np.int64), Samples.of_lists(
            [self.ts_list[i][los[i]:his[i]] for i in keep],
            [self.vs_list[i][los[i]:his[i]] for i in keep], stale)

    def gather(self, los: IndexArray, his: IndexArray) -> tuple[IndexArray, Samples]:
        """Samples ``[los[i], his[i])`` of :attr:`ts` for each series ``i`` that has any.

        Returns the series kept and their samples, concatenated (a copy, unless
        every series keeps all of its samples).
        """
        keep = his > los
        rows = np.flatnonzero(keep)
        if len(rows) == self.n and np.array_equal(los, self.first) \
                and np.array_equal(his - los, self.lens):
            return rows, self
        return rows, self._collect(los[keep], his[keep])

    def without_stale(self) -> tuple[IndexArray, Samples]:
        """The samples without staleness markers: the series that keep some, and theirs."""
        if not self.has_stale:
            keep = np.flatnonzero(self.lens > 0)
            return keep, (self if len(keep) == self.n else self.take(keep))
        if self._ts is not None:
            marks = self.stale
            assert marks is not None
            keep_sample = ~marks
            series_of = np.repeat(np.arange(self.n, dtype=np.int64), self.lens)
            lens = np.bincount(series_of[keep_sample], minlength=self.n).astype(np.int64)
            rows = np.flatnonzero(lens)
            return rows, Samples.of_flat(self.ts[keep_sample], self.vs[keep_sample],
                                         lens[rows])
        ts_list, vs_list, kept = [], [], []
        for i, (t, v, m) in enumerate(zip(self.ts_list, self.vs_list, self.stale_list,
                                          strict=True)):
            if m is not None:
                t, v = t[~m], v[~m]
            if len(t):
                kept.append(i)
                ts_list.append(t)
                vs_list.append(v)
        return np.asarray(kept, dtype=np.int64), Samples.of_lists(ts_list, vs_list)

    def take(self, rows: IndexArray) -> Samples:
        """Only the series ``rows`` (ascending), in the layout at hand."""
        if self._ts is None:
            picked = rows.tolist()
            stale = self._stale_list
            return Samples.of_lists([self.ts_list[i] for i in picked],
                                    [self.vs_list[i] for i in picked],
                                    [stale[i] for i in picked] if stale is not None else None)
        los = self.first[rows]
        return self._collect(los, los + self.lens[rows])

    def _collect(self, los: IndexArray, his: IndexArray) -> Samples:
        """Samples ``[los[k], his[k])`` of :attr:`ts` as series ``k``, concatenated."""
        self._flatten()
        lens = his - los
        first = starts_of(lens)
        idx = np.arange(int(lens.sum()), dtype=np.int64)
        idx += np.repeat(los - first, lens)
        stale = None
        if self._stale is not None:
            stale = self._stale[idx]
            if not stale.any():
                stale = None
        return Samples.of_flat(self.ts[idx], self.vs[idx], lens, stale, first)


def with_markers(samples: Samples) -> Samples:
    """Concatenated samples whose values came without a marker mask, with it found.

    Only a NaN can be a staleness marker, and any NaN makes the (fast) sum NaN: most
    selections need no element-wise check.
    """
    vs = samples.vs
    with np.errstate(invalid="ignore", over="ignore"):
        if not np.isnan(np.sum(vs)):
            return samples
    marks = stale_mask(vs)
    if not marks.any():
        return samples
    return Samples.of_flat(samples.ts, vs, samples.lens, marks, samples.first)


def _search_edges(ts: TimeArray, first: IndexArray, lens: IndexArray, times: TimeArray
                  ) -> tuple[IndexArray, IndexArray] | None:
    """Where ``[times[0], times[1]]`` starts and stops in each series (see :func:`search_all`)."""
    los = search_all(ts, first, lens, times[:1], side="left")
    his = search_all(ts, first, lens, times[1:], side="right")
    if los is None or his is None:
        return None
    return los[:, 0], his[:, 0]


_A = TypeVar("_A", bound=np.generic)


def _join(arrays: list[npt.NDArray[_A]], empty: npt.NDArray[_A]) -> npt.NDArray[_A]:
    if not arrays:
        return empty
    if len(arrays) == 1:
        return arrays[0]
    return np.concatenate(arrays)
