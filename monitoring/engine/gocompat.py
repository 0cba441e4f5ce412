"""Go library behaviours that Prometheus's answers depend on, shared by both evaluators.

These are not query semantics but bit-exact details of Go libraries that
results expose: ``Labels.String()`` in error messages, the xxHash64 of a
label set (``limit_ratio`` picks series by it), ``strconv.FormatFloat(v, 'f',
-1, 64)`` (``count_values`` label values, API output) and the natural order of
``sort_by_label``. They are written once
here so that the evaluators cannot disagree about them.
"""

from __future__ import annotations

import math
import re
import struct
from decimal import Decimal
from typing import TYPE_CHECKING

from monitoring.dsl.lexical import is_label_name, quote

if TYPE_CHECKING:
    from monitoring.engine.model import Labels


def format_f(value: float) -> str:
    """``strconv.FormatFloat(v, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def labels_string(labels: Labels) -> str:
    """``labels.Labels.String()``: ``{__name__="x", a="b"}``, names quoted unless legacy."""
    parts = []
    for k, v in labels:
        name = k if is_label_name(k) else quote(k)
        parts.append(f"{name}={quote(v)}")
    return "{" + ", ".join(parts) + "}"


_CHUNK = re.compile(r"[0-9]+|[^0-9]+")


def natural_less(a: str, b: str) -> bool:
    """``natsort.Compare(a, b)`` of github.com/facette/natsort, as ``sort_by_label`` uses it."""
    ca: list[str] = _CHUNK.findall(a)
    cb: list[str] = _CHUNK.findall(b)
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
    """xxHash64 with seed 0 (github.com/cespare/xxhash, behind ``Labels.Hash``)."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (_P1 + _P2) & _MASK
        v2 = _P2
        v3 = 0
        v4 = (-_P1) & _MASK
        while i + 32 <= n:
            a, b, c, d = struct.unpack_from("<4Q", data, i)
            v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = _P5
    h = (h + n) & _MASK
    while i + 8 <= n:
        (k,) = struct.unpack_from("<Q", data, i)
        h ^= _round(0, k)
        h = (_rotl(h, 27) * _P1 + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        (k4,) = struct.unpack_from("<I", data, i)
        h ^= (k4 * _P1) & _MASK
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
    """``labels.Labels.Hash()``: xxHash64 of ``name 0xff value 0xff`` for each label."""
    buf = bytearray()
    for name, value in labels:
        buf += name.encode("utf-8", "surrogateescape") + b"\xff"
        buf += value.encode("utf-8", "surrogateescape") + b"\xff"
    return xxhash64(bytes(buf))
