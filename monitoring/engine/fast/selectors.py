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


class RawStore:
    """Reads each matcher set once per query, over the union of the intervals needed."""

    def __init__(self, source: SeriesSource) -> None:
        self.source = source
        self._wanted: dict[tuple[Matcher, ...], tuple[int, int]] = {}
        self._wants: dict[tuple[Matcher, ...], int] = {}
        self._data: dict[tuple[Matcher, ...], tuple[int, int, list[RawSeries]]] = {}

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
        return _slice(have[2], mint, maxt)


    def stream(self, matchers: tuple[Matcher, ...], mint: int, maxt: int
               ) -> Generator[list[RawSeries], None, None] | None:
        """The series in groups, the next group read while the caller works on one.

        Only for series that nothing else in the query reads (announced once, not
        cached) and a source that reads in groups (the DuckDB store): their data is
        never kept whole. Each group is sorted by labels; the groups are not
        sorted among themselves. ``None`` when the series must go through
        :meth:`get`.
        """
        select_groups: Callable[..., Iterator[list[Series]]] | None = getattr(
            self.source, "select_groups", None)
        if select_groups is None or matchers in self._data or self._wants.get(matchers, 0) > 1:
            return None
        return read_ahead(_prepared(select_groups(list(matchers), mint, maxt,
                                                  group_samples=STREAM_GROUP)))


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


def _prepare(series: Sequence[Series]) -> list[RawSeries]:
    out = []
    for s in sorted(series, key=lambda s: s.labels):
        ts = np.asarray(s.ts, dtype=np.int64)
        vs = np.asarray(s.values, dtype=np.float64)
        # A staleness marker is a NaN, and any NaN makes the (fast, SIMD) sum NaN: most
        # series need no element-wise check at all.
        with np.errstate(invalid="ignore", over="ignore"):
            clean = not np.isnan(np.sum(vs))
        if clean:
            out.append(RawSeries(s.labels, ts, vs, None))
            continue
        stale = stale_mask(vs)
        out.append(RawSeries(s.labels, ts, vs, stale if stale.any() else None))
    return out


def _slice(series: list[RawSeries], mint: int, maxt: int) -> list[RawSeries]:
    out = []
    for s in series:
        lo = int(np.searchsorted(s.ts, mint, side="left"))
        hi = int(np.searchsorted(s.ts, maxt, side="right"))
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
    values = np.empty((n, steps), dtype=np.float64)
    present = np.empty((n, steps), dtype=bool)
    stamps = np.empty((n, steps), dtype=np.int64) if want_ts else None
    floor = times - lookback_ms
    for i, s in enumerate(series):
        row_ok = present[i]
        if len(s.ts) == 0:
            row_ok[:] = False
            values[i] = 0.0
            continue
        # Samples at or before each time; the newest of them is at ``count - 1``.
        count = np.searchsorted(s.ts, times, side="right")
        idx = np.subtract(count, 1, out=count)
        found = idx >= 0
        np.maximum(idx, 0, out=idx)
        t = s.ts[idx]
        np.greater(t, floor, out=row_ok)
        row_ok &= found
        if s.stale is not None:
            row_ok &= ~s.stale[idx]
        np.take(s.values, idx, out=values[i])
        if stamps is not None:
            stamps[i] = t
    return values, present, stamps
