"""Raw samples, fetched once per selector, and instant-selector lookups for all steps.

Each distinct set of matchers is read from the :class:`SeriesSource` once for
the whole query (the union of the time ranges every use of it needs), sorted by
label set as Prometheus's TSDB returns series. An instant selector then finds,
for every step at once, the newest sample in the lookback window; a staleness
marker as that newest sample hides the series, exactly as in Prometheus.

A source that can hand out a selection already sorted and concatenated (the
live read cache, :meth:`SortedSource.select_samples`) is read that way, so a
selection reaches the kernels without a Python object per series.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

import numpy as np

from monitoring.engine.fast.native import lookup
from monitoring.engine.fast.samples import FLAT_SAMPLES, Samples
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
class Selection:
    """The series one set of matchers selects, in label order, with their samples.

    Staleness markers are included (:attr:`Samples.stale` marks them).
    """

    labels: list[Labels]
    samples: Samples

    def __len__(self) -> int:
        return len(self.labels)

    def cut(self, mint: int, maxt: int) -> Selection:
        """The samples in ``[mint, maxt]``; series left without any are left out."""
        rows, samples = self.samples.cut(mint, maxt)
        if samples is self.samples:
            return self
        labels = self.labels
        return Selection([labels[i] for i in rows.tolist()], samples)


class SortedSource(Protocol):
    """A source that hands out selections sorted by labels, samples concatenated."""

    def select_samples(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int
                       ) -> Selection:
        """What :meth:`SeriesSource.select` returns, as a :class:`Selection`."""
        ...


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
        self._data: dict[tuple[Matcher, ...], tuple[int, int, Selection]] = {}

    def want(self, matchers: tuple[Matcher, ...], mint: int, maxt: int) -> None:
        """Announce that ``[mint, maxt]`` of these series will be needed."""
        self._wants[matchers] = self._wants.get(matchers, 0) + 1
        old = self._wanted.get(matchers)
        self._wanted[matchers] = (mint, maxt) if old is None else (min(old[0], mint),
                                                                  max(old[1], maxt))

    def get(self, matchers: tuple[Matcher, ...], mint: int, maxt: int) -> Selection:
        """The series matching ``matchers`` with their samples in ``[mint, maxt]``."""
        have = self._data.get(matchers)
        if have is None or have[0] > mint or have[1] < maxt:
            lo, hi = mint, maxt
            wanted = self._wanted.get(matchers)
            if wanted is not None:
                lo, hi = min(lo, wanted[0]), max(hi, wanted[1])
            if have is not None:
                lo, hi = min(lo, have[0]), max(hi, have[1])
            self._data[matchers] = have = (lo, hi, self._read(list(matchers), lo, hi))
        if have[0] == mint and have[1] == maxt:
            return have[2]
        return have[2].cut(mint, maxt)

    def _read(self, matchers: list[Matcher], mint: int, maxt: int) -> Selection:
        # Not isinstance(): a runtime protocol check costs more than a cut.
        select_samples: Callable[..., Selection] | None = getattr(
            self.source, "select_samples", None)
        if select_samples is not None:
            return select_samples(matchers, mint, maxt)
        return selection_of(self.source.select(matchers, mint, maxt))

    def stream(self, matchers: tuple[Matcher, ...], mint: int, maxt: int,
               cheap_kernel: bool = False
               ) -> Generator[Selection, None, None] | None:
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


def _prepared(groups: Iterator[list[Series]]) -> Generator[Selection, None, None]:
    """Each group prepared as it is read (in the reading thread)."""
    try:
        for group in groups:
            yield selection_of(group)
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


def selection_of(series: Sequence[Series]) -> Selection:
    """Series as :meth:`SeriesSource.select` returns them, sorted by labels.

    Staleness markers are found here, once.
    """
    ordered = sorted(series, key=lambda s: s.labels)
    ts_list = [np.asarray(s.ts, dtype=np.int64) for s in ordered]
    vs_list = [np.asarray(s.values, dtype=np.float64) for s in ordered]
    with np.errstate(invalid="ignore", over="ignore"):
        checks = _nan_series(vs_list)
    stale_list: list[BoolArray | None] = []
    for vs, check in zip(vs_list, checks, strict=True):
        stale = stale_mask(vs) if check else None
        stale_list.append(stale if stale is not None and stale.any() else None)
    return Selection([s.labels for s in ordered],
                     Samples.of_lists(ts_list, vs_list, stale_list))


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


def instant_lookup(
    selection: Selection, times: TimeArray, lookback_ms: int, want_ts: bool = False
) -> tuple[FloatMatrix, BoolArray, IndexArray | None]:
    """Values of the newest sample in ``(t - lookback, t]`` for every series and time.

    Returns ``[series × times]`` values and presence, and with ``want_ts`` the
    sample timestamps (for ``timestamp()``).
    """
    samples = selection.samples
    n, steps = samples.n, len(times)
    if n > 1 and steps <= FLAT_MAX_STEPS and (samples.is_flat or samples.total <= FLAT_SAMPLES):
        count = search_all(samples.ts, samples.first, samples.lens, times, side="right")
        if count is not None and len(samples.ts):
            return _lookup_all(samples, count, times - lookback_ms, want_ts)
    values = np.empty((n, steps), dtype=np.float64)
    present = np.empty((n, steps), dtype=bool)
    stamps = np.empty((n, steps), dtype=np.int64) if want_ts else None
    times = np.ascontiguousarray(times, dtype=np.int64)
    for i, (ts, vs, stale) in enumerate(zip(samples.ts_list, samples.vs_list,
                                            samples.stale_list, strict=True)):
        lookup(ts, vs, stale, times, lookback_ms, values[i], present[i],
               stamps[i] if stamps is not None else None)
    return values, present, stamps


def _lookup_all(samples: Samples, count: IndexArray, floor: TimeArray, want_ts: bool
                ) -> tuple[FloatMatrix, BoolArray, IndexArray | None]:
    """:func:`instant_lookup` for all series at once, from the positions ``count``.

    ``count`` is, per series and time, the position after the newest sample at or
    before the time in the concatenated samples. Same values as the loop, also in
    the absent cells (a series' first sample there, 0 for a series with none).
    """
    ts = samples.ts
    first = samples.first[:, None]
    found = count > first
    idx = np.subtract(count, 1, out=count)
    np.maximum(idx, first, out=idx)
    empty = samples.lens == 0
    if empty.any():
        np.minimum(idx, len(ts) - 1, out=idx)
    t = ts[idx]
    present = np.greater(t, floor[None, :])
    present &= found
    stale = samples.stale
    if stale is not None:
        present &= ~stale[idx]
    values = samples.vs[idx]
    if empty.any():
        values[empty] = 0.0
    return values, present, t if want_ts else None
