"""An in-memory :class:`~monitoring.engine.model.SeriesSource`, for tests and `.test` files.

Matching follows Prometheus: a matcher on a label the series lacks compares
with the empty string; regular expressions are RE2 and fully anchored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from monitoring.dsl.regex import full_match
from monitoring.engine.model import Labels, Matcher, Series


def matches(labels: Labels, matchers: Sequence[Matcher]) -> bool:
    """Whether a label set satisfies every matcher."""
    values = dict(labels)
    for name, op, want in matchers:
        have = values.get(name, "")
        if op == "=":
            ok = have == want
        elif op == "!=":
            ok = have != want
        else:
            hit = full_match(want, have)
            if hit is None:
                raise ValueError(f"invalid regular expression {want!r}")
            ok = hit if op == "=~" else not hit
        if not ok:
            return False
    return True


class MemorySource:
    """Series held in memory; ``select`` slices them by time."""

    def __init__(self, series: Iterable[Series] = ()) -> None:
        self._series: dict[Labels, Series] = {}
        for s in series:
            self.add(s)

    def add(self, series: Series) -> None:
        """Add samples; samples of an existing label set are merged (later writes win)."""
        old = self._series.get(series.labels)
        if old is None:
            self._series[series.labels] = series
            return
        ts = np.concatenate([old.ts, series.ts])
        vs = np.concatenate([old.values, series.values])
        # Stable sort, keep the last write for duplicate timestamps.
        order = np.argsort(ts, kind="stable")
        ts, vs = ts[order], vs[order]
        keep = np.ones(len(ts), dtype=bool)
        keep[:-1] = ts[1:] != ts[:-1]
        self._series[series.labels] = Series(series.labels, ts[keep], vs[keep])

    def clear(self) -> None:
        """Forget every series."""
        self._series.clear()

    def all_series(self) -> list[Series]:
        """Every series with all its samples."""
        return list(self._series.values())

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """See :meth:`SeriesSource.select`."""
        out = []
        for labels, s in self._series.items():
            if not matches(labels, matchers):
                continue
            lo = int(np.searchsorted(s.ts, mint_ms, side="left"))
            hi = int(np.searchsorted(s.ts, maxt_ms, side="right"))
            if hi > lo:
                out.append(Series(labels, s.ts[lo:hi], s.values[lo:hi]))
        return out
