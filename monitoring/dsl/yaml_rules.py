"""The seed's ``alert_rules.yaml`` compiled into the typed AST.

Each rule of the owner's format becomes an :class:`ast.AlertRule` whose
condition is an ordinary expression, so the checker, the linter and the
evaluator treat it exactly like a rule of the DSL:

    threshold   metric > value                  (avg_over_time(metric[window]) with a window)
    trend       trend(metric[window], confidence=..., min_change=...) == 1 | -1 | 0
    anomaly     anomaly(metric[window], method="...", season=...) > threshold
    composite   (c1) and (c2) ...  /  (c1) or (c2) ...  /  weighted(w1: c1, ...) >= threshold
    expr        the expression as written

Every node carries a span in the YAML file: expressions written inside YAML
strings (``metric``, ``expr``) are parsed with an :class:`OffsetMap`, so an
error inside a quoted or block scalar points at its exact line and column;
nodes made from other fields (the comparison of a threshold, a trend's
direction) point at those fields.

:class:`YamlAstBuilder` holds what both YAML rule formats need (names,
durations, label pairs, embedded expressions) and is shared with
:mod:`monitoring.dsl.prom_rules`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.lexical import LexicalError, is_label_name, parse_duration
from monitoring.dsl.parser import parse_expression
from monitoring.dsl.schema import validate
from monitoring.dsl.source import SourceFile, Span
from monitoring.dsl.yaml_source import NodeKind, YamlDocument, YamlPath, load_yaml
from monitoring.stdlib.conditions import TREND_DIRECTIONS

OPERATORS = (">", "<", ">=", "<=", "==", "!=")
INVERSE = {">": "<=", "<": ">=", ">=": "<", "<=": ">", "==": "!=", "!=": "=="}
"""The negation of each comparison: a recovery value holds once the condition no longer does."""

DEFAULT_ANOMALY_THRESHOLD = 3.0
DEFAULT_WEIGHTED_THRESHOLD = 0.5
_PERCENT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?%\Z")


class YamlAstBuilder:
    """AST pieces read from a YAML document: each with the span of the YAML it came from."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.diagnostics: list[Diagnostic] = []

    # ------------------------------------------------------------ reporting

    def error(self, code: str, message: str, span: Span, *hints: str,
              related: tuple[tuple[str, Span], ...] = ()) -> None:
        """Record an error."""
        self.diagnostics.append(Diagnostic(code, Severity.ERROR, message, span,
                                           tuple(h for h in hints if h), related=related))

    def warning(self, code: str, message: str, span: Span, *hints: str) -> None:
        """Record a warning."""
        self.diagnostics.append(Diagnostic(code, Severity.WARNING, message, span,
                                           tuple(h for h in hints if h)))

    # ------------------------------------------------------------ values

    def get(self, path: YamlPath) -> Any:
        """The plain value at ``path`` (``None`` when absent)."""
        value: Any = self.doc.data
        for part in path:
            if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
                value = value[part]
            elif isinstance(part, str) and isinstance(value, dict):
                value = value.get(part)
            else:
                return None
        return value

    def span(self, path: YamlPath) -> Span:
        """The span of the value at ``path`` (first line of a collection)."""
        return self.doc.value_span(path)

    def full_span(self, path: YamlPath) -> Span:
        """The whole extent of the value at ``path``."""
        node = self.doc.node(path)
        return self.doc.full_span(node) if node is not None else self.span(path)

    def name(self, path: YamlPath, *, any_scalar: bool = False) -> ast.Name | None:
        """A name written as a string (or, for Prometheus fields, as any scalar)."""
        value = self.get(path)
        if isinstance(value, str):
            return ast.Name(value, self.span(path))
        text = self.doc.text(path) if any_scalar and value is not None else None
        return ast.Name(text, self.span(path)) if text is not None else None

    def expression(self, path: YamlPath, *, any_scalar: bool = False) -> ast.Expr | None:
        """Parse the expression written in the scalar at ``path``, located in the file."""
        node = self.doc.node(path)
        if node is None or node.kind is not NodeKind.SCALAR:
            return None
        if not any_scalar and not isinstance(self.get(path), str):
            return None
        if not node.value.strip():
            return None  # reported as a missing expression by the schema or the caller
        result = parse_expression(node.value, self.doc.source, self.doc.offsets(node))
        self.diagnostics.extend(result.diagnostics)
        return result.node if result.ok and isinstance(result.node, ast.Expr) else None

    def duration_text(self, path: YamlPath, text: str) -> ast.Duration | None:
        """Decode a Prometheus duration string, pointing at the offending character."""
        span = self.span(path)
        if text == "0":  # Prometheus accepts a bare zero
            return ast.Duration(0, text, span)
        try:
            d = parse_duration(text)
        except LexicalError as e:
            node = self.doc.node(path)
            if node is not None and node.kind is NodeKind.SCALAR and node.value == text:
                offsets = self.doc.offsets(node)
                start = offsets(e.offset)
                span = Span(span.source, start, offsets(e.offset + e.length - 1) + 1)
            hint = ""
            if text.strip().lstrip("+-").replace(".", "", 1).isdigit():
                hint = f"add a unit: {text.strip()}s"
            self.error("syntax/invalid-duration", e.message, span, hint)
            return None
        return ast.Duration(d.ms, text, span)

    def seconds_or_duration(self, path: YamlPath) -> ast.Duration | None:
        """``300`` (seconds) or ``"5m"``; other types were reported by the schema."""
        value = self.get(path)
        if isinstance(value, bool) or value is None:
            return None
        if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
            seconds = int(value)
            return ast.Duration(seconds * 1000, f"{seconds}s", self.span(path))
        if isinstance(value, str):
            return self.duration_text(path, value)
        return None

    def label_pairs(self, path: YamlPath, what: str) -> tuple[ast.LabelPair, ...]:
        """Entries of a labels/annotations mapping; names are checked, values kept as text."""
        mapping = self.get(path)
        if not isinstance(mapping, dict):
            return ()
        out: list[ast.LabelPair] = []
        for key in mapping:
            entry = (*path, key)
            text = self._scalar_text(entry)
            if text is None:
                continue
            self.check_label_name(key, entry, what)
            out.append(ast.LabelPair(key, text, self.doc.entry_span(entry),
                                     self.span(entry)))
        return tuple(out)

    def check_label_name(self, key: str, path: YamlPath, what: str) -> bool:
        """Report a label or annotation name that is not a valid (legacy) label name."""
        if is_label_name(key) and not (what == "label" and key == "__name__"):
            return True
        code = "rule/invalid-label-name" if what == "label" else "rule/invalid-annotation-name"
        self.error(code, f"invalid {what} name: {key!r}", self.doc.key_span(path),
                   "names must match [a-zA-Z_][a-zA-Z0-9_]*" if key != "__name__" else
                   "__name__ is the metric name and cannot be set as a label")
        return False

    def _scalar_text(self, path: YamlPath) -> str | None:
        """A scalar's text as Prometheus reads it into a string (``true``, ``1.5``, null: "")."""
        value = self.get(path)
        if isinstance(value, str):
            return value
        if value is None:
            node = self.doc.node(path)
            return "" if node is not None and node.kind is NodeKind.SCALAR else None
        return self.doc.text(path)


# ---------------------------------------------------------------- the seed's format


@dataclass(slots=True)
class _Condition:
    """A compiled condition: its expression, its recovery expression, its kind and unit."""

    expr: ast.Expr
    kind: ast.ConditionKind
    recover: ast.Expr | None = None
    unit: str | None = None


@dataclass(slots=True)
class _GroupDraft:
    """Rules collected for one group while the file is read."""

    name: ast.Name
    interval: ast.Duration | None = None
    interval_span: Span | None = None
    rules: list[ast.AlertRule] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)


class SeedRulesBuilder(YamlAstBuilder):
    """Builds the rule file of a seed ``alert_rules.yaml`` document."""

    def rule_file(self) -> ast.RuleFile:
        """All rules, grouped by their ``group`` field (default: the file's stem)."""
        source = self.doc.source
        data = self.doc.data
        groups: dict[str, _GroupDraft] = {}
        for i, item in enumerate(data if isinstance(data, list) else []):
            if isinstance(item, dict):
                self._place(groups, (i,), item)
        built = tuple(self._group(g) for g in groups.values())
        return ast.RuleFile(ast.FileKind.SEED_RULES, built,
                            span=Span(source, 0, len(source.text)))

    def _place(self, groups: dict[str, _GroupDraft], path: YamlPath,
               item: dict[str, Any]) -> None:
        """Build one rule and add it to its group, checking the group's interval."""
        rule = self.rule(path, item)
        group_name = self.name((*path, "group"))
        if group_name is None:
            group_name = ast.Name(PurePath(self.doc.source.name).stem or "default")
        draft = groups.setdefault(group_name.value, _GroupDraft(group_name))
        interval = self.seconds_or_duration((*path, "interval"))
        if interval is not None:
            if draft.interval is None:
                draft.interval, draft.interval_span = interval, interval.span
            elif draft.interval.ms != interval.ms and interval.span is not None:
                related = (("the group's interval is set here", draft.interval_span),) \
                    if draft.interval_span is not None else ()
                self.error("rule/conflicting-interval",
                           f"group {group_name.value!r} already has interval {draft.interval}; "
                           f"rules of one group are evaluated together", interval.span,
                           "use the same interval, or another group", related=related)
        if rule is not None:
            draft.rules.append(rule)
            draft.spans.append(self.full_span(path))

    def _group(self, draft: _GroupDraft) -> ast.Group:
        span = draft.spans[0].cover(draft.spans[-1]) if draft.spans else None
        return ast.Group(draft.name, tuple(draft.rules), draft.interval, span=span)

    def rule(self, path: YamlPath, item: dict[str, Any]) -> ast.AlertRule | None:
        """One alert rule; ``None`` when it has no usable name (the schema said why)."""
        cond_path = (*path, "condition")
        condition = self.condition(cond_path, item.get("condition"))
        name = self.name((*path, "name"))
        if name is None or not name.value:
            return None
        no_data = item.get("no_data")
        policy = ast.NoDataPolicy(no_data) if isinstance(no_data, str) and no_data in _NO_DATA \
            else None
        return ast.AlertRule(
            name=name,
            expr=condition.expr if condition is not None else None,
            recover_expr=condition.recover if condition is not None else None,
            for_=self.seconds_or_duration((*path, "for")),
            keep_firing_for=self.seconds_or_duration((*path, "keep_firing_for")),
            severity=self.name((*path, "severity")),
            labels=self.label_pairs((*path, "labels"), "label"),
            annotations=self._annotations(path),
            channels=self._names((*path, "channels")),
            cooldown=self.seconds_or_duration((*path, "cooldown")),
            escalation=self.name((*path, "escalation_policy")),
            no_data=policy,
            no_data_span=self.span((*path, "no_data")) if policy is not None else None,
            kind=condition.kind if condition is not None else _kind(item.get("condition")),
            tags=_strings(item.get("tags")),
            unit=condition.unit if condition is not None else None,
            span=self.full_span(path),
        )

    def _names(self, path: YamlPath) -> tuple[ast.Name, ...]:
        values = self.get(path)
        if not isinstance(values, list):
            return ()
        return tuple(n for i in range(len(values)) if (n := self.name((*path, i))) is not None)

    def _annotations(self, path: YamlPath) -> tuple[ast.LabelPair, ...]:
        """``annotations`` plus the ``summary`` and ``description`` fields."""
        pairs = list(self.label_pairs((*path, "annotations"), "annotation"))
        for key in ("summary", "description"):
            entry = (*path, key)
            text = self.get(entry)
            if not isinstance(text, str):
                continue
            clash = next((p for p in pairs if p.key == key), None)
            if clash is not None and clash.span is not None:
                self.error("rule/duplicate-field",
                           f"{key} is set both as a field and in annotations",
                           self.doc.key_span(entry), "keep one of them",
                           related=(("also set here", clash.span),))
                continue
            pairs.append(ast.LabelPair(key, text, self.doc.entry_span(entry), self.span(entry)))
        return tuple(pairs)

    # ------------------------------------------------------------ values

    def number(self, path: YamlPath) -> ast.Expr | None:
        """A threshold value: a number, or a percentage string such as ``"5%"``."""
        value = self.get(path)
        node = self.doc.node(path)
        text = node.value if node is not None else str(value)
        span = self.span(path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _signed(float(value), text, span)
        if isinstance(value, str) and _PERCENT.match(value.strip()):
            stripped = value.strip()
            number = float(stripped[:-1])
            if stripped.startswith("-"):
                return ast.UnaryExpr("-", ast.PercentLiteral(-number, stripped[1:], span), span)
            return ast.PercentLiteral(number, stripped.lstrip("+"), span)
        return None

    def _literal(self, path: YamlPath, default: float | None = None) -> ast.Expr | None:
        """A plain number field (``confidence``, ``threshold``), or its default."""
        value = self.get(path)
        if isinstance(value, int | float) and not isinstance(value, bool):
            node = self.doc.node(path)
            return _signed(float(value), node.value if node else str(value), self.span(path))
        if value is None and default is not None:
            return _signed(default, f"{default:g}", self.span(path[:-1]))
        return None

    # ------------------------------------------------------------ conditions

    def condition(self, path: YamlPath, data: Any) -> _Condition | None:
        """Compile a condition of any type; ``None`` when it cannot be compiled."""
        if not isinstance(data, dict):
            return None
        kind = data.get("type")
        build = {
            "threshold": self._threshold, "trend": self._trend, "anomaly": self._anomaly,
            "composite": self._composite, "expr": self._expr,
        }.get(kind) if isinstance(kind, str) else None
        return build(path, data) if build is not None else None

    def _ranged(self, expr: ast.Expr, window: ast.Duration) -> ast.Expr:
        """``metric[window]`` for a selector, a subquery ``(expr)[window:]`` otherwise."""
        if isinstance(expr, ast.VectorSelector):
            return ast.MatrixSelector(expr, window, expr.span)
        inner = ast.ParenExpr(expr, expr.span) if isinstance(
            expr, ast.BinaryExpr | ast.UnaryExpr) else expr
        return ast.SubqueryExpr(inner, window, None, span=expr.span)

    def _threshold(self, path: YamlPath, data: dict[str, Any]) -> _Condition | None:
        metric = self.expression((*path, "metric"))
        value = self.number((*path, "value"))
        window = self.seconds_or_duration((*path, "window"))
        recovery = self.number((*path, "recovery_value")) \
            if data.get("recovery_value") is not None else None
        op = data.get("operator")
        if metric is None or value is None or op not in OPERATORS:
            return None
        lhs = metric
        if window is not None:
            agg = data.get("aggregation", "avg")
            if not isinstance(agg, str):
                return None
            name_path = (*path, "aggregation") if "aggregation" in data else (*path, "window")
            lhs = ast.Call(f"{agg}_over_time", (self._ranged(metric, window),),
                           span=metric.span, name_span=self.span(name_path))
        span = self.full_span(path)
        op_span = self.span((*path, "operator"))
        expr = ast.BinaryExpr(op, lhs, value, span=span, op_span=op_span)
        recover = ast.BinaryExpr(INVERSE[op], lhs, recovery, span=span, op_span=op_span) \
            if recovery is not None else None
        unit = data.get("unit") if isinstance(data.get("unit"), str) else None
        return _Condition(expr, ast.ConditionKind.THRESHOLD, recover, unit)

    def _trend(self, path: YamlPath, data: dict[str, Any]) -> _Condition | None:
        metric = self.expression((*path, "metric"))
        window = self.seconds_or_duration((*path, "window"))
        direction = data.get("direction")
        if metric is None or window is None or direction not in TREND_DIRECTIONS:
            return None
        kwargs = tuple(
            ast.KeywordArg(key, lit, self.doc.entry_span((*path, key)))
            for key in ("confidence", "min_change", "min_relative_change")
            if key in data and (lit := self._literal((*path, key))) is not None
        )
        call = ast.Call("trend", (self._ranged(metric, window),), kwargs, span=metric.span,
                        name_span=self.span((*path, "type")))
        dir_span = self.span((*path, "direction"))
        value = TREND_DIRECTIONS[direction]
        target = _signed(value, f"{value:g}", dir_span)
        expr = ast.BinaryExpr("==", call, target, span=self.full_span(path), op_span=dir_span)
        return _Condition(expr, ast.ConditionKind.TREND)

    def _anomaly(self, path: YamlPath, data: dict[str, Any]) -> _Condition | None:
        metric = self.expression((*path, "metric"))
        window = self.seconds_or_duration((*path, "window"))
        season = self.seconds_or_duration((*path, "season")) if "season" in data else None
        threshold = self._literal((*path, "threshold"), DEFAULT_ANOMALY_THRESHOLD)
        if metric is None or window is None or threshold is None:
            return None
        kwargs: list[ast.KeywordArg] = []
        method = data.get("method")
        if isinstance(method, str):
            kwargs.append(ast.KeywordArg("method", ast.StringLiteral(
                method, self.span((*path, "method"))), self.doc.entry_span((*path, "method"))))
        if season is not None:
            kwargs.append(ast.KeywordArg("season", ast.NumberLiteral(
                season.ms / 1000, season.text, season.span),
                self.doc.entry_span((*path, "season"))))
        call = ast.Call("anomaly", (self._ranged(metric, window),), tuple(kwargs),
                        span=metric.span, name_span=self.span((*path, "type")))
        expr = ast.BinaryExpr(">", call, threshold, span=self.full_span(path),
                              op_span=threshold.span)
        return _Condition(expr, ast.ConditionKind.ANOMALY)

    def _composite(self, path: YamlPath, data: dict[str, Any]) -> _Condition | None:
        items = data.get("conditions")
        if not isinstance(items, list):
            return None
        subs = [self._sub_condition((*path, "conditions", i), item)
                for i, item in enumerate(items)]
        weights = data.get("weights")
        if weights is not None:
            return self._weighted(path, data, subs)
        operator = data.get("operator")
        if operator not in ("AND", "OR") or not subs or any(s is None for s in subs):
            return None
        op = operator.lower()
        span = self.full_span(path)
        op_span = self.span((*path, "operator"))
        parts = [ast.ParenExpr(s.expr, s.expr.span) for s in subs if s is not None]
        expr: ast.Expr = parts[0]
        for part in parts[1:]:
            expr = ast.BinaryExpr(op, expr, part, span=span, op_span=op_span)
        return _Condition(expr, ast.ConditionKind.COMPOSITE)

    def _weighted(self, path: YamlPath, data: dict[str, Any],
                  subs: list[_Condition | None]) -> _Condition | None:
        """``weighted(w1: c1, ...) >= threshold``; one weight per condition."""
        weights = data.get("weights")
        if not isinstance(weights, list):
            return None
        if len(weights) != len(subs):
            self.error("rule/weights-mismatch",
                       f"{len(weights)} weight{'s' if len(weights) != 1 else ''} for "
                       f"{len(subs)} condition{'s' if len(subs) != 1 else ''}",
                       self.span((*path, "weights")), "give one weight per condition, in order")
            return None
        threshold = self._literal((*path, "threshold"), DEFAULT_WEIGHTED_THRESHOLD)
        if threshold is None or any(s is None for s in subs) or not all(
            isinstance(w, int | float) and not isinstance(w, bool) for w in weights
        ):
            return None
        terms = tuple(
            ast.WeightedTerm(float(w), s.expr, self.span((*path, "weights", i)))
            for i, (w, s) in enumerate(zip(weights, subs, strict=True)) if s is not None
        )
        span = self.full_span(path)
        expr = ast.BinaryExpr(">=", ast.WeightedExpr(terms, span), threshold, span=span,
                              op_span=threshold.span)
        return _Condition(expr, ast.ConditionKind.COMPOSITE)

    def _sub_condition(self, path: YamlPath, data: Any) -> _Condition | None:
        """A condition inside a composite; its recovery value has nowhere to go."""
        sub = self.condition(path, data)
        if isinstance(data, dict) and data.get("recovery_value") is not None:
            self.warning("rule/ignored-field",
                         "recovery_value is ignored inside a composite condition",
                         self.doc.key_span((*path, "recovery_value")),
                         "a composite resolves when its combined condition stops holding")
        return sub

    def _expr(self, path: YamlPath, data: dict[str, Any]) -> _Condition | None:
        expr = self.expression((*path, "expr"))
        return _Condition(expr, ast.ConditionKind.EXPR) if expr is not None else None


_NO_DATA = {p.value for p in ast.NoDataPolicy}
_KINDS = {k.value: k for k in ast.ConditionKind}


def _signed(value: float, text: str, span: Span) -> ast.Expr:
    """A number as the parser builds it: a negative one is a unary minus on a literal."""
    if value < 0 or (value == 0 and text.startswith("-")):
        return ast.UnaryExpr("-", ast.NumberLiteral(-value, text.lstrip("-"), span), span)
    return ast.NumberLiteral(value, text.lstrip("+"), span)


def _strings(values: Any) -> tuple[str, ...]:
    """The strings of a list (other items were reported by the schema)."""
    return tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()


def _kind(condition: Any) -> ast.ConditionKind:
    """The kind a condition declares, even when it failed to compile."""
    if isinstance(condition, dict) and isinstance(condition.get("type"), str):
        return _KINDS.get(condition["type"], ast.ConditionKind.EXPR)
    return ast.ConditionKind.EXPR


def seed_rule_file(doc: YamlDocument) -> tuple[ast.RuleFile, list[Diagnostic]]:
    """Compile a loaded ``alert_rules.yaml`` (already schema-checked) into the AST."""
    builder = SeedRulesBuilder(doc)
    return builder.rule_file(), builder.diagnostics


def load_rule_document(
    source: SourceFile,
    kind: ast.FileKind,
    schema_name: str,
    compile_doc: Callable[[YamlDocument], tuple[ast.RuleFile, list[Diagnostic]]],
) -> tuple[ast.RuleFile, list[Diagnostic]]:
    """Load YAML, validate it against a schema, compile it; every problem is a diagnostic."""
    doc = load_yaml(source)
    diagnostics = list(doc.diagnostics)
    if doc.root is None:
        return ast.RuleFile(kind, span=Span(source, 0, len(source.text))), diagnostics
    diagnostics.extend(validate(doc, schema_name))
    rule_file, more = compile_doc(doc)
    diagnostics.extend(more)
    return rule_file, diagnostics


def load_seed_rules(source: SourceFile) -> tuple[ast.RuleFile, list[Diagnostic]]:
    """Load, validate and compile a seed rule file; every problem is a diagnostic."""
    return load_rule_document(source, ast.FileKind.SEED_RULES, "alert_rules", seed_rule_file)
