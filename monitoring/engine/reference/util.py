"""Small numeric and text helpers that copy Go's and Prometheus's exact behaviour.

Prometheus's answers depend on a few Go details: Kahan (Neumaier) summation,
NaN ordering in sorts, ``%g`` and ``'f', -1`` float formatting, ``strconv.Quote``,
integer division truncating towards zero, and the xxHash of a label set
(``limit_ratio`` samples series by it). They live here so the evaluator reads
like the Go code it mirrors.
"""

from __future__ import annotations

import math
import struct
from decimal import Decimal

from monitoring.engine.model import Labels


def kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    """One step of Neumaier-compensated summation (``kahansum.Inc``)."""
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def ieee_div(a: float, b: float) -> float:
    """Float division as Go does it: ``x/0`` is ±Inf or NaN instead of an exception."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def go_div(a: int, b: int) -> int:
    """Integer division truncating towards zero, as Go's ``/`` on int64."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def nan_first(value: float) -> tuple[int, float]:
    """Sort key putting NaN below every number (``vectorByValueHeap.Less``)."""
    return (0, 0.0) if math.isnan(value) else (1, value)


def quantile(q: float, values: list[float]) -> float:
    """``quantile`` of quantile.go: linear interpolation between closest ranks."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=nan_first)
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def format_g(value: float) -> str:
    """Go's ``%g``: shortest digits, exponent form below 1e-4 or from 1e21 on."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exp = Decimal(repr(value)).as_tuple()
    assert isinstance(exp, int)
    text = "".join(str(d) for d in digits).rstrip("0") or "0"
    point = len(digits) + exp  # position of the decimal point in ``digits``
    x = point - 1
    out: str
    if x < -4 or x >= 21:
        mant = text[0] + ("." + text[1:] if len(text) > 1 else "")
        out = f"{mant}e{'-' if x < 0 else '+'}{abs(x):02d}"
    elif point <= 0:
        out = "0." + "0" * (-point) + text
    elif point >= len(text):
        out = text + "0" * (point - len(text))
    else:
        out = text[:point] + "." + text[point:]
    return ("-" if sign else "") + out


def format_f(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)`` (count_values' label values)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def go_quote(text: str) -> str:
    r"""Go's ``strconv.Quote`` (undecodable bytes, kept as surrogates, print as ``\\xNN``)."""
    out = ['"']
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def valid_label_name(name: str) -> bool:
    """Prometheus 3's UTF-8 label names: non-empty, valid UTF-8."""
    if not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
    """XXH64 with seed 0 (the hash Prometheus uses for label sets)."""
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
    """``labels.Labels.Hash()``: xxHash of ``name 0xff value 0xff`` for each label."""
    buf = bytearray()
    for name, value in labels:
        buf += name.encode("utf-8", "surrogateescape") + b"\xff"
        buf += value.encode("utf-8", "surrogateescape") + b"\xff"
    return xxhash64(bytes(buf))
