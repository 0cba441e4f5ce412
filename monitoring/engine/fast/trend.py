"""Kernels of ``trend()`` and the forecasts, over all windows of a batch at once.

``trend`` needs, per window, the centred sums Sxx, Sxy and Syy of a least-squares
fit. They come from windowed prefix sums (as ``deriv`` does), after centring each
series on its mean so that large levels do not swamp small slopes. Where the
prefix sums would still lose too many digits to decide the t-test reliably
(values far from the series' mean with little spread, estimated per window),
those windows are recomputed exactly with two passes over their own samples;
constant windows are recognised exactly and are flat.

Linear forecasts are ``predict_linear``'s regression. Seasonal forecasts resample
each window into bins (:mod:`monitoring.engine.trend_math`) and run additive
Holt-Winters over them. With fixed smoothing factors, Holt-Winters is linear in
its input, so the forecast of a window is one dot product of its bin values with
a weight vector that depends only on the number of bins: the weights are found
once by running the recursion on unit vectors, and every window then costs one
row of a matrix product instead of a sequential pass.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from functools import lru_cache

import numpy as np

from monitoring.engine.fast.kernels import (
    Kernel,
    Result,
    Windows,
    _const_windows,
    _dd_prefix,
    _dd_window,
    _finite_view,
    _nonfinite_in,
    _regression,
    _regression_sums,
    padded_chunks,
)
from monitoring.engine.fast.values import BoolArray, FloatMatrix, IndexArray
from monitoring.engine.model import EvalError
from monitoring.engine.trend_math import (
    ALPHA,
    BETA,
    BINS_PER_SEASON,
    GAMMA,
    bin_offset,
    bins_ahead,
    season_bins,
    t_critical,
)

FloatArray = FloatMatrix

EPS = 2.0 ** -52
KAPPA = 1e6
"""Windows whose raw second moment exceeds their centred one this many times are
recomputed exactly (the prefix sums would keep fewer than ~9 significant digits)."""
XY_TOLERANCE = 1e-11
"""Largest error bound of the prefix-sum Sxy, relative to sqrt(Sxx·Syy), kept as is."""
CHUNK = 1 << 20
"""Elements per chunk of the padded exact pass and of the seasonal binning."""
LATTICE = "auto"
"""Shared bins where they pay ("auto"), wherever possible ("always") or never ("never"):
tests use the last two to check that both ways agree."""


# ---------------------------------------------------------------- shared checks


def _called(w: Windows) -> BoolArray:
    """Steps where some series has a sample: only there are arguments checked."""
    out: BoolArray = np.logical_or.reduce(w.hi > w.lo, axis=0)
    return out


def _param(w: Windows, i: int, default: float) -> FloatArray:
    steps = w.lo.shape[1]
    return w.params[i] if len(w.params) > i else np.full(steps, default)


def _check(func: str, name: str, values: FloatArray, bad: BoolArray, rule: str) -> None:
    if bad.any():
        raise EvalError(f"{func}(): {name} must be {rule}, got {values[bad][0]:g}")


# ---------------------------------------------------------------- trend


def _series_mean(w: Windows) -> FloatArray:
    """The mean of each series' finite values, repeated for each of its samples."""
    clean, _ = _finite_view(w)
    n = len(w.vs)
    starts = w.first[w.first < n]
    fin = np.isfinite(w.vs)
    if not len(starts):
        return np.zeros(n)
    sums = np.add.reduceat(clean, starts)
    counts = np.add.reduceat(fin.astype(np.int64), starts)
    with np.errstate(all="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    lens = np.diff(np.append(starts, n))
    out: FloatArray = np.repeat(means, lens)
    return out


@dataclasses.dataclass(slots=True)
class _Moments:
    """Per window: sample count, centred sums, mean time (ms) and mean value."""

    n: FloatMatrix
    sxx: FloatMatrix
    sxy: FloatMatrix
    syy: FloatMatrix
    tbar: FloatMatrix
    ybar: FloatMatrix


def _moments(w: Windows, ok: BoolArray, skip: BoolArray) -> _Moments:
    """Centred moments of every window, exact where prefix sums would be too coarse."""
    shift = _series_mean(w)
    fin = np.isfinite(w.vs)
    y = np.where(fin, w.vs - shift, 0.0)
    sw = dataclasses.replace(w, vs=y, cache={})
    n, sx, sxx_raw, sy, sxy_raw = _regression_sums(sw)
    c2, ce2 = _dd_prefix(y * y)
    syy_raw = _dd_window(c2, ce2, w.lo, w.hi)
    first = np.minimum(w.lo, max(len(w.ts) - 1, 0))
    with np.errstate(all="ignore"):
        sxx = sxx_raw - sx * sx / n
        sxy = sxy_raw - sx * sy / n
        syy = syy_raw - sy * sy / n
        tbar = w.ts[first] + 1000.0 * sx / n
        ybar = shift[first] + sy / n
        last = np.maximum(w.hi - 1, 0)
        u_hi = np.abs(w.ts[last] - w.ts[0]) / 1000.0 if len(w.ts) else np.zeros(n.shape)
        err_xy = EPS * (2.0 * u_hi * np.sqrt(n * syy_raw) + np.sqrt(sxx_raw * syy_raw))
        coarse = ~(syy > 0) | ~(sxx > 0) | (syy_raw > KAPPA * syy) | (sxx_raw > KAPPA * sxx) \
            | (err_xy > XY_TOLERANCE * np.sqrt(sxx * syy))
    redo = coarse & ok & ~skip
    if redo.any():
        ex = _exact_moments(w, w.lo[redo], w.hi[redo])
        sxx[redo], sxy[redo], syy[redo], tbar[redo], ybar[redo] = ex
    return _Moments(n, sxx, sxy, syy, tbar, ybar)


def _exact_moments(w: Windows, lo: IndexArray, hi: IndexArray
                   ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """Two-pass centred sums of the windows ``[lo, hi)``, values taken from the first sample."""
    cnt = hi - lo
    sxx, sxy, syy, tbar, ybar = (np.zeros(len(lo)) for _ in range(5))
    for part, width in padded_chunks(cnt, CHUNK):
        lo_p, n_p = lo[part], cnt[part]
        cols = np.arange(width)[None, :]
        mask = cols < n_p[:, None]
        idx = np.minimum(lo_p[:, None] + cols, len(w.vs) - 1)
        t0, y0 = w.ts[lo_p], w.vs[lo_p]
        nf = n_p.astype(np.float64)
        x = np.where(mask, (w.ts[idx] - t0[:, None]) / 1000.0, 0.0)
        d = np.where(mask, w.vs[idx] - y0[:, None], 0.0)
        xbar = x.sum(axis=1) / nf
        dbar = d.sum(axis=1) / nf
        dx = np.where(mask, x - xbar[:, None], 0.0)
        dd = np.where(mask, d - dbar[:, None], 0.0)
        sxx[part] = (dx * dx).sum(axis=1)
        sxy[part] = (dx * dd).sum(axis=1)
        syy[part] = (dd * dd).sum(axis=1)
        tbar[part] = t0 + 1000.0 * xbar
        ybar[part] = y0 + dbar
    return sxx, sxy, syy, tbar, ybar


def _critical_values(conf: FloatArray, df: IndexArray, sel: BoolArray) -> FloatMatrix:
    """Student's t critical value of every selected window (per confidence and df)."""
    out = np.zeros(sel.shape)
    conf_all = np.broadcast_to(conf[None, :], sel.shape)
    for c in np.unique(conf_all[sel]).tolist():
        where = sel & (conf_all == c)
        dfs, inverse = np.unique(df[where], return_inverse=True)
        table = np.array([t_critical(float(c), int(d)) for d in dfs.tolist()])
        out[where] = table[inverse]
    return out


def k_trend(w: Windows) -> Result:
    """trend(v, confidence, min_change, min_relative_change): 1, -1 or 0 per window."""
    n = w.count
    ok = n >= 3
    conf = _param(w, 0, 0.95)
    min_change = _param(w, 1, 0.0)
    min_rel = _param(w, 2, 0.0)
    called = _called(w)
    _check("trend", "confidence", conf, called & ~((conf >= 0) & (conf < 1)),
           "at least 0 and below 1")
    _check("trend", "min_change", min_change, called & np.isnan(min_change), "a number")
    _check("trend", "min_relative_change", min_rel, called & np.isnan(min_rel), "a number")
    out = np.zeros(n.shape)
    if not ok.any():
        return out, ok
    bad = _nonfinite_in(w, w.lo, w.hi)
    nonfinite = np.zeros(n.shape, dtype=bool) if bad is None else bad & ok
    live = ok & ~nonfinite
    mo = _moments(w, ok, nonfinite)
    # Constant windows came out of the exact pass with Syy exactly 0.
    maybe = live & (mo.syy <= 0)
    const = _const_windows(w, maybe) if maybe.any() else np.zeros(n.shape, dtype=bool)
    live &= ~const
    df = n - 2
    tc = _critical_values(conf, df, live)
    with np.errstate(all="ignore"):
        ssr = np.maximum(mo.syy - mo.sxy * mo.sxy / mo.sxx, 0.0)
        significant = mo.sxy * mo.sxy * df >= tc * tc * ssr * mo.sxx
        slope = mo.sxy / mo.sxx
        change = np.abs(slope * (w.range_ms / 1000.0))
        start = mo.ybar + slope * ((w.ends[None, :] - w.range_ms) - mo.tbar) / 1000.0
        large = (change >= min_change[None, :]) & (change >= min_rel[None, :] * np.abs(start))
    out = np.where(live & significant & large, np.sign(mo.sxy), 0.0)
    out[nonfinite] = np.nan
    return out, ok


# ---------------------------------------------------------------- forecasts


@lru_cache(maxsize=256)
def _hw_state(bins: int) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix]:
    """Level, trend and seasonal indices after ``bins`` bins, as weights on the bin values.

    The additive Holt-Winters recursion run on the unit vectors: row ``k`` of the
    result is what the state would be if bin ``k`` were 1 and all others 0.
    Returns level ``[bins]``, trend ``[bins]`` and seasons ``[m x bins]``.
    """
    m = BINS_PER_SEASON
    eye = np.eye(bins)
    a1 = eye[:m].mean(axis=0)
    a2 = eye[m:2 * m].mean(axis=0)
    trend = (a2 - a1) / m
    season = np.empty((m, bins))
    for i in range(m):
        centre = trend * (i - (m - 1) / 2)
        season[i] = ((eye[i] - a1 - centre) + (eye[m + i] - a2 - centre)) / 2
    level = a1 - trend * ((m + 1) / 2)
    for i in range(bins):
        old = season[i % m].copy()
        new_level = ALPHA * (eye[i] - old) + (1 - ALPHA) * (level + trend)
        trend = BETA * (new_level - level) + (1 - BETA) * trend
        season[i % m] = GAMMA * (eye[i] - new_level) + (1 - GAMMA) * old
        level = new_level
    for arr in (level, trend, season):
        arr.setflags(write=False)
    return level, trend, season


def hw_weights(bins: int, ahead: tuple[float, ...]) -> FloatMatrix:
    """``[bins x len(ahead)]``: the forecast ``j`` bins after the last is ``values @ weights``.

    ``level + j·trend + season(bins - 1 + j)``, the seasonal index interpolated
    linearly between whole bins.
    """
    level, trend, season = _hw_state(bins)
    js = np.asarray(ahead, dtype=np.float64)
    pos = (bins - 1) + js
    whole = np.floor(pos)
    frac = pos - whole
    phase = whole.astype(np.int64) % BINS_PER_SEASON
    out: FloatMatrix = (level[:, None] + trend[:, None] * js[None, :]
                        + season[phase].T * (1 - frac)[None, :]
                        + season[(phase + 1) % BINS_PER_SEASON].T * frac[None, :])
    return out


def _ahead(kind: str, offset_ms: int, horizon_ms: int, season_ms: int) -> tuple[float, ...]:
    """Where forecasts are needed, in bins after a window's last (``offset_ms`` = t - end).

    For a value, at ``t + horizon`` (``t`` = evaluation time). For a maximum or
    minimum over ``(t, t + horizon]``: forecasts are piecewise linear in the
    position, with kinks at whole bins, so the extremes are at the two ends or
    at a whole bin in between; and among whole bins of one phase (``j`` apart by
    a season) ``level + j·trend`` makes the first or the last the extreme. So
    the ends and the first and last season of whole bins in between suffice.
    """
    end = bins_ahead(offset_ms + horizon_ms, season_ms)
    if kind == "value":
        return (end,)
    start = bins_ahead(offset_ms, season_ms)
    inner = range(math.floor(start) + 1, math.ceil(end))
    m = BINS_PER_SEASON
    picked = {start, end, *(float(j) for j in inner[:m]), *(float(j) for j in inner[-m:])}
    return tuple(sorted(picked))


@dataclasses.dataclass(slots=True)
class _Seasonal:
    """What the binning of one batch needs: the windows, the bins and the forecasts wanted."""

    w: Windows
    kind: str
    cols: IndexArray  # the steps with this season
    season_ms: int
    bins: int  # per window
    specs: list[tuple[float, ...]]  # forecast positions (bins ahead) ...
    col_spec: IndexArray  # ... of each step in cols
    csum: FloatArray  # double-double prefix sums of the (finite) values
    cerr: FloatArray
    bad: IndexArray | None  # prefix count of non-finite values

    def emit(self, s_idx: IndexArray, c_idx: IndexArray, first_bin: IndexArray,
             nonfinite: BoolArray | None, values_of: Callable[[IndexArray, int], FloatMatrix],
             out: FloatMatrix, ok: BoolArray) -> None:
        """Forecasts of the windows (series ``s_idx``, step ``cols[c_idx]``) into out/ok.

        ``first_bin`` is the first bin with a sample (``bins`` when there is none);
        ``values_of(windows, n)`` gives the last ``n`` bin values of those windows.
        """
        geff = self.bins - first_bin
        valid = geff >= 2 * BINS_PER_SEASON
        if not valid.any():
            return
        key = geff * len(self.specs) + self.col_spec[c_idx]
        result = np.full(len(s_idx), np.nan)
        for k in np.unique(key[valid]).tolist():
            sel = np.flatnonzero(valid & (key == k))
            bins, spec = divmod(k, len(self.specs))
            fc = values_of(sel, bins) @ hw_weights(bins, self.specs[spec])
            result[sel] = fc[:, 0] if self.kind == "value" else (
                fc.max(axis=1) if self.kind == "max" else fc.min(axis=1))
        if nonfinite is not None:
            result[nonfinite] = np.nan
        rows, steps = s_idx[valid], self.cols[c_idx[valid]]
        out[rows, steps] = result[valid]
        ok[rows, steps] = True

    def bin_stats(self, lo: IndexArray, hi: IndexArray) -> tuple[BoolArray, FloatMatrix]:
        """Which bins ``[lo, hi)`` have samples, and their means."""
        cnt = hi - lo
        sums = (self.csum[hi] - self.csum[lo]) + (self.cerr[hi] - self.cerr[lo])
        with np.errstate(all="ignore"):
            means: FloatMatrix = sums / cnt
        return cnt > 0, means

    def nonfinite(self, lo: IndexArray, hi: IndexArray) -> BoolArray | None:
        """Windows with a NaN or infinite sample in ``[lo, hi)``."""
        if self.bad is None:
            return None
        out: BoolArray = (self.bad[hi] - self.bad[lo]) > 0
        return out


def _series_searchsorted(w: Windows, s_idx: IndexArray, times: IndexArray) -> IndexArray:
    """Row by row, where ``times`` fall among the samples of series ``s_idx`` (batch indices).

    ``s_idx`` is ascending: one search per series.
    """
    lens = np.diff(np.append(w.first, len(w.ts)))
    out = np.empty(times.shape, dtype=np.int64)
    series, at = np.unique(s_idx, return_index=True)
    bounds = [*at.tolist(), len(s_idx)]
    for k, s in enumerate(series.tolist()):
        f = int(w.first[s])
        part = slice(bounds[k], bounds[k + 1])
        out[part] = np.searchsorted(w.ts[f:f + int(lens[s])], times[part], side="right")
        out[part] += f
    return out


def _direct(sz: _Seasonal, out: FloatMatrix, ok: BoolArray) -> None:
    """Bins found window by window: a search for every bin edge of every window."""
    g = sz.bins
    # Edge q of a window ending at e is e - offsets[q], ascending in q; bin q lies
    # between edges q and q + 1.
    offsets = np.array([bin_offset(g - q, sz.season_ms) for q in range(g + 1)], dtype=np.int64)
    ends = sz.w.ends[sz.cols]
    ncol = len(sz.cols)
    total = sz.w.lo.shape[0] * ncol
    per_chunk = max(1, CHUNK // (g + 1))
    positions = np.arange(g)
    for start in range(0, total, per_chunk):
        rows = np.arange(start, min(total, start + per_chunk))
        s_idx, c_idx = rows // ncol, rows % ncol
        idx = _series_searchsorted(sz.w, s_idx, ends[c_idx][:, None] - offsets[None, :])
        nonempty, means = sz.bin_stats(idx[:, :-1], idx[:, 1:])
        first_bin = np.where(nonempty.any(axis=1), np.argmax(nonempty, axis=1), g)
        fill = np.where(nonempty, positions[None, :], 0)
        np.maximum.accumulate(fill, axis=1, out=fill)
        filled = np.take_along_axis(means, fill, axis=1)

        def values_of(sel: IndexArray, n: int, filled: FloatMatrix = filled) -> FloatMatrix:
            return filled[sel, g - n:]

        sz.emit(s_idx, c_idx, first_bin, sz.nonfinite(idx[:, 0], idx[:, -1]), values_of,
                out, ok)


def _lattice_step(sz: _Seasonal) -> int | None:
    """The spacing of a lattice holding every bin edge of every window, if it pays.

    When bins have a whole number of milliseconds and window ends are a whole
    number of lattice steps apart, the bins of different windows coincide: each
    is summed once on the lattice, and windows only gather their bins' values.
    That is cheaper than searching each window's edges unless the lattice is
    much larger than the windows (one step, many series: an instant query).
    """
    if sz.season_ms % BINS_PER_SEASON:
        return None
    width = sz.season_ms // BINS_PER_SEASON
    ends = sz.w.ends[sz.cols]
    step = int(np.gcd.reduce(np.append(ends - ends[0], width)))
    points = (int(ends[-1] - ends[0]) + sz.bins * width) // step + 1
    windows = sz.w.lo.shape[0] * len(ends)
    cells = sz.w.lo.shape[0] * points
    if cells > 4 * CHUNK or LATTICE == "never":
        return None
    return step if LATTICE == "always" or cells * 4 <= windows * (sz.bins + 1) else None


def _lattice(sz: _Seasonal, step: int, out: FloatMatrix, ok: BoolArray) -> None:
    """Bins summed once on a lattice of edges shared by all windows (see _lattice_step)."""
    w, g = sz.w, sz.bins
    width = sz.season_ms // BINS_PER_SEASON
    stride = width // step  # lattice points per bin
    ends = w.ends[sz.cols]
    base = int(ends.min()) - g * width
    points = (int(ends.max()) - base) // step + 1
    nser = w.lo.shape[0]
    lattice = base + step * np.arange(points, dtype=np.int64)
    # idx[s, r]: samples of series s up to lattice point r; the bin ending at point r
    # (r >= stride) holds the samples [idx[s, r - stride], idx[s, r]).
    idx = _series_searchsorted(w, np.arange(nser), np.broadcast_to(lattice, (nser, points)))
    nonempty, means = sz.bin_stats(idx[:, :-stride], idx[:, stride:])
    # Carry each bin's value to the empty bins after it, along every chain of bins.
    span = -(-nonempty.shape[1] // stride) * stride
    fill = np.full((nser, span), -1, dtype=np.int64)
    fill[:, :nonempty.shape[1]] = np.where(nonempty, np.arange(nonempty.shape[1]), -1)
    chains = fill.reshape(nser, span // stride, stride)
    np.maximum.accumulate(chains, axis=1, out=chains)
    filled = np.take_along_axis(means, np.maximum(fill[:, :nonempty.shape[1]], 0), axis=1)
    last = (ends - base) // step - stride  # bin index (point - stride) of each window's last bin
    ncol = len(sz.cols)
    per_chunk = max(1, CHUNK // (g + 1))
    total = nser * ncol
    for start in range(0, total, per_chunk):
        rows = np.arange(start, min(total, start + per_chunk))
        s_idx, c_idx = rows // ncol, rows % ncol
        hi = idx[s_idx, last[c_idx] + stride]
        lo = idx[s_idx, last[c_idx] + stride - g * stride]
        has = hi > lo
        t_first = w.ts[np.minimum(lo, max(len(w.ts) - 1, 0))]
        first_bin = np.where(has, g - 1 - (ends[c_idx] - t_first) // width, g)
        bin_of = last[c_idx]

        def values_of(sel: IndexArray, n: int, s_idx: IndexArray = s_idx,
                      bin_of: IndexArray = bin_of) -> FloatMatrix:
            back = stride * np.arange(n - 1, -1, -1)
            got: FloatMatrix = filled[s_idx[sel][:, None], bin_of[sel][:, None] - back[None, :]]
            return got

        sz.emit(s_idx, c_idx, first_bin, sz.nonfinite(lo, hi), values_of, out, ok)


def _seasonal(w: Windows, kind: str, cols: IndexArray, season_ms: int,
              horizon_ms: list[int], out: FloatMatrix, ok: BoolArray) -> None:
    """Holt-Winters forecasts of the windows of the steps ``cols`` into ``out``/``ok``."""
    g = season_bins(w.range_ms, season_ms)
    if g < 2 * BINS_PER_SEASON:
        return
    spec_of: dict[tuple[float, ...], int] = {}
    col_spec = np.array([
        spec_of.setdefault(_ahead(kind, int(w.step_times[c] - w.ends[c]), h, season_ms),
                           len(spec_of))
        for c, h in zip(cols.tolist(), horizon_ms, strict=True)], dtype=np.int64)
    clean, bad = _finite_view(w)
    csum, cerr = _dd_prefix(clean)
    sz = _Seasonal(w, kind, cols, season_ms, g, list(spec_of), col_spec, csum, cerr, bad)
    step = _lattice_step(sz)
    if step is None:
        _direct(sz, out, ok)
    else:
        _lattice(sz, step, out, ok)


def _linear(w: Windows, kind: str, horizon: FloatArray) -> Result:
    """predict_linear's regression: the value at ``t + horizon``, or the extreme over (t, t+h]."""
    slope, intercept, ok = _regression(w, True)
    assert intercept is not None
    with np.errstate(all="ignore"):
        at_h = slope * horizon[None, :] + intercept
    if kind == "value":
        return at_h, ok
    if kind == "max":
        return np.maximum(intercept, at_h), ok
    return np.minimum(intercept, at_h), ok


_FUNC = {"value": "forecast", "max": "forecast_max", "min": "forecast_min"}


def _forecast(w: Windows, kind: str) -> Result:
    func = _FUNC[kind]
    horizon = _param(w, 0, np.nan)
    season = _param(w, 1, 0.0)
    called = _called(w)
    _check(func, "season", season,
           called & ~((season == 0) | ((season >= 1) & np.isfinite(season))),
           "0 (linear) or at least 1 (seconds)")
    seasonal = called & (season > 0)
    if kind == "value":
        _check(func, "horizon", horizon, seasonal & ~((horizon >= 0) & np.isfinite(horizon)),
               "a number of seconds >= 0 with a season")
    else:
        _check(func, "horizon", horizon, called & ~((horizon > 0) & np.isfinite(horizon)),
               "a number of seconds > 0")
    shape = w.lo.shape
    out = np.zeros(shape)
    ok = np.zeros(shape, dtype=bool)
    linear = ~(season > 0)
    if linear.any():
        values, present = _linear(w, kind, horizon)
        out[:, linear] = values[:, linear]
        ok[:, linear] = present[:, linear]
    for s in np.unique(season[seasonal]).tolist():
        cols = np.flatnonzero(seasonal & (season == s))
        hms = [round(float(h) * 1000) for h in horizon[cols].tolist()]
        _seasonal(w, kind, cols, round(s * 1000), hms, out, ok)
    return out, ok


def k_forecast(w: Windows) -> Result:
    """forecast(v, horizon, season): linear (predict_linear) or Holt-Winters."""
    return _forecast(w, "value")


def k_forecast_max(w: Windows) -> Result:
    """forecast_max(v, horizon, season): the highest forecast within (t, t + horizon]."""
    return _forecast(w, "max")


def k_forecast_min(w: Windows) -> Result:
    """forecast_min(v, horizon, season): the lowest forecast within (t, t + horizon]."""
    return _forecast(w, "min")


TREND_KERNELS: dict[str, Kernel] = {
    "trend": k_trend,
    "forecast": k_forecast,
    "forecast_max": k_forecast_max,
    "forecast_min": k_forecast_min,
}
"""The trend family's kernels, by function name (params in declaration order)."""
