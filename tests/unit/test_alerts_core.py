"""The one-column state machine (live evaluation) against the many-column one."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.alerts import core
from monitoring.engine.alerts.model import NO_TIME, AlertState

MIN = 60_000
T = 100 * MIN

state = st.sampled_from([AlertState.INACTIVE, AlertState.PENDING, AlertState.FIRING])
row = st.tuples(state, st.integers(0, 20 * MIN), st.one_of(st.none(), st.integers(0, 20 * MIN)),
                st.booleans())
durations = st.sampled_from([0, 1, MIN - 1, MIN, 5 * MIN, 10 * MIN])


@settings(max_examples=500, deadline=None)
@given(st.lists(row, max_size=12), durations, durations, st.integers(0, 30 * MIN))
def test_one_column_is_the_general_machine_on_one_column(
        rows: list[tuple[AlertState, int, int | None, bool]], for_ms: int, keep_ms: int,
        t_offset: int) -> None:
    """Consistent previous states: ActiveAt and KeepFiringSince at or before the column."""
    t = T + t_offset
    prev_state = np.array([int(s) for s, *_ in rows], dtype=np.int8)
    active_at = np.array([T - a if s is not AlertState.INACTIVE else NO_TIME
                          for s, a, _, _ in rows], dtype=np.int64)
    keep_since = np.array([T - k if s is AlertState.FIRING and k is not None and keep_ms
                           else NO_TIME for s, _, k, _ in rows], dtype=np.int64)
    cond = np.array([[c] for *_, c in rows], dtype=bool).reshape(len(rows), 1)
    times = np.array([t], dtype=np.int64)
    want = core._many_columns(cond, times, prev_state, active_at, keep_since, for_ms, keep_ms)
    got = core.run(cond, times, prev_state, active_at, keep_since, for_ms, keep_ms)
    assert got.states.dtype == want.states.dtype and got.keep_since.dtype == np.int64
    assert got.states.tolist() == want.states.tolist()
    assert got.keep_since.tolist() == want.keep_since.tolist()
