"""``anomaly()``, one window at a time, straight from the definitions.

Every method scores the window's newest sample against the window's earlier
samples only (causal: a later sample never changes a score). Shared rules:

* the newest sample is NaN: no output; ±Inf: the score is +Inf;
* earlier samples that are NaN or ±Inf are left out;
* fewer than ``MIN_HISTORY`` usable earlier samples: no output;
* scales are floored (:func:`monitoring.engine.anomaly_math.scaled`), so a score
  is finite for finite input.

The fast kernels (:mod:`monitoring.engine.fast.anomaly`) compute the same for
all windows at once; tests compare the two. docs/anomaly-methods.md explains
each method and why its settings are what they are.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

from monitoring.engine.anomaly_math import (
    BAND_SCORE,
    EWMA_HALF_LIFE,
    HOLD,
    MAD_SCALE,
    MARGIN_SEASON,
    MARGIN_VALUE,
    MEAN_AD_SCALE,
    MIN_HISTORY,
    QUANTILE,
    SEASON_TOLERANCE,
    Z_QUANTILE,
    band_score,
    scaled,
    season_ms,
)
from monitoring.engine.model import EvalError
from monitoring.engine.reference.rangefuncs import Ctx, RangeFunc
from monitoring.engine.reference.util import quantile
from monitoring.stdlib.conditions import ANOMALY_METHODS


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _judge(x: float, history: list[float],
           score: Callable[[float, list[float]], float]) -> float | None:
    """The shared rules around a method's score of ``x`` against ``history``."""
    if math.isnan(x) or len(history) < MIN_HISTORY:
        return None
    if math.isinf(x):
        return math.inf
    return score(x, history)


def _mean(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def robust_scale(history: list[float], median: float) -> float:
    """1.4826 × MAD, or 1.2533 × the mean absolute deviation when MAD is 0."""
    deviations = [abs(v - median) for v in history]
    return max(MAD_SCALE * quantile(0.5, deviations), MEAN_AD_SCALE * _mean(deviations))


def _zscore(x: float, history: list[float]) -> float:
    # Centred on the newest value: a window equal to it scores exactly 0, whatever the
    # order of the sums (the fast kernels sum in another order).
    offsets = [v - x for v in history]
    shift = _mean(offsets)
    std = math.sqrt(_mean([(d - shift) ** 2 for d in offsets]))
    return scaled(shift, std, x + shift, x)


def _mad(x: float, history: list[float], level: float | None = None) -> float:
    median = quantile(0.5, history)
    return scaled(x - median, robust_scale(history, median), median, x,
                  x if level is None else level)


def _quantile(x: float, history: list[float]) -> float:
    median = quantile(0.5, history)
    edge = quantile(QUANTILE if x >= median else 1.0 - QUANTILE, history)
    half = abs(edge - median)
    if half == 0:
        return scaled(x - median, robust_scale(history, median), median, x)
    return Z_QUANTILE * scaled(x - median, half, median, x)


def _ewma(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    newest = ts[-1]
    half_life = c.range_ms * EWMA_HALF_LIFE
    pairs = [(2.0 ** (-(newest - t) / half_life), v) for t, v in zip(ts[:-1], vs[:-1],
                                                                      strict=True)
             if math.isfinite(v)]

    def score(x: float, history: list[float]) -> float:
        total = 0.0
        for w, _ in pairs:
            total += w
        shift = 0.0  # centred on the newest value, as in zscore
        for w, v in pairs:
            shift += w * (v - x)
        shift /= total
        var = 0.0
        for w, v in pairs:
            var += w * ((v - x) - shift) ** 2
        return scaled(shift, math.sqrt(var / total), x + shift, x)

    return _judge(vs[-1], [v for _, v in pairs], score)


def _season(c: Ctx) -> int:
    """The season in ms; an error unless the window can hold a season and its tolerance."""
    season = c.args[0]
    s_ms = season_ms(season)
    if math.isnan(season) or season < 0:
        raise EvalError(f"anomaly(): season must be >= 0, got {season}")
    if s_ms > 0 and SEASON_TOLERANCE * c.range_ms <= (SEASON_TOLERANCE + 1) * s_ms:
        raise EvalError(f"anomaly(): the season ({season}s) must be shorter than the range "
                        f"({c.range_ms / 1000}s) for method seasonal or ensemble")
    return s_ms


def season_changes(ts: tuple[int, ...], vs: tuple[float, ...], start: int,
                   s_ms: int) -> list[float | None]:
    """Per sample, its change from the sample one season earlier (None: no such sample).

    Only samples whose ``t - season`` lies at least the tolerance inside the window
    get one, so the sample found is the same whatever lies outside the window.
    """
    out: list[float | None] = []
    for j, t in enumerate(ts):
        target = t - s_ms
        if SEASON_TOLERANCE * (target - start) <= s_ms:
            out.append(None)
            continue
        i1 = bisect.bisect_left(ts, target)
        i0 = i1 - 1
        best = i0 if i1 >= len(ts) or (i0 >= 0 and target - ts[i0] <= ts[i1] - target) else i1
        if SEASON_TOLERANCE * abs(ts[best] - target) > s_ms:
            out.append(None)
            continue
        # The earlier sample must be usable (finite); the newest keeps its NaN/Inf.
        out.append(vs[j] - vs[best] if math.isfinite(vs[best]) else None)
    return out


def _seasonal(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    s_ms = _season(c)
    if not vs:
        return None
    if s_ms == 0:
        raise EvalError('anomaly(): method "seasonal" needs a season, e.g. season=1d')
    changes = season_changes(ts, vs, c.range_start, s_ms)
    newest = changes[-1]
    if newest is None:
        return None
    history = _finite([v for v in changes[:-1] if v is not None])
    # The floor also scales with the value itself: changes of a constant series are 0.
    return _judge(newest, history, lambda x, h: _mad(x, h, vs[-1]))


def channel_score(channel: list[float | None], margin: float, level: float) -> float | None:
    """The ensemble's score of one channel's newest value: its band position, held."""
    newest = channel[-1]
    if newest is None:
        return None
    earlier = [(j, v) for j, v in enumerate(channel[:-1]) if v is not None and math.isfinite(v)]
    if math.isnan(newest) or len(earlier) < MIN_HISTORY:
        return None
    if math.isinf(newest):
        return math.inf
    top = max(v for _, v in earlier)
    bottom = min(v for _, v in earlier)
    score = band_score(newest, top, bottom, margin, level)
    # Held: the last HOLD earlier values broke the record of the ones before them
    # (strictly: a flat window that starts to move is news, not a repeat).
    last = len(channel) - 1
    recent = [v for j, v in earlier if j >= last - HOLD]
    older = [v for j, v in earlier if j < last - HOLD]
    if not recent or not older:
        return score
    upward = (newest - top) + (newest - bottom) > 0
    held = max(recent) > max(older) if upward else min(recent) < min(older)
    return min(score, BAND_SCORE) if held else score


def _ensemble(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
    s_ms = _season(c)
    if not vs:
        return None
    channels: list[tuple[list[float | None], float]] = [(list(vs), MARGIN_VALUE)]
    if s_ms:
        channels.append((season_changes(ts, vs, c.range_start, s_ms), MARGIN_SEASON))
    scores = [s for ch, m in channels if (s := channel_score(ch, m, vs[-1])) is not None]
    return max(scores) if scores else None


def _values_method(score: Callable[[float, list[float]], float]) -> RangeFunc:
    def fn(ts: tuple[int, ...], vs: tuple[float, ...], c: Ctx) -> float | None:
        return _judge(vs[-1], _finite(vs[:-1]), score) if vs else None
    return fn


ANOMALY_FUNCTIONS: dict[str, RangeFunc] = {
    "anomaly:zscore": _values_method(_zscore),
    "anomaly:mad": _values_method(_mad),
    "anomaly:quantile": _values_method(_quantile),
    "anomaly:ewma": lambda ts, vs, c: _ewma(ts, vs, c) if vs else None,
    "anomaly:seasonal": _seasonal,
    "anomaly:ensemble": _ensemble,
}
"""``anomaly(v[W], method, season)`` by ``anomaly:<method>``."""

assert {k.split(":")[1] for k in ANOMALY_FUNCTIONS} == set(ANOMALY_METHODS)
