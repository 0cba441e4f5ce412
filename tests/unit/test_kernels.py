"""Every range-window kernel against a plain per-window computation on random data.

The kernels compute a function over all windows of all series at once (prefix
sums, sparse tables, lock-step loops). The oracle here takes one window at a
time, in plain Python, written from Prometheus's definitions
(promql/functions.go), so a mistake in the vectorised bookkeeping (window
bounds, series boundaries, resets across series, the exact-path selection)
shows up as a disagreement.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.fast import ranges
from monitoring.engine.fast.kernels import KERNELS, build_windows
from monitoring.engine.fast.samples import Samples
from monitoring.engine.model import EvalError

Window = tuple[list[int], list[float]]
Oracle = Callable[[list[int], list[float], int, int, int, list[float]], float | None]

# ---------------------------------------------------------------- oracles


def _sum(vs: Sequence[float]) -> float:
    if any(math.isnan(v) for v in vs):
        return math.nan
    pos = any(v == math.inf for v in vs)
    neg = any(v == -math.inf for v in vs)
    if pos and neg:
        return math.nan
    if pos:
        return math.inf
    if neg:
        return -math.inf
    return math.fsum(vs)


def o_sum(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _sum(vs) if vs else None


def o_avg(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _sum(vs) / len(vs) if vs else None


def o_count(ts: list[int], vs: list[float], *_: object) -> float | None:
    return float(len(vs)) if vs else None


def o_present(ts: list[int], vs: list[float], *_: object) -> float | None:
    return 1.0 if vs else None


def o_last(ts: list[int], vs: list[float], *_: object) -> float | None:
    return vs[-1] if vs else None


def o_first(ts: list[int], vs: list[float], *_: object) -> float | None:
    return vs[0] if vs else None


def o_ts_last(ts: list[int], vs: list[float], *_: object) -> float | None:
    return ts[-1] / 1000 if vs else None


def o_ts_first(ts: list[int], vs: list[float], *_: object) -> float | None:
    return ts[0] / 1000 if vs else None


def _extreme(vs: list[float], better: Callable[[float, float], bool]) -> float | None:
    if not vs:
        return None
    best = vs[0]
    for v in vs[1:]:
        if better(v, best) or math.isnan(best):
            best = v
    return best


def o_max(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _extreme(vs, lambda a, b: a > b)


def o_min(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _extreme(vs, lambda a, b: a < b)


def _ts_of(ts: list[int], vs: list[float], take: Callable[[float, float], bool]) -> float | None:
    if not vs:
        return None
    best, when = vs[0], ts[0]
    for t, v in zip(ts, vs, strict=True):
        if take(v, best) or math.isnan(best):
            best, when = v, t
    return when / 1000


def o_ts_max(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _ts_of(ts, vs, lambda a, b: a >= b)


def o_ts_min(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _ts_of(ts, vs, lambda a, b: a <= b)


def o_stdvar(ts: list[int], vs: list[float], *_: object) -> float | None:
    return statistics.pvariance(vs) if vs else None


def o_stddev(ts: list[int], vs: list[float], *_: object) -> float | None:
    return statistics.pstdev(vs) if vs else None


def _quantile(q: float, vs: list[float]) -> float:
    if math.isnan(q) or not vs:
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(vs, key=lambda v: (not math.isnan(v), v))
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def o_quantile(ts: list[int], vs: list[float], start: int, end: int, rng: int,
               params: list[float]) -> float | None:
    return _quantile(params[0], vs) if vs else None


def o_mad(ts: list[int], vs: list[float], *_: object) -> float | None:
    if not vs:
        return None
    if any(math.isnan(v) for v in vs):
        return math.nan
    med = _quantile(0.5, vs)
    return _quantile(0.5, [abs(v - med) for v in vs])


def _extrapolated(ts: list[int], vs: list[float], start: int, end: int, rng: int,
                  counter: bool, rate: bool) -> float | None:
    n = len(vs)
    if n < 2:
        return None
    result = vs[-1] - vs[0]
    if counter:
        for i in range(1, n):
            if vs[i] < vs[i - 1]:
                result += vs[i - 1]
    to_start = (ts[0] - start) / 1000
    to_end = (end - ts[-1]) / 1000
    sampled = (ts[-1] - ts[0]) / 1000
    avg = sampled / (n - 1)
    threshold = avg * 1.1
    if to_start >= threshold:
        to_start = avg / 2
    if counter and result > 0 and vs[0] >= 0:
        to_zero = sampled * (vs[0] / result)
        to_start = min(to_start, to_zero)
    if to_end >= threshold:
        to_end = avg / 2
    factor = (sampled + to_start + to_end) / sampled
    if rate:
        factor /= rng / 1000
    return result * factor


def o_rate(ts: list[int], vs: list[float], start: int, end: int, rng: int,
           params: list[float]) -> float | None:
    return _extrapolated(ts, vs, start, end, rng, True, True)


def o_increase(ts: list[int], vs: list[float], start: int, end: int, rng: int,
               params: list[float]) -> float | None:
    return _extrapolated(ts, vs, start, end, rng, True, False)


def o_delta(ts: list[int], vs: list[float], start: int, end: int, rng: int,
            params: list[float]) -> float | None:
    return _extrapolated(ts, vs, start, end, rng, False, False)


def o_irate(ts: list[int], vs: list[float], *_: object) -> float | None:
    if len(vs) < 2:
        return None
    dt = (ts[-1] - ts[-2]) / 1000
    diff = vs[-1] if vs[-1] < vs[-2] else vs[-1] - vs[-2]
    return diff / dt


def o_idelta(ts: list[int], vs: list[float], *_: object) -> float | None:
    return vs[-1] - vs[-2] if len(vs) >= 2 else None


def o_changes(ts: list[int], vs: list[float], *_: object) -> float | None:
    if not vs:
        return None
    return float(sum(1 for a, b in itertools.pairwise(vs)
                     if a != b and not (math.isnan(a) and math.isnan(b))))


def o_resets(ts: list[int], vs: list[float], *_: object) -> float | None:
    if not vs:
        return None
    return float(sum(1 for a, b in itertools.pairwise(vs) if b < a))


def _regression(ts: list[int], vs: list[float], origin: int) -> tuple[float, float]:
    if all(v == vs[0] for v in vs):
        return (math.nan, math.nan) if math.isinf(vs[0]) else (0.0, vs[0])
    xs = [(t - origin) / 1000 for t in ts]
    n = len(vs)
    sx, sy = math.fsum(xs), math.fsum(vs)
    sxy = math.fsum(x * y for x, y in zip(xs, vs, strict=True))
    sxx = math.fsum(x * x for x in xs)
    slope = (sxy - sx * sy / n) / (sxx - sx * sx / n)
    return slope, sy / n - slope * sx / n


def o_deriv(ts: list[int], vs: list[float], *_: object) -> float | None:
    return _regression(ts, vs, ts[0])[0] if len(vs) >= 2 else None


def o_predict_linear(ts: list[int], vs: list[float], start: int, end: int, rng: int,
                     params: list[float]) -> float | None:
    if len(vs) < 2:
        return None
    slope, intercept = _regression(ts, vs, end)
    return slope * params[0] + intercept


def o_holt(ts: list[int], vs: list[float], start: int, end: int, rng: int,
           params: list[float]) -> float | None:
    if len(vs) < 2:
        return None
    sf, tf = params
    s0, s1, b = 0.0, vs[0], vs[1] - vs[0]
    for i in range(1, len(vs)):
        x = sf * vs[i]
        if i > 1:
            b = tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1


ORACLES: dict[str, Oracle] = {
    "count_over_time": o_count,
    "present_over_time": o_present,
    "last_over_time": o_last,
    "first_over_time": o_first,
    "ts_of_last_over_time": o_ts_last,
    "ts_of_first_over_time": o_ts_first,
    "ts_of_max_over_time": o_ts_max,
    "ts_of_min_over_time": o_ts_min,
    "sum_over_time": o_sum,
    "avg_over_time": o_avg,
    "max_over_time": o_max,
    "min_over_time": o_min,
    "stddev_over_time": o_stddev,
    "stdvar_over_time": o_stdvar,
    "quantile_over_time": o_quantile,
    "mad_over_time": o_mad,
    "rate": o_rate,
    "increase": o_increase,
    "delta": o_delta,
    "irate": o_irate,
    "idelta": o_idelta,
    "changes": o_changes,
    "resets": o_resets,
    "deriv": o_deriv,
    "predict_linear": o_predict_linear,
    "double_exponential_smoothing": o_holt,
}

NON_FINITE_OK = frozenset({
    "count_over_time", "present_over_time", "last_over_time", "first_over_time",
    "ts_of_last_over_time", "ts_of_first_over_time", "sum_over_time", "avg_over_time",
    "max_over_time", "min_over_time", "changes", "quantile_over_time", "mad_over_time",
})
"""Kernels whose oracle states Prometheus's behaviour for NaN and infinities too."""

# ---------------------------------------------------------------- data


@st.composite
def series_data(draw: st.DrawFn, non_finite: bool) -> list[Window]:
    """1-3 series of up to 25 samples at distinct millisecond times within ~10 minutes."""
    finite = st.floats(-1000, 1000, allow_nan=False).map(lambda v: round(v, 3))
    special = st.sampled_from([math.nan, math.inf, -math.inf])
    value = st.one_of(finite, special) if non_finite else finite
    counter = st.lists(st.floats(0, 50, allow_nan=False), max_size=25)
    out = []
    for _ in range(draw(st.integers(1, 3))):
        times = sorted(draw(st.sets(st.integers(0, 600).map(lambda s: s * 1000 + 7),
                                    max_size=25)))
        if draw(st.booleans()) and not non_finite:
            incs = draw(counter)
            vals = list(np.cumsum(incs + [0.0] * len(times))[:len(times)])
            if vals and draw(st.booleans()):
                cut = draw(st.integers(0, len(vals) - 1))
                vals = vals[:cut] + [v - vals[cut] for v in vals[cut:]]
        else:
            vals = [draw(value) for _ in times]
        out.append((times, [float(v) for v in vals]))
    return out


def _close(got: float, want: float, scale: float) -> bool:
    if math.isnan(want):
        return math.isnan(got)
    if math.isinf(want):
        return got == want
    return abs(got - want) <= 1e-7 * max(1.0, scale, abs(want))


def check_kernel(name: str, data: list[Window], start: int, step: int, count: int,
                 rng: int, params: list[float]) -> None:
    ends = start + step * np.arange(count, dtype=np.int64)
    per_step = [np.full(count, p) for p in params]
    w = build_windows([np.asarray(t, dtype=np.int64) for t, _ in data],
                      [np.asarray(v, dtype=np.float64) for _, v in data], ends, rng, ends,
                      per_step)
    with np.errstate(all="ignore"):
        values, ok = KERNELS[name](w)
    oracle = ORACLES[name]
    for i, (ts, vs) in enumerate(data):
        for k, end in enumerate(ends.tolist()):
            inside = [j for j, t in enumerate(ts) if end - rng < t <= end]
            wts = [ts[j] for j in inside]
            wvs = [vs[j] for j in inside]
            want = oracle(wts, wvs, end - rng, end, rng, params)
            where = f"{name} series {i} end {end} window {list(zip(wts, wvs, strict=True))}"
            assert bool(ok[i, k]) == (want is not None), where
            if want is not None:
                scale = max((abs(v) for v in wvs if math.isfinite(v)), default=1.0)
                if name in ("deriv", "predict_linear"):
                    scale *= 1 + abs(params[0] if params else 0.0) + rng / 1000
                assert _close(float(values[i, k]), want, scale), (where, values[i, k], want)


def _params(name: str, draw: st.DrawFn) -> list[float]:
    if name == "quantile_over_time":
        return [draw(st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0, -0.5, 1.5, math.nan]))]
    if name == "predict_linear":
        return [draw(st.sampled_from([0.0, 60.0, -30.0, 3600.0]))]
    if name == "double_exponential_smoothing":
        return [draw(st.sampled_from([0.1, 0.5, 0.9])), draw(st.sampled_from([0.1, 0.5, 0.9]))]
    return []


@pytest.mark.parametrize("name", sorted(ORACLES))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_matches_per_window_oracle(name: str, data: st.DataObject) -> None:
    series = data.draw(series_data(non_finite=False))
    start = data.draw(st.integers(-60, 600)) * 1000
    step = data.draw(st.sampled_from([1000, 15_000, 60_000, 7_000]))
    count = data.draw(st.integers(1, 12))
    rng = data.draw(st.sampled_from([1000, 30_000, 60_000, 300_000, 45_500]))
    check_kernel(name, series, start, step, count, rng, _params(name, data.draw))


@pytest.mark.parametrize("name", sorted(NON_FINITE_OK))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_kernel_with_nan_and_infinities(name: str, data: st.DataObject) -> None:
    series = data.draw(series_data(non_finite=True))
    params = _params(name, data.draw)
    check_kernel(name, series, 0, 30_000, 21, data.draw(st.sampled_from([30_000, 120_000])),
                 params)


def test_sum_keeps_precision_under_cancellation() -> None:
    """Prometheus's Kahan sum gives exactly 2 here; a naive prefix sum gives 0."""
    vs = [1e100, 1.0, -1e100, 1.0]
    check_kernel("sum_over_time", [([1000, 2000, 3000, 4000], vs)], 4000, 1000, 1, 10_000, [])
    w = build_windows([np.array([1000, 2000, 3000, 4000])], [np.array(vs)],
                      np.array([4000]), 10_000, np.array([4000]), [])
    assert KERNELS["sum_over_time"](w)[0][0, 0] == 2.0


def test_rate_ignores_samples_of_neighbouring_series() -> None:
    """A drop between the last sample of one series and the first of the next is no reset."""
    data = [([0, 15_000, 30_000], [100.0, 110.0, 120.0]), ([0, 15_000, 30_000], [0.0, 5.0, 10.0])]
    check_kernel("rate", data, 30_000, 1000, 1, 60_000, [])
    check_kernel("resets", data, 30_000, 1000, 1, 60_000, [])


def test_double_exponential_smoothing_rejects_bad_factors() -> None:
    w = build_windows([np.array([0, 1000, 2000])], [np.array([1.0, 2.0, 3.0])],
                      np.array([2000]), 5000, np.array([2000]), [np.array([1.5]),
                                                                   np.array([0.5])])
    with pytest.raises(EvalError, match=r"invalid smoothing factor. Expected: 0 < sf < 1, got: "
                                        r"1.500000"):
        KERNELS["double_exponential_smoothing"](w)


@pytest.mark.parametrize(("step", "rng", "count"), [
    (60_000, 300_000, 50),  # range of whole steps: starts reuse earlier ends
    (60_000, 300_000, 3),  # fewer steps than the range spans
    (60_000, 90_000, 50),  # range not a whole number of steps
    (15_000, 15_000, 40),
    (0, 300_000, 5),  # every step at one time (``@``)
])
def test_window_bounds_match_binary_search(step: int, rng: int, count: int) -> None:
    """Window bounds, shared edges or not, are the plain binary searches, per series."""
    gen = np.random.default_rng(3)
    ts_list = [np.sort(gen.choice(np.arange(0, 3_000_000, 500), size=size, replace=False))
               .astype(np.int64) for size in (0, 1, 40, 400)]
    vs_list = [np.ones(len(t)) for t in ts_list]
    ends = 250_000 + step * np.arange(count, dtype=np.int64)
    w = build_windows(ts_list, vs_list, ends, rng, ends, [])
    offset = 0
    for i, t in enumerate(ts_list):
        assert w.lo[i].tolist() == (np.searchsorted(t, ends - rng, side="right")
                                    + offset).tolist()
        assert w.hi[i].tolist() == (np.searchsorted(t, ends, side="right") + offset).tolist()
        offset += len(t)


def test_reset_correction_equals_the_dense_running_sum() -> None:
    """The sparse reset sum has the bits of a running sum over every pair, Inf included."""
    from monitoring.engine.fast.kernels import _pair_mask, _prefix, _reset_correction

    gen = np.random.default_rng(5)
    vs_list = []
    for _ in range(4):
        v = np.cumsum(gen.exponential(3.0, size=300))
        v[gen.random(300) < 0.05] = gen.uniform(-1e3, 1e3)
        vs_list.append(v)
    vs_list[1][10] = math.inf
    vs_list[2][20] = -0.0
    vs_list[2][21] = -5.0
    ts_list = [np.arange(300, dtype=np.int64) * 1000 for _ in vs_list]
    ends = np.arange(0, 300_000, 7_000, dtype=np.int64)
    w = build_windows(ts_list, vs_list, ends, 60_000, ends, [])
    got, bad = _reset_correction(w)
    prev = np.empty_like(w.vs)
    prev[0] = w.vs[0]
    prev[1:] = w.vs[:-1]
    contrib = np.where(_pair_mask(w) & (w.vs < prev), prev, 0.0)
    fin = np.isfinite(contrib)
    p = _prefix(np.where(fin, contrib, 0.0))
    lo1 = np.minimum(w.lo + 1, w.hi)
    want = p[w.hi] - p[lo1]
    assert got.tobytes() == want.tobytes()
    badp = _prefix((~fin).astype(np.int64))
    assert bad is not None
    assert bad.tolist() == ((badp[w.hi] - badp[lo1]) > 0).tolist()


@pytest.mark.parametrize("func", ["rate", "avg_over_time", "deriv", "quantile_over_time"])
def test_kernel_batches_in_threads_give_the_sequential_result(
        func: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    steps = 500
    n = 40  # several batches: BATCH_CELLS // steps series each
    ts = [np.sort(rng.choice(np.arange(0, 600_000), size=300, replace=False)).astype(np.int64)
          for _ in range(n)]
    vs = [np.cumsum(rng.exponential(1.0, size=300)) for _ in range(n)]
    ends = np.arange(steps, dtype=np.int64) * 1_200 + 60_000
    data = ranges.RangeInput([(("i", str(i)),) for i in range(n)], Samples.of_lists(ts, vs),
                             [True] * n, ends, 60_000)
    params = [np.full(steps, 0.9)] if func == "quantile_over_time" else []
    monkeypatch.setattr(ranges, "BATCH_CELLS", steps * 3)
    monkeypatch.setattr(ranges, "WORKERS", 1)
    one = ranges.apply_kernel(func, data, ends, params)
    monkeypatch.setattr(ranges, "WORKERS", 2)
    many = ranges.apply_kernel(func, data, ends, params)
    assert np.array_equal(one.present, many.present)
    assert np.array_equal(one.values, many.values, equal_nan=True)
