from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.loader import load_paths
from monitoring.dsl.parser import parse_expression
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_rules import load_seed_rules

RULES = Path(__file__).resolve().parents[2] / "rules"


def seed_alert_rules() -> str:
    """The seed's alert_rules.yaml, shipped verbatim in rules/."""
    return (RULES / "alert_rules.yaml").read_text("utf-8")


def load(text: str, name: str = "alert_rules.yaml") -> tuple[ast.RuleFile, list[Diagnostic]]:
    return load_seed_rules(SourceFile(name, text))


def only_rule(text: str) -> ast.AlertRule:
    rule_file, diags = load(text)
    assert [d for d in diags if d.severity is Severity.ERROR] == []
    [group] = rule_file.groups
    [rule] = group.rules
    assert isinstance(rule, ast.AlertRule)
    return rule


def dsl(text: str) -> ast.Expr:
    result = parse_expression(text)
    assert result.ok, result.diagnostics
    assert isinstance(result.node, ast.Expr)
    return result.node


def rule_with(condition: str, extra: str = "") -> str:
    body = "\n".join("    " + line for line in condition.strip("\n").splitlines())
    return f"- name: r\n  condition:\n{body}\n{extra}"


# ---------------------------------------------------------------- the seed


def test_seed_alert_rules_verbatim() -> None:
    rule_file, diags = load(seed_alert_rules())
    assert diags == []
    assert rule_file.kind is ast.FileKind.SEED_RULES
    [group] = rule_file.groups
    assert group.name.value == "alert_rules" and group.interval is None
    [rule] = group.rules
    assert isinstance(rule, ast.AlertRule)
    assert rule.name.value == "high_error_rate"
    assert rule.kind is ast.ConditionKind.THRESHOLD
    assert rule.expr == dsl("error_rate > 5.0")
    assert rule.severity is not None and rule.severity.value == "critical"
    assert [c.value for c in rule.channels] == ["email", "slack"]
    assert [(a.key, a.value) for a in rule.annotations] == [("description",
                                                             "Error rate exceeds 5%")]
    assert rule.tags == ("critical",)
    assert rule.cooldown is not None and rule.cooldown.ms == 300_000
    assert rule.recover_expr is None and rule.no_data is None


def test_spans_point_into_the_yaml() -> None:
    rule = only_rule(seed_alert_rules())
    assert rule.name.span is not None and rule.name.span.text() == '"high_error_rate"'
    assert [c.span.text() for c in rule.channels if c.span] == ['"email"', '"slack"']
    assert rule.cooldown is not None and rule.cooldown.span is not None
    assert (rule.cooldown.span.line, rule.cooldown.span.column) == (11, 13)
    assert isinstance(rule.expr, ast.BinaryExpr)
    assert rule.expr.lhs.span is not None and rule.expr.lhs.span.text() == "error_rate"
    assert rule.expr.op_span is not None and rule.expr.op_span.text() == '">"'
    assert rule.expr.rhs.span is not None and rule.expr.rhs.span.text() == "5.0"
    assert rule.span is not None and rule.span.line == 1


# ---------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("condition", "expected", "kind"),
    [
        ("type: threshold\nmetric: error_rate\noperator: '>='\nvalue: 5",
         "error_rate >= 5", ast.ConditionKind.THRESHOLD),
        ("type: threshold\nmetric: 'error_rate{job=\"api\"}'\noperator: '>'\nvalue: '5%'",
         'error_rate{job="api"} > 5%', ast.ConditionKind.THRESHOLD),
        ("type: threshold\nmetric: x\noperator: '<'\nvalue: 1\nwindow: 5m\naggregation: max",
         "max_over_time(x[5m]) < 1", ast.ConditionKind.THRESHOLD),
        ("type: threshold\nmetric: x\noperator: '!='\nvalue: 1\nwindow: 300",
         "avg_over_time(x[5m]) != 1", ast.ConditionKind.THRESHOLD),
        ("type: threshold\nmetric: 'a / b'\noperator: '>'\nvalue: 1\nwindow: 5m",
         "avg_over_time((a / b)[5m:]) > 1", ast.ConditionKind.THRESHOLD),
        ("type: threshold\nmetric: 'sum(rate(x[1m]))'\noperator: '>'\nvalue: 1\nwindow: 1h",
         "avg_over_time(sum(rate(x[1m]))[1h:]) > 1", ast.ConditionKind.THRESHOLD),
        ("type: trend\nmetric: disk\ndirection: increasing\nwindow: 6h",
         "trend(disk[6h]) == 1", ast.ConditionKind.TREND),
        ("type: trend\nmetric: disk\ndirection: decreasing\nwindow: 6h\nconfidence: 0.9\n"
         "min_change: 5", "trend(disk[6h], confidence=0.9, min_change=5) == -1",
         ast.ConditionKind.TREND),
        ("type: trend\nmetric: disk\ndirection: flat\nwindow: 1d\nmin_change: 2",
         "trend(disk[1d], min_change=2) == 0", ast.ConditionKind.TREND),
        ("type: anomaly\nmetric: latency\nwindow: 1h",
         "anomaly(latency[1h]) > 3", ast.ConditionKind.ANOMALY),
        ("type: anomaly\nmetric: latency\nwindow: 1h\nmethod: seasonal\nseason: 1d\n"
         "threshold: 3.5",
         'anomaly(latency[1h], method="seasonal", season=1d) > 3.5', ast.ConditionKind.ANOMALY),
        ("type: composite\noperator: AND\nconditions:\n"
         "  - {type: threshold, metric: a, operator: '>', value: 1}\n"
         "  - {type: expr, expr: 'b < 2 or c'}",
         "(a > 1) and (b < 2 or c)", ast.ConditionKind.COMPOSITE),
        ("type: composite\noperator: OR\nconditions:\n"
         "  - {type: expr, expr: a}\n  - {type: expr, expr: b}\n  - {type: expr, expr: c}",
         "(a) or (b) or (c)", ast.ConditionKind.COMPOSITE),
        ("type: composite\noperator: AND\nconditions:\n"
         "  - {type: expr, expr: a}\n"
         "  - type: composite\n    operator: OR\n    conditions:\n"
         "      - {type: expr, expr: b}\n      - {type: expr, expr: c}",
         "(a) and ((b) or (c))", ast.ConditionKind.COMPOSITE),
        ("type: composite\nweights: [0.6, 0.4]\nthreshold: 0.5\nconditions:\n"
         "  - {type: threshold, metric: cpu, operator: '>', value: 90}\n"
         "  - {type: threshold, metric: mem, operator: '>', value: 80}",
         "weighted(0.6: cpu > 90, 0.4: mem > 80) >= 0.5", ast.ConditionKind.COMPOSITE),
        ("type: composite\noperator: AND\nweights: [1, 2]\nconditions:\n"
         "  - {type: expr, expr: a}\n  - {type: expr, expr: b}",
         "weighted(1: a, 2: b) >= 0.5", ast.ConditionKind.COMPOSITE),
        ("type: expr\nexpr: 'rate(errors_total[5m]) / rate(requests_total[5m]) > 5%'",
         "rate(errors_total[5m]) / rate(requests_total[5m]) > 5%", ast.ConditionKind.EXPR),
    ],
)
def test_conditions_compile_to_expressions(condition: str, expected: str,
                                           kind: ast.ConditionKind) -> None:
    rule = only_rule(rule_with(condition))
    assert rule.expr == dsl(expected)
    assert rule.kind is kind


def test_expression_must_be_a_string_in_the_seed_format() -> None:
    rule_file, diags = load(rule_with("type: expr\nexpr: 1"))
    assert [d.code for d in diags] == ["schema/type"]
    rule = rule_file.groups[0].rules[0]
    assert isinstance(rule, ast.AlertRule) and rule.expr is None


@pytest.mark.parametrize(
    ("operator", "inverse"), [(">", "<="), ("<", ">="), (">=", "<"), ("<=", ">"),
                              ("==", "!="), ("!=", "==")])
def test_recovery_value_uses_the_inverse_operator(operator: str, inverse: str) -> None:
    rule = only_rule(rule_with(
        f"type: threshold\nmetric: x\noperator: '{operator}'\nvalue: 5\nrecovery_value: '3%'\n"
        "window: 5m\nunit: percent"))
    assert rule.expr == dsl(f"avg_over_time(x[5m]) {operator} 5")
    assert rule.recover_expr == dsl(f"avg_over_time(x[5m]) {inverse} 3%")
    assert rule.unit == "percent"


def test_rule_fields() -> None:
    rule = only_rule(rule_with(
        "type: expr\nexpr: up == 0",
        "  severity: warning\n"
        "  channels: [email]\n"
        "  summary: 'Down: {{ $labels.instance }}'\n"
        "  description: long text\n"
        "  annotations: {runbook_url: 'http://x'}\n"
        "  labels: {team: db, priority: 1, paged: true}\n"
        "  tags: [a, b]\n"
        "  cooldown: 5m\n"
        "  for: 120\n"
        "  keep_firing_for: 1m30s\n"
        "  escalation_policy: critical_alerts\n"
        "  no_data: keep_last\n"))
    assert [(a.key, a.value) for a in rule.annotations] == [
        ("runbook_url", "http://x"), ("summary", "Down: {{ $labels.instance }}"),
        ("description", "long text")]
    assert [(lab.key, lab.value) for lab in rule.labels] == [
        ("team", "db"), ("priority", "1"), ("paged", "true")]
    assert rule.tags == ("a", "b")
    assert rule.cooldown == ast.Duration(300_000)
    assert rule.for_ == ast.Duration(120_000) and str(rule.for_) == "120s"
    assert rule.keep_firing_for == ast.Duration(90_000)
    assert rule.escalation is not None and rule.escalation.value == "critical_alerts"
    assert rule.no_data is ast.NoDataPolicy.KEEP_LAST
    assert rule.no_data_span is not None and rule.no_data_span.text() == "keep_last"
    label = rule.labels[0]
    assert label.span is not None and label.span.text() == "team: db"
    assert label.value_span is not None and label.value_span.text() == "db"


def test_groups_and_intervals() -> None:
    text = (
        "- {name: a, condition: {type: expr, expr: a}}\n"
        "- {name: b, group: fast, interval: 30s, condition: {type: expr, expr: b}}\n"
        "- {name: c, group: fast, condition: {type: expr, expr: c}}\n"
        "- {name: d, group: fast, interval: 1m, condition: {type: expr, expr: d}}\n"
    )
    rule_file, diags = load(text, "rules/api.yaml")
    assert [(g.name.value, str(g.interval), [r.name.value for r in g.rules])
            for g in rule_file.groups] == [("api", "None", ["a"]),
                                           ("fast", "30s", ["b", "c", "d"])]
    assert [d.code for d in diags] == ["rule/conflicting-interval"]
    assert diags[0].span is not None and diags[0].span.text() == "1m"
    assert diags[0].related[0][1].text() == "30s"


# ---------------------------------------------------------------- errors inside YAML strings


@pytest.mark.parametrize(
    ("value", "marker", "code"),
    [
        # plain
        ("metric: rate(x[5m] +", "+", "syntax/unexpected-eof"),
        # double-quoted, with escapes before the error
        ('metric: "x{job=\\"a\\"} @@"', "@\"", "syntax/unexpected-token"),
        # single-quoted, with doubled quotes before the error
        ("metric: 'x{job=''a''} @@'", "@'", "syntax/unexpected-token"),
        # literal block scalar
        ("metric: |\n      sum(\n        rate(x[5m])\n      ) > * 1", "*",
         "syntax/unexpected-token"),
        # folded block scalar
        ("metric: >-\n      sum(rate(x[5m]))\n      + ) 1", ")\x20", "syntax/unexpected-token"),
        # folded block scalar with an indentation indicator and a blank line
        ("metric: >2\n        sum(rate(x[5m]))\n\n        + ) 1", ")\x20",
         "syntax/unexpected-token"),
        # an invalid duration inside a double-quoted string
        ('metric: "rate(x[5y2d3y])"', "3y", "syntax/invalid-duration"),
    ],
)
def test_expression_errors_point_into_the_file(value: str, marker: str, code: str) -> None:
    text = rule_with(f"type: threshold\noperator: '>'\nvalue: 1\n{value}")
    source = SourceFile("alert_rules.yaml", text)
    expected = source.line_col(text.rindex(marker))
    _, diags = load_seed_rules(source)
    errors = [d for d in diags if d.severity is Severity.ERROR]
    assert [d.code for d in errors] == [code]
    span = errors[0].span
    assert span is not None
    assert (span.line, span.column) == expected, (errors[0].message, span.text())
    assert span.text() == marker.rstrip("\"' ")


def test_expr_block_scalar_error_position() -> None:
    text = (
        "- name: r\n"
        "  condition:\n"
        "    type: expr\n"
        "    expr: |\n"
        "      rate(http_requests_total{job=\"api\"}[5m])\n"
        "        / on(instance) group_left\n"
        "      rate(x[5m]) >> 1\n"
    )
    _, diags = load(text)
    [d] = diags
    assert d.span is not None
    assert (d.span.line, d.span.column, d.span.text()) == (7, 20, ">")


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        (rule_with("type: expr\nexpr: up", "  cooldown: 5x\n"), "syntax/invalid-duration",
         (5, 13, "5")),
        (rule_with("type: expr\nexpr: up", "  for: 30m1h\n"), "syntax/invalid-duration",
         (5, 11, "1h")),
        (rule_with("type: expr\nexpr: up", "  cooldown: '300'\n"), "syntax/invalid-duration",
         (5, 14, "3")),
        (rule_with("type: composite\nweights: [1]\nconditions: [{type: expr, expr: a}, "
                   "{type: expr, expr: b}]"), "rule/weights-mismatch", (4, 14, "[1]")),
        (rule_with("type: expr\nexpr: up", "  summary: a\n  annotations: {summary: b}\n"),
         "rule/duplicate-field", (5, 3, "summary")),
        (rule_with("type: expr\nexpr: up", "  labels: {bad-name: x}\n"),
         "rule/invalid-label-name", (5, 12, "bad-name")),
        (rule_with("type: expr\nexpr: up", "  annotations: {'a b': x}\n"),
         "rule/invalid-annotation-name", (5, 17, "'a b'")),
    ],
)
def test_rule_errors(text: str, code: str, where: tuple[int, int, str]) -> None:
    _, diags = load(text)
    assert [d.code for d in diags] == [code]
    span = diags[0].span
    assert span is not None and (span.line, span.column, span.text()) == where


def test_recovery_value_inside_composite_is_ignored_with_a_warning() -> None:
    text = rule_with("type: composite\noperator: AND\nconditions:\n"
                     "  - {type: threshold, metric: a, operator: '>', value: 1, "
                     "recovery_value: 0}")
    rule_file, diags = load(text)
    assert [(d.code, d.severity) for d in diags] == [("rule/ignored-field", Severity.WARNING)]
    rule = rule_file.groups[0].rules[0]
    assert isinstance(rule, ast.AlertRule) and rule.expr == dsl("(a > 1)")


def test_rule_with_broken_condition_is_kept_without_expression() -> None:
    rule_file, diags = load(rule_with("type: expr\nexpr: 'rate(x[5m]'"))
    assert [d.code for d in diags] == ["syntax/unexpected-eof"]
    rule = rule_file.groups[0].rules[0]
    assert isinstance(rule, ast.AlertRule) and rule.expr is None
    assert rule.kind is ast.ConditionKind.EXPR


def test_yaml_errors_give_an_empty_file() -> None:
    rule_file, diags = load("- name: [\n")
    assert rule_file.groups == () and [d.code for d in diags] == ["yaml/syntax"]


# ---------------------------------------------------------------- never an exception


def _yaml_values() -> st.SearchStrategy[Any]:
    keys = st.sampled_from(["name", "condition", "type", "metric", "operator", "value",
                            "window", "aggregation", "conditions", "weights", "threshold",
                            "direction", "method", "season", "expr", "cooldown", "for",
                            "labels", "annotations", "group", "interval", "channels",
                            "recovery_value", "summary", "no_data", "tags", "x"])
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(-10, 10**6),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["threshold", "trend", "anomaly", "composite", "expr", "AND", "OR",
                         ">", "<=", "5m", "1h30m", "5%", "x", "rate(x[5m])", "a{b=\"c\"}",
                         "increasing", "mad", "keep_last", "", "(", "1h1h", "bad name"]),
        st.text(max_size=12),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4),
                                st.dictionaries(keys, inner, max_size=6)),
        max_leaves=30,
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_yaml_values())
def test_any_yaml_document_gives_diagnostics_or_an_ast(data: Any) -> None:
    text = yaml.safe_dump(data, allow_unicode=True)
    started = time.perf_counter()
    rule_file, diags = load(text)
    assert time.perf_counter() - started < 1.0
    assert isinstance(rule_file, ast.RuleFile)
    assert all(isinstance(d, Diagnostic) for d in diags)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(
    st.binary(max_size=300),
    st.text(alphabet="-:[]{}&*!|>'\"#%@ \n\tabc12\\.,?<=~", max_size=200).map(str.encode),
))
def test_any_bytes_as_a_rule_file_never_raise(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "alert_rules.yaml"
        path.write_bytes(data)
        started = time.perf_counter()
        ws = load_paths([path])
        assert time.perf_counter() - started < 1.0
    assert all(isinstance(d, Diagnostic) for d in ws.diagnostics)
    if not ws.diagnostics or all(d.code != "io/unreadable" for d in ws.diagnostics):
        assert [rf.kind for _, rf in ws.rule_files] == [ast.FileKind.SEED_RULES]
