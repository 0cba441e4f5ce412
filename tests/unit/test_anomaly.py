"""anomaly(): both back ends agree, and the scores mean what docs/anomaly-methods.md says.

* the fast kernels against the reference functions window by window, on
  Hypothesis-drawn data (noise, ties, constants, large levels, sines, gaps,
  NaN and ±Inf, regular and irregular times, windows ending on samples or off
  them, with and without a season);
* causality: changing or adding samples after a window's end never changes
  its score;
* invariance: every method scores ``a·x + b`` as it scores ``x``;
* meaning: a planted spike scores at least 3 while plain noise mostly stays
  below 3; the shared rules for short, constant and non-finite windows;
* argument errors in both back ends, and the function from the DSL through
  both evaluators.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl.compiler import compile_expression
from monitoring.engine.anomaly_math import MIN_HISTORY, REL_FLOOR, band_score, scaled
from monitoring.engine.fast.anomaly import ANOMALY_KERNELS
from monitoring.engine.fast.kernels import build_windows
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import EvalError, Series, labels_of
from monitoring.engine.promqltest import evaluator_by_name
from monitoring.engine.reference.anomaly import ANOMALY_FUNCTIONS
from monitoring.engine.reference.rangefuncs import Ctx
from monitoring.stdlib.conditions import ANOMALY_METHODS

Data = list[tuple[np.ndarray, np.ndarray]]
SEASONAL = ("seasonal", "ensemble")


def run_kernel(method: str, data: Data, ends: Sequence[int], range_ms: int,
               season: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The fast kernel over every (series, end), as the evaluator calls it."""
    ends_a = np.asarray(ends, dtype=np.int64)
    w = build_windows([np.asarray(t, dtype=np.int64) for t, _ in data],
                      [np.asarray(v, dtype=np.float64) for _, v in data], ends_a, range_ms,
                      ends_a, [np.full(len(ends_a), season)])
    with np.errstate(all="ignore"):  # as ranges.apply_kernel runs kernels
        values, ok = ANOMALY_KERNELS[f"anomaly:{method}"](w)
    return values, ok


def reference(method: str, ts: np.ndarray, vs: np.ndarray, end: int, range_ms: int,
              season: float = 0.0) -> float | None:
    """The reference function over the window ``(end - range, end]`` (None: no output)."""
    keep = (ts > end - range_ms) & (ts <= end)
    if not keep.any():
        return None
    ctx = Ctx(end, end - range_ms, end, range_ms, (season,))
    return ANOMALY_FUNCTIONS[f"anomaly:{method}"](
        tuple(int(t) for t in ts[keep]), tuple(float(v) for v in vs[keep]), ctx)


def agree(fast: float, ref: float) -> bool:
    """Equal, or within 1e-9 relative (1e-9 absolute near 0); Inf equals Inf."""
    if math.isinf(ref) or math.isinf(fast):
        return fast == ref
    return abs(fast - ref) <= 1e-9 * max(1.0, abs(ref))


# ---------------------------------------------------------------- data


@st.composite
def data_sets(draw: st.DrawFn) -> tuple[Data, list[int], int, float]:
    """Series, window ends, range and season drawn to reach every branch of the kernels."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    range_ms = draw(st.sampled_from([120_000, 600_000, 1_800_000, 3_600_000]))
    season = draw(st.sampled_from([0.0, 60.0, 300.0, 900.0]))
    if (season * 1000) * 49 >= 48 * range_ms:
        season = 0.0
    data: Data = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(0, 300))
        if draw(st.booleans()):  # a regular scrape with a little jitter: seasons line up
            ts = 1_000_000 + np.arange(n, dtype=np.int64) * 15_000 \
                + rng.integers(0, 400, n) * draw(st.sampled_from([0, 1]))
        else:
            ts = 1_000_000 + np.cumsum(rng.integers(1, 60, n) * 1000).astype(np.int64)
        kind = draw(st.sampled_from(["noise", "ties", "constant", "level", "sine", "spiky"]))
        if kind == "noise":
            vs = rng.normal(0, 1, n)
        elif kind == "ties":  # more than half the window one value: MAD = 0
            vs = rng.choice([0.0, 0.0, 0.0, 1.0, 2.0], n)
        elif kind == "constant":
            vs = np.full(n, 4.25)
        elif kind == "level":  # a large level with small noise: cancellation
            vs = 1e9 + np.round(rng.normal(0, 3, n)) * 1e-3
        elif kind == "sine":
            vs = np.sin(ts / 60_000.0) + rng.normal(0, 0.05, n)
        else:
            vs = rng.exponential(1.0, n) ** 3
        if n and draw(st.booleans()):
            bad = rng.integers(0, n, draw(st.integers(1, 4)))
            vs[bad] = rng.choice([math.nan, math.inf, -math.inf], len(bad))
        data.append((ts, vs.astype(np.float64)))
    all_ts = np.concatenate([t for t, _ in data])
    if len(all_ts) and draw(st.booleans()):  # every window ends on a sample
        ends = sorted(set(rng.choice(all_ts, min(40, len(all_ts))).tolist()))
    else:
        step = draw(st.sampled_from([15_000, 60_000]))
        ends = list(range(1_000_000, 1_000_000 + 80 * 60_000, step))
    return data, ends, range_ms, season


# ---------------------------------------------------------------- fast = reference


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data_sets(), st.sampled_from(ANOMALY_METHODS))
def test_fast_kernels_match_the_reference(case: tuple[Data, list[int], int, float],
                                          method: str) -> None:
    data, ends, range_ms, season = case
    if method == "seasonal" and season == 0.0:
        season = 60.0 if range_ms > 60_000 else 0.0
        if season == 0.0:
            return
    values, ok = run_kernel(method, data, ends, range_ms, season)
    for i, (ts, vs) in enumerate(data):
        for s, end in enumerate(ends):
            ref = reference(method, ts, vs, end, range_ms, season)
            if ref is None:
                assert not ok[i, s], (method, i, end, values[i, s])
            else:
                assert ok[i, s], (method, i, end, ref)
                assert agree(values[i, s], ref), (method, i, end, values[i, s], ref)


def test_windows_that_all_qualify_take_the_unmasked_path() -> None:
    # Every window full and every channel available: the kernels' all-windows branches.
    ts = np.arange(400, dtype=np.int64) * 15_000
    vs = np.sin(np.arange(400) / 7.0) + np.random.default_rng(3).normal(0, 0.1, 400)
    ends = [int(t) for t in ts[-5:]]
    for method in ANOMALY_METHODS:
        season = 300.0 if method in SEASONAL else 0.0
        values, ok = run_kernel(method, [(ts, vs), (ts, -vs)], ends, 3_600_000, season)
        assert ok.all()
        for s, end in enumerate(ends):
            ref = reference(method, ts, vs, end, 3_600_000, season)
            assert ref is not None and agree(values[0, s], ref)


# ---------------------------------------------------------------- causality, invariance


@settings(max_examples=60, deadline=None)
@given(data_sets(), st.sampled_from(ANOMALY_METHODS), st.integers(0, 2**32 - 1))
def test_later_samples_never_change_a_score(case: tuple[Data, list[int], int, float],
                                            method: str, seed: int) -> None:
    data, ends, range_ms, season = case
    if method == "seasonal":
        season = season or 60.0
    if (season * 1000) * 49 >= 48 * range_ms:
        return
    cut = ends[len(ends) // 2]
    rng = np.random.default_rng(seed)
    changed: Data = []
    for ts, vs in data:
        later = ts > cut
        new_vs = vs.copy()
        new_vs[later] = rng.normal(0, 100, int(later.sum()))
        extra = np.arange(1, 30, dtype=np.int64) * 7_000 + (int(ts[-1]) if len(ts) else cut)
        extra = extra[extra > cut]
        changed.append((np.concatenate([ts, extra]),
                        np.concatenate([new_vs, rng.normal(0, 100, len(extra))])))
    before, ok_before = run_kernel(method, data, ends, range_ms, season)
    after, ok_after = run_kernel(method, changed, ends, range_ms, season)
    upto = [s for s, end in enumerate(ends) if end <= cut]
    assert np.array_equal(ok_before[:, upto], ok_after[:, upto])
    # Equal up to rounding: windows are summed in chunks of similar lengths, and the
    # later windows' lengths change how rows are grouped (and padded), so a sum may
    # differ in its last bit. No information from later samples gets in.
    assert np.allclose(np.where(ok_before, before, 0)[:, upto],
                       np.where(ok_after, after, 0)[:, upto], rtol=1e-12, atol=0)


@pytest.mark.parametrize("method", ANOMALY_METHODS)
@pytest.mark.parametrize(("a", "b"), [(1.0, 1e3), (250.0, -7.0), (1e-3, 0.5), (-3.7, 2.0)])
def test_scores_do_not_depend_on_units_or_offsets(method: str, a: float, b: float) -> None:
    rng = np.random.default_rng(5)
    ts = np.arange(600, dtype=np.int64) * 15_000 + rng.integers(0, 300, 600)
    vs = rng.normal(10, 2, 600) + np.sin(np.arange(600) / 20.0)
    vs[::97] += 9  # a few spikes, so that scores above 3 are compared too
    ends = [int(t) for t in ts[240:]]  # every sample, the spikes included
    season = 600.0 if method in SEASONAL else 0.0
    base, ok = run_kernel(method, [(ts, vs)], ends, 3_600_000, season)
    moved, ok2 = run_kernel(method, [(ts, a * vs + b)], ends, 3_600_000, season)
    assert ok.any() and np.array_equal(ok, ok2)
    assert np.allclose(base[ok], moved[ok], rtol=1e-6, atol=1e-9)
    assert base[ok].max() > 3


# ---------------------------------------------------------------- what the scores mean


def _noise(seed: int, hours: float = 8.0, swing: float = 5.0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise (σ = 1), 15 s apart, on a sine of period 10 minutes and ``swing``."""
    rng = np.random.default_rng(seed)
    n = int(hours * 240)
    ts = np.arange(n, dtype=np.int64) * 15_000 + rng.integers(0, 300, n)
    vs = 50 + swing * np.sin(2 * np.pi * ts / 600_000) + rng.normal(0, 1, n)
    return ts, vs


@pytest.mark.parametrize("method", ANOMALY_METHODS)
def test_noise_mostly_scores_below_3(method: str) -> None:
    # A score of 3 or more is unusual: rare on plain noise (for normal data, |z| >= 3 is
    # 0.27 %; a window's new record is 2 / (n + 1)). The methods with a season get a
    # seasonal pattern as well.
    season = 600.0 if method in SEASONAL else 0.0
    high = total = 0
    for seed in range(3):
        ts, vs = _noise(seed, swing=5.0 if season else 0.0)
        ends = list(range(2 * 3_600_000, int(ts[-1]), 60_000))
        values, ok = run_kernel(method, [(ts, vs)], ends, 2 * 3_600_000, season)
        high += int((values[ok] >= 3).sum())
        total += int(ok.sum())
    assert total > 1000
    assert high / total < 0.02, (method, high, total)


@pytest.mark.parametrize("method", ANOMALY_METHODS)
def test_a_planted_spike_scores_at_least_3(method: str) -> None:
    season = 600.0 if method in SEASONAL else 0.0
    for seed in range(3):
        ts, vs = _noise(seed, swing=5.0 if season else 0.0)
        k = len(ts) - 100
        vs[k] += 8  # 8 σ of the noise (0.8 × the seasonal pattern's swing)
        values, ok = run_kernel(method, [(ts, vs)], [int(ts[k])], 2 * 3_600_000, season)
        assert ok[0, 0] and values[0, 0] >= 3, (method, seed, values[0, 0])
        before, _ = run_kernel(method, [(ts, vs)], [int(ts[k - 1])], 2 * 3_600_000, season)
        assert before[0, 0] < 3


def test_the_ensemble_scores_a_break_once_and_holds() -> None:
    # A step up to a new level beyond the window's range: the first sample above the old
    # record scores above 3; the next ones (a record set within HOLD samples) at most 3.
    ts = np.arange(300, dtype=np.int64) * 60_000
    vs = np.where(np.arange(300) < 250, np.sin(np.arange(300.0)), 5.0 + np.arange(300) * 0.01)
    ends = [int(t) for t in ts[248:256]]
    values, ok = run_kernel("ensemble", [(ts, vs)], ends, 6 * 3_600_000)
    assert ok.all()
    assert values[0, 1] < 3 < values[0, 2]  # ts[249] is the last sine sample, ts[250] jumps
    assert (values[0, 3:] <= 3).all()


def test_too_few_earlier_samples_give_no_output() -> None:
    ts = np.arange(MIN_HISTORY + 1, dtype=np.int64) * 60_000
    vs = np.arange(MIN_HISTORY + 1, dtype=np.float64)
    for method in ANOMALY_METHODS:
        season = 60.0 if method in SEASONAL else 0.0
        _, ok = run_kernel(method, [(ts, vs)], [int(ts[-2]), int(ts[-1])], 3_600_000, season)
        assert not ok[0, 0]
        if method != "seasonal":  # the seasonal changes start one season in
            assert ok[0, 1], method


@pytest.mark.parametrize("method", ANOMALY_METHODS)
def test_constant_windows_have_finite_scores(method: str) -> None:
    season = 60.0 if method in SEASONAL else 0.0
    ts = np.arange(60, dtype=np.int64) * 15_000
    for level in (0.0, 1e6, -3.5):
        vs = np.full(60, level)
        same, ok = run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000, season)
        assert ok[0, 0] and same[0, 0] == 0.0
        vs[-1] = level + 1.0
        changed, _ = run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000, season)
        assert 3 < changed[0, 0] < math.inf
        if level:  # rounding noise, not a change (around 0, any change is a change)
            vs[-1] = level * (1 + 1e-13)
            noise, _ = run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000, season)
            assert noise[0, 0] < 1e-3


@pytest.mark.parametrize("method", ANOMALY_METHODS)
def test_non_finite_samples(method: str) -> None:
    season = 300.0 if method in SEASONAL else 0.0
    ts, vs = _noise(1, hours=2)
    end = [int(ts[-1])]
    holes = vs.copy()
    holes[-50] = math.nan  # earlier non-finite samples are left out ...
    holes[-60] = math.inf
    with_holes, ok = run_kernel(method, [(ts, holes)], end, 3_600_000, season)
    assert ok[0, 0] and math.isfinite(with_holes[0, 0])
    if method not in SEASONAL:  # (there, a hole also removes the changes that use it)
        dropped = np.delete(np.arange(len(ts)), [len(ts) - 50, len(ts) - 60])
        without, _ = run_kernel(method, [(ts[dropped], vs[dropped])], end, 3_600_000)
        assert agree(with_holes[0, 0], without[0, 0])
    vs_nan, vs_inf = vs.copy(), vs.copy()
    vs_nan[-1], vs_inf[-1] = math.nan, -math.inf
    _, ok_nan = run_kernel(method, [(ts, vs_nan)], end, 3_600_000, season)
    inf, ok_inf = run_kernel(method, [(ts, vs_inf)], end, 3_600_000, season)
    assert not ok_nan[0, 0]  # ... a NaN newest sample has no score, an infinite one +Inf
    assert ok_inf[0, 0] and inf[0, 0] == math.inf


def test_shared_rules_by_hand() -> None:
    assert scaled(0.0, 0.0, 5.0) == 0.0
    assert scaled(2.0, 0.5, 1.0) == 4.0
    assert scaled(1.0, 0.0, 1e6) == 1.0 / (REL_FLOOR * 1e6)  # floored, finite
    assert band_score(1.0, 1.0, -1.0, 0.0, 1.0) == 3.0  # at the top of the band
    assert band_score(0.0, 1.0, -1.0, 0.0, 0.0) == 0.0  # in the middle
    assert band_score(2.0, 1.0, -1.0, 0.0, 2.0) == 6.0  # a half-width beyond the edge
    assert band_score(1.0, 1.0, -1.0, 0.5, 1.0) == 1.5  # widened by half the range per side
    # a channel of changes near 0 on a large level: the level sets the floor
    assert band_score(1e-12, 0.0, 0.0, 0.0, 1e6) == pytest.approx(6e-9, rel=1e-12)


# ---------------------------------------------------------------- errors and the DSL


@pytest.mark.parametrize(("method", "season", "message"), [
    ("seasonal", 0.0, 'method "seasonal" needs a season'),
    ("seasonal", 3600.0, "must be shorter than the range"),
    ("ensemble", 3600.0, "must be shorter than the range"),
    ("ensemble", -60.0, "season must be >= 0"),
    ("seasonal", math.nan, "season must be >= 0"),
])
def test_bad_seasons_are_errors_in_both_back_ends(method: str, season: float,
                                                  message: str) -> None:
    ts = np.arange(30, dtype=np.int64) * 60_000
    vs = np.arange(30, dtype=np.float64)
    with pytest.raises(EvalError, match=f"anomaly\\(\\): .*{message}"):
        run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000, season)
    with pytest.raises(EvalError, match=f"anomaly\\(\\): .*{message}"):
        reference(method, ts, vs, int(ts[-1]), 3_600_000, season)
    # no samples, no check (as Prometheus checks arguments only where a series exists)
    run_kernel(method, [(ts[:0], vs[:0])], [int(ts[-1])], 3_600_000, season)


def test_other_methods_ignore_the_season() -> None:
    ts = np.arange(30, dtype=np.int64) * 60_000
    vs = np.sin(np.arange(30.0))
    for method in ("zscore", "mad", "quantile", "ewma"):
        plain, _ = run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000)
        odd, _ = run_kernel(method, [(ts, vs)], [int(ts[-1])], 3_600_000, 86_400.0)
        assert plain[0, 0] == odd[0, 0]


def _source() -> MemorySource:
    source = MemorySource()
    for i in range(3):
        ts, vs = _noise(10 + i, hours=3)
        vs[-200 + 40 * i:-196 + 40 * i] += 15  # a minute long: an evaluation step sees it
        source.add(Series(labels_of({"__name__": "latency_seconds", "i": str(i)}), ts, vs))
    return source


@pytest.mark.parametrize("expr", [
    'anomaly(latency_seconds[1h], method="zscore") > 3',
    'anomaly(latency_seconds[1h], method="mad")',
    'anomaly(latency_seconds[1h], "quantile")',
    'anomaly(latency_seconds[1h], method="ewma")',
    'anomaly(latency_seconds[1h], method="seasonal", season=10m)',
    'anomaly(latency_seconds[90m], season=10m)',
    "anomaly(latency_seconds[1h])",
    'max(anomaly(avg_over_time(latency_seconds[2m])[1h:1m], method="mad"))',
])
def test_dsl_queries_agree_between_evaluators(expr: str) -> None:
    source = _source()
    node, diagnostics = compile_expression(expr)
    assert node is not None, [d.message for d in diagnostics]
    results = {}
    for engine in ("fast", "reference"):
        result = evaluator_by_name(engine)(node, source, 3_600_000, 3 * 3_600_000, 60_000)
        results[engine] = {str(dict(s.labels)): s.values.tolist() for s in result.series}
    fast, ref = results["fast"], results["reference"]
    assert fast.keys() == ref.keys() and fast
    for key, values in fast.items():
        assert np.allclose(values, ref[key], rtol=1e-9, atol=1e-9), (key, values, ref[key])
    assert not any("__name__" in key for key in fast)  # results drop the metric name
