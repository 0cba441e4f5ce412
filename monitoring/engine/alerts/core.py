"""The vectorised state machine: Prometheus's ``AlertingRule.Eval`` over many steps at once.

Prometheus evaluates one step at a time; a dry-run needs tens of thousands of
steps for thousands of alerts, so nothing here loops over steps or alerts.

For one alert row, the condition is true on *runs* of columns. A run starts an
alert (``ActiveAt`` = the run's first time); it fires at the first column
where ``t - ActiveAt >= for``. A firing alert survives a *gap* (columns where
the condition is false) while ``t - gap start < keep_firing_for``; if the
condition comes back inside that window the same alert goes on. So whether a
run ends firing depends only on whether it fires on its own or follows a
firing run across a bridged gap: a recurrence over runs, solved with running
maxima of run indices. The matrix is read once to find the runs (edges of the
padded boolean matrix) and written once to paint the states; everything in
between has one entry per run. State from a previous call enters as a
virtual run starting before column 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.engine.alerts.model import NO_TIME, AlertState

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
States = npt.NDArray[np.int8]

_PENDING = np.int8(AlertState.PENDING)
_FIRING = np.int8(AlertState.FIRING)


def hysteresis(fire: Bools, hold: Bools, prev: Bools) -> Bools:
    """``active[t] = fire[t] or (active[t-1] and hold[t])``, ``active[-1] = prev``, per row."""
    cols = fire.shape[1]
    if cols == 0:
        return fire.copy()
    idx = np.arange(1, cols + 1, dtype=np.int32)
    sets = np.where(fire, idx, np.int32(0))
    breaks = np.where(fire | hold, np.int32(0), idx)
    last_set = np.maximum.accumulate(sets, axis=1)
    last_break = np.maximum.accumulate(breaks, axis=1)
    active: Bools = last_set > last_break
    # Rows that were active before and never saw a set nor a break yet stay active.
    carried = prev[:, None] & (last_set == 0) & (last_break == 0)
    out: Bools = active | carried
    return out


@dataclass(slots=True)
class CoreResult:
    """States per column plus the KeepFiringSince the next call needs to continue."""

    states: States          # [A, C] INACTIVE/PENDING/FIRING
    keep_since: Ints        # [A] KeepFiringSince at the last column (NO_TIME if none)


def run(cond: Bools, times: Ints, prev_state: States, prev_active_at: Ints,
        prev_keep_since: Ints, for_ms: int, keep_firing_for_ms: int) -> CoreResult:
    """States of every alert row at every column, given its condition per column.

    ``cond[a, c]`` is "the alert's series is in the result at ``times[c]``";
    ``prev_*`` describe each row before column 0 (state, ActiveAt, and
    KeepFiringSince when a firing alert is in its keep-firing window). Needs at
    least one column. One column (live evaluation) takes the direct rules of
    :func:`_one_column`, in a fifth of the NumPy calls; more take
    :func:`_many_columns`. The two agree (tests/unit/test_alerts_core.py).
    """
    if cond.shape[1] == 1:
        return _one_column(cond, int(times[0]), prev_state, prev_active_at, prev_keep_since,
                           for_ms, keep_firing_for_ms)
    return _many_columns(cond, times, prev_state, prev_active_at, prev_keep_since, for_ms,
                         keep_firing_for_ms)


def _one_column(cond: Bools, t: int, prev_state: States, prev_active_at: Ints,
                prev_keep_since: Ints, for_ms: int, keep_firing_for_ms: int) -> CoreResult:
    """:func:`run` for one column (live evaluation), rule by rule as Prometheus steps.

    In the result: a pending or firing alert goes on (firing once ``t - ActiveAt
    >= for``), a firing one in its keep-firing window fires again, an inactive
    one becomes pending at ``t`` (firing at once when ``for`` is 0). Not in the
    result: a firing alert keeps firing while ``t`` is inside the window that
    began with its first miss, anything else is inactive.
    """
    c = cond[:, 0]
    firing = prev_state == _FIRING
    keeping = firing & (prev_keep_since != NO_TIME)
    carried = (prev_state == _PENDING) | (firing & ~keeping)
    since = np.where(carried, prev_active_at, t)
    fires = firing | (since <= t - for_ms)
    gap_since = np.where(keeping, prev_keep_since, t)
    kept = firing & ~c & (t < gap_since + keep_firing_for_ms)
    states = np.where(c, np.where(fires, _FIRING, _PENDING), np.where(kept, _FIRING, 0))
    keep_since = np.where(kept, gap_since, NO_TIME)
    return CoreResult(states.astype(np.int8).reshape(len(c), 1), keep_since.astype(np.int64))


def _many_columns(cond: Bools, times: Ints, prev_state: States, prev_active_at: Ints,
                  prev_keep_since: Ints, for_ms: int, keep_firing_for_ms: int) -> CoreResult:
    """:func:`run` over any number of columns.

    The matrix is read once to find the runs; the rest works on arrays with one
    entry per run, and the states are painted at the end.
    """
    rows, cols = cond.shape
    runs = _runs(cond, prev_state, prev_active_at, prev_keep_since, times)
    row, start, end, since, gap_since = runs.row, runs.start, runs.end, runs.since, runs.gap_since
    first = np.maximum(start, 0)
    # Alone, a run fires at its first column with t - ActiveAt >= for (carried firing: at once).
    fire_at = np.maximum(np.searchsorted(times, since + for_ms, side="left"), first)
    fire_at = np.where(runs.forced, first, fire_at)
    fires_alone = runs.forced | (fire_at < end)
    # After a run, a firing alert keeps firing on the columns before `keep_end`.
    gap_ok = end < cols
    keep_end = np.where(gap_ok | runs.virtual_gap,
                        np.searchsorted(times, gap_since + keep_firing_for_ms, side="left"), cols)
    keep_end = np.minimum(keep_end, cols)
    same_row_next = np.zeros(len(row), np.bool_)
    same_row_next[:-1] = row[1:] == row[:-1]
    next_start = np.full(len(row), cols, np.int64)
    next_start[:-1] = np.where(same_row_next[:-1], first[1:], cols)
    bridged = same_row_next & (next_start <= keep_end)
    # X[r]: firing at the end of run r = fires alone, or the previous run was firing and
    # its gap was bridged. Solved with running maxima of run indices.
    linked = np.zeros(len(row), np.bool_)
    linked[1:] = bridged[:-1]
    idx = np.arange(len(row))
    last_set = np.maximum.accumulate(np.where(fires_alone, idx, -1)) if len(row) else idx
    last_unlinked = np.maximum.accumulate(np.where(linked, -1, idx)) if len(row) else idx
    firing_end = last_set >= last_unlinked
    carried_in = np.zeros(len(row), np.bool_)
    carried_in[1:] = linked[1:] & firing_end[:-1]
    fire_from = np.where(carried_in | runs.forced, first, np.minimum(fire_at, end))
    gap_end = np.where(firing_end, np.minimum(keep_end, next_start), end)
    gap_from = np.where(runs.virtual_gap, 0, end)

    # Paint: pending [first, fire_from), firing [fire_from, end) and [gap_from, gap_end).
    base = row.astype(np.int64) * cols
    delta = np.zeros(rows * cols + 1, np.int8)
    for lo, hi, value in ((first, fire_from, 1), (fire_from, end, 2), (gap_from, gap_end, 2)):
        keep = hi > lo
        np.add.at(delta, base[keep] + lo[keep], np.int8(value))
        np.add.at(delta, base[keep] + hi[keep], np.int8(-value))
    states = np.cumsum(delta[:-1], dtype=np.int8).reshape(rows, cols)

    keep_since = np.full(rows, NO_TIME, np.int64)
    last_of_row = np.flatnonzero(~same_row_next)
    tail = last_of_row[firing_end[last_of_row] & (gap_end[last_of_row] >= cols)
                       & (end[last_of_row] < cols)]
    keep_since[row[tail]] = gap_since[tail]
    return CoreResult(states, keep_since)


@dataclass(slots=True)
class _Runs:
    """Runs of the condition, sorted by (row, start); one entry per run.

    ``start`` is -1 for a run carried from before column 0 (its ActiveAt is
    ``since``); ``end`` is exclusive. A carried keep-firing alert is an empty
    run ``[-1, 0)`` whose gap began at its KeepFiringSince (``virtual_gap``).
    """

    row: Ints
    start: Ints
    end: Ints
    since: Ints
    gap_since: Ints
    forced: Bools
    virtual_gap: Bools


def _runs(cond: Bools, prev_state: States, prev_active_at: Ints, prev_keep_since: Ints,
          times: Ints) -> _Runs:
    rows, cols = cond.shape
    firing = prev_state == _FIRING
    keeping = firing & (prev_keep_since != NO_TIME)
    carried = (prev_state == _PENDING) | (firing & ~keeping)
    padded = np.zeros((rows, cols + 2), np.bool_)
    padded[:, 0] = carried
    padded[:, 1:cols + 1] = cond
    edge_row, edge_col = np.nonzero(padded[:, 1:] != padded[:, :-1])
    is_start = padded[edge_row, edge_col + 1]
    carried_rows = np.flatnonzero(carried)
    keeping_rows = np.flatnonzero(keeping)
    start_row = np.concatenate([carried_rows, edge_row[is_start], keeping_rows])
    start_col = np.concatenate([np.full(len(carried_rows), -1), edge_col[is_start],
                                np.full(len(keeping_rows), -1)])
    end_row = np.concatenate([edge_row[~is_start], keeping_rows])
    end_col = np.concatenate([edge_col[~is_start], np.zeros(len(keeping_rows), np.int64)])
    # A keeping row has an empty virtual run at -1; sort it first in its row.
    order_s = np.lexsort((start_col, start_row))
    order_e = np.lexsort((end_col, end_row))
    row = start_row[order_s].astype(np.int64)
    start = start_col[order_s].astype(np.int64)
    end = end_col[order_e].astype(np.int64)
    virtual = start < 0
    since = np.where(virtual, prev_active_at[row], times[np.maximum(start, 0)])
    virtual_gap = virtual & keeping[row]
    gap_since = np.where(virtual_gap, prev_keep_since[row],
                         times[np.minimum(end, cols - 1)])
    return _Runs(row, start, end, since, gap_since, virtual & firing[row], virtual_gap)
