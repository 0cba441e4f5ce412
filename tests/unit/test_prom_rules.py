from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic
from monitoring.dsl.parser import parse_expression
from monitoring.dsl.prom_rules import load_prometheus_rules
from monitoring.dsl.source import SourceFile

PEER = Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "promtool"


def load(text: str) -> tuple[ast.RuleFile, list[Diagnostic]]:
    return load_prometheus_rules(SourceFile("rules.yml", text))


def dsl(text: str) -> ast.Expr:
    result = parse_expression(text)
    assert result.ok and isinstance(result.node, ast.Expr)
    return result.node


def group(rules: str, header: str = "") -> str:
    body = "\n".join("      " + line for line in rules.strip("\n").splitlines())
    return f"groups:\n  - name: g\n{header}    rules:\n{body}\n"


def test_peer_rules_file() -> None:
    rule_file, diags = load_prometheus_rules(SourceFile("rules.yml",
                                                        (PEER / "rules.yml").read_text()))
    assert diags == []
    assert rule_file.kind is ast.FileKind.PROMETHEUS
    alerts, records = rule_file.groups
    assert alerts.name.value == "alerts" and records.name.value == "rules"
    down, always = alerts.rules
    assert isinstance(down, ast.AlertRule) and isinstance(always, ast.AlertRule)
    assert down.name.value == "InstanceDown"
    assert down.expr == dsl("up == 0")
    assert down.for_ == ast.Duration(300_000)
    assert [(lab.key, lab.value) for lab in down.labels] == [("severity", "page")]
    assert [a.key for a in down.annotations] == ["summary", "description"]
    assert down.annotations[0].value == "Instance {{ $labels.instance }} down"
    assert always.expr == dsl("1")  # `expr: 1` is a YAML integer
    assert [r.name.value for r in records.rules] == [
        "job:test:count_over_time1m", "fixed_data", "suquery_interval_test"]
    assert all(isinstance(r, ast.RecordingRule) for r in records.rules)
    assert records.rules[0].expr == dsl("sum without(instance) (count_over_time(test[1m]))")
    assert records.rules[2].expr == dsl("count_over_time(up[5m:])")


def test_peer_bad_rules_error_file_loads() -> None:
    rule_file, diags = load((PEER / "bad-rules-error.yml").read_text())
    assert diags == []
    [grp] = rule_file.groups
    [rule] = grp.rules
    assert isinstance(rule, ast.RecordingRule) and rule.name.value == "joined"
    assert rule.expr == dsl("join_1 + on(a) join_2")


def test_group_fields() -> None:
    rule_file, diags = load(
        "groups:\n"
        "  - name: g\n"
        "    interval: 30s\n"
        "    query_offset: 1m\n"
        "    limit: 10\n"
        "    labels: {team: db}\n"
        "    rules:\n"
        "      - alert: A\n"
        "        expr: |\n"
        "          sum by (job) (rate(x[5m])) > 0\n"
        "        keep_firing_for: 5m\n")
    assert diags == []
    [grp] = rule_file.groups
    assert grp.interval == ast.Duration(30_000) and grp.query_offset == ast.Duration(60_000)
    assert grp.limit == 10 and [(lab.key, lab.value) for lab in grp.labels] == [("team", "db")]
    [rule] = grp.rules
    assert isinstance(rule, ast.AlertRule)
    assert rule.expr == dsl("sum by (job) (rate(x[5m])) > 0")
    assert rule.keep_firing_for == ast.Duration(300_000)
    assert rule.severity is None and rule.kind is ast.ConditionKind.EXPR


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        (group("- record: r\n  alert: A\n  expr: up"),
         [("rule/alert-and-record", 4, 9, "record")],
         "only one of 'record' and 'alert' must be set"),
        (group("- expr: up"), [("rule/missing-alert-or-record", 4, 9, "expr: up")],
         "one of 'record' or 'alert' must be set"),
        (group("- alert: A\n  expr: ''"), [("rule/missing-expr", 5, 9, "expr")],
         "field 'expr' must be set in rule"),
        (group("- alert: A"), [("rule/missing-expr", 4, 9, "alert: A")],
         "field 'expr' must be set in rule"),
        (group("- record: 'job:x{a=\"b\"}'\n  expr: up"),
         [("rule/invalid-record-name", 4, 17, "'job:x{a=\"b\"}'")],
         "braces present in the recording rule name; should it be in expr?"),
        (group("- record: 1abc\n  expr: up"),
         [("rule/invalid-record-name", 4, 17, "1abc")], "invalid recording rule name: 1abc"),
        (group("- record: r\n  expr: up\n  for: 5m"),
         [("rule/invalid-field", 6, 9, "for")], "invalid field 'for' in recording rule"),
        (group("- record: r\n  expr: up\n  keep_firing_for: 5m"),
         [("rule/invalid-field", 6, 9, "keep_firing_for")],
         "invalid field 'keep_firing_for' in recording rule"),
        (group("- record: r\n  expr: up\n  annotations: {a: b}"),
         [("rule/invalid-field", 6, 9, "annotations")],
         "invalid field 'annotations' in recording rule"),
        (group("- alert: A\n  expr: up\n  labels: {__name__: x}"),
         [("rule/invalid-label-name", 6, 18, "__name__")], "invalid label name: '__name__'"),
        (group("- alert: A\n  expr: up\n  labels: {'a-b': x}"),
         [("rule/invalid-label-name", 6, 18, "'a-b'")], "invalid label name: 'a-b'"),
        (group("- alert: A\n  expr: up\n  annotations: {'a b': x}"),
         [("rule/invalid-annotation-name", 6, 23, "'a b'")], "invalid annotation name"),
        (group("- alert: A\n  expr: up\n  for: 5"),
         [("syntax/invalid-duration", 6, 14, "5")], "invalid duration '5'"),
        (group("- alert: A\n  expr: up\n  for: 1m1h"),
         [("syntax/invalid-duration", 6, 16, "1h")], "units must go from largest"),
        (group("- alert: A\n  expr: up", "    interval: 1x\n"),
         [("syntax/invalid-duration", 3, 15, "1")], "invalid duration '1x'"),
        ("groups:\n  - name: g\n    rules: []\n  - name: g\n",
         [("rule/duplicate-group", 4, 11, "g")],
         'groupname: "g" is repeated in the same file'),
        ("groups:\n  - name: ''\n", [("rule/empty-group-name", 2, 5, "name")],
         "Groupname must not be empty"),
        (group("- alert: A\n  expr: rate(x[5m]"), [("syntax/unexpected-eof", 5, 24, "]")],
         "unexpected end of input"),
    ],
)
def test_rulefmt_validation(text: str, expected: list[tuple[str, int, int, str]],
                            message: str) -> None:
    _, diags = load(text)
    got = []
    for d in diags:
        assert d.span is not None
        got.append((d.code, d.span.line, d.span.column, d.span.text()))
    assert got == expected
    assert message in diags[0].message


def test_alert_and_record_points_at_both_keys() -> None:
    _, diags = load(group("- alert: A\n  record: r\n  expr: up"))
    [d] = diags
    assert d.span is not None and d.span.text() == "record" and d.span.line == 5
    [(label, span)] = d.related
    assert "alert" in label and span.text() == "alert" and span.line == 4


def test_zero_durations_are_fine_on_recording_rules() -> None:
    rule_file, diags = load(group("- record: r\n  expr: up\n  for: 0\n  keep_firing_for: '0s'"))
    assert diags == []
    assert isinstance(rule_file.groups[0].rules[0], ast.RecordingRule)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [("1", "1"), ("1.5e3", "1.5e3"), ("true", "true"), ("'up == 0'", "up == 0"),
     ('"rate(x[5m])"', "rate(x[5m])"), ("|\n          a\n          / b", "a / b")],
)
def test_any_scalar_is_expression_text(expr: str, expected: str) -> None:
    rule_file, diags = load(group(f"- record: r\n  expr: {expr}"))
    assert diags == []
    assert rule_file.groups[0].rules[0].expr == dsl(expected)


def test_empty_and_null_groups() -> None:
    for text in ("", "groups:\n", "groups: []\n", "groups:\n  - name: g\n    rules:\n"):
        rule_file, diags = load(text)
        assert diags == [] and all(g.rules == () for g in rule_file.groups)


def test_schema_errors_come_first_and_do_not_stop_the_checks() -> None:
    _, diags = load(group("- alert: A\n  expr: up\n  fro: 5m\n- record: r\n  alert: B\n"
                          "  expr: x"))
    assert [d.code for d in diags] == ["schema/unknown-field", "rule/alert-and-record"]
