"""Synthetic metric history for differential tests and benchmarks.

Three kinds of series, as real exporters produce them: a gauge ``m`` in [0, 1]
(random walk), a counter ``c_total`` with occasional resets, and a classic
histogram ``h_bucket`` (cumulative ``le`` buckets that only grow). Sample
timestamps are 15 s apart plus a 1-4 s offset, so they never fall on a
whole-minute evaluation step or window edge: Prometheus 2.x and 3.x disagree
about samples exactly on a window's left edge, and this keeps the comparison
about everything else.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from monitoring.engine.model import Series, labels_of

BUCKETS = ("0.1", "0.5", "1", "5", "+Inf")


def generate(
    n_series: int, start_ms: int, duration_ms: int, interval_ms: int = 15_000, seed: int = 7
) -> Iterator[Series]:
    """Yield ``n_series`` series (about a third of each kind) over the time range."""
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
