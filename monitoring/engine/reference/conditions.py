"""Threshold and peer-outlier conditions, one evaluation time at a time, written plainly.

The fast evaluator's :mod:`monitoring.engine.fast.conditions` must agree with
these on every input; the definitions, their constants and the reasons for them
are there.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from typing import TYPE_CHECKING

from monitoring.dsl.ir import Call, StringConst
from monitoring.engine.fast.conditions import MAD_SCALE, MEAN_AD_SCALE, MIN_PEERS
from monitoring.engine.reference.values import Sample, Value, label_get

if TYPE_CHECKING:
    from monitoring.engine.reference.core import Evaluator

Handler = Callable[["Evaluator", Call, int], Value]


def _range_filter(inside: bool) -> Handler:
    def apply(ev: Evaluator, node: Call, t: int) -> Value:
        samples = ev.vector(node.args[0], t)
        lo, hi = ev.scalar(node.args[1], t), ev.scalar(node.args[2], t)
        out: list[Sample] = []
        for s in samples:
            if math.isnan(s.value):
                continue
            within = lo <= s.value <= hi
            if within == inside:
                out.append(s)
        return out
    return apply


def _score(x: float, peers: list[float]) -> float:
    median = statistics.median(peers)
    deviations = [abs(p - median) for p in peers]
    scale = MAD_SCALE * statistics.median(deviations)
    if scale == 0:
        scale = MEAN_AD_SCALE * sum(deviations) / len(deviations)
    if scale == 0:
        return 0.0
    return abs(x - median) / scale


def _outlier_score(ev: Evaluator, node: Call, t: int) -> Value:
    by = []
    for arg in node.args[1:]:
        assert isinstance(arg, StringConst)
        by.append(arg.value)
    groups: dict[tuple[str, ...], list[Sample]] = {}
    for s in ev.vector(node.args[0], t):
        groups.setdefault(tuple(label_get(s.labels, name) for name in by), []).append(s)
    out: list[Sample] = []
    for samples in groups.values():
        peers = [s.value for s in samples if math.isfinite(s.value)]
        if len(peers) < MIN_PEERS:
            continue
        out.extend(Sample(s.labels, _score(s.value, peers), True)
                   for s in samples if math.isfinite(s.value))
    return out


CONDITION_FUNCTIONS: dict[str, Handler] = {
    "between": _range_filter(inside=True),
    "outside": _range_filter(inside=False),
    "outlier_score": _outlier_score,
}
