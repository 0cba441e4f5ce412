"""Hypothesis strategies for the rule language: expression ASTs and whole rule files.

The trees look like what the parser builds, so ``parse(print(tree)) == tree``
is the property to test: a ParenExpr wherever precedence needs grouping (and
now and then where it does not), no negative number literals (``-1`` is a
unary minus), only modifiers the grammar accepts where they are. Names include
the awkward ones: keywords used as names, names that need quoting, non-ASCII.

The precedence table is written out here again on purpose, independently of
the printer's, so a mistake in one is caught by the other.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

from monitoring.dsl import ast
from monitoring.dsl.ast import format_duration
from monitoring.stdlib import REGISTRY

# ---------------------------------------------------------------- precedence

_LEVEL = {
    "or": 1, "and": 2, "unless": 2,
    "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
    "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 7,
}
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
SET_OPS = ("and", "or", "unless")
BINARY_OPS = tuple(_LEVEL)
UNARY, POSTFIX = 6, 8


def level(expr: ast.Expr) -> int:
    """How tightly the printed form of ``expr`` binds (grammar.lark, lowest first)."""
    if isinstance(expr, ast.BinaryExpr):
        return _LEVEL[expr.op]
    if isinstance(expr, ast.UnaryExpr):
        return UNARY
    if isinstance(expr, ast.MatrixSelector | ast.SubqueryExpr):
        return POSTFIX
    if isinstance(expr, ast.VectorSelector) and (expr.offset or expr.at):
        return POSTFIX
    return 9


def group(expr: ast.Expr, least: int) -> ast.Expr:
    """``expr`` in parentheses if it binds less tightly than its position needs."""
    return ast.ParenExpr(expr) if level(expr) < least else expr


def binary(op: str, lhs: ast.Expr, rhs: ast.Expr, return_bool: bool = False,
           matching: ast.VectorMatching | None = None) -> ast.BinaryExpr:
    """A binary expression whose operands are grouped as the parser would have them."""
    lvl = _LEVEL[op]
    if op == "^":  # right-associative; the left side is a postfix expression
        lhs, rhs = group(lhs, POSTFIX), group(rhs, UNARY)
    else:  # left-associative; the right side binds one level tighter (``*``: a unary)
        lhs, rhs = group(lhs, lvl), group(rhs, lvl + 1)
    return ast.BinaryExpr(op, lhs, rhs, return_bool, matching)


def unary(op: str, operand: ast.Expr) -> ast.UnaryExpr:
    """``-x``, with ``x`` grouped unless it binds at least as tightly as a unary sign."""
    return ast.UnaryExpr(op, group(operand, UNARY))


def subquery_target(expr: ast.Expr) -> ast.Expr:
    """What ``[range:step]`` may follow directly (not a percentage: ``5%[`` is no token)."""
    if isinstance(expr, ast.PercentLiteral):
        return ast.ParenExpr(expr)
    return group(expr, POSTFIX)


# ---------------------------------------------------------------- names and literals

# Every keyword of the grammar, used as a name: most are plain names where a name
# is expected; some are read as keywords in some operand positions, so such a
# metric name has to be written {__name__="..."} and the printer must know which.
_KEYWORD_NAMES = (
    "sum", "SUM", "topk", "count_values", "group", "by", "without", "weighted", "start", "end",
    "info", "Inf2", "nan_x", "inf", "NaN", "bool", "on", "ignoring", "group_left", "GROUP_RIGHT",
    "offset", "Offset", "and", "or", "unless", "atan2", "metric", "type", "unit", "help",
    "scrape_interval", "every", "limit", "query_offset", "alert", "record", "when",
    "recover_when", "for", "keep_firing_for", "severity", "summary", "description", "runbook",
    "notify", "cooldown", "escalate", "no_data", "labels", "annotations",
)
_QUOTED_NAMES = ("my.metric", "a-b", "ünïcödé", "with space", "1abc", "", "a\"b", "日本")

identifiers = st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,10}", fullmatch=True)
label_identifiers = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)

_text_chars = st.characters(exclude_categories=["Cs"])
strings = st.one_of(
    st.text(_text_chars, max_size=12),
    st.sampled_from(["\\", '"', "'", "`", "\n\t\r", "\x00\x07\x7f", "é", "😀", "#not a comment",
                     "{{ $labels.job }}", "\u2028", "a\\nb", "%", "}"]),
)

metric_names = st.one_of(identifiers, st.sampled_from(_KEYWORD_NAMES + _QUOTED_NAMES))
label_names = st.one_of(label_identifiers, st.sampled_from(
    (*_KEYWORD_NAMES, "le", "a.b", "ü", "with space", "a:b", "")))
rule_names = st.one_of(identifiers, st.sampled_from(_KEYWORD_NAMES + _QUOTED_NAMES))

positive_ms = st.one_of(
    st.sampled_from([1, 500, 1000, 60_000, 90_000, 300_000, 3_600_000, 86_400_000,
                     7 * 86_400_000, 365 * 86_400_000 + 1]),
    st.integers(1, 10**12),
)


def durations(ms: st.SearchStrategy[int] = positive_ms) -> st.SearchStrategy[ast.Duration]:
    """Durations (``text`` is not compared; half of them carry a canonical spelling)."""
    return st.builds(lambda v, spelt: ast.Duration(v, format_duration(v) if spelt else ""),
                     ms, st.booleans())


offsets = durations(st.integers(-(10**12), 10**12))
at_modifiers = st.one_of(
    st.builds(ast.AtModifier, st.just(ast.AtKind.TIMESTAMP), st.integers(-(10**13), 10**13)),
    st.builds(ast.AtModifier, st.sampled_from([ast.AtKind.START, ast.AtKind.END])),
)

numbers = st.one_of(
    st.builds(ast.NumberLiteral, st.floats(min_value=0.0)),
    st.builds(ast.NumberLiteral, st.sampled_from([0.0, 1.0, 0.5, 1e-9, 1e16, 2.0**60, math.inf,
                                                  math.nan, 5e-324, 1.7976931348623157e308])),
    # A duration in number position (``4h``) is a number of seconds.
    positive_ms.map(lambda ms: ast.NumberLiteral(ms / 1000.0, format_duration(ms))),
)
percents = st.one_of(
    st.builds(ast.PercentLiteral, st.floats(min_value=0.0, max_value=1e30)),
    st.sampled_from([ast.PercentLiteral(5.0, "5%"), ast.PercentLiteral(2.5, "2.50%"),
                     ast.PercentLiteral(0.5, ".5%"), ast.PercentLiteral(3.0, "")]),
)
string_literals = st.builds(ast.StringLiteral, strings)

# ---------------------------------------------------------------- selectors

_SELECTS = {ast.MatchOp.EQ: lambda v: v != "", ast.MatchOp.NE: lambda v: v == ""}


def _selects_something(m: ast.LabelMatcher) -> bool:
    """A matcher that does not match the empty string (one is required per selector)."""
    test = _SELECTS.get(m.op)
    return test is not None and test(m.value)


label_matchers = st.builds(
    ast.LabelMatcher,
    st.one_of(label_names, st.just("__name__")),
    st.sampled_from(list(ast.MatchOp)),
    st.one_of(strings, st.sampled_from([".*", ".+", "a|b", "5..", "(?i)x", "[", "\\d+"])),
).filter(lambda m: not (m.name == "__name__" and m.op is ast.MatchOp.EQ))


@st.composite
def vector_selectors(draw: st.DrawFn, modifiers: bool = True) -> ast.VectorSelector:
    """``name{...}``, ``{...}`` with the name inside or ``{"quoted.name"}``."""
    name = draw(st.none() | metric_names)
    others = draw(st.lists(label_matchers, max_size=3))
    matchers = list(others)
    if name is not None:
        name_matcher = ast.LabelMatcher("__name__", ast.MatchOp.EQ, name)
        matchers.insert(draw(st.integers(0, len(matchers))) if draw(st.booleans()) else 0,
                        name_matcher)
    if not any(_selects_something(m) for m in matchers):
        matchers.append(ast.LabelMatcher(draw(label_identifiers), ast.MatchOp.EQ, "x"))
    offset = draw(st.none() | offsets) if modifiers else None
    at = draw(st.none() | at_modifiers) if modifiers else None
    return ast.VectorSelector(name, tuple(matchers), offset, at)


@st.composite
def matrix_selectors(draw: st.DrawFn) -> ast.MatrixSelector:
    """``selector[range]``; offset and ``@`` live on the inner selector."""
    return ast.MatrixSelector(draw(vector_selectors()), draw(durations()))


leaves = st.one_of(numbers, percents, string_literals, vector_selectors(), matrix_selectors())

# ---------------------------------------------------------------- compound expressions

FUNCTIONS = sorted(REGISTRY.names())
AGGREGATIONS = ("sum", "avg", "count", "min", "max", "group", "stddev", "stdvar")
PARAM_AGGREGATIONS = ("topk", "bottomk", "quantile", "count_values", "limitk", "limit_ratio")
KWARG_NAMES = (*(n for n in _KEYWORD_NAMES if n.lower() not in ("inf", "nan")),
               "method", "confidence", "season")


def _compound(children: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Expr]:
    """Every node that has sub-expressions, built over ``children``."""
    label_lists = st.lists(label_names, max_size=3).map(tuple)
    return st.one_of(
        children.map(ast.ParenExpr),
        st.builds(unary, st.sampled_from(["-", "+"]), children),
        _binary(children, label_lists),
        _subquery(children),
        _call(children),
        _aggregation(children, label_lists),
        st.builds(lambda terms: ast.WeightedExpr(tuple(terms)), st.lists(st.builds(
            ast.WeightedTerm,
            st.floats(allow_nan=False, width=32) | st.sampled_from([0.6, -0.4, math.inf]),
            children), min_size=1, max_size=3)),
    )


@st.composite
def _binary(draw: st.DrawFn, children: st.SearchStrategy[ast.Expr],
            label_lists: st.SearchStrategy[tuple[str, ...]]) -> ast.BinaryExpr:
    """Operators with ``bool`` on comparisons and ``group_x`` on non-set operators."""
    op = draw(st.sampled_from(BINARY_OPS))
    return_bool = op in COMPARISONS and draw(st.booleans())
    matching = None
    if draw(st.booleans()):
        cards = [ast.Card.ONE_TO_ONE]
        if op not in SET_OPS:
            cards += [ast.Card.MANY_TO_ONE, ast.Card.ONE_TO_MANY]
        card = draw(st.sampled_from(cards))
        include = draw(label_lists) if card is not ast.Card.ONE_TO_ONE else ()
        matching = ast.VectorMatching(draw(st.booleans()), draw(label_lists), card, include)
    return binary(op, draw(children), draw(children), return_bool, matching)


@st.composite
def _subquery(draw: st.DrawFn, children: st.SearchStrategy[ast.Expr]) -> ast.SubqueryExpr:
    """``expr[range:step]`` with optional modifiers."""
    return ast.SubqueryExpr(
        subquery_target(draw(children)), draw(durations()), draw(st.none() | durations()),
        draw(st.none() | offsets), draw(st.none() | at_modifiers))


@st.composite
def _call(draw: st.DrawFn, children: st.SearchStrategy[ast.Expr]) -> ast.Call:
    """Registry functions with any arity (arity is the checker's business) and kwargs."""
    args = draw(st.lists(children, max_size=3))
    names = draw(st.lists(st.sampled_from(KWARG_NAMES), max_size=2, unique=True))
    kwargs = tuple(ast.KeywordArg(n, draw(children)) for n in names)
    return ast.Call(draw(st.sampled_from(FUNCTIONS)), tuple(args), kwargs)


@st.composite
def _aggregation(draw: st.DrawFn, children: st.SearchStrategy[ast.Expr],
                 label_lists: st.SearchStrategy[tuple[str, ...]]) -> ast.AggregateExpr:
    """``op [by|without (...)] ([param,] expr)``; ``by ()`` differs from no clause."""
    op = draw(st.sampled_from(AGGREGATIONS + PARAM_AGGREGATIONS))
    param = draw(children) if op in PARAM_AGGREGATIONS else None
    if draw(st.booleans()):
        return ast.AggregateExpr(op, draw(children), param, draw(label_lists), draw(st.booleans()),
                                 True)
    return ast.AggregateExpr(op, draw(children), param)


def expressions(max_leaves: int = 12) -> st.SearchStrategy[ast.Expr]:
    """Expression ASTs over the whole language, shaped as the parser builds them."""
    return st.recursive(leaves, _compound, max_leaves=max_leaves)


# ---------------------------------------------------------------- rule files

names = st.builds(ast.Name, rule_names)
label_pairs = st.lists(st.builds(ast.LabelPair, label_names, strings), max_size=3).map(tuple)
non_negative_durations = durations(st.integers(0, 10**11))
_FOLDED = ("summary", "description", "runbook_url")


@st.composite
def annotation_pairs(draw: st.DrawFn) -> tuple[ast.LabelPair, ...]:
    """Block pairs, then the ``summary``/``description``/``runbook`` fields the builder folds in."""
    block = list(draw(st.lists(st.builds(
        ast.LabelPair, st.one_of(label_names, st.sampled_from(_FOLDED)), strings), max_size=3)))
    taken = {p.key for p in block}
    for key in _FOLDED:
        if key not in taken and draw(st.booleans()):
            block.append(ast.LabelPair(key, draw(strings)))
    return tuple(block)


def alert_rules(exprs: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.AlertRule]:
    """Alerting rules with any subset of the optional fields."""
    def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.none() | strategy

    return st.builds(
        ast.AlertRule,
        name=names,
        expr=exprs,
        recover_expr=maybe(exprs),
        for_=maybe(non_negative_durations),
        keep_firing_for=maybe(non_negative_durations),
        severity=maybe(names),
        labels=label_pairs,
        annotations=annotation_pairs(),
        channels=st.lists(names, max_size=3).map(tuple),
        cooldown=maybe(non_negative_durations),
        escalation=maybe(names),
        no_data=maybe(st.sampled_from(list(ast.NoDataPolicy))),
    )


recording_names = st.one_of(identifiers, st.sampled_from((*_KEYWORD_NAMES, "job:errors:rate5m")))


def recording_rules(exprs: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.RecordingRule]:
    """``record name = expr`` with optional labels."""
    return st.builds(ast.RecordingRule, st.builds(ast.Name, recording_names), exprs, label_pairs)


def groups(exprs: st.SearchStrategy[ast.Expr]) -> st.SearchStrategy[ast.Group]:
    """Groups with settings and a few rules."""
    return st.builds(
        ast.Group,
        name=names,
        rules=st.lists(alert_rules(exprs) | recording_rules(exprs), max_size=3).map(tuple),
        interval=st.none() | durations(),
        labels=label_pairs,
        limit=st.none() | st.integers(0, 2**53),
        query_offset=st.none() | non_negative_durations,
    )


metric_decls = st.builds(
    ast.MetricDecl,
    name=names,
    type=st.none() | st.sampled_from(list(ast.MetricType)),
    unit=st.none() | identifiers,
    help=st.none() | strings,
    scrape_interval=st.none() | durations(),
)


def rule_files(max_leaves: int = 5) -> st.SearchStrategy[ast.RuleFile]:
    """Whole ``.rules`` files (as ASTs): a default interval, metric declarations, groups."""
    exprs = expressions(max_leaves)
    return st.builds(
        ast.RuleFile,
        kind=st.just(ast.FileKind.DSL),
        groups=st.lists(groups(exprs), max_size=3).map(tuple),
        metrics=st.lists(metric_decls, max_size=2).map(tuple),
        scrape_interval=st.none() | durations(),
    )
