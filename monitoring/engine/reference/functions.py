"""Function calls at one step: functions.go and the ``*parser.Call`` case of engine.go.

Delayed name removal: every function that changes what a value means marks
its output ``drop_name``; ``last_over_time``/``first_over_time`` (which act like
an offset), ``sort*`` and ``label_*`` keep the input's flag or name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from monitoring.dsl.ir import (
    Aggregate,
    Binary,
    Call,
    Const,
    Neg,
    Node,
    RangeSelector,
    Selector,
    StringConst,
    Subquery,
)
from monitoring.dsl.regex import compile_anchored
from monitoring.engine.gocompat import natural_less
from monitoring.engine.model import EvalError, Labels
from monitoring.engine.reference.anomaly import ANOMALY_FUNCTIONS
from monitoring.engine.reference.conditions import CONDITION_FUNCTIONS
from monitoring.engine.reference.gosort import (
    go_sort,
    reverse_value_less,
    reversed_less,
    value_less,
)
from monitoring.engine.reference.histograms import histogram_quantile
from monitoring.engine.reference.rangefuncs import RANGE_FUNCTIONS, Ctx
from monitoring.engine.reference.trend import TREND_FUNCTIONS
from monitoring.engine.reference.util import format_g, go_quote, valid_label_name
from monitoring.engine.reference.values import (
    Sample,
    Value,
    Vector,
    label_get,
    label_set,
)

if TYPE_CHECKING:
    from monitoring.engine.reference.core import Evaluator

UNSUPPORTED = frozenset({"weighted", "info", "histogram_fraction"})
"""Registry functions without a float-sample Prometheus counterpart evaluated here."""

NATIVE_ONLY = frozenset({"histogram_count", "histogram_sum", "histogram_avg",
                         "histogram_stddev", "histogram_stdvar"})
"""Functions that only read native histograms: over float samples they return nothing."""

_COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket")

SORTS = frozenset({"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"})

AT_MODIFIER_UNSAFE = frozenset({"days_in_month", "day_of_month", "day_of_week", "day_of_year",
                                "hour", "minute", "month", "year", "predict_linear", "time",
                                "timestamp"})
"""Functions whose result depends on the evaluation time even with step-invariant arguments."""


def step_invariant(node: Node) -> bool:
    """Whether Prometheus evaluates ``node`` once for all steps (``preprocessExprHelper``).

    Such subtrees run in an evaluator whose start equals its end, which is
    what decides, for instance, whether ``sort`` warns about range queries.
    """
    match node:
        case Selector(at=at) | Subquery(at=at):
            return at is not None
        case RangeSelector(selector=sel):
            return sel.at is not None
        case Const() | StringConst():
            return True
        case Call(func=func, args=args):
            return func not in AT_MODIFIER_UNSAFE and all(step_invariant(a) for a in args)
        case Aggregate(expr=expr):
            return step_invariant(expr)
        case Binary(lhs=lhs, rhs=rhs):
            return step_invariant(lhs) and step_invariant(rhs)
        case Neg(expr=expr):
            return step_invariant(expr)
    return False


def _ieee(fn: Callable[[np.float64], np.float64]) -> Callable[[float], float]:
    """A NumPy ufunc as a float function with IEEE results instead of exceptions."""

    def apply(v: float) -> float:
        with np.errstate(all="ignore"):
            return float(fn(np.float64(v)))

    return apply


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v


_SIMPLE: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _ieee(np.ceil),
    "floor": _ieee(np.floor),
    "exp": _ieee(np.exp),
    "sqrt": _ieee(np.sqrt),
    "ln": _ieee(np.log),
    "log2": _ieee(np.log2),
    "log10": _ieee(np.log10),
    "sgn": _sgn,
    "sin": _ieee(np.sin),
    "cos": _ieee(np.cos),
    "tan": _ieee(np.tan),
    "asin": _ieee(np.arcsin),
    "acos": _ieee(np.arccos),
    "atan": _ieee(np.arctan),
    "sinh": _ieee(np.sinh),
    "cosh": _ieee(np.cosh),
    "tanh": _ieee(np.tanh),
    "asinh": _ieee(np.arcsinh),
    "acosh": _ieee(np.arccosh),
    "atanh": _ieee(np.arctanh),
    "rad": lambda v: v * math.pi / 180,
    "deg": lambda v: v * 180 / math.pi,
}


def go_max(a: float, b: float) -> float:
    """Go's ``math.Max`` (NaN wins, +0 beats -0)."""
    if (math.isinf(a) and a > 0) or (math.isinf(b) and b > 0):
        return math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == 0 and b == 0:
        return a if math.copysign(1, a) > 0 else b
    return a if a > b else b


def go_min(a: float, b: float) -> float:
    """Go's ``math.Min`` (NaN wins, -0 beats +0)."""
    if (math.isinf(a) and a < 0) or (math.isinf(b) and b < 0):
        return -math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    if a == 0 and b == 0:
        return a if math.copysign(1, a) < 0 else b
    return a if a < b else b


def call(ev: Evaluator, node: Call, t: int) -> Value:
    """Evaluate a function call at ``t``."""
    name = node.func
    if name in UNSUPPORTED:
        raise EvalError(f"{name}() is not supported by the reference evaluator")
    if name in SORTS and ev.in_range_context() and not step_invariant(node):
        ev.warn("sort is ineffective for range queries since results are always ordered "
                "by labels", node)
    for i, arg in enumerate(node.args):
        if isinstance(arg, (RangeSelector, Subquery)):
            return _range_call(ev, node, i, t)
    if name in ("label_replace", "label_join"):
        return _label_call(ev, node, t)
    handler = _INSTANT.get(name)
    if handler is None:
        raise EvalError(f"{name}() is not supported by the reference evaluator")
    return handler(ev, node, t)


# ---------------------------------------------------------------- range functions

_RANGE = {**RANGE_FUNCTIONS, **ANOMALY_FUNCTIONS, **TREND_FUNCTIONS}


def _range_call(ev: Evaluator, node: Call, index: int, t: int) -> Vector:
    """A function over a range vector, called once per series of the window."""
    name = node.func
    strings = [a.value for a in node.args if isinstance(a, StringConst)]
    key = f"{name}:{strings[0]}" if strings else name  # anomaly(m[1h], "mad") -> anomaly:mad
    fn = _RANGE.get(key)
    if fn is None:
        raise EvalError(f"{name}() is not supported by the reference evaluator")
    args = tuple(ev.scalar(a, t) for i, a in enumerate(node.args)
                 if i != index and not isinstance(a, StringConst))
    arg_node = node.args[index]
    mat = ev.matrix(arg_node, t)
    ctx = Ctx(t, mat.end_ms - mat.range_ms, mat.end_ms, mat.range_ms, args)
    if name == "absent_over_time":
        if mat.series:
            return []
        return [Sample(_absent_labels(arg_node), 1.0, True)]
    drop = name not in ("last_over_time", "first_over_time")
    out: Vector = []
    for s in mat.series:
        # Argument checks happen inside the Go function, so only when a series exists.
        if name == "quantile_over_time" and not 0 <= args[0] <= 1:
            ev.warn(f"quantile value should be between 0 and 1, got {format_g(args[0])}",
                    node.args[0])
        if name == "double_exponential_smoothing":
            _check_factor("smoothing", args[0])
            _check_factor("trend", args[1])
        value = fn(s.ts, s.values, ctx)
        if value is None:
            continue
        out.append(Sample(s.labels, value, drop))
        if name in ("rate", "increase"):
            metric = label_get(s.labels, "__name__")
            if metric and not metric.endswith(_COUNTER_SUFFIXES):
                ev.note("metric might not be a counter, name does not end in "
                        f"_total/_sum/_count/_bucket: {go_quote(metric)}", arg_node)
    return out


def _check_factor(kind: str, value: float) -> None:
    """The factor checks of ``funcDoubleExponentialSmoothing`` (NaN passes them, as in Go)."""
    if value <= 0 or value >= 1:
        shown = ("+Inf" if value > 0 else "-Inf") if math.isinf(value) else f"{value:f}"
        raise EvalError(f"invalid {kind} factor. Expected: 0 < {kind[0]}f < 1, got: {shown}")


def _absent_labels(arg: Node) -> Labels:
    """``createLabelsForAbsentFunction``: the labels fixed by equality matchers."""
    if isinstance(arg, RangeSelector):
        arg = arg.selector
    if not isinstance(arg, Selector):
        return ()
    out: dict[str, str] = {}
    seen: set[str] = set()
    for name, op, value in arg.matchers:
        if name == "__name__":
            continue
        if op == "=" and name not in seen:
            seen.add(name)
            if value != "":
                out[name] = value
            else:
                out.pop(name, None)
        else:
            out.pop(name, None)
    return tuple(sorted(out.items()))


# ---------------------------------------------------------------- label functions


def _label_call(ev: Evaluator, node: Call, t: int) -> Vector:
    strings = []
    for a in node.args[1:]:
        assert isinstance(a, StringConst)
        strings.append(a.value)
    if node.func == "label_replace":
        dst, repl, src, pattern = strings
        try:
            regex = compile_anchored(pattern)
        except ValueError as e:
            raise EvalError(f"invalid regular expression in label_replace(): {pattern}") from e
        if not valid_label_name(dst):
            raise EvalError(f"invalid destination label name in label_replace(): {dst}")
        vec = ev.vector(node.args[0], t)
        out = []
        for s in vec:
            m = regex.match(label_get(s.labels, src))
            if m is None:
                out.append(s)
                continue
            labels = label_set(s.labels, dst, _expand(repl, m, regex))
            out.append(Sample(labels, s.value, False if dst == "__name__" else s.drop_name))
    else:
        dst, sep, *srcs = strings
        for src in srcs:
            if not valid_label_name(src):
                raise EvalError(f"invalid source label name in label_join(): {src}")
        if not valid_label_name(dst):
            raise EvalError(f"invalid destination label name in label_join(): {dst}")
        vec = ev.vector(node.args[0], t)
        out = []
        for s in vec:
            joined = sep.join(label_get(s.labels, src) for src in srcs)
            out.append(Sample(label_set(s.labels, dst, joined), s.value,
                              False if dst == "__name__" else s.drop_name))
    if len({s.labels for s in out}) != len(out):
        raise EvalError("vector cannot contain metrics with the same labelset")
    return out


_TEMPLATE = re.compile(r"\$(\$|\{([^}]*)\}|([A-Za-z0-9_]+))")


def _expand(template: str, m: object, regex: object) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``."""
    groups = getattr(regex, "groupindex", {})

    def group(ref: str) -> str:
        if ref.isdigit():
            idx = int(ref)
        elif ref in groups:
            idx = groups[ref]
        else:
            return ""
        try:
            value = m.group(idx)  # type: ignore[attr-defined]
        except (IndexError, ValueError):
            return ""
        return value or ""

    def sub(found: re.Match[str]) -> str:
        if found.group(1) == "$":
            return "$"
        braced = found.group(2)
        if braced is not None:
            if not re.fullmatch(r"[A-Za-z0-9_]+", braced):
                return found.group(0)
            return group(braced)
        return group(found.group(3))

    return _TEMPLATE.sub(sub, template)


# ---------------------------------------------------------------- instant functions


def _simple(fn: Callable[[float], float]) -> Callable[[Evaluator, Call, int], Value]:
    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        return [Sample(s.labels, fn(s.value), True) for s in ev.vector(node.args[0], t)]

    return apply


def _round(ev: Evaluator, node: Call, t: int) -> Value:
    to_nearest = ev.scalar(node.args[1], t) if len(node.args) > 1 else 1.0
    inverse = _fdiv(1.0, to_nearest)
    with np.errstate(all="ignore"):
        return [Sample(s.labels, float(np.floor(np.float64(s.value) * inverse + 0.5) / inverse),
                       True) for s in ev.vector(node.args[0], t)]


def _fdiv(a: float, b: float) -> float:
    with np.errstate(all="ignore"):
        return float(np.float64(a) / np.float64(b))


def _clamp(ev: Evaluator, node: Call, t: int) -> Value:
    vec = ev.vector(node.args[0], t)
    lo, hi = -math.inf, math.inf
    if node.func == "clamp":
        lo, hi = ev.scalar(node.args[1], t), ev.scalar(node.args[2], t)
    elif node.func == "clamp_min":
        lo = ev.scalar(node.args[1], t)
    else:
        hi = ev.scalar(node.args[1], t)
    if hi < lo:
        return []
    return [Sample(s.labels, go_max(lo, go_min(hi, s.value)), True) for s in vec]


def _timestamp(ev: Evaluator, node: Call, t: int) -> Value:
    arg = node.args[0]
    if isinstance(arg, Selector):
        return [Sample(labels, ts / 1000, True)
                for labels, ts, _ in ev.instant_samples(arg, t, pinned_timestamp=True)]
    return [Sample(s.labels, t / 1000, True) for s in ev.vector(arg, t)]


@dataclass(frozen=True, slots=True)
class _Civil:
    """A UTC calendar date and time of day, for any int64 count of seconds.

    As Go's ``time.Unix(sec, 0).UTC()``; Python's ``datetime`` stops at year 9999.
    """

    year: int
    month: int
    day: int
    hour: int
    minute: int
    weekday: int  # Sunday = 0
    yday: int


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil(seconds: int) -> _Civil:
    """The UTC calendar fields of a Unix time in seconds."""
    days, rest = divmod(seconds, 86400)
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    year = yoe + era * 400 + (month <= 2)
    yday = days - _days_from_civil(year, 1, 1) + 1
    return _Civil(year, month, day, rest // 3600, rest % 3600 // 60, (days + 4) % 7, yday)


def _days_in_month(c: _Civil) -> float:
    if c.month == 2:
        leap = c.year % 4 == 0 and (c.year % 100 != 0 or c.year % 400 == 0)
        return 29.0 if leap else 28.0
    return 30.0 if c.month in (4, 6, 9, 11) else 31.0


def _date(fn: Callable[[_Civil], float]) -> Callable[[Evaluator, Call, int], Value]:
    """``dateWrapper``: of the evaluation time without an argument, else of each value."""

    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        if not node.args:
            return [Sample((), fn(civil(int(t / 1000))))]  # Go's ms / 1000 truncates
        out = []
        for s in ev.vector(node.args[0], t):
            if math.isnan(s.value) or math.isinf(s.value):
                value = math.nan
            else:
                value = fn(civil(int(s.value)))
            out.append(Sample(s.labels, value, True))
        return out

    return apply


def _scalar(ev: Evaluator, node: Call, t: int) -> Value:
    vec = ev.vector(node.args[0], t)
    return vec[0].value if len(vec) == 1 else math.nan


def _vector(ev: Evaluator, node: Call, t: int) -> Value:
    return [Sample((), ev.scalar(node.args[0], t))]


def _absent(ev: Evaluator, node: Call, t: int) -> Value:
    if ev.vector(node.args[0], t):
        return []
    return [Sample(_absent_labels(node.args[0]), 1.0, True)]


def _sort(descending: bool) -> Callable[[Evaluator, Call, int], Value]:
    # funcSort sorts by the reverse of the "reverse value" order so that NaN ends last;
    # funcSortDesc by the reverse of the value order.
    less = reversed_less(value_less if descending else reverse_value_less)

    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        return go_sort(ev.vector(node.args[0], t), less)

    return apply


def _sort_by_label(descending: bool) -> Callable[[Evaluator, Call, int], Value]:
    import functools

    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        names = []
        for a in node.args[1:]:
            assert isinstance(a, StringConst)
            names.append(a.value)

        def compare(a: Sample, b: Sample) -> int:
            for name in names:
                x, y = label_get(a.labels, name), label_get(b.labels, name)
                if x == y:
                    continue
                less = -1 if natural_less(x, y) else 1
                return -less if descending else less
            full = (a.labels > b.labels) - (a.labels < b.labels)
            return -full if descending else full

        return sorted(ev.vector(node.args[0], t), key=functools.cmp_to_key(compare))

    return apply


def _histogram_quantile(ev: Evaluator, node: Call, t: int) -> Value:
    q = ev.scalar(node.args[0], t)
    vec = ev.vector(node.args[1], t)
    if math.isnan(q) or q < 0 or q > 1:
        ev.warn(f"quantile value should be between 0 and 1, got {format_g(q)}", node.args[0])
    return histogram_quantile(ev, q, vec, node.args[1])


def _constant(fn: Callable[[Evaluator, int], float]) -> Callable[[Evaluator, Call, int], Value]:
    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        return fn(ev, t)

    return apply


def _two_scalars(fn: Callable[[float, float], float]) -> Callable[[Evaluator, Call, int], Value]:
    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        return fn(ev.scalar(node.args[0], t), ev.scalar(node.args[1], t))

    return apply


def _native_only(ev: Evaluator, node: Call, t: int) -> Value:
    ev.vector(node.args[0], t)
    return []


_INSTANT: dict[str, Callable[[Evaluator, Call, int], Value]] = {
    **{name: _simple(fn) for name, fn in _SIMPLE.items()},
    "round": _round,
    "clamp": _clamp,
    "clamp_min": _clamp,
    "clamp_max": _clamp,
    "min_of": _two_scalars(go_min),
    "max_of": _two_scalars(go_max),
    "pi": _constant(lambda ev, t: math.pi),
    "time": _constant(lambda ev, t: t / 1000),
    "start": _constant(lambda ev, t: ev.start_ms / 1000),
    "end": _constant(lambda ev, t: ev.end_ms / 1000),
    "range": _constant(lambda ev, t: (ev.end_ms - ev.start_ms) / 1000),
    "step": _constant(lambda ev, t: ev.step_ms / 1000),
    "timestamp": _timestamp,
    "minute": _date(lambda c: float(c.minute)),
    "hour": _date(lambda c: float(c.hour)),
    "day_of_week": _date(lambda c: float(c.weekday)),
    "day_of_month": _date(lambda c: float(c.day)),
    "day_of_year": _date(lambda c: float(c.yday)),
    "days_in_month": _date(_days_in_month),
    "month": _date(lambda c: float(c.month)),
    "year": _date(lambda c: float(c.year)),
    "vector": _vector,
    "scalar": _scalar,
    "absent": _absent,
    "sort": _sort(False),
    "sort_desc": _sort(True),
    "sort_by_label": _sort_by_label(False),
    "sort_by_label_desc": _sort_by_label(True),
    "histogram_quantile": _histogram_quantile,
    **{name: _native_only for name in NATIVE_ONLY},
    **CONDITION_FUNCTIONS,
}
