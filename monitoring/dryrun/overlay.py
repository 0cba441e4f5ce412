"""A read-only source: the store plus the series that recording rules produced in the dry-run.

A dry-run never writes to the store, yet alerting rules read what recording
rules record. The overlay answers ``select`` from both: the store's series and
the recorded series held in memory. A metric name that a recording rule of the
rule set produces is taken from the dry-run only (stored series of that name
are hidden), since the rule set under test may compute it differently from
whatever wrote the store.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from monitoring.engine.memory import MemorySource, matches
from monitoring.engine.model import METRIC_NAME, Labels, Matcher, Series, SeriesSource, metric_name


class OverlaySource:
    """A :class:`~monitoring.engine.model.SeriesSource` over a base source and recorded series."""

    def __init__(self, base: SeriesSource, recorded_names: Sequence[str] = ()) -> None:
        self.base = base
        self.recorded = MemorySource()
        self.recorded_names = frozenset(recorded_names)

    def add(self, series: Series) -> None:
        """Add recorded samples (merged with earlier ones of the same series)."""
        self.recorded.add(series)

    def _base_may_match(self, matchers: Sequence[Matcher]) -> bool:
        """Whether the base can hold matching series that are not hidden."""
        for name, op, value in matchers:
            if name == METRIC_NAME and op == "=" and value in self.recorded_names:
                return False
        return True

    def _visible(self, series: list[Series]) -> list[Series]:
        if not self.recorded_names:
            return series
        return [s for s in series if metric_name(s.labels) not in self.recorded_names]

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """See :meth:`SeriesSource.select`."""
        out: list[Series] = []
        for group in self.select_groups(matchers, mint_ms, maxt_ms):
            out.extend(group)
        return out

    def select_groups(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int,
                      **options: Any) -> Iterator[list[Series]]:
        """Base series in the groups the base reads them in (if it can), then recorded ones.

        ``options`` (e.g. the group size) are passed on to the base's ``select_groups``.
        """
        if self._base_may_match(matchers):
            groups = getattr(self.base, "select_groups", None)
            if groups is None:
                yield self._visible(self.base.select(matchers, mint_ms, maxt_ms))
            else:
                for group in groups(matchers, mint_ms, maxt_ms, **options):
                    yield self._visible(group)
        recorded = self.recorded.select(matchers, mint_ms, maxt_ms)
        if recorded:
            yield recorded

    def series_matching(self, matchers: Sequence[Matcher]) -> list[Labels]:
        """Label sets of the series (stored or recorded so far) that match ``matchers``."""
        out: list[Labels] = []
        if self._base_may_match(matchers):
            listing = getattr(self.base, "series_matching", None)
            stored = listing(matchers) if listing is not None else \
                [s.labels for s in self.base.select(matchers, -(2**63), 2**63 - 1)]
            out.extend(ls for ls in stored if metric_name(ls) not in self.recorded_names)
        out.extend(s.labels for s in self.recorded.all_series()
                   if matches(s.labels, matchers))
        return out

