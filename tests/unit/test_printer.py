from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl import ast
from monitoring.dsl.parser import ParseResult, parse_expression, parse_rule_file
from monitoring.dsl.printer import format_expr, format_number, format_rule_file
from monitoring.dsl.source import SourceFile
from monitoring.stdlib import REGISTRY
from tests.strategies import AGGREGATIONS, PARAM_AGGREGATIONS, expressions, rule_files

REPO = Path(__file__).resolve().parents[2]
PEER_PROMQL = REPO.parent / "shared" / "peer" / "promql"
EXPECTED_EVAL_LINES = 781
EVAL_PREFIX = re.compile(
    r"^\s*eval(?:_fail|_ordered|_warn|_info)?\s+"
    r"(?:instant\s+at\s+\S+|range\s+from\s+\S+\s+to\s+\S+\s+step\s+\S+)\s+(.*)$"
)

PROPERTY = settings(max_examples=400, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def parse(text: str) -> ast.Expr:
    result = parse_expression(text)
    assert result.ok, (text, [(d.code, d.message) for d in result.diagnostics])
    assert result.node is not None
    return result.node  # type: ignore[no-any-return]


def round_trip(expr: ast.Expr) -> str:
    text = format_expr(expr)
    again = parse(text)
    assert again == expr, f"{text!r} read back as {again!r}"
    assert format_expr(again) == text
    return text


def sel(name: str) -> ast.VectorSelector:
    return ast.VectorSelector(name, (ast.LabelMatcher("__name__", ast.MatchOp.EQ, name),))


def strip_parens(node: Any) -> Any:
    """The same tree without ParenExpr nodes: equality of meaning, not of spelling."""
    if isinstance(node, ast.ParenExpr):
        return strip_parens(node.expr)
    if isinstance(node, tuple):
        return tuple(strip_parens(n) for n in node)
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        changes = {f.name: strip_parens(getattr(node, f.name))
                   for f in dataclasses.fields(node) if f.compare}
        return dataclasses.replace(node, **changes)
    return node


# ---------------------------------------------------------------- (a) generated expressions


@PROPERTY
@given(expressions())
def test_generated_expressions_round_trip(expr: ast.Expr) -> None:
    round_trip(expr)


def test_registry_names_are_plain_function_names() -> None:
    # The strategies call every registry function by name; none may be a keyword.
    aggregations = set(AGGREGATIONS + PARAM_AGGREGATIONS)
    assert not aggregations & set(REGISTRY.names())
    for name in REGISTRY.names():
        round_trip(ast.Call(name, (sel("x"),)))


# ---------------------------------------------------------------- (b) conformance expressions


def conformance_expressions() -> tuple[int, list[str]]:
    """Every eval line of the PromQL conformance files: (number of eval lines, expressions)."""
    total = 0
    found: list[str] = []
    for path in sorted(PEER_PROMQL.glob("*.test")):
        for line in path.read_text("utf-8").splitlines():
            if not re.match(r"^\s*eval", line):
                continue
            total += 1
            m = EVAL_PREFIX.match(line)
            if m is not None:
                found.append(m.group(1))
    return total, found


def test_conformance_expressions_all_parse_and_round_trip() -> None:
    total, found = conformance_expressions()
    failures: list[tuple[str, object]] = []
    for text in found:
        result = parse_expression(text)
        if not result.ok or result.node is None:
            failures.append((text, [d.message for d in result.diagnostics]))
            continue
        printed = format_expr(result.node)
        again = parse_expression(printed)
        if again.node != result.node or format_expr(again.node) != printed:
            failures.append((text, printed))
    parsed = len(found) - len(failures)
    print(f"\nconformance: {parsed} of {total} eval expressions parse and round-trip")
    assert failures == []
    assert total == EXPECTED_EVAL_LINES
    assert parsed == total


# ---------------------------------------------------------------- (c) canonical forms

GOLDEN = [
    ("SUM(x) BY (job)", "sum by (job) (x)"),
    ("sum(x) without(a,b)", "sum without (a, b) (x)"),
    ("sum by () (x)", "sum by () (x)"),
    ("Count_Values('v', x)", 'count_values("v", x)'),
    ("topk(5,x) by (job)", "topk by (job) (5, x)"),
    ("a+b*c", "a + b * c"),
    ("(a+b)*c", "(a + b) * c"),
    ("a AND b OR c UNLESS d", "a and b or c unless d"),
    ("a > BOOL b", "a > bool b"),
    ("a * ON(x,y) GROUP_LEFT(z) b", "a * on (x, y) group_left (z) b"),
    ("a * on(x) group_left b", "a * on (x) group_left () b"),
    ("a / ignoring(x) group_right b", "a / ignoring (x) group_right () b"),
    ("a + ignoring() b", "a + ignoring () b"),
    ("a == bool on() b", "a == bool on () b"),
    ("a atan2 b", "a atan2 b"),
    ("foo{job='x', env=~\"p.*\"}", 'foo{job="x",env=~"p.*"}'),
    ('{__name__="foo", job="x"}', 'foo{job="x"}'),
    ('{job="x", __name__="foo"}', '{job="x",__name__="foo"}'),
    ('{"my.metric"}', '{"my.metric"}'),
    ('{__name__="my.metric", "a.b"!~"x"}', '{"my.metric","a.b"!~"x"}'),
    ('{__name__="offset"}', '{"offset"}'),
    ('{__name__="inf"}', '{"inf"}'),
    ("foo{}", "foo"),
    ("foo[300s]", "foo[5m]"),
    ("foo[90]", "foo[1m30s]"),
    ("foo[5m:1m]", "foo[5m:1m]"),
    ("foo[5m:]", "foo[5m:]"),
    ("rate(foo[5m])[30m:]", "rate(foo[5m])[30m:]"),
    ("foo offset 5m @ 100", "foo @ 100 offset 5m"),
    ("foo[5m] OFFSET -1h", "foo[5m] offset -1h"),
    ("foo @ 1609746000.5", "foo @ 1609746000.5"),
    ("foo @ -5", "foo @ -5"),
    ("foo @ START()", "foo @ start()"),
    ("foo @ end()", "foo @ end()"),
    ("foo offset 0s", "foo offset 0s"),
    ("x[5m:] offset 1m @ 5m", "x[5m:] @ 300 offset 1m"),
    ("0x1F", "31"),
    ("1e3", "1000"),
    ("1.50", "1.5"),
    (".5", "0.5"),
    ("1e-7", "1e-07"),
    ("inF", "Inf"),
    ("-INF", "-Inf"),
    ("nan", "NaN"),
    ("5m", "5m"),
    ("300s", "5m"),
    ("predict_linear(x[1h], 4h)", "predict_linear(x[1h], 4h)"),
    ("5%", "5%"),
    ("2.50%", "2.50%"),
    ("'it\\'s'", "\"it's\""),
    ("`raw\\n`", '"raw\\\\n"'),
    ('"tab\\there"', '"tab\\there"'),
    ('"\\u00e9\\x41"', '"éA"'),
    ("anomaly(x[1h],method='mad')", 'anomaly(x[1h], method="mad")'),
    ("weighted(0.6:a>1,0.4:b>2,)", "weighted(0.6: a > 1, 0.4: b > 2)"),
    ("weighted(-1: a)", "weighted(-1: a)"),
    ("-a ^ b", "-a ^ b"),
    ("(-a) ^ b", "(-a) ^ b"),
    ("a ^ b ^ c", "a ^ b ^ c"),
    ("(a ^ b) ^ c", "(a ^ b) ^ c"),
    ("a ^ -b", "a ^ -b"),
    ("a - -b", "a - -b"),
    ("a - (b - c)", "a - (b - c)"),
    ("- - a", "--a"),
    ("+a", "+a"),
    ("-1", "-1"),
    ("-(1)", "-(1)"),
    ("((a))", "((a))"),
    ("time()", "time()"),
]


@pytest.mark.parametrize(("source", "canonical"), GOLDEN)
def test_canonical_form(source: str, canonical: str) -> None:
    expr = parse(source)
    assert format_expr(expr) == canonical
    assert parse(canonical) == expr


# ---------------------------------------------------------------- precedence without ParenExpr


@pytest.mark.parametrize(
    ("expr", "printed"),
    [
        (ast.BinaryExpr("*", ast.BinaryExpr("+", sel("a"), sel("b")), sel("c")), "(a + b) * c"),
        (ast.BinaryExpr("-", sel("a"), ast.BinaryExpr("-", sel("b"), sel("c"))), "a - (b - c)"),
        (ast.BinaryExpr("-", ast.BinaryExpr("-", sel("a"), sel("b")), sel("c")), "a - b - c"),
        (ast.BinaryExpr("^", ast.BinaryExpr("^", sel("a"), sel("b")), sel("c")), "(a ^ b) ^ c"),
        (ast.BinaryExpr("^", sel("a"), ast.BinaryExpr("^", sel("b"), sel("c"))), "a ^ b ^ c"),
        (ast.BinaryExpr("^", ast.UnaryExpr("-", sel("a")), sel("b")), "(-a) ^ b"),
        (ast.UnaryExpr("-", ast.BinaryExpr("^", sel("a"), sel("b"))), "-a ^ b"),
        (ast.UnaryExpr("-", ast.BinaryExpr("+", sel("a"), sel("b"))), "-(a + b)"),
        (ast.BinaryExpr("-", sel("a"), ast.UnaryExpr("-", sel("b"))), "a - -b"),
        (ast.BinaryExpr("and", sel("a"), ast.BinaryExpr("or", sel("b"), sel("c"))),
         "a and (b or c)"),
        (ast.BinaryExpr(">", ast.BinaryExpr(">", sel("a"), sel("b")), sel("c")), "a > b > c"),
        (ast.BinaryExpr(">", sel("a"), ast.BinaryExpr(">", sel("b"), sel("c"))), "a > (b > c)"),
        (ast.SubqueryExpr(ast.BinaryExpr("+", sel("a"), sel("b")), ast.Duration(60_000), None),
         "(a + b)[1m:]"),
        (ast.SubqueryExpr(ast.UnaryExpr("-", sel("a")), ast.Duration(60_000), None), "(-a)[1m:]"),
        (ast.SubqueryExpr(ast.PercentLiteral(5.0), ast.Duration(60_000), None), "(5%)[1m:]"),
    ],
)
def test_built_trees_without_parens_keep_their_meaning(expr: ast.Expr, printed: str) -> None:
    # A tree built by hand (or by a loader) may lack the ParenExpr the parser
    # would have made; the printer then adds parentheses so the meaning survives.
    assert format_expr(expr) == printed
    assert strip_parens(parse(printed)) == strip_parens(expr)


@pytest.mark.parametrize(
    ("expr", "printed"),
    [
        (ast.BinaryExpr("*", sel("a"), ast.NumberLiteral(-2.0)), "a * -2"),
        (ast.BinaryExpr("^", ast.NumberLiteral(-2.0), sel("a")), "(-2) ^ a"),
        (ast.SubqueryExpr(ast.NumberLiteral(-2.0), ast.Duration(60_000), None), "(-2)[1m:]"),
    ],
)
def test_negative_number_literals_print_as_unary_minus(expr: ast.Expr, printed: str) -> None:
    # The parser never makes a negative literal (``-2`` is a unary minus); one
    # from a loader prints with the parentheses a unary minus needs.
    assert format_expr(expr) == printed
    parse(printed)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (-0.0, "0"), (1.0, "1"), (0.1, "0.1"), (1e16, "1e+16"), (123456789.0, "123456789"),
     (1e-300, "1e-300"), (math.inf, "Inf"), (-math.inf, "-Inf"), (math.nan, "NaN"),
     (2.0**53, "9007199254740992")],
)
def test_format_number(value: float, text: str) -> None:
    assert format_number(value) == text


@given(st.floats(min_value=0.0, allow_nan=False))
def test_numbers_read_back_exactly(value: float) -> None:
    node = parse(format_number(value))
    assert isinstance(node, ast.NumberLiteral)
    assert node.value == value


@pytest.mark.parametrize("name", ["sum", "inf", "weighted", "bool", "on", "not-a-name", ""])
def test_unwritable_function_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        format_expr(ast.Call(name, ()))


def test_unwritable_keyword_argument_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        format_expr(ast.Call("anomaly", (), (ast.KeywordArg("inf", sel("x")),)))


def test_infinite_weight_is_written_so_it_lexes() -> None:
    expr = ast.WeightedExpr((ast.WeightedTerm(math.inf, sel("a")),
                             ast.WeightedTerm(-math.inf, sel("b"))))
    assert round_trip(expr) == "weighted(Inf : a, -Inf : b)"


@pytest.mark.parametrize("name", ["offset", "for", "labels", "and", "group_left", "bool", "NaN"])
def test_keyword_metric_names_print_in_braces(name: str) -> None:
    # After a vector-matching label list these words lex as keywords.
    expr = ast.BinaryExpr("+", sel("a"), sel(name), matching=ast.VectorMatching(True, ("b",)))
    assert round_trip(expr) == f'a + on (b) {{"{name}"}}'


# ---------------------------------------------------------------- (d) rule files


def parse_file(text: str, name: str = "test.rules") -> ParseResult:
    result = parse_rule_file(SourceFile(name, text))
    assert result.ok, [(str(d.span), d.code, d.message) for d in result.diagnostics]
    return result


def comment_texts(result: ParseResult) -> list[str]:
    return [c.text.rstrip() for c in result.comments]


def check_format(text: str, *, same_order: bool = True) -> str:
    """Format ``text``; check equal AST, idempotence and that every comment survives."""
    before = parse_file(text)
    out = format_rule_file(before)
    after = parse_file(out, "formatted.rules")
    assert after.node == before.node
    assert format_rule_file(after) == out
    if same_order:
        assert comment_texts(after) == comment_texts(before)
    else:
        assert sorted(comment_texts(after)) == sorted(comment_texts(before))
    return out


SHIPPED = sorted((REPO / "rules").glob("*.rules"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_rule_files(path: Path) -> None:
    check_format(path.read_text("utf-8"))


FULL = """\
# header comment

scrape_interval 15s # default interval

metric http_requests_total { type counter  unit requests  help "Total" scrape_interval 30s }

# the api group
group "api" every 1m { # group header comment
  alert HighErrors {
    # before when
    when sum by (job) (rate(err[5m]))   # inside the expression
       / sum by (job) (rate(req[5m]))
       > 5%   # after the expression
    for 5m
    severity critical
    notify slack, "pager duty"
    summary "High error rate on {{ $labels.job }}"
    runbook 'https://example.com/rb'
    labels {
      # before a label
      team = "api",   # trailing on a label
      "a.b" = "x"
      # end of labels
    }
    annotations { dashboard = `https://grafana/d/{{ $labels.job }}` }
    # end of alert
  } # after the alert

  record job:errors:rate5m = sum by (job) (rate(errors_total[5m])) # on the record
    labels { source = "recorded" } # after the labels

  # before a plain record
  record job:x:sum = sum(x)
  # end of group
}
# end of file
"""

FULL_FORMATTED = """\
# header comment

scrape_interval 15s # default interval

metric http_requests_total {
  type counter
  unit requests
  help "Total"
  scrape_interval 30s
}

# the api group
group api every 1m { # group header comment
  alert HighErrors {
    # before when
    # inside the expression
    when sum by (job) (rate(err[5m])) / sum by (job) (rate(req[5m])) > 5% # after the expression
    for 5m
    severity critical
    notify slack, "pager duty"
    summary "High error rate on {{ $labels.job }}"
    runbook "https://example.com/rb"
    labels {
      # before a label
      team = "api" # trailing on a label
      "a.b" = "x"
      # end of labels
    }
    annotations {
      dashboard = "https://grafana/d/{{ $labels.job }}"
    }
    # end of alert
  } # after the alert

  record job:errors:rate5m = sum by (job) (rate(errors_total[5m])) # on the record
    labels {
      source = "recorded"
    } # after the labels

  # before a plain record
  record job:x:sum = sum(x)
  # end of group
}
# end of file
"""


def test_full_file_golden() -> None:
    assert check_format(FULL) == FULL_FORMATTED


def test_fields_are_reordered_and_their_comments_move_with_them() -> None:
    text = """\
group g {
  alert A {
    labels { x = "y" } # labels
    # the summary
    summary "s"
    # the condition
    when up == 0
    notify b, a
    for 1m # for
  }
  alert B { when up }
  # limit
  limit 5
  labels { team = "t" }
}
"""
    expected = """\
group g {
  labels {
    team = "t"
  }
  # limit
  limit 5

  alert A {
    # the condition
    when up == 0
    for 1m # for
    notify b, a
    # the summary
    summary "s"
    labels {
      x = "y"
    } # labels
  }

  alert B {
    when up
  }
}
"""
    assert check_format(text, same_order=False) == expected


def test_annotation_fields_print_as_fields() -> None:
    text = """\
group g {
  alert A {
    when up
    annotations { summary = "s" # about the summary
    }
    description "d"
  }
  alert B {
    when up
    annotations { summary = "first", other = "o" }
  }
}
"""
    out = check_format(text)
    assert '    summary "s" # about the summary\n    description "d"\n' in out
    # Written before another pair, "summary" must stay in the block to keep the order.
    assert 'annotations {\n      summary = "first"\n      other = "o"\n    }' in out


def test_empty_blocks_and_their_comments() -> None:
    text = """\
group g { labels { # nothing here
  }
  alert A { when up
    labels { }
  }
}
group empty {}
group commented {
  # only a comment
}
"""
    out = check_format(text)
    assert "group empty {}\n" in out
    assert "group commented {\n  # only a comment\n}\n" in out
    assert "labels" not in out


def test_blank_lines_after_comments_are_kept() -> None:
    text = """\
# license header

# about the group
group g {
  alert A {
    when up
  }


  # trailing note

}
"""
    out = check_format(text)
    assert out.startswith("# license header\n\n# about the group\ngroup g {\n")
    assert out.endswith("  }\n\n  # trailing note\n}\n")


def test_comment_in_an_empty_record_labels_block() -> None:
    text = "group g {\n  record x = y\n    labels { # c\n    }\n}\n"
    assert check_format(text) == "group g {\n  # c\n  record x = y\n}\n"


def test_comments_of_merged_blocks_all_survive() -> None:
    # Two labels blocks print as one; each printed line keeps one comment.
    text = """\
group g {
  alert A {
    when up
    labels { a = "b" } # one
    labels { # two
      c = "d" } # three
  }
}
"""
    out = check_format(text, same_order=False)
    assert '    # three\n    labels { # two\n      a = "b"\n      c = "d"\n    } # one\n' in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ""),
        ("\n\n", ""),
        ("# only a comment\n", "# only a comment\n"),
        ("# a\n\n# b   \n", "# a\n\n# b\n"),
        ("scrape_interval 60s\r\n# crlf\r\n", "scrape_interval 1m\n# crlf\n"),
    ],
)
def test_small_files(text: str, expected: str) -> None:
    assert check_format(text) == expected


def test_keywords_as_names() -> None:
    text = """\
group group {
  alert alert { when for{for="for"} > on(for) group_left(labels) {__name__="labels"}
    severity for notify when, "x y" escalate labels }
  record for = {__name__="for"} offset 5m
}
metric metric { unit unit }
"""
    out = check_format(text)
    assert 'when {"for",for="for"} > on (for) group_left (labels) {"labels"}' in out
    assert "severity for\n    notify when, \"x y\"\n    escalate labels\n" in out
    assert 'record for = {"for"} offset 5m' in out


def test_refuses_files_with_errors() -> None:
    result = parse_rule_file(SourceFile("bad.rules", "group g { alert A { when } }"))
    assert not result.ok
    with pytest.raises(ValueError, match="syntax errors"):
        format_rule_file(result)


def test_built_file_without_spans() -> None:
    rule = ast.AlertRule(ast.Name("A"), sel("up"), severity=ast.Name("page"),
                         annotations=(ast.LabelPair("summary", "s"),))
    record = ast.RecordingRule(ast.Name("r:x"), sel("x"), (ast.LabelPair("a", "b"),))
    rule_file = ast.RuleFile(ast.FileKind.DSL, (ast.Group(ast.Name("g"), (rule, record)),),
                             (ast.MetricDecl(ast.Name("up"), ast.MetricType.GAUGE),),
                             ast.Duration(15_000))
    out = format_rule_file(ParseResult(rule_file, []))
    assert out == """\
scrape_interval 15s

metric up {
  type gauge
}

group g {
  alert A {
    when up
    severity page
    summary "s"
  }

  record r:x = x
    labels {
      a = "b"
    }
}
"""
    assert parse_file(out).node == rule_file


FILE_PROPERTY = settings(max_examples=200, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow,
                                                HealthCheck.data_too_large])
comment_bodies = st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=15)


@FILE_PROPERTY
@given(rule_files())
def test_generated_rule_files_round_trip(rule_file: ast.RuleFile) -> None:
    text = format_rule_file(ParseResult(rule_file, []))
    result = parse_file(text)
    assert result.node == rule_file
    assert format_rule_file(result) == text


@FILE_PROPERTY
@given(rule_files(), st.data())
def test_generated_rule_files_keep_comments(rule_file: ast.RuleFile, data: st.DataObject) -> None:
    canonical = format_rule_file(ParseResult(rule_file, []))
    lines: list[str] = []
    inserted: list[str] = []
    for i, line in enumerate([*canonical.split("\n")]):
        if data.draw(st.booleans(), label=f"comment before line {i}"):
            inserted.append(f"# c{len(inserted)} " + data.draw(comment_bodies))
            lines.append(inserted[-1])
        if line and data.draw(st.booleans(), label=f"comment after line {i}"):
            inserted.append(f"# c{len(inserted)} " + data.draw(comment_bodies))
            line += " " + inserted[-1]
        lines.append(line)
    text = "\n".join(lines)
    result = parse_file(text)
    assert comment_texts(result) == [c.rstrip() for c in inserted]
    assert result.node == rule_file
    out = format_rule_file(result)
    again = parse_file(out)
    assert again.node == rule_file
    assert comment_texts(again) == comment_texts(result)
    assert format_rule_file(again) == out
