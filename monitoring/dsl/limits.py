"""Input limits: oversized or pathological input gets a diagnostic, never a crash or a hang.

The numbers are generous for real rule files (the largest public rule sets are a
few megabytes with expressions of a few hundred characters) and small enough to
keep memory and time bounded on hostile input.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits applied to every input."""

    max_file_bytes: int = 32 * 1024 * 1024
    """A rule or config file larger than this is refused."""
    max_expression_length: int = 64 * 1024
    """An expression longer than this (in characters) is refused."""
    max_nesting: int = 128
    """Deepest nesting of sub-expressions (brackets, unary signs, operators)."""
    max_yaml_nodes: int = 2_000_000
    """YAML nodes produced after alias expansion ("billion laughs" guard)."""
    max_yaml_depth: int = 64
    """Deepest nesting of YAML collections."""
    max_errors_per_file: int = 50
    """Syntax errors reported per file before the parser gives up on it."""


LIMITS = Limits()
