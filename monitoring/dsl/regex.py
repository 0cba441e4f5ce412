"""Label-matcher regular expressions with Prometheus's semantics: RE2, fully anchored.

Python's ``re`` accepts constructs RE2 rejects (look-around, back-references)
and vice versa, so matchers are compiled with RE2 itself (the ``google-re2``
package), the engine Prometheus uses through Go's ``regexp``.
"""

from __future__ import annotations

import functools
from typing import Any

import re2

_META = set("\\.+*?()|[]{}^$")

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # errors are reported as diagnostics, not on stderr


@functools.lru_cache(maxsize=4096)
def compile_anchored(pattern: str) -> Any:
    """Compile ``^(?s:pattern)$`` with RE2, as Prometheus 3 does (``.`` matches newlines).

    Raises ``ValueError`` with RE2's description of the problem in ``pattern``.
    """
    try:
        re2.compile(pattern, _OPTIONS)  # errors worded about the user's own text
        return re2.compile(f"^(?s:{pattern})$", _OPTIONS)
    except re2.error as e:
        raise ValueError(_describe(e)) from None
    except (TypeError, UnicodeError, OverflowError) as e:
        raise ValueError(str(e)) from None


def regex_error(pattern: str) -> str | None:
    """RE2's complaint about ``pattern``, or ``None`` when it compiles."""
    try:
        compile_anchored(pattern)
    except ValueError as e:
        return str(e)
    return None


def full_match(pattern: str, value: str) -> bool | None:
    """Whether ``value`` matches ``pattern`` entirely; ``None`` for an invalid pattern."""
    try:
        rx = compile_anchored(pattern)
    except ValueError:
        return None
    return rx.match(value) is not None


def is_literal(pattern: str) -> bool:
    """Whether a pattern has no regex metacharacters, so ``=`` would do the same job."""
    return not (_META & set(pattern))


def literal_alternatives(pattern: str) -> list[str] | None:
    """``a|b|c`` with no other metacharacters: the alternatives, else ``None``."""
    parts = pattern.split("|")
    if len(parts) < 2 or not all(p and is_literal(p) for p in parts):
        return None
    return parts


def _describe(err: Exception) -> str:
    arg = err.args[0] if err.args else b""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text.strip() or "invalid regular expression"
