"""Range-window functions (``rate``, ``*_over_time``, ``deriv`` ...) for all windows at once.

The samples of a batch of series are concatenated; every (series, step) window
is a half-open index range ``[lo, hi)`` found with ``searchsorted``. Functions
then work on all windows together:

* counts, first/last samples, ``irate``/``idelta``: direct gathers;
* sums and means: prefix sums kept in double-double precision (the rounding
  error of every prefix step is accumulated separately), which agree with
  Prometheus's Kahan-Neumaier sums to the last bit or two. Windows where that
  could still differ (non-finite values, heavy cancellation) are recomputed
  with Prometheus's exact sequential algorithm, vectorised across windows;
* min/max: a sparse table of ``fmin``/``fmax`` (NaN is ignored as Prometheus does);
* counter resets, ``changes``, ``resets``: prefix sums over consecutive pairs;
* ``deriv``/``predict_linear``: windowed sums of t, y, t², t·y, with the time
  terms in exact integer (mod 2⁶⁴) arithmetic relative to each window's first
  sample, which is Prometheus's own formula;
* order statistics (quantile, MAD) sort padded windows in chunks; the rarely
  used sequential functions (``stddev``, ``double_exponential_smoothing``,
  ``ts_of_min/max``) step through all windows in lock-step, one sample at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitoring.engine.fast import native
from monitoring.engine.fast.native import search_right
from monitoring.engine.fast.samples import Samples
from monitoring.engine.fast.search import FLAT_MAX_STEPS, search_all
from monitoring.engine.fast.values import BoolArray, FloatMatrix, IndexArray
from monitoring.engine.model import EvalError, TimeArray, ValueArray

Result = tuple[FloatMatrix, BoolArray]
Kernel = Callable[["Windows"], Result]
FloatArray = npt.NDArray[np.float64]

CANCELLATION = 1e10
"""Sum over |values| / |sum| above which a window sum is recomputed sequentially."""
CHUNK = 1 << 22
"""Elements per chunk for the padded order-statistics kernels."""


@dataclass(slots=True)
class Windows:
    """Samples of a batch of series and their windows ``[lo, hi)`` per evaluation step."""

    ts: TimeArray  # concatenated sample times of all series of the batch
    vs: ValueArray  # and values
    first: IndexArray  # index of each series' first sample
    lo: IndexArray  # [series × steps]
    hi: IndexArray
    ends: TimeArray  # window end (evaluation time minus offset) per step
    step_times: TimeArray  # evaluation time per step
    range_ms: int
    params: list[FloatArray] = field(default_factory=list)  # scalar arguments per step
    cache: dict[str, object] = field(default_factory=dict)

    @property
    def count(self) -> IndexArray:
        """Samples per window."""
        return self.hi - self.lo


def build_windows(ts_list: list[TimeArray], vs_list: list[ValueArray], ends: TimeArray,
                  range_ms: int, step_times: TimeArray, params: list[FloatArray]) -> Windows:
    """:func:`sample_windows` of series given one array each."""
    return sample_windows(Samples.of_lists(ts_list, vs_list), ends, range_ms, step_times,
                          params)


def sample_windows(samples: Samples, ends: TimeArray, range_ms: int, step_times: TimeArray,
                   params: list[FloatArray]) -> Windows:
    """A batch of series concatenated, and every window's sample range in it."""
    # Evenly spaced windows whose range is a whole number of steps start where an
    # earlier window ends: those starts need no search of their own.
    shift = _shared_edges(ends, range_ms)
    starts = ends[:shift] - range_ms
    if len(ends) <= FLAT_MAX_STEPS:
        ts, first, lens = samples.ts, samples.first, samples.lens
        found = search_all(ts, first, lens, ends, side="right")
        if found is not None:
            hi = found
            lo = np.empty_like(hi)
            lo[:, shift:] = hi[:, :len(ends) - shift]
            if shift:
                lo_found = search_all(ts, first, lens, starts, side="right")
                assert lo_found is not None
                lo[:, :shift] = lo_found
            return Windows(ts, samples.vs, first, lo, hi, ends, step_times, range_ms, params)
    ts_list = samples.ts_list
    ts, vs, first = samples.ts, samples.vs, samples.first
    lo = np.empty((len(ts_list), len(ends)), dtype=np.int64)
    hi = np.empty_like(lo)
    for i, t in enumerate(ts_list):
        row_hi = hi[i]
        row_hi[:] = search_right(t, ends)
        row_lo = lo[i]
        row_lo[:shift] = search_right(t, starts)
        row_lo[shift:] = row_hi[:len(ends) - shift]
        if first[i]:
            row_lo += first[i]
            row_hi += first[i]
    return Windows(ts, vs, first, lo, hi, ends, step_times, range_ms, params)


def _shared_edges(ends: TimeArray, range_ms: int) -> int:
    """How many leading windows need their start searched.

    ``r`` when every window from the ``r``-th on starts exactly where the window
    ``r`` steps earlier ends (evenly spaced ends, a range of ``r`` steps), else all.
    """
    count = len(ends)
    if count < 2:
        return count
    step = int(ends[1] - ends[0])
    if step <= 0 or range_ms % step or range_ms // step >= count:
        return count
    r = range_ms // step
    if not np.array_equal(ends[r:] - range_ms, ends[:count - r]):
        return count
    return r


# ---------------------------------------------------------------- shared helpers


def _prefix(x: np.ndarray) -> np.ndarray:
    """Exclusive prefix sums: ``out[i] = x[0] + ... + x[i-1]``."""
    out = np.zeros(len(x) + 1, dtype=x.dtype)
    np.cumsum(x, out=out[1:])
    return out


def _pair_mask(w: Windows) -> BoolArray:
    """``True`` at sample ``i`` when sample ``i-1`` belongs to the same series."""
    cached = w.cache.get("pairs")
    if cached is None:
        mask = np.ones(len(w.vs), dtype=bool)
        mask[w.first[w.first < len(w.vs)]] = False
        if len(mask):
            mask[0] = False
        w.cache["pairs"] = mask
        return mask
    assert isinstance(cached, np.ndarray)
    return cached


def _prev(x: np.ndarray) -> np.ndarray:
    """``x`` shifted by one (the previous sample); the first entry repeats ``x[0]``."""
    out = np.empty_like(x)
    if len(x):
        out[0] = x[0]
        out[1:] = x[:-1]
    return out


def _pair_sum(w: Windows, contrib: np.ndarray) -> np.ndarray:
    """Per window, the sum of ``contrib[i]`` over pairs ``(i-1, i)`` inside the window."""
    p = _prefix(contrib)
    lo1 = np.minimum(w.lo + 1, w.hi)
    out: np.ndarray = p[w.hi] - p[lo1]
    return out


def _dd_prefix(v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prefix sums with their accumulated rounding errors (double-double)."""
    c = _prefix(v)
    a = c[:-1]
    s = c[1:]
    bb = s - a
    # err = (a - (s - bb)) + (v - bb), computed in place: this runs over every sample.
    err = np.subtract(s, bb)
    np.subtract(a, err, out=err)
    np.subtract(v, bb, out=bb)
    np.add(err, bb, out=err)
    return c, _prefix(err)


def _dd_window(c: FloatArray, ce: FloatArray, lo: IndexArray, hi: IndexArray) -> FloatMatrix:
    """``(c[hi] - c[lo]) + (ce[hi] - ce[lo])``, in the gathered buffers."""
    out: FloatMatrix = c[hi]
    out -= c[lo]
    err = ce[hi]
    err -= ce[lo]
    out += err
    return out


def kahan_inc(inc: FloatArray, s: FloatArray, c: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Prometheus's ``kahansum.Inc`` (Neumaier) on arrays."""
    t = s + inc
    corr = np.where(np.abs(s) >= np.abs(inc), (s - t) + inc, (inc - t) + s)
    c = np.where(np.isinf(t), 0.0, c + corr)
    return t, c


def _finite_view(w: Windows) -> tuple[FloatArray, IndexArray | None]:
    """Values with non-finite ones zeroed, and a prefix count of non-finite (or None)."""
    cached = w.cache.get("finite")
    if cached is None:
        # One fast reduction settles the usual case: a non-finite value makes the sum
        # non-finite (a finite sum means every value is finite).
        with np.errstate(invalid="ignore", over="ignore"):
            finite = bool(np.isfinite(np.sum(w.vs)))
        if finite or np.isfinite(w.vs).all():
            cached = (w.vs, None)
        else:
            fin = np.isfinite(w.vs)
            cached = (np.where(fin, w.vs, 0.0), _prefix((~fin).astype(np.int64)))
        w.cache["finite"] = cached
    assert isinstance(cached, tuple)
    return cached


def _nonfinite_in(w: Windows, lo: IndexArray, hi: IndexArray) -> BoolArray | None:
    _, bad = _finite_view(w)
    if bad is None:
        return None
    out: BoolArray = (bad[hi] - bad[lo]) > 0
    return out


def _window_sums(w: Windows, ok: BoolArray,
                 mean_of: IndexArray | None = None) -> tuple[FloatMatrix, BoolArray]:
    """Sum (or mean) of every window (fast path), and the windows to compute exactly.

    With the counts ``mean_of``, the mean. The flagged windows are non-empty ones
    (``ok``) that need Prometheus's exact sequential computation. A non-finite
    mean comes from a non-finite sum or from an overflow: either way the window is
    flagged, so one check on the final value covers both. The compiled twin
    (:func:`monitoring.engine.fast.native.window_sums`) gives the same bits.
    """
    native_sums = native.window_sums(w.vs, w.lo, w.hi, mean_of is not None)
    if native_sums is not None:
        return native_sums
    return numpy_window_sums(w, ok, mean_of)


def numpy_window_sums(w: Windows, ok: BoolArray,
                      mean_of: IndexArray | None = None) -> tuple[FloatMatrix, BoolArray]:
    """The NumPy twin of :func:`monitoring.engine.fast.native.window_sums`."""
    clean, _ = _finite_view(w)
    c, ce = _dd_prefix(clean)
    total = _dd_window(c, ce, w.lo, w.hi)
    exact = _nonfinite_in(w, w.lo, w.hi)
    if len(clean) and clean.min() < 0:
        a = _prefix(np.abs(clean))
        mag = a[w.hi] - a[w.lo]
        cancel = (mag > 0) & (np.abs(total) * CANCELLATION <= mag)
        exact = cancel if exact is None else exact | cancel
    if mean_of is not None:
        with np.errstate(all="ignore"):
            total /= mean_of
    finite = np.isfinite(total)
    if exact is None:
        exact = np.logical_not(finite, out=finite)
    else:
        exact |= ~finite
    exact &= ok
    return total, exact


def _lockstep_order(lo: IndexArray, hi: IndexArray) -> tuple[IndexArray, IndexArray, IndexArray]:
    """Windows sorted by length, longest first, so active windows are always a prefix."""
    n = hi - lo
    order = np.argsort(-n, kind="stable")
    return order, lo[order], n[order]


def _active(n_sorted: IndexArray, k: int) -> int:
    """How many windows (sorted longest first) have more than ``k`` samples."""
    return int(np.searchsorted(-n_sorted, -k, side="left"))


def exact_sum(vs: FloatArray, lo: IndexArray, hi: IndexArray) -> FloatArray:
    """``sum_over_time`` exactly as Prometheus computes it (Kahan-Neumaier, in order)."""
    order, los, ns = _lockstep_order(lo, hi)
    s = np.zeros(len(lo))
    c = np.zeros(len(lo))
    for k in range(int(ns[0]) if len(ns) else 0):
        m = _active(ns, k)
        x = vs[los[:m] + k]
        s[:m], c[:m] = kahan_inc(x, s[:m], c[:m])
    res = np.where(np.isinf(s), s, s + c)
    out = np.empty(len(lo))
    out[order] = res
    return out


def exact_mean(vs: FloatArray, lo: IndexArray, hi: IndexArray) -> FloatArray:
    """``avg_over_time`` exactly as Prometheus: direct mean, incremental after overflow."""
    order, los, ns = _lockstep_order(lo, hi)
    m0 = len(lo)
    total = vs[los].astype(np.float64) if m0 else np.zeros(0)
    c = np.zeros(m0)
    mean = np.zeros(m0)
    incr = np.zeros(m0, dtype=bool)
    for k in range(1, int(ns[0]) if m0 else 0):
        m = _active(ns, k)
        f = vs[los[:m] + k]
        count = float(k + 1)
        t, ct, mn, ic = total[:m], c[:m], mean[:m], incr[:m]
        new_s, new_c = kahan_inc(f, t, ct)
        direct = ~ic & ~np.isinf(new_s)
        switch = ~ic & np.isinf(new_s)
        mn = np.where(switch, t / (count - 1), mn)
        ct = np.where(switch, ct / (count - 1), ct)
        ic = ic | switch
        q = (count - 1) / count
        im, ic_c = kahan_inc(f / count, q * mn, q * ct)
        total[:m] = np.where(direct, new_s, t)
        c[:m] = np.where(direct, new_c, np.where(ic, ic_c, ct))
        mean[:m] = np.where(ic, im, mn)
        incr[:m] = ic
    counts = ns.astype(np.float64)
    with np.errstate(all="ignore"):
        res = np.where(incr, mean + c, total / counts + c / counts)
    out = np.empty(m0)
    out[order] = res
    return out


# ---------------------------------------------------------------- simple kernels


def k_count(w: Windows) -> Result:
    """Kernel of ``count_over_time``."""
    n = w.count
    return n.astype(np.float64), n > 0


def k_present(w: Windows) -> Result:
    """Kernel of ``present_over_time``."""
    n = w.count
    return np.ones(n.shape), n > 0


def k_last(w: Windows) -> Result:
    """Kernel of ``last_over_time``."""
    ok = w.hi > w.lo
    idx = np.maximum(w.hi - 1, 0)
    return w.vs[idx] if len(w.vs) else np.zeros(ok.shape), ok


def k_first(w: Windows) -> Result:
    """Kernel of ``first_over_time``."""
    ok = w.hi > w.lo
    idx = np.minimum(w.lo, max(len(w.vs) - 1, 0))
    return w.vs[idx] if len(w.vs) else np.zeros(ok.shape), ok


def k_ts_last(w: Windows) -> Result:
    """Kernel of ``ts_of_last_over_time``."""
    ok = w.hi > w.lo
    idx = np.maximum(w.hi - 1, 0)
    return (w.ts[idx] / 1000.0 if len(w.ts) else np.zeros(ok.shape)), ok


def k_ts_first(w: Windows) -> Result:
    """Kernel of ``ts_of_first_over_time``."""
    ok = w.hi > w.lo
    idx = np.minimum(w.lo, max(len(w.ts) - 1, 0))
    return (w.ts[idx] / 1000.0 if len(w.ts) else np.zeros(ok.shape)), ok


def k_sum(w: Windows) -> Result:
    """Kernel of ``sum_over_time``: double-double prefix sums, exact where needed."""
    ok = w.hi > w.lo
    total, exact = _window_sums(w, ok)
    if exact.any():
        total[exact] = exact_sum(w.vs, w.lo[exact], w.hi[exact])
    return total, ok


def k_avg(w: Windows) -> Result:
    """Kernel of ``avg_over_time``."""
    n = w.count
    ok = n > 0
    mean, exact = _window_sums(w, ok, n)
    if exact.any():
        mean[exact] = exact_mean(w.vs, w.lo[exact], w.hi[exact])
    return mean, ok


def _sparse_reduce(w: Windows, op: Callable[..., np.ndarray], key: str) -> FloatMatrix:
    """Per window, ``op``-reduce the values with a sparse table (op is fmin or fmax)."""
    n = w.count
    longest = int(n.max()) if n.size else 0
    table = w.cache.get(key)
    if not isinstance(table, list):
        table = [w.vs]
        w.cache[key] = table
    while (1 << (len(table) - 1)) * 2 <= longest:
        half = 1 << (len(table) - 1)
        prev = table[-1]
        nxt = op(prev[:-half], prev[half:]) if len(prev) > half else prev[:0]
        table.append(nxt)
    out = np.full(n.shape, np.nan)
    ok = n > 0
    if not ok.any():
        return out
    lvl = np.zeros(n.shape, dtype=np.int64)
    lvl[ok] = np.floor(np.log2(n[ok].astype(np.float64))).astype(np.int64)
    for k in np.unique(lvl[ok]).tolist():
        sel = ok & (lvl == k)
        arr = table[k]
        out[sel] = op(arr[w.lo[sel]], arr[w.hi[sel] - (1 << k)])
    return out


def k_max(w: Windows) -> Result:
    """Kernel of ``max_over_time`` (NaN only when every sample is NaN)."""
    return _sparse_reduce(w, np.fmax, "fmax"), w.hi > w.lo


def k_min(w: Windows) -> Result:
    """Kernel of ``min_over_time``."""
    return _sparse_reduce(w, np.fmin, "fmin"), w.hi > w.lo


# ---------------------------------------------------------------- counters


def _reset_correction(w: Windows) -> tuple[FloatMatrix, BoolArray | None]:
    """Per window, the sum of the values before each counter reset inside it.

    Resets are rare, so the running sum is built from the reset samples only (in
    sample order, from the same leading 0.0 as a running sum over every pair,
    whose zero terms change nothing): one comparison over the samples instead of
    several full-length temporaries and a float running sum over all of them.
    """
    vs = w.vs
    pos = np.flatnonzero(vs[1:] < vs[:-1])
    pos += 1
    pos = pos[_pair_mask(w)[pos]]
    vals = vs[pos - 1]
    fin = np.isfinite(vals)
    bad = None
    if not fin.all():
        lo1 = np.minimum(w.lo + 1, w.hi)
        badp = _sparse_prefix(len(vs), pos, (~fin).astype(np.int64))
        bad = (badp[w.hi] - badp[lo1]) > 0
        vals = np.where(fin, vals, 0.0)
    if not len(pos):
        return np.zeros(w.lo.shape), bad
    return _pair_sum_of(w, _sparse_prefix(len(vs), pos, vals)), bad


def _sparse_prefix(length: int, pos: IndexArray, vals: np.ndarray) -> np.ndarray:
    """:func:`_prefix` of a mostly zero array, from its non-zero entries.

    The array has length ``length`` and ``vals`` at the ascending positions ``pos``;
    the result has the same rounding as the dense running sum.
    """
    head = np.zeros(1, dtype=vals.dtype)
    sums = np.cumsum(np.concatenate([head, vals]))
    counts = np.diff(np.concatenate([[-1], pos, [length]]))
    out: np.ndarray = np.repeat(sums, counts)
    return out


def _pair_sum_of(w: Windows, p: np.ndarray) -> np.ndarray:
    """Per window, ``p[hi] - p[lo + 1]`` (pairs inside the window) from a prefix ``p``."""
    lo1 = np.minimum(w.lo + 1, w.hi)
    out: np.ndarray = p[w.hi] - p[lo1]
    return out


def _exact_resets(w: Windows, lo: IndexArray, hi: IndexArray) -> FloatArray:
    """The reset correction summed sequentially, as Prometheus does it."""
    order, los, ns = _lockstep_order(lo, hi)
    acc = np.zeros(len(lo))
    for k in range(1, int(ns[0]) if len(ns) else 0):
        m = _active(ns, k)
        cur = w.vs[los[:m] + k]
        prv = w.vs[los[:m] + k - 1]
        acc[:m] = acc[:m] + np.where(cur < prv, prv, 0.0)
    out = np.empty(len(lo))
    out[order] = acc
    return out


def extrapolated_rate(w: Windows, is_counter: bool, is_rate: bool) -> Result:
    """Rate, increase or delta with Prometheus's extrapolation to the window edges.

    Every operation works on ``[series x steps]`` matrices, so they reuse their
    buffers (``out=``, ``copyto(where=)``) rather than allocating one per step of
    the formula; the arithmetic and its order are Prometheus's.
    """
    n = w.count
    ok = n >= 2
    if not ok.any() or not len(w.vs):
        return np.zeros(n.shape), ok
    last = w.hi - 1
    np.maximum(last, 0, out=last)
    first = np.minimum(w.lo, len(w.vs) - 1)
    f_first = w.vs[first]
    result = w.vs[last]
    result -= f_first
    if is_counter:
        corr, bad = _reset_correction(w)
        if bad is not None and (bad & ok).any():
            sel = bad & ok
            corr[sel] = _exact_resets(w, w.lo[sel], w.hi[sel])
        result += corr
    t_first = w.ts[first]
    t_last = w.ts[last]
    with np.errstate(all="ignore"):
        to_start = np.true_divide(t_first - (w.ends - w.range_ms)[None, :], 1000.0)
        to_end = np.true_divide(w.ends[None, :] - t_last, 1000.0)
        t_last -= t_first
        sampled = np.true_divide(t_last, 1000.0)
        n -= 1
        avg = sampled / n
        threshold = avg * 1.1
        avg /= 2
        np.copyto(to_start, avg, where=to_start >= threshold)
        if is_counter:
            # Prometheus: the extrapolation below zero stops at the counter's zero point.
            to_zero = f_first / result
            to_zero *= sampled
            cond = result > 0
            cond &= f_first >= 0
            cond &= to_zero < to_start
            np.copyto(to_start, to_zero, where=cond)
        np.copyto(to_end, avg, where=to_end >= threshold)
        factor = to_start
        factor += sampled
        factor += to_end
        factor /= sampled
        if is_rate:
            factor /= w.range_ms / 1000.0
        result *= factor
    return result, ok


def k_rate(w: Windows) -> Result:
    """Kernel of ``rate``."""
    return extrapolated_rate(w, True, True)


def k_increase(w: Windows) -> Result:
    """Kernel of ``increase``."""
    return extrapolated_rate(w, True, False)


def k_delta(w: Windows) -> Result:
    """Kernel of ``delta``."""
    return extrapolated_rate(w, False, False)


def _instant_value(w: Windows, is_rate: bool) -> Result:
    n = w.count
    ok = n >= 2
    if not ok.any():
        return np.zeros(n.shape), ok
    last = np.maximum(w.hi - 1, 1)
    prev = last - 1
    v1, v0 = w.vs[last], w.vs[prev]
    dt = (w.ts[last] - w.ts[prev]).astype(np.float64)
    with np.errstate(all="ignore"):
        if is_rate:
            out = np.where(v1 < v0, v1, v1 - v0) / (dt / 1000.0)
        else:
            out = v1 - v0
    return out, ok & (dt != 0)


def k_irate(w: Windows) -> Result:
    """Kernel of ``irate``."""
    return _instant_value(w, True)


def k_idelta(w: Windows) -> Result:
    """Kernel of ``idelta``."""
    return _instant_value(w, False)


def k_changes(w: Windows) -> Result:
    """Kernel of ``changes`` (NaN to NaN is no change)."""
    prev = _prev(w.vs)
    changed = (w.vs != prev) & ~(np.isnan(w.vs) & np.isnan(prev)) & _pair_mask(w)
    return _pair_sum(w, changed.astype(np.int64)).astype(np.float64), w.hi > w.lo


def k_resets(w: Windows) -> Result:
    """Kernel of ``resets``."""
    prev = _prev(w.vs)
    dropped = (w.vs < prev) & _pair_mask(w)
    return _pair_sum(w, dropped.astype(np.int64)).astype(np.float64), w.hi > w.lo


# ---------------------------------------------------------------- linear regression


def _regression_sums(w: Windows) -> tuple[FloatMatrix, ...]:
    """n, Σx, Σx², Σy, Σxy per window with x = (t - t_first_of_window) / 1000.

    The integer window sums are taken once and reused, and the ``[series x steps]``
    arithmetic runs in place: this is per window, and windows outnumber samples.
    """
    n = w.count
    clean, _ = _finite_view(w)
    # Times relative to the batch's first sample: small enough for exact float64 products,
    # and only differences within a window matter (sums are rebased on each window's u0).
    u = w.ts - w.ts[0] if len(w.ts) else w.ts
    lo_c = np.minimum(w.lo, max(len(u) - 1, 0))
    u0 = u[lo_c] if len(u) else np.zeros(n.shape, dtype=np.int64)
    p1 = _prefix(u)
    d1 = p1[w.hi]
    d1 -= p1[w.lo]
    longest = int(n.max()) if n.size else 0
    if longest * float(w.range_ms) ** 2 < 2.0 ** 62:
        # Exact in integers modulo 2^64 (the true value fits in 63 bits).
        uu = u.view(np.uint64)
        p2 = _prefix(uu * uu)
        u0u = u0.view(np.uint64)
        s2 = p2[w.hi]
        s2 -= p2[w.lo]
        t = np.multiply(u0u, d1.view(np.uint64))
        t *= np.uint64(2)
        s2 -= t
        np.multiply(n.view(np.uint64), u0u, out=t)
        t *= u0u
        s2 += t
        sxx = s2.view(np.int64).astype(np.float64)
        sxx /= 1e6
    else:
        xs = u.astype(np.float64) / 1000.0
        c2, ce2 = _dd_prefix(xs * xs)
        cx, cex = _dd_prefix(xs)
        x0 = u0 / 1000.0
        sxx = _dd_window(c2, ce2, w.lo, w.hi) - 2 * x0 * _dd_window(cx, cex, w.lo, w.hi) \
            + n * x0 * x0
    s1 = n * u0
    np.subtract(d1, s1, out=s1)
    sx = s1 / 1000.0
    uy = u.astype(np.float64)
    uy *= clean
    sy, sxy = _dd_sums(clean, w), _dd_sums(uy, w)
    uys = u0 * sy
    sxy -= uys
    sxy /= 1000.0
    return n.astype(np.float64), sx, sxx, sy, sxy


def _dd_sums(v: FloatArray, w: Windows) -> FloatMatrix:
    """Every window's double-double sum of ``v``; in one compiled pass when ``v`` is finite.

    The compiled sums are those of the finite values (the others count as 0),
    which are the same bits as the NumPy prefix sums when all are finite.
    """
    if bool(np.isfinite(v).all()):
        found = native.window_sums(v, w.lo, w.hi, False)
        if found is not None:
            return found[0]
    c, ce = _dd_prefix(v)
    return _dd_window(c, ce, w.lo, w.hi)


def _const_windows(w: Windows, sel: BoolArray) -> BoolArray:
    """Of the windows ``sel``, those whose values all equal the first.

    NaN never equals anything: ``NaN != x`` holds for every x, NaN included.
    """
    differs = w.vs[1:] != w.vs[:-1]
    differs &= _pair_mask(w)[1:]
    p = np.zeros(len(w.vs) + 1, dtype=np.int64)
    np.cumsum(differs, out=p[2:])
    hi = w.hi[sel]
    lo1 = np.minimum(w.lo[sel] + 1, hi)
    out = np.zeros(sel.shape, dtype=bool)
    out[sel] = p[hi] == p[lo1]
    return out


def _exact_regression(w: Windows, lo: IndexArray, hi: IndexArray,
                      intercept_ms: TimeArray) -> tuple[FloatArray, FloatArray]:
    """Prometheus's ``linearRegression`` step by step (for windows with Inf/NaN)."""
    order, los, ns = _lockstep_order(lo, hi)
    icpt = intercept_ms[order]
    m0 = len(lo)
    sums = [np.zeros(m0) for _ in range(8)]
    for k in range(int(ns[0]) if m0 else 0):
        m = _active(ns, k)
        y = w.vs[los[:m] + k]
        x = (w.ts[los[:m] + k] - icpt[:m]) / 1e3
        for j, term in enumerate((x, y, x * y, x * x)):
            sums[2 * j][:m], sums[2 * j + 1][:m] = kahan_inc(term, sums[2 * j][:m],
                                                             sums[2 * j + 1][:m])
    sx, sy, sxy, sxx = (sums[2 * j] + sums[2 * j + 1] for j in range(4))
    nf = ns.astype(np.float64)
    with np.errstate(all="ignore"):
        cov = sxy - sx * sy / nf
        var = sxx - sx * sx / nf
        slope = cov / var
        intercept = sy / nf - slope * sx / nf
    out_s, out_i = np.empty(m0), np.empty(m0)
    out_s[order], out_i[order] = slope, intercept
    return out_s, out_i


def _regression(w: Windows, at_step: bool, need_intercept: bool = True
                ) -> tuple[FloatMatrix, FloatMatrix | None, BoolArray]:
    """Slope and intercept (at the window's first sample, or at the step time).

    The intercept is None unless ``need_intercept``: ``deriv`` has no use for it.
    """
    n = w.count
    ok = n >= 2
    shape = n.shape
    if not ok.any():
        return np.zeros(shape), np.zeros(shape), ok
    nf, sx, sxx, sy, sxy = _regression_sums(w)
    first = np.minimum(w.lo, len(w.ts) - 1)
    if at_step:
        d = (w.ts[first] - w.step_times[None, :]) / 1000.0
        sxy = sxy + d * sy
        sxx = sxx + 2 * d * sx + nf * d * d
        sx = sx + nf * d
    intercept: FloatMatrix | None = None
    with np.errstate(all="ignore"):
        sxy_n = sx * sy
        sxy_n /= nf
        cov = sxy - sxy_n
        var = sx * sx
        var /= nf
        np.subtract(sxx, var, out=var)
        slope = cov / var
        if need_intercept:
            intercept = sy / nf - slope * sx / nf
        # Constant windows get Prometheus's exact 0 slope. Only windows whose covariance
        # is (numerically) zero can be constant, so only those are scanned.
        limit = np.abs(sxy)
        limit += np.abs(sxy_n)
        limit *= 1e-9
        maybe = np.abs(cov) > limit
    np.logical_not(maybe, out=maybe)
    maybe &= ok
    const = None
    if maybe.any():
        const = _const_windows(w, maybe)
        if const.any():
            init = w.vs[first]
            inf = np.isinf(init)
            slope = np.where(const, np.where(inf, np.nan, 0.0), slope)
            if intercept is not None:
                intercept = np.where(const, np.where(inf, np.nan, init), intercept)
    bad = _nonfinite_in(w, w.lo, w.hi)
    if bad is not None:
        sel = bad & ok
        if const is not None:
            sel &= ~const
        if sel.any():
            icpt = (np.broadcast_to(w.step_times[None, :], shape)[sel] if at_step
                    else w.ts[first[sel]])
            s_sel, i_sel = _exact_regression(w, w.lo[sel], w.hi[sel], icpt)
            slope[sel] = s_sel
            if intercept is not None:
                intercept[sel] = i_sel
    return slope, intercept, ok


def k_deriv(w: Windows) -> Result:
    """Kernel of ``deriv``: the least-squares slope per second."""
    slope, _, ok = _regression(w, False, need_intercept=False)
    return slope, ok


def k_predict_linear(w: Windows) -> Result:
    """predict_linear(v, t): the regression line's value t seconds after the step."""
    slope, intercept, ok = _regression(w, True)
    assert intercept is not None
    duration = w.params[0][None, :]
    return slope * duration + intercept, ok


# ---------------------------------------------------------------- sequential kernels


def k_variance(w: Windows, sqrt: bool) -> Result:
    """Kernel of ``stdvar/stddev_over_time``: Welford with Kahan sums, in lock-step."""
    ok = w.hi > w.lo
    lo, hi = w.lo[ok], w.hi[ok]
    order, los, ns = _lockstep_order(lo, hi)
    m0 = len(lo)
    mean, c_mean, aux, c_aux = (np.zeros(m0) for _ in range(4))
    for k in range(int(ns[0]) if m0 else 0):
        m = _active(ns, k)
        f = w.vs[los[:m] + k]
        count = float(k + 1)
        delta = f - (mean[:m] + c_mean[:m])
        mean[:m], c_mean[:m] = kahan_inc(delta / count, mean[:m], c_mean[:m])
        aux[:m], c_aux[:m] = kahan_inc(delta * (f - (mean[:m] + c_mean[:m])), aux[:m],
                                       c_aux[:m])
    var = (aux + c_aux) / ns.astype(np.float64)
    if sqrt:
        var = np.sqrt(var)
    out = np.zeros(ok.shape)
    res = np.empty(m0)
    res[order] = var
    out[ok] = res
    return out, ok


def k_stdvar(w: Windows) -> Result:
    """Kernel of ``stdvar_over_time``."""
    return k_variance(w, False)


def k_stddev(w: Windows) -> Result:
    """Kernel of ``stddev_over_time``."""
    return k_variance(w, True)


def _compare_over_time(w: Windows, is_max: bool) -> Result:
    """Kernel of ``ts_of_max/min_over_time``: the time of the last extreme sample."""
    ok = w.hi > w.lo
    lo, hi = w.lo[ok], w.hi[ok]
    order, los, ns = _lockstep_order(lo, hi)
    best = w.vs[los].copy() if len(los) else np.zeros(0)
    when = w.ts[los].copy() if len(los) else np.zeros(0, dtype=np.int64)
    for k in range(int(ns[0]) if len(ns) else 0):
        m = _active(ns, k)
        f = w.vs[los[:m] + k]
        cur = best[:m]
        take = ((f >= cur) if is_max else (f <= cur)) | np.isnan(cur)
        best[:m] = np.where(take, f, cur)
        when[:m] = np.where(take, w.ts[los[:m] + k], when[:m])
    out = np.zeros(ok.shape)
    res = np.empty(len(lo))
    res[order] = when / 1000.0
    out[ok] = res
    return out, ok


def k_ts_max(w: Windows) -> Result:
    """Kernel of ``ts_of_max_over_time``."""
    return _compare_over_time(w, True)


def k_ts_min(w: Windows) -> Result:
    """Kernel of ``ts_of_min_over_time``."""
    return _compare_over_time(w, False)


def k_double_exponential_smoothing(w: Windows) -> Result:
    """double_exponential_smoothing(v, sf, tf), step by step for every window."""
    n = w.count
    ok = n >= 2
    sf_all = np.broadcast_to(w.params[0][None, :], n.shape)
    tf_all = np.broadcast_to(w.params[1][None, :], n.shape)
    called = n > 0
    for name, key, arr in (("smoothing", "sf", sf_all[called]), ("trend", "tf", tf_all[called])):
        badv = arr[(arr <= 0) | (arr >= 1)]
        if len(badv):
            raise EvalError(f"invalid {name} factor. Expected: 0 < {key} < 1, got: {badv[0]:f}")
    sel = ok
    lo, hi = w.lo[sel], w.hi[sel]
    sf, tf = sf_all[sel], tf_all[sel]
    order, los, ns = _lockstep_order(lo, hi)
    sf, tf = sf[order], tf[order]
    s1 = w.vs[los].copy() if len(los) else np.zeros(0)
    b = (w.vs[los + 1] - s1) if len(los) else np.zeros(0)
    s0 = np.zeros(len(los))
    for i in range(1, int(ns[0]) if len(ns) else 0):
        m = _active(ns, i)
        x = sf[:m] * w.vs[los[:m] + i]
        if i - 1 != 0:
            b[:m] = tf[:m] * (s1[:m] - s0[:m]) + (1 - tf[:m]) * b[:m]
        y = (1 - sf[:m]) * (s1[:m] + b[:m])
        s0[:m], s1[:m] = s1[:m], x + y
    out = np.zeros(n.shape)
    res = np.empty(len(lo))
    res[order] = s1
    out[sel] = res
    return out, ok


# ---------------------------------------------------------------- order statistics


def sorted_nan_first(block: FloatMatrix, counts: IndexArray) -> FloatMatrix:
    """Sort rows ascending with NaN before everything (Prometheus's order); pad at the end.

    ``block`` rows hold ``counts[i]`` real values followed by padding.
    """
    width = block.shape[1]
    nan = np.isnan(block)
    pad = np.arange(width)[None, :] >= counts[:, None]
    keys = np.where(nan, -np.inf, block)
    keys[pad] = np.inf
    keys.sort(axis=1)
    n_nan = (nan & ~pad).sum(axis=1)
    keys[np.arange(width)[None, :] < n_nan[:, None]] = np.nan
    return keys


def quantile_sorted(q: FloatArray, values: FloatMatrix, counts: IndexArray) -> FloatArray:
    """Prometheus's ``quantile`` on rows already sorted (NaN first)."""
    nf = counts.astype(np.float64)
    with np.errstate(all="ignore"):
        rank = q * (nf - 1)
        lower = np.maximum(0.0, np.floor(rank))
        upper = np.minimum(nf - 1, lower + 1)
        weight = rank - np.floor(rank)
        li = np.clip(np.nan_to_num(lower), 0, values.shape[1] - 1).astype(np.int64)
        ui = np.clip(np.nan_to_num(upper), 0, values.shape[1] - 1).astype(np.int64)
        rows = np.arange(len(counts))
        out = values[rows, li] * (1 - weight) + values[rows, ui] * weight
    out = np.where(q < 0, -np.inf, out)
    out = np.where(q > 1, np.inf, out)
    out = np.where(np.isnan(q) | (counts == 0), np.nan, out)
    return out


def _padded_windows(w: Windows, lo: IndexArray, width: int) -> FloatMatrix:
    idx = lo[:, None] + np.arange(width)[None, :]
    idx = np.minimum(idx, len(w.vs) - 1)
    out: FloatMatrix = w.vs[idx]
    return out


def _order_stat(w: Windows, fn: Callable[[FloatMatrix, IndexArray, IndexArray], FloatArray]
                ) -> Result:
    """Apply ``fn(sorted rows, counts, window ids)`` to all non-empty windows, in chunks."""
    n = w.count
    ok = n > 0
    out = np.zeros(n.shape)
    ids = np.flatnonzero(ok.ravel())
    if not len(ids):
        return out, ok
    lo = w.lo.ravel()[ids]
    cnt = n.ravel()[ids]
    flat = out.reshape(-1)
    for part, width in padded_chunks(cnt):
        block = _padded_windows(w, lo[part], width)
        flat[ids[part]] = fn(sorted_nan_first(block, cnt[part]), cnt[part], ids[part])
    return out, ok


def padded_chunks(counts: IndexArray, width_cap: int = CHUNK
                  ) -> Iterator[tuple[IndexArray, int]]:
    """Positions into ``counts`` in chunks of similar length, and each chunk's width.

    Windows are taken shortest first, so a chunk padded to its longest window
    wastes little, and each chunk holds at most about ``width_cap`` cells.
    """
    order = np.argsort(counts, kind="stable")
    total = len(order)
    start = 0
    while start < total:
        stop = min(total, start + max(1, width_cap // max(1, int(counts[order[start]]))))
        stop = min(stop, start + max(1, width_cap // max(1, int(counts[order[stop - 1]]))))
        part = order[start:stop]
        yield part, int(counts[part].max())
        start = stop


def k_quantile(w: Windows) -> Result:
    """quantile_over_time(φ, v)."""
    steps = w.lo.shape[1]
    q_all = w.params[0]

    def fn(rows: FloatMatrix, counts: IndexArray, ids: IndexArray) -> FloatArray:
        return quantile_sorted(q_all[ids % steps], rows, counts)

    return _order_stat(w, fn)


def k_mad(w: Windows) -> Result:
    """Kernel of ``mad_over_time``: median absolute deviation from the median."""

    def fn(rows: FloatMatrix, counts: IndexArray, ids: IndexArray) -> FloatArray:
        half = np.full(len(counts), 0.5)
        median = quantile_sorted(half, rows, counts)
        dev = np.abs(rows - median[:, None])
        mad = quantile_sorted(half, sorted_nan_first(dev, counts), counts)
        # Rows sort NaN first: a NaN sample anywhere in the window makes the result NaN.
        out: FloatArray = np.where(np.isnan(rows[:, 0]), np.nan, mad)
        return out

    return _order_stat(w, fn)


KERNELS: dict[str, Kernel] = {
    "count_over_time": k_count,
    "present_over_time": k_present,
    "absent_over_time": k_count,
    "last_over_time": k_last,
    "first_over_time": k_first,
    "ts_of_last_over_time": k_ts_last,
    "ts_of_first_over_time": k_ts_first,
    "ts_of_max_over_time": k_ts_max,
    "ts_of_min_over_time": k_ts_min,
    "sum_over_time": k_sum,
    "avg_over_time": k_avg,
    "max_over_time": k_max,
    "min_over_time": k_min,
    "stddev_over_time": k_stddev,
    "stdvar_over_time": k_stdvar,
    "quantile_over_time": k_quantile,
    "mad_over_time": k_mad,
    "rate": k_rate,
    "increase": k_increase,
    "delta": k_delta,
    "irate": k_irate,
    "idelta": k_idelta,
    "changes": k_changes,
    "resets": k_resets,
    "deriv": k_deriv,
    "predict_linear": k_predict_linear,
    "double_exponential_smoothing": k_double_exponential_smoothing,
}
"""Range-window functions by name; the matrix argument's position is in MATRIX_ARG."""

MATRIX_ARG = {"quantile_over_time": 1}
"""Functions whose range argument is not the first one."""
