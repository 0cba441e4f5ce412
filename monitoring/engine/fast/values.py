"""Values of the vectorised evaluator: every evaluation step of a query at once.

Prometheus evaluates a range query step by step; here a value holds all steps
together so that NumPy does the per-step work. An instant vector is a dense
``[series × steps]`` matrix of float64 with a separate boolean presence matrix:
NaN is an ordinary sample value in PromQL, so it cannot double as "absent".
Rows carry the *delayed name removal* flag of Prometheus 3 (the metric name is
kept while a query runs and dropped at the end where an operation asked for it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitoring.engine.model import EvalError, Labels, TimeArray, ValueArray

BoolArray = npt.NDArray[np.bool_]
IndexArray = npt.NDArray[np.int64]
FloatMatrix = npt.NDArray[np.float64]

DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


@dataclass(frozen=True, slots=True)
class Grid:
    """Evaluation times ``start, start + step, ...`` (``count`` of them), in ms."""

    start: int
    step: int
    count: int

    @property
    def end(self) -> int:
        """The last evaluation time."""
        return self.start + self.step * (self.count - 1)

    def times(self) -> TimeArray:
        """All evaluation times."""
        out: TimeArray = self.start + self.step * np.arange(self.count, dtype=np.int64)
        return out

    @classmethod
    def between(cls, start: int, end: int, step: int) -> Grid:
        """The steps from ``start`` to ``end`` inclusive (empty when ``end < start``)."""
        if end < start:
            return cls(start, max(step, 1), 0)
        if step <= 0:
            return cls(start, 1, 1)
        return cls(start, step, (end - start) // step + 1)


@dataclass(slots=True)
class Vector:
    """An instant vector at every step: ``values``/``present`` are ``[rows × steps]``."""

    labels: list[Labels]
    values: FloatMatrix
    present: BoolArray
    drop_name: BoolArray  # per row: drop ``__name__`` when the query ends

    @classmethod
    def empty(cls, steps: int) -> Vector:
        """No series at all."""
        return cls([], np.zeros((0, steps)), np.zeros((0, steps), dtype=bool),
                   np.zeros(0, dtype=bool))

    @property
    def steps(self) -> int:
        """The number of evaluation steps."""
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, rows: IndexArray | list[int]) -> Vector:
        """The given rows, in the given order."""
        idx = np.asarray(rows, dtype=np.int64)
        return Vector([self.labels[i] for i in idx.tolist()], self.values[idx],
                      self.present[idx], self.drop_name[idx])

    def compact(self) -> Vector:
        """Without the rows that have no sample at any step."""
        keep = self.present.any(axis=1)
        if keep.all():
            return self
        return self.take(np.flatnonzero(keep))

    def with_values(self, values: FloatMatrix, present: BoolArray | None = None,
                    drop_name: bool | None = None) -> Vector:
        """The same rows with new values (and optionally presence and name flag)."""
        flags = self.drop_name if drop_name is None else np.full(len(self.labels), drop_name)
        return Vector(self.labels, values, self.present if present is None else present,
                      flags)


@dataclass(slots=True)
class Scalar:
    """A scalar at every step."""

    values: ValueArray


@dataclass(slots=True)
class String:
    """A string literal."""

    value: str


@dataclass(slots=True)
class Matrix:
    """A range vector at one evaluation time: raw samples per series."""

    labels: list[Labels]
    ts: list[TimeArray]
    values: list[ValueArray]
    drop_name: list[bool] = field(default_factory=list)


Value = Vector | Scalar | String | Matrix


def concat_sorted(parts: list[Vector], steps: int) -> Vector:
    """The rows of several vectors, one after the other, in label order.

    Each row is copied once, straight to its place: concatenating and then
    sorting would copy every matrix twice (a streamed range function's groups
    are tens of megabytes).
    """
    parts = [p for p in parts if len(p)]
    if not parts:
        return Vector.empty(steps)
    labels: list[Labels] = []
    for p in parts:
        labels.extend(p.labels)
    order = sorted(range(len(labels)), key=labels.__getitem__)
    if len(parts) == 1:
        return parts[0] if order == list(range(len(labels))) else parts[0].take(order)
    where = np.empty(len(labels), dtype=np.int64)  # row of the output of each input row
    where[np.asarray(order, dtype=np.int64)] = np.arange(len(labels), dtype=np.int64)
    values = np.empty((len(labels), steps), dtype=np.float64)
    present = np.empty((len(labels), steps), dtype=bool)
    drop = np.empty(len(labels), dtype=bool)
    start = 0
    for p in parts:
        rows = where[start:start + len(p)]
        values[rows] = p.values
        present[rows] = p.present
        drop[rows] = p.drop_name
        start += len(p)
    return Vector([labels[i] for i in order], values, present, drop)


def merge_same_labels(vec: Vector) -> Vector:
    """Merge rows with identical label sets; samples at the same step are an error.

    Prometheus builds range results keyed by label set, so two rows with the same
    labels that never overlap in time are one series; overlapping ones make the
    query fail with Prometheus's message. The merged series takes its name-removal
    flag from the row that has the earliest sample, as Prometheus's series takes it
    from the first sample it sees.
    """
    n = len(vec.labels)
    if n < 2 or len(set(vec.labels)) == n:  # the usual case, checked in one C pass
        return vec
    first: dict[Labels, int] = {}
    owner = np.empty(n, dtype=np.int64)
    for i, lab in enumerate(vec.labels):
        owner[i] = first.setdefault(lab, i)
    if len(first) == n:
        return vec
    counts = np.zeros((n, vec.steps), dtype=np.int64)
    np.add.at(counts, owner, vec.present.astype(np.int64))
    if (counts > 1).any():
        raise EvalError(DUPLICATE_LABELSET)
    keep = np.flatnonzero(owner == np.arange(n))
    values = vec.values.copy()
    present = vec.present.copy()
    drop = vec.drop_name.copy()
    steps = vec.steps
    has_any = vec.present.any(axis=1)
    first_step = np.where(has_any, np.argmax(vec.present, axis=1), steps)
    earliest = first_step.copy()
    for i in np.flatnonzero(owner != np.arange(n)).tolist():
        o = int(owner[i])
        mask = vec.present[i]
        values[o, mask] = vec.values[i, mask]
        present[o] |= mask
        if first_step[i] < earliest[o]:
            earliest[o] = first_step[i]
            drop[o] = vec.drop_name[i]
    return Vector([vec.labels[i] for i in keep.tolist()], values[keep], present[keep], drop[keep])
