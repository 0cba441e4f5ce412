"""Running test files: the evaluation loop, write-back, staleness, checks, reports."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET
from io import StringIO
from pathlib import Path

import pytest

from monitoring.cli import main
from monitoring.ruletest.report import junit_xml, write_text
from monitoring.ruletest.runner import FileResult, run_file

RECORDING = """
groups:
  - name: first
    rules:
      - record: r:doubled
        expr: x * 2
      - record: r:plus_one
        expr: r:doubled + 1
  - name: second
    rules:
      - record: r:copy
        expr: r:doubled
        labels:
          copied: "yes"
"""


def write(tmp_path: Path, test: str, rules: str = RECORDING, rules_name: str = "rules.yml",
          name: str = "t.yml") -> Path:
    (tmp_path / rules_name).write_text(textwrap.dedent(rules))
    path = tmp_path / name
    path.write_text(textwrap.dedent(test))
    return path


def run(tmp_path: Path, test: str, rules: str = RECORDING, **kw: str) -> FileResult:
    return run_file(write(tmp_path, test, rules, **kw))


def failures(result: FileResult) -> list[str]:
    return result.errors + [f for g in result.groups for f in g.failures]


def test_recording_rules_are_written_back_step_by_step(tmp_path: Path) -> None:
    result = run(tmp_path, """
        rule_files: [rules.yml]
        group_eval_order: [first, second]
        tests:
          - interval: 1m
            input_series:
              - series: 'x{a="1"}'
                values: '1+1x5'
            promql_expr_test:
              - expr: r:plus_one
                eval_time: 2m
                exp_samples:
                  - labels: 'r:plus_one{a="1"}'
                    value: 7
              - expr: r:copy
                eval_time: 3m
                exp_samples:
                  - labels: 'r:copy{a="1", copied="yes"}'
                    value: 8
              - expr: timestamp(r:doubled)
                eval_time: 3m30s
                exp_samples:
                  - labels: '{a="1"}'
                    value: 180
              - expr: count_over_time(r:doubled[10m])
                eval_time: 3m30s
                exp_samples:
                  - labels: '{a="1"}'
                    value: 4
    """)
    assert failures(result) == []
    assert [g.status for g in result.groups] == ["passed"]


def test_group_eval_order_decides_what_a_later_group_sees(tmp_path: Path) -> None:
    test = """
        rule_files: [rules.yml]
        group_eval_order: [{order}]
        tests:
          - interval: 1m
            input_series:
              - series: x
                values: '1 2 3'
            promql_expr_test:
              - expr: r:copy
                eval_time: 2m
                exp_samples:
                  - labels: 'r:copy{{copied="yes"}}'
                    value: 6
    """
    assert failures(run(tmp_path, test.format(order="first, second"))) == []
    # `second` first: at 2m it still reads r:doubled of 1m (4).
    late = failures(run(tmp_path, test.format(order="second, first")))
    assert len(late) == 1 and 'got: {__name__="r:copy", copied="yes"} 4E+00' in late[0]


def test_rule_output_goes_stale_when_its_input_does(tmp_path: Path) -> None:
    result = run(tmp_path, """
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series:
              - series: x
                values: '1 1 stale'
            promql_expr_test:
              - expr: r:doubled
                eval_time: 1m59s
                exp_samples:
                  - labels: r:doubled
                    value: 2
              - expr: r:doubled
                eval_time: 2m
                exp_samples: []
              - expr: r:doubled
                eval_time: 2m30s
                exp_samples: []
    """)
    assert failures(result) == []


def test_interval_differs_from_evaluation_interval(tmp_path: Path) -> None:
    result = run(tmp_path, """
        rule_files: [rules.yml]
        evaluation_interval: 1m
        tests:
          - interval: 10s
            input_series:
              - series: x
                values: '0+1x12'
            promql_expr_test:
              - expr: r:doubled
                eval_time: 1m50s
                exp_samples:
                  - labels: r:doubled
                    value: 12
              - expr: x
                eval_time: 1m50s
                exp_samples:
                  - labels: x
                    value: 11
    """)
    assert failures(result) == []


def test_start_timestamp_shifts_everything(tmp_path: Path) -> None:
    result = run(tmp_path, """
        tests:
          - start_timestamp: "2024-01-01T00:00:00Z"
            input_series:
              - series: x
                values: '5 6'
            promql_expr_test:
              - expr: x
                eval_time: 1m
                exp_samples:
                  - labels: x
                    value: 6
              - expr: timestamp(x)
                eval_time: 1m
                exp_samples:
                  - value: 1704067260
    """)
    assert failures(result) == []


def test_fuzzy_compare_allows_one_ulp_only(tmp_path: Path) -> None:
    test = """
        fuzzy_compare: {fuzzy}
        tests:
          - input_series:
              - series: x
                values: '0.30000000000000004'
            promql_expr_test:
              - expr: x
                eval_time: 0
                exp_samples:
                  - labels: x
                    value: {value}
    """
    assert failures(run(tmp_path, test.format(fuzzy="true", value="0.3"))) == []
    assert failures(run(tmp_path, test.format(fuzzy="false", value="0.3"))) != []
    assert failures(run(tmp_path, test.format(fuzzy="true", value="0.29999999999999993"))) != []


def test_scalar_and_empty_results(tmp_path: Path) -> None:
    result = run(tmp_path, """
        tests:
          - promql_expr_test:
              - expr: 1 + 1
                eval_time: 0
                exp_samples:
                  - value: 2
              - expr: nothing_here
                eval_time: 0
                exp_samples: []
              - expr: vector(3)
                eval_time: 0
                exp_samples:
                  - value: 3
    """)
    assert failures(result) == []


def test_expression_errors_are_failures(tmp_path: Path) -> None:
    result = run(tmp_path, """
        tests:
          - promql_expr_test:
              - expr: 'sum(('
                eval_time: 0
              - expr: x[5m]
                eval_time: 0
    """)
    found = failures(result)
    assert len(found) == 2
    assert found[0].startswith('    expr: "sum((", time: 0s, err: ')
    assert found[1] == '    expr: "x[5m]", time: 0s, err: rule result is not a vector or scalar'


def test_evaluation_error_stops_the_group(tmp_path: Path) -> None:
    rules = """
        groups:
          - name: g
            rules:
              - record: joined
                expr: a + on(k) b
    """
    result = run(tmp_path, """
        rule_files: [rules.yml]
        tests:
          - name: errors
            input_series:
              - series: 'a{k="1"}'
                values: '1 1'
              - series: 'b{k="1", n="1"}'
                values: '_ 1'
              - series: 'b{k="1", n="2"}'
                values: '_ 1'
            promql_expr_test:
              - expr: a
                eval_time: 2m
                exp_samples: []
    """, rules)
    found = failures(result)
    assert len(found) == 1  # the failing expression test never ran
    assert found[0].startswith("    rule: joined, time: 1m0s, err: found duplicate series")


def test_limit_is_enforced(tmp_path: Path) -> None:
    rules = """
        groups:
          - name: g
            limit: 1
            rules:
              - record: copy
                expr: x
    """
    result = run(tmp_path, """
        rule_files: [rules.yml]
        tests:
          - input_series:
              - series: 'x{i="1"}'
                values: '1'
              - series: 'x{i="2"}'
                values: '1'
    """, rules)
    assert failures(result) == ["    rule: copy, time: 0s, err: exceeded limit of 1 with 2 series"]


def test_function_no_evaluator_runs_is_a_clear_per_group_error(tmp_path: Path) -> None:
    dsl = """
        group g {
          record r:info = info(x)
        }
    """
    result = run(tmp_path, """
        rule_files: [g.rules]
        tests:
          - name: uses info
            input_series:
              - series: x
                values: '1 2 3'
          - name: no rules needed
            promql_expr_test:
              - expr: vector(1)
                eval_time: 0
                exp_samples:
                  - value: 1
    """, dsl, rules_name="g.rules")
    first, second = result.groups
    assert first.failures == ["    rule: r:info, time: 0s, err: function info() is not "
                              "supported"]
    assert second.status == "failed"  # every group evaluates every rule, as promtool does


def test_run_selects_groups_by_name(tmp_path: Path) -> None:
    path = write(tmp_path, """
        tests:
          - name: alpha one
            promql_expr_test:
              - expr: vector(1)
                eval_time: 0
                exp_samples: [{value: 2}]
          - name: beta
            promql_expr_test:
              - expr: vector(1)
                eval_time: 0
                exp_samples: [{value: 1}]
    """)
    assert [g.name for g in run_file(path, re.compile("beta")).groups] == ["beta"]
    assert main(["test", str(path), "--run", "beta"]) == 0
    assert main(["test", str(path), "--run", "alpha"]) == 1
    assert main(["test", str(path), "--run", "nomatch|beta"]) == 0


def test_rule_file_problems(tmp_path: Path) -> None:
    missing = run(tmp_path, "rule_files: [nothing*.yml]\ntests: []\n")
    assert missing.warnings and "no file match pattern" in missing.warnings[0]
    assert not missing.failed
    bad = run(tmp_path, "rule_files: [rules.yml]\ntests: []\n",
              "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum((\n")
    assert bad.failed and bad.errors[0].startswith(f"{tmp_path}/rules.yml:5:")
    order = run(tmp_path, "rule_files: [rules.yml]\ngroup_eval_order: [nope]\ntests: []\n")
    assert order.errors == ["group name nope in group_eval_order not found in any of the "
                            "rule files"]


def test_rule_files_may_be_globs_relative_to_the_test_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.yml").write_text("groups:\n  - name: a\n    rules:\n      - record: ra\n"
                               "        expr: vector(1)\n")
    (sub / "b.yml").write_text("groups:\n  - name: b\n    rules:\n      - record: rb\n"
                               "        expr: vector(2)\n")
    test = tmp_path / "t.yml"
    test.write_text("rule_files: ['sub/*.yml']\ntests:\n  - promql_expr_test:\n"
                    "      - expr: ra + on() rb\n        eval_time: 0\n"
                    "        exp_samples: [{labels: '{}', value: 3}]\n")
    assert failures(run_file(test)) == []


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "tests:\n  - promql_expr_test:\n      - expr: vector(1)\n"
                           "        eval_time: 0\n        exp_samples: [{value: 1}]\n",
                 name="good.yml")
    assert main(["test", str(good)]) == 0
    assert main(["test", str(tmp_path / "missing.yml")]) == 2
    assert main(["test", str(good), "--run", "("]) == 2
    bad = tmp_path / "bad.yml"
    bad.write_text("tests:\n  - nmae: x\n")
    assert main(["test", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:5: error[ruletest/invalid]: field nmae not found in a test group" in err


def test_junit_xml_counts(tmp_path: Path) -> None:
    path = write(tmp_path, """
        tests:
          - name: ok
            promql_expr_test:
              - expr: vector(1)
                eval_time: 0
                exp_samples: [{value: 1}]
          - name: 'bad <&> "quoted"'
            promql_expr_test:
              - expr: vector(1)
                eval_time: 0
                exp_samples: [{value: 2}]
              - expr: vector(5)
                eval_time: 0
                exp_samples: [{value: 2}]
    """)
    broken = tmp_path / "broken.yml"
    broken.write_text("tests: [\n")
    out = tmp_path / "junit.xml"
    assert main(["test", str(path), str(broken), "--junit", str(out)]) == 1
    root = ET.parse(out).getroot()
    assert root.tag == "testsuites"
    first, second = root.findall("testsuite")
    assert (first.get("tests"), first.get("failures"), first.get("errors")) == ("2", "1", "0")
    cases = first.findall("testcase")
    assert [c.get("name") for c in cases] == ["ok", 'bad <&> "quoted"']
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.text.count('expr: "vector') == 2
    assert (second.get("tests"), second.get("errors")) == ("1", "1")
    assert second.find("testcase/error") is not None


def test_text_report_summary() -> None:
    result = FileResult("x.yml", errors=["x.yml:1:1: broken"])
    out, err = StringIO(), StringIO()
    write_text([result], out, err)
    assert out.getvalue().startswith("Unit Testing:  x.yml\n")
    assert "1 file could not run" in out.getvalue()
    assert "  FAILED:\nx.yml:1:1: broken" in err.getvalue()
    assert "<testsuites>" in junit_xml([result])


HISTOGRAMS = """
    tests:
      - interval: 1m
        input_series:
          - series: 'h{job="a"}'
            values: '{{schema:0 count:4 sum:10 buckets:[1 3]}}+{{count:2 sum:4 buckets:[1 1]}}x2'
          - series: 'h{job="b"}'
            values: '{{count:1 sum:1 buckets:[1]}} stale'
          - series: 'h{job="c"}'
            values: '3'
        promql_expr_test:
          - expr: h
            eval_time: 2m
            exp_samples:
              - labels: 'h{job="a"}'
                histogram: '{{count:8 sum:18 buckets:[3 5] counter_reset_hint:not_reset}}'
              - labels: 'h{job="c"}'
                value: 3
          - expr: h{job="b"}
            eval_time: 30s
            exp_samples:
              - labels: 'h{job="b"}'
                histogram: '{{count:1 sum:1 buckets:[1]}}'
          - expr: h{job="b"}
            eval_time: 1m
            exp_samples: []
          - expr: h{job="a"} offset 2m
            eval_time: 2m
            exp_samples:
              - labels: 'h{job="a"}'
                histogram: '{{count:4 sum:10 buckets:[1 3]}}'
    """


def test_native_histograms_through_plain_selectors(tmp_path: Path) -> None:
    result = run(tmp_path, HISTOGRAMS)
    assert failures(result) == []
    assert [g.status for g in result.groups] == ["passed"]


def test_a_wrong_histogram_fails_with_both_shown(tmp_path: Path) -> None:
    result = run(tmp_path, HISTOGRAMS.replace("count:8 sum:18", "count:9 sum:18"))
    (message,) = failures(result)
    assert "exp: {__name__=\"h\", job=\"a\"} {{count:9 sum:18 offset:0 buckets:[3 5] " \
           "counter_reset_hint:not_reset}}" in message
    assert "got: {__name__=\"h\", job=\"a\"} {{count:8 sum:18" in message


def test_other_histogram_expressions_are_unsupported(tmp_path: Path) -> None:
    result = run(tmp_path, HISTOGRAMS + """
          - expr: sum(h)
            eval_time: 2m
            exp_samples: []
    """)
    (group,) = result.groups
    assert group.status == "unsupported" and not result.failed and result.unsupported
    assert group.unsupported == ['    expr: "sum(h)", time: 2m: unsupported: native histograms: '
                                 'the expression reads histogram series {__name__="h", '
                                 'job="a"} and is not a plain selector']
    path = tmp_path / "t.yml"
    assert main(["test", str(path)]) == 0
    assert main(["test", str(path), "--fail-unsupported"]) == 1


def test_rules_reading_histograms_make_the_group_unsupported(tmp_path: Path) -> None:
    rules = "groups:\n  - name: g\n    rules:\n      - record: r\n        expr: sum(h)\n"
    result = run(tmp_path, "rule_files: [rules.yml]\n" + textwrap.dedent(HISTOGRAMS), rules)
    (group,) = result.groups
    assert group.status == "unsupported"
    assert "rule r reads histogram series" in group.unsupported[0]


ALERT_RULES = """
groups:
  - name: one
    rules:
      - alert: Same
        expr: x > 1
        for: 1m
        labels: {from: one}
  - name: two
    rules:
      - alert: Same
        expr: x > 2
        labels: {from: two}
"""


def test_alerts_of_one_name_are_pooled_and_checked_between_steps(tmp_path: Path) -> None:
    result = run(tmp_path, """
        rule_files: [rules.yml]
        tests:
          - interval: 1m
            input_series:
              - series: x
                values: '0 3 3 3'
            alert_rule_test:
              # 1m30s: the last evaluation at or before it is 1m; `one` is pending then.
              - eval_time: 1m30s
                alertname: Same
                exp_alerts:
                  - exp_labels: {from: two}
              - eval_time: 2m59s
                alertname: Same
                exp_alerts:
                  - exp_labels: {from: one}
                  - exp_labels: {from: two}
              - eval_time: 0s
                alertname: Same
            promql_expr_test:
              # pending at 1m, firing at 2m: the pending series is stale from 2m.
              - expr: ALERTS{from="one"}
                eval_time: 2m
                exp_samples:
                  - labels: 'ALERTS{alertname="Same", alertstate="firing", from="one"}'
                    value: 1
              - expr: ALERTS_FOR_STATE
                eval_time: 3m
                exp_samples:
                  - labels: 'ALERTS_FOR_STATE{alertname="Same", from="one"}'
                    value: 60
                  - labels: 'ALERTS_FOR_STATE{alertname="Same", from="two"}'
                    value: 60
    """, ALERT_RULES)
    assert failures(result) == []


def test_empty_expected_alert_means_exactly_one_bare_alert(tmp_path: Path) -> None:
    rules = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: vector(1)\n"
    test = """
        rule_files: [rules.yml]
        tests:
          - alert_rule_test:
              - eval_time: 0
                alertname: A
                exp_alerts: {exp}
    """
    assert failures(run(tmp_path, test.format(exp="[{}]"), rules)) == []
    (missing,) = failures(run(tmp_path, test.format(exp="[]"), rules))
    assert '+ unexpected: {alertname="A"} annotations {}' in missing
    (extra,) = failures(run(tmp_path, test.format(exp="[{}, {}]"), rules))
    assert '- missing:    {alertname="A"} annotations {}' in extra
