"""The across-series paths of the fast evaluator give what the per-series loops give, bit for bit.

Single-step evaluation (the live engine: one instant, many series) runs sums and
means as cumulative sums over ``[rank × group]`` columns, and window and
instant lookups as one search over all series' samples. Each is compared here
with the loop it replaces (still used as the fallback) on random data with the
awkward cases: signed zeros, huge and tiny magnitudes that round, overflow,
absent cells, staleness markers, empty series, times outside the samples.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from monitoring.engine.fast import aggregate, search, selectors
from monitoring.engine.fast.kernels import build_windows
from monitoring.engine.fast.values import Vector
from monitoring.engine.model import STALE_BITS, Series

STALE = struct.unpack("<d", struct.pack("<Q", STALE_BITS))[0]


def _values(rng: np.random.Generator, kind: int, shape: tuple[int, int]) -> np.ndarray:
    if kind == 0:  # magnitudes 1e-20 .. 1e20: every addition rounds
        return rng.normal(0, 1, shape) * 10.0 ** rng.integers(-20, 20, shape)
    if kind == 1:  # overflow and signed zeros: the loop's own path
        return rng.choice([0.0, -0.0, 1e308, -1e308, 1.0, 1e-300, 3.0], shape)
    if kind == 2:
        return rng.choice([0.0, -0.0], shape)
    return rng.random(shape) * 1e16 - 5e15


@pytest.mark.parametrize("seed", range(4))
def test_sum_and_avg_match_the_rank_by_rank_loop(seed: int,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    fast_runs = 0
    for trial in range(300):
        n, steps = int(rng.integers(1, 60)), int(rng.integers(1, 5))
        values = _values(rng, trial % 4, (n, steps))
        present = rng.random((n, steps)) < 0.8
        _, ids = np.unique(rng.integers(0, int(rng.integers(1, n + 1)), n), return_inverse=True)
        groups = aggregate._Groups(ids.astype(np.int64), int(ids.max()) + 1)
        vec = Vector([()] * n, values, present, np.zeros(n, dtype=bool))
        fast_runs += aggregate._kahan_columns(vec, groups) is not None
        for fn in (aggregate._sum, aggregate._avg):
            got = fn(vec, groups)
            with monkeypatch.context() as m:
                m.setattr(aggregate, "_kahan_columns", lambda *_: None)
                want = fn(vec, groups)
            assert np.array_equal(got[1], want[1])
            # Bit for bit, signed zeros included; a NaN (absent cells of avg) is any NaN.
            nan = np.isnan(want[0])
            assert np.array_equal(np.isnan(got[0]), nan)
            assert np.where(nan, 0.0, got[0]).tobytes() == np.where(nan, 0.0, want[0]).tobytes()
    assert fast_runs > 150  # most of the 300 inputs take the cumulative-sum path


def test_a_small_kahan_block_size_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(9)
    values = _values(rng, 0, (40, 30))
    present = rng.random((40, 30)) < 0.7
    groups = aggregate._Groups(np.arange(40, dtype=np.int64) % 3, 3)
    vec = Vector([()] * 40, values, present, np.zeros(40, dtype=bool))
    want = aggregate._kahan_columns(vec, groups)
    monkeypatch.setattr(aggregate, "KAHAN_CELLS", 7)
    got = aggregate._kahan_columns(vec, groups)
    assert want is not None and got is not None
    for a, b in zip(got, want, strict=True):
        assert a.tobytes() == b.tobytes()


def _random_series(rng: np.random.Generator, n: int, stale: bool) -> list[Series]:
    out = []
    for i in range(n):
        ts = np.unique(rng.integers(0, 1000, int(rng.integers(0, 25)))).astype(np.int64)
        vs = rng.random(len(ts))
        if stale and len(vs):
            vs[rng.random(len(vs)) < 0.3] = STALE
            vs[rng.random(len(vs)) < 0.1] = np.nan
        out.append(Series((("__name__", "m"), ("i", f"{i:02d}")), ts, vs))
    return out


@pytest.mark.parametrize("seed", range(3))
def test_search_all_is_searchsorted_per_series(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(200):
        ts_list = [s.ts for s in _random_series(rng, int(rng.integers(1, 10)), False)]
        lens = np.array([len(t) for t in ts_list], dtype=np.int64)
        first = np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64)
        times = rng.integers(-300, 1300, int(rng.integers(1, 8))).astype(np.int64)
        flat = np.concatenate(ts_list)
        for side in ("left", "right"):
            want = np.array([np.searchsorted(t, times, side=side) + f
                             for t, f in zip(ts_list, first.tolist(), strict=True)])
            got = search.search_all(flat, first, lens, times, side)
            assert got is not None and np.array_equal(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_windows_and_lookups_match_the_per_series_loops(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(seed)
    for trial in range(150):
        raw = selectors.selection_of(_random_series(rng, int(rng.integers(2, 9)),
                                                    trial % 2 == 0))
        steps, step = int(rng.integers(1, 12)), int(rng.integers(1, 60))
        ends = int(rng.integers(-200, 1200)) + step * np.arange(steps, dtype=np.int64)
        range_ms = int(rng.choice([step, 3 * step, 37, 500]))
        lookback = int(rng.integers(1, 300))
        mint, maxt = int(rng.integers(-50, 600)), int(rng.integers(400, 1100))
        ts_list, vs_list = raw.samples.ts_list, raw.samples.vs_list
        windows = build_windows(ts_list, vs_list, ends, range_ms, ends, [])
        values, present, stamps = selectors.instant_lookup(raw, ends, lookback, True)
        cut = raw.cut(mint, maxt)
        with monkeypatch.context() as m:
            m.setattr(search, "SEARCH_KEY_LIMIT", 0)  # every caller falls back to its loop
            loop_windows = build_windows(ts_list, vs_list, ends, range_ms, ends, [])
            loop_values, loop_present, loop_stamps = selectors.instant_lookup(
                raw, ends, lookback, True)
            loop_cut = raw.cut(mint, maxt)
        assert np.array_equal(windows.lo, loop_windows.lo)
        assert np.array_equal(windows.hi, loop_windows.hi)
        assert np.array_equal(present, loop_present)
        assert values.tobytes() == loop_values.tobytes()  # absent cells too
        assert stamps is not None and loop_stamps is not None
        assert np.array_equal(stamps[present], loop_stamps[present])
        assert _rows(cut) == _rows(loop_cut)


def _rows(sel: selectors.Selection) -> list[tuple[object, ...]]:
    """A selection series by series, comparable whatever its layout."""
    s = sel.samples
    return [(labels, ts.tolist(), vs.tobytes(), None if st is None else st.tolist())
            for labels, ts, vs, st in zip(sel.labels, s.ts_list, s.vs_list, s.stale_list,
                                          strict=True)]


def test_prepare_finds_staleness_markers_with_and_without_the_joint_check(
        monkeypatch: pytest.MonkeyPatch) -> None:
    series = _random_series(np.random.default_rng(5), 30, True)
    joint = selectors.selection_of(series)
    monkeypatch.setattr(selectors, "FLAT_SAMPLES", 0)
    each = selectors.selection_of(series)
    marks = joint.samples.stale_list
    values = joint.samples.vs_list
    assert any(m is not None for m in marks)
    assert any(m is None and np.isnan(v).any() for m, v in zip(marks, values, strict=True))
    assert joint.labels == each.labels
    for a, b, v in zip(marks, each.samples.stale_list, values, strict=True):
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert np.array_equal(a, b)
            assert np.array_equal(a, v.view(np.uint64) == STALE_BITS)


def test_long_ranges_take_the_rank_by_rank_loop() -> None:
    groups = aggregate._Groups(np.arange(6, dtype=np.int64) % 2, 2)
    for steps, columns in ((aggregate.KAHAN_COLUMNS_MAX_STEPS, True),
                           (aggregate.KAHAN_COLUMNS_MAX_STEPS + 1, False)):
        vec = Vector([()] * 6, np.ones((6, steps)), np.ones((6, steps), dtype=bool),
                     np.zeros(6, dtype=bool))
        assert (aggregate._kahan_columns(vec, groups) is not None) is columns
        total, seen = aggregate._sum(vec, groups)
        assert seen.all() and (total == 3.0).all()


def test_long_ranges_search_series_by_series(monkeypatch: pytest.MonkeyPatch) -> None:
    from monitoring.engine.fast import kernels

    rng = np.random.default_rng(3)
    raw = selectors.selection_of(_random_series(rng, 4, False))
    ts_list, vs_list = raw.samples.ts_list, raw.samples.vs_list
    short = np.arange(search.FLAT_MAX_STEPS, dtype=np.int64) * 10
    long = np.arange(search.FLAT_MAX_STEPS + 1, dtype=np.int64) * 10
    want_windows = build_windows(ts_list, vs_list, long, 30, long, [])
    want_lookup = selectors.instant_lookup(raw, long, 100)

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("combined keys built for a long range")

    monkeypatch.setattr(kernels, "search_all", refuse)
    monkeypatch.setattr(selectors, "search_all", refuse)
    got = build_windows(ts_list, vs_list, long, 30, long, [])
    assert np.array_equal(got.lo, want_windows.lo) and np.array_equal(got.hi, want_windows.hi)
    values, present, _ = selectors.instant_lookup(raw, long, 100)
    assert values.tobytes() == want_lookup[0].tobytes()
    assert np.array_equal(present, want_lookup[1])
    with pytest.raises(AssertionError, match="combined keys"):
        build_windows(ts_list, vs_list, short, 30, short, [])
