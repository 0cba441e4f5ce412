"""The value types of the expression language, as Prometheus names them."""

from __future__ import annotations

import enum


class ValueType(enum.Enum):
    """What an expression evaluates to."""

    SCALAR = "scalar"
    VECTOR = "instant vector"
    MATRIX = "range vector"
    STRING = "string"

    def __str__(self) -> str:
        return self.value
