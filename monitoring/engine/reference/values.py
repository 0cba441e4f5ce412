"""The values one evaluation step produces: scalars, strings, vectors and matrices.

Samples carry Prometheus 3's ``DropName`` flag: with delayed metric-name removal
an operation only *marks* a series for losing ``__name__`` and the name is
dropped when the query finishes (``cleanupMetricLabels``), so ``last_over_time``
or ``label_replace`` further up can still see or restore it.
"""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.engine.gocompat import labels_string as labels_string
from monitoring.engine.model import Labels

METADATA_LABELS = frozenset({"__name__", "__type__", "__unit__"})
"""What ``DropReserved(schema.IsMetadataLabel)`` removes along with the name."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector."""

    labels: Labels
    value: float
    drop_name: bool = False


@dataclass(frozen=True, slots=True)
class RangeSeries:
    """The samples of one series inside a range window (stale markers left out)."""

    labels: Labels
    ts: tuple[int, ...]
    values: tuple[float, ...]
    drop_name: bool = False


@dataclass(frozen=True, slots=True)
class Matrix:
    """A range vector at one step: every window is ``(end_ms - range_ms, end_ms]``."""

    series: tuple[RangeSeries, ...]
    range_ms: int
    end_ms: int


Vector = list[Sample]
Value = float | str | Vector | Matrix


def drop_metadata(labels: Labels) -> Labels:
    """The label set without ``__name__`` (and the other metadata labels)."""
    return tuple(p for p in labels if p[0] not in METADATA_LABELS)


def label_get(labels: Labels, name: str) -> str:
    """A label's value, ``""`` when absent (as ``Labels.Get``)."""
    for k, v in labels:
        if k == name:
            return v
    return ""


def label_set(labels: Labels, name: str, value: str) -> Labels:
    """``labels.Builder.Set``: an empty value deletes the label."""
    rest = [p for p in labels if p[0] != name]
    if value != "":
        rest.append((name, value))
    return tuple(sorted(rest))
