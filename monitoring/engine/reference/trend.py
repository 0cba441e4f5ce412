"""``trend()`` and the forecasts, one window at a time, straight from their definitions.

The fast kernels (:mod:`monitoring.engine.fast.trend`) use prefix sums and
precomputed Holt-Winters weights; this module fits each window directly: a
two-pass least-squares fit with exact sums and the textbook t-test on its slope
(the p-value from Student's t distribution), and the Holt-Winters recursion run
over the window's bins. Tests check the two against each other.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from monitoring.engine.model import EvalError
from monitoring.engine.reference.rangefuncs import Ctx, RangeFunc, linear_regression
from monitoring.engine.trend_math import (
    ALPHA,
    BETA,
    BINS_PER_SEASON,
    GAMMA,
    bin_offset,
    bins_ahead,
    season_bins,
    t_two_sided_p,
)


@dataclass(frozen=True, slots=True)
class TrendFit:
    """The least-squares line of one window and its t-test."""

    slope: float  # per second
    t: float  # slope / standard error (±inf for a perfect fit)
    p: float  # two-sided p-value with n - 2 degrees of freedom
    change: float  # |slope| x the window's range
    start: float  # the fitted value at the window's start (t - range)
    sxy: float  # the centred cross sum; 0 when the values do not move


def fit_trend(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> TrendFit:
    """The fit of a window of at least 3 finite samples."""
    n = len(vs)
    xs = [(t - ts[0]) / 1000 for t in ts]
    ds = [v - vs[0] for v in vs]
    xbar = math.fsum(xs) / n
    dbar = math.fsum(ds) / n
    dx = [x - xbar for x in xs]
    dd = [d - dbar for d in ds]
    sxx = math.fsum(a * a for a in dx)
    sxy = math.fsum(a * b for a, b in zip(dx, dd, strict=True))
    slope = sxy / sxx
    ssr = math.fsum((b - slope * a) ** 2 for a, b in zip(dx, dd, strict=True))
    df = n - 2
    if sxy == 0:
        t = 0.0
    elif ssr == 0:
        t = math.copysign(math.inf, slope)
    else:
        t = slope / math.sqrt(ssr / (df * sxx))
    tbar = ts[0] + 1000 * xbar
    start = vs[0] + dbar + slope * (c.range_end - c.range_ms - tbar) / 1000
    return TrendFit(slope, t, t_two_sided_p(t, df), abs(slope * c.range_ms / 1000), start, sxy)


def _trend_args(args: tuple[float, ...]) -> tuple[float, float, float]:
    conf, min_change, min_rel = (*args, *(0.95, 0.0, 0.0)[len(args):])[:3]
    if not 0 <= conf < 1:
        raise EvalError(f"trend(): confidence must be at least 0 and below 1, got {conf:g}")
    for name, value in (("min_change", min_change), ("min_relative_change", min_rel)):
        if math.isnan(value):
            raise EvalError(f"trend(): {name} must be a number, got {value:g}")
    return conf, min_change, min_rel


def _trend(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    conf, min_change, min_rel = _trend_args(c.args)
    if len(vs) < 3:
        return None
    if not all(math.isfinite(v) for v in vs):
        return math.nan
    fit = fit_trend(ts, vs, c)
    if fit.sxy == 0 or fit.p > 1 - conf:
        return 0.0
    if fit.change < min_change or fit.change < min_rel * abs(fit.start):
        return 0.0
    return 1.0 if fit.sxy > 0 else -1.0


# ---------------------------------------------------------------- forecasts


def bin_values(ts: tuple[int, ...], vs: tuple[float, ...], end: int, range_ms: int,
               season_ms: int) -> list[float] | None:
    """The window's bins from the first one with a sample: means, empty bins carried forward.

    ``None`` with fewer than two seasons of bins; NaN values when a binned sample
    is not finite.
    """
    m = BINS_PER_SEASON
    g = season_bins(range_ms, season_ms)
    if g < 2 * m:
        return None
    edges = [end - bin_offset(g - q, season_ms) for q in range(g + 1)]
    members: list[list[float]] = [[] for _ in range(g)]
    for t, v in zip(ts, vs, strict=True):
        if edges[0] < t <= edges[-1]:
            members[bisect.bisect_left(edges, t) - 1].append(v)
    used = next((q for q in range(g) if members[q]), None)
    if used is None or g - used < 2 * m:
        return None
    if not all(math.isfinite(v) for bin_ in members for v in bin_):
        return [math.nan] * (g - used)
    out: list[float] = []
    for bin_ in members[used:]:
        out.append(math.fsum(bin_) / len(bin_) if bin_ else out[-1])
    return out


def holt_winters(ys: list[float], ahead: list[float]) -> list[float]:
    """Additive Holt-Winters over ``ys`` (season ``BINS_PER_SEASON``), forecasts ``j`` ahead.

    ``j`` counts bins after the last one and may be fractional: the seasonal
    index is then interpolated linearly between the two whole bins around it.

    Initial state from the first two seasons: their means give the level and
    the trend, the detrended deviations from them the seasonal indices. Then
    every value (those two seasons included) updates level, trend and season.
    """
    m = BINS_PER_SEASON
    a1 = math.fsum(ys[:m]) / m
    a2 = math.fsum(ys[m:2 * m]) / m
    trend = (a2 - a1) / m
    season = [((ys[i] - a1 - trend * (i - (m - 1) / 2))
               + (ys[m + i] - a2 - trend * (i - (m - 1) / 2))) / 2 for i in range(m)]
    level = a1 - trend * ((m + 1) / 2)
    for i, y in enumerate(ys):
        old = season[i % m]
        new_level = ALPHA * (y - old) + (1 - ALPHA) * (level + trend)
        trend = BETA * (new_level - level) + (1 - BETA) * trend
        season[i % m] = GAMMA * (y - new_level) + (1 - GAMMA) * old
        level = new_level
    out = []
    for j in ahead:
        pos = len(ys) - 1 + j
        whole = math.floor(pos)
        frac = pos - whole
        index = (1 - frac) * season[whole % m] + frac * season[(whole + 1) % m]
        out.append(level + j * trend + index)
    return out


_FUNC = {"value": "forecast", "max": "forecast_max", "min": "forecast_min"}


def _forecast_args(kind: str, args: tuple[float, ...]) -> tuple[float, float]:
    horizon, season = (*args, 0.0)[:2]
    func = _FUNC[kind]
    if not (season == 0 or (season >= 1 and math.isfinite(season))):
        raise EvalError(f"{func}(): season must be 0 (linear) or at least 1 (seconds), "
                        f"got {season:g}")
    if kind != "value" and not (horizon > 0 and math.isfinite(horizon)):
        raise EvalError(f"{func}(): horizon must be a number of seconds > 0, got {horizon:g}")
    if kind == "value" and season > 0 and not (horizon >= 0 and math.isfinite(horizon)):
        raise EvalError(f"{func}(): horizon must be a number of seconds >= 0 with a season, "
                        f"got {horizon:g}")
    return horizon, season


def _extreme(kind: str, values: list[float]) -> float:
    if any(math.isnan(v) for v in values):
        return math.nan
    return max(values) if kind == "max" else min(values)


def _forecast(kind: str) -> RangeFunc:
    def fn(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
        horizon, season = _forecast_args(kind, c.args)
        if season == 0:
            if len(vs) < 2:
                return None
            slope, intercept = linear_regression(ts, vs, c.t)
            at_h = slope * horizon + intercept
            return at_h if kind == "value" else _extreme(kind, [intercept, at_h])
        season_ms = round(season * 1000)
        ys = bin_values(ts, vs, c.range_end, c.range_ms, season_ms)
        if ys is None:
            return None
        offset = c.t - c.range_end
        end = bins_ahead(offset + round(horizon * 1000), season_ms)
        if kind == "value":
            return holt_winters(ys, [end])[0]
        # (t, t + horizon]: both ends (t as a limit) and every whole bin in between
        start = bins_ahead(offset, season_ms)
        inner = [float(j) for j in range(math.floor(start) + 1, math.ceil(end))]
        return _extreme(kind, holt_winters(ys, [start, *inner, end]))

    return fn


TREND_FUNCTIONS: dict[str, RangeFunc] = {
    "trend": _trend,
    "forecast": _forecast("value"),
    "forecast_max": _forecast("max"),
    "forecast_min": _forecast("min"),
}
"""The trend family, by function name; arguments as in the fast kernels."""
