from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl import ast
from monitoring.dsl.parser import parse_expression, parse_rule_file
from monitoring.dsl.source import SourceFile

PEER_PROMQL = Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "promql"
EVAL_LINE = re.compile(
    r"^\s*eval(?:_fail|_ordered|_warn|_info)?\s+"
    r"(?:instant\s+at\s+\S+|range\s+from\s+\S+\s+to\s+\S+\s+step\s+\S+)\s+(.*)$"
)


def expr(text: str) -> ast.Expr:
    result = parse_expression(text)
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    assert result.node is not None
    return result.node  # type: ignore[no-any-return]


def errors(text: str) -> list[tuple[str, str]]:
    return [(d.code, d.message) for d in parse_expression(text).diagnostics]


def sel(name: str, **labels: str) -> ast.VectorSelector:
    matchers = [ast.LabelMatcher("__name__", ast.MatchOp.EQ, name)]
    matchers += [ast.LabelMatcher(k, ast.MatchOp.EQ, v) for k, v in labels.items()]
    return ast.VectorSelector(name, tuple(matchers))


def num(v: float) -> ast.NumberLiteral:
    return ast.NumberLiteral(v)


# ---------------------------------------------------------------- literals


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1.0), ("1.5", 1.5), (".5", 0.5), ("2.", 2.0), ("1e3", 1000.0), ("12.34e-6", 12.34e-6),
        ("0x1F", 31.0), ("0X10", 16.0), ("Inf", math.inf), ("inF", math.inf), ("NaN", math.nan),
        ("nan", math.nan), ("1h", 3600.0), ("1m30s", 90.0), ("500ms", 0.5),
    ],
)
def test_number_literals(text: str, value: float) -> None:
    node = expr(text)
    assert isinstance(node, ast.NumberLiteral)
    assert node.value == value or (math.isnan(value) and math.isnan(node.value))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"a\\nb"', "a\nb"), ("'it\\'s'", "it's"), ("`raw\\n`", "raw\\n"), ('"\\x41\\101"', "AA"),
        ('"\\u00e9\\U0001F600"', "é😀"), ('""', ""), ('"tab\\tend"', "tab\tend"),
    ],
)
def test_string_literals(text: str, value: str) -> None:
    node = expr(text)
    assert isinstance(node, ast.StringLiteral)
    assert node.value == value


def test_invalid_escape_points_at_the_backslash() -> None:
    result = parse_expression('foo{a="x\\qy"}')
    (d,) = result.diagnostics
    assert d.code == "syntax/invalid-string"
    assert d.span is not None and (d.span.column, d.span.text()) == (9, "\\q")


def test_percentages_and_modulo() -> None:
    assert expr("x > 5%") == ast.BinaryExpr(">", sel("x"), ast.PercentLiteral(5.0))
    assert expr("x > 2.5%") == ast.BinaryExpr(">", sel("x"), ast.PercentLiteral(2.5))
    assert expr("10 % 3") == ast.BinaryExpr("%", num(10), num(3))
    assert expr("x%2") == ast.BinaryExpr("%", sel("x"), num(2))
    assert expr("10%3") == ast.BinaryExpr("%", num(10), num(3))


# ---------------------------------------------------------------- selectors


def test_selectors() -> None:
    node = expr('http_requests_total{job="api", code=~"5..", path!="/", x!~"y"}')
    assert isinstance(node, ast.VectorSelector)
    assert [(m.name, m.op.value, m.value) for m in node.matchers] == [
        ("__name__", "=", "http_requests_total"), ("job", "=", "api"), ("code", "=~", "5.."),
        ("path", "!=", "/"), ("x", "!~", "y"),
    ]
    quoted = expr('{"my.metric", "label.with.dots"="v"}')
    assert isinstance(quoted, ast.VectorSelector) and quoted.name == "my.metric"
    by_name = expr('{__name__="up", job="x"}')
    assert isinstance(by_name, ast.VectorSelector) and by_name.name == "up"
    keyword_labels = expr('x{by="a", on="b", offset="c"}')
    assert isinstance(keyword_labels, ast.VectorSelector)


def test_modifiers() -> None:
    node = expr("x[5m] offset -1h @ 100")
    assert isinstance(node, ast.MatrixSelector)
    assert node.range.ms == 300_000
    assert node.vector.offset is not None and node.vector.offset.ms == -3_600_000
    assert node.vector.at == ast.AtModifier(ast.AtKind.TIMESTAMP, 100_000)
    sub = expr("rate(x[5m])[1h:] @ end()")
    assert isinstance(sub, ast.SubqueryExpr) and sub.step is None
    assert sub.at == ast.AtModifier(ast.AtKind.END)
    assert expr("x @ 1.234") == ast.VectorSelector(
        "x", sel("x").matchers, at=ast.AtModifier(ast.AtKind.TIMESTAMP, 1234))


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("rate(x)[5m]", "syntax/range-on-non-selector"),
        ("x offset 5m [5m]", "syntax/modifier-before-range"),
        ("x offset 1m offset 2m", "syntax/duplicate-modifier"),
        ("sum(x) offset 5m", "syntax/misplaced-modifier"),
        ('{a=""}', "syntax/empty-selector"),
        ('x{__name__="y"}', "syntax/duplicate-metric-name"),
        ("x[5s1m]", "syntax/invalid-duration"),
        ("x[0s]", "syntax/invalid-duration"),
        ("x @ foo()", "syntax/invalid-at"),
        ('"abc', "syntax/unterminated-string"),
        ("sum(x", "syntax/unexpected-eof"),
        ("x +", "syntax/unexpected-eof"),
        ("x y", "syntax/unexpected-token"),
        ("x $ y", "syntax/unexpected-character"),
        ("topk(x)", "syntax/wrong-argument-count"),
        ('f(a=1, a=2)', "syntax/duplicate-argument"),
        ("f(a=1, 2)", "syntax/positional-after-keyword"),
    ],
)
def test_syntax_errors(text: str, code: str) -> None:
    assert code in [c for c, _ in errors(text)]


def test_error_messages_name_expected_tokens() -> None:
    (d,) = parse_expression("sum(x").diagnostics
    assert d.message == "unexpected end of input"
    assert any("')'" in h for h in d.hints)
    (d,) = parse_expression("a = b").diagnostics
    assert "use '==' to compare values" in d.hints


# ---------------------------------------------------------------- operators


def test_precedence_and_associativity() -> None:
    a, b, c = sel("a"), sel("b"), sel("c")
    assert expr("a + b * c") == ast.BinaryExpr("+", a, ast.BinaryExpr("*", b, c))
    assert expr("a - b - c") == ast.BinaryExpr("-", ast.BinaryExpr("-", a, b), c)
    assert expr("a ^ b ^ c") == ast.BinaryExpr("^", a, ast.BinaryExpr("^", b, c))
    assert expr("-a ^ b") == ast.UnaryExpr("-", ast.BinaryExpr("^", a, b))
    assert expr("a or b and c") == ast.BinaryExpr("or", a, ast.BinaryExpr("and", b, c))
    assert expr("a > b + c") == ast.BinaryExpr(">", a, ast.BinaryExpr("+", b, c))
    assert expr("a and b > c") == ast.BinaryExpr("and", a, ast.BinaryExpr(">", b, c))
    assert expr("2 ^ -1") == ast.BinaryExpr("^", num(2), ast.UnaryExpr("-", num(1)))
    assert expr("a atan2 b") == ast.BinaryExpr("atan2", a, b)


def test_binary_modifiers() -> None:
    node = expr("a > bool on(x, y) group_left(z) b")
    assert isinstance(node, ast.BinaryExpr) and node.return_bool
    assert node.matching == ast.VectorMatching(True, ("x", "y"), ast.Card.MANY_TO_ONE, ("z",))
    node = expr("a / ignoring(code) group_right b")
    assert isinstance(node, ast.BinaryExpr)
    assert node.matching == ast.VectorMatching(False, ("code",), ast.Card.ONE_TO_MANY, ())
    node = expr("a UNLESS on() b")
    assert isinstance(node, ast.BinaryExpr) and node.op == "unless"


@pytest.mark.parametrize("keyword", ["limit", "for", "labels", "severity", "group"])
def test_rule_file_keywords_are_names_after_matching_labels(keyword: str) -> None:
    for text in (f"a / on(x) {keyword}", f"a / ignoring(x) {keyword}",
                 f"a * on(x) group_left(y) {keyword}", f"a * on(x) group_left {keyword}"):
        node = expr(text)
        assert isinstance(node, ast.BinaryExpr) and node.rhs == sel(keyword), text


def test_aggregations_in_both_forms() -> None:
    before = expr("sum by (job) (x)")
    after = expr("SUM(x) BY (job)")
    assert before == after
    assert isinstance(before, ast.AggregateExpr) and before.grouping == ("job",)
    topk = expr("topk without (instance) (3, x)")
    assert isinstance(topk, ast.AggregateExpr) and topk.param == num(3) and topk.without
    cv = expr('count_values("version", build_info)')
    assert isinstance(cv, ast.AggregateExpr) and cv.param == ast.StringLiteral("version")
    # Aggregation names are ordinary metric names where no call follows.
    assert expr("sum > 1") == ast.BinaryExpr(">", sel("sum"), num(1))


def test_extensions() -> None:
    call = expr('anomaly(x[1h], method="mad")')
    assert isinstance(call, ast.Call) and call.kwargs[0].name == "method"
    weighted = expr("weighted(0.6: a > 1, 0.4: b > 2) >= 0.5")
    assert isinstance(weighted, ast.BinaryExpr)
    assert isinstance(weighted.lhs, ast.WeightedExpr)
    assert [t.weight for t in weighted.lhs.terms] == [0.6, 0.4]


def test_spans_cover_the_source() -> None:
    text = "sum by (job) (rate(http_requests_total[5m])) > 0.5"
    node = expr(text)
    assert node.span is not None and node.span.text() == text
    assert isinstance(node, ast.BinaryExpr)
    assert node.lhs.span is not None and node.lhs.span.text() == text[:-6]


def test_comments_are_ignored() -> None:
    assert expr("x # a comment\n + 1") == ast.BinaryExpr("+", sel("x"), num(1))


# ---------------------------------------------------------------- the conformance corpus


def test_every_conformance_expression_parses() -> None:
    files = sorted(PEER_PROMQL.glob("*.test"))
    assert files, f"conformance files not found in {PEER_PROMQL}"
    total = 0
    failures = []
    for path in files:
        for lineno, line in enumerate(path.read_text("utf-8").splitlines(), 1):
            m = EVAL_LINE.match(line)
            if not m:
                continue
            total += 1
            result = parse_expression(m.group(1))
            if not result.ok:
                failures.append(f"{path.name}:{lineno}: {m.group(1)} -> "
                                f"{[d.message for d in result.diagnostics]}")
    print(f"\nparsed {total - len(failures)} of {total} eval expressions in {len(files)} files")
    assert not failures, "\n".join(failures)
    assert total >= 781


# ---------------------------------------------------------------- rule files

RULES = """\
scrape_interval 15s
metric error_ratio { type gauge unit ratio help "errors per request" scrape_interval 30s }

group "api" every 30s {
  labels { team = "payments" }
  limit 10
  query_offset 1m

  alert HighErrorRate {
    when avg_over_time(error_ratio{job="api"}[5m]) > 5%
    recover_when avg_over_time(error_ratio{job="api"}[5m]) < 3%
    for 2m
    keep_firing_for 5m
    severity critical
    notify email, slack
    cooldown 5m
    escalate critical_alerts
    no_data keep_last
    summary "Error rate {{ $value | humanizePercentage }}"
    description "on {{ $labels.instance }}"
    runbook "https://runbooks.example/errors"
    labels { tier = "1" }
    annotations { dashboard = "https://grafana.example/d/api" }
  }

  record job:error_ratio:avg5m = avg by (job) (avg_over_time(error_ratio[5m])) labels { a = "b" }
}
"""


def test_rule_file_fields() -> None:
    result = parse_rule_file(SourceFile("api.rules", RULES))
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    rf = result.node
    assert isinstance(rf, ast.RuleFile)
    assert rf.scrape_interval is not None and rf.scrape_interval.ms == 15_000
    (metric,) = rf.metrics
    assert (metric.type, metric.unit, metric.help) == (ast.MetricType.GAUGE, "ratio",
                                                       "errors per request")
    (group,) = rf.groups
    assert group.name.value == "api" and group.interval is not None
    assert (group.limit, group.query_offset) == (10, ast.Duration(60_000))
    alert, record = group.rules
    assert isinstance(alert, ast.AlertRule) and isinstance(record, ast.RecordingRule)
    assert [c.value for c in alert.channels] == ["email", "slack"]
    assert alert.escalation is not None and alert.escalation.value == "critical_alerts"
    assert alert.no_data is ast.NoDataPolicy.KEEP_LAST
    assert {a.key for a in alert.annotations} == {"summary", "description", "runbook_url",
                                                 "dashboard"}
    assert [(p.key, p.value) for p in record.labels] == [("a", "b")]


def test_rule_file_recovers_and_reports_every_broken_rule() -> None:
    text = """\
group g {
  alert A {
    when rate(x[5m] >
    for 5m
  }
  alert B {
    when up == 0 )
  }
  record r = sum(
  alert C { when up == 0 }
  alert D { when y{ }
  alert E { when up == 0 }
}
"""
    result = parse_rule_file(SourceFile("bad.rules", text))
    lines = sorted({d.span.line for d in result.diagnostics if d.span is not None})
    assert lines == [4, 7, 10, 12], [(d.location(), d.message) for d in result.diagnostics]
    (group,) = result.node.groups
    assert [r.name.value for r in group.rules] == ["E"]


def test_keyword_hint_after_incomplete_expression() -> None:
    text = "group g {\n  alert A {\n    when rate(x[5m]) >\n    for 5m\n  }\n}\n"
    (d,) = parse_rule_file(SourceFile("a.rules", text)).diagnostics
    assert "'for'" in " ".join(d.hints)


# ---------------------------------------------------------------- robustness

ALPHABET = st.sampled_from([*"abcxyz_:{}[]()\"'`=~!<>+-*/%^@,.: \n\t#0123456789",
                            "sum", "by", "offset", "group", "alert", "when", "for", "5m", "\\",
                            "record", "labels", "weighted", "1e", "0x", "é"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALPHABET, max_size=40).map("".join))
def test_any_text_gives_an_ast_or_diagnostics(text: str) -> None:
    for result in (parse_expression(text), parse_rule_file(SourceFile("f.rules", text))):
        assert result.ok or result.diagnostics


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_an_ast_or_diagnostics(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    result = parse_rule_file(SourceFile("f.rules", text))
    assert result.ok or result.diagnostics


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_of_a_valid_file(data: st.DataObject) -> None:
    pos = data.draw(st.integers(0, len(RULES) - 1))
    length = data.draw(st.integers(0, 5))
    insert = data.draw(st.text(max_size=4))
    mutated = RULES[:pos] + insert + RULES[pos + length :]
    result = parse_rule_file(SourceFile("m.rules", mutated))
    assert result.ok or result.diagnostics


def test_limits() -> None:
    deep = "(" * 5000 + "1" + ")" * 5000
    result = parse_expression(deep)
    assert not result.ok
    long = "x + " * 20000 + "1"
    assert [d.code for d in parse_expression(long).diagnostics] == ["limit/too-large"]


@pytest.mark.parametrize("text", ["", "m", "5", "5x", "1h1h", "1m1h", "5 m", "1.5h"])
def test_invalid_durations_raise_lexical_errors(text: str) -> None:
    from monitoring.dsl.lexical import LexicalError, parse_duration

    with pytest.raises(LexicalError):
        parse_duration(text)


@pytest.mark.parametrize(("text", "ms"), [("5m", 300_000), ("1h30m", 5_400_000), ("500ms", 500),
                                          ("2d", 172_800_000), ("1y", 31_536_000_000),
                                          ("1w2d3h4m5s6ms", 788_645_006)])
def test_durations(text: str, ms: int) -> None:
    from monitoring.dsl.lexical import parse_duration

    assert parse_duration(text).ms == ms
