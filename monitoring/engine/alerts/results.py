"""``RuleOutput`` from evaluator results: which series are in which result at which step."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from monitoring.engine.alerts.model import RuleOutput
from monitoring.engine.model import Labels, QueryResult, Series, drop_name


def rule_output(times_ms: npt.ArrayLike, when: QueryResult, recover: QueryResult | None,
                value_of: QueryResult | None) -> RuleOutput:
    """See :meth:`RuleOutput.from_results`.

    Series of ``when``, ``recover`` and ``value_of`` are matched by their labels
    without ``__name__`` (a comparison drops the name its left side still has).
    Rows are the series of ``when`` and of ``value_of``; a row keeps the labels
    it has in ``when`` when it appears there.
    """
    times = np.asarray(times_ms, dtype=np.int64)
    rows: dict[Labels, int] = {}
    labels: list[Labels] = []
    for result, primary in ((when, True), (value_of, False)):
        for series in _series(result):
            key = drop_name(series.labels)
            if key not in rows:
                rows[key] = len(labels)
                labels.append(series.labels)
            elif primary:
                labels[rows[key]] = series.labels
    shape = (len(labels), len(times))
    fire = np.zeros(shape, np.bool_)
    value = np.full(shape, math.nan)
    for series in _series(when):
        cols = _columns(times, series)
        r = rows[drop_name(series.labels)]
        fire[r, cols] = True
        value[r, cols] = series.values
    data = fire.copy()
    no_data = None
    if value_of is not None:
        seen = np.zeros(len(times), np.bool_)
        for series in _series(value_of):
            cols = _columns(times, series)
            r = rows[drop_name(series.labels)]
            data[r, cols] = True
            seen[cols] = True
            absent = ~fire[r, cols]
            value[r, cols[absent]] = series.values[absent]
        no_data = ~seen
    hold = None
    if recover is not None:
        hold = data.copy()
        for series in _series(recover):
            r_opt = rows.get(drop_name(series.labels))
            if r_opt is not None:
                hold[r_opt, _columns(times, series)] = False
    return RuleOutput(times, labels, fire, value, hold, no_data)


def _series(result: QueryResult | None) -> list[Series]:
    if result is None:
        return []
    if result.kind not in ("vector", "matrix"):
        raise ValueError(f"an alert condition must return series, not a {result.kind}")
    return result.series


def _columns(times: npt.NDArray[np.int64], series: Series) -> npt.NDArray[np.int64]:
    cols = np.searchsorted(times, series.ts)
    ok = (cols < len(times)) & (times[np.minimum(cols, len(times) - 1)] == series.ts)
    if not bool(ok.all()):
        raise ValueError("result points are not on the evaluation grid")
    return cols.astype(np.int64)
