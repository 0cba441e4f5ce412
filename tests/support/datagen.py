"""Synthetic metric history for differential tests and benchmarks.

Three kinds of series, as real exporters produce them: a gauge ``m`` in [0, 1]
(random walk), a counter with occasional resets (``c_total`` from
:func:`generate`; :func:`generate_chunks`, the vectorised generator of the
benchmark and the differential test, names it ``c`` by default, as the
benchmark's expressions do), and a classic histogram ``h_bucket`` (cumulative
``le`` buckets that only grow). Sample
timestamps are 15 s apart plus a 1-4 s offset, so they never fall on a
whole-minute evaluation step or window edge: Prometheus 2.x and 3.x disagree
about samples exactly on a window's left edge, and this keeps the comparison
about everything else.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.engine.model import Labels, Series, labels_of

BUCKETS = ("0.1", "0.5", "1", "5", "+Inf")


def generate(
    n_series: int, start_ms: int, duration_ms: int, interval_ms: int = 15_000, seed: int = 7
) -> Iterator[Series]:
    """Yield ``n_series`` series over the time range.

    Instances cycle through the kinds: a gauge, a counter, then a histogram (its
    ``len(BUCKETS)`` bucket series), until ``n_series`` series are made.
    """
    rng = np.random.default_rng(seed)
    n = duration_ms // interval_ms
    base = start_ms + np.arange(n, dtype=np.int64) * interval_ms + 1000
    jobs = max(1, n_series // 20)
    made = 0
    i = 0
    while made < n_series:
        job = f"job{i % jobs}"
        inst = f"i{i}"
        kind = i % 3
        ts = base + rng.integers(0, 3000, size=n, dtype=np.int64)
        if kind == 0:
            walk = np.cumsum(rng.normal(0, 0.02, size=n)) + rng.uniform(0.2, 0.8)
            yield Series(labels_of({"__name__": "m", "job": job, "instance": inst}), ts,
                         np.clip(walk, 0, 1))
            made += 1
        elif kind == 1:
            inc = rng.exponential(5.0, size=n)
            values = np.cumsum(inc)
            resets = rng.random(n) < 0.002
            for r in np.flatnonzero(resets):
                values[r:] -= values[r] - inc[r]
            yield Series(labels_of({"__name__": "c_total", "job": job, "instance": inst}), ts,
                         values)
            made += 1
        else:
            counts = np.cumsum(rng.poisson(3.0, size=(n, len(BUCKETS))), axis=0)
            cumulative = np.cumsum(counts, axis=1).astype(np.float64)
            for b, le in enumerate(BUCKETS):
                if made >= n_series:
                    break
                yield Series(labels_of({"__name__": "h_bucket", "job": job, "instance": inst,
                                        "le": le}), ts, cumulative[:, b].copy())
                made += 1
        i += 1


@dataclass(frozen=True)
class Chunk:
    """Samples of several series as the parallel arrays :meth:`Store.append_arrays` takes.

    Sample ``i`` belongs to ``label_sets[index[i]]``; within a series, times ascend.
    """

    label_sets: list[Labels]
    index: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]

    def series(self) -> Iterator[Series]:
        """The chunk as one :class:`Series` per label set."""
        bounds = np.searchsorted(self.index, np.arange(len(self.label_sets) + 1))
        for k, labels in enumerate(self.label_sets):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            yield Series(labels, self.ts[lo:hi], self.values[lo:hi])


@dataclass(frozen=True)
class Layout:
    """How many series of each kind a data set of ``n_series`` has (about a third each)."""

    gauges: int
    counters: int
    histograms: int
    """Histograms, each ``len(BUCKETS)`` series."""
    jobs: int

    @classmethod
    def of(cls, n_series: int) -> Layout:
        """A third counters, a third histogram buckets (whole histograms), the rest gauges."""
        counters = n_series // 3
        histograms = (n_series - 2 * counters) // len(BUCKETS)
        gauges = n_series - counters - histograms * len(BUCKETS)
        return cls(gauges, counters, histograms, max(1, min(10, n_series // 10)))

    @property
    def series(self) -> int:
        """The total number of series."""
        return self.gauges + self.counters + self.histograms * len(BUCKETS)


def generate_chunks(
    n_series: int, start_ms: int, duration_ms: int, interval_ms: int = 15_000, seed: int = 7,
    counter: str = "c", chunk_series: int = 100,
) -> Iterator[Chunk]:
    """The benchmark data set, vectorised over whole chunks of series (fast at 40M samples).

    Same kinds as :func:`generate`, laid out by :class:`Layout`: a gauge ``m``, a
    counter (named ``counter``) with rare resets and histogram buckets ``h_bucket``,
    each series labelled ``job`` (``Layout.jobs`` values) and ``instance``. Sample
    times are ``start_ms + k * interval_ms + 1000 + jitter`` with a jitter below
    3 s, so with a 15 s interval no sample falls on a whole minute.
    """
    rng = np.random.default_rng(seed)
    layout = Layout.of(n_series)
    n = duration_ms // interval_ms
    base = start_ms + np.arange(n, dtype=np.int64) * interval_ms + 1000

    def labels(name: str, i: int, **extra: str) -> Labels:
        return labels_of({"__name__": name, "job": f"job{i % layout.jobs}",
                          "instance": f"i{i}", **extra})

    def chunk(label_sets: list[Labels], values: npt.NDArray[np.float64],
              per: int = 1) -> Chunk:
        k = values.shape[0] // per if per > 1 else values.shape[0]
        ts = base + rng.integers(0, 3000, size=(k, n), dtype=np.int64)
        if per > 1:  # the buckets of one histogram share their timestamps
            ts = np.repeat(ts, per, axis=0)
        index = np.repeat(np.arange(len(label_sets), dtype=np.int64), n)
        return Chunk(label_sets, index, ts.reshape(-1), values.reshape(-1))

    for lo in range(0, layout.gauges, chunk_series):
        k = min(chunk_series, layout.gauges - lo)
        walk = np.cumsum(rng.normal(0, 0.02, size=(k, n)), axis=1)
        walk += rng.uniform(0.2, 0.8, size=(k, 1))
        yield chunk([labels("m", lo + j) for j in range(k)], np.clip(walk, 0, 1))
    for lo in range(0, layout.counters, chunk_series):
        k = min(chunk_series, layout.counters - lo)
        inc = rng.exponential(5.0, size=(k, n))
        total = np.cumsum(inc, axis=1)
        reset = rng.random((k, n)) < 0.002
        # After a reset at r the counter restarts from inc[r]: subtract what it had before.
        before = np.maximum.accumulate(np.where(reset, total - inc, 0.0), axis=1)
        yield chunk([labels(counter, lo + j) for j in range(k)], total - before)
    per_chunk = max(1, chunk_series // len(BUCKETS))
    for lo in range(0, layout.histograms, per_chunk):
        k = min(per_chunk, layout.histograms - lo)
        counts = np.cumsum(rng.poisson(3.0, size=(k, n, len(BUCKETS))), axis=1)
        cumulative = np.cumsum(counts, axis=2).astype(np.float64)  # (k, n, buckets)
        values = cumulative.transpose(0, 2, 1).reshape(k * len(BUCKETS), n)
        names = [labels("h_bucket", lo + j, le=le) for j in range(k) for le in BUCKETS]
        yield chunk(names, values, per=len(BUCKETS))
