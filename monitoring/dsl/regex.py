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


@functools.lru_cache(maxsize=4096)
def compile_anchored(pattern: str) -> Any:
    """Compile ``^(?:pattern)$`` with RE2; raises ``ValueError`` with RE2's message."""
    try:
        return re2.compile(f"^(?:{pattern})$")
    except re2.error as e:
        raise ValueError(_describe(e, pattern)) from None
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


def _describe(err: Exception, pattern: str) -> str:
    text = str(err).strip() or "invalid regular expression"
    if text.startswith("error parsing regexp") or pattern in text:
        return text
    return f"{text} in {pattern!r}"
