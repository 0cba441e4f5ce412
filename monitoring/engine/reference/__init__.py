"""The reference PromQL evaluator: plain, step-by-step, pure Python.

It exists to be obviously right, not fast. Tests use it to cross-check the
vectorised evaluator and to run Prometheus's PromQL conformance files. Each
evaluation step is computed on its own, exactly as Prometheus 3.x's engine
(promql/engine.go, functions.go, quantile.go) defines the value at that step:
5-minute lookback and staleness markers for instant selectors, left-open
right-closed windows for range selectors, ``offset`` and ``@``, subqueries on
a step grid aligned to multiples of their step, Kahan summation where
Prometheus uses it, and delayed metric-name removal (series are marked
``drop_name`` and lose ``__name__`` when the query finishes). Annotations use
Prometheus's wording.

Only float samples exist here (no native histograms). Project extensions of
the function registry that Prometheus lacks (``between``, ``outside``,
``trend``, ``forecast``, ``anomaly``, ``outlier_score``, ``weighted``), and
``info()``/``histogram_fraction()``, raise :class:`EvalError` saying they are
not supported by the reference evaluator.
"""

from __future__ import annotations

import numpy as np

from monitoring.dsl.ir import Node
from monitoring.engine.model import EvalError, Labels, QueryResult, Series, SeriesSource
from monitoring.engine.query import QueryOptions
from monitoring.engine.reference.core import TOO_MANY_SAMPLES, Evaluator
from monitoring.engine.reference.values import Matrix, Sample, drop_metadata
from monitoring.stdlib.types import ValueType

__all__ = ["evaluate"]


def evaluate(node: Node, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int,
             options: QueryOptions | None = None, *, instant: bool = False) -> QueryResult:
    """Evaluate ``node`` as an instant query at ``start_ms`` or a range query.

    See :mod:`monitoring.engine.query` for the result shapes.
    """
    opts = options or QueryOptions()
    if instant:
        end_ms = start_ms
        step_ms = 0  # what step() answers in an instant query
    if step_ms <= 0 and not instant and end_ms != start_ms:
        raise EvalError("zero or negative query resolution step widths are not accepted")
    ev = Evaluator(source, start_ms, end_ms, step_ms, opts)
    if instant:
        result = _instant(ev, node, start_ms)
    else:
        result = _range(ev, node, start_ms, end_ms, step_ms)
    result.warnings = list(ev.warnings)
    result.infos = list(ev.infos)
    return result


def _finish(vec: list[Sample]) -> list[tuple[Labels, float]]:
    """``cleanupMetricLabels``: drop marked names, then insist on unique label sets."""
    out = [(drop_metadata(s.labels) if s.drop_name else s.labels, s.value) for s in vec]
    if len({labels for labels, _ in out}) != len(out):
        raise EvalError("vector cannot contain metrics with the same labelset")
    return out


def _steps(*times: int) -> np.ndarray:
    return np.array(times, dtype=np.int64)


def _instant(ev: Evaluator, node: Node, t: int) -> QueryResult:
    value = ev.eval(node, t)
    steps = _steps(t)
    if isinstance(value, str):
        return QueryResult("string", steps, string=value)
    if isinstance(value, float):
        return QueryResult("scalar", steps, [Series((), steps.copy(), np.array([value]))])
    if isinstance(value, Matrix):
        merged: dict[Labels, list[tuple[int, float]]] = {}
        for s in value.series:
            labels = drop_metadata(s.labels) if s.drop_name else s.labels
            points = merged.setdefault(labels, [])
            points.extend(zip(s.ts, s.values, strict=True))
        series = []
        for labels, points in merged.items():
            points.sort(key=lambda p: p[0])
            times = [p[0] for p in points]
            if len(set(times)) != len(times):
                raise EvalError("vector cannot contain metrics with the same labelset")
            series.append(Series.of(labels, points))
        return QueryResult("matrix", steps, series)
    series = [Series(labels, steps.copy(), np.array([v], dtype=np.float64))
              for labels, v in _finish(value)]
    return QueryResult("vector", steps, series)


def _range(ev: Evaluator, node: Node, start: int, end: int, step: int) -> QueryResult:
    if node.type not in (ValueType.SCALAR, ValueType.VECTOR):
        raise EvalError(f'invalid expression type "{node.type}" for range query, must be '
                        "Scalar or instant Vector")
    times = list(range(start, end + 1, step)) if step > 0 else [start]
    # As ``rangeEval`` assembles a range result: output series are keyed by their
    # labels *before* names are dropped, and a series takes its drop-name flag from
    # its first point; ``cleanupMetricLabels`` then drops the names and merges
    # series that became equal, failing where two of them have a point at one step.
    points: dict[Labels, tuple[bool, list[int], list[float]]] = {}
    for t in times:
        value = ev.eval(node, t)
        samples: list[tuple[Labels, bool, float]]
        if isinstance(value, float):
            samples = [((), False, value)]
        else:
            assert isinstance(value, list)
            samples = [(s.labels, s.drop_name, s.value) for s in value]
        for labels, drop, v in samples:
            entry = points.setdefault(labels, (drop, [], []))
            if entry[1] and entry[1][-1] == t:
                raise EvalError("vector cannot contain metrics with the same labelset")
            entry[1].append(t)
            entry[2].append(v)
    merged: dict[Labels, dict[int, float]] = {}
    for labels, (drop, ts, vs) in points.items():
        final = drop_metadata(labels) if drop else labels
        at = merged.setdefault(final, {})
        for t, v in zip(ts, vs, strict=True):
            if t in at:
                raise EvalError("vector cannot contain metrics with the same labelset")
            at[t] = v
    points_final = {labels: (sorted(at), [at[t] for t in sorted(at)])
                    for labels, at in merged.items()}
    limit = ev.options.max_samples
    if limit is not None and sum(len(ts) for ts, _ in points_final.values()) > limit:
        raise EvalError(TOO_MANY_SAMPLES)
    series = [Series(labels, np.array(ts, dtype=np.int64), np.array(vs, dtype=np.float64))
              for labels, (ts, vs) in sorted(points_final.items())]
    return QueryResult("matrix", _steps(*times), series)
