"""The `.test` script runner: its parser, its checks, and its verdicts.

The runner is tested against a tiny stand-in evaluator defined here (constants,
strings, instant and range selectors, ``sort`` with its range-query warning),
so its behaviour does not depend on the real evaluators; variants of the
stand-in with a planted bug show that every check can fail.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_query
from monitoring.engine import promqltest
from monitoring.engine.model import (
    STALE_NAN,
    EvalError,
    QueryResult,
    Series,
    SeriesSource,
    is_stale,
)
from monitoring.engine.promqltest import (
    ClearCmd,
    EvalCmd,
    LoadCmd,
    NativeHistogram,
    Outcome,
    TestFormatError,
    almost_equal,
    evaluator_by_name,
    parse_test,
    parse_values,
    pin_at,
    run_file,
    run_script,
)
from monitoring.engine.query import QueryOptions, warning

ROOT = Path(__file__).resolve().parents[2]

# ------------------------------------------------------------------ a stand-in evaluator


class StandIn:
    """Plain selectors, constants and ``sort``; flags plant the bugs the checks must catch."""

    def __init__(self, *, ignore_at: bool = False, range_offset: float = 0.0,
                 crash: bool = False) -> None:
        self.ignore_at = ignore_at
        self.range_offset = range_offset
        self.crash = crash

    def __call__(self, node: ir.Node, source: SeriesSource, start_ms: int, end_ms: int,
                 step_ms: int, options: QueryOptions | None = None, *,
                 instant: bool = False) -> QueryResult:
        opts = options or QueryOptions()
        if self.crash:
            raise ZeroDivisionError("planted")
        steps = np.arange(start_ms, end_ms + 1, max(step_ms, 1), dtype=np.int64)
        warnings: list[str] = []
        if isinstance(node, ir.Call) and node.func == "sort":
            if not instant:
                warnings.append(warning("sort is ineffective for range queries since results "
                                        "are always ordered by labels", node, opts))
            inner = self(node.args[0], source, start_ms, end_ms, step_ms, opts, instant=instant)
            if instant:
                inner.series.sort(key=lambda s: float(s.values[0]))
            inner.warnings += warnings
            return inner
        if isinstance(node, ir.StringConst):
            return QueryResult("string", steps, string=node.value)
        if isinstance(node, ir.Const):
            value = node.value + (0 if instant else self.range_offset)
            series = [Series((), steps, np.full(len(steps), value))]
            return QueryResult("scalar" if instant else "matrix", steps, series)
        if isinstance(node, ir.RangeSelector) and instant:
            t = self._time(node.selector, start_ms)
            out = []
            for s in source.select(_matchers(node.selector), t - node.range_ms + 1, t):
                keep = ~_stale(s.values)  # range vectors leave staleness markers out
                out.append(Series(s.labels, s.ts[keep], s.values[keep]))
            return QueryResult("matrix", steps, sorted(out, key=lambda s: s.labels))
        if isinstance(node, ir.Selector):
            return self._instant_selector(node, source, steps, opts, instant)
        raise EvalError(f"stand-in cannot evaluate {type(node).__name__}")

    def _time(self, sel: ir.Selector, t: int) -> int:
        if sel.at is not None and sel.at.kind == "timestamp" and not self.ignore_at:
            t = sel.at.ms
        return t - sel.offset_ms

    def _instant_selector(self, sel: ir.Selector, source: SeriesSource, steps: np.ndarray,
                          opts: QueryOptions, instant: bool) -> QueryResult:
        rows: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
        for t in steps:
            te = self._time(sel, int(t))
            for s in source.select(_matchers(sel), te - opts.lookback_ms + 1, te):
                if len(s.values) and not is_stale(float(s.values[-1])):
                    value = float(s.values[-1]) + (0 if instant else self.range_offset)
                    rows.setdefault(s.labels, []).append((int(t), value))
        series = [Series.of(labels, pts) for labels, pts in sorted(rows.items())]
        return QueryResult("vector" if instant else "matrix", steps, series)


def _stale(values: np.ndarray) -> np.ndarray:
    return np.array([is_stale(float(v)) for v in values], dtype=bool)


def _matchers(sel: ir.Selector) -> list[tuple[str, str, str]]:
    ms = list(sel.matchers)
    if sel.metric is not None:
        ms.append(("__name__", "=", sel.metric))
    return ms


def run(text: str, evaluator: StandIn | None = None) -> list[tuple[Outcome, str]]:
    report = run_script(parse_test(text, "t.test"), evaluator or StandIn())
    return [(b.outcome, b.reason) for b in report.blocks]


# ------------------------------------------------------------------ values and series


def test_value_sequences_expand_as_prometheus() -> None:
    assert parse_values("0+10x3") == [0, 10, 20, 30]
    assert parse_values("1-2x2") == [1, -1, -3]
    assert parse_values("5x2 _ _x2") == [5, 5, 5, None, None, None]
    assert parse_values("0x3") == [0, 0, 0, 0]  # in a sequence, x always repeats
    assert parse_values("-2.5 .5 1e3 +Inf -inf") == [-2.5, 0.5, 1000, math.inf, -math.inf]
    nan, stale = parse_values("NaN stale")
    assert isinstance(nan, float) and math.isnan(nan) and not is_stale(nan)
    assert isinstance(stale, float) and is_stale(stale)
    # Incremental addition, as Prometheus's parser does it (0.1 steps accumulate error).
    assert parse_values("0+0.1x3")[3] == 0.1 + 0.1 + 0.1


def test_native_histograms_are_recognised_and_counted() -> None:
    values = parse_values("1 {{schema:0 sum:5 count:4 buckets:[1 2 1]}}x2 {{sum:1}}+{{sum:2}}x1 3")
    assert [type(v).__name__ for v in values] == (
        ["float"] + ["NativeHistogram"] * 5 + ["float"])


def test_load_block_series_forms() -> None:
    script = parse_test(
        'load 1m\n'
        '  {__name__="foo", a="b"} 1\n'
        "  bar{x='y', q=\"\\\"quoted\\\"\",} 1 2\n"
        "  baz 3\n"
        '  {a="only"} 4\n')
    load = script.commands[0]
    assert isinstance(load, LoadCmd) and load.interval_ms == 60_000
    assert [s.labels for s in load.series] == [
        (("__name__", "foo"), ("a", "b")),
        (("__name__", "bar"), ("q", '"quoted"'), ("x", "y")),
        (("__name__", "baz"),),
        (("a", "only"),),
    ]
    assert load.series[1].values == [1, 2] and load.series[1].line == 3


# ------------------------------------------------------------------ commands


def test_eval_forms_and_expectations() -> None:
    script = parse_test("""
load 10s53ms
  m 1

eval instant at 1m30s m
  expect warn msg: PromQL warning: something (1:1)
  expect info regex: odd.*
  m 1

clear

eval range from 0 to 2m step 1m m
  expect no_info
  m 1 _ 3

eval_fail instant at 0 m
  expected_fail_message boom

eval_fail range from 0 to 1m step 30s m
  expected_fail_regexp bo+m

eval_ordered instant at 5m sort(m)
  m 1

eval_warn instant at 0 m

eval_info instant at 0 m

eval instant at 0 m
  expect fail regex: x+
  expect ordered

eval instant at 0 "a"
  expect string "a"

eval instant at 1m m[1m]
  expect range vector from 0s to 1m step 30s
  m 1 2 3

eval instant at 0 1 + 1
  2
""")
    kinds = [type(c) for c in script.commands]
    assert kinds == [LoadCmd, EvalCmd, ClearCmd] + [EvalCmd] * 10
    evals = script.evals
    first = evals[0]
    assert (first.line, first.eval_ms, first.is_range) == (5, 90_000, False)
    assert first.expects["warn"][0].message == "PromQL warning: something (1:1)"
    assert first.expects["info"][0].pattern == "odd.*"
    assert first.expected[(("__name__", "m"),)].values == [1]
    rng = evals[1]
    assert (rng.start_ms, rng.end_ms, rng.step_ms, rng.is_range) == (0, 120_000, 60_000, True)
    assert rng.expected[(("__name__", "m"),)].values == [1, None, 3]
    assert evals[2].is_fail() and evals[2].fail_message == "boom"
    assert evals[3].is_fail() and evals[3].fail_regexp == "bo+m" and evals[3].is_range
    assert evals[4].is_ordered() and evals[5].warn and evals[6].info
    assert evals[7].is_fail() and evals[7].is_ordered()
    assert evals[8].expected_string == "a" and evals[8].exclude_from_range
    rv = evals[9]
    assert rv.range_vector and (rv.start_ms, rv.end_ms, rv.step_ms, rv.eval_ms) == (
        0, 60_000, 30_000, 60_000)
    assert evals[10].expect_scalar and evals[10].scalar == 2


def test_expect_lines_that_look_like_series_are_series() -> None:
    # Only the first word `expect` makes an expect line; `expect{}` is a metric.
    script = parse_test("eval instant at 0 x\n  expect{a=\"b\"} 1\n")
    assert list(script.evals[0].expected) == [(("__name__", "expect"), ("a", "b"))]


def test_a_comment_line_ends_the_block() -> None:
    script = parse_test("eval instant at 0 x\n#empty\n  clear\n")
    assert isinstance(script.commands[1], ClearCmd)
    assert script.evals[0].expected == {}


def test_scalar_line_ends_the_expectations() -> None:
    # As upstream: after a scalar line the block is over, and the next line is a command.
    with pytest.raises(TestFormatError, match=r"t.test:3: invalid command"):
        parse_test("eval instant at 0 1\n  1\n  {} 2\n", "t.test")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("load 5m\n  m 1\n\nbogus\n", 4, "invalid command 'bogus'"),
    ("load 5m\n  m 1\n  n\n", 3, "expected values after the series"),
    ("eval instant at 0 m\n  {}\n", 2, "expected values after the series"),
    ("load five\n", 1, "invalid step definition"),
    ("load 1m\n  m{a=b} 1\n", 2, "expected a quoted value"),
    ("load 1m\n  m{a=\"b\" 1\n", 2, "expected ',' or '}'"),
    ("load 1m\n  m 1 two\n", 2, "invalid value 'two'"),
    ("load 1m\n  m 1 {{schema:0\n", 2, "unterminated native histogram"),
    ("load 1m\n  m@st 1m\n  m 1\n", 2, "@st"),
    ("\neval instant  x\n", 2, "invalid timestamp definition"),
    ("eval instant at 1x m\n", 1, "invalid timestamp definition"),
    ("eval sometimes m\n", 1, "invalid evaluation command"),
    ("eval range from 2m to 1m step 1m m\n", 1, "before start"),
    ("eval range from 0 to 1m step 0 m\n", 1, "must be positive"),
    ("eval instant at 0 m\n  expect sometimes\n", 2, "invalid expect statement"),
    ("eval instant at 0 m\n  expect info\n  expect no_info\n", 3, "info and no_info"),
    ("eval instant at 0 m\n  expect warn\n  expect no_warn\n", 3, "warn and no_warn"),
    ("eval instant at 0 m\n  expect fail\n  expect fail\n", 3, "only one 'expect fail'"),
    ("eval instant at 0 m\n  expect warn regex: (\n", 2, "invalid regex"),
    ("eval_fail instant at 0 m\n  expected_fail_regexp [\n", 2, "invalid regex"),
    ("eval instant at 0 m\n  m 1 2\n", 2, "multiple values in instant evaluation"),
    ("eval instant at 0 m\n  expect string foo\n", 2, "quoted string literal is required"),
    ("eval instant at 0 m\n  expect string\n", 2, "quoted string literal is required"),
    ("eval instant at 0 m\n  expect range vector from 0 to 1m\n", 2,
     "invalid range vector definition"),
    ("eval instant at 0 m\n  {a=\"\\q\"} 1\n", 2, "unknown escape"),
])
def test_malformed_scripts_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(TestFormatError) as err:
        parse_test(text, "bad.test")
    assert str(err.value).startswith(f"bad.test:{line}: ")
    assert message in str(err.value)


# ------------------------------------------------------------------ comparisons


def test_almost_equal_follows_prometheus() -> None:
    assert almost_equal(1.0, 1.0 + 1e-7)
    assert not almost_equal(1.0, 1.0 + 1e-5)
    assert almost_equal(math.nan, math.nan)
    assert not almost_equal(STALE_NAN, math.nan)
    assert not almost_equal(math.nan, STALE_NAN)
    assert almost_equal(STALE_NAN, STALE_NAN)
    assert almost_equal(math.inf, math.inf)
    assert not almost_equal(math.inf, -math.inf)
    assert not almost_equal(math.inf, 1e308)
    assert not almost_equal(0.0, 1e-300)
    assert almost_equal(0.0, -0.0)


# ------------------------------------------------------------------ running


LOAD = """
load 1m
  m{a="1"} 1 2 3 4 5
  m{a="2"} 10 _ 30 stale 50
"""


def test_passing_blocks() -> None:
    outcomes = run(LOAD + """
eval instant at 2m m
  m{a="1"} 3
  m{a="2"} 30

eval instant at 3m m
  m{a="1"} 4

eval instant at 0 "hello"
  expect string "hello"

eval instant at 0 7
  7

eval range from 0 to 4m step 1m m
  m{a="1"} 1+1x4
  m{a="2"} 10 10 30 _ 50

eval instant at 4m m[2m]
  expect range vector from 3m to 4m step 1m
  m{a="1"} 4 5
  m{a="2"} _ 50

eval instant at 10h m
""")
    assert outcomes == [(Outcome.PASSED, "")] * 7


@pytest.mark.parametrize(("block", "reason"), [
    ("eval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 31\n",
     "expected 31 for m{a=\"2\"}, got 30"),
    ("eval instant at 2m m\n  m{a=\"1\"} 3\n", "unexpected series m{a=\"2\"} 30"),
    ("eval instant at 3m m\n  m{a=\"1\"} 4\n  m{a=\"2\"} 40\n",
     "expected series m{a=\"2\"} 40 not found"),
    ("eval instant at 0 7\n  8\n", "expected scalar 8, got 7"),
    ("eval instant at 0 7\n  {} 7\n", "got scalar 7"),
    ("eval instant at 0 m\n  7\n", "expected scalar 7, got vector"),
    ("eval instant at 0 \"a\"\n  expect string \"b\"\n", "expected string 'b', got 'a'"),
    ("eval range from 0 to 4m step 1m m\n  m{a=\"1\"} 1+1x4\n  m{a=\"2\"} 10 _ 30 _ 50\n",
     "expected 3 points for m{a=\"2\"}"),
    ("eval range from 0 to 2m step 1m m\n  m{a=\"1\"} 1 2 3 4\n  m{a=\"2\"} 10 10 30\n",
     "query range cannot hold that many"),
    ("eval instant at 0 m\n  expect fail\n", "expected an error, got none"),
    ("eval instant at 0 -m\n  {a=\"1\"} -1\n", "error: stand-in cannot evaluate Neg"),
])
def test_failing_blocks_say_why(block: str, reason: str) -> None:
    [(outcome, why)] = run(LOAD + "\n" + block)
    assert outcome is Outcome.FAILED
    assert reason in why


def test_expected_failures() -> None:
    outcomes = run(LOAD + """
eval instant at 0 -m
  expect fail

eval instant at 0 -m
  expect fail msg: stand-in cannot evaluate Neg

eval instant at 0 -m
  expect fail regex: cannot \\w+

eval_fail instant at 0 -m
  expected_fail_message stand-in cannot evaluate Neg

eval_fail range from 0 to 1m step 1m -m
  expected_fail_regexp evaluate (Neg|Call)

eval instant at 0 -m
  expect fail msg: something else

eval_fail instant at 0 -m
  expected_fail_regexp ^nope
""")
    assert [o for o, _ in outcomes] == [Outcome.PASSED] * 5 + [Outcome.FAILED] * 2
    assert "expected an error matching message 'something else'" in outcomes[5][1]
    assert "expected an error matching '^nope'" in outcomes[6][1]


def test_ordered_results() -> None:
    outcomes = run(LOAD + """
eval instant at 2m sort(m)
  expect ordered
  m{a="1"} 3
  m{a="2"} 30

eval instant at 2m sort(m)
  expect ordered
  m{a="2"} 30
  m{a="1"} 3

eval_ordered instant at 2m sort(m)
  m{a="2"} 30
  m{a="1"} 3
""")
    assert outcomes[0] == (Outcome.PASSED, "")
    assert outcomes[1][0] is Outcome.FAILED and "at position 2, got it at 1" in outcomes[1][1]
    assert outcomes[2][0] is Outcome.FAILED


def test_annotations_with_positions() -> None:
    sort_warning = ("PromQL warning: sort is ineffective for range queries since results are "
                    "always ordered by labels")
    outcomes = run(LOAD + f"""
eval range from 0 to 1m step 1m sort(m)
  expect warn msg: {sort_warning} (1:1)
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval range from 0 to 1m step 1m sort(m)
  expect warn msg: {sort_warning} (1:2)
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval range from 0 to 1m step 1m sort(m)
  expect warn regex: ineffective.*\\(1:1\\)
  expect no_info
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval range from 0 to 1m step 1m sort(m)
  expect no_warn
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval range from 0 to 1m step 1m sort(m)
  expect warn regex: sort
  expect warn
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval_warn instant at 0 m
  m{{a="1"}} 1
  m{{a="2"}} 10

eval range from 0 to 1m step 1m sort(m)
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10

eval range from 0 to 1m step 1m sort(m)
  expect info
  m{{a="1"}} 1 2
  m{{a="2"}} 10 10
""")
    verdicts = [o for o, _ in outcomes]
    assert verdicts == [Outcome.PASSED, Outcome.FAILED, Outcome.PASSED, Outcome.FAILED,
                        Outcome.PASSED, Outcome.FAILED, Outcome.PASSED, Outcome.FAILED]
    assert "expected a warn annotation matching message" in outcomes[1][1]
    assert "unexpected warnings" in outcomes[3][1]
    assert "expected warnings, got none" in outcomes[5][1]
    assert "expected info annotations, got none" in outcomes[7][1]


def test_unmatched_annotation_fails_once_any_expectation_is_given() -> None:
    [(outcome, why)] = run(LOAD + """
eval range from 0 to 1m step 1m sort(m)
  expect warn msg: PromQL warning: other (1:1)
  m{a="1"} 1 2
  m{a="2"} 10 10
""")
    assert outcome is Outcome.FAILED and "expected a warn annotation" in why


def test_step_invariance_check_catches_an_ignored_at() -> None:
    block = LOAD + "\neval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30\n"
    assert run(block) == [(Outcome.PASSED, "")]
    [(outcome, why)] = run(block, StandIn(ignore_at=True))
    assert outcome is Outcome.FAILED
    assert why.startswith("step invariance (@ 120s evaluated at -1200s)")


def test_step_invariance_is_skipped_for_time_dependent_functions() -> None:
    # The stand-in cannot evaluate time(); the block fails on the original query only.
    [(outcome, why)] = run("eval instant at 1m time()\n  60\n")
    assert outcome is Outcome.FAILED and why.startswith("error:")
    node, _, positions = compile_query("timestamp(m)")
    assert node is not None and pin_at(node, 5, dict(positions))[1]


def test_range_mode_check() -> None:
    block = LOAD + "\neval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30\n"
    [(outcome, why)] = run(block, StandIn(range_offset=1.0))
    assert outcome is Outcome.FAILED
    assert why.startswith("range mode (60s to 180s step 1m): expected 3 for m{a=\"1\"}, got 4")
    # Ordered queries and string / range vector expectations skip the range mode.
    assert run(LOAD + "\neval instant at 2m sort(m)\n  expect ordered\n  m{a=\"1\"} 3\n"
               "  m{a=\"2\"} 30\n", StandIn(range_offset=1.0)) == [(Outcome.PASSED, "")]
    assert run("eval instant at 0 \"s\"\n  expect string \"s\"\n",
               StandIn(range_offset=1.0)) == [(Outcome.PASSED, "")]


def test_pin_at_pins_selectors_and_subqueries_but_not_their_insides() -> None:
    node, _, positions = compile_query("rate(a[5m]) + b @ 10 + max_over_time(c[5m:1m]) + d @ "
                                       "start()")
    assert node is not None
    pinned, unsafe = pin_at(node, 60_000, positions)
    assert not unsafe
    ats = {n.metric: n.at for n in _walk(pinned) if isinstance(n, ir.Selector)}
    assert ats["a"] == ir.At("timestamp", 60_000)
    assert ats["b"] == ir.At("timestamp", 10_000)
    assert ats["c"] is None  # inside the pinned subquery
    assert ats["d"] == ir.At("timestamp", 60_000)
    [sub] = [n for n in _walk(pinned) if isinstance(n, ir.Subquery)]
    assert sub.at == ir.At("timestamp", 60_000)
    assert positions[pinned] == (1, 1)


def _walk(node: ir.Node) -> list[ir.Node]:
    out = [node]
    for c in node.children():
        out.extend(_walk(c))
    return out


def test_unsupported_blocks() -> None:
    outcomes = run("""
load 1m
  h {{schema:0 sum:1 count:1}} 2
  f 1 2

eval instant at 1m f
  f 2

eval instant at 1m h
  h 2

eval instant at 1m {__name__=~".+"}
  f 2
  h 2

eval instant at 1m f
  f {{schema:0 sum:1 count:1}}

eval instant at 1m sort_by_label(f, "x")
  f 2

eval instant at 1m limitk(1, f)
  f 2

eval instant at 1m f +
  f 2

clear

eval instant at 1m h
""")
    assert outcomes[0] == (Outcome.PASSED, "")
    assert outcomes[1] == (Outcome.UNSUPPORTED, "native histograms in the loaded data (h)")
    assert outcomes[2] == (Outcome.UNSUPPORTED, "native histograms in the loaded data (h)")
    assert outcomes[3] == (Outcome.UNSUPPORTED, "native histograms in the expected result")
    assert outcomes[4] == (Outcome.UNSUPPORTED, "experimental function sort_by_label")
    assert outcomes[5] == (Outcome.UNSUPPORTED, "experimental function limitk")
    assert outcomes[6][0] is Outcome.UNSUPPORTED
    assert outcomes[6][1].startswith("rejected by the compiler: ")
    assert outcomes[7] == (Outcome.PASSED, "")  # after clear the histogram is gone


def test_an_evaluator_crash_fails_readably() -> None:
    [(outcome, why)] = run("eval instant at 0 1\n  1\n", StandIn(crash=True))
    assert outcome is Outcome.FAILED
    assert why == "evaluator crashed: ZeroDivisionError: planted"


def test_load_blocks_replace_and_merge() -> None:
    outcomes = run("""
load 1m
  m 1 2
  m 5 6

load 1m
  m _ _ 7

eval range from 0 to 2m step 1m m
  m 5 6 7
""")
    assert outcomes == [(Outcome.PASSED, "")]


def test_compile_query_positions() -> None:
    node, diagnostics, positions = compile_query("sum(sort(series))\n  + rate(x[5m])")
    assert node is not None and not diagnostics
    by_text = {ir.describe(n): pos for n, pos in positions.items()}
    assert by_text["sum (sort(series))"] == (1, 1)
    assert by_text["sort(series)"] == (1, 5)
    assert by_text["series"] == (1, 10)
    assert by_text["rate(x[5m])"] == (2, 5)
    assert by_text["x[5m]"] == (2, 10)
    assert compile_query("sum(")[0] is None


# ------------------------------------------------------------------ the command


def test_conformance_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(promqltest, "evaluator_by_name", lambda name: StandIn())
    good = tmp_path / "good.test"
    good.write_text(LOAD + "\neval instant at 2m m\n  m{a=\"1\"} 3\n  m{a=\"2\"} 30\n\n"
                    "eval instant at 0 sort_by_label(m, \"a\")\n")
    bad = tmp_path / "bad.test"
    bad.write_text(LOAD + "\neval instant at 2m m\n  m{a=\"1\"} 4\n  m{a=\"2\"} 30\n")
    from monitoring.cli import main

    assert main(["conformance", str(good)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{good}: 1 passed, 0 failed, 1 unsupported"
    assert out[1] == "  unsupported: 1 x experimental function sort_by_label"
    assert out[-1] == "1 passed, 0 failed, 1 unsupported"

    assert main(["conformance", str(good), str(bad), "--verbose"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"  FAIL {bad}:6: m" in out
    assert f"  unsupported {good}:10: sort_by_label(m, \"a\")" in out
    assert out[-1] == "1 passed, 1 failed, 1 unsupported"

    malformed = tmp_path / "malformed.test"
    malformed.write_text("load 1m\n  m{a=\"b\" 1\n")
    assert main(["conformance", str(good), str(malformed), str(tmp_path / "none.test")]) == 2
    captured = capsys.readouterr()
    assert f"{malformed}:2: invalid series description" in captured.err
    assert "cannot read" in captured.err and "none.test" in captured.err
    assert captured.out.splitlines()[-1] == "1 passed, 0 failed, 1 unsupported"


def test_native_histogram_marker_text() -> None:
    [h] = parse_values("{{sum:1}}")
    assert isinstance(h, NativeHistogram) and repr(h) == "{{sum:1}}"


# ------------------------------------------------------------------ with the reference evaluator

REFERENCE_SNIPPET = """
load 1m
  requests{job="a", instance="1"} 0+10x10
  requests{job="a", instance="2"} 0+20x10
  requests{job="b", instance="1"} 5 _ 15 stale 25

eval instant at 5m sum by (job) (requests)
  {job="a"} 150
  {job="b"} 25

eval instant at 5m rate(requests{job="a"}[2m])
  {job="a", instance="1"} 0.16666666666666666
  {job="a", instance="2"} 0.3333333333333333

eval instant at 5m requests{job="a"} @ 2m offset 1m
  requests{job="a", instance="1"} 10
  requests{job="a", instance="2"} 20

eval range from 0 to 4m step 1m requests{job="b"}
  requests{job="b", instance="1"} 5 5 15 _ 25

eval instant at 5m sum(requests) / 0
  {} +Inf
"""


def test_reference_evaluator_passes_a_hand_written_script(tmp_path: Path) -> None:
    path = tmp_path / "ok.test"
    path.write_text(REFERENCE_SNIPPET)
    report = run_file(path, evaluator_by_name("reference"))
    assert [(b.line, b.outcome, b.reason) for b in report.blocks] == [
        (7, Outcome.PASSED, ""), (11, Outcome.PASSED, ""), (15, Outcome.PASSED, ""),
        (19, Outcome.PASSED, ""), (22, Outcome.PASSED, "")]


def test_reference_evaluator_wrong_expectations_fail(tmp_path: Path) -> None:
    path = tmp_path / "wrong.test"
    path.write_text(REFERENCE_SNIPPET.replace("{job=\"a\"} 150", "{job=\"a\"} 151")
                    .replace("5 5 15 _ 25", "5 5 15 15 25"))
    report = run_file(path, evaluator_by_name("reference"))
    failed = {b.line: b.reason for b in report.blocks if b.outcome is Outcome.FAILED}
    assert set(failed) == {7, 19}
    assert failed[7] == 'expected 151 for {job="a"}, got 150'
    assert failed[19].startswith('expected 5 points for requests{instance="1", job="b"}')


def test_conformance_command_end_to_end(tmp_path: Path) -> None:
    ok, wrong = tmp_path / "ok.test", tmp_path / "wrong.test"
    ok.write_text(REFERENCE_SNIPPET)
    wrong.write_text(REFERENCE_SNIPPET.replace("{job=\"a\"} 150", "{job=\"a\"} 151"))
    done = subprocess.run([sys.executable, "-m", "monitoring", "conformance", "--engine",
                           "reference", str(ok), str(wrong)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{ok}: 5 passed, 0 failed, 0 unsupported"
    assert lines[1] == f"{wrong}: 4 passed, 1 failed, 0 unsupported"
    assert lines[2] == f"  FAIL {wrong}:7: sum by (job) (requests)"
    assert lines[-1] == "9 passed, 1 failed, 0 unsupported"
