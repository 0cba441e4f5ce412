"""The compiled walks of monitoring/engine/fast/native.py against their twins.

Each compiled function must give what its NumPy twin gives, element for
element (values bit for bit, NaN included), and the compiled
``extrapolated_rate`` exactly what the reference evaluator's one-window
``extrapolatedRate`` gives, on generated series with resets, gaps, NaN and
infinities. Under ``CI=true`` the module must have been built: the evaluator
tests would otherwise check only the NumPy path.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.fast import kernels, native
from monitoring.engine.fast.kernels import build_windows, numpy_window_sums
from monitoring.engine.fast.kernels import extrapolated_rate as numpy_extrapolated_rate
from monitoring.engine.reference.rangefuncs import Ctx, _extrapolated

needs_native = pytest.mark.skipif(not native.AVAILABLE and os.environ.get("CI") != "true",
                                  reason="the compiled module was not built")


def test_the_compiled_module_is_built_in_ci() -> None:
    if os.environ.get("CI") == "true":
        assert native.AVAILABLE, "monitoring/engine/fast/_native.c was not built"


@st.composite
def sample_times(draw: st.DrawFn, max_len: int = 60) -> np.ndarray:
    """Strictly ascending times, with gaps."""
    gaps = draw(st.lists(st.integers(1, 40_000), max_size=max_len))
    start = draw(st.integers(-100_000, 100_000))
    return (start + np.cumsum(np.array(gaps, dtype=np.int64))).astype(np.int64)


@st.composite
def step_times(draw: st.DrawFn) -> np.ndarray:
    """Ascending evaluation times, repeats allowed (``@`` pins every step to one time)."""
    start = draw(st.integers(-200_000, 2_000_000))
    step = draw(st.integers(0, 70_000))
    count = draw(st.integers(0, 80))
    return start + step * np.arange(count, dtype=np.int64)


values = st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-50, 50).map(
    float)


@needs_native
@settings(max_examples=300, deadline=None)
@given(ts=sample_times(), keys=step_times(), shuffle=st.booleans())
def test_search_right_agrees_with_searchsorted(ts: np.ndarray, keys: np.ndarray,
                                               shuffle: bool) -> None:
    if shuffle:  # keys that do not ascend take the NumPy path, with the same answer
        keys = keys[::-1].copy()
    got = native.search_right(ts, keys)
    assert np.array_equal(got, native.numpy_search_right(ts, keys))


@needs_native
@settings(max_examples=300, deadline=None)
@given(ts=sample_times(), data=st.data(), times=step_times(),
       lookback=st.integers(1, 400_000), want_ts=st.booleans())
def test_lookup_agrees_with_its_numpy_twin(ts: np.ndarray, data: st.DataObject,
                                           times: np.ndarray, lookback: int,
                                           want_ts: bool) -> None:
    vs = np.array(data.draw(st.lists(values, min_size=len(ts), max_size=len(ts))),
                  dtype=np.float64)
    stale = np.array(data.draw(st.lists(st.booleans(), min_size=len(ts), max_size=len(ts))),
                     dtype=bool) if data.draw(st.booleans()) else None
    k = len(times)
    outs = []
    for lookup in (native.lookup, native.numpy_lookup):
        v = np.full(k, -1.5)
        p = np.zeros(k, dtype=bool)
        s = np.full(k, -7, dtype=np.int64) if want_ts else None
        lookup(ts, vs, stale, times, lookback, v, p, s)
        outs.append((v, p, s))
    (v1, p1, s1), (v2, p2, s2) = outs
    assert np.array_equal(v1, v2, equal_nan=True)
    assert np.array_equal(p1, p2)
    if s1 is not None:
        assert s2 is not None and np.array_equal(s1, s2)


@st.composite
def counter_series(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """A counter with frequent resets, or any values (NaN and infinities too)."""
    ts = draw(sample_times(max_len=50))
    if draw(st.booleans()):
        incs = draw(st.lists(st.floats(0, 1e6) | st.sampled_from([-1e9, 0.1, 3e-17]),
                             min_size=len(ts), max_size=len(ts)))
        vs = np.maximum(np.cumsum(np.array(incs, dtype=np.float64)), 0.0)
        for i in draw(st.lists(st.integers(0, max(len(ts) - 1, 0)), max_size=6)):
            if len(ts):
                vs[i:] -= vs[i]  # a reset to zero
        vs = np.abs(vs)
    else:
        vs = np.array(draw(st.lists(values, min_size=len(ts), max_size=len(ts))),
                      dtype=np.float64)
    return ts, vs


def _reference(func: str, ts: np.ndarray, vs: np.ndarray, ends: np.ndarray,
               range_ms: int) -> tuple[np.ndarray, np.ndarray]:
    is_counter, is_rate = native.EXTRAPOLATED[func]
    out = np.zeros(len(ends))
    ok = np.zeros(len(ends), dtype=bool)
    for j, end in enumerate(ends.tolist()):
        start = end - range_ms
        inside = (ts > start) & (ts <= end)
        ctx = Ctx(end, start, end, range_ms, ())
        got = _extrapolated(tuple(ts[inside].tolist()), tuple(vs[inside].tolist()), ctx,
                            is_counter, is_rate)
        if got is not None:
            out[j], ok[j] = got, True
    return out, ok


@needs_native
@settings(max_examples=300, deadline=None)
@given(series=counter_series(), ends=step_times(),
       range_ms=st.integers(1, 300_000) | st.sampled_from([60_000, 300_000, 1_500]),
       func=st.sampled_from(sorted(native.EXTRAPOLATED)))
def test_extrapolated_rate_is_prometheus_exactly(series: tuple[np.ndarray, np.ndarray],
                                                 ends: np.ndarray, range_ms: int,
                                                 func: str) -> None:
    ts, vs = series
    got = np.full(len(ends), -1.5)
    present = np.zeros(len(ends), dtype=bool)
    assert native.extrapolated_rate(func, ts, vs, ends, range_ms, got, present)
    want, ok = _reference(func, ts, vs, ends, range_ms)
    assert np.array_equal(present, ok)
    assert np.array_equal(got[ok], want[ok], equal_nan=True)
    assert not got[~ok].any()  # 0.0 where absent, as the NumPy kernels leave it


@needs_native
@settings(max_examples=300, deadline=None)
@given(ts=sample_times(max_len=50), data=st.data(), ends=step_times(),
       range_ms=st.integers(1, 300_000), func=st.sampled_from(sorted(native.EXTRAPOLATED)))
def test_the_numpy_kernel_agrees_on_whole_number_counters(
        ts: np.ndarray, data: st.DataObject, ends: np.ndarray, range_ms: int,
        func: str) -> None:
    # The NumPy kernel adds resets through prefix sums, exact for whole numbers below
    # 2**53: there both kernels must give the same bits (elsewhere the compiled one,
    # which adds them one by one as Prometheus does, is checked against the reference).
    vs = np.array(data.draw(st.lists(st.integers(0, 2**40), min_size=len(ts),
                                     max_size=len(ts))), dtype=np.float64)
    got = np.zeros(len(ends))
    present = np.zeros(len(ends), dtype=bool)
    assert native.extrapolated_rate(func, ts, vs, ends, range_ms, got, present)
    w = build_windows([ts], [vs], ends, range_ms, ends, [])
    is_counter, is_rate = native.EXTRAPOLATED[func]
    with np.errstate(all="ignore"):
        vals, ok = numpy_extrapolated_rate(w, is_counter, is_rate)
    assert np.array_equal(ok[0], present)
    assert np.array_equal(vals[0][present], got[present], equal_nan=True)


@needs_native
def test_descending_ends_are_left_to_the_numpy_kernel() -> None:
    ts = np.arange(0, 600_000, 15_000, dtype=np.int64)
    vs = np.arange(len(ts), dtype=np.float64)
    out = np.full(3, 9.0)
    present = np.ones(3, dtype=bool)
    ends = np.array([500_000, 400_000, 300_000], dtype=np.int64)
    assert not native.extrapolated_rate("rate", ts, vs, ends, 60_000, out, present)
    assert out.tolist() == [9.0] * 3 and present.all()  # untouched
    assert not native.extrapolated_rate("irate", ts, vs, ends[::-1].copy(), 60_000, out,
                                        present)  # not one of its functions


@needs_native
@settings(max_examples=300, deadline=None)
@given(data=st.data(), ends=step_times(), range_ms=st.integers(1, 300_000),
       mean=st.booleans(), count=st.integers(1, 4))
def test_window_sums_give_the_numpy_bits(data: st.DataObject, ends: np.ndarray,
                                         range_ms: int, mean: bool, count: int) -> None:
    # A batch of several series, as the kernels see it: NaN, infinities, negative
    # values and huge magnitudes (cancellation) included.
    ts_list, vs_list = [], []
    for _ in range(count):
        ts = data.draw(sample_times(max_len=40))
        big = st.floats(-1e300, 1e300) | st.sampled_from([1e16, -1e16, 1.0, -1.0])
        vs = data.draw(st.lists(values | big, min_size=len(ts), max_size=len(ts)))
        ts_list.append(ts)
        vs_list.append(np.array(vs, dtype=np.float64))
    w = build_windows(ts_list, vs_list, ends, range_ms, ends, [])
    got = native.window_sums(w.vs, w.lo, w.hi, mean)
    assert got is not None
    ok = w.hi > w.lo
    with np.errstate(all="ignore"):
        want = numpy_window_sums(w, ok, w.count if mean else None)
    assert np.array_equal(got[0], want[0], equal_nan=True)
    assert np.array_equal(got[1], want[1])


@needs_native
@settings(max_examples=200, deadline=None)
@given(data=st.data(), ends=step_times(), range_ms=st.integers(1, 300_000),
       count=st.integers(1, 4))
def test_regression_sums_give_the_numpy_bits(data: st.DataObject, ends: np.ndarray,
                                             range_ms: int, count: int) -> None:
    """``deriv``'s sums of y and t·y: compiled for finite values, prefix sums otherwise."""
    ts_list, vs_list = [], []
    for _ in range(count):
        ts = data.draw(sample_times(max_len=40))
        vs = data.draw(st.lists(values | st.floats(-1e300, 1e300), min_size=len(ts),
                                max_size=len(ts)))
        ts_list.append(ts)
        vs_list.append(np.array(vs, dtype=np.float64))
    w = build_windows(ts_list, vs_list, ends, range_ms, ends, [])
    with np.errstate(all="ignore"):
        scaled = w.vs * 1e3  # infinities where the values were huge
    for v in (w.vs, scaled):
        with np.errstate(all="ignore"):
            got = kernels._dd_sums(v, w)
            c, ce = kernels._dd_prefix(v)
            want = kernels._dd_window(c, ce, w.lo, w.hi)
        assert got.tobytes() == want.tobytes()
