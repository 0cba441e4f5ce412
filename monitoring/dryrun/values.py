"""What a rule's "value" is for plots and no-data detection, and how to downsample it.

An alert condition such as ``avg_over_time(x[5m]) > 0.05`` filters series; the
interesting number over time is its left side, and ``0.05`` is the threshold.
:func:`value_of` finds that pair through a leading ``and``/``unless`` filter
(``x > 1 unless on (job) y < 1`` plots ``x`` against 1). Conditions of any
other shape plot the condition's own value, with no threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from monitoring.dsl import ir
from monitoring.stdlib.types import ValueType

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
FLIPPED = {">": "<", "<": ">", ">=": "<=", "<=": ">=", "==": "==", "!=": "!="}


@dataclass(frozen=True, slots=True)
class ValueSpec:
    """The node whose value a rule is about, and the threshold it is compared with."""

    node: ir.Node
    threshold: float | None
    op: str | None

    @property
    def low_is_bad(self) -> bool:
        """Whether the alert is about small values (``<``, ``<=``)."""
        return self.op in ("<", "<=")


def value_of(condition: ir.Node) -> ValueSpec:
    """The value side of a condition (see the module docstring)."""
    node = condition
    while isinstance(node, ir.Binary) and node.op in ("and", "unless"):
        node = node.lhs
    if isinstance(node, ir.Binary) and node.op in COMPARISONS and not node.return_bool:
        if isinstance(node.rhs, ir.Const) and node.lhs.type is not ValueType.SCALAR:
            return ValueSpec(node.lhs, node.rhs.value, node.op)
        if isinstance(node.lhs, ir.Const) and node.rhs.type is not ValueType.SCALAR:
            return ValueSpec(node.rhs, node.lhs.value, FLIPPED[node.op])
    return ValueSpec(condition, None, None)


def downsample(values: npt.NDArray[np.float64], points: int, low_is_bad: bool
               ) -> tuple[npt.NDArray[np.float64], int]:
    """``[series x steps]`` -> at most ``points`` columns, and the bucket size in steps."""
    steps = values.shape[1]
    if steps <= points or points < 1:
        return values, 1
    size = -(-steps // points)
    return reduce_buckets(values, size, low_is_bad), size


def reduce_buckets(values: npt.NDArray[np.float64], size: int, low_is_bad: bool,
                   head: int = 0) -> npt.NDArray[np.float64]:
    """Columns grouped ``size`` at a time, one value each.

    The first group is ``size - head`` columns wide (the rest of a bucket begun
    before these columns); the last may be short. Each bucket keeps its most
    alarming value (max, or min when ``low_is_bad``), ignoring NaN; a bucket
    with no value stays NaN.
    """
    if size <= 1 or not values.shape[1]:
        return values
    starts = np.arange(0, values.shape[1] + head, size) - head
    starts[0] = 0
    pick = np.fmin if low_is_bad else np.fmax
    out: npt.NDArray[np.float64] = pick.reduceat(values, starts, axis=1)
    return out


def nan_extreme(values: npt.NDArray[np.float64], axis: int, low_is_bad: bool
                ) -> npt.NDArray[np.float64]:
    """Max (or min) along ``axis`` ignoring NaN; NaN where all are NaN (no warning)."""
    pick = np.fmin if low_is_bad else np.fmax
    out: npt.NDArray[np.float64] = pick.reduce(values, axis=axis)
    return out
