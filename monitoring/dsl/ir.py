"""The intermediate representation: what the evaluator runs.

A small set of frozen, hashable nodes, separate from the AST: no spans, no
parentheses, no sugar. Keyword arguments are bound to positions with their
defaults filled in, percentages are resolved to numbers, label matchers and
grouping labels are sorted, durations are milliseconds. Structural equality
therefore means "computes the same thing", and interning nodes in a dict makes
identical sub-expressions of all loaded rules one node (common sub-expression
elimination for free, as in ibis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitoring.dsl.ast import Card, format_duration
from monitoring.dsl.lexical import quote
from monitoring.stdlib import REGISTRY
from monitoring.stdlib.types import ValueType


class Node:
    """Base class of IR nodes."""

    __slots__ = ()

    @property
    def type(self) -> ValueType:
        """The value type this node evaluates to."""
        raise NotImplementedError

    def children(self) -> tuple[Node, ...]:
        """Direct inputs, in order."""
        return ()


@dataclass(frozen=True, slots=True)
class Const(Node):
    """A scalar constant (NaN equals NaN here, so NaN constants share one node)."""

    value: float

    @property
    def type(self) -> ValueType:
        return ValueType.SCALAR

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Const):
            return NotImplemented
        return self.value == other.value or (math.isnan(self.value) and math.isnan(other.value))

    def __hash__(self) -> int:
        return hash(("const", "nan" if math.isnan(self.value) else self.value))


@dataclass(frozen=True, slots=True)
class StringConst(Node):
    """A string constant."""

    value: str

    @property
    def type(self) -> ValueType:
        return ValueType.STRING


@dataclass(frozen=True, slots=True)
class At:
    """An ``@`` pin: a timestamp in ms, or the query's start or end."""

    kind: str  # "timestamp" | "start" | "end"
    ms: int = 0


@dataclass(frozen=True, slots=True)
class Selector(Node):
    """Series selection: matchers sorted by (label, op, value); offset in ms."""

    metric: str | None
    matchers: tuple[tuple[str, str, str], ...]
    offset_ms: int = 0
    at: At | None = None

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR


@dataclass(frozen=True, slots=True)
class RangeSelector(Node):
    """The samples of a selection in the window ``(t - range, t]``."""

    selector: Selector
    range_ms: int

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX

    def children(self) -> tuple[Node, ...]:
        return (self.selector,)


@dataclass(frozen=True, slots=True)
class Subquery(Node):
    """An instant expression evaluated at ``step`` over a window (step None: group interval)."""

    expr: Node
    range_ms: int
    step_ms: int | None
    offset_ms: int = 0
    at: At | None = None

    @property
    def type(self) -> ValueType:
        return ValueType.MATRIX

    def children(self) -> tuple[Node, ...]:
        return (self.expr,)


@dataclass(frozen=True, slots=True)
class Call(Node):
    """A function call with every parameter bound positionally (defaults filled in)."""

    func: str
    args: tuple[Node, ...]

    @property
    def type(self) -> ValueType:
        decl = REGISTRY.function(self.func)
        return decl.returns if decl is not None else ValueType.VECTOR

    def children(self) -> tuple[Node, ...]:
        return self.args


@dataclass(frozen=True, slots=True)
class Aggregate(Node):
    """An aggregation; ``grouping`` sorted."""

    op: str
    expr: Node
    param: Node | None
    grouping: tuple[str, ...]
    without: bool

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR

    def children(self) -> tuple[Node, ...]:
        return (self.param, self.expr) if self.param is not None else (self.expr,)


@dataclass(frozen=True, slots=True)
class Matching:
    """Vector matching of a binary operation; label lists sorted."""

    on: bool
    labels: tuple[str, ...]
    card: Card
    include: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Binary(Node):
    """A binary operation; ``matching`` is None for the default one-to-one match."""

    op: str
    lhs: Node
    rhs: Node
    return_bool: bool = False
    matching: Matching | None = None

    @property
    def type(self) -> ValueType:
        if ValueType.VECTOR in (self.lhs.type, self.rhs.type):
            return ValueType.VECTOR
        return ValueType.SCALAR

    def children(self) -> tuple[Node, ...]:
        return (self.lhs, self.rhs)


@dataclass(frozen=True, slots=True)
class Neg(Node):
    """Unary minus (drops the metric name, as any arithmetic does)."""

    expr: Node

    @property
    def type(self) -> ValueType:
        return self.expr.type

    def children(self) -> tuple[Node, ...]:
        return (self.expr,)


@dataclass(frozen=True, slots=True)
class Weighted(Node):
    """Per series, the sum of the weights of the conditions that hold."""

    weights: tuple[float, ...]
    terms: tuple[Node, ...]

    @property
    def type(self) -> ValueType:
        return ValueType.VECTOR

    def children(self) -> tuple[Node, ...]:
        return self.terms


def describe(node: Node, name_of: dict[Node, str] | None = None) -> str:
    """One line of text for a node; children by their ids in ``name_of`` when given."""

    def ref(child: Node) -> str:
        if name_of is not None and child in name_of:
            return name_of[child]
        return describe(child, name_of)

    match node:
        case Const(value=v):
            return _num(v)
        case StringConst(value=v):
            return repr(v)
        case Selector():
            return _selector(node)
        case RangeSelector(selector=s, range_ms=r):
            return f"{ref(s)}[{_dur(r)}]"
        case Subquery(expr=e, range_ms=r, step_ms=st, offset_ms=o, at=at):
            text = f"{ref(e)}[{_dur(r)}:{_dur(st) if st else ''}]"
            return text + _modifiers(o, at)
        case Call(func=f, args=args):
            return f"{f}({', '.join(ref(a) for a in args)})"
        case Aggregate(op=op, expr=e, param=p, grouping=g, without=w):
            clause = f" {'without' if w else 'by'} ({', '.join(g)})" if g or w else ""
            inner = f"{ref(p)}, {ref(e)}" if p is not None else ref(e)
            return f"{op}{clause} ({inner})"
        case Binary(op=op, lhs=lhs, rhs=rhs, return_bool=b, matching=m):
            mods = " bool" if b else ""
            if m is not None:
                mods += f" {'on' if m.on else 'ignoring'}({', '.join(m.labels)})"
                if m.card is Card.MANY_TO_ONE:
                    mods += f" group_left({', '.join(m.include)})"
                elif m.card is Card.ONE_TO_MANY:
                    mods += f" group_right({', '.join(m.include)})"
            return f"{ref(lhs)} {op}{mods} {ref(rhs)}"
        case Neg(expr=e):
            return f"-{ref(e)}"
        case Weighted(weights=ws, terms=ts):
            terms = ", ".join(f"{_num(w)}: {ref(t)}" for w, t in zip(ws, ts, strict=True))
            return f"weighted({terms})"
    return type(node).__name__  # pragma: no cover


def _num(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


def _dur(ms: int | None) -> str:
    return format_duration(ms or 0)


def _modifiers(offset_ms: int, at: At | None) -> str:
    text = f" offset {_dur(offset_ms)}" if offset_ms else ""
    if at is not None:
        text += f" @ {at.kind}()" if at.kind != "timestamp" else f" @ {at.ms / 1000:g}"
    return text


def _selector(sel: Selector) -> str:
    shown = [m for m in sel.matchers if not (m[0] == "__name__" and m[1] == "=" and
                                             m[2] == sel.metric)]
    inner = ", ".join(f"{n}{op}{quote(v)}" for n, op, v in shown)
    name = sel.metric or ""
    text = name + (f"{{{inner}}}" if inner or not name else "")
    return text + _modifiers(sel.offset_ms, sel.at)
