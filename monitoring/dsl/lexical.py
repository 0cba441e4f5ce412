"""Decoding of literal tokens: numbers, durations and strings, as Prometheus reads them.

Each decoder returns a value or raises :class:`LexicalError` with the offset of
the offending character inside the token, so the builder can point a caret at
exactly that character.
"""

from __future__ import annotations

import math
import re

from monitoring.dsl.ast import Duration


class LexicalError(Exception):
    """A literal that the lexer accepted but whose contents are invalid."""

    def __init__(self, message: str, offset: int = 0, length: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.length = length


_UNIT_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
            "m": 60_000, "s": 1000, "ms": 1}
_UNIT_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")


def parse_duration(text: str) -> Duration:
    """Decode ``1h30m``-style durations; units must appear largest first, each once."""
    unit = text[-1:]
    if unit and (unit in "hdwy" or (unit in "sm" and text[-2:] != "ms")):
        digits = text[:-1]
        if digits.isascii() and digits.isdigit():  # the common one-unit case
            return Duration(int(digits) * _UNIT_MS[unit], text)
    pos = 0
    total = 0
    last_rank = -1
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:  # pragma: no cover - the token regex guarantees contiguity
            raise LexicalError(f"invalid duration {text!r}", pos)
        rank = _UNIT_ORDER.index(m.group(2))
        if rank <= last_rank:
            raise LexicalError(
                f"invalid duration {text!r}: units must go from largest to smallest, each once",
                m.start(),
                m.end() - m.start(),
            )
        last_rank = rank
        total += int(m.group(1)) * _UNIT_MS[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise LexicalError(f"invalid duration {text!r}", pos)
    return Duration(total, text)


def parse_number(text: str) -> float:
    """Decode a number literal: decimal, scientific, hex, ``Inf`` and ``NaN`` in any case."""
    low = text.lower()
    if low.startswith(("0x", "+0x", "-0x")):
        return float(int(low, 16))
    if low in ("inf", "+inf"):
        return math.inf
    if low == "-inf":
        return -math.inf
    if low == "nan":
        return math.nan
    return float(text)


def seconds_to_duration(value: float, text: str) -> Duration:
    """A unit-less number in duration position means seconds (``[10]``, ``offset 50``)."""
    if math.isnan(value) or math.isinf(value):
        raise LexicalError(f"invalid duration {text!r}: must be a finite number of seconds", 0,
                           len(text))
    return Duration(round(value * 1000), text)


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"',
}


def unquote(token: str) -> str:
    r"""Decode a string token as Go's ``strconv.Unquote`` does.

    Double- and single-quoted strings take Go escapes (``\\n``, ``\\x41``,
    ``\\101``, ``\\u00e9``, ``\\U0001F600``); back-quoted strings are raw. Byte
    escapes that do not form valid UTF-8 are kept as surrogate escapes, so no
    input is lost.
    """
    quote = token[0]
    body = token[1:-1]
    if quote == "`":
        return body
    if "\\" not in body:
        return body
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogateescape")
            i += 1
            continue
        start = i + 1  # offset within token is i + 1 (leading quote)
        if i + 1 >= n:
            raise LexicalError("invalid escape at end of string", start)
        esc = body[i + 1]
        if esc in _SIMPLE_ESCAPES:
            if (esc == "'" and quote == '"') or (esc == '"' and quote == "'"):
                raise LexicalError(f"unknown escape sequence \\{esc}", start, 2)
            out += _SIMPLE_ESCAPES[esc].encode()
            i += 2
        elif esc == "x":
            digits = body[i + 2 : i + 4]
            if len(digits) != 2 or not _is_hex(digits):
                raise LexicalError("invalid \\x escape: expected two hex digits", start, 2)
            out.append(int(digits, 16))
            i += 4
        elif esc in "01234567":
            digits = body[i + 1 : i + 4]
            if len(digits) != 3 or any(c not in "01234567" for c in digits) or int(digits, 8) > 255:
                raise LexicalError("invalid octal escape: expected three octal digits", start, 2)
            out.append(int(digits, 8))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            digits = body[i + 2 : i + 2 + width]
            if len(digits) != width or not _is_hex(digits):
                raise LexicalError(f"invalid \\{esc} escape: expected {width} hex digits", start, 2)
            code = int(digits, 16)
            if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
                raise LexicalError(f"invalid \\{esc} escape: not a valid code point", start, 2)
            out += chr(code).encode("utf-8")
            i += 2 + width
        else:
            raise LexicalError(f"unknown escape sequence \\{esc}", start, 2)
    return out.decode("utf-8", "surrogateescape")


def _is_hex(s: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in s)


def quote(value: str) -> str:
    """Encode a string as a double-quoted literal that :func:`unquote` reads back."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif 0xDC80 <= code <= 0xDCFF:  # a raw byte kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


def is_label_name(name: str) -> bool:
    """Whether ``name`` is a legacy (unquoted) label name."""
    return LABEL_NAME.match(name) is not None


def is_metric_name(name: str) -> bool:
    """Whether ``name`` is a legacy (unquoted) metric name."""
    return METRIC_NAME.match(name) is not None
