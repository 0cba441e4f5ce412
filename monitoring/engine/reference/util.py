"""Small numeric and text helpers that copy Go's and Prometheus's exact behaviour.

Prometheus's answers depend on a few Go details: Kahan (Neumaier) summation,
NaN ordering in sorts, ``%g`` and ``'f', -1`` float formatting, ``strconv.Quote``,
integer division truncating towards zero, and the xxHash of a label set
(``limit_ratio`` samples series by it). They live here so the evaluator reads
like the Go code it mirrors.
"""

from __future__ import annotations

import math
from decimal import Decimal

from monitoring.dsl.lexical import quote
from monitoring.engine.gocompat import format_f as format_f
from monitoring.engine.gocompat import labels_hash as labels_hash
from monitoring.engine.gocompat import xxhash64 as xxhash64


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


go_quote = quote
"""Go's ``strconv.Quote`` (raw bytes kept as surrogates print as ``\\xNN``)."""


def valid_label_name(name: str) -> bool:
    """Prometheus 3's UTF-8 label names: non-empty, valid UTF-8."""
    if not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
