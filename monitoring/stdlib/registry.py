"""One registry of function declarations: names, parameters, types and documentation.

Every function the expression language knows is declared here exactly once
(as Prometheus's ``promql/parser/functions.go`` and OPA's ``builtins.go`` do).
The checker takes arity and argument types from it, the linter reads its flags
(counter input, unit behaviour), ``docs/functions.md`` is generated from it,
and each evaluator back end registers implementations against these names;
a test keeps the declarations and the implementations in step.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitoring.stdlib.types import ValueType

S = ValueType.SCALAR
V = ValueType.VECTOR
M = ValueType.MATRIX
STR = ValueType.STRING


class Category(enum.Enum):
    """Families of functions, one section of the reference each."""

    MATH = "Math"
    TRIGONOMETRY = "Trigonometry"
    OVER_TIME = "Aggregation over time"
    COUNTER = "Counters and rates"
    TIME = "Time and date"
    LABELS = "Labels"
    SORTING = "Sorting"
    HISTOGRAM = "Histograms"
    TYPE = "Type conversion and presence"
    QUERY = "Query context"
    CONDITION = "Conditions: thresholds"
    TREND = "Conditions: trends and forecasts"
    ANOMALY = "Conditions: anomalies"


class Unit(enum.Enum):
    """How a function's result relates to the unit of its input."""

    SAME = "same"  # avg_over_time(error_ratio[5m]) is still a ratio
    NONE = "none"  # rate(), count_over_time(), trend() ... have units of their own


@dataclass(frozen=True, slots=True)
class Param:
    """One parameter of a function."""

    name: str
    type: ValueType
    optional: bool = False
    variadic: bool = False
    default: float | str | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""


@dataclass(frozen=True, slots=True)
class FunctionDecl:
    """A function's signature and documentation."""

    name: str
    params: tuple[Param, ...]
    returns: ValueType
    category: Category
    doc: str
    experimental: bool = False
    extension: bool = False  # ours, not PromQL
    unit: Unit = Unit.NONE
    counter_input: bool = False  # meaningful only on counters (rate, increase, ...)
    filter: bool = False  # returns a subset of its input's series, so a condition
    keeps_metric_name: bool = False
    example: str = ""

    @property
    def min_args(self) -> int:
        """The number of required positional arguments."""
        return sum(1 for p in self.params if not p.optional and not p.variadic)

    @property
    def max_args(self) -> int | None:
        """The most positional arguments accepted (``None`` when variadic)."""
        if any(p.variadic for p in self.params):
            return None
        return len(self.params)

    def signature(self) -> str:
        """``name(a instant vector, b scalar = 1) -> instant vector``."""
        parts = []
        for p in self.params:
            text = f"{p.name} {p.type}"
            if p.variadic:
                text += ", ..."
            if p.optional:
                text = f"[{text}" + (f" = {p.default!r}" if p.default is not None else "") + "]"
            parts.append(text)
        return f"{self.name}({', '.join(parts)}) -> {self.returns}"

    def param_for(self, index: int) -> Param | None:
        """The parameter that positional argument ``index`` binds to."""
        if index < len(self.params):
            return self.params[index]
        if self.params and self.params[-1].variadic:
            return self.params[-1]
        return None


@dataclass(frozen=True, slots=True)
class AggregationDecl:
    """An aggregation operator (``sum``, ``topk``, ...)."""

    name: str
    doc: str
    param: ValueType | None = None
    param_name: str = ""
    experimental: bool = False
    unit: Unit = Unit.SAME
    keeps_metric_name: bool = False


@dataclass(slots=True)
class Registry:
    """All declarations, by name."""

    functions: dict[str, FunctionDecl] = field(default_factory=dict)
    aggregations: dict[str, AggregationDecl] = field(default_factory=dict)

    def add(self, *decls: FunctionDecl) -> None:
        """Declare functions; a name may be declared only once."""
        for d in decls:
            if d.name in self.functions:
                raise ValueError(f"function {d.name!r} declared twice")
            self.functions[d.name] = d

    def add_aggregation(self, *decls: AggregationDecl) -> None:
        """Declare aggregation operators."""
        for d in decls:
            if d.name in self.aggregations:
                raise ValueError(f"aggregation {d.name!r} declared twice")
            self.aggregations[d.name] = d

    def function(self, name: str) -> FunctionDecl | None:
        """The declaration of ``name``, or ``None``."""
        return self.functions.get(name)

    def names(self) -> Iterable[str]:
        """Every function name."""
        return self.functions.keys()


def _vec(name: str, doc: str, category: Category, **kw: object) -> FunctionDecl:
    return FunctionDecl(name, (Param("v", V),), V, category, doc, **kw)  # type: ignore[arg-type]


def _over_time(name: str, doc: str, **kw: object) -> FunctionDecl:
    return FunctionDecl(name, (Param("v", M),), V, Category.OVER_TIME, doc, **kw)  # type: ignore[arg-type]


def _date(name: str, doc: str) -> FunctionDecl:
    return FunctionDecl(
        name, (Param("v", V, optional=True, doc="defaults to vector(time())"),), V,
        Category.TIME, doc,
    )


REGISTRY = Registry()
