"""A recording rule's output over the range, as Prometheus would have written it.

Samples carry the query time (evaluation time minus ``query_offset``), and a
series that disappears from the result gets a staleness marker at the first
evaluation without it, as Prometheus writes both (rules/group.go). The
dry-run keeps them in memory (:class:`~monitoring.dryrun.overlay.OverlaySource`)
instead of writing them to the store.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from monitoring.dsl.compiler import CompiledRule
from monitoring.engine.model import METRIC_NAME, STALE_NAN, Labels, QueryResult, Series

DUPLICATE = "vector contains metrics with the same labelset after applying rule labels"


def record_labels(rule: CompiledRule, labels: Labels) -> Labels:
    """Result labels with the recorded name, then group labels, then rule labels on top."""
    out = dict(labels)
    out[METRIC_NAME] = rule.name
    for pair in (*rule.group_ast.labels, *rule.rule.labels):
        if pair.value == "":
            out.pop(pair.key, None)
        else:
            out[pair.key] = pair.value
    return tuple(sorted(out.items()))


def recording_signature(rules: Sequence[CompiledRule]) -> tuple[object, ...]:
    """What determines the recorded series of a rule set (equal: they can be shared)."""
    return tuple(sorted(
        ((r.group, r.name, r.interval_ms, r.condition, record_labels(r, ()),
          r.group_ast.query_offset.ms if r.group_ast.query_offset is not None else 0)
         for r in rules if r.kind == "record"), key=repr))


class Recording:
    """One recording rule's samples, gathered chunk by chunk in time order."""

    def __init__(self, rule: CompiledRule) -> None:
        self.rule = rule
        self._parts: dict[Labels, tuple[list[npt.NDArray[np.int64]],
                                        list[npt.NDArray[np.float64]]]] = {}
        self._last: set[Labels] = set()  # series present at the previous chunk's last step

    def add(self, res: QueryResult, query_times: npt.NDArray[np.int64]) -> str | None:
        """One chunk's result at ``query_times``; an error message if the result is invalid."""
        n = len(query_times)
        index = {t: i for i, t in enumerate(query_times.tolist())}
        present: dict[Labels, npt.NDArray[np.bool_]] = {}
        values: dict[Labels, npt.NDArray[np.float64]] = {}
        for s in res.series:
            labels = record_labels(self.rule, s.labels)
            if labels in present:
                return DUPLICATE
            idx = np.array([index[t] for t in s.ts.tolist()], dtype=np.int64)
            present[labels] = np.zeros(n, dtype=bool)
            present[labels][idx] = True
            values[labels] = np.full(n, np.nan)
            values[labels][idx] = s.values
        for labels in self._last - present.keys():
            present[labels] = np.zeros(n, dtype=bool)
            values[labels] = np.full(n, np.nan)
        last: set[Labels] = set()
        for labels, mask in present.items():
            before = np.concatenate([[labels in self._last], mask[:-1]])
            stale = before & ~mask
            keep = mask | stale
            ts_list, vs_list = self._parts.setdefault(labels, ([], []))
            ts_list.append(query_times[keep].astype(np.int64))
            vs_list.append(np.where(stale, STALE_NAN, values[labels])[keep])
            if mask[-1]:
                last.add(labels)
        self._last = last
        return None

    def series(self) -> list[Series]:
        """Every recorded series with all its samples."""
        return [Series(labels, np.concatenate(ts), np.concatenate(vs))
                for labels, (ts, vs) in self._parts.items()]
