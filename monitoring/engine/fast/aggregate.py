"""Aggregation operators over whole-query vectors: every step of every group at once.

Prometheus aggregates one evaluation step at a time, feeding the series of a
group into an accumulator in input order. Sums and means use Kahan
compensation and the variance Welford's update, so the result depends on that
order; here the rows of all groups are fed in the same order, one *rank* at a
time (the first row of every group, then the second, ...), each rank one NumPy
operation over ``[groups × steps]``. Order-free operators (count, group, min,
max) are plain segment reductions, and quantile/topk/bottomk sort each group's
``[rows × steps]`` block along the rows.

Errors and annotations copy Prometheus's wording (``promql/engine.go``):
``topk(NaN, x)`` fails, ``quantile(2, x)`` warns, and so on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import numpy as np

from monitoring.dsl import ir
from monitoring.dsl.lexical import quote
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.labels import (
    format_go_float,
    group_ids,
    labels_hash,
    set_label,
    valid_label_name,
)
from monitoring.engine.fast.values import (
    BoolArray,
    FloatMatrix,
    IndexArray,
    Scalar,
    String,
    Value,
    Vector,
)
from monitoring.engine.model import METRIC_NAME, EvalError, Labels, ValueArray

__all__ = ["aggregate", "go_g", "grouping_key", "kahan_inc"]

K_OPS = frozenset({"topk", "bottomk", "limitk", "limit_ratio"})
"""Aggregations that keep the selected input series as they are."""

_MAX_INT64 = 9223372036854775807.0
_MIN_INT64 = -9223372036854775808.0
_MAX_UINT64 = float(2**64 - 1)


# ---------------------------------------------------------------- small helpers


def go_g(value: float) -> str:
    """Go's ``%g``/``%v`` of a float64: shortest digits, exponent below 1e-04 or from 1e+06."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    digits, exp = _shortest(value)
    point = exp + 1  # decimal exponent of the first digit, plus one
    limit = 6
    sign = "-" if value < 0 else ""
    if exp < -4 or exp >= limit:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{sign}{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return sign + digits + "0" * (point - len(digits))
    return f"{sign}{digits[:point]}.{digits[point:]}"


def _shortest(value: float) -> tuple[str, int]:
    """The shortest round-tripping digits of ``|value|`` and its decimal exponent."""
    text = f"{abs(value):.17e}"
    for prec in range(1, 18):
        cand = f"{abs(value):.{prec - 1}e}"
        if float(cand) == abs(value):
            text = cand
            break
    mant, exp = text.split("e")
    digits = mant.replace(".", "").rstrip("0") or "0"
    return digits, int(exp)


def kahan_inc(inc: FloatMatrix, total: FloatMatrix,
              comp: FloatMatrix) -> tuple[FloatMatrix, FloatMatrix]:
    """One Neumaier-compensated addition (``kahansum.Inc``), element by element."""
    with np.errstate(all="ignore"):
        t = total + inc
        big = np.abs(total) >= np.abs(inc)
        c = comp + np.where(big, (total - t) + inc, (inc - t) + total)
        c = np.where(np.isinf(t), 0.0, c)
    return t, c


def grouping_key(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    """The output labels of a group (and its key).

    ``by`` keeps the listed labels, ``without`` drops them and the metric name.
    """
    if without:
        drop = set(grouping)
        drop.add(METRIC_NAME)
        return tuple(p for p in labels if p[0] not in drop)
    if not grouping:
        return ()
    keep = set(grouping)
    return tuple(p for p in labels if p[0] in keep)


def grouping_keys(labels: list[Labels], grouping: tuple[str, ...],
                  without: bool) -> list[Labels]:
    """:func:`grouping_key` of every label set, remembered for the next evaluations.

    Live evaluation aggregates the same series every minute; a look-up of the
    label set costs a third of filtering its labels again.
    """
    if not without and not grouping:
        return [()] * len(labels)
    known = _KNOWN_KEYS.get((grouping, without))
    if known is None or len(known) > KEYS_KEPT:
        known = _KNOWN_KEYS[(grouping, without)] = {}
        if len(_KNOWN_KEYS) > KEYS_KEPT:
            _KNOWN_KEYS.clear()
            _KNOWN_KEYS[(grouping, without)] = known
    found = list(map(known.get, labels))
    if None not in found:
        return cast("list[Labels]", found)
    for i, (lab, key) in enumerate(zip(labels, found, strict=True)):
        if key is None:
            found[i] = known[lab] = grouping_key(lab, grouping, without)
    return cast("list[Labels]", found)


KEYS_KEPT = 200_000
"""Label sets (and grouping specs) whose grouping keys are remembered; past it the
memory starts afresh."""
_KNOWN_KEYS: dict[tuple[tuple[str, ...], bool], dict[Labels, Labels]] = {}


def _param_values(param: Value | None, steps: int, op: str) -> ValueArray:
    if not isinstance(param, Scalar):
        raise EvalError(f"expected a scalar parameter for {op}")
    out: ValueArray = np.asarray(param.values, dtype=np.float64)
    if out.shape != (steps,):
        out = np.broadcast_to(out, (steps,)).copy()
    return out


def _go_max(values: ValueArray) -> float:
    """``math.Max`` folded over the values: +Inf wins, then NaN, then the largest."""
    if np.isposinf(values).any():
        return math.inf
    if np.isnan(values).any():
        return math.nan
    return float(values.max()) if len(values) else -math.inf


def _go_min(values: ValueArray) -> float:
    """``math.Min`` folded over the values: -Inf wins, then NaN, then the smallest."""
    if np.isneginf(values).any():
        return -math.inf
    if np.isnan(values).any():
        return math.nan
    return float(values.min()) if len(values) else math.inf


class _Groups:
    """Rows sorted by group, and the rank slabs that feed them in input order."""

    def __init__(self, ids: IndexArray, count: int) -> None:
        self.ids = ids
        self.count = count
        order = np.argsort(ids, kind="stable")
        self.order = order
        sorted_ids = ids[order]
        n = len(ids)
        self.starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]]) \
            if n else np.zeros(0, dtype=np.int64)
        self.sizes = np.diff(np.r_[self.starts, n])
        self._slabs: list[tuple[IndexArray, IndexArray]] | None = None

    @property
    def slabs(self) -> list[tuple[IndexArray, IndexArray]]:
        """Per rank ``r``: the ``r``-th row of every group that has one, and those groups.

        Built on first use: one entry per rank is a Python loop as long as the
        largest group, which the cumulative-sum path of sums and means avoids.
        """
        if self._slabs is None:
            n = len(self.ids)
            pos = np.arange(n) - np.repeat(self.starts, self.sizes)
            by_pos = np.argsort(pos, kind="stable")
            bounds = np.r_[0, np.cumsum(np.bincount(pos, minlength=1))] if n \
                else np.zeros(1, int)
            self._slabs = []
            for p in range(len(bounds) - 1):
                rows = self.order[by_pos[bounds[p]:bounds[p + 1]]]
                self._slabs.append((rows, self.ids[rows]))
        return self._slabs

    def members(self, g: int) -> IndexArray:
        """The rows of group ``g`` in input order."""
        start = int(self.starts[g])
        out: IndexArray = self.order[start:start + int(self.sizes[g])]
        return out


# ---------------------------------------------------------------- entry point


def aggregate(node: ir.Aggregate, vec: Vector, param: Value | None, ctx: Context) -> Vector:
    """Evaluate ``node`` (an aggregation) over ``vec`` at every step."""
    op = node.op.lower()
    steps = vec.steps
    if op == "count_values":
        return _count_values(node, vec, param)
    if op in K_OPS:
        return _aggregate_k(op, node, vec, param, ctx)
    q: ValueArray | None = None
    if op == "quantile":
        q = _param_values(param, steps, op)
        _quantile_warnings(q, node, ctx)
    if not len(vec):
        return Vector.empty(steps)
    keys = grouping_keys(vec.labels, node.grouping, node.without)
    ids, distinct = group_ids(keys)
    groups = _Groups(ids, len(distinct))
    fn = _SIMPLE.get(op)
    if fn is not None:
        values, present = fn(vec, groups)
    elif op == "quantile":
        assert q is not None
        values, present = _quantile(vec, groups, q)
    else:
        raise EvalError(f"unknown aggregation {node.op}")
    drop = np.zeros(len(distinct), dtype=bool)
    np.logical_or.at(drop, ids, vec.drop_name)
    return Vector(distinct, values, present, drop).compact()


def _quantile_warnings(q: ValueArray, node: ir.Aggregate, ctx: Context) -> None:
    if not len(q):
        return
    where = node.param
    if np.isnan(q).any():
        ctx.warn("quantile value should be between 0 and 1, got NaN", where)
    hi = _go_max(q)
    lo = _go_min(q)
    if hi > 1:
        ctx.warn(f"quantile value should be between 0 and 1, got {go_g(hi)}", where)
    if lo < 0:
        ctx.warn(f"quantile value should be between 0 and 1, got {go_g(lo)}", where)


# ---------------------------------------------------------------- order-free reductions

Reducer = Callable[[Vector, _Groups], tuple[FloatMatrix, BoolArray]]


def _segments(vec: Vector, groups: _Groups, fill: float) -> tuple[FloatMatrix, BoolArray]:
    """Values (``fill`` where absent) and presence with rows sorted by group (read-only).

    The full matrices are only copied when needed: not at all when every cell is
    present and the rows already come in group order (as after ``by`` labels that
    sort like the series).
    """
    present = vec.present
    vals = vec.values if present.all() else np.where(present, vec.values, fill)
    order = groups.order
    if len(order) and not np.array_equal(order, np.arange(len(order))):
        return vals[order], present[order]
    return vals, present


ROW_WISE_MIN_STEPS = 64
"""From this many steps on, order-free reductions fold row by row into the output.

Folding each input row into its group's output row in place needs no copy of the
input (``_segments`` makes up to two); it costs two NumPy calls per row, which only
pays off when rows are long. Either way the pairs are combined in the same order.
"""


def _fold_rows(vec: Vector, groups: _Groups, op: np.ufunc, init: float
               ) -> tuple[FloatMatrix, BoolArray]:
    """``op`` folded over each group's present cells, rows in input order."""
    out = np.full((groups.count, vec.steps), init)
    seen = np.zeros((groups.count, vec.steps), dtype=bool)
    for row, g in enumerate(groups.ids.tolist()):
        pres = vec.present[row]
        op(out[g], vec.values[row], out=out[g], where=pres)
        seen[g] |= pres
    return out, seen


def _count(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    if vec.steps >= ROW_WISE_MIN_STEPS:
        counts = np.zeros((groups.count, vec.steps))
        for row, g in enumerate(groups.ids.tolist()):
            counts[g] += vec.present[row]
        return counts, counts > 0
    _, pres = _segments(vec, groups, 0.0)
    counts = np.add.reduceat(pres.astype(np.float64), groups.starts, axis=0)
    return counts, counts > 0


def _group(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    counts, present = _count(vec, groups)
    return np.ones_like(counts), present


def _extreme(vec: Vector, groups: _Groups, op: np.ufunc) -> tuple[FloatMatrix, BoolArray]:
    """``max`` (``fmax``) or ``min`` (``fmin``): NaN only when every sample is NaN."""
    if vec.steps >= ROW_WISE_MIN_STEPS:
        return _fold_rows(vec, groups, op, math.nan)
    vals, pres = _segments(vec, groups, math.nan)
    out = op.reduceat(vals, groups.starts, axis=0)
    return out, np.logical_or.reduceat(pres, groups.starts, axis=0)


def _max(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    """``max``: a number always beats NaN."""
    return _extreme(vec, groups, np.fmax)


def _min(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    return _extreme(vec, groups, np.fmin)


# ---------------------------------------------------------------- order-dependent ones


def _kahan_columns(vec: Vector, groups: _Groups
                   ) -> tuple[FloatMatrix, FloatMatrix, FloatMatrix] | None:
    """Each group's Kahan sum (total, compensation) and sample count, ``[groups × steps]``.

    The same additions in the same order as the rank-by-rank loop, without a loop
    over ranks: groups of similar size (sizes up to the same power of two) are
    laid out as ``[rank × (group, step)]`` columns, absent cells padded with
    ``-0.0`` (``x + -0.0`` is ``x`` for every ``x``). NumPy's ``cumsum`` along the
    ranks adds strictly in order, so it yields the running totals exactly as
    ``kahansum.Inc`` computes them; each addition's rounding error then follows
    from the totals before and after it, and a second ``cumsum`` accumulates
    those errors as the compensation does. ``None`` when a present value is not
    finite or a total overflows: ``Inc`` resets the compensation at an infinite
    total, which only the rank-by-rank loop reproduces.
    """
    if vec.steps > KAHAN_COLUMNS_MAX_STEPS:
        return None
    values, present = vec.values, vec.present
    with np.errstate(invalid="ignore", over="ignore"):
        if not np.isfinite(np.sum(values, where=present)):
            return None
    shape = (groups.count, vec.steps)
    totals, comps, counts = np.empty(shape), np.empty(shape), np.empty(shape)
    sizes = groups.sizes
    size_class = np.ceil(np.log2(np.maximum(sizes, 1))).astype(np.int64)
    for cls in np.unique(size_class).tolist():
        members = np.flatnonzero(size_class == cls)  # group ids (groups sorted by id)
        ranks = int(sizes[members].max())
        rank = np.arange(ranks)[:, None]
        valid = rank < sizes[members][None, :]
        rows = groups.order[np.where(valid, groups.starts[members][None, :] + rank, 0)]
        width = max(1, KAHAN_CELLS // (ranks * len(members)))
        for lo in range(0, vec.steps, width):
            cols = slice(lo, lo + width)
            here = present[rows, cols] & valid[:, :, None]  # [rank × group × step]
            sums = _kahan_block(np.where(here, values[rows, cols], -0.0), here)
            if sums is None:
                return None
            totals[members, cols], comps[members, cols] = sums
            counts[members, cols] = here.sum(axis=0)
    return totals, comps, counts


KAHAN_COLUMNS_MAX_STEPS = 64
"""Beyond this many steps the rank-by-rank loop is used: each of its NumPy operations then
covers many steps, so its Python overhead is small, and it touches no padding (on a week
at a 1-minute step, ``sum by (le)`` took 0.31 s through the columns and 0.25 s through the
loop). Live evaluation (one step) and short ranges take the columns."""
KAHAN_CELLS = 1 << 21
"""Cells (ranks × groups × steps) of one block of :func:`_kahan_columns`: bounds the
temporaries on long range queries."""


def _kahan_block(x: FloatMatrix, here: BoolArray) -> tuple[FloatMatrix, FloatMatrix] | None:
    """Kahan total and compensation along axis 0 (see :func:`_kahan_columns`)."""
    with np.errstate(all="ignore"):
        total = np.cumsum(x, axis=0)
        if not np.isfinite(total[-1]).all():
            return None
        prev = np.empty_like(total)
        prev[0] = -0.0
        prev[1:] = total[:-1]
        err = np.where(np.abs(prev) >= np.abs(x), (prev - total) + x, (x - total) + prev)
        before = np.zeros_like(here)
        np.logical_or.accumulate(here[:-1], axis=0, out=before[1:])
        err = np.where(here, np.where(before, err, 0.0), -0.0)
        comp = np.cumsum(err, axis=0)
        if not np.isfinite(comp[-1]).all():
            return None
    return total[-1], comp[-1]


def _sum(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    """Kahan sum: the first sample of a group starts it, the compensation is added last."""
    fast = _kahan_columns(vec, groups)
    if fast is not None:
        total, comp, count = fast
        seen = count > 0
        with np.errstate(all="ignore"):
            return np.where(seen, total + comp, 0.0), seen
    shape = (groups.count, vec.steps)
    total = np.zeros(shape)
    comp = np.zeros(shape)
    seen = np.zeros(shape, dtype=bool)
    for rows, g in groups.slabs:
        v = vec.values[rows]
        m = vec.present[rows]
        s = seen[g]
        first = m & ~s
        upd = m & s
        nt, nc = kahan_inc(v, total[g], comp[g])
        total[g] = np.where(first, v, np.where(upd, nt, total[g]))
        comp[g] = np.where(first, 0.0, np.where(upd, nc, comp[g]))
        seen[g] = s | m
    with np.errstate(all="ignore"):
        out = total + comp
    return out, seen


def _avg(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    """Kahan mean of the sum, switching to an incremental mean once the sum overflows."""
    fast = _kahan_columns(vec, groups)
    if fast is not None:  # no overflow: the mean is the sum's, divided at the end
        total, comp, count = fast
        with np.errstate(all="ignore"):
            return total / count + comp / count, count > 0
    shape = (groups.count, vec.steps)
    total = np.zeros(shape)
    comp = np.zeros(shape)
    mean = np.zeros(shape)
    count = np.zeros(shape)
    incr = np.zeros(shape, dtype=bool)
    seen = np.zeros(shape, dtype=bool)
    with np.errstate(all="ignore"):
        for rows, g in groups.slabs:
            v = vec.values[rows]
            m = vec.present[rows]
            s = seen[g]
            first = m & ~s
            upd = m & s
            t, c, mu, n, inc = total[g], comp[g], mean[g], count[g], incr[g]
            n = np.where(first, 1.0, np.where(upd, n + 1.0, n))
            t = np.where(first, v, t)
            c = np.where(first, 0.0, c)
            inc = np.where(first, False, inc)
            direct = upd & ~inc
            nt, nc = kahan_inc(v, t, c)
            fits = direct & ~np.isinf(nt)
            switch = direct & np.isinf(nt)
            t = np.where(fits, nt, t)
            c = np.where(fits, nc, c)
            mu = np.where(switch, t / (n - 1.0), mu)
            c = np.where(switch, c / (n - 1.0), c)
            inc = inc | switch
            step = upd & inc
            q = (n - 1.0) / n
            nm, nc2 = kahan_inc(v / n, q * mu, q * c)
            mu = np.where(step, nm, mu)
            c = np.where(step, nc2, c)
            total[g], comp[g], mean[g], count[g], incr[g] = t, c, mu, n, inc
            seen[g] = s | m
        out = np.where(incr, mean + comp, total / count + comp / count)
    return out, seen


def _variance(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    """Welford's running variance (population), as Prometheus updates it."""
    shape = (groups.count, vec.steps)
    acc = np.zeros(shape)
    mean = np.zeros(shape)
    count = np.zeros(shape)
    seen = np.zeros(shape, dtype=bool)
    with np.errstate(all="ignore"):
        for rows, g in groups.slabs:
            v = vec.values[rows]
            m = vec.present[rows]
            s = seen[g]
            first = m & ~s
            upd = m & s
            a, mu, n = acc[g], mean[g], count[g]
            a = np.where(first, np.where(np.isfinite(v), 0.0, math.nan), a)
            mu = np.where(first, v, mu)
            n = np.where(first, 1.0, np.where(upd, n + 1.0, n))
            delta = v - mu
            new_mu = mu + delta / n
            a = np.where(upd, a + delta * (v - new_mu), a)
            mu = np.where(upd, new_mu, mu)
            acc[g], mean[g], count[g] = a, mu, n
            seen[g] = s | m
        out = acc / count
    return out, seen


def _stdvar(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    return _variance(vec, groups)


def _stddev(vec: Vector, groups: _Groups) -> tuple[FloatMatrix, BoolArray]:
    var, present = _variance(vec, groups)
    with np.errstate(all="ignore"):
        return np.sqrt(var), present


_SIMPLE: dict[str, Reducer] = {
    "sum": _sum,
    "avg": _avg,
    "count": _count,
    "group": _group,
    "min": _min,
    "max": _max,
    "stddev": _stddev,
    "stdvar": _stdvar,
}


def quantile_of_block(values: FloatMatrix, present: BoolArray, q: ValueArray) -> FloatMatrix:
    """Prometheus's ``quantile`` of the present samples of each column (NaN sorts lowest)."""
    n = present.sum(axis=0)
    is_nan = present & np.isnan(values)
    k_nan = is_nan.sum(axis=0)
    ordered = np.sort(np.where(present & ~is_nan, values, math.inf), axis=0)
    cols = np.arange(values.shape[1])
    with np.errstate(all="ignore"):
        rank = q * (n - 1.0)
        floor_rank = np.floor(np.where(np.isfinite(rank), rank, 0.0))
        lower = np.maximum(0.0, floor_rank)
        upper = np.minimum(n - 1.0, lower + 1.0)
        weight = rank - floor_rank

        def pick(index: FloatMatrix) -> FloatMatrix:
            i = np.clip(index, 0, max(values.shape[0] - 1, 0)).astype(np.int64)
            j = np.clip(i - k_nan, 0, max(values.shape[0] - 1, 0))
            got: FloatMatrix = np.where(i < k_nan, math.nan, ordered[j, cols])
            return got

        out = pick(lower) * (1.0 - weight) + pick(upper) * weight
    out = np.where(np.isnan(q), math.nan, out)
    out = np.where(q < 0, -math.inf, out)
    out = np.where(q > 1, math.inf, out)
    return out


def _quantile(vec: Vector, groups: _Groups,
              q: ValueArray) -> tuple[FloatMatrix, BoolArray]:
    out = np.zeros((groups.count, vec.steps))
    present = np.zeros((groups.count, vec.steps), dtype=bool)
    for g in range(groups.count):
        rows = groups.members(g)
        vals = vec.values[rows]
        pres = vec.present[rows]
        present[g] = pres.any(axis=0)
        if present[g].any():
            out[g] = quantile_of_block(vals, pres, q)
    return out, present


# ---------------------------------------------------------------- topk and friends


def _aggregate_k(op: str, node: ir.Aggregate, vec: Vector, param: Value | None,
                 ctx: Context) -> Vector:
    """topk, bottomk, limitk, limit_ratio: the selected input rows, unchanged."""
    steps = vec.steps
    p = _param_values(param, steps, op)
    if not len(p):
        return Vector.empty(steps)
    hi, lo = _go_max(p), _go_min(p)
    if op == "limit_ratio":
        if hi == 0 and lo == 0:
            return Vector.empty(steps)
        if np.isnan(p).any():
            raise EvalError("Ratio value is NaN")
        if hi > 1.0:
            ctx.warn(f"ratio value should be between -1 and 1, got {go_g(hi)}, capping to 1",
                     node.param)
        if lo < -1.0:
            ctx.warn(f"ratio value should be between -1 and 1, got {go_g(lo)}, capping to -1",
                     node.param)
    else:
        if hi < 1:
            return Vector.empty(steps)
        if np.isnan(p).any():
            raise EvalError("Parameter value is NaN")
        if lo <= _MIN_INT64:
            raise EvalError(f"Scalar value {go_g(lo)} underflows int64")
        if hi >= _MAX_INT64:
            raise EvalError(f"Scalar value {go_g(hi)} overflows int64")
    if not len(vec):
        return Vector.empty(steps)
    keys = grouping_keys(vec.labels, node.grouping, node.without)
    ids, distinct = group_ids(keys)
    groups = _Groups(ids, len(distinct))
    selected = np.zeros(vec.values.shape, dtype=bool)
    rank = np.zeros(vec.values.shape, dtype=np.int64)
    if op == "limit_ratio":
        ratio = np.clip(p, -1.0, 1.0)
        offsets = np.array([float(labels_hash(lab)) / _MAX_UINT64 for lab in vec.labels])
        take = np.where(ratio[None, :] >= 0, offsets[:, None] < ratio[None, :],
                        offsets[:, None] >= 1.0 + ratio[None, :])
        selected = vec.present & take & (ratio[None, :] != 0)
    else:
        k = np.trunc(p)
        for g in range(groups.count):
            rows = groups.members(g)
            order_rank = _rank_rows(op, vec.values[rows], vec.present[rows])
            rank[rows] = order_rank
            selected[rows] = vec.present[rows] & (order_rank < k[None, :])
        selected &= (k >= 1)[None, :]
    keep = np.flatnonzero(selected.any(axis=1))
    if steps == 1:
        keep = _instant_order(op, keep, ids, rank, vec)
    out = vec.take(keep)
    out.present = selected[keep]
    return out


def _rank_rows(op: str, values: FloatMatrix, present: BoolArray) -> IndexArray:
    """Per column, each row's position in Prometheus's order (absent rows last).

    topk orders by value descending, bottomk ascending, NaN after every number;
    limitk keeps input order. Ties keep input order.
    """
    n, steps = values.shape
    if op == "limitk":
        order = np.argsort(~present, axis=0, kind="stable")
    else:
        cls = np.where(~present, 2, np.where(np.isnan(values), 1, 0))
        key = np.where(cls == 0, -values if op == "topk" else values, 0.0)
        order = np.lexsort((key, cls), axis=0)
    rank = np.empty((n, steps), dtype=np.int64)
    np.put_along_axis(rank, order, np.arange(n)[:, None].repeat(steps, axis=1), axis=0)
    return rank


def _instant_order(op: str, keep: IndexArray, ids: IndexArray, rank: IndexArray,
                   vec: Vector) -> IndexArray:
    """Rows of a single-step result in Prometheus's order.

    Groups come by first appearance; within a group topk/bottomk rows are sorted
    by value, limitk/limit_ratio rows are in heap order.
    """
    if op in ("topk", "bottomk"):
        pairs = sorted(keep.tolist(), key=lambda r: (int(ids[r]), int(rank[r, 0])))
        return np.asarray(pairs, dtype=np.int64)
    by_group: dict[int, list[int]] = {}
    for r in keep.tolist():
        by_group.setdefault(int(ids[r]), []).append(r)
    out: list[int] = []
    for g in sorted(by_group):
        out.extend(_heap_layout(by_group[g], vec.values[:, 0], op == "limitk"))
    return np.asarray(out, dtype=np.int64)


def _heap_layout(rows: list[int], values: ValueArray, first_direct: bool) -> list[int]:
    """The slice order after Go's ``heap.Push`` of each row (``vectorByValueHeap``)."""

    def less(a: int, b: int) -> bool:
        va, vb = float(values[a]), float(values[b])
        return math.isnan(va) or va < vb

    heap: list[int] = []
    for i, r in enumerate(rows):
        heap.append(r)
        if first_direct and i == 0:
            continue
        j = len(heap) - 1
        while j > 0:
            parent = (j - 1) // 2
            if not less(heap[j], heap[parent]):
                break
            heap[parent], heap[j] = heap[j], heap[parent]
            j = parent
    return heap


# ---------------------------------------------------------------- count_values


def _count_values(node: ir.Aggregate, vec: Vector, param: Value | None) -> Vector:
    if not isinstance(param, String):
        raise EvalError("expected a string parameter for count_values")
    label = param.value
    if not valid_label_name(label):
        raise EvalError(f"invalid label name {quote(label)}")
    steps = vec.steps
    rows, cols = np.nonzero(vec.present)
    if not len(rows):
        return Vector.empty(steps)
    vals = vec.values[rows, cols]
    bits = vals.view(np.uint64).copy()
    bits[np.isnan(vals)] = np.uint64(0x7FF8000000000001)
    uniq, value_ids = np.unique(bits, return_inverse=True)
    texts = [format_go_float(float(x)) for x in uniq.view(np.float64).tolist()]
    grouping = node.grouping if node.without else tuple(sorted({*node.grouping, label}))
    pair = rows.astype(np.int64) * len(uniq) + value_ids.reshape(-1)
    pairs, pair_ids = np.unique(pair, return_inverse=True)
    out_keys: list[Labels] = []
    for code in pairs.tolist():
        row, vid = divmod(int(code), len(uniq))
        metric = set_label(vec.labels[row], label, texts[vid])
        out_keys.append(grouping_key(metric, grouping, node.without))
    out_ids, distinct = group_ids(out_keys)
    target = out_ids[pair_ids.reshape(-1)]
    counts = np.zeros((len(distinct), steps))
    np.add.at(counts, (target, cols), 1.0)
    return Vector(distinct, counts, counts > 0, np.zeros(len(distinct), dtype=bool))
