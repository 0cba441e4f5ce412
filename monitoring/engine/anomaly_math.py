"""Settings and scalar rules shared by both back ends of ``anomaly()``.

Both evaluators import these so that they agree on every constant; what each
method computes is explained, with the reasons for each number, in
docs/anomaly-methods.md. The ensemble's settings were chosen on the NAB tune
files only (the table in that document).
"""

from __future__ import annotations

import math

MIN_HISTORY = 5
"""Fewest usable earlier samples (finite, inside the window) a method needs; with
fewer there is no output for that series at that step."""
REL_FLOOR = 1e-9
"""Every scale is at least this fraction of the magnitudes involved (the centre and
the newest value): a constant window followed by a rounding-level change scores
about 0, not infinity, while a real change of a constant series still scores huge."""
MAD_SCALE = 1.482602218505602
"""1 / Φ⁻¹(3/4): makes the median absolute deviation estimate σ for normal data."""
MEAN_AD_SCALE = 1.2533141373155001
"""√(π/2): makes the mean absolute deviation estimate σ for normal data. Used when
more than half of the window is one value (MAD = 0)."""
QUANTILE = 0.99
"""The quantile band of method ``quantile``: the window's 1st and 99th percentiles."""
Z_QUANTILE = 2.3263478740408408
"""Φ⁻¹(0.99): a value at the band's edge scores this, as a normal z-score would."""
EWMA_HALF_LIFE = 0.125
"""Method ``ewma`` weighs each earlier sample by 2^(-age / (range × this)): the oldest
sample of the window counts 1/256 of the newest."""
SEASON_TOLERANCE = 48
"""A sample "one season earlier" is the one nearest to t - season, if it lies within
season / 48 (30 minutes for a daily season) of it."""
HOLD = 12
"""The ensemble's hold: a channel whose last 12 earlier values broke the record of the
window's older values scores at most 3 in that direction (the first break is the news)."""
MARGIN_VALUE = 0.0
"""The ensemble's band for the value is the window's min..max ..."""
MARGIN_SEASON = 0.3
"""... and for the season-over-season change, min..max widened by 30 % of its range."""
BAND_SCORE = 3.0
"""The score at a band's edge (and the conventional "unusual" threshold)."""


def scaled(deviation: float, scale: float, *magnitudes: float) -> float:
    """``|deviation| / scale`` with the scale floored at ``REL_FLOOR`` × the magnitudes.

    No deviation scores 0 whatever the scale; a positive deviation always has a
    positive floor (it implies a non-zero magnitude), so the result is finite.
    """
    dev = abs(deviation)
    if dev == 0:
        return 0.0
    floor = REL_FLOOR * max(dev, *(abs(m) for m in magnitudes))
    return dev / max(scale, floor)


def band_score(y: float, top: float, bottom: float, margin: float, level: float) -> float:
    """Where ``y`` lies in the band ``bottom..top`` widened by ``margin`` × its width.

    ``BAND_SCORE`` × the distance from the band's middle over its half-width:
    0 in the middle, 3 at the (widened) edges, growing linearly beyond. ``level``
    (the newest sample's value) joins the floor's magnitudes: a channel of changes
    is near 0 even when the series is not.
    """
    width = (top - bottom) * (1.0 + 2.0 * margin)
    return BAND_SCORE * scaled((y - top) + (y - bottom), width, top, bottom, y, level)


def season_ms(season_s: float) -> int:
    """The season in whole milliseconds, as both back ends round it."""
    return round(season_s * 1000.0) if math.isfinite(season_s) else 0
