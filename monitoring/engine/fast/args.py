"""Checked access to a function's evaluated arguments, with Prometheus-style errors.

The checker already guarantees argument types for compiled expressions; these
guards keep a wrongly built node from failing deep inside NumPy instead.
"""

from __future__ import annotations

import numpy as np

from monitoring.engine.fast.values import Scalar, String, Value, Vector
from monitoring.engine.model import EvalError, ValueArray


def vector_arg(args: list[Value], i: int, name: str) -> Vector:
    """Argument ``i`` of ``name()``, an instant vector."""
    value = args[i]
    if not isinstance(value, Vector):
        raise EvalError(f"expected an instant vector as argument {i + 1} of {name}()")
    return value


def scalar_arg(args: list[Value], i: int, name: str, steps: int) -> ValueArray:
    """Argument ``i`` of ``name()``, a scalar, as one value per step."""
    value = args[i]
    if not isinstance(value, Scalar):
        raise EvalError(f"expected a scalar as argument {i + 1} of {name}()")
    out: ValueArray = np.broadcast_to(np.asarray(value.values, dtype=np.float64), (steps,))
    return out


def string_arg(args: list[Value], i: int, name: str) -> str:
    """Argument ``i`` of ``name()``, a string."""
    value = args[i]
    if not isinstance(value, String):
        raise EvalError(f"expected a string as argument {i + 1} of {name}()")
    return value.value
