from __future__ import annotations

import math

import pytest

from monitoring.dsl import ast, ir
from monitoring.dsl.checker import Checker
from monitoring.dsl.compiler import PASSES, compile_rule_files
from monitoring.dsl.diagnostics import Diagnostic
from monitoring.dsl.graph import render_dot, render_text
from monitoring.dsl.lower import scalar_arithmetic
from monitoring.dsl.parser import parse_expression, parse_rule_file
from monitoring.dsl.source import SourceFile


def check(text: str) -> list[tuple[str, str]]:
    found: list[Diagnostic] = []
    node = parse_expression(text).node
    assert node is not None
    Checker(found.append).check_root(node, "an expression")
    return [(d.code, d.message) for d in found]


def compile_text(text: str, name: str = "t.rules"):  # type: ignore[no-untyped-def]
    result = parse_rule_file(SourceFile(name, text))
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    return compile_rule_files([result.node])


# ---------------------------------------------------------------- types


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ("rate(x)", "type/mismatch",
         "expected type range vector in call to function 'rate', got instant vector"),
        ("abs(x[5m])", "type/mismatch",
         "expected type instant vector in call to function 'abs', got range vector"),
        ("sum(x[5m])", "type/mismatch",
         "expected type instant vector in aggregation expression, got range vector"),
        ("x[5m] + 1", "type/mismatch",
         "binary expression must contain only scalar and instant vector types, got range vector"),
        ("1 > 2", "type/bool-required", "comparisons between scalars must use BOOL modifier"),
        ("x + bool y", "type/bool-not-allowed",
         "bool modifier can only be used on comparison operators"),
        ("x and 1", "type/mismatch", "set operator 'and' not allowed in binary scalar expression"),
        ("x + on(a) 1", "type/invalid-matching",
         "vector matching only allowed between instant vectors"),
        ("x and on(a) group_left b", "type/invalid-matching",
         "no grouping allowed for 'and' operation"),
        ("abs()", "type/wrong-argument-count", "expected 1 argument(s) in call to 'abs', got 0"),
        ("clamp(x, 1)", "type/wrong-argument-count",
         "expected 3 argument(s) in call to 'clamp', got 2"),
        ("round(x, 1, 2)", "type/wrong-argument-count",
         "expected 1 to 2 argument(s) in call to 'round', got 3"),
        ("label_join(x)", "type/wrong-argument-count",
         "expected at least 3 argument(s) in call to 'label_join', got 1"),
        ("rat(x[5m])", "name/unknown-function", "unknown function 'rat'"),
        ('anomaly(x[1h], method="magic")', "type/invalid-choice",
         "method of anomaly() must be one of 'zscore', 'mad', 'ewma', 'seasonal', 'quantile', "
         "'ensemble', got 'magic'"),
        ("anomaly(x[1h], window=5)", "name/unknown-argument",
         "anomaly() has no parameter 'window'"),
        ('topk("a", x)', "type/mismatch",
         "expected type scalar in aggregation parameter, got string"),
        ("(x > 1)[5m:1m] > 1", "type/mismatch",
         "binary expression must contain only scalar and instant vector types, got range vector"),
        ("sum(x)[5m:1m][5m:1m]", "type/mismatch",
         "subquery is only allowed on instant vector, got range vector"),
        ('x{a=~"("}', "promql/invalid-regex", "invalid regular expression '(': missing ): ("),
        ('"text"', "type/invalid-rule-type",
         "an expression must be an instant vector or a scalar, got string"),
    ],
)
def test_type_errors(text: str, code: str, message: str) -> None:
    assert (code, message) in check(text)


@pytest.mark.parametrize(
    "text",
    [
        "rate(x[5m]) > 1", "sum by (job) (rate(x[5m]))", "1 > bool 2", "x and y", "-x", "+1",
        "time() - 3600", "vector(1)", "scalar(x) * 2", "label_join(x, \"a\", \",\", \"b\", \"c\")",
        "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))", "hour()", "hour(x)",
        "trend(x[1h]) == increasing", "weighted(0.5: x > 1, 0.5: y > 1) >= 0.5",
        'anomaly(x[1h], method="mad") > 3', "forecast(x[1d], 4h, season=1d) > 1",
        "x @ start()", "rate(x[5m] offset -1h)", "max_over_time((x > 1)[5m:])",
        'count_values("v", x)', "quantile(0.9, x)", "topk(scalar(y), x)",
    ],
)
def test_well_typed(text: str) -> None:
    assert check(text) == []


def test_every_error_of_an_expression_is_reported() -> None:
    codes = [c for c, _ in check("rate(x) + abs(y[5m]) + nope(z)")]
    assert codes == ["type/mismatch", "type/mismatch", "name/unknown-function"]


def test_did_you_mean() -> None:
    found: list[Diagnostic] = []
    node = parse_expression("avg_over_tim(x[5m])").node
    assert node is not None
    Checker(found.append).check(node)
    assert found[0].hints == ("did you mean 'avg_over_time'?",)


# ---------------------------------------------------------------- IR and sharing

RULES = """\
metric error_rate { type gauge unit percent }
metric cpu_ratio { type gauge unit ratio }
group "g" every 30s {
  alert A { when avg_over_time(error_rate{job="api", env="prod"}[5m]) > 5% }
  alert B { when avg_over_time(error_rate{env="prod", job="api"}[5m]) > 2 * 5 }
  alert C { when cpu_ratio > 90% }
  alert D { when anomaly(cpu_ratio[1h]) > 3 and anomaly(cpu_ratio[1h], method="ensemble") > 3 }
  record job:err = avg by (job) (error_rate)
  alert E { when job:err > 50% }
}
"""


def test_identical_subexpressions_are_one_node() -> None:
    state = compile_text(RULES)
    assert not state.diagnostics
    rules = {r.name: r for r in state.program.rules}
    a, b = rules["A"].condition, rules["B"].condition
    assert isinstance(a, ir.Binary) and isinstance(b, ir.Binary)
    # Matchers are sorted, so the two selectors (and everything above them) are one node.
    assert a.lhs is b.lhs
    # Constants are folded: 2 * 5 is 10 ...
    assert b.rhs == ir.Const(10.0)
    # ... and 5% of a percent-unit metric is 5.
    assert a.rhs == ir.Const(5.0)
    d = rules["D"].condition
    assert isinstance(d, ir.Binary)
    assert isinstance(d.lhs, ir.Binary) and isinstance(d.rhs, ir.Binary)
    # Default arguments are bound, so explicit and implicit defaults share a node.
    assert d.lhs.lhs is d.rhs.lhs
    nodes = state.program.nodes
    assert len(nodes) == len(set(nodes))


def test_percentages_follow_the_unit() -> None:
    state = compile_text(RULES)
    rules = {r.name: r for r in state.program.rules}
    c = rules["C"].condition
    assert isinstance(c, ir.Binary) and c.rhs == ir.Const(0.9)
    e = rules["E"].condition
    # job:err records an average of a percent-unit metric: 50% is 50.
    assert isinstance(e, ir.Binary) and e.rhs == ir.Const(50.0)


def test_fraction_parameters_read_percent_as_a_fraction_whatever_the_unit() -> None:
    text = ("group g {\n alert T {\n  when trend(cpu_percent[1h], confidence=99%, "
            "min_change=5%, min_relative_change=10%) == increasing\n }\n}\n")
    (rule,) = compile_text(text).program.rules
    assert isinstance(rule.condition, ir.Binary) and isinstance(rule.condition.lhs, ir.Call)
    args = rule.condition.lhs.args
    # confidence and min_relative_change are fractions; min_change is in the metric's unit.
    assert args[1:] == (ir.Const(0.99), ir.Const(5.0), ir.Const(0.1))


def test_a_percentage_is_its_decimal_digits_over_100() -> None:
    for text, value in (("70%", 0.7), ("95%", 0.95), ("33.3%", 0.333), ("0.1%", 0.001)):
        (rule,) = compile_text(f"group g {{ alert A {{ when x_ratio > {text} }} }}").program.rules
        assert isinstance(rule.condition, ir.Binary) and rule.condition.rhs == ir.Const(value)


def test_trend_direction_names_are_constants() -> None:
    state = compile_text('group g { alert T { when trend(x[1h]) == decreasing } }')
    (rule,) = state.program.rules
    assert isinstance(rule.condition, ir.Binary) and rule.condition.rhs == ir.Const(-1.0)


def test_topological_order_and_users() -> None:
    state = compile_text(RULES)
    program = state.program
    position = {n: i for i, n in enumerate(program.nodes)}
    for node in program.nodes:
        for child in node.children():
            assert position[child] < position[node]
    users = program.users()
    shared = [n for n in program.nodes if len(users.get(n, [])) > 1]
    assert shared


def test_graph_renderings() -> None:
    state = compile_text(RULES)
    text = render_text(state.program)
    assert text.startswith("evaluation graph: 6 rules")
    assert "shared by 2 rules" in text
    assert "g/job:err -> " in text
    dot = render_dot(state.program)
    assert dot.startswith("digraph evaluation {") and dot.rstrip().endswith("}")


def test_rules_with_errors_are_not_lowered_but_others_are() -> None:
    state = compile_text("group g { alert Bad { when rate(x) > 1 } alert Good { when y > 1 } }")
    assert [r.name for r in state.program.rules] == ["Good"]
    assert [d.code for d in state.diagnostics] == ["type/mismatch"]


def test_stop_after_a_pass() -> None:
    result = parse_rule_file(SourceFile("t.rules", RULES))
    state = compile_rule_files([result.node], stop_after="check")
    assert state.program.rules == []
    assert [name for name, _ in PASSES] == ["resolve", "check", "lower"]
    with pytest.raises(ValueError, match="unknown pass"):
        compile_rule_files([result.node], stop_after="nope")


@pytest.mark.parametrize(
    ("op", "a", "b", "expected"),
    [
        ("/", 1.0, 0.0, math.inf), ("/", -1.0, 0.0, -math.inf), ("/", 0.0, 0.0, math.nan),
        ("%", 1.0, 0.0, math.nan), ("%", -7.0, 3.0, -1.0), ("^", 2.0, 10.0, 1024.0),
        ("^", 10.0, 1000.0, math.inf), ("atan2", 1.0, 1.0, math.atan2(1, 1)),
    ],
)
def test_scalar_arithmetic_is_ieee(op: str, a: float, b: float, expected: float) -> None:
    value = scalar_arithmetic(op, a, b)
    assert value is not None
    assert value == expected or (math.isnan(value) and math.isnan(expected))


def test_dsl_kinds() -> None:
    result = parse_rule_file(SourceFile("t.rules", RULES))
    assert result.node.kind is ast.FileKind.DSL
