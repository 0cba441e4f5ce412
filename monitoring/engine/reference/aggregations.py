"""Aggregation operators at one step, as engine.go's aggregation functions.

``aggregation``, ``aggregationK`` and ``aggregationCountValues`` with their
float edge cases: Kahan sums, the incremental-mean fallback of ``avg``, NaN
ordering in ``topk``/``bottomk``/``quantile``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitoring.dsl.ir import Aggregate, StringConst
from monitoring.engine.model import EvalError, Labels
from monitoring.engine.reference.gosort import (
    go_sort,
    heap_fix_root,
    heap_push,
    reverse_value_less,
    reversed_less,
    value_less,
)
from monitoring.engine.reference.util import (
    format_f,
    format_g,
    go_quote,
    kahan_inc,
    labels_hash,
    quantile,
    valid_label_name,
)
from monitoring.engine.reference.values import Sample, Vector, label_set

if TYPE_CHECKING:
    from monitoring.engine.reference.core import Evaluator

_MIN_INT64 = -(2.0**63)
_MAX_INT64 = 2.0**63


def group_key(labels: Labels, grouping: tuple[str, ...], without: bool) -> Labels:
    """The labels that identify a group, which are also its output labels.

    ``without`` also drops ``__name__``, as ``generateGroupingKey`` and
    ``generateGroupingLabels`` do; ``by`` keeps it only when asked for.
    """
    if without:
        return tuple(p for p in labels if p[0] not in grouping and p[0] != "__name__")
    return tuple(p for p in labels if p[0] in grouping)


@dataclass(slots=True)
class _Group:
    """The running state of one output group (``groupedAggregation``)."""

    labels: Labels
    value: float
    mean: float
    kahan_c: float = 0.0
    count: float = 1.0
    incremental: bool = False
    drop_name: bool = False
    values: list[float] = field(default_factory=list)


def aggregate(ev: Evaluator, node: Aggregate, t: int) -> Vector:
    """Evaluate one aggregation at ``t``."""
    op = node.op
    if op == "count_values":
        return _count_values(ev, node, t)
    param = ev.scalar(node.param, t) if node.param is not None else math.nan
    if op in ("topk", "bottomk", "limitk", "limit_ratio"):
        return _aggregate_k(ev, node, param, t)
    if op == "quantile" and (math.isnan(param) or param < 0 or param > 1):
        ev.warn(f"quantile value should be between 0 and 1, got {format_g(param)}",
                node.param)
    vec = ev.vector(node.expr, t)
    groups: dict[Labels, _Group] = {}
    for s in vec:
        key = group_key(s.labels, node.grouping, node.without)
        f = s.value
        g = groups.get(key)
        if g is None:
            g = _Group(key, f, f, drop_name=s.drop_name)
            if op in ("stddev", "stdvar"):
                g.value = math.nan if math.isnan(f) or math.isinf(f) else 0.0
            elif op == "quantile":
                g.values = [f]
            elif op == "group":
                g.value = 1.0
            groups[key] = g
            continue
        if s.drop_name:
            g.drop_name = True
        if op == "sum":
            g.value, g.kahan_c = kahan_inc(f, g.value, g.kahan_c)
        elif op == "avg":
            g.count += 1
            if not g.incremental:
                new_v, new_c = kahan_inc(f, g.value, g.kahan_c)
                if not math.isinf(new_v):
                    g.value, g.kahan_c = new_v, new_c
                    continue
                g.incremental = True
                g.mean = g.value / (g.count - 1)
                g.kahan_c /= g.count - 1
            q = (g.count - 1) / g.count
            g.mean, g.kahan_c = kahan_inc(f / g.count, q * g.mean, q * g.kahan_c)
        elif op == "max":
            if g.value < f or math.isnan(g.value):
                g.value = f
        elif op == "min":
            if g.value > f or math.isnan(g.value):
                g.value = f
        elif op == "count":
            g.count += 1
        elif op in ("stddev", "stdvar"):
            g.count += 1
            delta = f - g.mean
            g.mean += delta / g.count
            g.value += delta * (f - g.mean)
        elif op == "quantile":
            g.values.append(f)
    out: Vector = []
    for key, g in groups.items():
        if op == "avg":
            value = g.mean + g.kahan_c if g.incremental else (
                g.value / g.count + g.kahan_c / g.count)
        elif op == "sum":
            value = g.value + g.kahan_c
        elif op == "count":
            value = g.count
        elif op == "stdvar":
            value = g.value / g.count
        elif op == "stddev":
            value = math.sqrt(v) if (v := g.value / g.count) >= 0 else math.nan
        elif op == "quantile":
            value = quantile(param, g.values)
        else:
            value = g.value
        # The group key is also the output label set (``generateGroupingLabels``).
        out.append(Sample(key, value, g.drop_name))
    return out


def _count_values(ev: Evaluator, node: Aggregate, t: int) -> Vector:
    assert isinstance(node.param, StringConst)
    label = node.param.value
    if not valid_label_name(label):
        raise EvalError(f"invalid label name {go_quote(label)}")
    grouping = node.grouping
    if not node.without:
        grouping = tuple(sorted({*grouping, label}))
    counts: dict[Labels, int] = {}
    for s in ev.vector(node.expr, t):
        labels = label_set(s.labels, label, format_f(s.value))
        key = group_key(labels, grouping, node.without)
        counts[key] = counts.get(key, 0) + 1
    return [Sample(key, float(n)) for key, n in counts.items()]


def _aggregate_k(ev: Evaluator, node: Aggregate, param: float, t: int) -> Vector:
    op = node.op
    if op == "limit_ratio":
        if param == 0:
            return []
        if math.isnan(param):
            raise EvalError("Ratio value is NaN")
        if param > 1.0:
            ev.warn(f"ratio value should be between -1 and 1, got {format_g(param)}, "
                    "capping to 1", node.param)
        if param < -1.0:
            ev.warn(f"ratio value should be between -1 and 1, got {format_g(param)}, "
                    "capping to -1", node.param)
    else:
        if param < 1:
            return []
        if math.isnan(param):
            raise EvalError("Parameter value is NaN")
        if param <= _MIN_INT64:
            raise EvalError(f"Scalar value {format_g(param)} underflows int64")
        if param >= _MAX_INT64:
            raise EvalError(f"Scalar value {format_g(param)} overflows int64")
    vec = ev.vector(node.expr, t)
    groups: dict[Labels, list[Sample]] = {}
    for s in vec:
        groups.setdefault(group_key(s.labels, node.grouping, node.without), []).append(s)
    out: Vector = []
    for members in groups.values():
        heap: list[Sample] = []
        if op in ("topk", "bottomk"):
            # topk keeps the k largest in a min-heap, bottomk the k smallest in a max-heap;
            # a newcomer replaces the root only if strictly better (or the root is NaN).
            less = value_less if op == "topk" else reverse_value_less
            k = int(param)
            for s in members:
                if len(heap) < k:
                    heap_push(heap, s, less)
                elif _better(op, s.value, heap[0].value):
                    heap[0] = s
                    if k > 1:
                        heap_fix_root(heap, less)
            out.extend(go_sort(heap, reversed_less(less)))
        elif op == "limitk":
            for s in members[: int(param)]:
                heap_push(heap, s, value_less)
            out.extend(heap)
        else:
            r = max(-1.0, min(1.0, param))
            for s in members:
                offset = labels_hash(s.labels) / float(2**64 - 1)
                if (r >= 0 and offset < r) or (r < 0 and offset >= 1.0 + r):
                    heap_push(heap, s, value_less)
            out.extend(heap)
    return out


def _better(op: str, new: float, root: float) -> bool:
    """Whether a sample displaces the heap root of topk/bottomk."""
    if math.isnan(root) and not math.isnan(new):
        return True
    return root < new if op == "topk" else root > new
