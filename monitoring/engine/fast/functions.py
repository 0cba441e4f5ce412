"""Instant-vector and scalar functions over whole-query values, with Prometheus's semantics.

Each function receives its already-evaluated arguments (every step at once)
and returns a value for every step: element-wise math is one NumPy call over
the ``[rows × steps]`` matrix, label functions work once per row, classic
histograms (``histogram_quantile``/``histogram_fraction``) loop over their
buckets with every step at once, and only the sorting functions look at a
single step (they only matter for instant queries).

Delayed name removal follows ``promql/functions.go``: functions that change a
sample's meaning flag their output rows (``drop_name``) instead of removing the
metric name; the evaluator removes flagged names when the query ends.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.dsl import ir
from monitoring.dsl.lexical import quote
from monitoring.dsl.regex import compile_anchored
from monitoring.engine.fast.aggregate import go_g
from monitoring.engine.fast.args import scalar_arg as _scalar
from monitoring.engine.fast.args import string_arg as _string
from monitoring.engine.fast.args import vector_arg as _vector
from monitoring.engine.fast.conditions import CONDITION_FUNCTIONS
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.labels import (
    get_label,
    natural_less,
    set_label,
    valid_label_name,
)
from monitoring.engine.fast.values import (
    BoolArray,
    FloatMatrix,
    Scalar,
    Value,
    Vector,
    merge_same_labels,
)
from monitoring.engine.model import METRIC_NAME, EvalError, Labels, ValueArray

__all__ = ["INSTANT_FUNCTIONS", "absent_labels", "bucket_fraction", "bucket_quantile",
           "expand_template"]

Function = Callable[[ir.Call, list[Value], Context], Value]
IntArray = npt.NDArray[np.int64]

FORCED_MONOTONICITY = (
    "input to histogram_quantile needed to be fixed for monotonicity "
    "(see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
)


# ---------------------------------------------------------------- argument helpers


def _flagged(vec: Vector, values: FloatMatrix, present: BoolArray | None = None) -> Vector:
    """The same rows with new values, every row flagged to lose its metric name."""
    return Vector(vec.labels, values, vec.present if present is None else present,
                  np.ones(len(vec.labels), dtype=bool))


# ---------------------------------------------------------------- element-wise math


def _sgn(v: FloatMatrix) -> FloatMatrix:
    out: FloatMatrix = np.where(v < 0, -1.0, np.where(v > 0, 1.0, v))
    return out


def _rad(v: FloatMatrix) -> FloatMatrix:
    out: FloatMatrix = v * math.pi / 180
    return out


def _deg(v: FloatMatrix) -> FloatMatrix:
    out: FloatMatrix = v * 180 / math.pi
    return out


_ELEMENTWISE: dict[str, Callable[[FloatMatrix], FloatMatrix]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": _sgn,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "asinh": np.arcsinh,
    "acosh": np.arccosh,
    "atanh": np.arctanh,
    "rad": _rad,
    "deg": _deg,
}


def _elementwise(fn: Callable[[FloatMatrix], FloatMatrix]) -> Function:
    def run(node: ir.Call, args: list[Value], ctx: Context) -> Value:
        vec = _vector(args, 0, node.func)
        with np.errstate(all="ignore"):
            return _flagged(vec, fn(vec.values))
    return run


def _round(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    """``floor(v / to_nearest + 0.5) * to_nearest``, through the inverse as Go does."""
    vec = _vector(args, 0, "round")
    nearest = _scalar(args, 1, "round", vec.steps) if len(args) > 1 else np.ones(vec.steps)
    with np.errstate(all="ignore"):
        inverse = 1.0 / nearest
        values = np.floor(vec.values * inverse[None, :] + 0.5) / inverse[None, :]
    return _flagged(vec, values)


def go_min(a: FloatMatrix, b: FloatMatrix) -> FloatMatrix:
    """Go's ``math.Min``: -Inf beats NaN, NaN beats numbers, and -0 is below +0."""
    with np.errstate(all="ignore"):
        zeros = (a == 0) & (b == 0)
        out: FloatMatrix = np.where(
            np.isneginf(a) | np.isneginf(b), -math.inf,
            np.where(np.isnan(a) | np.isnan(b), math.nan,
                     np.where(zeros, np.where(np.signbit(a) | np.signbit(b), -0.0, 0.0),
                              np.minimum(a, b))))
    return out


def go_max(a: FloatMatrix, b: FloatMatrix) -> FloatMatrix:
    """Go's ``math.Max``: +Inf beats NaN, NaN beats numbers, and +0 is above -0."""
    with np.errstate(all="ignore"):
        zeros = (a == 0) & (b == 0)
        out: FloatMatrix = np.where(
            np.isposinf(a) | np.isposinf(b), math.inf,
            np.where(np.isnan(a) | np.isnan(b), math.nan,
                     np.where(zeros, np.where(np.signbit(a) & np.signbit(b), -0.0, 0.0),
                              np.maximum(a, b))))
    return out


def _clamp_between(vec: Vector, lo: ValueArray, hi: ValueArray) -> Vector:
    """``math.Max(lo, math.Min(hi, v))``; no output at steps where ``hi < lo``."""
    values = go_max(np.broadcast_to(lo[None, :], vec.values.shape),
                    go_min(np.broadcast_to(hi[None, :], vec.values.shape), vec.values))
    present = vec.present & ~(hi < lo)[None, :]
    return _flagged(vec, values, present).compact()


def _clamp(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "clamp")
    return _clamp_between(vec, _scalar(args, 1, "clamp", vec.steps),
                          _scalar(args, 2, "clamp", vec.steps))


def _clamp_min(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "clamp_min")
    return _clamp_between(vec, _scalar(args, 1, "clamp_min", vec.steps),
                          np.full(vec.steps, math.inf))


def _clamp_max(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "clamp_max")
    return _clamp_between(vec, np.full(vec.steps, -math.inf),
                          _scalar(args, 1, "clamp_max", vec.steps))


def _min_of(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    steps = ctx.grid.count
    return Scalar(go_min(_scalar(args, 0, "min_of", steps), _scalar(args, 1, "min_of", steps)))


def _max_of(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    steps = ctx.grid.count
    return Scalar(go_max(_scalar(args, 0, "max_of", steps), _scalar(args, 1, "max_of", steps)))


# ---------------------------------------------------------------- scalars and vectors


def _pi(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    return Scalar(np.full(ctx.grid.count, math.pi))


def _time(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    return Scalar(ctx.grid.times() / 1000.0)


def _query_bounds(ctx: Context) -> tuple[float, float, float]:
    """The query's start, end and step in seconds (step 0 for an instant query).

    Prometheus fixes these for the whole query, subqueries included. A context
    that carries them (``query_start_ms``/``query_end_ms``/``query_step_ms``) is
    used; otherwise they come from the grid being evaluated, where an instant
    query is the one-point grid with a 1 ms step that the evaluator builds.
    """
    grid = ctx.grid
    start = getattr(ctx, "query_start_ms", None)
    end = getattr(ctx, "query_end_ms", None)
    step = getattr(ctx, "query_step_ms", None)
    if start is None or end is None or step is None:
        start, end = grid.start, grid.end
        step = 0 if grid.count == 1 and grid.step == 1 else grid.step
    return start / 1000.0, end / 1000.0, step / 1000.0


def _query_start(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    return Scalar(np.full(ctx.grid.count, _query_bounds(ctx)[0]))


def _query_end(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    return Scalar(np.full(ctx.grid.count, _query_bounds(ctx)[1]))


def _query_range(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    start, end, _ = _query_bounds(ctx)
    return Scalar(np.full(ctx.grid.count, end - start))


def _query_step(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    return Scalar(np.full(ctx.grid.count, _query_bounds(ctx)[2]))


def _vector_fn(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    values = _scalar(args, 0, "vector", ctx.grid.count)
    return Vector([()], values[None, :].copy(), np.ones((1, ctx.grid.count), dtype=bool),
                  np.zeros(1, dtype=bool))


def _scalar_fn(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    """The only sample's value at each step; NaN when there are none or several."""
    vec = _vector(args, 0, "scalar")
    if not len(vec):
        return Scalar(np.full(vec.steps, math.nan))
    count = vec.present.sum(axis=0)
    only = vec.values[np.argmax(vec.present, axis=0), np.arange(vec.steps)]
    return Scalar(np.where(count == 1, only, math.nan))


def absent_labels(node: ir.Node) -> Labels:
    """The labels ``absent()`` gives: the argument's equality matchers (not ``__name__``).

    As ``createLabelsForAbsentFunction``: the first ``=`` matcher of a name sets it;
    any other matcher of that name afterwards removes it again.
    """
    if isinstance(node, ir.RangeSelector):
        node = node.selector
    if not isinstance(node, ir.Selector):
        return ()
    out: dict[str, str] = {}
    has: set[str] = set()
    for name, op, value in node.matchers:
        if name == METRIC_NAME:
            continue
        if op == "=" and name not in has:
            if value == "":
                out.pop(name, None)
            else:
                out[name] = value
            has.add(name)
        else:
            out.pop(name, None)
    return tuple(sorted(out.items()))


def _absent(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "absent")
    missing = np.ones(vec.steps, dtype=bool)
    if len(vec):
        missing &= ~vec.present.any(axis=0)
    out = Vector([absent_labels(node.args[0])], np.ones((1, vec.steps)), missing[None, :],
                 np.zeros(1, dtype=bool))
    return out.compact()


def _timestamp(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    """The evaluator hands over the sample times (in seconds) as values: flag the rows."""
    vec = _vector(args, 0, "timestamp")
    return _flagged(vec, vec.values)


def _ignores_floats(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    """Native-histogram functions: float samples are skipped, so nothing comes out."""
    steps = ctx.grid.count
    for value in args:
        if isinstance(value, Vector):
            steps = value.steps
    return Vector.empty(steps)


# ---------------------------------------------------------------- dates


def _civil(seconds: IntArray) -> tuple[IntArray, IntArray, IntArray, IntArray]:
    """(year, month, day, days since the epoch) of UTC times (proleptic Gregorian)."""
    days = np.floor_divide(seconds, 86400)
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = np.where(month <= 2, year + 1, year)
    return year, month, day, days


def _days_before_year(year: IntArray) -> IntArray:
    """Days from 1970-01-01 to January 1st of ``year``."""
    y = year - 1
    out: IntArray = (365 * y + np.floor_divide(y, 4) - np.floor_divide(y, 100)
                    + np.floor_divide(y, 400)) - 719162
    return out


def _leap(year: IntArray) -> IntArray:
    out: IntArray = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    return out


_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


def _date_field(name: str, seconds: IntArray) -> FloatMatrix:
    if name == "minute":
        return (np.mod(seconds, 3600) // 60).astype(np.float64)
    if name == "hour":
        return (np.mod(seconds, 86400) // 3600).astype(np.float64)
    year, month, day, days = _civil(seconds)
    if name == "day_of_week":
        return np.mod(days + 4, 7).astype(np.float64)
    if name == "day_of_month":
        return day.astype(np.float64)
    if name == "month":
        return month.astype(np.float64)
    if name == "year":
        return year.astype(np.float64)
    if name == "day_of_year":
        return (days - _days_before_year(year) + 1).astype(np.float64)
    # days_in_month
    out: FloatMatrix = (_MONTH_DAYS[month] + ((month == 2) & _leap(year))).astype(np.float64)
    return out


_DATE_FUNCTIONS = ("minute", "hour", "day_of_week", "day_of_month", "day_of_year",
                   "days_in_month", "month", "year")


def _date(name: str) -> Function:
    """A date function: of the evaluation time without argument, else of each sample.

    Samples are truncated to whole seconds as Go's ``int64(v)`` does; a NaN or
    infinite sample (where Go's conversion is undefined) gives NaN.
    """

    def run(node: ir.Call, args: list[Value], ctx: Context) -> Value:
        if not args:
            seconds = ctx.grid.times() // 1000
            values = _date_field(name, seconds)[None, :]
            return Vector([()], values, np.ones((1, ctx.grid.count), dtype=bool),
                          np.zeros(1, dtype=bool))
        vec = _vector(args, 0, name)
        raw = vec.values
        ok = np.isfinite(raw) & (np.abs(raw) < 9.2e18)
        seconds = np.trunc(np.where(ok, raw, 0.0)).astype(np.int64)
        values = np.where(ok, _date_field(name, seconds), math.nan)
        return _flagged(vec, values)
    return run


# ---------------------------------------------------------------- labels


def expand_template(template: str, value: str, spans: list[tuple[int, int]],
                    names: dict[str, int]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    out: list[str] = []
    rest = template
    while rest:
        before, dollar, after = rest.partition("$")
        if not dollar:
            break
        out.append(before)
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        parsed = _extract(rest)
        if parsed is None:
            out.append("$")
            continue
        name, num, rest = parsed
        index = num if num >= 0 else names.get(name, -1)
        if 0 <= index < len(spans) and spans[index][0] >= 0:
            start, end = spans[index]
            out.append(value[start:end])
    out.append(rest)
    return "".join(out)


def _extract(text: str) -> tuple[str, int, str] | None:
    """The group reference after a ``$``: (name, number or -1, rest), as Go's ``extract``."""
    brace = text.startswith("{")
    if brace:
        text = text[1:]
    i = 0
    while i < len(text) and (text[i].isalpha() or text[i].isdecimal() or text[i] == "_"):
        i += 1
    if i == 0:
        return None
    name = text[:i]
    if brace:
        if i >= len(text) or text[i] != "}":
            return None
        i += 1
    num = 0
    for ch in name:
        if not "0" <= ch <= "9" or num >= 100_000_000:
            num = -1
            break
        num = num * 10 + int(ch)
    if name[0] == "0" and len(name) > 1:
        num = -1
    return name, num, text[i:]


def _with_labels(vec: Vector, labels: list[Labels], flags: list[bool]) -> Vector:
    out = Vector(labels, vec.values, vec.present, np.asarray(flags, dtype=bool))
    return merge_same_labels(out)


def _label_replace(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "label_replace")
    dst, repl, src, pattern = (_string(args, i, "label_replace") for i in range(1, 5))
    try:
        rx = compile_anchored(pattern)
    except ValueError:
        raise EvalError(f"invalid regular expression in label_replace(): {pattern}") from None
    if not valid_label_name(dst):
        raise EvalError(f"invalid destination label name in label_replace(): {dst}")
    names = dict(rx.groupindex)
    labels: list[Labels] = []
    flags: list[bool] = []
    for lab, flag in zip(vec.labels, vec.drop_name.tolist(), strict=True):
        value = get_label(lab, src)
        match = rx.search(value)
        if match is None:
            labels.append(lab)
            flags.append(bool(flag))
            continue
        spans = [match.span(i) for i in range(rx.groups + 1)]
        labels.append(set_label(lab, dst, expand_template(repl, value, spans, names)))
        flags.append(False if dst == METRIC_NAME else bool(flag))
    return _with_labels(vec, labels, flags)


def _label_join(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 0, "label_join")
    dst = _string(args, 1, "label_join")
    sep = _string(args, 2, "label_join")
    sources = [_string(args, i, "label_join") for i in range(3, len(args))]
    for src in sources:
        if not valid_label_name(src):
            raise EvalError(f"invalid source label name in label_join(): {src}")
    if not valid_label_name(dst):
        raise EvalError(f"invalid destination label name in label_join(): {dst}")
    labels: list[Labels] = []
    flags: list[bool] = []
    for lab, flag in zip(vec.labels, vec.drop_name.tolist(), strict=True):
        joined = sep.join(get_label(lab, s) for s in sources)
        labels.append(set_label(lab, dst, joined))
        flags.append(False if dst == METRIC_NAME else bool(flag))
    return _with_labels(vec, labels, flags)


# ---------------------------------------------------------------- sorting


def _go_sort(items: list[int], less: Callable[[int, int], bool]) -> list[int]:
    """Go's ``sort.Sort``: insertion sort up to 12 elements (what pdqsort does there)."""
    out = list(items)
    if len(out) > 12:
        def compare(a: int, b: int) -> int:
            return -1 if less(a, b) else 1 if less(b, a) else 0

        return sorted(out, key=functools.cmp_to_key(compare))
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out


def _single_step_rows(vec: Vector) -> list[int]:
    return [i for i in range(len(vec)) if vec.present[i, 0]]


def _sort(descending: bool) -> Function:
    def run(node: ir.Call, args: list[Value], ctx: Context) -> Value:
        vec = _vector(args, 0, node.func)
        if vec.steps != 1:
            return vec  # a range query's result is ordered by labels anyway
        values = vec.values[:, 0].tolist()

        def less(i: int, j: int) -> bool:
            # sort.Reverse over a heap order that puts NaN first: NaN ends up last.
            vi, vj = float(values[i]), float(values[j])
            if math.isnan(vi):
                return True
            return vi < vj if descending else vi > vj

        order = _go_sort(_single_step_rows(vec), lambda i, j: less(j, i))
        return vec.take(order)
    return run


def _sort_by_label(descending: bool) -> Function:
    def run(node: ir.Call, args: list[Value], ctx: Context) -> Value:
        vec = _vector(args, 0, node.func)
        if vec.steps != 1:
            return vec
        names = [_string(args, i, node.func) for i in range(1, len(args))]

        def compare(i: int, j: int) -> int:
            a, b = vec.labels[i], vec.labels[j]
            for name in names:
                va, vb = get_label(a, name), get_label(b, name)
                if va == vb:
                    continue
                first = natural_less(va, vb)
                return (1 if first else -1) if descending else (-1 if first else 1)
            base = (a > b) - (a < b)
            return -base if descending else base

        order = _go_sort(_single_step_rows(vec), lambda i, j: compare(i, j) < 0)
        return vec.take(order)
    return run


# ---------------------------------------------------------------- histogram_quantile


def _parse_bound(text: str) -> float | None:
    """``strconv.ParseFloat(le, 64)``: Go's float syntax, nothing else."""
    if not text or not text.isascii() or text != text.strip() or "_" in text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return float.fromhex(text) if "0x" in text.lower() else None
    except ValueError:
        return None


_MIN_NORMAL = 2.2250738585072014e-308
_MAX_FLOAT = 1.7976931348623157e308
SMALL_DELTA_TOLERANCE = 1e-12
"""Relative difference between neighbouring buckets that counts as float noise."""


def _almost_equal(a: ValueArray, b: ValueArray, epsilon: float) -> BoolArray:
    """``almost.Equal`` of Prometheus, element by element (NaN equals NaN)."""
    abs_sum = np.abs(a) + np.abs(b)
    diff = np.abs(a - b)
    small = (a == 0) | (b == 0) | (abs_sum < _MIN_NORMAL)
    close = np.where(small, diff < epsilon * _MIN_NORMAL,
                     diff / np.minimum(abs_sum, _MAX_FLOAT) < epsilon)
    out: BoolArray = (np.isnan(a) & np.isnan(b)) | (a == b) | close
    return out


@dataclass(slots=True)
class Monotonicity:
    """Where ``ensureMonotonicAndIgnoreSmallDeltas`` had to remove a decrease, per step."""

    forced: BoolArray
    min_bucket: ValueArray
    max_bucket: ValueArray
    max_diff: ValueArray


def bucket_quantile(q: ValueArray, bounds: ValueArray, counts: FloatMatrix,
                    present: BoolArray) -> tuple[ValueArray, Monotonicity]:
    """``BucketQuantile`` of quantile.go for one classic histogram at every step.

    ``bounds`` are the distinct upper bounds in ascending order (buckets with the
    same bound already added up); ``counts``/``present`` are ``[buckets × steps]``.
    The loops run over buckets, each one a NumPy operation over all steps, in the
    order Go walks a single step's buckets.
    """
    nb, steps = counts.shape
    cols = np.arange(steps)
    any_present = present.any(axis=0)
    top = np.where(any_present, nb - 1 - np.argmax(present[::-1], axis=0), 0)
    has_inf = any_present & np.isposinf(bounds[top])
    valid_q = (q >= 0) & (q <= 1)
    n_present = present.sum(axis=0)
    fixed = counts.copy()
    mono = Monotonicity(np.zeros(steps, dtype=bool), np.full(steps, math.inf),
                        np.full(steps, -math.inf), np.zeros(steps))
    with np.errstate(all="ignore"):
        # ensureMonotonicAndIgnoreSmallDeltas: ``prev`` is the last accepted count.
        prev = np.full(steps, math.nan)
        started = np.zeros(steps, dtype=bool)
        for b in range(nb):
            m = present[b]
            curr = counts[b]
            rest = m & started
            equal = rest & (curr == prev)
            noise = rest & ~equal & _almost_equal(prev, curr, SMALL_DELTA_TOLERANCE)
            drop = rest & ~equal & ~noise & (curr < prev)
            fixed[b] = np.where(noise | drop, prev, curr)
            mono.forced |= drop
            mono.min_bucket = np.where(drop, np.minimum(mono.min_bucket, bounds[b]),
                                       mono.min_bucket)
            mono.max_bucket = np.where(drop, np.maximum(mono.max_bucket, bounds[b]),
                                       mono.max_bucket)
            mono.max_diff = np.where(drop & (prev - curr > mono.max_diff), prev - curr,
                                     mono.max_diff)
            prev = np.where((m & ~started) | (rest & ~equal & ~noise & ~drop), curr, prev)
            started |= m
        observations = np.where(any_present, fixed[top, cols], 0.0)
        rank = q * observations
        result = np.full(steps, math.nan)
        found = np.zeros(steps, dtype=bool)
        prev_bound = np.zeros(steps)
        prev_count = np.zeros(steps)
        second_highest = np.full(steps, math.nan)
        seen = np.zeros(steps, dtype=np.int64)
        for b in range(nb):
            m = present[b]
            is_top = m & (seen == n_present - 1)
            candidate = m & ~is_top & ~found & (fixed[b] >= rank)
            first = seen == 0
            at_start = candidate & first & (bounds[b] <= 0)
            start = np.where(first, 0.0, prev_bound)
            base = np.where(first, 0.0, prev_count)
            value = start + (bounds[b] - start) * ((rank - base) / (fixed[b] - base))
            result = np.where(candidate, np.where(at_start, bounds[b], value), result)
            found |= candidate
            second_highest = np.where(m & ~is_top, bounds[b], second_highest)
            prev_bound = np.where(m, bounds[b], prev_bound)
            prev_count = np.where(m, fixed[b], prev_count)
            seen = seen + m
        result = np.where(found, result, second_highest)
    valid = has_inf & (n_present >= 2) & (observations != 0)
    result = np.where(valid, result, math.nan)
    result = np.where(np.isnan(q), math.nan,
                      np.where(q < 0, -math.inf, np.where(q > 1, math.inf, result)))
    # Go returns before the monotonicity pass for a bad q or a missing +Inf bucket.
    mono.forced &= has_inf & valid_q
    return result, mono


def _go_short_g(value: float) -> str:
    """Go's ``%.2g``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.2g}"


def _rfc3339(ms: int) -> str:
    seconds = int(ms / 1000)  # Go's integer division truncates towards zero
    moment = _EPOCH + dt.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(slots=True)
class _Forced:
    """The merged forced-monotonicity annotation of one metric name."""

    min_ts: int
    max_ts: int
    min_bucket: float
    max_bucket: float
    max_diff: float
    count: int

    def text(self, name: str) -> str:
        out = FORCED_MONOTONICITY
        if name:
            out += f" for metric name {quote(name)}"
        return (f"{out}, from buckets {go_g(self.min_bucket)} to {go_g(self.max_bucket)}, "
                f"with a max diff of {_go_short_g(self.max_diff)}, over {self.count} samples "
                f"from {_rfc3339(self.min_ts)} to {_rfc3339(self.max_ts)}")


def _classic_histograms(vec: Vector, node: ir.Call, arg: int,
                        ctx: Context) -> dict[Labels, tuple[ValueArray, FloatMatrix, BoolArray]]:
    """Bucket series grouped into histograms: labels without ``le`` (the name stays).

    Per histogram: the distinct upper bounds in ascending order and the summed
    counts and presence of the buckets with each bound (``coalesceBuckets``).
    A series whose ``le`` is not a number is skipped with Prometheus's warning.
    """
    steps = vec.steps
    groups: dict[Labels, list[tuple[float, int]]] = {}
    for i, lab in enumerate(vec.labels):
        le = get_label(lab, "le")
        bound = _parse_bound(le)
        if bound is None:
            if vec.present[i].any():
                name = get_label(lab, METRIC_NAME)
                text = f'bucket label "le" is missing or has a malformed value of {quote(le)}'
                if name:
                    text += f" for metric name {quote(name)}"
                ctx.warn(text, node.args[arg])
            continue
        key = tuple(p for p in lab if p[0] != "le")
        groups.setdefault(key, []).append((bound, i))
    out: dict[Labels, tuple[ValueArray, FloatMatrix, BoolArray]] = {}
    for key, members in groups.items():
        bounds = np.array(sorted({b for b, _ in members}))
        index = {b: k for k, b in enumerate(bounds.tolist())}
        counts = np.zeros((len(bounds), steps))
        present = np.zeros((len(bounds), steps), dtype=bool)
        for bound, row in members:
            k = index[bound]
            mask = vec.present[row]
            counts[k] = np.where(mask, counts[k] + vec.values[row], counts[k])
            present[k] |= mask
        out[key] = (bounds, counts, present)
    return out


def _histogram_result(labels: list[Labels], values: list[ValueArray],
                      present: list[BoolArray], steps: int) -> Vector:
    if not labels:
        return Vector.empty(steps)
    out = Vector(labels, np.vstack(values), np.vstack(present),
                 np.ones(len(labels), dtype=bool))
    return out.compact()


def _histogram_quantile(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 1, "histogram_quantile")
    steps = vec.steps
    q = _scalar(args, 0, "histogram_quantile", steps)
    bad_q = q[np.isnan(q) | (q < 0) | (q > 1)]
    for value in dict.fromkeys(bad_q.tolist()):
        ctx.warn(f"quantile value should be between 0 and 1, got {go_g(value)}", node.args[0])
    times = ctx.grid.times() if ctx.grid.count == steps else np.zeros(steps, dtype=np.int64)
    forced: dict[str, _Forced] = {}
    labels: list[Labels] = []
    out_values: list[ValueArray] = []
    out_present: list[BoolArray] = []
    for key, (bounds, counts, present) in _classic_histograms(vec, node, 1, ctx).items():
        result, mono = bucket_quantile(q, bounds, counts, present)
        if mono.forced.any():
            _merge_forced(forced, get_label(key, METRIC_NAME), mono, times)
        labels.append(key)
        out_values.append(result)
        out_present.append(np.asarray(present.any(axis=0), dtype=bool))
    for name, info in forced.items():
        ctx.info(info.text(name), node.args[1])
    return _histogram_result(labels, out_values, out_present, steps)


def _interpolate(v: ValueArray, lower_bound: ValueArray, upper_bound: float, rank: ValueArray,
                 count: ValueArray) -> ValueArray:
    """The cumulative count at ``v`` inside a bucket (its whole count below -Inf)."""
    out: ValueArray = np.where(
        np.isneginf(lower_bound), count,
        rank + (count - rank) * (v - lower_bound) / (upper_bound - lower_bound))
    return out


def bucket_fraction(lower: ValueArray, upper: ValueArray, bounds: ValueArray,
                    counts: FloatMatrix, present: BoolArray) -> ValueArray:
    """``BucketFraction`` of quantile.go: the share of observations in ``(lower, upper]``.

    Linear interpolation inside the bucket holding a bound; the first bucket
    starts at 0 when its upper bound is positive, else at -Inf (no interpolation).
    """
    nb, steps = counts.shape
    cols = np.arange(steps)
    any_present = present.any(axis=0)
    top = np.where(any_present, nb - 1 - np.argmax(present[::-1], axis=0), 0)
    has_inf = any_present & np.isposinf(bounds[top])
    total = np.where(any_present, counts[top, cols], 0.0)
    rank = np.zeros(steps)
    lower_rank = np.zeros(steps)
    upper_rank = np.zeros(steps)
    lower_set = np.zeros(steps, dtype=bool)
    upper_set = np.zeros(steps, dtype=bool)
    done = np.zeros(steps, dtype=bool)
    started = np.zeros(steps, dtype=bool)
    lower_bound = np.zeros(steps)
    with np.errstate(all="ignore"):
        for b in range(nb):
            m = present[b] & ~done
            ub = bounds[b]
            lower_bound = np.where(m & ~started, 0.0 if ub > 0 else -math.inf, lower_bound)
            count = counts[b]

            hit = m & ~lower_set & (lower_bound >= lower)
            lower_rank = np.where(hit, rank, lower_rank)
            lower_set |= hit
            hit = m & ~upper_set & (lower_bound >= upper)
            upper_rank = np.where(hit, rank, upper_rank)
            upper_set |= hit
            done |= m & lower_set & upper_set
            m &= ~done
            hit = m & ~lower_set & (lower_bound < lower) & (ub > lower)
            lower_rank = np.where(hit, _interpolate(lower, lower_bound, ub, rank, count),
                                  lower_rank)
            lower_set |= hit
            hit = m & ~upper_set & (lower_bound < upper) & (ub > upper)
            upper_rank = np.where(hit, _interpolate(upper, lower_bound, ub, rank, count),
                                  upper_rank)
            upper_set |= hit
            done |= m & lower_set & upper_set
            m &= ~done
            rank = np.where(m, count, rank)
            lower_bound = np.where(present[b], ub, lower_bound)
            started |= present[b]
        lower_rank = np.where(~lower_set | (lower_rank > total), total, lower_rank)
        upper_rank = np.where(~upper_set | (upper_rank > total), total, upper_rank)
        result = (upper_rank - lower_rank) / total
    result = np.where(lower >= upper, 0.0, result)
    bad = ~has_inf | (total == 0) | np.isnan(lower) | np.isnan(upper)
    out: ValueArray = np.where(bad, math.nan, result)
    return out


def _histogram_fraction(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = _vector(args, 2, "histogram_fraction")
    steps = vec.steps
    lower = _scalar(args, 0, "histogram_fraction", steps)
    upper = _scalar(args, 1, "histogram_fraction", steps)
    labels: list[Labels] = []
    out_values: list[ValueArray] = []
    out_present: list[BoolArray] = []
    for key, (bounds, counts, present) in _classic_histograms(vec, node, 2, ctx).items():
        labels.append(key)
        out_values.append(bucket_fraction(lower, upper, bounds, counts, present))
        out_present.append(np.asarray(present.any(axis=0), dtype=bool))
    return _histogram_result(labels, out_values, out_present, steps)


def _merge_forced(forced: dict[str, _Forced], name: str, mono: Monotonicity,
                  times: IntArray) -> None:
    """Prometheus merges these annotations per metric name, widening the ranges."""
    at = mono.forced
    ts = times[at]
    new = _Forced(int(ts.min()), int(ts.max()), float(mono.min_bucket[at].min()),
                  float(mono.max_bucket[at].max()), float(np.max(mono.max_diff[at])),
                  int(at.sum()))
    old = forced.get(name)
    if old is None:
        forced[name] = new
        return
    old.min_ts = min(old.min_ts, new.min_ts)
    old.max_ts = max(old.max_ts, new.max_ts)
    old.min_bucket = min(old.min_bucket, new.min_bucket)
    old.max_bucket = max(old.max_bucket, new.max_bucket)
    old.max_diff = max(old.max_diff, new.max_diff)
    old.count += new.count


# ---------------------------------------------------------------- the table


INSTANT_FUNCTIONS: dict[str, Function] = {
    **{name: _elementwise(fn) for name, fn in _ELEMENTWISE.items()},
    **{name: _date(name) for name in _DATE_FUNCTIONS},
    "round": _round,
    "clamp": _clamp,
    "clamp_min": _clamp_min,
    "clamp_max": _clamp_max,
    "min_of": _min_of,
    "max_of": _max_of,
    "pi": _pi,
    "time": _time,
    "start": _query_start,
    "end": _query_end,
    "range": _query_range,
    "step": _query_step,
    "vector": _vector_fn,
    "scalar": _scalar_fn,
    "absent": _absent,
    "timestamp": _timestamp,
    "label_replace": _label_replace,
    "label_join": _label_join,
    "sort": _sort(descending=False),
    "sort_desc": _sort(descending=True),
    "sort_by_label": _sort_by_label(descending=False),
    "sort_by_label_desc": _sort_by_label(descending=True),
    "histogram_quantile": _histogram_quantile,
    "histogram_fraction": _histogram_fraction,
    "histogram_count": _ignores_floats,
    "histogram_sum": _ignores_floats,
    "histogram_avg": _ignores_floats,
    "histogram_stddev": _ignores_floats,
    "histogram_stdvar": _ignores_floats,
    **CONDITION_FUNCTIONS,
}
"""Functions the evaluator calls with evaluated arguments (range functions live elsewhere)."""
