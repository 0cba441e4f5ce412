"""trend(), forecast(), forecast_max() and forecast_min(): both back ends, and what they mean.

* Student's t distribution against closed forms and published critical values;
* the fast kernels against the reference functions window by window on
  Hypothesis-drawn data (ramps, noise, constants, large levels, gaps, NaN);
* known answers: a clean ramp is increasing, pure noise is flat in about
  ``confidence`` of the windows, a sine forecasts its next season, the linear
  forecast is ``predict_linear``, a seasonal peak before the horizon is caught
  by ``forecast_max`` and missed by ``forecast``;
* the functions from the DSL, through both evaluators.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl.compiler import compile_expression
from monitoring.engine.fast import trend as fast_trend
from monitoring.engine.fast.kernels import build_windows
from monitoring.engine.fast.trend import TREND_KERNELS, hw_weights
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import EvalError, Series, labels_of
from monitoring.engine.promqltest import evaluator_by_name
from monitoring.engine.reference.rangefuncs import Ctx
from monitoring.engine.reference.trend import TREND_FUNCTIONS, fit_trend, holt_winters
from monitoring.engine.trend_math import BINS_PER_SEASON, betainc, t_critical, t_two_sided_p

Data = list[tuple[list[int], list[float]]]

# ---------------------------------------------------------------- Student's t


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.7, 400.0])
def test_p_value_matches_closed_forms(t: float) -> None:
    # df = 1 is the Cauchy distribution; df = 2 has P(|T| >= t) = 1 - t / sqrt(2 + t²).
    assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, rel=1e-12,
                                                abs=1e-300)
    assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-12,
                                                abs=1e-300)


@pytest.mark.parametrize(("df", "confidence", "expected"), [
    # Published two-sided critical values (t tables), to the digits printed there ...
    (1, 0.95, 12.706), (2, 0.95, 4.303), (5, 0.999, 6.869), (10, 0.95, 2.228),
    (30, 0.99, 2.750), (100, 0.90, 1.660),
    # ... and to 10 digits (values of scipy 1.17's stats.t.ppf, computed once).
    (10, 0.95, 2.228138851986274), (30, 0.99, 2.7499956535672254),
    (1_000_000, 0.95, 1.959966356814107),
])
def test_critical_values(df: int, confidence: float, expected: float) -> None:
    digits = len(str(expected).split(".")[1])
    tolerance = 0.5 * 10.0 ** -digits if digits <= 3 else 1e-9 * expected
    assert abs(t_critical(confidence, df) - expected) <= tolerance
    # the p-value at the critical value is the significance level
    assert t_two_sided_p(t_critical(confidence, df), df) == pytest.approx(1 - confidence,
                                                                          rel=1e-9)


def test_critical_value_closed_form_for_one_degree_of_freedom() -> None:
    for conf in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert t_critical(conf, 1) == pytest.approx(math.tan(math.pi * conf / 2), rel=1e-12)
    assert t_critical(0.0, 7) == 0.0
    with pytest.raises(ValueError):
        t_critical(1.0, 5)


def test_incomplete_beta_symmetry_and_bounds() -> None:
    for a, b, x in [(0.5, 0.5, 0.3), (3.0, 0.5, 0.9), (50.0, 0.5, 0.99), (2.0, 7.0, 0.1)]:
        assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, rel=1e-13)
    assert betainc(2.0, 3.0, 0.0) == 0.0
    assert betainc(2.0, 3.0, 1.0) == 1.0
    # I_x(1, 1) = x, I_x(a, 1) = x^a
    assert betainc(1.0, 1.0, 0.37) == pytest.approx(0.37, rel=1e-14)
    assert betainc(4.0, 1.0, 0.6) == pytest.approx(0.6 ** 4, rel=1e-13)


# ---------------------------------------------------------------- helpers


def run_kernel(name: str, data: Data, ends: Sequence[int], range_ms: int,
               params: Sequence[float], offset_ms: int = 0) -> tuple[np.ndarray, np.ndarray]:
    ends_a = np.asarray(ends, dtype=np.int64)
    w = build_windows([np.asarray(t, dtype=np.int64) for t, _ in data],
                      [np.asarray(v, dtype=np.float64) for _, v in data], ends_a, range_ms,
                      ends_a + offset_ms, [np.full(len(ends_a), p) for p in params])
    with np.errstate(all="ignore"):
        values, ok = TREND_KERNELS[name](w)
    return values, ok


def reference(name: str, ts: list[int], vs: list[float], end: int, range_ms: int,
              params: Sequence[float], offset_ms: int = 0) -> float | None:
    inside = [i for i, t in enumerate(ts) if end - range_ms < t <= end]
    if not inside:
        return None
    c = Ctx(end + offset_ms, end - range_ms, end, range_ms, tuple(params))
    return TREND_FUNCTIONS[name](tuple(ts[i] for i in inside), tuple(vs[i] for i in inside), c)


def window(ts: list[int], vs: list[float], end: int, range_ms: int
           ) -> tuple[tuple[int, ...], tuple[float, ...]]:
    inside = [i for i, t in enumerate(ts) if end - range_ms < t <= end]
    return tuple(ts[i] for i in inside), tuple(vs[i] for i in inside)


def both_results(name: str, data: Data, ends: Sequence[int], range_ms: int,
                 params: Sequence[float], offset_ms: int, values: np.ndarray, ok: np.ndarray
                 ) -> Iterator[tuple[tuple[list[int], list[float]], int, float, float]]:
    """Kernel and reference agree on presence and NaN; yields the other finite results."""
    for i, (ts, vs) in enumerate(data):
        for k, end in enumerate(ends):
            want = reference(name, ts, vs, end, range_ms, params, offset_ms)
            where = f"{name} series {i} end {end} params {params}"
            assert bool(ok[i, k]) == (want is not None), where
            if want is None:
                continue
            got = float(values[i, k])
            if math.isnan(want):
                assert math.isnan(got), where
            else:
                yield (ts, vs), end, got, want


def near_trend_boundary(ts: list[int], vs: list[float], end: int, range_ms: int,
                        params: Sequence[float]) -> bool:
    """The decision sits on a knife edge: p-value or change within 1e-6 of a threshold."""
    wts, wvs = window(ts, vs, end, range_ms)
    fit = fit_trend(wts, wvs, Ctx(end, end - range_ms, end, range_ms, tuple(params)))
    conf, min_change, min_rel = params
    alpha = 1 - conf
    limits = [(fit.p, alpha), (fit.change, min_change), (fit.change, min_rel * abs(fit.start))]
    return any(abs(a - b) <= 1e-6 * max(abs(a), abs(b)) for a, b in limits) or (
        abs(fit.sxy) <= 1e-12 * max(1.0, *(abs(v) for v in wvs)) * len(wvs) * range_ms / 1000)


# ---------------------------------------------------------------- fast == reference


@st.composite
def trend_data(draw: st.DrawFn) -> Data:
    """1-3 series: noisy ramps, noise, constants, steps, large levels; gaps and repeats."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    out: Data = []
    for _ in range(draw(st.integers(1, 3))):
        count = draw(st.integers(0, 60))
        times = np.sort(rng.choice(np.arange(0, 900), size=count, replace=False)) * 1000 + 3
        x = times / 1000.0
        kind = draw(st.sampled_from(["ramp", "noise", "constant", "step", "level", "round",
                                     "nan"]))
        slope = draw(st.sampled_from([0.0, 0.001, -0.01, 0.1, -0.1, 2.0, -2.0]))
        noise = draw(st.sampled_from([0.0, 0.01, 1.0, 50.0]))
        level = draw(st.sampled_from([0.0, 5.0, -300.0, 1e9, 1e-9]))
        if kind == "constant":
            vals = np.full(count, level + 0.1)
        elif kind == "step":
            vals = np.where(x > draw(st.integers(0, 900)), level + 1.0, level)
        elif kind == "round":
            vals = np.round(level + slope * x + rng.normal(0, noise + 0.5, count))
        else:
            vals = level + slope * x + rng.normal(0, noise, count) * (kind != "ramp" or 0.01)
            if kind == "noise":
                vals = level + rng.normal(0, noise + 1, count)
        if kind == "nan" and count:
            vals[rng.integers(0, count)] = draw(st.sampled_from([math.nan, math.inf]))
        out.append((times.tolist(), [float(v) for v in vals]))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=trend_data(), start=st.integers(0, 900), step=st.sampled_from([7_000, 60_000]),
       count=st.integers(1, 10), range_ms=st.sampled_from([5_000, 60_000, 300_000, 600_000]),
       conf=st.sampled_from([0.0, 0.5, 0.9, 0.95, 0.999]),
       min_change=st.sampled_from([0.0, 0.5, 30.0]),
       min_rel=st.sampled_from([0.0, 0.01, 0.5]))
def test_trend_kernel_matches_reference(data: Data, start: int, step: int, count: int,
                                        range_ms: int, conf: float, min_change: float,
                                        min_rel: float) -> None:
    ends = [start * 1000 + k * step for k in range(count)]
    params = [conf, min_change, min_rel]
    values, ok = run_kernel("trend", data, ends, range_ms, params)
    for (ts, vs), end, got, want in both_results("trend", data, ends, range_ms, params, 0,
                                                 values, ok):
        if got != want:
            where = window(ts, vs, end, range_ms)
            assert near_trend_boundary(ts, vs, end, range_ms, params), (where, got, want)


@st.composite
def seasonal_data(draw: st.DrawFn) -> tuple[Data, int]:
    """1-2 series over ~20 seasons of a short season: sine + trend + noise, with gaps."""
    season_s = draw(st.sampled_from([7, 60, 96]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    span = season_s * 20_000
    out: Data = []
    for _ in range(draw(st.integers(1, 2))):
        spacing = draw(st.sampled_from([season_s * 1000 // 60, season_s * 1000 // 20,
                                        season_s * 1000 // 3]))
        begin = draw(st.integers(0, span // 2))
        times = np.arange(begin, span, spacing) + rng.integers(0, spacing // 2 + 1,
                                                               size=len(range(begin, span,
                                                                              spacing)))
        keep = rng.random(len(times)) >= draw(st.sampled_from([0.0, 0.3, 0.9]))
        times = times[keep]
        x = times / 1000.0
        vals = (draw(st.sampled_from([0.0, 100.0, 1e6])) + 3 * np.sin(2 * np.pi * x / season_s)
                + draw(st.sampled_from([0.0, 0.01, -0.2])) * x
                + rng.normal(0, draw(st.sampled_from([0.0, 0.5])), len(times)))
        if draw(st.booleans()) and len(vals) > 3:
            vals[rng.integers(0, len(vals))] = math.nan
        out.append((times.tolist(), [float(v) for v in vals]))
    return out, season_s


@pytest.mark.parametrize("name", ["forecast", "forecast_max", "forecast_min"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=seasonal_data(), data=st.data())
def test_forecast_kernels_match_reference(name: str, drawn: tuple[Data, int],
                                          data: st.DataObject) -> None:
    series, season_s = drawn
    seasons = data.draw(st.sampled_from([1.5, 2, 2.5, 4, 17]))
    range_ms = int(seasons * season_s * 1000)
    linear = data.draw(st.booleans())
    horizon = data.draw(st.sampled_from([0.0, 0.001, 1.0, season_s / 3, season_s * 2.5]))
    if name != "forecast" and horizon == 0:
        horizon = 0.5
    offset = data.draw(st.sampled_from([0, 0, 1_000, 45_000]))
    # steps off and on the bins' lattice (season_s * 1000 // 24 is two bins for 60s and 96s)
    step = data.draw(st.sampled_from([season_s * 1000 // 7, season_s * 1000 // 24,
                                      season_s * 1000]))
    first = data.draw(st.integers(0, 20 * season_s)) * 1000
    ends = [first + k * step for k in range(data.draw(st.integers(1, 6)))]
    params = [horizon, 0.0 if linear else float(season_s)]
    with patch.object(fast_trend, "LATTICE", data.draw(st.sampled_from(["always", "never"]))):
        values, ok = run_kernel(name, series, ends, range_ms, params, offset)
    # Linear: prefix sums vs sequential Kahan sums, scaled as test_kernels does for
    # predict_linear. Seasonal: a weighted sum vs the recursion; weights grow with j.
    bins_ahead = 1 + (horizon + offset / 1000) * BINS_PER_SEASON / season_s
    tol = 1e-7 * (1 + horizon + range_ms / 1000) if linear else 1e-9 * bins_ahead
    for (_, vs), end, got, want in both_results(name, series, ends, range_ms, params, offset,
                                                values, ok):
        scale = max((abs(v) for v in vs if math.isfinite(v)), default=1.0)
        assert abs(got - want) <= tol * max(1.0, scale), (end, params, got, want)


@pytest.mark.parametrize(("step_ms", "offset_ms", "count"), [
    (60_000, 0, 200), (30_000, 15_000, 2000), (1_800_000, 0, 30), (900_000, 0, 40)])
def test_shared_bins_and_per_window_bins_agree(step_ms: int, offset_ms: int,
                                              count: int) -> None:
    """The lattice of shared bins is an optimisation: it must not change a bit of the bins."""
    day = 86_400
    data = [sine_data(day, 5, 60_000, seed, 0.5) for seed in range(3)]
    late = [(t, v) for t, v in zip(*data[0], strict=True) if t > 3 * day * 1000]
    data.append(([t for t, _ in late], [v for _, v in late]))  # starts inside windows
    ends = [4 * day * 1000 + k * step_ms for k in range(count)]
    for name in ("forecast", "forecast_max"):
        params = [4 * 3600.0, float(day)]
        with patch.object(fast_trend, "_lattice", wraps=fast_trend._lattice) as spy:
            shared, ok_shared = run_kernel(name, data, ends, 3 * day * 1000, params, offset_ms)
        assert spy.called
        with patch.object(fast_trend, "LATTICE", "never"):
            direct, ok_direct = run_kernel(name, data, ends, 3 * day * 1000, params, offset_ms)
        assert (ok_shared == ok_direct).all() and ok_shared.any()
        assert np.allclose(shared[ok_shared], direct[ok_direct], rtol=1e-12, atol=1e-12)


def test_holt_winters_weights_reproduce_the_recursion() -> None:
    rng = np.random.default_rng(7)
    for bins in (2 * BINS_PER_SEASON, 5 * BINS_PER_SEASON + 13):
        ys = rng.normal(0, 1, bins) + np.arange(bins) * 0.05
        ahead = (0, 1, 2, 47, 48, 49, 300)
        via_weights = ys @ hw_weights(bins, ahead)
        direct = holt_winters(ys.tolist(), list(ahead))
        assert np.allclose(via_weights, direct, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- known answers


def regular(values: Sequence[float], spacing_ms: int = 15_000, t0: int = 15_000) -> Data:
    return [([t0 + i * spacing_ms for i in range(len(values))], [float(v) for v in values])]


def test_clean_ramps_are_increasing_or_decreasing() -> None:
    rng = np.random.default_rng(1)
    x = np.arange(240)
    up = 50 + 0.2 * x + rng.normal(0, 1, len(x))
    down = 50 - 0.2 * x + rng.normal(0, 1, len(x))
    end = 240 * 15_000
    for vals, want in ((up, 1.0), (down, -1.0), (np.full(240, 7.25), 0.0)):
        values, ok = run_kernel("trend", regular(vals), [end], 3_600_000, [0.95, 0.0, 0.0])
        assert ok[0, 0]
        assert values[0, 0] == want
        ref = reference("trend", *regular(vals)[0], end, 3_600_000, [0.95, 0.0, 0.0])
        assert ref == want


def test_constant_large_values_are_flat_and_a_tiny_ramp_on_a_large_level_is_not() -> None:
    end = 100 * 15_000
    const = [1e12 + 0.1] * 100
    ramp = [1e12 + 0.001 * i for i in range(100)]
    values, ok = run_kernel("trend", regular(const) + regular(ramp), [end], 1_800_000,
                            [0.95, 0.0, 0.0])
    assert ok[:, 0].all()
    assert values[:, 0].tolist() == [0.0, 1.0]


@pytest.mark.parametrize(("confidence", "samples"), [(0.95, 30), (0.99, 12), (0.9, 4)])
def test_pure_noise_is_flat_in_about_confidence_of_windows(confidence: float,
                                                           samples: int) -> None:
    """The t-test's false-positive rate is 1 - confidence (Gaussian noise, fixed seed).

    3000 independent windows: the share of non-flat ones has a standard deviation
    of about sqrt(a (1 - a) / 3000) (0.4 % at a = 5 %); the test allows 4 of those.
    A one-sided test, the wrong degrees of freedom or a z-test instead of a t-test
    with few samples would move the share out of that band.
    """
    rng = np.random.default_rng(20240605)
    windows = 3000
    data: Data = []
    for _ in range(windows):
        times = np.sort(rng.choice(np.arange(1, 600), size=samples, replace=False)) * 1000
        data.append((times.tolist(), rng.normal(10, 2, samples).tolist()))
    values, ok = run_kernel("trend", data, [600_000], 600_000, [confidence, 0.0, 0.0])
    assert ok.all()
    alpha = 1 - confidence
    share = float(np.mean(values[:, 0] != 0))
    sd = math.sqrt(alpha * (1 - alpha) / windows)
    assert abs(share - alpha) <= 4 * sd, share
    # about half of the false positives go each way
    ups = float(np.mean(values[:, 0] == 1))
    assert abs(ups - alpha / 2) <= 4 * math.sqrt(alpha / 2 * (1 - alpha / 2) / windows)


def test_min_change_absolute_and_relative() -> None:
    # 100 -> 110 over the window: a change of 10, 10 % of the fitted start value
    end = 3_600_000
    ts = list(range(0, end + 1, 60_000))
    vs = [100 + 10 * t / end for t in ts]
    data = [(ts, vs)]
    rng = end
    cases = [([0.95, 5.0, 0.0], 1.0), ([0.95, 9.99, 0.0], 1.0), ([0.95, 10.01, 0.0], 0.0),
             ([0.95, 0.0, 0.099], 1.0), ([0.95, 0.0, 0.101], 0.0), ([0.95, 5.0, 0.2], 0.0)]
    for params, want in cases:
        values, _ = run_kernel("trend", data, [end], rng, params)
        assert values[0, 0] == want, params
        assert reference("trend", ts, vs, end, rng, params) == want, params


def test_few_samples_give_nothing_and_nan_gives_nan() -> None:
    values, ok = run_kernel("trend", regular([1, 2]) + regular([1, math.nan, 3, 4]),
                            [100_000], 100_000, [0.95, 0.0, 0.0])
    assert ok[:, 0].tolist() == [False, True]
    assert math.isnan(values[1, 0])


def sine_data(season_s: int, seasons: int, spacing_ms: int, seed: int, noise: float,
              slope: float = 0.001) -> tuple[list[int], list[float]]:
    rng = np.random.default_rng(seed)
    ts = np.arange(0, season_s * seasons * 1000, spacing_ms, dtype=np.int64)
    ts = ts + rng.integers(0, spacing_ms // 2, len(ts))
    vals = 20 + 5 * np.sin(2 * np.pi * ts / (season_s * 1000)) + slope * ts / 1000 \
        + rng.normal(0, noise, len(ts))
    return ts.tolist(), vals.tolist()


def test_sine_with_season_forecasts_the_next_season() -> None:
    """A daily sine (amplitude 5, noise 0.1) on a trend, 4 days at 1m: every hour of day 5.

    Resampling costs little: a 30-minute bin mean shrinks the sine by 0.07 % and
    interpolating between bin middles is off by at most 5 x (π/48)²/2 ≈ 0.011. The
    test allows 0.1 (2 % of the amplitude); the trend alone is 86 a day. A linear
    forecast of the same data misses by up to the amplitude.
    """
    day = 86_400
    ts, vs = sine_data(day, 4, 60_000, 3, 0.1)
    end = ts[-1]
    truth = [20 + 5 * math.sin(2 * math.pi * (end / 1000 + h) / day) + 0.001 * (end / 1000 + h)
             for h in range(3600, day + 1, 3600)]
    seasonal = [run_kernel("forecast", [(ts, vs)], [end], 4 * day * 1000, [h, day])[0][0, 0]
                for h in range(3600, day + 1, 3600)]
    linear = [run_kernel("forecast", [(ts, vs)], [end], 4 * day * 1000, [h, 0])[0][0, 0]
              for h in range(3600, day + 1, 3600)]
    assert max(abs(a - b) for a, b in zip(seasonal, truth, strict=True)) < 0.1
    assert max(abs(a - b) for a, b in zip(linear, truth, strict=True)) > 3


def test_forecast_max_catches_a_peak_before_the_horizon() -> None:
    """Daily sine peaking 6h after the evaluation time: at +12h it is back at its middle."""
    day = 86_400
    ts, vs = sine_data(day, 3, 300_000, 5, 0.05, slope=0.0)
    # evaluate at a trough-to-peak crossing (phase 0): the peak is 6h ahead
    end = 3 * day * 1000
    ts_in = [t for t in ts if t <= end]
    data = [(ts_in, vs[:len(ts_in)])]
    fc, _ = run_kernel("forecast", data, [end], 3 * day * 1000, [12 * 3600, day])
    hi, _ = run_kernel("forecast_max", data, [end], 3 * day * 1000, [12 * 3600, day])
    lo, _ = run_kernel("forecast_min", data, [end], 3 * day * 1000, [12 * 3600, day])
    assert fc[0, 0] < 22 < 24 < hi[0, 0]  # "will cross 24 within 12h": only forecast_max
    assert abs(fc[0, 0] - 20) < 0.2 and abs(hi[0, 0] - 25) < 0.2
    assert lo[0, 0] <= fc[0, 0] and abs(lo[0, 0] - 20) < 0.2  # the middle, at t and t + 12h


def test_seasonal_forecast_needs_two_seasons_of_data() -> None:
    day = 86_400
    ts, vs = sine_data(day, 3, 600_000, 2, 0.0, slope=0.0)
    end = ts[-1]
    _, ok = run_kernel("forecast", [(ts, vs)], [end], int(1.9 * day * 1000), [60, day])
    assert not ok.any()
    # samples only in the last 1.5 days of a 3-day window: not enough either
    late = [(t, v) for t, v in zip(ts, vs, strict=True) if t > end - 1.5 * day * 1000]
    data = [([t for t, _ in late], [v for _, v in late])]
    _, ok = run_kernel("forecast", data, [end], 3 * day * 1000, [60, day])
    assert not ok.any()
    _, ok = run_kernel("forecast", [(ts, vs)], [end], 3 * day * 1000, [60, day])
    assert ok.all()


def test_linear_forecasts_bracket_the_line() -> None:
    ts = list(range(0, 600_001, 15_000))
    vs = [2.0 * t / 1000 for t in ts]
    params = [300.0, 0.0]
    at_h = run_kernel("forecast", [(ts, vs)], [600_000], 600_000, params)[0][0, 0]
    hi = run_kernel("forecast_max", [(ts, vs)], [600_000], 600_000, params)[0][0, 0]
    lo = run_kernel("forecast_min", [(ts, vs)], [600_000], 600_000, params)[0][0, 0]
    assert at_h == pytest.approx(1800.0) and hi == at_h
    assert lo == pytest.approx(1200.0)


@pytest.mark.parametrize(("name", "params", "message"), [
    ("trend", [1.0, 0.0, 0.0], "confidence must be"),
    ("trend", [-0.1, 0.0, 0.0], "confidence must be"),
    ("trend", [0.9, math.nan, 0.0], "min_change must be"),
    ("forecast", [60.0, 0.5], "season must be"),
    ("forecast", [-60.0, 3600.0], "horizon must be"),
    ("forecast_max", [0.0, 0.0], "horizon must be"),
    ("forecast_min", [math.inf, 3600.0], "horizon must be"),
])
def test_bad_arguments_are_errors_in_both_back_ends(name: str, params: list[float],
                                                    message: str) -> None:
    data = regular(range(10))
    with pytest.raises(EvalError, match=f"{name}\\(\\): {message}"):
        run_kernel(name, data, [150_000], 150_000, params)
    with pytest.raises(EvalError, match=f"{name}\\(\\): {message}"):
        reference(name, *data[0], 150_000, 150_000, params)
    # no series, no check (as Prometheus checks arguments only where a series exists)
    run_kernel(name, [([], [])], [150_000], 150_000, params)


# ---------------------------------------------------------------- through the DSL


def _source() -> MemorySource:
    rng = np.random.default_rng(11)
    source = MemorySource()
    ts = np.arange(0, 3 * 3_600_000, 15_000, dtype=np.int64) + 7
    for i, slope in enumerate([0.01, -0.01, 0.0]):
        vals = 50 + slope * ts / 1000 + rng.normal(0, 0.5, len(ts)) \
            + 3 * np.sin(2 * np.pi * ts / 1_800_000)
        source.add(Series(labels_of({"__name__": "disk_used_ratio", "i": str(i)}), ts, vals))
    return source


def _query(engine: str, expr: str, source: MemorySource) -> dict[str, list[float]]:
    node, diagnostics = compile_expression(expr)
    assert node is not None, [d.message for d in diagnostics]
    result = evaluator_by_name(engine)(node, source, 2 * 3_600_000, 3 * 3_600_000, 300_000)
    return {str(dict(s.labels)): s.values.tolist() for s in result.series}


@pytest.mark.parametrize("expr", [
    "trend(disk_used_ratio[1h]) == increasing",
    "trend(disk_used_ratio[1h], 0.99) == decreasing",
    "trend(disk_used_ratio[1h], min_change=5%) != flat",
    "trend(disk_used_ratio[1h], min_relative_change=0.2)",
    "forecast(disk_used_ratio[1h], 30m)",
    "forecast(disk_used_ratio[2h], 10m, season=30m)",
    "forecast_max(disk_used_ratio[2h], 1h, season=30m) > 0.5",
    "forecast_min(disk_used_ratio[90m] offset 5m, 15m)",
    "trend(avg_over_time(disk_used_ratio[10m])[1h:1m])",
    "forecast((disk_used_ratio * 2)[2h:1m], 10m, season=30m)",
])
def test_dsl_queries_agree_between_evaluators(expr: str) -> None:
    source = _source()
    fast = _query("fast", expr, source)
    ref = _query("reference", expr, source)
    assert fast.keys() == ref.keys() and fast
    for key, values in fast.items():
        assert np.allclose(values, ref[key], rtol=1e-9, atol=1e-9), (key, values, ref[key])
    assert not any("__name__" in key for key in fast)  # results drop the metric name


def test_trend_directions_read_as_expected_through_the_dsl() -> None:
    source = _source()
    up = _query("fast", "trend(disk_used_ratio[1h]) == increasing", source)
    down = _query("fast", "trend(disk_used_ratio[1h]) == decreasing", source)
    assert [k for k in up if "'i': '0'" in k] and not [k for k in up if "'i': '1'" in k]
    assert [k for k in down if "'i': '1'" in k] and not [k for k in down if "'i': '0'" in k]


def test_linear_forecast_is_predict_linear() -> None:
    source = _source()
    for engine in ("fast", "reference"):
        for window, h in (("1h", "30m"), ("10m", "0"), ("5m", "-2m")):
            ours = _query(engine, f"forecast(disk_used_ratio[{window}], {h})", source)
            prom = _query(engine, f"predict_linear(disk_used_ratio[{window}], {h})", source)
            assert ours == prom
