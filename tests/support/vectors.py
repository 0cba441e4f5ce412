"""Small hand-written instant vectors for the vectorised evaluator's unit tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from monitoring.engine.fast.values import Vector
from monitoring.engine.model import Labels

Cell = float | None
"""One step of a row: a value, or None for no sample at this step."""


def lab(name: str | None = None, **labels: str) -> Labels:
    """A label set, the metric name given first."""
    pairs = dict(labels)
    if name is not None:
        pairs["__name__"] = name
    return tuple(sorted(pairs.items()))


def vec(rows: Sequence[tuple[Labels, Sequence[Cell]]], drop: Sequence[bool] = ()) -> Vector:
    """A vector from rows of (labels, cells); ``drop`` flags pending name removal."""
    steps = len(rows[0][1]) if rows else 1
    values = np.array([[0.0 if c is None else c for c in cells] for _, cells in rows],
                      dtype=np.float64).reshape(len(rows), steps)
    present = np.array([[c is not None for c in cells] for _, cells in rows],
                       dtype=bool).reshape(len(rows), steps)
    flags = np.array(list(drop) if drop else [False] * len(rows), dtype=bool)
    return Vector([r[0] for r in rows], values, present, flags)
