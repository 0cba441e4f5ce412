"""Functions over range vectors (``rate``, ``*_over_time``, ...): functions.go, one window.

Each takes the window's timestamps and values (staleness markers already
removed), the evaluation time and window bounds, and the scalar arguments,
and returns the output value or ``None`` for "no output for this series".
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

from monitoring.engine.reference.util import ieee_div, kahan_inc, quantile

Window = tuple[tuple[int, ...], tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a range function may look at besides the samples."""

    t: int
    """The evaluation time (``enh.Ts``)."""
    range_start: int
    range_end: int
    range_ms: int
    args: tuple[float, ...]
    """The scalar arguments, in order, without the range vector."""


RangeFunc = Callable[[tuple[int, ...], tuple[float, ...], Ctx], float | None]


def _extrapolated(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx, is_counter: bool,
                  is_rate: bool) -> float | None:
    """``extrapolatedRate``: rate/increase/delta with Prometheus's edge extrapolation."""
    if len(vs) < 2:
        return None
    result = vs[-1] - vs[0]
    if is_counter:
        for prev, cur in itertools.pairwise(vs):
            if cur < prev:
                result += prev
    first_t, last_t = ts[0], ts[-1]
    duration_to_start = (first_t - c.range_start) / 1000
    duration_to_end = (c.range_end - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (len(vs) - 1)
    threshold = average * 1.1
    if duration_to_start >= threshold:
        duration_to_start = average / 2
    if is_counter:
        duration_to_zero = duration_to_start
        if result > 0 and vs[0] >= 0:
            duration_to_zero = sampled * (vs[0] / result)
        if duration_to_zero < duration_to_start:
            duration_to_start = duration_to_zero
    if duration_to_end >= threshold:
        duration_to_end = average / 2
    factor = (sampled + duration_to_start + duration_to_end) / sampled
    if is_rate:
        factor /= c.range_ms / 1000
    return result * factor


def _instant_value(ts: tuple[int, ...], vs: tuple[float, ...], is_rate: bool) -> float | None:
    """``instantValue``: irate/idelta from the last two samples."""
    if len(vs) < 2:
        return None
    interval = ts[-1] - ts[-2]
    if interval == 0:
        return None
    result = vs[-1]
    if not is_rate or not vs[-1] < vs[-2]:
        result = vs[-1] - vs[-2]
    if is_rate:
        result /= interval / 1000
    return result


def _avg(vs: tuple[float, ...]) -> float:
    """``avg_over_time``: direct Kahan mean, incremental once the sum would overflow."""
    total, count = vs[0], 1.0
    mean = kahan_c = 0.0
    incremental = False
    for i, f in enumerate(vs[1:]):
        count = float(i + 2)
        if not incremental:
            new_sum, new_c = kahan_inc(f, total, kahan_c)
            if not math.isinf(new_sum):
                total, kahan_c = new_sum, new_c
                continue
            incremental = True
            mean = total / (count - 1)
            kahan_c /= count - 1
        q = (count - 1) / count
        mean, kahan_c = kahan_inc(f / count, q * mean, q * kahan_c)
    if incremental:
        return mean + kahan_c
    return total / count + kahan_c / count


def _sum(vs: tuple[float, ...]) -> float:
    total = c = 0.0
    for f in vs:
        total, c = kahan_inc(f, total, c)
    return total if math.isinf(total) else total + c


def _variance(vs: tuple[float, ...]) -> float:
    count = mean = c_mean = aux = c_aux = 0.0
    for f in vs:
        count += 1
        delta = f - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _compare(vs: tuple[float, ...], ts: tuple[int, ...],
             better: Callable[[float, float], bool], want_ts: bool) -> float:
    best, best_t = vs[0], ts[0]
    for t, f in zip(ts, vs, strict=True):
        if better(f, best):
            best, best_t = f, t
    return best_t / 1000 if want_ts else best


def linear_regression(ts: tuple[int, ...], vs: tuple[float, ...],
                      intercept_time: int) -> tuple[float, float]:
    """``linearRegression``: least-squares slope and intercept at ``intercept_time``."""
    n = sum_x = c_x = sum_y = c_y = sum_xy = c_xy = sum_x2 = c_x2 = 0.0
    init_y = vs[0]
    const_y = True
    for i, (t, f) in enumerate(zip(ts, vs, strict=True)):
        if const_y and i > 0 and f != init_y:
            const_y = False
        n += 1.0
        x = (t - intercept_time) / 1e3
        sum_x, c_x = kahan_inc(x, sum_x, c_x)
        sum_y, c_y = kahan_inc(f, sum_y, c_y)
        sum_xy, c_xy = kahan_inc(x * f, sum_xy, c_xy)
        sum_x2, c_x2 = kahan_inc(x * x, sum_x2, c_x2)
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    sum_x += c_x
    sum_y += c_y
    sum_xy += c_xy
    sum_x2 += c_x2
    cov_xy = sum_xy - sum_x * sum_y / n
    var_x = sum_x2 - sum_x * sum_x / n
    slope = ieee_div(cov_xy, var_x)
    intercept = sum_y / n - slope * sum_x / n
    return slope, intercept


def _deriv(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    if len(vs) < 2:
        return None
    return linear_regression(ts, vs, ts[0])[0]


def _predict_linear(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    if len(vs) < 2:
        return None
    slope, intercept = linear_regression(ts, vs, c.t)
    return slope * c.args[0] + intercept


def _changes(vs: tuple[float, ...]) -> float:
    n = 0
    for prev, cur in itertools.pairwise(vs):
        if cur != prev and not (math.isnan(cur) and math.isnan(prev)):
            n += 1
    return float(n)


def _resets(vs: tuple[float, ...]) -> float:
    return float(sum(1 for prev, cur in itertools.pairwise(vs) if cur < prev))


def _double_exponential_smoothing(ts: tuple[int, ...], vs: tuple[float, ...],
                                  c: Ctx) -> float | None:
    sf, tf = c.args
    if len(vs) < 2:
        return None
    s0, s1 = 0.0, vs[0]
    b = vs[1] - vs[0]
    for i in range(1, len(vs)):
        x = sf * vs[i]
        b = b if i - 1 == 0 else tf * (s1 - s0) + (1 - tf) * b
        y = (1 - sf) * (s1 + b)
        s0, s1 = s1, x + y
    return s1


def _mad(vs: tuple[float, ...]) -> float:
    if any(math.isnan(f) for f in vs):
        return math.nan  # the median, hence the deviation, is undefined
    median = quantile(0.5, list(vs))
    return quantile(0.5, [abs(f - median) for f in vs])


def _max_better(cur: float, best: float) -> bool:
    return cur > best or math.isnan(best)


def _min_better(cur: float, best: float) -> bool:
    return cur < best or math.isnan(best)


RANGE_FUNCTIONS: dict[str, RangeFunc] = {
    "rate": lambda ts, vs, c: _extrapolated(ts, vs, c, True, True),
    "increase": lambda ts, vs, c: _extrapolated(ts, vs, c, True, False),
    "delta": lambda ts, vs, c: _extrapolated(ts, vs, c, False, False),
    "irate": lambda ts, vs, c: _instant_value(ts, vs, True),
    "idelta": lambda ts, vs, c: _instant_value(ts, vs, False),
    "deriv": _deriv,
    "predict_linear": _predict_linear,
    "changes": lambda ts, vs, c: _changes(vs),
    "resets": lambda ts, vs, c: _resets(vs),
    "double_exponential_smoothing": _double_exponential_smoothing,
    "avg_over_time": lambda ts, vs, c: _avg(vs),
    "sum_over_time": lambda ts, vs, c: _sum(vs),
    "count_over_time": lambda ts, vs, c: float(len(vs)),
    "min_over_time": lambda ts, vs, c: _compare(vs, ts, _min_better, False),
    "max_over_time": lambda ts, vs, c: _compare(vs, ts, _max_better, False),
    "ts_of_min_over_time": lambda ts, vs, c: _compare(
        vs, ts, lambda cur, best: cur <= best or math.isnan(best), True),
    "ts_of_max_over_time": lambda ts, vs, c: _compare(
        vs, ts, lambda cur, best: cur >= best or math.isnan(best), True),
    "ts_of_first_over_time": lambda ts, vs, c: ts[0] / 1000,
    "ts_of_last_over_time": lambda ts, vs, c: ts[-1] / 1000,
    "last_over_time": lambda ts, vs, c: vs[-1],
    "first_over_time": lambda ts, vs, c: vs[0],
    "present_over_time": lambda ts, vs, c: 1.0,
    "absent_over_time": lambda ts, vs, c: 1.0,
    "stddev_over_time": lambda ts, vs, c: math.sqrt(v) if (v := _variance(vs)) >= 0
    else math.nan,
    "stdvar_over_time": lambda ts, vs, c: _variance(vs),
    "mad_over_time": lambda ts, vs, c: _mad(vs),
    "quantile_over_time": lambda ts, vs, c: quantile(c.args[0], list(vs)),
}
"""Every range-vector function of Prometheus, by name."""

__all__ = ["RANGE_FUNCTIONS", "Ctx", "linear_regression"]
