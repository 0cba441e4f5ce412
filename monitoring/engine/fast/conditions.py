"""Threshold and peer-outlier conditions over instant vectors, for every step at once.

``between``/``outside`` are filters: they keep a sample (and its metric name,
as a comparison without ``bool`` does) where the condition holds.
``outlier_score`` judges each series against its peers at the same step with
the median and the median absolute deviation, which a few outliers cannot
drag along as they drag a mean and a standard deviation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitoring.dsl import ir
from monitoring.engine.fast.args import scalar_arg, string_arg, vector_arg
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.labels import get_label
from monitoring.engine.fast.values import FloatMatrix, Value, Vector

Function = Callable[[ir.Call, list[Value], Context], Value]

MAD_SCALE = 1.4826
"""1 / Φ⁻¹(3/4): makes the MAD estimate the standard deviation of normal data."""
MEAN_AD_SCALE = 1.2533
"""√(π/2): the same for the mean absolute deviation, used when the MAD is 0."""
MIN_PEERS = 3
"""Fewer finite samples than this in a group at a step give no score: with two, each
is exactly as far from the median as the other."""


def _range_filter(inside: bool) -> Function:
    def run(node: ir.Call, args: list[Value], ctx: Context) -> Value:
        vec = vector_arg(args, 0, node.func)
        lo = scalar_arg(args, 1, node.func, vec.steps)
        hi = scalar_arg(args, 2, node.func, vec.steps)
        v = vec.values
        within = (v >= lo[None, :]) & (v <= hi[None, :])
        # NaN is neither inside nor outside a range, as it is never > or < a threshold.
        keep = within if inside else ~within & ~np.isnan(v)
        return vec.with_values(v, vec.present & keep).compact()
    return run


def peer_groups(vec: Vector, by: list[str]) -> list[list[int]]:
    """Rows of ``vec`` grouped by the values of the ``by`` labels (one group without any)."""
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, labels in enumerate(vec.labels):
        groups.setdefault(tuple(get_label(labels, name) for name in by), []).append(i)
    return list(groups.values())


def robust_scores(block: FloatMatrix) -> FloatMatrix:
    """``|x - median| / scale`` per column of ``block`` (NaN = no sample there).

    The scale is 1.4826 × MAD, or 1.2533 × the mean absolute deviation when more
    than half the peers are equal (MAD 0); a column whose peers are all equal
    scores 0 everywhere. Columns with fewer than :data:`MIN_PEERS` finite samples,
    and non-finite samples, stay NaN (no output).
    """
    finite = np.isfinite(block)
    data = np.where(finite, block, np.nan)
    enough = finite.sum(axis=0) >= MIN_PEERS
    out = np.full(block.shape, np.nan)
    if not enough.any():
        return out
    cols = data[:, enough]
    med = np.nanmedian(cols, axis=0)
    dev = np.abs(cols - med[None, :])
    scale = MAD_SCALE * np.nanmedian(dev, axis=0)
    mean_ad = MEAN_AD_SCALE * np.nanmean(dev, axis=0)
    scale = np.where(scale > 0, scale, mean_ad)
    scores = np.where(scale[None, :] > 0, dev / np.where(scale > 0, scale, 1.0)[None, :], 0.0)
    out[:, enough] = np.where(np.isnan(cols), np.nan, scores)
    return out


def _outlier_score(node: ir.Call, args: list[Value], ctx: Context) -> Value:
    vec = vector_arg(args, 0, node.func)
    by = [string_arg(args, i, node.func) for i in range(1, len(args))]
    values = np.full(vec.values.shape, np.nan)
    with np.errstate(all="ignore"):
        for rows in peer_groups(vec, by):
            block = np.where(vec.present[rows], vec.values[rows], np.nan)
            values[rows] = robust_scores(block)
    present = vec.present & ~np.isnan(values)
    return Vector(vec.labels, np.where(present, values, 0.0), present,
                  np.ones(len(vec), dtype=bool)).compact()


CONDITION_FUNCTIONS: dict[str, Function] = {
    "between": _range_filter(inside=True),
    "outside": _range_filter(inside=False),
    "outlier_score": _outlier_score,
}
"""Instant-vector condition functions by name, merged into the fast evaluator's table."""
