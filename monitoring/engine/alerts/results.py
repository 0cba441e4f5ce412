"""``RuleOutput`` from evaluator results: which series are in which result at which step."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.engine.alerts.model import RuleOutput
from monitoring.engine.model import METRIC_NAME, Labels, QueryResult, Series, drop_name

BoolMatrix = npt.NDArray[np.bool_]
FloatMatrix = npt.NDArray[np.float64]
RowIndex = npt.NDArray[np.int64]


def rule_output(times_ms: npt.ArrayLike, when: QueryResult, recover: QueryResult | None,
                value_of: QueryResult | None,
                known: Callable[[Labels], bool] | None = None) -> RuleOutput:
    """See :meth:`RuleOutput.from_results`.

    Series of ``when``, ``recover`` and ``value_of`` are matched by their labels
    without ``__name__`` (a comparison drops the name its left side still has).
    Rows are the series of ``when`` and of ``value_of``; a row keeps the labels
    it has in ``when`` when it appears there. With ``known`` (and no ``recover``),
    series of ``value_of`` that are not in ``when`` and for which ``known(labels)``
    is false are left out: they fire nowhere, so without an alert already
    theirs they change nothing (live evaluation leaves such rows out); no-data
    steps are still found from all of them. Results that carry their matrices
    (:class:`~monitoring.engine.model.GridValues`) are read whole; others are
    scattered onto the grid series by series.
    """
    times = np.asarray(times_ms, dtype=np.int64)
    when_m = _on_grid(times, when)
    value_m = _on_grid(times, value_of) if value_of is not None else None
    no_data = None
    if value_m is not None:
        no_data = ~np.logical_or.reduce(value_m.present, axis=0)
        if known is not None and recover is None:
            in_when = set(when_m.keys) if when_m is not None else set()
            value_m = value_m.only([k in in_when or known(lab)
                                    for k, lab in zip(value_m.keys, value_m.labels, strict=True)])
    rows: dict[Labels, int] = {}
    labels: list[Labels] = []
    for grid, primary in ((when_m, True), (value_m, False)):
        if grid is None:
            continue
        for series_labels, key in zip(grid.labels, grid.keys, strict=True):
            if key not in rows:
                rows[key] = len(labels)
                labels.append(series_labels)
            elif primary:
                labels[rows[key]] = series_labels
    shape = (len(labels), len(times))
    fire = np.zeros(shape, np.bool_)
    value = np.full(shape, math.nan)

    def when_rows(r: RowIndex, vals: FloatMatrix, present: BoolMatrix) -> None:
        fire[r] |= present
        value[r] = np.where(present, vals, value[r])

    _by_rows(rows, when_m, when_rows)
    data = fire.copy()
    if value_m is not None:

        def value_rows(r: RowIndex, vals: FloatMatrix, present: BoolMatrix) -> None:
            data[r] |= present
            value[r] = np.where(present & ~fire[r], vals, value[r])

        _by_rows(rows, value_m, value_rows)
    hold = None
    if recover is not None:
        hold = data.copy()

        def recover_rows(r: RowIndex, vals: FloatMatrix, present: BoolMatrix) -> None:
            hold[r] &= ~present

        _by_rows(rows, _on_grid(times, recover), recover_rows, known_only=True)
    return RuleOutput(times, labels, fire, value, hold, no_data)


@dataclass(frozen=True, slots=True)
class _Grid:
    """A result's series on the output grid, with their labels without ``__name__``."""

    labels: list[Labels]
    keys: list[Labels]
    values: FloatMatrix
    present: BoolMatrix

    def only(self, keep: list[bool]) -> _Grid:
        """The series where ``keep`` is true."""
        if all(keep):
            return self
        picked = [i for i, k in enumerate(keep) if k]
        return _Grid([self.labels[i] for i in picked], [self.keys[i] for i in picked],
                     self.values[picked], self.present[picked])


def _by_rows(rows: dict[Labels, int], grid: _Grid | None,
             apply: Callable[[RowIndex, FloatMatrix, BoolMatrix], None],
             known_only: bool = False) -> None:
    """Call ``apply`` with the output rows of ``grid``'s series and their matrices.

    All at once when no two series share an output row; otherwise series by
    series, in result order, so that a later series wins where both have a point.
    """
    if grid is None or not grid.labels:
        return
    values, present = grid.values, grid.present
    index = [rows.get(key, -1) for key in grid.keys]
    keep = np.fromiter((i >= 0 for i in index), dtype=np.bool_, count=len(index))
    r = np.asarray(index, dtype=np.int64)
    if known_only and not keep.all():
        r, values, present = r[keep], values[keep], present[keep]
    if len(np.unique(r)) == len(r):
        apply(r, values, present)
        return
    for i in range(len(r)):
        apply(r[i:i + 1], values[i:i + 1], present[i:i + 1])


def _on_grid(times: npt.NDArray[np.int64], result: QueryResult | None) -> _Grid | None:
    """A result's series as ``[series × steps]`` values and presence on ``times``."""
    if result is None:
        return None
    _check_kind(result)
    grid = result.grid
    if grid is not None and np.array_equal(result.steps, times):
        return _Grid(grid.labels, [_key(lab) for lab in grid.labels], grid.values,
                     grid.present)
    series = result.series  # built now if the evaluator left that for later
    present = np.zeros((len(series), len(times)), np.bool_)
    values = np.zeros((len(series), len(times)))
    for i, s in enumerate(series):
        cols = _columns(times, s)
        present[i, cols] = True
        values[i, cols] = s.values
    return _Grid([s.labels for s in series], [_key(s.labels) for s in series], values,
                 present)


def _key(labels: Labels) -> Labels:
    """``labels`` without ``__name__``: the same tuple when it has none.

    Label sets are sorted by name, so one whose first name sorts after
    ``__name__`` has none; a comparison's result (most alert conditions)
    has dropped it already, and ``drop_name`` would copy each of them.
    """
    if not labels or labels[0][0] > METRIC_NAME:
        return labels
    return drop_name(labels)


def _check_kind(result: QueryResult) -> None:
    if result.kind not in ("vector", "matrix"):
        raise ValueError(f"an alert condition must return series, not a {result.kind}")


def _columns(times: npt.NDArray[np.int64], series: Series) -> npt.NDArray[np.int64]:
    cols = np.searchsorted(times, series.ts)
    ok = (cols < len(times)) & (times[np.minimum(cols, len(times) - 1)] == series.ts)
    if not bool(ok.all()):
        raise ValueError("result points are not on the evaluation grid")
    return cols.astype(np.int64)
