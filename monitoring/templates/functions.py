"""Go values, Go formatting and the Prometheus template function set.

Rendering "exactly as Prometheus would" means reproducing Go's own behaviour,
not Python's: ``{{ $value }}`` prints ``1.234567e+06`` (``fmt``'s shortest
``%v``), ``humanize`` rounds with ``%.4g``, ``printf "%d" 1.5`` prints
``%!d(float64=1.5)``, ``eq $value 1`` fails because float64 and int are
incomparable, and ``reReplaceAll`` follows Go's empty-match rules. This module
holds that emulation: a small model of the Go values a template can see, ports
of the parts of ``fmt``, ``strconv`` and ``time`` that templates reach, and the
functions themselves (Go's builtins plus Prometheus's ``template.go``).

Values are plain Python objects: ``None`` (nil / no value), ``bool``, ``int``
(Go int), ``float`` (float64), ``str``, ``dict`` (``map[string]string``) and the
wrapper types below for everything else.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import math
import re
import unicodedata
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import re2

# ---------------------------------------------------------------------------
# Errors and the rendering context


class TemplateRenderError(Exception):
    """A template failed at execution time, where Go's ``Execute`` returns an error.

    ``offset``/``end`` delimit the node being evaluated (``None`` if unknown).
    """

    def __init__(self, message: str, offset: int | None = None, end: int | None = None,
                 context: str = "") -> None:
        where = f"executing at <{context}>: " if context else ""
        super().__init__(where + message)
        self.message = message
        self.offset = offset
        self.end = end


class FuncError(Exception):
    """Raised by a template function; the evaluator reports "error calling NAME: ..."."""


QueryFunc = Callable[[str], list[tuple[dict[str, str], float]]]


@dataclass
class TemplateContext:
    """What Prometheus hands an alert template: labels, value and server settings.

    ``query`` answers the ``query`` template function with ``(labels, value)``
    pairs; without it, ``query`` fails at render time.
    """

    labels: dict[str, str]
    value: float
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    query: QueryFunc | None = None


# ---------------------------------------------------------------------------
# Value model


class AnyMap(dict[str, object]):
    """A ``map[string]interface{}`` (from ``args``); missing keys read as nil, not ""."""


@dataclass(eq=False)
class Sample:
    """Prometheus's ``*sample``: one query result. Identity matters (Go pointer)."""

    labels: dict[str, str]
    value: float


class QueryResult(list[Sample]):
    """Prometheus's ``queryResult`` (``[]*sample``); shared and sorted in place like a slice."""


@dataclass(frozen=True)
class SampleValue:
    """A dereferenced ``sample`` struct, as Go prints it (``{map[...] 1}`` without ``&``)."""

    sample: Sample


@dataclass(frozen=True)
class AlertData:
    """The template's data (``.``): the struct Prometheus builds for alert templates."""

    labels: dict[str, str]
    external_labels: dict[str, str]
    external_url: str
    value: float

    def fields(self) -> dict[str, object]:
        """Exported fields by Go name, in declaration order."""
        return {"Labels": self.labels, "ExternalLabels": self.external_labels,
                "ExternalURL": self.external_url, "Value": self.value}


_ALERT_DATA_TYPE = ("struct { Labels map[string]string; ExternalLabels map[string]string; "
                    "ExternalURL string; Value interface {} }")


def sample_fields(sample: Sample) -> dict[str, object]:
    """Exported fields of ``sample`` by Go name."""
    return {"Labels": sample.labels, "Value": sample.value}


class SafeHTML(str):
    """``html/template.HTML`` from ``safeHtml``: a string kind, but not a ``string``."""

    __slots__ = ()


class _NamedInt(int):
    """An int-kind Go type whose ``String`` method prints a name (``time.Month``)."""

    names: tuple[str, ...] = ()
    go_name = "int"
    offset = 0

    def __str__(self) -> str:
        index = int(self) - self.offset
        if 0 <= index < len(self.names):
            return self.names[index]
        return f"%!{self.go_name.split('.')[-1]}({int(self)})"


_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December")
_WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class Month(_NamedInt):
    """``time.Month``."""

    names = _MONTHS
    go_name = "time.Month"
    offset = 1


class Weekday(_NamedInt):
    """``time.Weekday``."""

    names = _WEEKDAYS
    go_name = "time.Weekday"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class GoTime:
    """A ``*time.Time`` in UTC with millisecond precision (what ``toTime`` produces)."""

    unix_ms: int

    @property
    def moment(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.unix_ms)

    @property
    def nanosecond(self) -> int:
        return (self.unix_ms % 1000) * 1_000_000

    def string(self) -> str:
        """Go's ``Time.String``."""
        return format_time(self, "2006-01-02 15:04:05.999999999 -0700 MST")


def go_type_name(value: object) -> str:
    """The Go type name used in error messages and ``%T``."""
    names: list[tuple[type, str]] = [
        (bool, "bool"), (_NamedInt, ""), (int, "int"), (float, "float64"),
        (SafeHTML, "template.HTML"), (str, "string"), (AnyMap, "map[string]interface {}"),
        (dict, "map[string]string"), (QueryResult, "template.queryResult"),
        (Sample, "*template.sample"), (SampleValue, "template.sample"),
        (GoTime, "*time.Time"), (AlertData, _ALERT_DATA_TYPE),
    ]
    if value is None:
        return "<nil>"
    for python_type, name in names:
        if isinstance(value, python_type):
            return value.go_name if isinstance(value, _NamedInt) else name
    return type(value).__name__


def is_true(value: object) -> bool:
    """Go template truthiness: the zero value of any type is false, structs are true."""
    if value is None:
        return False
    if isinstance(value, bool | int | float):
        return value != 0
    if isinstance(value, str | dict | list):
        return len(value) > 0
    return True


# ---------------------------------------------------------------------------
# strconv


_QUOTE_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
                  "\t": "\\t", "\v": "\\v"}


def _escape_rune(ch: str, quote: str, ascii_only: bool) -> str:
    code = ord(ch)
    if ch in (quote, "\\"):
        return "\\" + ch
    printable = ch.isprintable() and not 0xD800 <= code <= 0xDFFF
    if printable and (not ascii_only or code < 0x80):
        return ch
    if ch in _QUOTE_ESCAPES:
        return _QUOTE_ESCAPES[ch]
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0xD800 <= code <= 0xDFFF:
        code = 0xFFFD
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def go_quote(text: str, quote: str = '"', ascii_only: bool = False) -> str:
    """Go's ``strconv.Quote`` (and ``QuoteToASCII``/``QuoteRune`` via the options)."""
    return quote + "".join(_escape_rune(ch, quote, ascii_only) for ch in text) + quote


def _can_backquote(text: str) -> bool:
    return all(ch == "\t" or (ch >= " " and ch not in "`\x7f\ufeff") for ch in text)


def go_underscore_ok(text: str) -> bool:
    """Go's ``underscoreOK``: underscores only between digits or after a base prefix."""
    if text[:1] in ("+", "-"):
        text = text[1:]
    saw, start, hexadecimal = "^", 0, False
    if len(text) >= 2 and text[0] == "0" and text[1].lower() in "box":
        saw, start, hexadecimal = "0", 2, text[1].lower() == "x"
    for ch in text[start:]:
        if "0" <= ch <= "9" or (hexadecimal and ch.lower() in "abcdef"):
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


_DECIMAL_FLOAT = re.compile(r"[+-]?(?:[0-9_]+(?:\.[0-9_]*)?|\.[0-9_]+)(?:[eE][+-]?[0-9_]+)?")
_HEX_FLOAT = re.compile(
    r"[+-]?0[xX](?:[0-9a-fA-F_]+(?:\.[0-9a-fA-F_]*)?|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+")
_SPECIAL_FLOATS = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf,
                   "+infinity": math.inf, "-infinity": -math.inf, "nan": math.nan}


def parse_go_float(text: str) -> float:
    """Go's ``strconv.ParseFloat(text, 64)``; raises ``ValueError`` with Go's message."""
    special = _SPECIAL_FLOATS.get(text.lower())
    if special is not None:
        return special
    syntax_ok = bool(_DECIMAL_FLOAT.fullmatch(text) or _HEX_FLOAT.fullmatch(text))
    digits = any(c.isdigit() for c in text.split("e")[0].split("E")[0].split("p")[0])
    if not syntax_ok or not digits or ("_" in text and not go_underscore_ok(text)):
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(text)}: invalid syntax")
    clean = text.replace("_", "")
    try:
        value = float.fromhex(clean) if "x" in clean.lower() else float(clean)
    except OverflowError:
        value = math.inf
    if math.isinf(value):
        raise ValueError(f"strconv.ParseFloat: parsing {go_quote(text)}: value out of range")
    return value


_MIN_INT64 = -(2**63)


def go_float_to_int64(value: float) -> int:
    """``int64(f)`` as Go compiles it on amd64: truncation, MinInt64 when out of range."""
    if math.isnan(value) or not -(2.0**63) <= value < 2.0**63:
        return _MIN_INT64
    return int(value)


def _go_div(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _go_mod(a: int, b: int) -> int:
    """Go's ``%``, whose result takes the dividend's sign."""
    return a - _go_div(a, b) * b


# ---------------------------------------------------------------------------
# fmt


@dataclass
class _Flags:
    """One verb's flags, width and precision (Go's ``fmt.fmtFlags`` plus ``wid``/``prec``)."""

    plus: bool = False
    minus: bool = False
    sharp: bool = False
    space: bool = False
    zero: bool = False
    plus_v: bool = False
    sharp_v: bool = False
    wid: int | None = None
    prec: int | None = None


def _pad(text: str, flags: _Flags, zero: bool = False) -> str:
    """Pad to the width: spaces (or zeros when ``zero``) on the left, spaces with ``-``."""
    if flags.wid is None or len(text) >= flags.wid:
        return text
    fill = flags.wid - len(text)
    if flags.minus:
        return text + " " * fill
    return ("0" if zero else " ") * fill + text


def _bad_verb(verb: str, arg: object, flags: _Flags) -> str:
    if arg is None:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({go_type_name(arg)}={_print_value(arg, 'v', flags, 0)})"


def _fmt_bool(value: bool, verb: str, flags: _Flags) -> str:
    if verb not in "tv":
        return _bad_verb(verb, value, flags)
    return _pad("true" if value else "false", flags, flags.zero)


_INT_BASES = {"v": 10, "d": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}


def _fmt_int(value: int, verb: str, flags: _Flags) -> str:
    if verb in _INT_BASES:
        return _fmt_integer(value, _INT_BASES[verb], verb, flags)
    if verb == "c":
        return _pad(_rune(value), flags, flags.zero)
    if verb == "q":
        char = _rune(value)
        if flags.sharp and char.isprintable():
            return _pad(f"'{char}'", flags, flags.zero)
        return _pad(go_quote(char, "'", flags.plus), flags, flags.zero)
    if verb == "U":
        text = f"U+{value:0{max(4, flags.prec or 0)}X}" if value >= 0 else f"U+{value:X}"
        if flags.sharp and 0 <= value <= 0x10FFFF and _rune(value).isprintable():
            text += f" '{_rune(value)}'"
        return _pad(text, flags)
    return _bad_verb(verb, value, flags)


def _rune(value: int) -> str:
    if 0 <= value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
        return chr(value)
    return "\ufffd"


def _fmt_integer(value: int, base: int, verb: str, flags: _Flags) -> str:
    """Go's ``fmt.fmtInteger``: precision, zero padding, ``#`` prefixes and sign."""
    negative, magnitude = value < 0, abs(value)
    min_digits = 0
    if flags.prec is not None:
        min_digits = flags.prec
        if min_digits == 0 and magnitude == 0:
            return _pad("", flags)
    elif flags.zero and not flags.minus and flags.wid is not None:
        min_digits = flags.wid - (1 if negative or flags.plus or flags.space else 0)
    spec = {2: "b", 8: "o", 10: "d", 16: "X" if verb == "X" else "x"}[base]
    digits = format(magnitude, spec).rjust(min_digits, "0")
    if flags.sharp:
        if base == 2:
            digits = "0b" + digits
        elif base == 8 and not digits.startswith("0"):
            digits = "0" + digits
        elif base == 16:
            digits = ("0X" if verb == "X" else "0x") + digits
    if verb == "O":
        digits = "0o" + digits
    sign = "-" if negative else "+" if flags.plus else " " if flags.space else ""
    return _pad(sign + digits, flags)


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-tripping decimal digits of ``value`` and the decimal point position.

    ``value == 0.DIGITS * 10**point``, the convention of Go's ``strconv``.
    """
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    everything = whole + fraction
    stripped = everything.lstrip("0")
    digits = stripped.rstrip("0")
    if not digits:
        return "0", 1
    trailing = len(stripped) - len(digits)
    point = len(digits) + int(exponent or 0) - len(fraction) + trailing
    return digits, point


def _format_e(digits: str, point: int, upper: bool) -> str:
    exponent = point - 1 if digits != "0" else 0
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exponent < 0 else "+"
    return f"{mantissa}{'E' if upper else 'e'}{sign}{abs(exponent):02d}"


def _format_f(digits: str, point: int) -> str:
    if point <= 0:
        return "0." + "0" * -point + digits if digits != "0" else "0"
    if point >= len(digits):
        return digits + "0" * (point - len(digits))
    return digits[:point] + "." + digits[point:]


def _hex_float(magnitude: float, prec: int, upper: bool) -> str:
    """Go's ``%x`` for a non-negative float: ``0x1.8p+00``."""
    mantissa, exponent = 0, 0
    if magnitude:
        fraction, power = math.frexp(magnitude)
        mantissa, exponent = int(fraction * (1 << 53)), power - 1
    width = 13
    if 0 <= prec < width:
        shift = 4 * (width - prec)
        kept, rest = divmod(mantissa, 1 << shift)
        half = 1 << (shift - 1)
        if rest > half or (rest == half and kept & 1):
            kept += 1
        if kept >> (4 * prec) >= 2:
            kept >>= 1
            exponent += 1
        mantissa, width = kept, prec
    lead, frac = mantissa >> (4 * width), mantissa & ((1 << (4 * width)) - 1)
    hex_digits = f"{frac:0{width}x}" if width else ""
    if prec < 0:
        hex_digits = hex_digits.rstrip("0")
    elif prec > width:
        hex_digits += "0" * (prec - width)
    text = f"0x{lead}" + (f".{hex_digits}" if hex_digits else "")
    text += f"p{'-' if exponent < 0 else '+'}{abs(exponent):02d}"
    return text.upper() if upper else text


def _binary_float(magnitude: float) -> str:
    """Go's ``%b``: ``4503599627370496p-52``."""
    if magnitude < 2.2250738585072014e-308:
        return f"{int(magnitude * 2.0**1074)}p-1074"
    fraction, power = math.frexp(magnitude)
    exponent = power - 53
    return f"{int(fraction * (1 << 53))}p{'+' if exponent >= 0 else '-'}{abs(exponent)}"


def format_float(value: float, verb: str, prec: int) -> str:
    """Go's ``strconv.FormatFloat(value, verb, prec, 64)``; ``prec < 0`` means shortest."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    magnitude = abs(value)
    if verb in "xX":
        return sign + _hex_float(magnitude, prec, verb == "X")
    if verb == "b":
        return sign + _binary_float(magnitude)
    if prec >= 0:
        if verb in "gG":
            prec = max(prec, 1)
        return sign + format(magnitude, f".{prec}{verb}")
    digits, point = _shortest_digits(magnitude)
    exponent = point - 1
    if verb in "eE" or (verb in "gG" and (exponent < -4 or exponent >= 6) and digits != "0"):
        return sign + _format_e(digits, point, verb in "EG")
    return sign + _format_f(digits, point)


def _sharp_float(num: str, verb: str, prec: int) -> str:
    """``%#g`` and friends: keep trailing zeros and always print a decimal point."""
    digits = (6 if prec == -1 else prec) if verb in "vgGx" else 0
    tail, has_point, saw_nonzero = "", False, False
    i = 1
    while i < len(num):
        ch = num[i]
        if ch == ".":
            has_point = True
        elif ch in "pP" or (ch in "eE" and verb not in "xX"):
            tail, num = num[i:], num[:i]
            break
        else:
            saw_nonzero = saw_nonzero or ch != "0"
            digits -= saw_nonzero
        i += 1
    if not has_point:
        if len(num) == 2 and num[1] == "0":
            digits -= 1
        num += "."
    return num + "0" * max(digits, 0) + tail


def _fmt_float(value: float, verb: str, flags: _Flags) -> str:
    """Go's ``fmt.fmtFloat``: sign handling, Inf/NaN, ``#`` and zero padding."""
    defaults = {"v": ("g", -1), "b": ("b", -1), "g": ("g", -1), "G": ("G", -1),
                "x": ("x", -1), "X": ("X", -1), "f": ("f", 6), "F": ("F", 6),
                "e": ("e", 6), "E": ("E", 6)}
    if verb not in defaults:
        return _bad_verb(verb, value, flags)
    conv, prec = defaults[verb]
    if flags.prec is not None:
        prec = flags.prec
    num = format_float(value, conv, prec)
    num = num if num[0] in "+-" else "+" + num
    if flags.space and num[0] == "+" and not flags.plus:
        num = " " + num[1:]
    if num[1] in "IN":
        if num[1] == "N" and not flags.space and not flags.plus:
            num = num[1:]
        return _pad(num, flags)
    if flags.sharp and conv != "b":
        num = _sharp_float(num, conv, prec)
    if flags.plus or num[0] != "+":
        if flags.zero and not flags.minus and flags.wid is not None and flags.wid > len(num):
            return num[0] + "0" * (flags.wid - len(num)) + num[1:]
        return _pad(num, flags)
    return _pad(num[1:], flags, flags.zero)


def _fmt_string(text: str, verb: str, flags: _Flags, arg: object) -> str:
    if flags.prec is not None:
        text = text[:flags.prec]
    if verb == "s" or (verb == "v" and not flags.sharp_v):
        return _pad(text, flags)
    if verb == "q" or verb == "v":
        if flags.sharp and _can_backquote(text):
            return _pad(f"`{text}`", flags)
        return _pad(go_quote(text, '"', flags.plus), flags)
    if verb in "xX":
        return _fmt_hex_string(text, verb, flags)
    return _bad_verb(verb, arg, flags)


def _fmt_hex_string(text: str, verb: str, flags: _Flags) -> str:
    data = text.encode("utf-8", "surrogatepass")
    prefix = "0X" if verb == "X" else "0x"
    pairs = [format(b, "02X" if verb == "X" else "02x") for b in data]
    if flags.space:
        body = " ".join((prefix if flags.sharp else "") + p for p in pairs)
    else:
        body = (prefix if flags.sharp and pairs else "") + "".join(pairs)
    return _pad(body, flags)


def _fmt_composite(value: object, verb: str, flags: _Flags, depth: int) -> str | None:
    """Maps, slices and structs, formatted element by element as Go's ``printValue``."""
    def item(v: object) -> str:
        return _print_value(v, verb, flags, depth + 1)

    def struct(fields: dict[str, object]) -> str:
        named = flags.plus_v or flags.sharp_v
        return "{" + " ".join((f"{k}:" if named else "") + item(v) for k, v in fields.items()) + "}"

    if isinstance(value, dict):
        return "map[" + " ".join(f"{item(k)}:{item(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(item(v) for v in value) + "]"
    if isinstance(value, Sample):
        return "&" + struct(sample_fields(value))
    if isinstance(value, SampleValue):
        return struct(sample_fields(value.sample))
    if isinstance(value, AlertData):
        return struct(value.fields())
    return None


def _print_value(value: object, verb: str, flags: _Flags, depth: int) -> str:
    """Format one operand for ``verb`` (Go's ``printArg``/``printValue``)."""
    if value is None:
        return _pad("<nil>", flags) if verb in "vT" or depth else _bad_verb(verb, value, flags)
    if verb == "T" and depth == 0:
        return _pad(go_type_name(value), flags)
    stringer = value.string() if isinstance(value, GoTime) else (
        str(value) if isinstance(value, _NamedInt) else None)
    if stringer is not None and verb in "vsxXq":
        return _fmt_string(stringer, verb, flags, value)
    if isinstance(value, bool):
        return _fmt_bool(value, verb, flags)
    if isinstance(value, int):
        return _fmt_int(value, verb, flags)
    if isinstance(value, float):
        return _fmt_float(value, verb, flags)
    if isinstance(value, str):
        return _fmt_string(value, verb, flags, value)
    composite = _fmt_composite(value, verb, flags, depth)
    return composite if composite is not None else _bad_verb(verb, value, flags)


def go_sprint(args: Sequence[object]) -> str:
    """``fmt.Sprint``: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(_print_value(arg, "v", _Flags(), 0))
        prev_string = is_string
    return "".join(out)


def go_sprintln(args: Sequence[object]) -> str:
    """``fmt.Sprintln``: always spaces between operands, then a newline."""
    return " ".join(_print_value(a, "v", _Flags(), 0) for a in args) + "\n"


def template_print(value: object) -> str:
    """How an action prints its value: Go's ``printableValue`` then ``fmt.Fprint``."""
    if value is None:
        return "<no value>"
    if isinstance(value, Sample):
        value = SampleValue(value)
    return _print_value(value, "v", _Flags(), 0)


_TOO_LARGE = 1_000_000


def _parse_num(fmt: str, i: int) -> tuple[int | None, int]:
    """Digits at ``fmt[i:]``; (None, len) on absurd values, as Go's ``parsenum``."""
    j, num = i, 0
    while j < len(fmt) and fmt[j].isascii() and fmt[j].isdigit():
        if num > _TOO_LARGE:
            return None, len(fmt)
        num = num * 10 + int(fmt[j])
        j += 1
    return (num if j > i else None), j


class _Printf:
    """Go's ``fmt.Sprintf`` state machine (``doPrintf``), verb by verb."""

    def __init__(self, fmt: str, args: Sequence[object]) -> None:
        self.fmt, self.args = fmt, list(args)
        self.out: list[str] = []
        self.arg_num = 0
        self.reordered = False
        self.good_arg_num = True

    def run(self) -> str:
        i = 0
        while i < len(self.fmt):
            j = self.fmt.find("%", i)
            if j < 0:
                self.out.append(self.fmt[i:])
                break
            self.out.append(self.fmt[i:j])
            i = self.directive(j + 1)
        if not self.reordered and self.arg_num < len(self.args):
            extra = ", ".join("<nil>" if a is None else
                              f"{go_type_name(a)}={_print_value(a, 'v', _Flags(), 0)}"
                              for a in self.args[self.arg_num:])
            self.out.append(f"%!(EXTRA {extra})")
        return "".join(self.out)

    def arg_index(self, i: int) -> tuple[int, bool]:
        """An explicit ``[n]`` argument index at ``fmt[i:]``."""
        if i >= len(self.fmt) or self.fmt[i] != "[":
            return i, False
        self.reordered = True
        close = self.fmt.find("]", i + 1)
        if close < 0 or len(self.fmt) - i < 3:
            self.good_arg_num = False
            return i + 1, False
        num, after = _parse_num(self.fmt, i + 1)
        if num is None or after != close:
            self.good_arg_num = False
            return close + 1, False
        if 0 <= num - 1 < len(self.args):
            self.arg_num = num - 1
            return close + 1, True
        self.good_arg_num = False
        return close + 1, True

    def star(self) -> int | None:
        """A ``*`` width or precision taken from the arguments."""
        if self.arg_num >= len(self.args):
            return None
        value = self.args[self.arg_num]
        self.arg_num += 1
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) > _TOO_LARGE:
            return None
        return value

    def flags(self, i: int, flags: _Flags) -> int:
        mapping = {"#": "sharp", "0": "zero", "+": "plus", "-": "minus", " ": "space"}
        while i < len(self.fmt) and self.fmt[i] in mapping:
            setattr(flags, mapping[self.fmt[i]], True)
            i += 1
        if flags.minus:
            flags.zero = False
        return i

    def width(self, i: int, flags: _Flags, after_index: bool) -> tuple[int, bool]:
        if i < len(self.fmt) and self.fmt[i] == "*":
            flags.wid = self.star()
            if flags.wid is None:
                self.out.append("%!(BADWIDTH)")
            elif flags.wid < 0:
                flags.wid, flags.minus, flags.zero = -flags.wid, True, False
            return i + 1, False
        flags.wid, i2 = _parse_num(self.fmt, i)
        if after_index and flags.wid is not None:
            self.good_arg_num = False
        return i2, after_index

    def precision(self, i: int, flags: _Flags, after_index: bool) -> tuple[int, bool]:
        if not (i + 1 < len(self.fmt) and self.fmt[i] == "."):
            return i, after_index
        i += 1
        if after_index:
            self.good_arg_num = False
        i, after_index = self.arg_index(i)
        if i < len(self.fmt) and self.fmt[i] == "*":
            flags.prec = self.star()
            if flags.prec is not None and flags.prec < 0:
                flags.prec = None
            if flags.prec is None:
                self.out.append("%!(BADPREC)")
            return i + 1, False
        prec, i = _parse_num(self.fmt, i)
        flags.prec = 0 if prec is None else prec
        return i, after_index

    def directive(self, i: int) -> int:
        """Handle one ``%...verb`` starting after the percent sign; return the next index."""
        flags = _Flags()
        self.good_arg_num = True
        i = self.flags(i, flags)
        i, after_index = self.arg_index(i)
        i, after_index = self.width(i, flags, after_index)
        i, after_index = self.precision(i, flags, after_index)
        if not after_index:
            i, after_index = self.arg_index(i)
        if i >= len(self.fmt):
            self.out.append("%!(NOVERB)")
            return i
        verb = self.fmt[i]
        if verb == "%":
            self.out.append("%")
        elif not self.good_arg_num:
            self.out.append(f"%!{verb}(BADINDEX)")
        elif self.arg_num >= len(self.args):
            self.out.append(f"%!{verb}(MISSING)")
        else:
            if verb == "v":
                flags.sharp_v, flags.sharp = flags.sharp, False
                flags.plus_v, flags.plus = flags.plus, False
            self.out.append(_print_value(self.args[self.arg_num], verb, flags, 0))
            self.arg_num += 1
        return i + 1


def go_sprintf(fmt: str, *args: object) -> str:
    """``fmt.Sprintf`` with Go's verbs, flags and ``%!verb(...)`` error annotations."""
    return _Printf(fmt, args).run()


# ---------------------------------------------------------------------------
# time


_STD_CHUNKS = (
    "January", "Jan", "Monday", "Mon", "MST", "2006", "002", "__2", "_2", "15",
    "-07:00:00", "-070000", "-07:00", "-0700", "-07", "Z07:00:00", "Z070000", "Z07:00",
    "Z0700", "Z07", "01", "02", "03", "04", "05", "06", "PM", "pm", "1", "2", "3", "4", "5",
)


def _frac_chunk(layout: str, i: int) -> str | None:
    """``.000``/``,999``-style fractional seconds at ``layout[i]``, if any."""
    if layout[i] not in ".," or i + 1 >= len(layout) or layout[i + 1] not in "09":
        return None
    j = i + 1
    while j < len(layout) and layout[j] == layout[i + 1]:
        j += 1
    if j < len(layout) and layout[j].isdigit():
        return None
    return layout[i:j]


def _std_chunk_at(layout: str, i: int) -> str | None:
    """The layout element starting at ``layout[i]`` (Go's ``nextStdChunk``), if any."""
    frac = _frac_chunk(layout, i)
    if frac is not None:
        return frac
    rest = layout[i:]
    if rest.startswith("_2006"):  # a literal underscore before the year
        return None
    for chunk in _STD_CHUNKS:
        if rest.startswith(chunk) and not (chunk in ("Jan", "Mon") and rest[3:4].islower()):
            return chunk
    return None


@functools.lru_cache(maxsize=64)
def _layout_chunks(layout: str) -> tuple[tuple[str, bool], ...]:
    """Split a Go time layout into ``(text, is_element)`` pieces."""
    pieces: list[tuple[str, bool]] = []
    literal, i = "", 0
    while i < len(layout):
        chunk = _std_chunk_at(layout, i)
        if chunk is None:
            literal += layout[i]
            i += 1
            continue
        if literal:
            pieces.append((literal, False))
            literal = ""
        pieces.append((chunk, True))
        i += len(chunk)
    if literal:
        pieces.append((literal, False))
    return tuple(pieces)


def _format_fraction(chunk: str, nanos: int) -> str:
    digits = f"{nanos:09d}"[: len(chunk) - 1]
    if chunk[1] == "9":
        digits = digits.rstrip("0")
        return chunk[0] + digits if digits else ""
    return chunk[0] + digits


def _format_element(chunk: str, moment: datetime, nanos: int) -> str:
    if chunk[0] in ".,":
        return _format_fraction(chunk, nanos)
    hour12 = moment.hour % 12 or 12
    values: dict[str, str] = {
        "January": _MONTHS[moment.month - 1], "Jan": _MONTHS[moment.month - 1][:3],
        "Monday": _WEEKDAYS[(moment.weekday() + 1) % 7],
        "Mon": _WEEKDAYS[(moment.weekday() + 1) % 7][:3], "MST": "UTC",
        "2006": f"{moment.year:04d}", "06": f"{moment.year % 100:02d}",
        "1": str(moment.month), "01": f"{moment.month:02d}",
        "2": str(moment.day), "_2": f"{moment.day:2d}", "02": f"{moment.day:02d}",
        "__2": f"{moment.timetuple().tm_yday:3d}", "002": f"{moment.timetuple().tm_yday:03d}",
        "15": f"{moment.hour:02d}", "3": str(hour12), "03": f"{hour12:02d}",
        "4": str(moment.minute), "04": f"{moment.minute:02d}",
        "5": str(moment.second), "05": f"{moment.second:02d}",
        "PM": "PM" if moment.hour >= 12 else "AM", "pm": "pm" if moment.hour >= 12 else "am",
        "-07:00:00": "+00:00:00", "-070000": "+000000", "-07:00": "+00:00", "-0700": "+0000",
        "-07": "+00",
    }
    return "Z" if chunk.startswith("Z") else values[chunk]


def format_time(value: GoTime, layout: str) -> str:
    """Go's ``Time.Format`` for a UTC time."""
    moment, nanos = value.moment, value.nanosecond
    return "".join(_format_element(text, moment, nanos) if element else text
                   for text, element in _layout_chunks(layout))


def float_to_time(value: float) -> GoTime:
    """Prometheus's ``floatToTime``: seconds since the epoch, truncated to milliseconds."""
    if math.isnan(value) or math.isinf(value):
        raise FuncError("value is NaN or Inf")
    nanos = value * 1e9
    if nanos > 2.0**63 or nanos < -(2.0**63):
        raise FuncError(f"{format_float(value, 'g', -1)} cannot be represented as a "
                        "nanoseconds timestamp since it overflows int64")
    return GoTime(_go_div(go_float_to_int64(nanos), 1_000_000))


# ---------------------------------------------------------------------------
# Function table


class Param(enum.Enum):
    """A Go parameter type, which decides how arguments are checked and converted."""

    ANY = "interface {}"
    VALUE = "reflect.Value"
    STRING = "string"
    FLOAT = "float64"
    SAMPLE = "*template.sample"
    QUERY_RESULT = "template.queryResult"

    @property
    def nillable(self) -> bool:
        """Whether Go's ``canBeNil`` holds: nil converts to the type's zero value."""
        return self not in (Param.STRING, Param.FLOAT)

    def accepts(self, value: object) -> bool:
        """Whether a non-nil value is assignable to the type."""
        checks: dict[Param, Callable[[object], bool]] = {
            Param.ANY: lambda v: True,
            Param.VALUE: lambda v: True,
            Param.STRING: lambda v: type(v) is str,
            Param.FLOAT: lambda v: type(v) is float,
            Param.SAMPLE: lambda v: isinstance(v, Sample),
            Param.QUERY_RESULT: lambda v: isinstance(v, QueryResult),
        }
        return checks[self](value)


Impl = Callable[[list[object], TemplateContext], object]


@dataclass(frozen=True)
class FuncSpec:
    """A callable template function: Go signature plus Python implementation."""

    name: str
    params: tuple[Param, ...]
    variadic: Param | None
    impl: Impl

    def param_for(self, index: int) -> Param:
        """The declared type of argument ``index`` (the variadic type past the fixed ones)."""
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


FUNCTIONS: dict[str, FuncSpec] = {}


def _register(name: str, *params: Param, variadic: Param | None = None) -> Callable[[Impl], Impl]:
    def decorate(impl: Impl) -> Impl:
        FUNCTIONS[name] = FuncSpec(name, params, variadic, impl)
        return impl
    return decorate


def _str_arg(args: list[object], i: int) -> str:
    value = args[i]
    if not isinstance(value, str):
        raise FuncError(f"expected string, got {go_type_name(value)}")
    return value


def _sample_arg(args: list[object], i: int) -> Sample:
    value = args[i]
    if not isinstance(value, Sample):
        raise FuncError("runtime error: invalid memory address or nil pointer dereference")
    return value


def _special_form(args: list[object], ctx: TemplateContext) -> object:
    raise FuncError("internal error: evaluated by the executor")


for _name in ("and", "or"):
    FUNCTIONS[_name] = FuncSpec(_name, (Param.VALUE,), Param.VALUE, _special_form)
FUNCTIONS["call"] = FuncSpec("call", (Param.VALUE,), Param.VALUE, _special_form)


# -- Go builtins: printing and escaping ------------------------------------


def _printable_args(args: list[object]) -> str:
    """Go's ``evalArgs``: one string as is, anything else through ``Sprint``."""
    if len(args) == 1 and type(args[0]) is str:
        return args[0]
    converted: list[object] = []
    for arg in args:
        converted.append("<no value>" if arg is None else
                         SampleValue(arg) if isinstance(arg, Sample) else arg)
    return go_sprint(converted)


_HTML_ESCAPES = {"\0": "\ufffd", '"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;",
                 ">": "&gt;"}
_JS_ESCAPES = {"\\": "\\\\", "'": "\\'", '"': '\\"', "<": "\\u003C", ">": "\\u003E",
               "&": "\\u0026", "=": "\\u003D"}


def _js_escape_char(ch: str) -> str:
    if ch in _JS_ESCAPES:
        return _JS_ESCAPES[ch]
    if ch < " ":
        return f"\\u00{ord(ch):02X}"
    if ord(ch) >= 0x80 and not ch.isprintable():
        return f"\\u{ord(ch):04X}"
    return ch


@_register("html", variadic=Param.ANY)
def _html(args: list[object], ctx: TemplateContext) -> object:
    return "".join(_HTML_ESCAPES.get(ch, ch) for ch in _printable_args(args))


@_register("js", variadic=Param.ANY)
def _js(args: list[object], ctx: TemplateContext) -> object:
    return "".join(_js_escape_char(ch) for ch in _printable_args(args))


@_register("urlquery", variadic=Param.ANY)
def _urlquery(args: list[object], ctx: TemplateContext) -> object:
    return urllib.parse.quote_plus(_printable_args(args), safe="", errors="surrogatepass")


@_register("print", variadic=Param.ANY)
def _print(args: list[object], ctx: TemplateContext) -> object:
    return go_sprint(args)


@_register("println", variadic=Param.ANY)
def _println(args: list[object], ctx: TemplateContext) -> object:
    return go_sprintln(args)


@_register("printf", Param.STRING, variadic=Param.ANY)
def _printf(args: list[object], ctx: TemplateContext) -> object:
    return go_sprintf(_str_arg(args, 0), *args[1:])


# -- Go builtins: collections and logic ------------------------------------


def _index_arg(index: object, cap: int) -> int:
    if index is None:
        raise FuncError("cannot index slice/array with nil")
    if isinstance(index, bool) or not isinstance(index, int):
        raise FuncError(f"cannot index slice/array with type {go_type_name(index)}")
    if index < 0 or index > cap:
        raise FuncError(f"index out of range: {index}")
    return index


def _index_one(item: object, index: object) -> object:
    if isinstance(item, str | QueryResult):
        data: bytes | QueryResult = item.encode() if isinstance(item, str) else item
        position = _index_arg(index, len(data))
        if position == len(data):
            kind = "string" if isinstance(item, str) else "slice"
            raise FuncError(f"reflect: {kind} index out of range")
        return data[position]
    if isinstance(item, dict):
        if index is None:
            raise FuncError("value is nil; should be of type string")
        if type(index) is not str:
            raise FuncError(f"value has type {go_type_name(index)}; should be string")
        zero: object = None if isinstance(item, AnyMap) else ""
        return item.get(index, zero)
    raise FuncError(f"can't index item of type {go_type_name(item).lstrip('*')}")


@_register("index", Param.VALUE, variadic=Param.VALUE)
def _index(args: list[object], ctx: TemplateContext) -> object:
    item = args[0]
    if item is None:
        raise FuncError("index of untyped nil")
    for index in args[1:]:
        item = _index_one(item, index)
    return item


@_register("slice", Param.VALUE, variadic=Param.VALUE)
def _slice(args: list[object], ctx: TemplateContext) -> object:
    item, indexes = args[0], args[1:]
    if item is None:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    if not isinstance(item, str | QueryResult):
        raise FuncError(f"can't slice item of type {go_type_name(item)}")
    if isinstance(item, str) and len(indexes) == 3:
        raise FuncError("cannot 3-index slice a string")
    data: bytes | QueryResult = item.encode() if isinstance(item, str) else item
    bounds = [0, len(data), len(data)]
    for i, index in enumerate(indexes):
        bounds[i] = _index_arg(index, len(data))
    if bounds[0] > bounds[1]:
        raise FuncError(f"invalid slice index: {bounds[0]} > {bounds[1]}")
    if len(indexes) == 3 and bounds[1] > bounds[2]:
        raise FuncError(f"invalid slice index: {bounds[1]} > {bounds[2]}")
    part = data[bounds[0]:bounds[1]]
    return part.decode("utf-8", "replace") if isinstance(part, bytes) else QueryResult(part)


@_register("len", Param.VALUE)
def _len(args: list[object], ctx: TemplateContext) -> object:
    item = args[0]
    if item is None:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    if isinstance(item, str):
        return len(item.encode("utf-8", "surrogatepass"))
    if isinstance(item, dict | list):
        return len(item)
    raise FuncError(f"len of type {go_type_name(item).lstrip('*')}")


@_register("not", Param.VALUE)
def _not(args: list[object], ctx: TemplateContext) -> object:
    return not is_true(args[0])


# -- Go builtins: comparison -----------------------------------------------


def _basic_kind(value: object) -> str | None:
    """Go's ``basicKind``: the comparison class of a value, None if not comparable."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return None


def _incompatible(a: object, b: object) -> FuncError:
    return FuncError(
        f"incompatible types for comparison: {go_type_name(a)} and {go_type_name(b)}")


def _go_kind(value: object) -> str:
    """The reflect kind of a non-basic value: map, slice, ptr or struct."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    return "struct" if isinstance(value, AlertData | SampleValue) else "ptr"


def _eq_composite(a: object, b: object) -> bool:
    """``eq`` on values that are not basic: nil checks and pointer identity."""
    if a is None or b is None:
        return a is None and b is None
    if _go_kind(a) != _go_kind(b):
        raise FuncError(f"non-comparable types {template_print(a)}: {go_type_name(a)}, "
                        f"{go_type_name(b)}: {template_print(b)}")
    if _go_kind(b) != "ptr":
        raise FuncError(f"non-comparable type {template_print(b)}: {go_type_name(b)}")
    return a is b


def _equal(first: object, others: Sequence[object]) -> bool:
    """Go's ``eq``: whether ``first`` equals any of ``others``."""
    if not others:
        raise FuncError("missing argument for comparison")
    kind = _basic_kind(first)
    for other in others:
        other_kind = _basic_kind(other)
        if kind != other_kind:
            if first is not None and other is not None:
                raise _incompatible(first, other)
            truth = False
        elif kind is None:
            truth = _eq_composite(first, other)
        else:
            truth = first == other
        if truth:
            return True
    return False


@_register("eq", Param.VALUE, variadic=Param.VALUE)
def _eq(args: list[object], ctx: TemplateContext) -> object:
    return _equal(args[0], args[1:])


def _lt(a: object, b: object) -> bool:
    kind_a, kind_b = _basic_kind(a), _basic_kind(b)
    if kind_a is None or kind_b is None:
        raise FuncError("invalid type for comparison")
    if kind_a != kind_b:
        raise _incompatible(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return a < b
    if isinstance(a, int | float) and isinstance(b, int | float) and kind_a != "bool":
        return a < b
    raise FuncError("invalid type for comparison")


def _le(a: object, b: object) -> bool:
    return _lt(a, b) or _equal(a, [b])


@_register("ne", Param.VALUE, Param.VALUE)
def _ne(args: list[object], ctx: TemplateContext) -> object:
    return not _equal(args[0], args[1:])


@_register("lt", Param.VALUE, Param.VALUE)
def _lt_func(args: list[object], ctx: TemplateContext) -> object:
    return _lt(args[0], args[1])


@_register("le", Param.VALUE, Param.VALUE)
def _le_func(args: list[object], ctx: TemplateContext) -> object:
    return _le(args[0], args[1])


@_register("gt", Param.VALUE, Param.VALUE)
def _gt_func(args: list[object], ctx: TemplateContext) -> object:
    return not _le(args[0], args[1])


@_register("ge", Param.VALUE, Param.VALUE)
def _ge_func(args: list[object], ctx: TemplateContext) -> object:
    return not _lt(args[0], args[1])


# -- Prometheus: queries ----------------------------------------------------


@_register("query", Param.STRING)
def _query(args: list[object], ctx: TemplateContext) -> object:
    if ctx.query is None:
        raise FuncError("no query function is configured for template rendering")
    try:
        rows = ctx.query(_str_arg(args, 0))
    except Exception as exc:  # the callback is user code; Go reports its error
        raise FuncError(str(exc)) from exc
    return QueryResult(Sample(dict(labels), float(value)) for labels, value in rows)


@_register("first", Param.QUERY_RESULT)
def _first(args: list[object], ctx: TemplateContext) -> object:
    result = args[0]
    if not isinstance(result, QueryResult) or not result:
        raise FuncError("first() called on vector with no elements")
    return result[0]


@_register("label", Param.STRING, Param.SAMPLE)
def _label(args: list[object], ctx: TemplateContext) -> object:
    return _sample_arg(args, 1).labels.get(_str_arg(args, 0), "")


@_register("value", Param.SAMPLE)
def _value(args: list[object], ctx: TemplateContext) -> object:
    return _sample_arg(args, 0).value


@_register("strvalue", Param.SAMPLE)
def _strvalue(args: list[object], ctx: TemplateContext) -> object:
    return _sample_arg(args, 0).labels.get("__value__", "")


@_register("sortByLabel", Param.STRING, Param.QUERY_RESULT)
def _sort_by_label(args: list[object], ctx: TemplateContext) -> object:
    label, result = _str_arg(args, 0), args[1]
    if isinstance(result, QueryResult):
        result.sort(key=lambda s: s.labels.get(label, ""))
    return result


@_register("args", variadic=Param.ANY)
def _args(args: list[object], ctx: TemplateContext) -> object:
    return AnyMap((f"arg{i}", a) for i, a in enumerate(args))


# -- Prometheus: strings ----------------------------------------------------


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def _compile(pattern: str) -> Any:
    try:
        return re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else exc
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise FuncError(f"error parsing regexp: {detail}") from None


def _utf8_width(data: bytes, i: int) -> int:
    if i >= len(data):
        return 0
    lead = data[i]
    return 1 if lead < 0xC0 else 2 if lead < 0xE0 else 3 if lead < 0xF0 else 4


def _extract_name(template: str) -> tuple[str, int, str] | None:
    """Go's ``regexp.extract``: the ``name``/``{name}`` after a ``$``, its number, the rest."""
    brace = template.startswith("{")
    body = template[1:] if brace else template
    i = 0
    while i < len(body) and (body[i] == "_" or body[i].isalpha() or body[i].isdecimal()):
        i += 1
    if i == 0 or (brace and body[i:i + 1] != "}"):
        return None
    name, rest = body[:i], body[i + 1 if brace else i:]
    numeric = name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1)
    number = int(name) if numeric and len(name) <= 9 else -1
    return name, number, rest


def _expand(regex: Any, template: str, source: bytes, match: Any) -> bytes:
    """Go's ``Regexp.Expand``: ``$1``, ``${name}`` and ``$$`` in a replacement."""
    out = bytearray()
    groups: dict[str, int] = regex.groupindex
    count: int = regex.groups
    while template:
        dollar = template.find("$")
        if dollar < 0:
            break
        out += template[:dollar].encode("utf-8", "surrogatepass")
        template = template[dollar:]
        if template.startswith("$$"):
            out += b"$"
            template = template[2:]
            continue
        found = _extract_name(template[1:])
        if found is None:
            out += b"$"
            template = template[1:]
            continue
        name, number, template = found
        group = number if 0 <= number <= count else groups.get(name, -1) if number < 0 else -1
        if group >= 0:
            start, end = match.span(group)
            if start >= 0:
                out += source[start:end]
    out += template.encode("utf-8", "surrogatepass")
    return bytes(out)


def go_replace_all(pattern: str, text: str, replacement: str) -> str:
    """Go's ``Regexp.ReplaceAllString`` (empty matches next to a match are skipped)."""
    regex = _compile(pattern)
    data = text.encode("utf-8", "surrogatepass")
    out, last_end, search = bytearray(), 0, 0
    while search <= len(data):
        match = regex.search(data, search)
        if match is None:
            break
        start, end = match.span()
        out += data[last_end:start]
        if end > last_end or start == 0:
            out += _expand(regex, replacement, data, match)
        last_end = end
        width = _utf8_width(data, search)
        search = search + width if search + width > end else (
            search + 1 if search + 1 > end else end)
    out += data[last_end:]
    return out.decode("utf-8", "replace")


@_register("reReplaceAll", Param.STRING, Param.STRING, Param.STRING)
def _re_replace_all(args: list[object], ctx: TemplateContext) -> object:
    pattern = _str_arg(args, 0)
    try:
        return go_replace_all(pattern, _str_arg(args, 2), _str_arg(args, 1))
    except FuncError as exc:
        quoted = f"`{pattern}`" if _can_backquote(pattern) else go_quote(pattern)
        raise FuncError(f"regexp: Compile({quoted}): {exc}") from None


@_register("match", Param.STRING, Param.STRING)
def _match(args: list[object], ctx: TemplateContext) -> object:
    regex = _compile(_str_arg(args, 0))
    return regex.search(_str_arg(args, 1)) is not None


@_register("safeHtml", Param.STRING)
def _safe_html(args: list[object], ctx: TemplateContext) -> object:
    return SafeHTML(_str_arg(args, 0))


def _simple_case(ch: str, upper: bool) -> str:
    """Go's per-rune ``unicode.ToUpper``/``ToLower``: never changes the string's length."""
    mapped = ch.upper() if upper else ch.lower()
    if len(mapped) == 1:
        return mapped
    if ch == "\u0130" and not upper:
        return "i"
    titled = ch.title()
    return titled if upper and len(titled) == 1 else ch


@_register("toUpper", Param.STRING)
def _to_upper(args: list[object], ctx: TemplateContext) -> object:
    return "".join(_simple_case(ch, True) for ch in _str_arg(args, 0))


@_register("toLower", Param.STRING)
def _to_lower(args: list[object], ctx: TemplateContext) -> object:
    return "".join(_simple_case(ch, False) for ch in _str_arg(args, 0))


_MID_WORD = frozenset(":\u00b7\u0387\u055f\u05f4\u2027\ufe13\ufe55\uff1a"
                      ".\u2018\u2019\u2024\ufe52\uff07\uff0e'")


def _is_cased(ch: str) -> bool:
    return ch.lower() != ch.upper() or ch.istitle() or ch.islower() or ch.isupper()


def _continues_word(ch: str) -> bool:
    """Letters, digits, ``_``, marks and mid-word punctuation do not end a word."""
    return (ch.isalnum() or ch in _MID_WORD
            or unicodedata.category(ch) in ("Mn", "Me", "Mc", "Cf", "Pc"))


def go_title(text: str) -> str:
    """``cases.Title(language.AmericanEnglish, cases.NoLower)``: capitalise each word.

    Word breaks follow Unicode's rules as x/text implements them: letters, digits
    and ``_`` continue a word, one ``.``, ``:`` or ``'`` between letters does too
    (``it's``, ``example.com``), anything else ends it.
    """
    out: list[str] = []
    in_word = False
    previous_mid = False
    for ch in text:
        is_mid = ch in _MID_WORD
        if previous_mid and is_mid:
            in_word = False
        if _is_cased(ch):
            out.append(ch if in_word else ch.title())
            in_word = True
        else:
            out.append(ch)
            if not _continues_word(ch):
                in_word = False
        previous_mid = is_mid
    return "".join(out)


@_register("title", Param.STRING)
def _title(args: list[object], ctx: TemplateContext) -> object:
    return go_title(_str_arg(args, 0))


@_register("graphLink", Param.STRING)
def _graph_link(args: list[object], ctx: TemplateContext) -> object:
    expr = urllib.parse.quote_plus(_str_arg(args, 0), safe="", errors="surrogatepass")
    return f"/graph?g0.expr={expr}&g0.tab=0"


@_register("tableLink", Param.STRING)
def _table_link(args: list[object], ctx: TemplateContext) -> object:
    expr = urllib.parse.quote_plus(_str_arg(args, 0), safe="", errors="surrogatepass")
    return f"/graph?g0.expr={expr}&g0.tab=1"


def split_host_port(host_port: str) -> tuple[str, str] | None:
    """Go's ``net.SplitHostPort``; None where Go returns an error."""
    colon = host_port.rfind(":")
    if colon < 0:
        return None
    if host_port.startswith("["):
        close = host_port.find("]")
        if close < 0 or close + 1 != colon:
            return None
        host, start, stop = host_port[1:close], 1, close + 1
    else:
        host, start, stop = host_port[:colon], 0, 0
        if ":" in host:
            return None
    if "[" in host_port[start:] or "]" in host_port[stop:]:
        return None
    return host, host_port[colon + 1:]


def _is_ip(host: str) -> bool:
    """Go's ``net.ParseIP(host) != nil`` (no zones, no leading zeros in IPv4)."""
    if "%" in host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@_register("stripPort", Param.STRING)
def _strip_port(args: list[object], ctx: TemplateContext) -> object:
    host_port = _str_arg(args, 0)
    split = split_host_port(host_port)
    return host_port if split is None else split[0]


@_register("stripDomain", Param.STRING)
def _strip_domain(args: list[object], ctx: TemplateContext) -> object:
    host_port = _str_arg(args, 0)
    split = split_host_port(host_port)
    host, port = split if split is not None else (host_port, "")
    if _is_ip(host):
        return host_port
    host = host.split(".")[0]
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- Prometheus: numbers ----------------------------------------------------


def to_float(value: object) -> float:
    """Prometheus's ``ConvertToFloat``: float64, int or a string Go's ParseFloat accepts."""
    if isinstance(value, float):
        return value
    if type(value) is str:
        try:
            return parse_go_float(value)
        except ValueError as exc:
            raise FuncError(str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise FuncError(f"can't convert {go_type_name(value)} to float")


def _g4(value: float, suffix: str = "") -> str:
    return go_sprintf("%.4g", value) + suffix


def humanize(value: float) -> str:
    """Metric-prefix rendering: ``1234567`` → ``1.235M``, ``0.001`` → ``1m``."""
    if value == 0 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    if abs(value) >= 1:
        for p in "kMGTPEZY":
            if abs(value) < 1000:
                break
            prefix, value = p, value / 1000
        return _g4(value, prefix)
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix, value = p, value * 1000
    return _g4(value, prefix)


def humanize_1024(value: float) -> str:
    """Binary-prefix rendering: ``1048576`` → ``1Mi``."""
    if abs(value) <= 1 or math.isnan(value) or math.isinf(value):
        return _g4(value)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(value) < 1024:
            break
        prefix, value = p, value / 1024
    return _g4(value, prefix)


def humanize_duration(value: float) -> str:
    """Seconds as ``1d 2h 3m 4s`` (whole seconds) or ``1.234s``/``100ms`` below a minute."""
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    if value == 0:
        return _g4(value, "s")
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        duration = go_float_to_int64(value)
        seconds, minutes = _go_mod(duration, 60), _go_mod(_go_div(duration, 60), 60)
        hours = _go_mod(_go_div(duration, 3600), 24)
        days = _go_div(duration, 86400)
        if days != 0:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours != 0:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes != 0:
            return f"{sign}{minutes}m {seconds}s"
        return sign + _g4(value, "s")
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix, value = p, value * 1000
    return _g4(value, prefix + "s")


def humanize_timestamp(value: float) -> str:
    """Unix seconds as Go prints a UTC ``time.Time``: ``2015-06-23 13:19:44.128 +0000 UTC``."""
    if math.isnan(value) or math.isinf(value):
        return _g4(value)
    return float_to_time(value).string()


def _numeric(name: str, convert: Callable[[float], object]) -> None:
    def impl(args: list[object], ctx: TemplateContext) -> object:
        return convert(to_float(args[0]))
    FUNCTIONS[name] = FuncSpec(name, (Param.ANY,), None, impl)


_numeric("humanize", humanize)
_numeric("humanize1024", humanize_1024)
_numeric("humanizeDuration", humanize_duration)
_numeric("humanizePercentage", lambda v: _g4(v * 100, "%"))
_numeric("humanizeTimestamp", humanize_timestamp)
_numeric("toTime", float_to_time)


_DURATION_UNITS = {"ms": (7, 10**6), "s": (6, 10**9), "m": (5, 60 * 10**9),
                   "h": (4, 3600 * 10**9), "d": (3, 86400 * 10**9),
                   "w": (2, 7 * 86400 * 10**9), "y": (1, 365 * 86400 * 10**9)}
_DURATION_PART = re.compile(r"([0-9]+)([^0-9]*)")


def parse_duration(text: str) -> float:
    """Prometheus's ``model.ParseDuration``, in seconds: ``1h2m10ms`` → ``3720.01``."""
    if text == "0":
        return 0.0
    if not text:
        raise FuncError("empty duration string")
    total, last_position, pos = 0, 0, 0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        if part is None or not part.group(2):
            raise FuncError(f"not a valid duration string: {go_quote(text)}")
        number, unit = int(part.group(1)), part.group(2)
        if number >= 2**64:
            raise FuncError(f"not a valid duration string: {go_quote(text)}")
        if unit not in _DURATION_UNITS:
            raise FuncError(f"unknown unit {go_quote(unit)} in duration {go_quote(text)}")
        position, multiplier = _DURATION_UNITS[unit]
        if position <= last_position:
            raise FuncError(f"not a valid duration string: {go_quote(text)}")
        last_position = position
        if number > (1 << 63) // multiplier:
            raise FuncError("duration out of range")
        total += number * multiplier
        if total > (1 << 63) - 1:
            raise FuncError("duration out of range")
        pos = part.end()
    return total / 1e9


@_register("parseDuration", Param.STRING)
def _parse_duration(args: list[object], ctx: TemplateContext) -> object:
    return parse_duration(_str_arg(args, 0))


@_register("pathPrefix")
def _path_prefix(args: list[object], ctx: TemplateContext) -> object:
    return urllib.parse.unquote(urllib.parse.urlsplit(ctx.external_url).path)


@_register("externalURL")
def _external_url(args: list[object], ctx: TemplateContext) -> object:
    return ctx.external_url


FUNCTION_NAMES: frozenset[str] = frozenset(FUNCTIONS)
"""Every function a template may call: Go's builtins plus Prometheus's additions."""


# -- methods ---------------------------------------------------------------


_Method = tuple[tuple[Param, ...], Callable[[list[object]], object]]


def _time_methods(value: GoTime) -> dict[str, _Method]:
    moment = value.moment
    return {
        "Format": ((Param.STRING,), lambda a: format_time(value, _str_arg(a, 0))),
        "String": ((), lambda a: value.string()),
        "Unix": ((), lambda a: value.unix_ms // 1000),
        "UnixMilli": ((), lambda a: value.unix_ms),
        "UnixNano": ((), lambda a: value.unix_ms * 1_000_000),
        "UTC": ((), lambda a: value),
        "Local": ((), lambda a: value),
        "Year": ((), lambda a: moment.year),
        "Month": ((), lambda a: Month(moment.month)),
        "Day": ((), lambda a: moment.day),
        "Hour": ((), lambda a: moment.hour),
        "Minute": ((), lambda a: moment.minute),
        "Second": ((), lambda a: moment.second),
        "Nanosecond": ((), lambda a: value.nanosecond),
        "YearDay": ((), lambda a: moment.timetuple().tm_yday),
        "Weekday": ((), lambda a: Weekday((moment.weekday() + 1) % 7)),
        "IsZero": ((), lambda a: False),
    }


def method_spec(receiver: object, name: str) -> FuncSpec | None:
    """The method ``name`` of ``receiver`` as a callable spec (only ``*time.Time`` has any)."""
    if not isinstance(receiver, GoTime):
        return None
    method = _time_methods(receiver).get(name)
    if method is None:
        return None
    params, call = method
    return FuncSpec(name, params, None, lambda args, ctx: call(args))
