"""The canonical printer: expressions and whole ``.rules`` files back to text.

``format_expr`` prints one expression the way Prometheus's
``promql/parser/printer.go`` does (lower-case keywords, grouping before the
arguments, ``on (a, b)``, one space around operators), with one difference
that matters for round trips: nothing the AST distinguishes is dropped, so
``ignoring ()``, ``by ()`` and ``offset 0s`` stay. The property the tests hold
it to is ``parse(format_expr(e)) == e`` for every AST the parser builds.

``format_rule_file`` lays out a parsed file canonically (two-space indent, one
field per line, fields in a fixed order, a blank line between rules) and keeps
every comment. The AST has no comments and no spans for keywords, so the
layout of the source is read once more with a tree-building parser to find out
which item each comment belongs to; see :func:`_assign`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from lark import Lark, Token, Tree

from monitoring.dsl import ast
from monitoring.dsl.ast import format_duration
from monitoring.dsl.lexical import is_label_name, quote
from monitoring.dsl.parser import Comment, ParseResult, grammar_text
from monitoring.dsl.source import SourceFile, Span

# ---------------------------------------------------------------- names

_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_PERCENT_TEXT = re.compile(r"(\d+\.?\d*|\.\d+)%\Z")
_DURATION_TEXT = re.compile(r"(\d+(ms|[smhdwy]))+\Z")

# Words the lexer reads as numbers wherever an operand may start.
_NUMBER_WORDS = frozenset({"inf", "nan"})
# Keywords the lexer prefers over a metric name in some operand positions: right
# after a binary operator (bool, on, ignoring), or after its ``on (...)`` label
# list, where the parser state shares its lookahead with ``sum(x) by (a)`` and so
# admits everything that may follow an expression (the rest). Such metric names
# print as {__name__="..."}.
_KEYWORD_WORDS = frozenset({
    "bool", "on", "ignoring", "group_left", "group_right", "offset", "and", "or", "unless",
    "atan2", "when", "recover_when", "for", "keep_firing_for", "severity", "summary",
    "description", "runbook", "notify", "cooldown", "escalate", "no_data", "labels",
    "annotations", "alert", "record", "limit", "query_offset",
})
_AGGREGATIONS = frozenset({
    "sum", "avg", "count", "min", "max", "group", "stddev", "stdvar", "topk", "bottomk",
    "count_values", "quantile", "limitk", "limit_ratio",
})


def _bare_metric_name(name: str) -> bool:
    """Whether a metric name reads back as a name when printed without braces."""
    low = name.lower()
    return bool(_IDENT.match(name)) and low not in _NUMBER_WORDS and low not in _KEYWORD_WORDS


def _label(name: str) -> str:
    """A label name as written in matchers, label lists and label blocks."""
    return name if is_label_name(name) else quote(name)


def _name(name: str) -> str:
    """A rule, group, metric or channel name: an identifier when it is one, else a string."""
    return name if _IDENT.match(name) else quote(name)


def _identifier(name: str, what: str, reserved: frozenset[str] = frozenset()) -> str:
    """A name the grammar only accepts as a bare identifier; refuse what cannot be written."""
    if not _IDENT.match(name) or name.lower() in reserved:
        raise ValueError(f"{what} {name!r} cannot be written in the rule language")
    return name


_CALL_RESERVED = _NUMBER_WORDS | _KEYWORD_WORDS | _AGGREGATIONS | {"weighted"}

# ---------------------------------------------------------------- literals


def format_number(value: float) -> str:
    """A float literal that reads back as the same value (``Inf``, ``NaN``, shortest digits).

    A negative value prints with a leading ``-``, which the parser reads as a
    unary minus: the same number, but a different node.
    """
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _plain_decimal(value: float) -> str:
    """Shortest digits of ``value`` without an exponent (percent literals take none)."""
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _percent(node: ast.PercentLiteral) -> str:
    """``5%`` as the user wrote it when the text still matches the number, else canonical."""
    if node.text and _PERCENT_TEXT.match(node.text) and float(node.text[:-1]) == node.number:
        return node.text
    if not math.isfinite(node.number) or node.number < 0:
        raise ValueError(f"percentage {node.number!r} cannot be written as a literal")
    return _plain_decimal(node.number) + "%"


def _timestamp(ms: int) -> str:
    """An ``@`` timestamp in seconds, exact to the millisecond."""
    whole, frac = divmod(abs(ms), 1000)
    text = ("-" if ms < 0 else "") + str(whole)
    if frac:
        text += f".{frac:03d}".rstrip("0")
    if round(float(text) * 1000) != ms and ms >= 0:
        return f"{ms}ms"  # beyond float precision: a duration is exact
    return text


def _duration(d: ast.Duration) -> str:
    """Durations always print canonically (``90s`` becomes ``1m30s``)."""
    return format_duration(d.ms)


# ---------------------------------------------------------------- precedence

# Binding power of each binary operator, and the least binding power an operand
# needs on each side to stay an operand without parentheses (grammar.lark).
_BINARY: dict[str, tuple[int, int, int]] = {
    "or": (1, 1, 2),
    "and": (2, 2, 3), "unless": (2, 2, 3),
    "==": (3, 3, 4), "!=": (3, 3, 4), "<=": (3, 3, 4), "<": (3, 3, 4), ">=": (3, 3, 4),
    ">": (3, 3, 4),
    "+": (4, 4, 5), "-": (4, 4, 5),
    "*": (5, 5, 6), "/": (5, 5, 6), "%": (5, 5, 6), "atan2": (5, 5, 6),
    "^": (7, 8, 6),  # right-associative; its left side is a postfix expression
}
_UNARY = 6
_POSTFIX = 8
_ATOM = 9


def _binding(expr: ast.Expr) -> int:
    """How tightly the printed form of ``expr`` holds together."""
    if isinstance(expr, ast.BinaryExpr):
        if expr.op not in _BINARY:
            raise ValueError(f"unknown binary operator {expr.op!r}")
        return _BINARY[expr.op][0]
    if isinstance(expr, ast.UnaryExpr):
        return _UNARY
    if isinstance(expr, ast.NumberLiteral) and expr.value < 0:
        return _UNARY  # printed with a leading minus
    if isinstance(expr, ast.MatrixSelector | ast.SubqueryExpr):
        return _POSTFIX
    if isinstance(expr, ast.VectorSelector) and (expr.offset or expr.at):
        return _POSTFIX
    return _ATOM


def _operand(expr: ast.Expr, least: int) -> str:
    """Print a sub-expression, in parentheses only if the AST lacks them where needed.

    ASTs from the parser always hold a ParenExpr where grouping is needed, so
    this adds nothing to them; hand-built or generated trees keep their meaning.
    """
    text = _expr(expr)
    return f"({text})" if _binding(expr) < least else text


def _postfix_target(expr: ast.Expr) -> str:
    """The expression a subquery applies to (``5%[1h:]`` does not lex as a percentage)."""
    if isinstance(expr, ast.PercentLiteral):
        return f"({_expr(expr)})"
    return _operand(expr, _POSTFIX)


# ---------------------------------------------------------------- expressions


def format_expr(expr: ast.Expr) -> str:
    """Print one expression in canonical form; the parser reads it back to an equal AST."""
    return _expr(expr)


WIDTH = 100
"""Lines of a formatted rule file longer than this break at top-level operators."""


def format_expr_wrapped(expr: ast.Expr, indent: int, lead: str) -> str:
    """``lead + expr``, broken before each top-level operator when it is too long.

    The chain of the loosest binary operator at the top (``a and b and c``,
    ``x / on(job) y``) puts each further operand on its own line, indented two
    spaces more than the field; newlines are insignificant in the grammar, so the
    text parses back to the same AST.
    """
    text = lead + _expr(expr)
    if indent + len(text) <= WIDTH or not isinstance(expr, ast.BinaryExpr) or expr.op == "^":
        return text
    level = _BINARY[expr.op][0]
    joins: list[str] = []
    node: ast.Expr = expr
    while isinstance(node, ast.BinaryExpr) and node.op != "^" and _BINARY[node.op][0] == level:
        _, _, right = _BINARY[node.op]
        modifiers = (" bool" if node.return_bool else "") + _matching(node.matching)
        joins.append(f"{node.op}{modifiers} {_operand(node.rhs, right)}")
        node = node.lhs
    first = _operand(node, _BINARY[expr.op][1])
    return lead + first + "".join("\n  " + j for j in reversed(joins))


def _expr(expr: ast.Expr) -> str:
    """Dispatch on the node type."""
    printer = _PRINTERS.get(type(expr))
    if printer is None:
        raise TypeError(f"cannot print {type(expr).__name__}")
    return printer(expr)


def _number_node(node: ast.Expr) -> str:
    """A number literal; one written as a duration (``4h``) stays a duration, canonically."""
    assert isinstance(node, ast.NumberLiteral)
    if node.text and _DURATION_TEXT.match(node.text) and node.value > 0:
        ms = round(node.value * 1000)
        if ms / 1000.0 == node.value:
            return format_duration(ms)
    return format_number(node.value)


def _percent_node(node: ast.Expr) -> str:
    """A percentage literal."""
    assert isinstance(node, ast.PercentLiteral)
    return _percent(node)


def _string_node(node: ast.Expr) -> str:
    """A string literal, re-quoted with double quotes."""
    assert isinstance(node, ast.StringLiteral)
    return quote(node.value)


def _selector_body(node: ast.VectorSelector) -> str:
    """``name{matchers}`` without modifiers (a range goes between the two)."""
    matchers = list(node.matchers)
    head = ""
    items: list[str] = []
    first = matchers[0] if matchers else None
    if (node.name is not None and first is not None and first.name == "__name__"
            and first.op is ast.MatchOp.EQ and first.value == node.name):
        matchers.pop(0)
        if _bare_metric_name(node.name):
            head = node.name
        else:
            items.append(quote(node.name))
    items.extend(f"{_label(m.name)}{m.op.value}{quote(m.value)}" for m in matchers)
    if head and not items:
        return head
    return head + "{" + ",".join(items) + "}"


def _modifiers(offset: ast.Duration | None, at: ast.AtModifier | None) -> str:
    """`` @ t`` then `` offset d``, as Prometheus prints them."""
    text = ""
    if at is not None:
        if at.kind is ast.AtKind.TIMESTAMP:
            text += f" @ {_timestamp(at.ms)}"
        else:
            text += f" @ {at.kind.value}()"
    if offset is not None:
        text += f" offset {_duration(offset)}"
    return text


def _vector_node(node: ast.Expr) -> str:
    """An instant vector selector with its modifiers."""
    assert isinstance(node, ast.VectorSelector)
    return _selector_body(node) + _modifiers(node.offset, node.at)


def _matrix_node(node: ast.Expr) -> str:
    """``selector[range]``; the selector's modifiers follow the range."""
    assert isinstance(node, ast.MatrixSelector)
    vec = node.vector
    return f"{_selector_body(vec)}[{_duration(node.range)}]" + _modifiers(vec.offset, vec.at)


def _subquery_node(node: ast.Expr) -> str:
    """``expr[range:step]`` with its modifiers."""
    assert isinstance(node, ast.SubqueryExpr)
    step = _duration(node.step) if node.step is not None else ""
    return (f"{_postfix_target(node.expr)}[{_duration(node.range)}:{step}]"
            + _modifiers(node.offset, node.at))


def _call_node(node: ast.Expr) -> str:
    """``func(args, name=value)``."""
    assert isinstance(node, ast.Call)
    name = _identifier(node.func, "function name", _CALL_RESERVED)
    args = [_expr(a) for a in node.args]
    args += [f"{_identifier(k.name, 'keyword argument', _NUMBER_WORDS)}={_expr(k.value)}"
             for k in node.kwargs]
    return f"{name}({', '.join(args)})"


def _label_list(names: Sequence[str]) -> str:
    """``(a, b)`` for grouping and vector matching."""
    return "(" + ", ".join(_label(n) for n in names) + ")"


def _aggregate_node(node: ast.Expr) -> str:
    """``op by (labels) (param, expr)``: grouping first, as Prometheus prints it."""
    assert isinstance(node, ast.AggregateExpr)
    text = node.op
    if node.without:
        text += f" without {_label_list(node.grouping)} "
    elif node.has_grouping or node.grouping:
        text += f" by {_label_list(node.grouping)} "
    args = [node.expr] if node.param is None else [node.param, node.expr]
    return text + "(" + ", ".join(_expr(a) for a in args) + ")"


def _matching(vm: ast.VectorMatching | None) -> str:
    """`` on (a) group_left (b)``; an explicit empty list still prints (the AST keeps it)."""
    if vm is None:
        return ""
    text = f" {'on' if vm.on else 'ignoring'} {_label_list(vm.labels)}"
    if vm.card is ast.Card.MANY_TO_ONE:
        text += f" group_left {_label_list(vm.include)}"
    elif vm.card is ast.Card.ONE_TO_MANY:
        text += f" group_right {_label_list(vm.include)}"
    return text


def _binary_node(node: ast.Expr) -> str:
    """``lhs op [bool] [on (...)] rhs`` with operands grouped as precedence needs."""
    assert isinstance(node, ast.BinaryExpr)
    if node.op not in _BINARY:
        raise ValueError(f"unknown binary operator {node.op!r}")
    _, left, right = _BINARY[node.op]
    modifiers = (" bool" if node.return_bool else "") + _matching(node.matching)
    return f"{_operand(node.lhs, left)} {node.op}{modifiers} {_operand(node.rhs, right)}"


def _unary_node(node: ast.Expr) -> str:
    """``-x``: binds looser than ``^`` (``-a ^ b`` is ``-(a ^ b)``)."""
    assert isinstance(node, ast.UnaryExpr)
    return node.op + _operand(node.expr, _UNARY)


def _paren_node(node: ast.Expr) -> str:
    """Parentheses the user wrote (or a generator put where precedence needs them)."""
    assert isinstance(node, ast.ParenExpr)
    return f"({_expr(node.expr)})"


def _weight(value: float) -> str:
    """A term's weight; ``Inf:`` would lex as a metric name (names may hold colons)."""
    text = format_number(value)
    return text + " :" if not math.isfinite(value) else text + ":"


def _weighted_node(node: ast.Expr) -> str:
    """``weighted(0.6: a, 0.4: b)``."""
    assert isinstance(node, ast.WeightedExpr)
    terms = ", ".join(f"{_weight(t.weight)} {_expr(t.expr)}" for t in node.terms)
    return f"weighted({terms})"


_PRINTERS: dict[type, Callable[[ast.Expr], str]] = {
    ast.NumberLiteral: _number_node,
    ast.PercentLiteral: _percent_node,
    ast.StringLiteral: _string_node,
    ast.VectorSelector: _vector_node,
    ast.MatrixSelector: _matrix_node,
    ast.SubqueryExpr: _subquery_node,
    ast.Call: _call_node,
    ast.AggregateExpr: _aggregate_node,
    ast.BinaryExpr: _binary_node,
    ast.UnaryExpr: _unary_node,
    ast.ParenExpr: _paren_node,
    ast.WeightedExpr: _weighted_node,
}

# ---------------------------------------------------------------- rule file document

Key = tuple[object, ...]
"""Identifies one printed item by its place in the AST: ``("group", 0, "rule", 2, "for")``."""


@dataclass(frozen=True, slots=True)
class _Note:
    """A comment placed on the output; ``blank`` keeps a blank line the user left next to it."""

    text: str
    blank: bool = False


@dataclass(slots=True)
class _Node:
    """One printed item: a line, or a header with indented children.

    ``children is None`` makes a one-line item. A block prints ``head {``, its
    children and ``}``; a block without braces (a recording rule with labels)
    prints its head and then its children one level deeper.
    """

    key: Key
    head: str
    children: list[_Node] | None = None
    braces: bool = True
    blank_before: bool = False
    leading: list[_Note] = field(default_factory=list)
    trailing: list[str] = field(default_factory=list)
    head_trailing: list[str] = field(default_factory=list)
    end: list[_Note] = field(default_factory=list)


_ANNOTATION_FIELDS = ("summary", "description", "runbook_url")
_FIELD_WORD = {"summary": "summary", "description": "description", "runbook_url": "runbook"}


def _pairs_block(key: Key, word: str, item_key: Key,
                 pairs: Sequence[tuple[int, ast.LabelPair]]) -> _Node:
    """``labels {`` / ``annotations {`` with one ``key = "value"`` per line."""
    children = [_Node((*item_key, j), f"{_label(p.key)} = {quote(p.value)}") for j, p in pairs]
    return _Node(key, word, children)


def _folded_annotations(pairs: Sequence[ast.LabelPair]) -> int:
    """How many trailing annotations print as ``summary``/``description``/``runbook`` fields.

    The builder appends those fields, in that order, after the pairs of the
    annotations blocks, and refuses a key set both ways; the longest suffix that
    could have come from such fields prints as fields, the rest as a block.
    """
    best = 0
    for n in range(1, min(len(_ANNOTATION_FIELDS), len(pairs)) + 1):
        suffix = [p.key for p in pairs[len(pairs) - n:]]
        if not all(k in _ANNOTATION_FIELDS for k in suffix):
            continue
        ranks = [_ANNOTATION_FIELDS.index(k) for k in suffix]
        if ranks != sorted(set(ranks)):
            continue
        if any(p.key in suffix for p in pairs[: len(pairs) - n]):
            continue
        best = n
    return best


def _alert_node(rule: ast.AlertRule, key: Key) -> _Node:
    """An alert with its fields in the canonical order."""
    fields: list[_Node] = []

    def add(name: str, text: str) -> None:
        fields.append(_Node((*key, name), text))

    indent = 2 * (len(key) + 1)
    if rule.expr is not None:
        add("when", format_expr_wrapped(rule.expr, indent, "when "))
    if rule.recover_expr is not None:
        add("recover_when", format_expr_wrapped(rule.recover_expr, indent, "recover_when "))
    if rule.for_ is not None:
        add("for", "for " + _duration(rule.for_))
    if rule.keep_firing_for is not None:
        add("keep_firing_for", "keep_firing_for " + _duration(rule.keep_firing_for))
    if rule.severity is not None:
        add("severity", "severity " + _name(rule.severity.value))
    if rule.channels:
        add("notify", "notify " + ", ".join(_name(c.value) for c in rule.channels))
    if rule.cooldown is not None:
        add("cooldown", "cooldown " + _duration(rule.cooldown))
    if rule.escalation is not None:
        add("escalate", "escalate " + _name(rule.escalation.value))
    if rule.no_data is not None:
        add("no_data", "no_data " + rule.no_data.value)
    pairs = list(enumerate(rule.annotations))
    split = len(pairs) - _folded_annotations(rule.annotations)
    for j, pair in pairs[split:]:
        fields.append(_Node((*key, "ann", j), f"{_FIELD_WORD[pair.key]} {quote(pair.value)}"))
    if rule.labels:
        fields.append(_pairs_block((*key, "labels"), "labels", (*key, "labels"),
                                   list(enumerate(rule.labels))))
    if split:
        fields.append(_pairs_block((*key, "annotations"), "annotations", (*key, "ann"),
                                   pairs[:split]))
    return _Node(key, "alert " + _name(rule.name.value), fields)


def _record_node(rule: ast.RecordingRule, key: Key) -> _Node:
    """``record name = expr``, its labels block one level deeper on the next lines."""
    if rule.expr is None:
        raise ValueError(f"recording rule {rule.name.value!r} has no expression")
    name = _identifier(rule.name.value, "recording rule name")
    head = format_expr_wrapped(rule.expr, 2 * len(key), f"record {name} = ")
    if not rule.labels:
        return _Node(key, head)
    labels = _pairs_block((*key, "labels"), "labels", (*key, "labels"),
                          list(enumerate(rule.labels)))
    return _Node(key, head, [labels], braces=False)


def _group_node(group: ast.Group, key: Key) -> _Node:
    """A group: its settings first, then its rules separated by blank lines."""
    head = "group " + _name(group.name.value)
    if group.interval is not None:
        head += " every " + _duration(group.interval)
    children: list[_Node] = []
    if group.labels:
        children.append(_pairs_block((*key, "labels"), "labels", (*key, "labels"),
                                     list(enumerate(group.labels))))
    if group.limit is not None:
        children.append(_Node((*key, "limit"), f"limit {group.limit}"))
    if group.query_offset is not None:
        children.append(_Node((*key, "query_offset"), "query_offset "
                              + _duration(group.query_offset)))
    for k, rule in enumerate(group.rules):
        rule_key = (*key, "rule", k)
        node = (_alert_node(rule, rule_key) if isinstance(rule, ast.AlertRule)
                else _record_node(rule, rule_key))
        node.blank_before = bool(children)
        children.append(node)
    return _Node(key, head, children)


def _metric_node(metric: ast.MetricDecl, key: Key) -> _Node:
    """A metric declaration, one field per line."""
    fields: list[_Node] = []
    if metric.type is not None:
        fields.append(_Node((*key, "type"), "type " + metric.type.value))
    if metric.unit is not None:
        fields.append(_Node((*key, "unit"), "unit " + _identifier(metric.unit, "unit")))
    if metric.help is not None:
        fields.append(_Node((*key, "help"), "help " + quote(metric.help)))
    if metric.scrape_interval is not None:
        fields.append(_Node((*key, "scrape_interval"),
                            "scrape_interval " + _duration(metric.scrape_interval)))
    return _Node(key, "metric " + _name(metric.name.value), fields)


def _file_node(rule_file: ast.RuleFile) -> _Node:
    """The whole file: top-level items in source order, a blank line between them."""
    items: list[tuple[int, int, _Node]] = []
    if rule_file.scrape_interval is not None:
        d = rule_file.scrape_interval
        items.append((_start(d.span), 0, _Node(("scrape",), "scrape_interval " + _duration(d))))
    for i, metric in enumerate(rule_file.metrics):
        items.append((_start(metric.span), 1, _metric_node(metric, ("metric", i))))
    for i, group in enumerate(rule_file.groups):
        items.append((_start(group.span), 2, _group_node(group, ("group", i))))
    items.sort(key=lambda item: (item[0], item[1]))
    children = [node for _, _, node in items]
    for node in children[1:]:
        node.blank_before = True
    return _Node(("file",), "", children)


def _start(span: Span | None) -> int:
    """Source offset of a node, or -1 for built nodes (they keep the canonical order)."""
    return span.start if span is not None else -1


# ---------------------------------------------------------------- source layout


@dataclass(slots=True)
class _Layout:
    """Where one item was in the source: the range, where its header ends, its children.

    A block's ``head_end`` is the offset just past its ``{`` (for a recording
    rule, past its expression) and ``close`` the offset of its ``}``.
    """

    key: Key
    start: int
    end: int
    head_end: int | None = None
    close: int | None = None
    children: list[_Layout] | None = None


@functools.cache
def _layout_parser() -> Lark:
    """A tree-building parser over the same grammar: positions of every keyword and brace."""
    return Lark(grammar_text(), parser="lalr", lexer="contextual", start="rule_file",
                propagate_positions=True, keep_all_tokens=True, maybe_placeholders=False)


def _pos(item: Tree[Token] | Token) -> tuple[int, int]:
    """Start and end offsets of a tree or a token."""
    if isinstance(item, Token):
        return item.start_pos or 0, item.end_pos or 0
    return item.meta.start_pos, item.meta.end_pos


def _trees(items: Sequence[Tree[Token] | Token]) -> list[Tree[Token]]:
    """The sub-trees among a node's children (keywords and braces are tokens)."""
    return [c for c in items if isinstance(c, Tree)]


def _brace_block(tree: Tree[Token], key: Key, children: list[_Layout]) -> _Layout:
    """Layout of a ``... { ... }`` item."""
    start, end = _pos(tree)
    lbrace = next(c for c in tree.children if isinstance(c, Token) and c.type == "LBRACE")
    rbrace = tree.children[-1]
    assert isinstance(rbrace, Token)
    return _Layout(key, start, end, lbrace.end_pos, rbrace.start_pos, children)


def _pairs_layout(tree: Tree[Token], key: Key, item_key: Key, first: int) -> _Layout:
    """A labels or annotations block whose pairs are numbered from ``first``."""
    pairs = [_Layout((*item_key, first + j), *_pos(p))
             for j, p in enumerate(_trees(tree.children))]
    return _brace_block(tree, key, pairs)


def _source_layout(text: str) -> _Layout:
    """Read the file again into positions, keyed like the printed items."""
    tree = _layout_parser().parse(text)
    metrics = groups = 0
    items: list[_Layout] = []
    for item in _trees(tree.children):
        if item.data == "default_stmt":
            items.append(_Layout(("scrape",), *_pos(item)))
        elif item.data == "metric_decl":
            key = ("metric", metrics)
            metrics += 1
            fields = [_Layout((*key, _METRIC_FIELDS[str(f.data)]), *_pos(f))
                      for f in _trees(item.children)]
            items.append(_brace_block(item, key, fields))
        else:
            items.append(_group_layout(item, ("group", groups)))
            groups += 1
    return _Layout(("file",), 0, len(text), None, None, items)


_METRIC_FIELDS = {"metric_type": "type", "metric_unit": "unit", "metric_help": "help",
                  "metric_scrape": "scrape_interval"}
_GROUP_FIELDS = {"group_limit": "limit", "group_query_offset": "query_offset"}


def _group_layout(tree: Tree[Token], key: Key) -> _Layout:
    """A group's settings and rules."""
    children: list[_Layout] = []
    rules = labels = 0
    for item in _trees(tree.children):
        kind = str(item.data)
        if kind == "duration":  # the `every` interval, part of the header
            continue
        if kind == "labels_block":
            block = _pairs_layout(item, (*key, "labels"), (*key, "labels"), labels)
            labels += len(block.children or ())
            children.append(block)
        elif kind in _GROUP_FIELDS:
            children.append(_Layout((*key, _GROUP_FIELDS[kind]), *_pos(item)))
        else:
            rule_key = (*key, "rule", rules)
            rules += 1
            children.append(_alert_layout(item, rule_key) if kind == "alert"
                            else _record_layout(item, rule_key))
    return _brace_block(tree, key, children)


_ALERT_FIELDS = {
    "f_when": "when", "f_recover_when": "recover_when", "f_for": "for",
    "f_keep_firing_for": "keep_firing_for", "f_severity": "severity", "f_notify": "notify",
    "f_cooldown": "cooldown", "f_escalate": "escalate", "f_no_data": "no_data",
}
_ALERT_ANNOTATIONS = {"f_summary": "summary", "f_description": "description",
                      "f_runbook": "runbook_url"}


def _alert_layout(tree: Tree[Token], key: Key) -> _Layout:
    """An alert's fields; annotations are numbered the way the builder folds them."""
    fields = _trees(tree.children)
    block_pairs = sum(len(_trees(f.children)) for f in fields if f.data == "annotations_block")
    folded = sorted((_ANNOTATION_FIELDS.index(_ALERT_ANNOTATIONS[str(f.data)]), i)
                    for i, f in enumerate(fields) if f.data in _ALERT_ANNOTATIONS)
    field_index = {i: block_pairs + n for n, (_, i) in enumerate(folded)}
    children: list[_Layout] = []
    labels = annotations = 0
    for i, f in enumerate(fields):
        kind = str(f.data)
        if kind == "labels_block":
            block = _pairs_layout(f, (*key, "labels"), (*key, "labels"), labels)
            labels += len(block.children or ())
            children.append(block)
        elif kind == "annotations_block":
            block = _pairs_layout(f, (*key, "annotations"), (*key, "ann"), annotations)
            annotations += len(block.children or ())
            children.append(block)
        elif kind in _ALERT_ANNOTATIONS:
            children.append(_Layout((*key, "ann", field_index[i]), *_pos(f)))
        else:
            children.append(_Layout((*key, _ALERT_FIELDS[kind]), *_pos(f)))
    return _brace_block(tree, key, children)


def _record_layout(tree: Tree[Token], key: Key) -> _Layout:
    """A recording rule; with labels it is a block whose header ends after the expression."""
    start, end = _pos(tree)
    parts = tree.children
    blocks = [p for p in parts[4:] if isinstance(p, Tree) and p.data == "labels_block"]
    if not blocks:
        return _Layout(key, start, end)
    head_end = _pos(parts[3])[1]
    labels = _pairs_layout(blocks[0], (*key, "labels"), (*key, "labels"), 0)
    return _Layout(key, start, end, head_end, None, [labels])


def _keep_printed(layout: _Layout, printed: dict[Key, _Node]) -> list[_Layout]:
    """The layout restricted to printed items.

    An item that prints nothing (an empty ``labels {}``, an annotations block
    whose pairs all print as fields) hands its children to its parent, so their
    comments still find them.
    """
    out: list[_Layout] = []
    for child in layout.children or ():
        kept = _keep_printed(child, printed)
        node = printed.get(child.key)
        if node is None:
            out.extend(kept)
            continue
        # An item that prints on one line (a record whose labels block was
        # empty) takes the comments inside it as its own leading comments.
        child.children = kept if node.children is not None else None
        out.append(child)
    return out


# ---------------------------------------------------------------- comment placement


def _assign(block: _Layout, comment: Comment, source: SourceFile) -> tuple[Key, str, bool]:
    """Decide where a comment goes: (item key, role, is it outside the item).

    Roles: ``leading`` (own line before the item), ``trailing`` (end of the
    item's last line), ``head`` (after a block's ``{``), ``end`` (before a
    block's ``}``). A comment inside a multi-line item moves before it.
    """
    pos = comment.span.start
    line = _line(source, pos)
    previous: _Layout | None = None
    following: _Layout | None = None
    for child in block.children or ():
        if child.start <= pos < child.end:
            inner = (child.children is not None and child.head_end is not None
                     and child.head_end <= pos and (child.close is None or pos < child.close))
            if inner:
                return _assign(child, comment, source)
            return child.key, "leading", False
        if child.end <= pos:
            previous = child
        elif following is None:
            following = child
    if previous is not None and _line(source, previous.end - 1) == line:
        return previous.key, "trailing", True
    if (block.head_end is not None and pos >= block.head_end
            and _line(source, block.head_end - 1) == line):
        return block.key, "head", True
    if following is not None:
        return following.key, "leading", True
    return block.key, "end", True


def _line(source: SourceFile, offset: int) -> int:
    """The line of an offset."""
    return source.line_col(offset)[0]


def _blank_line_after(text: str, pos: int) -> bool:
    """Whether the line after the one holding ``pos`` is blank."""
    nl = text.find("\n", pos)
    if nl < 0:
        return False
    nxt = text.find("\n", nl + 1)
    return nxt >= 0 and not text[nl + 1 : nxt].strip()


def _blank_line_before(text: str, pos: int) -> bool:
    """Whether the line before the one holding ``pos`` is blank."""
    nl = text.rfind("\n", 0, pos)
    if nl < 0:
        return False
    prev = text.rfind("\n", 0, nl)
    return not text[prev + 1 : nl].strip()


def _place_comments(root: _Node, comments: Sequence[Comment], source: SourceFile) -> None:
    """Attach every comment to the printed item it belongs to."""
    printed: dict[Key, _Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        printed[node.key] = node
        stack.extend(node.children or ())
    layout = _source_layout(source.text)
    layout.children = _keep_printed(layout, printed)
    text = source.text
    for comment in comments:
        key, role, outside = _assign(layout, comment, source)
        node = printed[key]
        body = comment.text.rstrip()
        slot = {"trailing": node.trailing, "head": node.head_trailing}.get(role)
        if slot is not None and slot:
            # Two blocks merged into one (``labels {}`` written twice): a line
            # holds one comment, so the second one goes before the item.
            role, outside = "leading", False
        if role == "leading":
            node.leading.append(_Note(body, outside and _blank_line_after(text, comment.span.end)))
        elif slot is not None:
            slot.append(body)
        else:
            node.end.append(_Note(body, _blank_line_before(text, comment.span.start)))


# ---------------------------------------------------------------- rendering


def _with(line: str, comments: Sequence[str]) -> str:
    """A line with comments appended at its end."""
    return " ".join([line, *comments]) if comments else line


def _render(node: _Node, depth: int, out: list[str]) -> None:
    """Append the lines of one item (and its comments) at ``depth``."""
    pad = "  " * depth
    for note in node.leading:
        out.append(pad + note.text)
        if note.blank:
            out.append("")
    head = pad + node.head.replace("\n", "\n" + pad)  # continuation lines of long expressions
    if node.children is None:
        out.append(_with(head, node.trailing))
        return
    if not node.braces:
        out.append(_with(head, node.head_trailing))
        _render_children(node, depth + 1, out)
        out[-1] = _with(out[-1], node.trailing)
        return
    if not node.children and not node.end and not node.head_trailing:
        out.append(_with(head + " {}", node.trailing))
        return
    out.append(_with(head + " {", node.head_trailing))
    _render_children(node, depth + 1, out)
    out.append(_with(pad + "}", node.trailing))


def _render_children(node: _Node, depth: int, out: list[str]) -> None:
    """Children, blank lines where the layout puts them, then the block's closing comments."""
    children = node.children or []
    for i, child in enumerate(children):
        if i and child.blank_before:
            out.append("")
        _render(child, depth, out)
    pad = "  " * depth
    for j, note in enumerate(node.end):
        if note.blank and (j or children):
            out.append("")
        out.append(pad + note.text)


def format_rule_file(result: ParseResult) -> str:
    """Format a parsed ``.rules`` file canonically, keeping every comment.

    ``result`` must come from :func:`~monitoring.dsl.parser.parse_rule_file`
    without errors: a file with syntax errors has lost items, and formatting it
    would delete the user's text.
    """
    if not result.ok:
        raise ValueError("cannot format a rule file with syntax errors")
    rule_file = result.node
    if not isinstance(rule_file, ast.RuleFile):
        raise TypeError("format_rule_file needs the result of parse_rule_file")
    root = _file_node(rule_file)
    if result.comments:
        source = (rule_file.span.source if rule_file.span is not None
                  else result.comments[0].span.source)
        _place_comments(root, result.comments, source)
    out: list[str] = []
    _render_children(root, 0, out)
    return "\n".join(out) + "\n" if out else ""
