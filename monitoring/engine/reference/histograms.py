"""``histogram_quantile`` over classic ``le`` buckets (quantile.go's ``BucketQuantile``)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING

from monitoring.dsl.ir import Node
from monitoring.engine.reference.util import go_quote, ieee_div
from monitoring.engine.reference.values import Sample, Vector, label_get

if TYPE_CHECKING:
    from monitoring.engine.reference.core import Evaluator

_GO_FLOAT = re.compile(r"[+-]?(inf|infinity|nan|(\d+\.?\d*|\.\d+)(e[+-]?\d+)?)", re.IGNORECASE)


def parse_go_float(text: str) -> float | None:
    """``strconv.ParseFloat`` for the forms bucket bounds use (no spaces, no underscores)."""
    if not _GO_FLOAT.fullmatch(text):
        return None
    return float(text)


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """The quantile of (upper bound, cumulative count) buckets.

    Also says whether monotonicity had to be forced (``ensureMonotonic``).
    """
    if math.isnan(q):
        return math.nan, False
    if q < 0:
        return -math.inf, False
    if q > 1:
        return math.inf, False
    ordered = sorted(buckets, key=lambda b: b[0])
    if not (math.isinf(ordered[-1][0]) and ordered[-1][0] > 0):
        return math.nan, False
    merged: list[list[float]] = []
    for upper, count in ordered:  # coalesceBuckets
        if merged and merged[-1][0] == upper:
            merged[-1][1] += count
        else:
            merged.append([upper, count])
    prev = merged[0][1]  # correctPrecisionErrors
    for bucket in merged[1:]:
        delta = abs(bucket[1] - prev)
        if delta == 0:
            continue
        if ieee_div(delta, bucket[1]) <= 1e-12:
            bucket[1] = prev
        else:
            prev = bucket[1]
    forced = False  # ensureMonotonic
    top = merged[0][1]
    for bucket in merged[1:]:
        if bucket[1] > top:
            top = bucket[1]
        elif bucket[1] < top:
            bucket[1] = top
            forced = True
    if len(merged) < 2:
        return math.nan, False
    observations = merged[-1][1]
    if observations == 0:
        return math.nan, False
    rank = q * observations
    b = len(merged) - 1
    for i in range(len(merged) - 1):
        if merged[i][1] >= rank:
            b = i
            break
    if b == len(merged) - 1:
        return merged[-2][0], forced
    if b == 0 and merged[0][0] <= 0:
        return merged[0][0], forced
    start = 0.0
    end = merged[b][0]
    count = merged[b][1]
    if b > 0:
        start = merged[b - 1][0]
        count -= merged[b - 1][1]
        rank -= merged[b - 1][1]
    return start + (end - start) * ieee_div(rank, count), forced


def histogram_quantile(ev: Evaluator, q: float, vec: Vector, arg: Node) -> Vector:
    """Group float samples by their labels without ``le`` and interpolate each group."""
    groups: dict[tuple[tuple[str, str], ...], tuple[tuple[tuple[str, str], ...],
                                                   list[tuple[float, float]]]] = {}
    for s in vec:
        le = label_get(s.labels, "le")
        upper = parse_go_float(le)
        name = label_get(s.labels, "__name__")
        if upper is None:
            text = f"bucket label \"le\" is missing or has a malformed value of {go_quote(le)}"
            if name:
                text += f" for metric name {go_quote(name)}"
            ev.warn(text, arg)
            continue
        key = tuple(p for p in s.labels if p[0] != "le")
        entry = groups.get(key)
        if entry is None:
            out_labels = tuple(p for p in s.labels if p[0] not in ("le", "__name__"))
            entry = (out_labels, [])
            groups[key] = entry
        entry[1].append((upper, s.value))
    out: Vector = []
    for key, (labels, buckets) in groups.items():
        value, forced = bucket_quantile(q, buckets)
        if forced:
            text = ("input to histogram_quantile needed to be fixed for monotonicity (see "
                    "https://prometheus.io/docs/prometheus/latest/querying/functions/"
                    "#histogram_quantile)")
            name = label_get(key, "__name__")
            if name:
                text += f" for metric name {go_quote(name)}"
            ev.note(text, arg)
        out.append(Sample(labels, value, True))
    return out
