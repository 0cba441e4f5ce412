"""Kernels of ``anomaly()``: every window of a batch of series at once.

The definitions are those of :mod:`monitoring.engine.reference.anomaly` (one
window at a time, plainly written); docs/anomaly-methods.md explains them.
Two shapes of computation:

* ``zscore``, ``mad``, ``quantile``, ``ewma`` and ``seasonal`` need statistics of
  each window's earlier samples. Those are gathered into padded rows, in chunks
  of about ``CHUNK`` cells (windows of similar length together, as the order
  statistics of :mod:`monitoring.engine.fast.kernels` do), and reduced row-wise:
  sums for the means, one or two sorts for medians and quantiles. ``seasonal``
  does the same over the season-over-season changes, which are computed once
  per sample (the sample one season earlier is found by one search per batch).
* ``ensemble`` needs only the minimum and maximum of each channel over the
  window's earlier samples and over its last ``HOLD`` of them. Sparse tables
  answer each of those in O(1) per window, so it costs about as much as
  ``max_over_time`` whatever the window's length.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from monitoring.engine import anomaly_math as am
from monitoring.engine.fast.kernels import CHUNK, Kernel, Result, Windows
from monitoring.engine.fast.values import BoolArray, FloatMatrix, IndexArray
from monitoring.engine.model import EvalError, TimeArray
from monitoring.stdlib.conditions import ANOMALY_METHODS

FloatArray = FloatMatrix


@dataclass(slots=True)
class Rows:
    """A chunk of windows, one row each, as a method's row function sees them."""

    values: FloatMatrix
    """The earlier values, left-aligned; NaN where padded or not finite."""
    count: IndexArray
    """Finite earlier values per row (at least ``MIN_HISTORY``)."""
    newest: FloatArray
    """The value being judged (finite)."""
    dense: bool
    """No NaN anywhere in ``values``: plain sums will do."""
    level: FloatArray
    """The newest sample's value, for the scales' floors (seasonal: not its change)."""
    ages: FloatMatrix | None = None
    """Milliseconds from each earlier sample to the newest one (``ewma`` only)."""


RowScore = Callable[[Rows], FloatArray]
RUN = 256
"""Rows of one width that are worth a chunk of their own (no padding, one rank)."""


# ---------------------------------------------------------------- shared rules


def scaled(deviation: FloatArray, scale: FloatArray, *magnitudes: FloatArray) -> FloatArray:
    """Vectorised :func:`monitoring.engine.anomaly_math.scaled` (same operations)."""
    dev = np.abs(deviation)
    big = dev.copy()
    for m in magnitudes:
        np.maximum(big, np.abs(m), out=big)
    floor = am.REL_FLOOR * big
    with np.errstate(all="ignore"):
        out: FloatArray = np.where(dev == 0, 0.0, dev / np.maximum(scale, floor))
    return out


def _finite_prefix(vs: FloatArray) -> IndexArray:
    """``p[i]`` = number of finite values among ``vs[:i]``."""
    p = np.zeros(len(vs) + 1, dtype=np.int64)
    np.cumsum(np.isfinite(vs), out=p[1:])
    return p


def _judged(w: Windows, values: FloatArray, start: IndexArray, score: RowScore,
            ages: bool = False) -> Result:
    """Scores of every window's newest sample against ``values[start:hi-1]``.

    The shared rules: the newest NaN or fewer than ``MIN_HISTORY`` finite earlier
    values give no output, a newest ±Inf scores +Inf; ``score`` sees only the
    remaining rows, with non-finite earlier values already made NaN.
    """
    n = w.count
    shape = n.shape
    out = np.zeros(shape)
    ok = n > 0
    if not ok.any():
        return out, ok
    last = np.maximum(w.hi - 1, 0)
    x = values[last]
    ok &= last >= start  # the newest sample has its value (seasonal: its change) here
    start = np.minimum(start, last)
    finite = np.isfinite(values)
    if finite.all():
        clean, cnt = values, last - start
    else:
        clean = np.where(finite, values, np.nan)
        pf = np.zeros(len(values) + 1, dtype=np.int64)
        np.cumsum(finite, out=pf[1:])
        cnt = pf[last] - pf[start]
    ok &= ~np.isnan(x) & (cnt >= am.MIN_HISTORY)
    inf = ok & np.isinf(x)
    out[inf] = np.inf
    run = ok & ~inf
    ids = np.flatnonzero(run.ravel())
    if len(ids):
        flat = out.reshape(-1)
        flat_last = last.ravel()[ids]
        flat[ids] = _padded(clean, start.ravel()[ids], flat_last, x.ravel()[ids],
                            w.vs[flat_last], cnt.ravel()[ids], score, w.ts if ages else None)
    return out, ok


def _chunks(widths: IndexArray) -> list[tuple[int, int]]:
    """Chunks ``[a, b)`` of rows sorted by width, each at most about ``CHUNK`` cells.

    A run of at least ``RUN`` rows of one width gets chunks of its own, which need
    no padding; shorter runs share padded chunks.
    """
    out: list[tuple[int, int]] = []
    bounds = [0, *(np.flatnonzero(np.diff(widths)) + 1).tolist(), len(widths)]
    start = 0  # the first row not yet in a chunk
    for a, b in itertools.pairwise(bounds):
        if b - a < RUN:
            if (b - start) * max(1, int(widths[b - 1])) > CHUNK and a > start:
                out.append((start, a))
                start = a
            continue
        if a > start:
            out.append((start, a))
        rows = max(1, CHUNK // max(1, int(widths[a])))
        out.extend((i, min(b, i + rows)) for i in range(a, b, rows))
        start = b
    if start < len(widths):
        out.append((start, len(widths)))
    return out


def _padded(clean: FloatArray, start: IndexArray, stop: IndexArray, x: FloatArray,
            level: FloatArray, cnt: IndexArray, score: RowScore, times: TimeArray | None
            ) -> FloatArray:
    """``score`` over padded rows ``clean[start:stop]``, in chunks of similar widths.

    Rows are copied out of a sliding-window view (one gather per chunk); only
    chunks of unequal widths are padded, and chunks without NaN are flagged dense
    so that the row functions can use plain sums. With ``times``, the rows also
    carry each earlier sample's age relative to the newest (``stop``).
    """
    width_all = stop - start
    order = np.argsort(width_all, kind="stable")
    longest = max(1, int(width_all.max()))
    view = sliding_window_view(np.concatenate([clean, np.full(longest, np.nan)]), longest)
    tview = None
    if times is not None:
        tview = sliding_window_view(np.concatenate([times, np.zeros(longest, times.dtype)]),
                                    longest)
    res = np.empty(len(start))
    for a, b in _chunks(width_all[order]):
        part = order[a:b]
        widths = width_all[part]
        width = max(1, int(widths[-1]))  # sorted: the chunk's widest row is its last
        block = view[start[part], :width]
        if int(widths[0]) < width:
            block[np.arange(width)[None, :] >= widths[:, None]] = np.nan
        rows = Rows(block, cnt[part], x[part], bool((cnt[part] == width).all()), level[part])
        if tview is not None and times is not None:
            age = times[stop[part]][:, None] - tview[start[part], :width]
            rows.ages = age.astype(np.float64)
        res[part] = score(rows)
    return res


def _sorted_quantile(rows: FloatMatrix, cnt: IndexArray, q: float) -> FloatArray:
    """Prometheus's quantile of rows sorted ascending with NaN last (``cnt`` real values)."""
    if len(cnt) and cnt[0] == cnt[-1] and (cnt == cnt[0]).all():
        # One count for the chunk (the usual case): the ranks are the same for every row.
        nf = float(cnt[0])
        rank = q * (nf - 1)
        lower = max(0.0, math.floor(rank))
        upper = min(nf - 1, lower + 1)
        weight = rank - math.floor(rank)
        same: FloatArray = (rows[:, int(lower)] * (1 - weight)
                            + rows[:, int(upper)] * weight)
        return same
    counts = cnt.astype(np.float64)
    ranks = q * (counts - 1)
    lowers = np.maximum(0.0, np.floor(ranks))
    uppers = np.minimum(counts - 1, lowers + 1)
    weights = ranks - np.floor(ranks)
    base = np.arange(len(cnt)) * rows.shape[1]
    flat = rows.reshape(-1)
    out: FloatArray = (flat[base + lowers.astype(np.int64)] * (1 - weights)
                       + flat[base + uppers.astype(np.int64)] * weights)
    return out


def _robust_scale(rows: FloatMatrix, cnt: IndexArray, median: FloatArray, dense: bool
                  ) -> FloatArray:
    """max(1.4826 × MAD, 1.2533 × the mean absolute deviation) per row (rows sorted)."""
    dev = np.abs(rows - median[:, None])
    dev.sort(axis=1)
    mad = _sorted_quantile(dev, cnt, 0.5)
    mean_ad = _row_sum(dev, dense) / cnt
    out: FloatArray = np.maximum(am.MAD_SCALE * mad, am.MEAN_AD_SCALE * mean_ad)
    return out


def _row_sum(rows: FloatMatrix, dense: bool) -> FloatArray:
    """Row sums, NaN counting as nothing."""
    out: FloatArray = rows.sum(axis=1) if dense else np.nansum(rows, axis=1)
    return out


# ---------------------------------------------------------------- methods on values


def _zscore_rows(r: Rows) -> FloatArray:
    rows, cnt, x = r.values, r.count, r.newest
    rows -= x[:, None]  # centred on the newest value (reference: _zscore)
    shift = _row_sum(rows, r.dense) / cnt
    rows -= shift[:, None]
    if not r.dense:
        np.nan_to_num(rows, copy=False, nan=0.0)
    std = np.sqrt(np.einsum("ij,ij->i", rows, rows) / cnt)
    return scaled(shift, std, x + shift, x)


def _mad_rows(r: Rows) -> FloatArray:
    rows, cnt, x = r.values, r.count, r.newest
    rows.sort(axis=1)
    median = _sorted_quantile(rows, cnt, 0.5)
    return scaled(x - median, _robust_scale(rows, cnt, median, r.dense), median, x, r.level)


def _quantile_rows(r: Rows) -> FloatArray:
    rows, cnt, x = r.values, r.count, r.newest
    rows.sort(axis=1)
    median = _sorted_quantile(rows, cnt, 0.5)
    upper = x >= median
    edge = np.where(upper, _sorted_quantile(rows, cnt, am.QUANTILE),
                    _sorted_quantile(rows, cnt, 1.0 - am.QUANTILE))
    half = np.abs(edge - median)
    flat = half == 0
    out = am.Z_QUANTILE * scaled(x - median, half, median, x)
    if flat.any():
        sub = np.flatnonzero(flat)
        out[sub] = scaled(x[sub] - median[sub],
                          _robust_scale(rows[sub], cnt[sub], median[sub], r.dense),
                          median[sub], x[sub])
    return out


def k_zscore(w: Windows) -> Result:
    """``anomaly(v, "zscore")``: distance from the mean of the earlier samples in σ."""
    return _judged(w, w.vs, w.lo, _zscore_rows)


def k_mad(w: Windows) -> Result:
    """``anomaly(v, "mad")``: distance from the median in 1.4826 × MAD."""
    return _judged(w, w.vs, w.lo, _mad_rows)


def k_quantile(w: Windows) -> Result:
    """``anomaly(v, "quantile")``: position against the 1st..99th percentile band."""
    return _judged(w, w.vs, w.lo, _quantile_rows)


def k_ewma(w: Windows) -> Result:
    """``anomaly(v, "ewma")``: distance from the exponentially weighted mean in its σ."""
    half_life = w.range_ms * am.EWMA_HALF_LIFE

    def rows_fn(r: Rows) -> FloatArray:
        rows, x = r.values, r.newest
        assert r.ages is not None
        weight = r.ages
        weight /= -half_life
        np.exp2(weight, out=weight)
        rows -= x[:, None]  # centred on the newest value (reference: _ewma)
        if not r.dense:
            nan = np.isnan(rows)
            weight[nan] = 0.0
            rows[nan] = 0.0
        total = weight.sum(axis=1)
        shift = np.einsum("ij,ij->i", weight, rows) / total
        rows -= shift[:, None]
        rows *= rows
        var = np.einsum("ij,ij->i", weight, rows) / total
        return scaled(shift, np.sqrt(var), x + shift, x)

    return _judged(w, w.vs, w.lo, rows_fn, ages=True)


# ---------------------------------------------------------------- seasons


def _season_groups(w: Windows, method: str) -> list[tuple[int, IndexArray | None]]:
    """The distinct seasons (ms) of the steps and their step indices (None: all), checked.

    Like the reference, the checks only apply when some window has samples.
    """
    called = (w.count > 0).any(axis=0)
    season = w.params[0] if w.params else np.zeros(len(w.ends))
    values = season[called]
    if not len(values):
        return []
    same = bool(values.min() == values.max())
    groups: list[tuple[int, IndexArray | None]] = []
    for value in ([float(values[0])] if same else np.unique(values).tolist()):
        if not value >= 0:
            raise EvalError(f"anomaly(): season must be >= 0, got {value}")
        s_ms = am.season_ms(value)
        if s_ms > 0 and am.SEASON_TOLERANCE * w.range_ms <= (am.SEASON_TOLERANCE + 1) * s_ms:
            raise EvalError(f"anomaly(): the season ({value}s) must be shorter than the range "
                            f"({w.range_ms / 1000}s) for method seasonal or ensemble")
        if s_ms == 0 and method == "seasonal":
            raise EvalError('anomaly(): method "seasonal" needs a season, e.g. season=1d')
        groups.append((s_ms, None if same else np.flatnonzero(called & (season == value))))
    return groups


def _columns(w: Windows, cols: IndexArray | None) -> Windows:
    if cols is None:
        return w
    return Windows(w.ts, w.vs, w.first, w.lo[:, cols], w.hi[:, cols], w.ends[cols],
                   w.step_times[cols], w.range_ms, [p[cols] for p in w.params], w.cache)


def season_changes(w: Windows, s_ms: int) -> FloatArray:
    """Per sample, its change from the sample nearest one season earlier (NaN: none).

    The nearest sample within the same series, ties to the earlier one, accepted
    within ``season / SEASON_TOLERANCE``; windows use a change only when that
    target time lies at least the tolerance inside them (:func:`_season_starts`),
    so the sample found here is the one the reference finds within the window.
    """
    key = f"season:{s_ms}"
    cached = w.cache.get(key)
    if isinstance(cached, np.ndarray):
        return cached
    ts, vs = w.ts, w.vs
    out = np.full(len(vs), np.nan)
    bounds = [*w.first.tolist(), len(ts)]
    for a, b in itertools.pairwise(bounds):
        if b <= a:
            continue
        t = ts[a:b]
        target = t - s_ms
        # The first sample at or after the target is at most the sample itself (s_ms > 0).
        i1 = np.searchsorted(t, target, side="left")
        i0 = np.maximum(i1 - 1, 0)
        d0 = target - t[i0]
        d1 = t[i1] - target
        take0 = (i1 >= 1) & (d0 <= d1)
        best = np.where(take0, i0, i1)
        near = am.SEASON_TOLERANCE * np.where(take0, d0, d1) <= s_ms
        seg_vs = vs[a:b]
        earlier = seg_vs[best]
        near &= np.isfinite(earlier)
        np.subtract(seg_vs, earlier, out=out[a:b], where=near)
    w.cache[key] = out
    return out


def _season_starts(w: Windows, s_ms: int) -> IndexArray:
    """Per window, the first sample whose ``t - season`` lies the tolerance inside it.

    That is ``48 t > 48 start + 49 season``, i.e. ``t > floor((48 start + 49 season) / 48)``.
    """
    starts = w.ends - w.range_ms
    limit = (am.SEASON_TOLERANCE * starts + (am.SEASON_TOLERANCE + 1) * s_ms) // am.SEASON_TOLERANCE
    out = np.empty_like(w.lo)
    bounds = [*w.first.tolist(), len(w.ts)]
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        out[i] = a + np.searchsorted(w.ts[a:b], limit, side="right")
    return np.maximum(out, w.lo)


def k_seasonal(w: Windows) -> Result:
    """``anomaly(v, "seasonal", season)``: the season-over-season change, scored by MAD."""
    out = np.zeros(w.lo.shape)
    ok = np.zeros(w.lo.shape, dtype=bool)
    for s_ms, cols in _season_groups(w, "seasonal"):
        sub = _columns(w, cols)
        changes = season_changes(sub, s_ms)
        vals, present = _judged(sub, changes, _season_starts(sub, s_ms), _mad_rows)
        if cols is None:
            return vals, present
        out[:, cols] = vals
        ok[:, cols] = present
    return out, ok


# ---------------------------------------------------------------- ensemble


class _Extremes:
    """Sparse tables of a channel's finite values: max and min over any ``[a, b)``.

    Level ``k`` holds the max (min) of every run of ``2^k`` values, so a range is
    covered by two overlapping runs. NaN is skipped by ``fmax``/``fmin``; ±Inf is
    turned into NaN first (a non-finite earlier value is left out, as everywhere).
    """

    def __init__(self, y: FloatArray, longest: int) -> None:
        inf = np.isinf(y)
        if inf.any():
            y = np.where(inf, np.nan, y)
        self.top = [y]
        self.bottom = [y]
        half = 1
        while half * 2 <= longest and len(self.top[-1]) > half:
            a, b = self.top[-1], self.bottom[-1]
            self.top.append(np.fmax(a[:-half], a[half:]))
            self.bottom.append(np.fmin(b[:-half], b[half:]))
            half *= 2
        # floor(log2(n)) for every length n up to the longest (-1 for an empty range)
        self.level = np.full(max(longest, 1) + 1, -1, dtype=np.int64)
        self.level[1:] = np.floor(np.log2(np.arange(1, max(longest, 1) + 1))).astype(np.int64)

    def query(self, a: IndexArray, b: IndexArray) -> tuple[FloatArray, FloatArray]:
        """Max and min of the finite values over ``[a, b)`` (NaN where there are none).

        ``a`` and ``b`` are flat (one entry per window).
        """
        lvl = self.level[b - a]
        levels = np.flatnonzero(np.bincount(lvl + 1, minlength=1)[1:]).tolist()
        if len(levels) == 1 and lvl[0] == levels[0] and (lvl == levels[0]).all():
            k = levels[0]  # the usual case: windows of similar lengths, no empty one
            t, m = self.top[k], self.bottom[k]
            end = b - (1 << k)
            return np.fmax(t[a], t[end]), np.fmin(m[a], m[end])
        top = np.full(a.shape, np.nan)
        bottom = np.full(a.shape, np.nan)
        for k in levels:
            sel = lvl == k
            lo, end = a[sel], b[sel] - (1 << k)
            t, m = self.top[k], self.bottom[k]
            top[sel] = np.fmax(t[lo], t[end])
            bottom[sel] = np.fmin(m[lo], m[end])
        return top, bottom


def _channel_score(y: FloatArray, level: FloatArray, hist_lo: IndexArray, last: IndexArray,
                   present: BoolArray, margin: float, dense: bool
                   ) -> tuple[FloatArray, BoolArray]:
    """Band score of ``y[last]`` against ``y[hist_lo:last]``, held (reference: channel_score).

    ``present`` marks non-empty windows; ``dense`` says that every value the
    windows' histories can reach is finite (counts are then lengths). Returns the
    scores and where the channel has one (a usable newest value and enough finite
    earlier values).
    """
    if dense:
        cnt = last - hist_lo
    else:
        clipped = np.minimum(hist_lo, last)
        pf = _finite_prefix(y)
        cnt = pf[last] - pf[clipped]
        cnt[hist_lo > last] = -1
    newest = y[last]
    avail = present & (cnt >= am.MIN_HISTORY) & ~np.isnan(newest)
    every = bool(avail.all())
    if every:
        hist_lo, last, newest = hist_lo.ravel(), last.ravel(), newest.ravel()
    else:
        if not avail.any():
            return np.zeros(last.shape), avail
        hist_lo, last, newest = hist_lo[avail], last[avail], newest[avail]
    level = level[last]
    tables = _Extremes(y, int((last - hist_lo).max()))
    split = np.maximum(hist_lo, last - am.HOLD)  # older earlier values | the last HOLD
    o_top, o_bottom = tables.query(hist_lo, split)
    r_top, r_bottom = tables.query(split, last)
    top, bottom = np.fmax(o_top, r_top), np.fmin(o_bottom, r_bottom)
    with np.errstate(all="ignore"):
        width = (top - bottom) * (1.0 + 2.0 * margin)
        toward = (newest - top) + (newest - bottom)
        got = am.BAND_SCORE * scaled(toward, width, top, bottom, newest, level)
    # Held: the last HOLD values broke the older ones' record (strictly). An empty or
    # all-NaN part gives NaN, which compares false: not held.
    held = np.where(toward > 0, r_top > o_top, r_bottom < o_bottom)
    np.minimum(got, am.BAND_SCORE, out=got, where=held)
    if not dense:
        got[np.isinf(newest)] = np.inf
    if every:
        return got.reshape(avail.shape), avail
    score = np.zeros(avail.shape)
    score[avail] = got
    return score, avail


def k_ensemble(w: Windows) -> Result:
    """``anomaly(v, "ensemble", season)``: the highest band score of its channels."""
    out = np.zeros(w.lo.shape)
    ok = np.zeros(w.lo.shape, dtype=bool)
    dense = bool(np.isfinite(w.vs).all())
    for s_ms, cols in _season_groups(w, "ensemble"):
        sub = _columns(w, cols)
        present = sub.count > 0
        last = np.maximum(sub.hi - 1, 0)
        channels = [(sub.vs, sub.lo, am.MARGIN_VALUE, dense)]
        if s_ms:
            channels.append((season_changes(sub, s_ms), _season_starts(sub, s_ms),
                             am.MARGIN_SEASON, False))
        best = np.zeros(last.shape)
        have = np.zeros(last.shape, dtype=bool)
        for y, hist_lo, margin, full in channels:
            score, avail = _channel_score(y, sub.vs, hist_lo, last, present, margin, full)
            np.maximum(best, score, out=best, where=avail)
            have |= avail
        if cols is None:
            return best, have
        out[:, cols] = best
        ok[:, cols] = have
    return out, ok


ANOMALY_KERNELS: dict[str, Kernel] = {
    "anomaly:zscore": k_zscore,
    "anomaly:mad": k_mad,
    "anomaly:quantile": k_quantile,
    "anomaly:ewma": k_ewma,
    "anomaly:seasonal": k_seasonal,
    "anomaly:ensemble": k_ensemble,
}
"""``anomaly(v[W], method, season)`` by ``anomaly:<method>``; params ``[season_s]``."""

assert {k.split(":")[1] for k in ANOMALY_KERNELS} == set(ANOMALY_METHODS)
