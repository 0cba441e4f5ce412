"""Type checking and name resolution of expressions, as Prometheus's ``checkAST`` does it.

Every expression has one of four value types (scalar, instant vector, range
vector, string). Functions take their arity and argument types from the
registry (:mod:`monitoring.stdlib`); operators follow PromQL's rules. Errors use
Prometheus's wording where one exists, so users can search for them, and carry
a hint on how to fix the expression.
"""

from __future__ import annotations

from collections.abc import Callable

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.limits import LIMITS
from monitoring.dsl.regex import regex_error
from monitoring.dsl.source import Span
from monitoring.stdlib import REGISTRY
from monitoring.stdlib.conditions import TREND_DIRECTIONS
from monitoring.stdlib.registry import FunctionDecl, Param
from monitoring.stdlib.types import ValueType

S = ValueType.SCALAR
V = ValueType.VECTOR
M = ValueType.MATRIX
STR = ValueType.STRING

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
SET_OPERATORS = frozenset({"and", "or", "unless"})

Report = Callable[[Diagnostic], None]


def is_trend_direction(expr: ast.Expr) -> float | None:
    """``increasing`` / ``decreasing`` / ``flat`` written next to ``trend()``: its value."""
    if (isinstance(expr, ast.VectorSelector) and expr.name in TREND_DIRECTIONS
            and len(expr.matchers) == 1 and expr.offset is None and expr.at is None):
        return TREND_DIRECTIONS[expr.name]
    return None


def _is_trend_call(expr: ast.Expr) -> bool:
    expr = ast.unparen(expr)
    return isinstance(expr, ast.Call) and expr.func == "trend"



REQUIRED_WITH = {("anomaly", "method", "seasonal"): "season"}
"""(function, parameter, value) -> a parameter that value needs, non-zero."""

class Checker:
    """Checks expressions; one instance serves a whole run."""

    def __init__(self, report: Report, *, prometheus_compat: bool = False) -> None:
        self.report = report
        self.prometheus_compat = prometheus_compat

    def _error(self, code: str, message: str, span: Span | None, *hints: str) -> None:
        self.report(Diagnostic(code, Severity.ERROR, message, span, tuple(h for h in hints if h)))

    def check_root(self, expr: ast.Expr, what: str) -> ValueType | None:
        """Check a rule's expression; it must yield an instant vector or a scalar."""
        depth = ast.depth(expr)
        if depth > LIMITS.max_nesting:
            self._error("limit/too-deep",
                        f"expression nests {depth} levels deep; the limit is {LIMITS.max_nesting}",
                        expr.span)
            return None
        t = self.check(expr)
        if t in (M, STR):
            hint = "wrap it in a function such as avg_over_time(...)" if t is M else ""
            self._error("type/invalid-rule-type",
                        f"{what} must be an instant vector or a scalar, got {t}", expr.span, hint)
        return t

    def check(self, expr: ast.Expr) -> ValueType:
        """Return the type of ``expr``, reporting every problem found under it."""
        match expr:
            case ast.NumberLiteral() | ast.PercentLiteral():
                return S
            case ast.StringLiteral():
                return STR
            case ast.VectorSelector():
                self._check_matchers(expr)
                return V
            case ast.MatrixSelector(vector=vector):
                self._check_matchers(vector)
                return M
            case ast.SubqueryExpr(expr=inner):
                t = self.check(inner)
                if t is not V:
                    self._error("type/mismatch",
                                f"subquery is only allowed on instant vector, got {t}",
                                inner.span)
                return M
            case ast.ParenExpr(expr=inner):
                return self.check(inner)
            case ast.UnaryExpr(expr=inner):
                t = self.check(inner)
                if t not in (S, V):
                    self._error("type/mismatch",
                                "unary expression only allowed on expressions of type scalar "
                                f"or instant vector, got {t}", inner.span)
                return t if t in (S, V) else V
            case ast.Call():
                return self._check_call(expr)
            case ast.AggregateExpr():
                return self._check_aggregation(expr)
            case ast.BinaryExpr():
                return self._check_binary(expr)
            case ast.WeightedExpr(terms=terms):
                for term in terms:
                    t = self.check(term.expr)
                    if t is not V:
                        self._error("type/mismatch",
                                    f"a weighted term must be an instant vector condition, got {t}",
                                    term.expr.span)
                return V
        return V  # pragma: no cover - every node kind is handled above

    # ------------------------------------------------------------ selectors

    def _check_matchers(self, sel: ast.VectorSelector) -> None:
        for m in sel.matchers:
            if m.op in (ast.MatchOp.RE, ast.MatchOp.NRE):
                problem = regex_error(m.value)
                if problem is not None:
                    self._error("promql/invalid-regex",
                                f"invalid regular expression {m.value!r}: {problem}",
                                m.value_span or m.span or sel.span,
                                "label matchers use RE2 syntax and must match the whole value")

    # ------------------------------------------------------------ calls

    def _check_call(self, call: ast.Call) -> ValueType:
        decl = REGISTRY.function(call.func)
        if decl is None:
            self._unknown_function(call)
            for arg in call.args:
                self.check(arg)
            for kw in call.kwargs:
                self.check(kw.value)
            return V
        if self.prometheus_compat and decl.extension:
            self.report(Diagnostic(
                "promql/extension", Severity.WARNING,
                f"{call.func}() is an extension of this engine; Prometheus will reject this rule",
                call.name_span or call.span))
        bound = self._bind(call, decl)
        for param, arg in bound:
            t = self.check(arg)
            if param is None:
                continue
            if t is not param.type:
                self._arg_mismatch(call, decl, param.type, t, arg)
            elif param.choices and isinstance(ast.unparen(arg), ast.StringLiteral):
                value = ast.unparen(arg)
                assert isinstance(value, ast.StringLiteral)
                if value.value not in param.choices:
                    hint = did_you_mean(value.value, param.choices) or ""
                    self._error("type/invalid-choice",
                                f"{param.name} of {call.func}() must be one of "
                                + ", ".join(repr(c) for c in param.choices)
                                + f", got {value.value!r}", arg.span, hint)
        self._check_required_with(call, bound)
        return decl.returns

    def _check_required_with(self, call: ast.Call,
                             bound: list[tuple[Param | None, ast.Expr]]) -> None:
        """A parameter that another one's value makes necessary, missing or given as 0.

        ``anomaly(x[3d], method="seasonal")`` has no season to compare with.
        """
        given = {p.name: ast.unparen(a) for p, a in bound if p is not None}
        for (func, name, choice), needed in REQUIRED_WITH.items():
            arg = given.get(name)
            if call.func != func or not isinstance(arg, ast.StringLiteral) \
                    or arg.value != choice:
                continue
            value = given.get(needed)
            if value is None or (isinstance(value, ast.NumberLiteral) and value.value == 0):
                self._error("type/missing-argument",
                            f'{func}() with {name}="{choice}" needs a {needed}',
                            (value.span if value is not None else None) or arg.span or call.span,
                            f'e.g. {func}(x[3d], {name}="{choice}", {needed}=1d)')

    def _bind(self, call: ast.Call, decl: FunctionDecl) -> list[tuple[Param | None, ast.Expr]]:
        n = len(call.args)
        max_args = decl.max_args
        kw_names = {k.name for k in call.kwargs}
        positional_required = [p for p in decl.params if not p.optional and not p.variadic]
        missing = [p for p in positional_required[n:] if p.name not in kw_names]
        if missing or (max_args is not None and n > max_args):
            if max_args is None:
                expected = f"at least {decl.min_args}"
            elif decl.min_args == max_args:
                expected = str(max_args)
            else:
                expected = f"{decl.min_args} to {max_args}"
            self._error("type/wrong-argument-count",
                        f"expected {expected} argument(s) in call to {call.func!r}, got "
                        f"{n + len(call.kwargs)}", call.span, f"signature: {decl.signature()}")
        out: list[tuple[Param | None, ast.Expr]] = [
            (decl.param_for(i), arg) for i, arg in enumerate(call.args)
        ]
        by_name = {p.name: p for p in decl.params}
        for kw in call.kwargs:
            p = by_name.get(kw.name)
            if p is None:
                hint = did_you_mean(kw.name, by_name) or f"signature: {decl.signature()}"
                self._error("name/unknown-argument",
                            f"{call.func}() has no parameter {kw.name!r}", kw.span, hint)
                out.append((None, kw.value))
                continue
            index = decl.params.index(p)
            if index < n and not p.variadic:
                self._error("type/duplicate-argument",
                            f"{call.func}() got {kw.name!r} both by position and by name",
                            kw.span)
            out.append((p, kw.value))
        return out

    def _arg_mismatch(self, call: ast.Call, decl: FunctionDecl, want: ValueType,
                      got: ValueType, arg: ast.Expr) -> None:
        hint = ""
        inner = ast.unparen(arg)
        if want is M and got is V:
            if isinstance(inner, ast.VectorSelector):
                hint = f"add a range: {call.func}({_text(inner)}[5m])"
            else:
                hint = "use a subquery: (expr)[5m:1m]"
        elif want is V and got is M:
            hint = f"{call.func}() takes an instant vector; aggregate the range first, e.g. " \
                   "avg_over_time(x[5m])"
        elif want is S and got is V:
            hint = "convert with scalar(...)"
        elif want is V and got is S:
            hint = "convert with vector(...)"
        self._error("type/mismatch",
                    f"expected type {want} in call to function {call.func!r}, got {got}",
                    arg.span, hint)

    def _unknown_function(self, call: ast.Call) -> None:
        names = list(REGISTRY.names()) + list(REGISTRY.aggregations)
        hint = did_you_mean(call.func, names) or ""
        if call.func.lower() in REGISTRY.aggregations:
            hint = f"{call.func.lower()} is an aggregation: {call.func.lower()} by (label) (expr)"
        self._error("name/unknown-function", f"unknown function {call.func!r}",
                    call.name_span or call.span, hint)

    # ------------------------------------------------------------ aggregations

    def _check_aggregation(self, agg: ast.AggregateExpr) -> ValueType:
        decl = REGISTRY.aggregations.get(agg.op)
        t = self.check(agg.expr)
        if t is not V:
            self._error("type/mismatch",
                        f"expected type instant vector in aggregation expression, got {t}",
                        agg.expr.span,
                        "aggregate over time first, e.g. avg_over_time(x[5m])" if t is M else "")
        if agg.param is not None:
            pt = self.check(agg.param)
            want = decl.param if decl is not None else None
            if want is not None and pt is not want:
                self._error("type/mismatch",
                            f"expected type {want} in aggregation parameter, got {pt}",
                            agg.param.span)
        if decl is not None and decl.experimental and self.prometheus_compat:
            self.report(Diagnostic(
                "promql/experimental", Severity.INFO,
                f"{agg.op} is experimental in Prometheus and needs "
                "--enable-feature=promql-experimental-functions", agg.op_span or agg.span))
        return V

    # ------------------------------------------------------------ operators

    def _check_binary(self, b: ast.BinaryExpr) -> ValueType:
        lt = self._operand(b.lhs, b.rhs)
        rt = self._operand(b.rhs, b.lhs)
        for side, t in ((b.lhs, lt), (b.rhs, rt)):
            if t not in (S, V):
                self._error("type/mismatch",
                            "binary expression must contain only scalar and instant vector "
                            f"types, got {t}", side.span,
                            "aggregate the range first, e.g. avg_over_time(x[5m])" if t is M
                            else "")
        op = b.op
        span = b.op_span or b.span
        if b.return_bool and op not in COMPARISONS:
            self._error("type/bool-not-allowed",
                        "bool modifier can only be used on comparison operators", span)
        if op in COMPARISONS and lt is S and rt is S and not b.return_bool:
            self._error("type/bool-required",
                        "comparisons between scalars must use BOOL modifier", span,
                        f"write: a {op} bool b")
        if op in SET_OPERATORS and (lt is S or rt is S):
            self._error("type/mismatch",
                        f"set operator {op!r} not allowed in binary scalar expression", span)
        m = b.matching
        if m is not None:
            if lt is S or rt is S:
                self._error("type/invalid-matching",
                            "vector matching only allowed between instant vectors",
                            m.span or span)
            if op in SET_OPERATORS and m.card is not ast.Card.ONE_TO_ONE:
                self._error("type/invalid-matching", f"no grouping allowed for {op!r} operation",
                            m.span or span)
            if m.on:
                both = sorted(set(m.labels) & set(m.include))
                if both:
                    self._error("type/invalid-matching",
                                f"label {both[0]!r} must not occur in ON and GROUP clause at once",
                                m.span or span)
        if lt is V or rt is V:
            return V
        return S

    def _operand(self, side: ast.Expr, other: ast.Expr) -> ValueType:
        # `trend(x[1h]) == increasing`: the direction names are constants there.
        if is_trend_direction(side) is not None and _is_trend_call(other):
            return S
        return self.check(side)


def _text(expr: ast.Expr) -> str:
    if expr.span is not None:
        return expr.span.text()
    return "x"
