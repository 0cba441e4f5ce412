"""The data model shared by the store and the evaluators: labels, series, results.

Times are UTC epoch milliseconds (int64); values are float64. A series' samples
are two parallel NumPy arrays sorted by time. Staleness markers (Prometheus's
special NaN written when a series disappears) are a NaN with a distinct bit
pattern, :data:`STALE_NAN`: copying arrays keeps the bits, and
:func:`stale_mask` finds them. The store keeps them as SQL NULL.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

Labels = tuple[tuple[str, str], ...]
"""A label set: (name, value) pairs sorted by name; the metric name is ``__name__``."""

Matcher = tuple[str, str, str]
"""(label name, operator ``=``/``!=``/``=~``/``!~``, value), as in the IR."""

METRIC_NAME = "__name__"

STALE_BITS = 0x7FF0000000000002
"""Prometheus's staleness marker: a NaN with this exact bit pattern."""
STALE_NAN: float = float(np.array([STALE_BITS], dtype=np.uint64).view(np.float64)[0])

TimeArray = npt.NDArray[np.int64]
ValueArray = npt.NDArray[np.float64]

DEFAULT_LOOKBACK_MS = 5 * 60_000
"""How far back an instant selector looks for the latest sample (Prometheus's default)."""


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """A label set from a mapping (empty values are dropped, as Prometheus does)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def metric_name(labels: Labels) -> str | None:
    """The value of ``__name__``, if any."""
    for k, v in labels:
        if k == METRIC_NAME:
            return v
    return None


def drop_name(labels: Labels) -> Labels:
    """The label set without ``__name__``."""
    if labels and labels[0][0] == METRIC_NAME:  # where sorting puts it, nearly always
        return labels[1:]
    return tuple(p for p in labels if p[0] != METRIC_NAME)


def format_labels(labels: Labels) -> str:
    """``name{a="b", c="d"}``, as Prometheus prints a series."""
    name = metric_name(labels)
    rest = [f'{k}="{_escape(v)}"' for k, v in labels if k != METRIC_NAME]
    if name is None:
        return "{" + ", ".join(rest) + "}"
    return name + ("{" + ", ".join(rest) + "}" if rest else "")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def stale_mask(values: ValueArray) -> npt.NDArray[np.bool_]:
    """Which values are staleness markers (not ordinary NaNs)."""
    mask: npt.NDArray[np.bool_] = values.view(np.uint64) == np.uint64(STALE_BITS)
    return mask


def is_stale(value: float) -> bool:
    """Whether one value is a staleness marker."""
    if not math.isnan(value):
        return False
    return int(np.array([value], dtype=np.float64).view(np.uint64)[0]) == STALE_BITS


@dataclass(slots=True)
class Series:
    """One series: its labels and its samples (times in ms ascending, values)."""

    labels: Labels
    ts: TimeArray
    values: ValueArray

    def __post_init__(self) -> None:
        if len(self.ts) != len(self.values):
            raise ValueError("times and values differ in length")

    @classmethod
    def of(cls, labels: Labels, samples: Iterable[tuple[int, float]]) -> Series:
        """A series from (time ms, value) pairs."""
        pairs = sorted(samples)
        ts = np.fromiter((t for t, _ in pairs), dtype=np.int64, count=len(pairs))
        vs = np.fromiter((v for _, v in pairs), dtype=np.float64, count=len(pairs))
        return cls(labels, ts, vs)


class SeriesSource(Protocol):
    """Where evaluators read raw samples from (the DuckDB store, or memory in tests)."""

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        """Every series matching all ``matchers`` with its samples in ``[mint_ms, maxt_ms]``.

        Series without a sample in the interval are left out. Staleness markers are
        included as :data:`STALE_NAN`. Regular expressions are RE2, fully anchored.
        """
        ...


class EvalError(Exception):
    """A query that fails at evaluation time, with Prometheus's wording where it has one."""


@dataclass(frozen=True, slots=True)
class GridValues:
    """A range result as matrices over its steps, as the evaluator computed it.

    ``values``/``present`` are ``[rows × steps]`` (a value means nothing where it
    is not present); rows are the result's series, in no particular order.
    Consumers that want every series on the step grid (the alert state machine)
    read this instead of scattering each series' points back onto the grid.
    """

    labels: list[Labels]
    values: npt.NDArray[np.float64]
    present: npt.NDArray[np.bool_]


@dataclass(slots=True)
class QueryResult:
    """The result of an instant or range query.

    ``kind`` is ``"vector"``/``"matrix"`` for series results, ``"scalar"`` or
    ``"string"``. For series results, ``series`` holds one entry per output label
    set with its points at the evaluation steps where it has a value (a range
    query's matrix, or a single step for an instant query). A scalar is one
    series with empty labels and a point at every step. ``steps`` are the
    evaluation times. Warnings and infos are Prometheus-style annotations.

    ``series`` may be built on first use (``build``): a result that carries its
    matrices (``grid``) is often read only through them (the alert state
    machine), and a live evaluation makes a hundred thousand series per cycle.
    """

    kind: str
    steps: TimeArray
    listed: list[Series] | None = None
    """The series, once built (read them through :attr:`series`)."""
    string: str | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)
    grid: GridValues | None = None
    """The same series as matrices over ``steps`` (range results of the evaluator)."""
    build: Callable[[], list[Series]] | None = field(default=None, repr=False,
                                                      compare=False)
    """Makes the series on first use of :attr:`series`, when they were not given."""

    @property
    def series(self) -> list[Series]:
        """One entry per output label set (see the class documentation)."""
        if self.listed is None:
            self.listed = self.build() if self.build is not None else []
            self.build = None
        return self.listed
