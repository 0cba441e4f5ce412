"""Units of expressions, so that ``5%`` is never silently ambiguous.

A percentage literal means 0.05 when compared with a ratio (0-1) and 5 when
compared with a percentage (0-100). The unit of an expression comes from the
metric declarations (``metric x { unit ratio }``), from Prometheus naming
conventions (``_ratio``, ``_percent``) and from the functions in between
(``avg_over_time`` keeps its input's unit, ``rate`` does not). When the unit is
unknown, the linter says so instead of guessing.
"""

from __future__ import annotations

import decimal

from monitoring.dsl import ast
from monitoring.dsl.env import Environment
from monitoring.stdlib import REGISTRY
from monitoring.stdlib.registry import Unit

RATIO = "ratio"
PERCENT = "percent"
PERCENT_UNITS = {RATIO: 0.01, PERCENT: 1.0}
"""Multiplier applied to the number written before ``%`` for each unit."""

_UNIT_ALIASES = {
    "ratio": RATIO, "fraction": RATIO, "percent": PERCENT, "percentage": PERCENT, "pct": PERCENT,
    "%": PERCENT,
}
_SUFFIXES = (("_ratio", RATIO), ("_percent", PERCENT), ("_percentage", PERCENT),
             ("_pct", PERCENT))

_PHI_PARAMS = {"phi", "confidence", "min_relative_change"}
"""Parameters that are fractions whatever the series' unit: ``95%`` there is always 0.95."""


def normalise_unit(unit: str | None) -> str | None:
    """Map spellings such as ``percentage`` onto the canonical unit names."""
    if unit is None:
        return None
    return _UNIT_ALIASES.get(unit.lower(), unit.lower())


def metric_unit(
    name: str | None, env: Environment, seen: frozenset[str] = frozenset()
) -> str | None:
    """The unit of a metric: declared, recorded from an expression, or by its suffix."""
    if name is None:
        return None
    info = env.metric(name)
    if info is not None and info.unit is not None:
        return normalise_unit(info.unit)
    rules = env.recording_rules.get(name)
    if rules and name not in seen:
        units = {unit_of(r.expr, env, seen | {name}) for r in rules if r.expr is not None}
        if len(units) == 1:
            return units.pop()
    for suffix, unit in _SUFFIXES:
        if name.endswith(suffix):
            return unit
    return None


def unit_of(expr: ast.Expr, env: Environment, seen: frozenset[str] = frozenset()) -> str | None:
    """The unit of an expression's value, when it can be known."""
    match expr:
        case ast.VectorSelector(name=name):
            return metric_unit(name, env, seen)
        case ast.MatrixSelector(vector=v):
            return metric_unit(v.name, env, seen)
        case ast.SubqueryExpr(expr=e) | ast.ParenExpr(expr=e) | ast.UnaryExpr(expr=e):
            return unit_of(e, env, seen)
        case ast.Call(func=func, args=args):
            decl = REGISTRY.function(func)
            if decl is None or decl.unit is not Unit.SAME:
                return None
            for arg in args:
                if not isinstance(arg, ast.NumberLiteral | ast.StringLiteral | ast.PercentLiteral):
                    return unit_of(arg, env, seen)
            return None
        case ast.AggregateExpr(op=op, expr=e):
            agg = REGISTRY.aggregations.get(op)
            if agg is None or agg.unit is not Unit.SAME:
                return None
            return unit_of(e, env, seen)
        case ast.BinaryExpr(op=op, lhs=lhs, rhs=rhs):
            return _binary_unit(op, lhs, rhs, env, seen)
    return None


def _binary_unit(op: str, lhs: ast.Expr, rhs: ast.Expr, env: Environment,
                 seen: frozenset[str]) -> str | None:
    left = unit_of(lhs, env, seen)
    right = unit_of(rhs, env, seen)
    if op in ("and", "unless"):
        return left
    if op == "or":
        return left if left == right else None
    if op in ("==", "!=", ">", "<", ">=", "<="):
        # A filter keeps the vector side's values.
        return left if left is not None else right
    if op in ("+", "-"):
        if left == right:
            return left
        if _is_number(rhs):
            return left
        if _is_number(lhs):
            return right
    return None  # products and quotients have units of their own


def _strip(expr: ast.Expr) -> ast.Expr:
    while isinstance(expr, ast.ParenExpr | ast.UnaryExpr):
        expr = expr.expr
    return expr


def _is_number(expr: ast.Expr) -> bool:
    return isinstance(_strip(expr), ast.NumberLiteral | ast.PercentLiteral)


def percent_contexts(
    expr: ast.Expr, env: Environment, rule_unit: str | None = None
) -> list[tuple[ast.PercentLiteral, str | None, ast.Expr | None]]:
    """Every percentage literal under ``expr`` with the unit it is compared against.

    Returns ``(literal, unit, partner)``: ``partner`` is the expression whose
    unit decides (``None`` when the literal has none), ``unit`` is ``None`` when
    it cannot be known. ``rule_unit`` (a YAML threshold's ``unit:``) overrides.
    """
    out: list[tuple[ast.PercentLiteral, str | None, ast.Expr | None]] = []
    if expr.span is not None and "%" not in expr.span.text():
        return out  # no percentage literal can be in there
    _visit(expr, None, env, rule_unit, out)
    return out


def _visit(
    expr: ast.Expr,
    partner: ast.Expr | None,
    env: Environment,
    rule_unit: str | None,
    out: list[tuple[ast.PercentLiteral, str | None, ast.Expr | None]],
) -> None:
    match expr:
        case ast.PercentLiteral():
            if partner is _PHI:
                out.append((expr, RATIO, None))
                return
            unit = normalise_unit(rule_unit) if rule_unit else (
                unit_of(partner, env) if partner is not None else None)
            out.append((expr, unit, partner))
        case ast.ParenExpr(expr=e) | ast.UnaryExpr(expr=e):
            _visit(e, partner, env, rule_unit, out)
        case ast.BinaryExpr(lhs=lhs, rhs=rhs):
            _visit(lhs, rhs if not _has_percent_only(rhs) else partner, env, rule_unit, out)
            _visit(rhs, lhs if not _has_percent_only(lhs) else partner, env, rule_unit, out)
        case ast.Call(func=func, args=args, kwargs=kwargs):
            decl = REGISTRY.function(func)
            subject = next((a for a in args if _is_series(a, env)), None)
            for i, arg in enumerate(args):
                param = decl.param_for(i) if decl is not None else None
                ctx = _PHI if param is not None and param.name in _PHI_PARAMS else subject
                _visit(arg, ctx if arg is not subject else None, env, rule_unit, out)
            for kw in kwargs:
                ctx = _PHI if kw.name in _PHI_PARAMS else subject
                _visit(kw.value, ctx, env, rule_unit, out)
        case ast.AggregateExpr(expr=e, param=param):
            if param is not None:
                _visit(param, _PHI if expr.op == "quantile" else e, env, rule_unit, out)
            _visit(e, None, env, rule_unit, out)
        case _:
            for child in ast.children(expr):
                _visit(child, None, env, rule_unit, out)


_PHI = ast.NumberLiteral(0.0)  # marker partner: a quantile, where 95% is 0.95


def _has_percent_only(expr: ast.Expr) -> bool:
    return isinstance(_strip(expr), ast.PercentLiteral)


def _is_series(expr: ast.Expr, env: Environment) -> bool:
    stripped = _strip(expr)
    return not isinstance(stripped, ast.NumberLiteral | ast.StringLiteral | ast.PercentLiteral)


def percent_value(literal: ast.PercentLiteral, unit: str | None) -> float:
    """The number a percentage stands for under ``unit`` (a ratio when unknown).

    A ratio is the decimal digits as written divided by 100, rounded once: ``70%``
    is 0.7, not 70 × 0.01 = 0.7000000000000001.
    """
    if PERCENT_UNITS.get(unit or RATIO, 0.01) == 1.0:
        return literal.number
    try:  # from the digits as written: 33.3% is 0.333, not 33.3's binary value / 100
        return float(decimal.Decimal(literal.text.rstrip().rstrip("%")) / 100)
    except (decimal.InvalidOperation, ValueError):
        return literal.number / 100
