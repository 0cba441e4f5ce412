"""Raw samples, fetched once per selector, and instant-selector lookups for all steps.

Each distinct set of matchers is read from the :class:`SeriesSource` once for
the whole query (the union of the time ranges every use of it needs), sorted by
label set as Prometheus's TSDB returns series. An instant selector then finds,
for every step at once, the newest sample in the lookback window with one
``searchsorted`` per series; a staleness marker as that newest sample hides the
series, exactly as in Prometheus.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np

from monitoring.engine.fast.native import lookup
from monitoring.engine.fast.search import FLAT_MAX_STEPS, search_all
from monitoring.engine.fast.values import BoolArray, FloatMatrix, IndexArray
from monitoring.engine.model import (
    Labels,
    Matcher,
    Series,
    SeriesSource,
    TimeArray,
    ValueArray,
    stale_mask,
)


@dataclass(slots=True)
class RawSeries:
    """One series' samples as read from the store, staleness markers included."""

    labels: Labels
    ts: TimeArray
    values: ValueArray
    stale: BoolArray | None  # None when the series has no staleness marker

    def clean(self) -> tuple[TimeArray, ValueArray]:
        """The samples without staleness markers (what range selectors see)."""
        if self.stale is None:
            return self.ts, self.values
        keep = ~self.stale
        return self.ts[keep], self.values[keep]


STREAM_GROUP = 1 << 21
"""Samples per group when streaming: small enough that reading the first group and
computing the last (the parts that cannot overlap) are short, large enough that
per-query costs stay small (on the evaluator benchmark, with the machine under load,
2M beat 1M and 4M; on an idle machine the three were within noise)."""

STREAM_GROUP_CHEAP = 1 << 20
"""Samples per group when the kernel costs little next to reading (the compiled
``rate``/``increase``/``delta``): reading is then the whole pipeline, and smaller
groups shorten the first read and the last kernel, which nothing overlaps
(``rate(c[5m])`` on the evaluator benchmark: 0.139-0.150 s against 0.154-0.161 s
with 2M groups, three alternating runs each)."""


class RawStore:
    """Reads each matcher set once per query, over the union of the intervals needed."""

    def __init__(self, source: SeriesSource) -> None:
        self.source = source
        self._wanted: dict[tuple[Matcher, ...], tuple[int, int]] = {}
        self._wants: dict[tuple[Matcher, ...], int] = {}
        self._data: dict[tuple[Matcher, ...], tuple[int, int, list[RawSeries]]] = {}
        # The sample times of ``_data``'s lists, concatenated, for slicing them.
        self._flat: dict[tuple[Matcher, ...], tuple[list[RawSeries], _Flat | None]] = {}

    def want(self, matchers: tuple[Matcher, ...], mint: int, maxt: int) -> None:
        """Announce that ``[mint, maxt]`` of these series will be needed."""
        self._wants[matchers] = self._wants.get(matchers, 0) + 1
        old = self._wanted.get(matchers)
        self._wanted[matchers] = (mint, maxt) if old is None else (min(old[0], mint),
                                                                  max(old[1], maxt))

    def get(self, matchers: tuple[Matcher, ...], mint: int, maxt: int) -> list[RawSeries]:
        """The series matching ``matchers`` with their samples in ``[mint, maxt]``."""
        have = self._data.get(matchers)
        if have is None or have[0] > mint or have[1] < maxt:
            lo, hi = mint, maxt
            wanted = self._wanted.get(matchers)
            if wanted is not None:
                lo, hi = min(lo, wanted[0]), max(hi, wanted[1])
            if have is not None:
                lo, hi = min(lo, have[0]), max(hi, have[1])
            fetched = _prepare(self.source.select(list(matchers), lo, hi))
            self._data[matchers] = (lo, hi, fetched)
            have = self._data[matchers]
        if have[0] == mint and have[1] == maxt:
            return have[2]
        flat = self._flat.get(matchers)
        if flat is None or flat[0] is not have[2]:
            small = sum(len(s.ts) for s in have[2]) <= FLAT_SAMPLES
            flat = (have[2], _Flat.of(have[2]) if small else None)
            self._flat[matchers] = flat
        if flat[1] is None:
            return _slice_each(have[2], mint, maxt)
        return _slice(have[2], flat[1], mint, maxt)


    def stream(self, matchers: tuple[Matcher, ...], mint: int, maxt: int,
               cheap_kernel: bool = False
               ) -> Generator[list[RawSeries], None, None] | None:
        """The series in groups, the next group read while the caller works on one.

        Only for series that nothing else in the query reads (announced once, not
        cached) and a source that reads in groups (the DuckDB store): their data is
        never kept whole. Each group is sorted by labels; the groups are not
        sorted among themselves. Groups hold about :data:`STREAM_GROUP` samples,
        :data:`STREAM_GROUP_CHEAP` for a ``cheap_kernel``. ``None`` when the series
        must go through :meth:`get`.
        """
        select_groups: Callable[..., Iterator[list[Series]]] | None = getattr(
            self.source, "select_groups", None)
        if select_groups is None or matchers in self._data or self._wants.get(matchers, 0) > 1:
            return None
        size = STREAM_GROUP_CHEAP if cheap_kernel else STREAM_GROUP
        return read_ahead(_prepared(select_groups(list(matchers), mint, maxt,
                                                  group_samples=size)))


def _prepared(groups: Iterator[list[Series]]) -> Generator[list[RawSeries], None, None]:
    """Each group prepared as it is read (in the reading thread)."""
    try:
        for group in groups:
            yield _prepare(group)
    finally:
        close = getattr(groups, "close", None)
        if close is not None:
            close()


_DONE = object()
T = TypeVar("T")


def read_ahead(groups: Iterator[T]) -> Generator[T, None, None]:
    """``groups``, with the next one produced by a background thread meanwhile.

    Reading (DuckDB, memory copies) and computing (NumPy kernels) both release
    the GIL, so on several cores the two overlap. The producer stops early when
    the consumer does (the iterator is closed, or an error ends the query), and
    closes ``groups`` in its own thread so a lock taken there is released there.
    An error in the producer is raised in the consumer.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def produce() -> None:
        try:
            for group in groups:
                while not stop.is_set():
                    try:
                        handoff.put(group, timeout=0.05)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as exc:  # handed to the consumer, raised there
            handoff.put(exc)
            return
        finally:
            close = getattr(groups, "close", None)
            if close is not None:
                close()
        handoff.put(_DONE)

    worker = threading.Thread(target=produce, name="read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield cast(T, item)
    finally:
        stop.set()
        while worker.is_alive():
            try:
                handoff.get(timeout=0.05)
            except queue.Empty:
                continue
        worker.join()


FLAT_SAMPLES = 1 << 22
"""Most samples copied into one :class:`_Flat` layout. Searching all series at once
saves a NumPy call per series, which matters when each call finds little (one
evaluation time, short series); on larger selections the calls are a small share
of the work and the copy would only cost memory."""


@dataclass(slots=True)
class _Flat:
    """The sample times of several series one after the other (see :func:`search_all`)."""

    ts: TimeArray
    first: IndexArray  # where each series starts in ``ts``
    lens: IndexArray  # and how many samples it has

    @classmethod
    def of(cls, series: Sequence[RawSeries]) -> _Flat:
        """The layout of ``series``."""
        lens = np.fromiter((len(s.ts) for s in series), dtype=np.int64, count=len(series))
        first = np.zeros(len(series), dtype=np.int64)
        if len(lens) > 1:
            np.cumsum(lens[:-1], out=first[1:])
        ts = np.concatenate([s.ts for s in series]) if series else np.zeros(0, np.int64)
        return cls(ts, first, lens)


def _prepare(series: Sequence[Series]) -> list[RawSeries]:
    ordered = sorted(series, key=lambda s: s.labels)
    ts_list = [np.asarray(s.ts, dtype=np.int64) for s in ordered]
    vs_list = [np.asarray(s.values, dtype=np.float64) for s in ordered]
    with np.errstate(invalid="ignore", over="ignore"):
        checks = _nan_series(vs_list)
    out = []
    for s, ts, vs, check in zip(ordered, ts_list, vs_list, checks, strict=True):
        stale = stale_mask(vs) if check else None
        out.append(RawSeries(s.labels, ts, vs, stale if stale is not None and stale.any()
                             else None))
    return out


def _nan_series(vs_list: list[ValueArray]) -> list[bool]:
    """Which series have a NaN (only those can hold a staleness marker).

    A staleness marker is a NaN, and any NaN makes the (fast, SIMD) sum NaN: most
    selections need no element-wise check at all. Up to :data:`FLAT_SAMPLES`,
    one sum over all series settles it, and a prefix count of NaNs finds the
    series when it does not; above, each series is summed on its own.
    """
    lens = np.fromiter((len(v) for v in vs_list), dtype=np.int64, count=len(vs_list))
    if not len(vs_list) or int(lens.sum()) > FLAT_SAMPLES:
        return [bool(np.isnan(np.sum(vs))) for vs in vs_list]
    every = np.concatenate(vs_list)
    if not np.isnan(np.sum(every)):
        return [False] * len(vs_list)
    nans = np.zeros(len(every) + 1, dtype=np.int64)
    np.cumsum(np.isnan(every), out=nans[1:])
    ends = np.cumsum(lens)
    found: list[bool] = ((nans[ends] - nans[ends - lens]) > 0).tolist()
    return found


def _slice(series: list[RawSeries], flat: _Flat, mint: int, maxt: int) -> list[RawSeries]:
    """The samples of ``series`` (laid out as ``flat``) in ``[mint, maxt]``."""
    los = search_all(flat.ts, flat.first, flat.lens, np.array([mint], dtype=np.int64),
                     side="left")
    his = search_all(flat.ts, flat.first, flat.lens, np.array([maxt], dtype=np.int64),
                     side="right")
    if los is None or his is None:
        return _slice_each(series, mint, maxt)
    los -= flat.first[:, None]
    his -= flat.first[:, None]
    return _cut(series, los[:, 0].tolist(), his[:, 0].tolist())


def _slice_each(series: list[RawSeries], mint: int, maxt: int) -> list[RawSeries]:
    """:func:`_slice` with one search per series (for selections too large to lay out)."""
    los = [int(np.searchsorted(s.ts, mint, side="left")) for s in series]
    his = [int(np.searchsorted(s.ts, maxt, side="right")) for s in series]
    return _cut(series, los, his)


def _cut(series: list[RawSeries], los: list[int], his: list[int]) -> list[RawSeries]:
    """Samples ``[lo, hi)`` of each series; series left without samples are left out."""
    out = []
    for s, lo, hi in zip(series, los, his, strict=True):
        if hi > lo:
            stale = s.stale[lo:hi] if s.stale is not None else None
            if stale is not None and not stale.any():
                stale = None
            out.append(RawSeries(s.labels, s.ts[lo:hi], s.values[lo:hi], stale))
    return out


def instant_lookup(
    series: list[RawSeries], times: TimeArray, lookback_ms: int, want_ts: bool = False
) -> tuple[FloatMatrix, BoolArray, IndexArray | None]:
    """Values of the newest sample in ``(t - lookback, t]`` for every series and time.

    Returns ``[series × times]`` values and presence, and with ``want_ts`` the
    sample timestamps (for ``timestamp()``).
    """
    n, steps = len(series), len(times)
    if n > 1 and steps <= FLAT_MAX_STEPS and sum(len(s.ts) for s in series) <= FLAT_SAMPLES:
        flat = _Flat.of(series)
        count = search_all(flat.ts, flat.first, flat.lens, times, side="right")
        if count is not None and len(flat.ts):
            return _lookup_all(series, flat, count, times - lookback_ms, want_ts)
    values = np.empty((n, steps), dtype=np.float64)
    present = np.empty((n, steps), dtype=bool)
    stamps = np.empty((n, steps), dtype=np.int64) if want_ts else None
    times = np.ascontiguousarray(times, dtype=np.int64)
    for i, s in enumerate(series):
        lookup(s.ts, s.values, s.stale, times, lookback_ms, values[i], present[i],
               stamps[i] if stamps is not None else None)
    return values, present, stamps


def _lookup_all(series: list[RawSeries], flat: _Flat, count: IndexArray, floor: TimeArray,
                want_ts: bool) -> tuple[FloatMatrix, BoolArray, IndexArray | None]:
    """:func:`instant_lookup` for all series at once, from the positions ``count``.

    ``count`` is, per series and time, the position after the newest sample at or
    before the time in the concatenated samples. Same values as the loop, also in
    the absent cells (a series' first sample there, 0 for a series with none).
    """
    first = flat.first[:, None]
    found = count > first
    idx = np.subtract(count, 1, out=count)
    np.maximum(idx, first, out=idx)
    empty = flat.lens == 0
    if empty.any():
        np.minimum(idx, len(flat.ts) - 1, out=idx)
    t = flat.ts[idx]
    present = np.greater(t, floor[None, :])
    present &= found
    if any(s.stale is not None for s in series):
        stale = np.concatenate([s.stale if s.stale is not None else np.zeros(len(s.ts), bool)
                                for s in series])
        present &= ~stale[idx]
    values = np.concatenate([s.values for s in series])[idx]
    if empty.any():
        values[empty] = 0.0
    return values, present, t if want_ts else None
