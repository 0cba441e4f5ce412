"""Typed abstract syntax tree: what the user wrote, with a span on every node.

All three input formats (our DSL, the seed's YAML, Prometheus rule files) load
into these classes, so the checker, the linter, the printer and the lowering
to IR see one shape. Nodes are frozen, slotted dataclasses; spans are excluded
from equality, so ``parse(print(ast)) == ast`` is a meaningful property.

Expression nodes mirror Prometheus's ``promql/parser/ast.go`` (NumberLiteral,
StringLiteral, VectorSelector, MatrixSelector, SubqueryExpr, Call,
AggregateExpr, BinaryExpr, UnaryExpr, ParenExpr) plus our extensions
(PercentLiteral, keyword arguments, WeightedExpr).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from monitoring.dsl.source import Span

# ---------------------------------------------------------------- expressions


@dataclass(frozen=True, slots=True)
class Duration:
    """A duration literal; ``text`` keeps the spelling for messages and printing."""

    ms: int
    text: str = field(compare=False, default="")
    span: Span | None = field(compare=False, default=None, repr=False)

    def __str__(self) -> str:
        return self.text or format_duration(self.ms)


def format_duration(ms: int) -> str:
    """Render milliseconds in Prometheus's canonical form (``1h30m``, ``500ms``)."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    out = []
    for unit, size in (
        ("y", 365 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return sign + "".join(out)


class MatchOp(enum.Enum):
    """A label matcher operator."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


@dataclass(frozen=True, slots=True)
class LabelMatcher:
    """``name op "value"`` inside a selector's braces."""

    name: str
    op: MatchOp
    value: str
    span: Span | None = field(compare=False, default=None, repr=False)
    value_span: Span | None = field(compare=False, default=None, repr=False)


class AtKind(enum.Enum):
    """What an ``@`` modifier pins evaluation to."""

    TIMESTAMP = "timestamp"
    START = "start"
    END = "end"


@dataclass(frozen=True, slots=True)
class AtModifier:
    """``@ <unix seconds>`` or ``@ start()`` / ``@ end()``."""

    kind: AtKind
    ms: int = 0  # only for TIMESTAMP
    span: Span | None = field(compare=False, default=None, repr=False)


class Expr:
    """Base class of expression nodes."""

    __slots__ = ()
    span: Span | None


@dataclass(frozen=True, slots=True)
class NumberLiteral(Expr):
    """A float literal; durations in number position (``1h``) are seconds."""

    value: float
    text: str = field(compare=False, default="")
    span: Span | None = field(compare=False, default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        # NaN literals must compare equal for round-trip properties.
        if not isinstance(other, NumberLiteral):
            return NotImplemented
        both_nan = self.value != self.value and other.value != other.value
        return self.value == other.value or both_nan

    def __hash__(self) -> int:
        return hash(("num", "nan" if self.value != self.value else self.value))


@dataclass(frozen=True, slots=True)
class PercentLiteral(Expr):
    """``5%``: its numeric value depends on the unit of what it is compared with."""

    number: float
    text: str = field(compare=False, default="")
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class StringLiteral(Expr):
    """A string literal (already unescaped)."""

    value: str
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class VectorSelector(Expr):
    """``name{matchers} offset d @ t``; ``name`` is also present as an ``__name__`` matcher."""

    name: str | None
    matchers: tuple[LabelMatcher, ...]
    offset: Duration | None = None
    at: AtModifier | None = None
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class MatrixSelector(Expr):
    """``selector[range]``; offset and ``@`` stay on the inner selector, as in Prometheus."""

    vector: VectorSelector
    range: Duration
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SubqueryExpr(Expr):
    """``expr[range:step]`` with optional offset and ``@``."""

    expr: Expr
    range: Duration
    step: Duration | None
    offset: Duration | None = None
    at: AtModifier | None = None
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class KeywordArg:
    """``name=expr`` in a call (our extension)."""

    name: str
    value: Expr
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """A function call."""

    func: str
    args: tuple[Expr, ...]
    kwargs: tuple[KeywordArg, ...] = ()
    span: Span | None = field(compare=False, default=None, repr=False)
    name_span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class AggregateExpr(Expr):
    """``op by|without (labels) ([param,] expr)``; ``op`` is lower-cased."""

    op: str
    expr: Expr
    param: Expr | None = None
    grouping: tuple[str, ...] = ()
    without: bool = False
    has_grouping: bool = False  # "by ()" differs from no clause only in printing
    span: Span | None = field(compare=False, default=None, repr=False)
    op_span: Span | None = field(compare=False, default=None, repr=False)


class Card(enum.Enum):
    """Cardinality of a binary vector match."""

    ONE_TO_ONE = "one-to-one"
    MANY_TO_ONE = "many-to-one"  # group_left
    ONE_TO_MANY = "one-to-many"  # group_right
    MANY_TO_MANY = "many-to-many"  # set operators


@dataclass(frozen=True, slots=True)
class VectorMatching:
    """``on(...)``/``ignoring(...)`` and ``group_left(...)``/``group_right(...)``."""

    on: bool
    labels: tuple[str, ...]
    card: Card = Card.ONE_TO_ONE
    include: tuple[str, ...] = ()
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class BinaryExpr(Expr):
    """``lhs op [bool] [on|ignoring(...) [group_x(...)]] rhs``; ``op`` is lower-cased."""

    op: str
    lhs: Expr
    rhs: Expr
    return_bool: bool = False
    matching: VectorMatching | None = None
    span: Span | None = field(compare=False, default=None, repr=False)
    op_span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class UnaryExpr(Expr):
    """``-expr`` or ``+expr``."""

    op: str
    expr: Expr
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ParenExpr(Expr):
    """``(expr)``; kept so the printer reproduces the user's grouping."""

    expr: Expr
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class WeightedTerm:
    """``weight: condition`` inside ``weighted(...)``."""

    weight: float
    expr: Expr
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class WeightedExpr(Expr):
    """``weighted(w1: c1, w2: c2, ...)``: per series, the weights of the true conditions, summed.

    Our extension, for the seed's "weighted conditions".
    """

    terms: tuple[WeightedTerm, ...]
    span: Span | None = field(compare=False, default=None, repr=False)


# ---------------------------------------------------------------- rule files


@dataclass(frozen=True, slots=True)
class Name:
    """A name as written (rule, channel, policy), with its span."""

    value: str
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LabelPair:
    """``key = "value"`` in a labels or annotations block; values are templates."""

    key: str
    value: str
    span: Span | None = field(compare=False, default=None, repr=False)
    value_span: Span | None = field(compare=False, default=None, repr=False)


class NoDataPolicy(enum.Enum):
    """What an alert does when its condition returns no data at all."""

    KEEP_LAST = "keep_last"
    RESOLVE = "resolve"
    FIRE = "fire"
    NODATA = "nodata"


class ConditionKind(enum.Enum):
    """Where an alert's condition came from (the seed's condition types or an expression)."""

    EXPR = "expr"
    THRESHOLD = "threshold"
    TREND = "trend"
    ANOMALY = "anomaly"
    COMPOSITE = "composite"


@dataclass(frozen=True, slots=True)
class AlertRule:
    """An alerting rule in any input format."""

    name: Name
    expr: Expr | None  # None when the condition failed to parse
    recover_expr: Expr | None = None
    for_: Duration | None = None
    keep_firing_for: Duration | None = None
    severity: Name | None = None
    labels: tuple[LabelPair, ...] = ()
    annotations: tuple[LabelPair, ...] = ()
    channels: tuple[Name, ...] = ()
    cooldown: Duration | None = None
    escalation: Name | None = None
    no_data: NoDataPolicy | None = None
    no_data_span: Span | None = field(compare=False, default=None, repr=False)
    kind: ConditionKind = ConditionKind.EXPR
    tags: tuple[str, ...] = ()
    unit: str | None = None  # unit declared next to a YAML threshold condition
    span: Span | None = field(compare=False, default=None, repr=False)


@dataclass(frozen=True, slots=True)
class RecordingRule:
    """A recording rule: ``record name = expr``."""

    name: Name
    expr: Expr | None
    labels: tuple[LabelPair, ...] = ()
    span: Span | None = field(compare=False, default=None, repr=False)


Rule = AlertRule | RecordingRule


@dataclass(frozen=True, slots=True)
class Group:
    """A group of rules evaluated together at one interval."""

    name: Name
    rules: tuple[Rule, ...]
    interval: Duration | None = None
    labels: tuple[LabelPair, ...] = ()
    limit: int | None = None
    query_offset: Duration | None = None
    span: Span | None = field(compare=False, default=None, repr=False)


class MetricType(enum.Enum):
    """The Prometheus metric types a declaration may name."""

    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    SUMMARY = "summary"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class MetricDecl:
    """What is known about a metric: type, unit, scrape interval."""

    name: Name
    type: MetricType | None = None
    unit: str | None = None
    help: str | None = None
    scrape_interval: Duration | None = None
    span: Span | None = field(compare=False, default=None, repr=False)


class FileKind(enum.Enum):
    """The formats a rule file may be written in."""

    DSL = "dsl"
    SEED_RULES = "seed-rules"
    PROMETHEUS = "prometheus"


@dataclass(frozen=True, slots=True)
class RuleFile:
    """One loaded rule file."""

    kind: FileKind
    groups: tuple[Group, ...] = ()
    metrics: tuple[MetricDecl, ...] = ()
    scrape_interval: Duration | None = None
    span: Span | None = field(compare=False, default=None, repr=False)


def walk(expr: Expr) -> list[Expr]:
    """All expression nodes under ``expr`` (itself included), parents before children."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(reversed(children(node)))
    return out


def children(node: Expr) -> list[Expr]:
    """The direct sub-expressions of a node, in source order."""
    match node:
        case MatrixSelector(vector=v):
            return [v]
        case SubqueryExpr(expr=e) | UnaryExpr(expr=e) | ParenExpr(expr=e):
            return [e]
        case Call(args=args, kwargs=kwargs):
            return [*args, *(k.value for k in kwargs)]
        case AggregateExpr(expr=e, param=p):
            return [p, e] if p is not None else [e]
        case BinaryExpr(lhs=lhs, rhs=rhs):
            return [lhs, rhs]
        case WeightedExpr(terms=terms):
            return [t.expr for t in terms]
    return []


def depth(expr: Expr) -> int:
    """Nesting depth of an expression, computed without recursion.

    Recursive passes (checking, printing, hashing) must not see trees deeper than
    the nesting limit; this is how the parser finds out, cheaply.
    """
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        node, d = stack.pop()
        if d > deepest:
            deepest = d
        for child in children(node):
            stack.append((child, d + 1))
    return deepest


def unparen(expr: Expr) -> Expr:
    """Strip any number of enclosing parentheses."""
    while isinstance(expr, ParenExpr):
        expr = expr.expr
    return expr
