"""Lark callbacks that build the typed AST directly while the LALR parser runs.

The builder is installed as Lark's embedded transformer, so no intermediate
parse tree is materialised (the hot path of ``monitoring lint``). Spans are
computed from the tokens each callback receives: a node's span covers its first
and last child. Checks that Prometheus performs in its parser (range only on a
selector, no offset before a range, at least one non-empty matcher, duration
syntax, string escapes) are made here and reported in the ``syntax/`` family;
the builder always returns a best-effort node so parsing continues.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from lark import Token, Transformer

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.lexical import (
    LexicalError,
    is_label_name,
    parse_duration,
    parse_number,
    seconds_to_duration,
    unquote,
)
from monitoring.dsl.limits import LIMITS
from monitoring.dsl.source import OffsetMap, SourceFile, Span

T = TypeVar("T")

_MATCH_OPS = {op.value: op for op in ast.MatchOp}
_NO_DATA = {p.value: p for p in ast.NoDataPolicy}
_METRIC_TYPES = {t.value: t for t in ast.MetricType}


class _Matchers:
    """The braces of a selector, carried between callbacks."""

    __slots__ = ("items", "span")

    def __init__(self, items: list[ast.LabelMatcher], span: Span) -> None:
        self.items = items
        self.span = span


class _Names:
    """A parenthesised label list, carried between callbacks."""

    __slots__ = ("names", "span")

    def __init__(self, names: list[str], span: Span) -> None:
        self.names = names
        self.span = span


class _Field:
    """One field of an alert or metric block: keyword, value, span."""

    __slots__ = ("key", "span", "value")

    def __init__(self, key: str, value: Any, span: Span) -> None:
        self.key = key
        self.value = value
        self.span = span


class BuildContext:
    """Per-parse state: the file, the offset map and the findings so far."""

    __slots__ = ("diagnostics", "offsets", "source")

    def __init__(self, source: SourceFile, offsets: OffsetMap) -> None:
        self.source = source
        self.offsets = offsets
        self.diagnostics: list[Diagnostic] = []


class AstBuilder(Transformer[Token, Any]):
    """Builds :mod:`monitoring.dsl.ast` nodes; one method per grammar rule or alias."""

    ctx: BuildContext
    _invalid: set[int]
    _source: SourceFile
    _shift: int | None  # the constant offset shift, when the offset map is one

    def reset(self, ctx: BuildContext) -> None:
        """Prepare for a new parse."""
        self.ctx = ctx
        self._source = ctx.source
        self._shift = ctx.offsets.shift
        self._invalid = set()

    # ------------------------------------------------------------ helpers

    def _span(self, start: int, end: int) -> Span:
        shift = self._shift
        if shift is not None:
            return Span(self._source, start + shift, end + shift)
        m = self.ctx.offsets
        s = m(start)
        e = m(end - 1) + 1 if end > start else s
        return Span(self._source, s, e)

    def _tok(self, tok: Token) -> Span:
        return self._span(tok.start_pos or 0, tok.end_pos or 0)

    def _of(self, item: Any) -> Span:
        if isinstance(item, Token):
            return self._tok(item)
        span: Span = item.span
        return span

    def _cover(self, first: Any, last: Any) -> Span:
        # Hot path: computed from raw positions, without intermediate spans.
        shift = self._shift
        if isinstance(first, Token):
            start = (first.start_pos or 0) + shift if shift is not None else self._tok(first).start
        else:
            start = first.start if isinstance(first, Span) else first.span.start
        if isinstance(last, Token):
            end = (last.end_pos or 0) + shift if shift is not None else self._tok(last).end
        else:
            end = last.end if isinstance(last, Span) else last.span.end
        return Span(self._source, start, end if end > start else start)

    def _error(self, code: str, message: str, span: Span, *hints: str) -> None:
        self.ctx.diagnostics.append(Diagnostic(code, Severity.ERROR, message, span, hints))

    def _lexical(self, tok: Token, decode: Callable[[str], T], code: str, fallback: T) -> T:
        try:
            return decode(str(tok))
        except LexicalError as e:
            self._invalid.add(tok.start_pos or 0)
            start = (tok.start_pos or 0) + e.offset
            self._error(code, e.message, self._span(start, start + e.length))
            return fallback

    def _string(self, tok: Token) -> str:
        return self._lexical(tok, unquote, "syntax/invalid-string", "")

    def _name(self, tok: Token) -> str:
        return self._string(tok) if tok.type == "STRING" else str(tok)

    # ------------------------------------------------------------ literals

    def number(self, c: list[Token]) -> ast.NumberLiteral:
        tok = c[0]
        return ast.NumberLiteral(parse_number(str(tok)), str(tok), self._tok(tok))

    def duration_number(self, c: list[Token]) -> ast.NumberLiteral:
        tok = c[0]
        d = self._lexical(tok, parse_duration, "syntax/invalid-duration", ast.Duration(0))
        return ast.NumberLiteral(d.ms / 1000.0, str(tok), self._tok(tok))

    def percent(self, c: list[Token]) -> ast.PercentLiteral:
        tok = c[0]
        return ast.PercentLiteral(float(str(tok)[:-1]), str(tok), self._tok(tok))

    def string(self, c: list[Token]) -> ast.StringLiteral:
        return ast.StringLiteral(self._string(c[0]), self._tok(c[0]))

    def duration(self, c: list[Token]) -> ast.Duration:
        tok = c[0]
        span = self._tok(tok)
        if tok.type == "DURATION":
            d = self._lexical(tok, parse_duration, "syntax/invalid-duration", ast.Duration(0))
        else:
            d = self._lexical(
                tok,
                lambda t: seconds_to_duration(parse_number(t), t),
                "syntax/invalid-duration",
                ast.Duration(0),
            )
        return ast.Duration(d.ms, str(tok), span)

    def signed_duration(self, c: list[Any]) -> ast.Duration:
        d: ast.Duration = c[-1]
        if len(c) == 2 and str(c[0]) == "-":
            return ast.Duration(-d.ms, "-" + d.text, self._cover(c[0], d))
        return d

    def signed_number(self, c: list[Token]) -> tuple[float, Span]:
        value = parse_number(str(c[-1]))
        if len(c) == 2 and str(c[0]) == "-":
            value = -value
        return value, self._cover(c[0], c[-1])

    # ------------------------------------------------------------ selectors

    def label_matchers(self, c: list[Any]) -> _Matchers:
        return _Matchers([m for m in c if isinstance(m, ast.LabelMatcher)],
                         self._cover(c[0], c[-1]))

    def matcher(self, c: list[Token]) -> ast.LabelMatcher:
        name_tok, op_tok, value_tok = c
        name = self._name(name_tok)
        if name_tok.type == "IDENT" and not is_label_name(name):
            self._error("syntax/invalid-label-name", f"invalid label name {name!r}",
                        self._tok(name_tok), 'quote the name to use other characters: {"a:b"="x"}')
        return ast.LabelMatcher(name, _MATCH_OPS[str(op_tok)], self._string(value_tok),
                                self._cover(name_tok, value_tok), self._tok(value_tok))

    def name_matcher(self, c: list[Token]) -> ast.LabelMatcher:
        span = self._tok(c[0])
        return ast.LabelMatcher("__name__", ast.MatchOp.EQ, self._string(c[0]), span, span)

    def vector_selector(self, c: list[Any]) -> ast.VectorSelector:
        name: str | None = None
        matchers: list[ast.LabelMatcher] = []
        first = c[0]
        if isinstance(first, Token):
            name = str(first)
            matchers.append(ast.LabelMatcher("__name__", ast.MatchOp.EQ, name, self._tok(first),
                                             self._tok(first)))
        last = c[-1]
        span = self._cover(first, last)
        if isinstance(last, _Matchers):
            for m in last.items:
                if m.name == "__name__" and m.op is ast.MatchOp.EQ:
                    if name is not None:
                        self._error("syntax/duplicate-metric-name",
                                    f"metric name must not be set twice: {name!r} or {m.value!r}",
                                    m.span or span)
                        continue
                    name = m.value
                matchers.append(m)
        if not any(not _matches_empty(m) for m in matchers):
            self._error("syntax/empty-selector",
                        "vector selector must contain at least one non-empty matcher", span)
        return ast.VectorSelector(name, tuple(matchers), span=span)

    def range_sel(self, c: list[Any]) -> ast.Expr:
        inner, rng, close = c
        span = self._cover(inner, close)
        if not isinstance(inner, ast.VectorSelector):
            self._error("syntax/range-on-non-selector",
                        "ranges are only allowed on vector selectors",
                        span, "use a subquery, x[5m:1m], to range over an expression")
            return inner  # type: ignore[no-any-return]
        if inner.offset is not None or inner.at is not None:
            self._error("syntax/modifier-before-range",
                        "no offset or @ modifiers allowed before a range",
                        inner.span or span, "write x[5m] offset 1h, not x offset 1h [5m]")
        self._positive(rng, "range")
        return ast.MatrixSelector(inner, rng, span)

    def subquery(self, c: list[Any]) -> ast.SubqueryExpr:
        inner = c[0]
        rng: ast.Duration = c[1]
        step: ast.Duration | None = c[2] if len(c) == 4 else None
        self._positive(rng, "subquery range")
        if step is not None:
            self._positive(step, "subquery step")
        return ast.SubqueryExpr(inner, rng, step, span=self._cover(inner, c[-1]))

    def _positive(self, d: ast.Duration, what: str) -> None:
        if d.ms <= 0 and d.span is not None and d.span.start not in self._invalid_spans():
            self._error("syntax/invalid-duration", f"{what} must be greater than 0", d.span)

    def _invalid_spans(self) -> set[int]:
        return {self.ctx.offsets(p) for p in self._invalid}

    def offset_mod(self, c: list[Any]) -> ast.Expr:
        target, kw, d = c
        span = self._cover(target, d)
        return self._modify(target, kw, span, offset=d)

    def at_mod(self, c: list[Any]) -> ast.Expr:
        target, kw, at = c
        span = self._cover(target, at)
        return self._modify(target, kw, span, at=at)

    def _modify(self, target: Any, kw: Token, span: Span, **change: Any) -> ast.Expr:
        key, value = next(iter(change.items()))
        holder: Any
        if isinstance(target, ast.MatrixSelector):
            holder = target.vector
        elif isinstance(target, ast.VectorSelector | ast.SubqueryExpr):
            holder = target
        else:
            self._error("syntax/misplaced-modifier",
                        f"{str(kw).lower()} modifier must be preceded by an instant vector "
                        "selector, a range vector selector or a subquery", self._tok(kw))
            return target  # type: ignore[no-any-return]
        if getattr(holder, key) is not None:
            self._error("syntax/duplicate-modifier",
                        f"{'offset' if key == 'offset' else '@'} may not be set multiple times",
                        self._tok(kw))
        fields = {"offset": holder.offset, "at": holder.at, key: value}
        if isinstance(target, ast.MatrixSelector):
            vec = ast.VectorSelector(holder.name, holder.matchers, fields["offset"], fields["at"],
                                     holder.span)
            return ast.MatrixSelector(vec, target.range, span)
        if isinstance(target, ast.VectorSelector):
            return ast.VectorSelector(target.name, target.matchers, fields["offset"],
                                      fields["at"], span)
        assert isinstance(target, ast.SubqueryExpr)
        return ast.SubqueryExpr(target.expr, target.range, target.step, fields["offset"],
                                fields["at"], span)

    def at_value(self, c: list[Any]) -> ast.AtModifier:
        item = c[0]
        if isinstance(item, Token):  # DURATION
            d = self._lexical(item, parse_duration, "syntax/invalid-duration", ast.Duration(0))
            return ast.AtModifier(ast.AtKind.TIMESTAMP, d.ms, self._tok(item))
        value, span = item
        if value != value or value in (float("inf"), float("-inf")):
            self._error("syntax/invalid-at", "@ timestamp must be a finite number", span)
            value = 0.0
        return ast.AtModifier(ast.AtKind.TIMESTAMP, round(value * 1000), span)

    def at_call(self, c: list[Token]) -> ast.AtModifier:
        name = str(c[0]).lower()
        span = self._cover(c[0], c[-1])
        if name not in ("start", "end"):
            self._error("syntax/invalid-at",
                        f"@ accepts a timestamp, start() or end(), not {name}()", span)
            return ast.AtModifier(ast.AtKind.START, 0, span)
        return ast.AtModifier(ast.AtKind(name), 0, span)

    # ------------------------------------------------------------ operators

    def paren(self, c: list[Any]) -> ast.ParenExpr:
        return ast.ParenExpr(c[1], self._cover(c[0], c[2]))

    def unary(self, c: list[Any]) -> ast.UnaryExpr:
        return ast.UnaryExpr(str(c[0]), c[1], self._cover(c[0], c[1]))

    def binary(self, c: list[Any]) -> ast.BinaryExpr:
        lhs, op_tok, mods, rhs = c
        return_bool, matching = mods
        return ast.BinaryExpr(str(op_tok).lower(), lhs, rhs, return_bool, matching,
                              self._cover(lhs, rhs), self._tok(op_tok))

    def bin_modifiers(self, c: list[Any]) -> tuple[bool, ast.VectorMatching | None]:
        return_bool = bool(c) and isinstance(c[0], Token) and c[0].type == "BOOL"
        rest = c[1:] if return_bool else c
        if not rest:
            return return_bool, None
        on_tok, names = rest[0]
        card = ast.Card.ONE_TO_ONE
        include: tuple[str, ...] = ()
        end_span = names.span
        if len(rest) == 2:
            group_tok, group_names = rest[1]
            card = (ast.Card.MANY_TO_ONE if group_tok.type == "GROUP_LEFT"
                    else ast.Card.ONE_TO_MANY)
            include = tuple(group_names.names) if group_names is not None else ()
            end_span = group_names.span if group_names is not None else self._tok(group_tok)
        span = Span(end_span.source, self._tok(on_tok).start, end_span.end)
        return return_bool, ast.VectorMatching(on_tok.type == "ON", tuple(names.names), card,
                                               include, span)

    def match_mod(self, c: list[Any]) -> tuple[Token, _Names]:
        return c[0], c[1]

    def group_mod(self, c: list[Any]) -> tuple[Token, _Names | None]:
        return c[0], (c[1] if len(c) > 1 else None)

    def label_list(self, c: list[Any]) -> _Names:
        names = []
        for tok in c[1:-1]:
            name = self._name(tok)
            if tok.type == "IDENT" and not is_label_name(name):
                self._error("syntax/invalid-label-name", f"invalid label name {name!r}",
                            self._tok(tok))
            names.append(name)
        return _Names(names, self._cover(c[0], c[-1]))

    # ------------------------------------------------------------ calls

    def call(self, c: list[Any]) -> ast.Call:
        name_tok = c[0]
        args: list[ast.Expr] = []
        kwargs: list[ast.KeywordArg] = []
        for item in c[2:-1]:
            if isinstance(item, ast.KeywordArg):
                if any(k.name == item.name for k in kwargs):
                    self._error("syntax/duplicate-argument",
                                f"argument {item.name!r} given more than once",
                                item.span or self._tok(name_tok))
                kwargs.append(item)
            else:
                if kwargs:
                    self._error("syntax/positional-after-keyword",
                                "positional argument follows keyword argument",
                                item.span or self._tok(name_tok))
                args.append(item)
        return ast.Call(str(name_tok), tuple(args), tuple(kwargs),
                        self._cover(name_tok, c[-1]), self._tok(name_tok))

    def kwarg(self, c: list[Any]) -> ast.KeywordArg:
        return ast.KeywordArg(str(c[0]), c[2], self._cover(c[0], c[2]))

    def agg_args(self, c: list[Any]) -> list[ast.Expr]:
        return c

    def grouping(self, c: list[Any]) -> tuple[bool, _Names]:
        return c[0].type == "WITHOUT", c[1]

    def aggregation(self, c: list[Any]) -> ast.AggregateExpr:
        op_tok: Token = c[0]
        op = str(op_tok).lower()
        grouping: tuple[bool, _Names] | None = None
        if isinstance(c[1], tuple):  # op by (...) ( args )
            grouping = c[1]
            args: list[ast.Expr] = c[3]
            close = c[4]
        else:  # op ( args ) [by (...)]
            args = c[2]
            close = c[3]
            if len(c) == 5:
                grouping = c[4]
        last: Any = grouping[1] if grouping is not None and len(c) == 5 and not isinstance(
            c[1], tuple) else close
        span = self._cover(op_tok, last)
        param: ast.Expr | None = None
        if op in _PARAM_AGGREGATIONS:
            if len(args) != 2:
                self._error("syntax/wrong-argument-count",
                            f"wrong number of arguments for aggregate expression provided, "
                            f"expected 2, got {len(args)}", span)
            param = args[0] if len(args) >= 1 else None
            expr = args[1] if len(args) >= 2 else (args[0] if args else _empty(span))
        else:
            if len(args) != 1:
                self._error("syntax/wrong-argument-count",
                            f"wrong number of arguments for aggregate expression provided, "
                            f"expected 1, got {len(args)}", span)
            expr = args[-1] if args else _empty(span)
        without, names = grouping if grouping is not None else (False, None)
        return ast.AggregateExpr(op, expr, param,
                                 tuple(names.names) if names is not None else (),
                                 without, names is not None, span, self._tok(op_tok))

    def weighted(self, c: list[Any]) -> ast.WeightedExpr:
        terms = tuple(t for t in c if isinstance(t, ast.WeightedTerm))
        return ast.WeightedExpr(terms, self._cover(c[0], c[-1]))

    def weighted_term(self, c: list[Any]) -> ast.WeightedTerm:
        (weight, wspan), expr = c
        return ast.WeightedTerm(weight, expr, Span(wspan.source, wspan.start, self._of(expr).end))

    def expr_only(self, c: list[Any]) -> ast.Expr:
        return c[0]  # type: ignore[no-any-return]

    # ------------------------------------------------------------ rule files

    def rule_file(self, c: list[Any]) -> ast.RuleFile:
        groups = tuple(x for x in c if isinstance(x, ast.Group))
        metrics = tuple(x for x in c if isinstance(x, ast.MetricDecl))
        defaults = [x for x in c if isinstance(x, _Field)]
        scrape: ast.Duration | None = None
        for f in defaults:
            if scrape is not None:
                self._error("syntax/duplicate-field", "scrape_interval is set twice", f.span)
            scrape = f.value
        return ast.RuleFile(ast.FileKind.DSL, groups, metrics, scrape,
                            Span(self.ctx.source, 0, len(self.ctx.source.text)))

    def default_stmt(self, c: list[Any]) -> _Field:
        return _Field("scrape_interval", c[1], self._cover(c[0], c[1]))

    def metric_decl(self, c: list[Any]) -> ast.MetricDecl:
        name = self._name_node(c[1])
        fields = self._fields(c[2:-1], "metric")
        mtype = fields.get("type")
        return ast.MetricDecl(name, mtype, fields.get("unit"), fields.get("help"),
                              fields.get("scrape_interval"), self._cover(c[0], c[-1]))

    def metric_type(self, c: list[Token]) -> _Field:
        text = str(c[1])
        if text not in _METRIC_TYPES:
            self._error("syntax/invalid-value",
                        f"unknown metric type {text!r}; expected one of "
                        + ", ".join(_METRIC_TYPES), self._tok(c[1]))
        return _Field("type", _METRIC_TYPES.get(text), self._cover(c[0], c[1]))

    def metric_unit(self, c: list[Token]) -> _Field:
        return _Field("unit", str(c[1]), self._cover(c[0], c[1]))

    def metric_help(self, c: list[Token]) -> _Field:
        return _Field("help", self._string(c[1]), self._cover(c[0], c[1]))

    def metric_scrape(self, c: list[Any]) -> _Field:
        return _Field("scrape_interval", c[1], self._cover(c[0], c[1]))

    def _name_node(self, tok: Token) -> ast.Name:
        return ast.Name(self._name(tok), self._tok(tok))

    def _fields(self, items: list[Any], what: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in items:
            if f.key in out and f.key not in ("labels", "annotations"):
                self._error("syntax/duplicate-field", f"{f.key} is set twice in this {what}",
                            f.span)
            if f.key in ("labels", "annotations"):
                out[f.key] = out.get(f.key, ()) + f.value
            else:
                out[f.key] = f.value
        return out

    def group(self, c: list[Any]) -> ast.Group:
        name = self._name_node(c[1])
        interval: ast.Duration | None = None
        rest = c[2:-1]
        if rest and isinstance(rest[0], Token) and rest[0].type == "KW_EVERY":
            interval = rest[1]
            rest = rest[2:]
        rules = tuple(x for x in rest if isinstance(x, ast.AlertRule | ast.RecordingRule))
        fields = self._fields([x for x in rest if isinstance(x, _Field)], "group")
        return ast.Group(name, rules, interval, fields.get("labels", ()), fields.get("limit"),
                         fields.get("query_offset"), self._cover(c[0], c[-1]))

    def group_limit(self, c: list[Token]) -> _Field:
        value = parse_number(str(c[1]))
        if value < 0 or value != int(value):
            self._error("syntax/invalid-value", "limit must be a non-negative integer",
                        self._tok(c[1]))
        return _Field("limit", int(value) if value == value and abs(value) < 2**63 else 0,
                      self._cover(c[0], c[1]))

    def group_query_offset(self, c: list[Any]) -> _Field:
        return _Field("query_offset", c[1], self._cover(c[0], c[1]))

    def labels_block(self, c: list[Any]) -> _Field:
        return _Field("labels", tuple(c[1:-1]), self._cover(c[0], c[-1]))

    def annotations_block(self, c: list[Any]) -> _Field:
        return _Field("annotations", tuple(c[1:-1]), self._cover(c[0], c[-1]))

    def label_pair(self, c: list[Token]) -> ast.LabelPair:
        key_tok, _, value_tok = c[:3]
        key = self._name(key_tok)
        if key_tok.type == "IDENT" and not is_label_name(key):
            self._error("syntax/invalid-label-name", f"invalid label name {key!r}",
                        self._tok(key_tok))
        return ast.LabelPair(key, self._string(value_tok), self._cover(key_tok, value_tok),
                             self._tok(value_tok))

    def record(self, c: list[Any]) -> ast.RecordingRule:
        name = self._name_node(c[1])
        expr = self.guard_depth(c[3])
        labels: tuple[ast.LabelPair, ...] = ()
        last: Any = c[3]
        if len(c) == 5:
            labels = c[4].value
            last = c[4]
        return ast.RecordingRule(name, expr, labels, self._cover(c[0], last))

    def alert(self, c: list[Any]) -> ast.AlertRule:
        name = self._name_node(c[1])
        span = self._cover(c[0], c[-1])
        fields = self._fields(c[2:-1], "alert")
        annotations: tuple[ast.LabelPair, ...] = fields.get("annotations", ())
        for key in ("summary", "description", "runbook_url"):
            if key in fields:
                pair: ast.LabelPair = fields[key]
                if any(a.key == pair.key for a in annotations):
                    self._error("syntax/duplicate-field",
                                f"{key} is set both as a field and in annotations", pair.span
                                or span)
                annotations += (pair,)
        if "when" not in fields:
            self._error("syntax/missing-field", f"alert {name.value!r} has no 'when' condition",
                        name.span or span, "add: when <expression>")
        no_data = fields.get("no_data")
        return ast.AlertRule(
            name=name,
            expr=fields.get("when"),
            recover_expr=fields.get("recover_when"),
            for_=fields.get("for"),
            keep_firing_for=fields.get("keep_firing_for"),
            severity=fields.get("severity"),
            labels=fields.get("labels", ()),
            annotations=annotations,
            channels=fields.get("notify", ()),
            cooldown=fields.get("cooldown"),
            escalation=fields.get("escalate"),
            no_data=no_data[0] if no_data else None,
            no_data_span=no_data[1] if no_data else None,
            span=span,
        )

    def _simple(self, key: str, c: list[Any]) -> _Field:
        return _Field(key, c[1], self._cover(c[0], c[-1]))

    def guard_depth(self, expr: ast.Expr) -> ast.Expr | None:
        """Refuse expressions nested beyond the limit (later passes recurse)."""
        span = expr.span
        if span is not None and span.end - span.start <= LIMITS.max_nesting:
            return expr  # every level of nesting takes at least one character
        d = ast.depth(expr)
        if d <= LIMITS.max_nesting:
            return expr
        self._error("limit/too-deep",
                    f"expression nests {d} levels deep; the limit is {LIMITS.max_nesting}",
                    expr.span or Span(self.ctx.source, 0, 0))
        return None

    def f_when(self, c: list[Any]) -> _Field:
        return _Field("when", self.guard_depth(c[1]), self._cover(c[0], c[-1]))

    def f_recover_when(self, c: list[Any]) -> _Field:
        return _Field("recover_when", self.guard_depth(c[1]), self._cover(c[0], c[-1]))

    def f_for(self, c: list[Any]) -> _Field:
        return self._simple("for", c)

    def f_keep_firing_for(self, c: list[Any]) -> _Field:
        return self._simple("keep_firing_for", c)

    def f_cooldown(self, c: list[Any]) -> _Field:
        return self._simple("cooldown", c)

    def f_severity(self, c: list[Token]) -> _Field:
        return _Field("severity", self._name_node(c[1]), self._cover(c[0], c[1]))

    def f_escalate(self, c: list[Token]) -> _Field:
        return _Field("escalate", self._name_node(c[1]), self._cover(c[0], c[1]))

    def f_notify(self, c: list[Token]) -> _Field:
        return _Field("notify", tuple(self._name_node(t) for t in c[1:]),
                      self._cover(c[0], c[-1]))

    def _annotation(self, key: str, c: list[Token]) -> _Field:
        pair = ast.LabelPair(key, self._string(c[1]), self._cover(c[0], c[1]), self._tok(c[1]))
        return _Field(key, pair, pair.span or self._tok(c[0]))

    def f_summary(self, c: list[Token]) -> _Field:
        return self._annotation("summary", c)

    def f_description(self, c: list[Token]) -> _Field:
        return self._annotation("description", c)

    def f_runbook(self, c: list[Token]) -> _Field:
        return self._annotation("runbook_url", c)

    def f_no_data(self, c: list[Token]) -> _Field:
        text = str(c[1])
        policy = _NO_DATA.get(text)
        if policy is None:
            self._error("syntax/invalid-value",
                        f"unknown no_data policy {text!r}; expected one of " + ", ".join(_NO_DATA),
                        self._tok(c[1]))
        return _Field("no_data", (policy, self._tok(c[1])) if policy else None,
                      self._cover(c[0], c[1]))


_PARAM_AGGREGATIONS = frozenset({"topk", "bottomk", "quantile", "count_values", "limitk",
                                 "limit_ratio"})


def _matches_empty(m: ast.LabelMatcher) -> bool:
    """Whether a matcher matches the empty string (and so selects nothing by itself)."""
    if m.op is ast.MatchOp.EQ:
        return m.value == ""
    if m.op is ast.MatchOp.NE:
        return m.value != ""
    from monitoring.dsl.regex import full_match

    matched = full_match(m.value, "")
    if matched is None:  # invalid regex: reported elsewhere
        return False
    return matched if m.op is ast.MatchOp.RE else not matched


def _empty(span: Span) -> ast.Expr:
    return ast.NumberLiteral(0.0, "0", span)
