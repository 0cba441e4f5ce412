"""Lowering: checked AST -> IR, with interning so equal sub-expressions are one node.

Runs after type checking, so it can assume well-typed input; where the checker
reported an error the rule is not lowered at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from monitoring.dsl import ast, ir
from monitoring.dsl.checker import COMPARISONS, is_trend_direction
from monitoring.dsl.env import Environment
from monitoring.dsl.source import Span
from monitoring.dsl.units import percent_contexts, percent_value
from monitoring.stdlib import REGISTRY


class Interner:
    """The table of unique IR nodes; returns the canonical instance of a node."""

    def __init__(self) -> None:
        self._nodes: dict[ir.Node, ir.Node] = {}

    def __call__(self, node: ir.Node) -> ir.Node:
        return self._nodes.setdefault(node, node)

    def __len__(self) -> int:
        return len(self._nodes)

    def __iter__(self) -> Iterator[ir.Node]:
        return iter(self._nodes)


class Lowerer:
    """Lowers the expressions of one rule (percent units depend on the rule)."""

    def __init__(self, env: Environment, intern: Interner, rule_unit: str | None = None,
                 positions: dict[ir.Node, tuple[int, int]] | None = None) -> None:
        self.env = env
        self.intern = intern
        self.rule_unit = rule_unit
        self._percents: dict[int, float] = {}
        self.positions = positions
        """When given, filled with the (line, column) each IR node was first lowered from."""

    def lower_root(self, expr: ast.Expr) -> ir.Node:
        """Lower a rule's top-level expression."""
        for lit, unit, _partner in percent_contexts(expr, self.env, self.rule_unit):
            self._percents[id(lit)] = percent_value(lit, unit)
        return self.lower(expr)

    def lower(self, expr: ast.Expr) -> ir.Node:
        """Lower one expression node (children first)."""
        node = self.intern(self._lower(expr))
        if self.positions is not None:
            self._record(node, expr.span)
        return node

    def _record(self, node: ir.Node, span: Span | None) -> None:
        """Remember where ``node`` came from (annotations name the sub-expression's position)."""
        if self.positions is not None and span is not None:
            self.positions.setdefault(node, (span.line, span.column))

    def _lower(self, expr: ast.Expr) -> ir.Node:
        match expr:
            case ast.NumberLiteral(value=v):
                return ir.Const(v)
            case ast.PercentLiteral():
                return ir.Const(self._percents.get(id(expr), expr.number / 100.0))
            case ast.StringLiteral(value=v):
                return ir.StringConst(v)
            case ast.VectorSelector():
                return self._selector(expr)
            case ast.MatrixSelector(vector=v, range=r):
                sel = self.intern(self._selector(v))
                assert isinstance(sel, ir.Selector)
                self._record(sel, v.span)
                return ir.RangeSelector(sel, r.ms)
            case ast.SubqueryExpr(expr=e, range=r, step=st, offset=o, at=at):
                return ir.Subquery(self.lower(e), r.ms, st.ms if st is not None else None,
                                   o.ms if o is not None else 0, _at(at))
            case ast.ParenExpr(expr=e):
                return self._lower(e)
            case ast.UnaryExpr(op=op, expr=e):
                inner = self.lower(e)
                return ir.Neg(inner) if op == "-" else inner
            case ast.Call():
                return self._call(expr)
            case ast.AggregateExpr(op=op, expr=e, param=p, grouping=g, without=w):
                return ir.Aggregate(op, self.lower(e), self.lower(p) if p is not None else None,
                                    tuple(sorted(set(g))), w)
            case ast.BinaryExpr():
                return self._binary(expr)
            case ast.WeightedExpr(terms=terms):
                return ir.Weighted(tuple(t.weight for t in terms),
                                   tuple(self.lower(t.expr) for t in terms))
        raise TypeError(f"cannot lower {type(expr).__name__}")  # pragma: no cover

    def _selector(self, sel: ast.VectorSelector) -> ir.Selector:
        matchers = tuple(sorted({(m.name, m.op.value, m.value) for m in sel.matchers}))
        return ir.Selector(sel.name, matchers, sel.offset.ms if sel.offset is not None else 0,
                           _at(sel.at))

    def _call(self, call: ast.Call) -> ir.Node:
        decl = REGISTRY.function(call.func)
        args = [self.lower(a) for a in call.args]
        if decl is None:  # pragma: no cover - the checker rejects unknown functions
            return ir.Call(call.func, tuple(args))
        by_name = {k.name: k.value for k in call.kwargs}
        bound: list[ir.Node] = []
        for i, param in enumerate(decl.params):
            if param.variadic:
                bound.extend(args[i:])
                break
            if i < len(args):
                bound.append(args[i])
            elif param.name in by_name:
                bound.append(self.lower(by_name[param.name]))
            elif param.default is not None:
                default = param.default
                bound.append(self.intern(ir.StringConst(default) if isinstance(default, str)
                                         else ir.Const(float(default))))
            else:
                break  # an optional argument without default stays omitted
        return ir.Call(call.func, tuple(bound))

    def _binary(self, b: ast.BinaryExpr) -> ir.Node:
        lhs = self._operand(b.lhs, b.rhs)
        rhs = self._operand(b.rhs, b.lhs)
        matching = None
        m = b.matching
        if m is not None and (m.on or m.labels or m.card is not ast.Card.ONE_TO_ONE):
            matching = ir.Matching(m.on, tuple(sorted(set(m.labels))), m.card,
                                   tuple(sorted(set(m.include))))
        return fold(ir.Binary(b.op, lhs, rhs, b.return_bool, matching))

    def _operand(self, side: ast.Expr, other: ast.Expr) -> ir.Node:
        direction = is_trend_direction(side)
        inner = ast.unparen(other)
        if direction is not None and isinstance(inner, ast.Call) and inner.func == "trend":
            return self.intern(ir.Const(direction))
        return self.lower(side)


def _at(at: ast.AtModifier | None) -> ir.At | None:
    if at is None:
        return None
    return ir.At(at.kind.value, at.ms)


# ---------------------------------------------------------------- constant folding


def fold(node: ir.Node) -> ir.Node:
    """Fold scalar-constant arithmetic (``2 * 60`` -> ``120``) as Prometheus evaluates it."""
    if isinstance(node, ir.Neg) and isinstance(node.expr, ir.Const):
        return ir.Const(-node.expr.value)
    if not (isinstance(node, ir.Binary) and isinstance(node.lhs, ir.Const)
            and isinstance(node.rhs, ir.Const)):
        return node
    a, b = node.lhs.value, node.rhs.value
    if node.op in COMPARISONS:
        if not node.return_bool:
            return node  # rejected by the checker
        return ir.Const(1.0 if _compare(node.op, a, b) else 0.0)
    value = scalar_arithmetic(node.op, a, b)
    return node if value is None else ir.Const(value)


def _compare(op: str, a: float, b: float) -> bool:
    return {
        "==": a == b, "!=": a != b, ">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b,
    }[op]


def scalar_arithmetic(op: str, a: float, b: float) -> float | None:
    """IEEE-754 arithmetic as Go computes it (no exceptions on division by zero)."""
    try:
        match op:
            case "+":
                return a + b
            case "-":
                return a - b
            case "*":
                return a * b
            case "/":
                if b == 0:
                    if a == 0 or math.isnan(a):
                        return math.nan
                    return math.copysign(math.inf, a) * math.copysign(1.0, b)
                return a / b
            case "%":
                if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
                    return math.nan
                return math.fmod(a, b)
            case "^":
                return _pow(a, b)
            case "atan2":
                return math.atan2(a, b)
    except OverflowError:
        return math.inf
    return None


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        return math.inf if a > 0 or (float(b).is_integer() and b % 2 == 0) else -math.inf
    except ValueError:
        if a == 0 and b < 0:
            return math.inf
        return math.nan
