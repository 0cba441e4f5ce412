"""The standard library: function declarations (and, per back end, implementations)."""

from __future__ import annotations

from monitoring.stdlib import conditions, promql
from monitoring.stdlib.registry import REGISTRY, AggregationDecl, FunctionDecl, Param, Registry
from monitoring.stdlib.types import ValueType

__all__ = [
    "REGISTRY",
    "AggregationDecl",
    "FunctionDecl",
    "Param",
    "Registry",
    "ValueType",
    "conditions",
    "promql",
]
