"""Scalar maths shared by both back ends of ``trend()`` and ``forecast()``.

Student's t distribution (for the significance test on a least-squares slope)
and the fixed settings of the seasonal forecast. Both evaluators import them so
that they test against the same critical values and bin the same way; the
distribution itself is checked in the tests against closed forms and
published tables.

Why not scipy: it would be a large dependency for one function. The two-sided
p-value of Student's t is a regularised incomplete beta function,
``p = I_x(df/2, 1/2)`` with ``x = df / (df + t²)``, which a short continued
fraction evaluates to about 1e-10 relative (``lgamma``'s rounding is the limit).
"""

from __future__ import annotations

import math
from functools import lru_cache

BINS_PER_SEASON = 48
"""A seasonal forecast resamples its window into bins of ``season / 48`` (30 minutes for a
daily season): bin means, with empty bins carrying the previous bin's value, each standing
for the middle of its bin."""
MAX_SEASONS = 16
"""At most this many of the newest seasons of the window are used (older ones would weigh
less than 0.4 % in the seasonal estimates)."""
ALPHA = 0.1
"""Holt-Winters level smoothing, per bin (chosen on synthetic series: docs/trend-methods.md)."""
BETA = 0.01
"""Holt-Winters trend smoothing, per bin."""
GAMMA = 0.3
"""Holt-Winters seasonal smoothing, per bin (each seasonal index is updated once a season)."""

_EPS = 1e-16
_TINY = 1e-300
_MAX_TERMS = 100_000
_MAX_STEPS = 2_000


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of ``I_x(a, b)`` (modified Lentz), converging for x < (a+1)/(a+b+2).

    The fraction is ``1 / (1 + d1 / (1 + d2 / (1 + ...)))`` with
    ``d(2k+1) = -(a+k)(a+b+k) x / ((a+2k)(a+2k+1))`` and
    ``d(2k) = k(b-k) x / ((a+2k-1)(a+2k))``.
    """
    c = 1.0
    d = 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for k in range(1, _MAX_TERMS):
        for num in (k * (b - k) * x / ((a + 2 * k - 1) * (a + 2 * k)),
                    -(a + k) * (a + b + k) * x / ((a + 2 * k) * (a + 2 * k + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function ``I_x(a, b)`` for a, b > 0."""
    if math.isnan(x):
        return math.nan
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def _t_density(t: float, df: float) -> float:
    """The density of Student's t at ``t``."""
    return math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
                    - (df + 1) / 2 * math.log1p(t * t / df))


@lru_cache(maxsize=4096)
def t_critical(confidence: float, df: int) -> float:
    """The ``t`` with ``P(|T| >= t) = 1 - confidence``: a slope is significant from there on.

    Newton's method on the p-value (whose derivative is twice the density),
    kept inside a bracket that shrinks with every step and falls back to
    bisection when a step would leave it.
    """
    if not 0.0 <= confidence < 1.0:
        raise ValueError(f"confidence must be in [0, 1), got {confidence}")
    alpha = 1.0 - confidence
    if alpha >= 1.0:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > alpha:
        lo, hi = hi, 2.0 * hi
        if math.isinf(hi):
            return math.inf
    t = 0.5 * (lo + hi)
    for _ in range(_MAX_STEPS):
        p = t_two_sided_p(t, df)
        if p > alpha:
            lo = t
        else:
            hi = t
        nxt = t + (p - alpha) / (2.0 * _t_density(t, df))
        if not lo < nxt < hi:
            nxt = 0.5 * (lo + hi)
        if abs(nxt - t) <= 2 * _EPS * t or hi - lo <= 4 * _EPS * hi:
            return nxt
        t = nxt
    raise ArithmeticError(f"t_critical({confidence}, {df}) did not converge")


def season_bins(range_ms: int, season_ms: int) -> int:
    """How many bins a seasonal forecast takes from a window of ``range_ms``.

    Whole bins only, at most :data:`MAX_SEASONS` seasons; fewer than two seasons
    of bins means there is not enough data for a seasonal model.
    """
    return min(range_ms * BINS_PER_SEASON // season_ms, MAX_SEASONS * BINS_PER_SEASON)


def bin_offset(j: int, season_ms: int) -> int:
    """Milliseconds from a window's end back to the end of its ``j``-th bin from the end."""
    return j * season_ms // BINS_PER_SEASON


def bins_ahead(ms: int, season_ms: int) -> float:
    """Where the time ``ms`` after a window's end lies, in bins after its last bin.

    A bin's value stands for the middle of the bin, so the end of the window is
    half a bin after the last one: ``ms * 48 / season + 1/2``. Forecasts between
    two bin middles interpolate the seasonal index linearly.
    """
    return ms * BINS_PER_SEASON / season_ms + 0.5
