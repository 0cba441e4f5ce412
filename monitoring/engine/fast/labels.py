"""Label-set helpers with Prometheus's exact behaviour.

Matching signatures, grouping keys, the ``{a="b"}`` text used in error
messages, Go's shortest float formatting (``count_values``), natural sort order
(``sort_by_label``) and the xxHash64 of a label set (``limit_ratio`` samples by
it) all have to agree with Prometheus bit for bit, so they live here together.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

from monitoring.dsl.lexical import is_label_name, quote
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


def labels_string(labels: Labels) -> str:
    """``{__name__="x", a="b"}`` as Prometheus's ``Labels.String()`` prints a set."""
    parts = []
    for k, v in labels:
        name = k if is_label_name(k) else quote(k)
        parts.append(f"{name}={quote(v)}")
    return "{" + ", ".join(parts) + "}"


def valid_label_name(name: str) -> bool:
    """Prometheus 3 accepts any non-empty UTF-8 label name."""
    if name == "":
        return False
    return not any(0xD800 <= ord(c) <= 0xDFFF for c in name)


def format_go_float(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = np.format_float_positional(value, unique=True, trim="-")
    return "0" if text == "-0" and math.copysign(1.0, value) > 0 else text


_CHUNK = re.compile(r"[0-9]+|[^0-9]+")


def _chunks(text: str) -> list[str]:
    return _CHUNK.findall(text)


def natural_less(a: str, b: str) -> bool:
    """``natsort.Compare(a, b)`` of github.com/facette/natsort, as sort_by_label uses it."""
    ca, cb = _chunks(a), _chunks(b)
    for i, x in enumerate(ca):
        if i >= len(cb):
            return False
        y = cb[i]
        if x[0].isdigit() and y[0].isdigit() and x.isascii() and y.isascii():
            xi, yi = int(x), int(y)
            if xi != yi:
                return xi < yi
        elif x != y:
            return x < y
        if i == len(ca) - 1:
            return True
        if i == len(cb) - 1:
            return False
    return False


# ---------------------------------------------------------------- xxHash64

_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261
_MASK = (1 << 64) - 1


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * _P1 + _P4) & _MASK


def xxhash64(data: bytes) -> int:
    """xxHash64 with seed 0 (github.com/cespare/xxhash, used by ``Labels.Hash``)."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (_P1 + _P2) & _MASK
        v2 = _P2
        v3 = 0
        v4 = (-_P1) & _MASK
        while i + 32 <= n:
            v1 = _round(v1, int.from_bytes(data[i:i + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[i + 8:i + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[i + 16:i + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[i + 24:i + 32], "little"))
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = _P5
    h = (h + n) & _MASK
    while i + 8 <= n:
        h ^= _round(0, int.from_bytes(data[i:i + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _MASK
        h = (_rotl(h, 23) * _P2 + _P3) & _MASK
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _MASK
        h = (_rotl(h, 11) * _P1) & _MASK
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _MASK
    h ^= h >> 29
    h = (h * _P3) & _MASK
    h ^= h >> 32
    return h


def labels_hash(labels: Labels) -> int:
    """Prometheus's ``Labels.Hash()``: xxHash64 of name, 0xff, value, 0xff, ..."""
    buf = bytearray()
    for k, v in labels:
        buf += k.encode("utf-8", "surrogateescape") + b"\xff"
        buf += v.encode("utf-8", "surrogateescape") + b"\xff"
    return xxhash64(bytes(buf))


def group_ids(keys: Sequence[Labels]) -> tuple[np.ndarray, list[Labels]]:
    """Dense ids for keys in order of first appearance, and the distinct keys."""
    index: dict[Labels, int] = {}
    ids = np.empty(len(keys), dtype=np.int64)
    for i, k in enumerate(keys):
        ids[i] = index.setdefault(k, len(index))
    return ids, list(index)
