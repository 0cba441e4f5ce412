"""Label-set helpers with Prometheus's exact behaviour.

Matching signatures, grouping keys, the ``{a="b"}`` text used in error
messages, Go's shortest float formatting (``count_values``), natural sort order
(``sort_by_label``) and the xxHash64 of a label set (``limit_ratio`` samples by
it) all have to agree with Prometheus bit for bit, so they live here together.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from monitoring.engine.gocompat import format_f
from monitoring.engine.gocompat import labels_hash as labels_hash
from monitoring.engine.gocompat import labels_string as labels_string
from monitoring.engine.gocompat import natural_less as natural_less
from monitoring.engine.model import METRIC_NAME, Labels

METADATA_LABELS = frozenset({METRIC_NAME, "__type__", "__unit__"})
"""Labels that Prometheus drops when an operation changes a metric's meaning."""


def sig_on(labels: Labels, names: frozenset[str]) -> Labels:
    """The labels named in ``on(...)``/``by(...)`` that the set has."""
    return tuple(p for p in labels if p[0] in names)


def sig_ignoring(labels: Labels, names: frozenset[str]) -> Labels:
    """All labels but the ignored ones and the metric name."""
    return tuple(p for p in labels if p[0] not in names and p[0] != METRIC_NAME)


def without(labels: Labels, names: Iterable[str]) -> Labels:
    """The label set minus the named labels."""
    drop = set(names)
    return tuple(p for p in labels if p[0] not in drop)


def set_label(labels: Labels, name: str, value: str) -> Labels:
    """The label set with ``name`` set to ``value`` (removed when ``value`` is empty)."""
    rest = [p for p in labels if p[0] != name]
    if value != "":
        rest.append((name, value))
        rest.sort()
    return tuple(rest)


def get_label(labels: Labels, name: str) -> str:
    """The value of a label, or the empty string."""
    for k, v in labels:
        if k == name:
            return v
    return ""


def drop_metadata(labels: Labels) -> Labels:
    """Without ``__name__`` (and the other metadata labels)."""
    return tuple(p for p in labels if p[0] not in METADATA_LABELS)


def valid_label_name(name: str) -> bool:
    """Prometheus 3 accepts any non-empty UTF-8 label name."""
    if name == "":
        return False
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in name)


format_go_float = format_f
"""``strconv.FormatFloat(v, 'f', -1, 64)`` (``count_values`` label values)."""


def group_ids(keys: Sequence[Labels]) -> tuple[np.ndarray, list[Labels]]:
    """Dense ids for keys in order of first appearance, and the distinct keys."""
    index: dict[Labels, int] = {}
    ids = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        ids[i] = index.setdefault(k, len(index))
    return ids, list(index)
