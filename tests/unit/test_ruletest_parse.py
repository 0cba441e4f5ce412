"""Reading promtool test files: durations, series notation, histograms, strict errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.dsl.source import SourceFile
from monitoring.engine.model import is_stale
from monitoring.ruletest.compare import format_e, fuzzy_equal
from monitoring.ruletest.durations import (
    format_go_duration,
    format_model_duration,
    parse_model_duration,
)
from monitoring.ruletest.histograms import (
    HistogramTable,
    expand_histograms,
    parse_histogram,
    parse_input_values,
)
from monitoring.ruletest.parse import TestFileError, parse_metric, parse_test_file


def parse(text: str, name: str = "t.yml"):  # type: ignore[no-untyped-def]
    return parse_test_file(SourceFile(name, text))


def errors(text: str) -> list[str]:
    with pytest.raises(TestFileError) as info:
        parse(text)
    return [f"{d.location()}: {d.message}" for d in info.value.diagnostics]


@pytest.mark.parametrize(("text", "ms"), [
    ("0", 0), ("1m", 60_000), ("4m59s", 299_000), ("2m59s999ms", 179_999), ("1d", 86_400_000),
    ("1h30m", 5_400_000), ("1w", 7 * 86_400_000), ("1y", 365 * 86_400_000),
])
def test_model_durations(text: str, ms: int) -> None:
    assert parse_model_duration(text) == ms
    assert parse_model_duration(format_model_duration(ms)) == ms


@pytest.mark.parametrize("text", ["", "10", "1m1h", "1.5m", "m", "5 m", "-1m"])
def test_bad_model_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a valid duration"):
        parse_model_duration(text)


@given(st.integers(min_value=0, max_value=10**12))
def test_model_duration_round_trip(ms: int) -> None:
    assert parse_model_duration(format_model_duration(ms)) == ms


def test_go_duration_format() -> None:
    assert format_go_duration(0) == "0s"
    assert format_go_duration(60_000) == "1m0s"
    assert format_go_duration(1_500) == "1.5s"
    assert format_go_duration(3_600_000) == "1h0m0s"
    assert format_go_duration(1_704_067_200_000) == "473352h0m0s"


@pytest.mark.parametrize(("value", "text"), [
    (1.0, "1E+00"), (0.0, "0E+00"), (0.5, "5E-01"), (-1234.5, "-1.2345E+03"),
    (3.0000000000000004, "3.0000000000000004E+00"), (1e100, "1E+100"), (math.inf, "+Inf"),
])
def test_format_e(value: float, text: str) -> None:
    assert format_e(value) == text


def test_fuzzy_equal_is_one_ulp() -> None:
    assert fuzzy_equal(3.0, math.nextafter(3.0, 4.0))
    assert fuzzy_equal(3.0, math.nextafter(3.0, 2.0))
    assert not fuzzy_equal(3.0, math.nextafter(math.nextafter(3.0, 4.0), 4.0))
    assert not fuzzy_equal(math.nan, math.nan)


def test_expanding_notation() -> None:
    values = parse_input_values("1 _ 3 stale 0+10x2 _x2 1x3 10-2x2 -1")
    assert values[:3] == [1.0, None, 3.0]
    assert isinstance(values[3], float) and is_stale(values[3])
    assert values[4:] == [0.0, 10.0, 20.0, None, None, 1.0, 1.0, 1.0, 1.0, 10.0, 8.0, 6.0, -1.0]


def test_series_labels() -> None:
    assert parse_metric('up{job="a", instance="b"}') == (
        ("__name__", "up"), ("instance", "b"), ("job", "a"))
    assert parse_metric('{label="x"}') == (("label", "x"),)
    assert parse_metric("") == ()


def test_histograms_expand_and_add() -> None:
    seq = expand_histograms("{{sum:3 count:2 buckets:[2]}}+{{sum:1.3 count:1 buckets:[1]}}x2")
    assert [h.count for h in seq] == [2.0, 3.0, 4.0]
    assert seq[2].equals(parse_histogram("{{count:4 sum:5.6 buckets:[4]}}"), float.__eq__)
    assert len(expand_histograms("{{count:1}}x3")) == 4
    down = expand_histograms("{{count:5 buckets:[5]}}-{{count:1 buckets:[1]}}x2")
    assert down[-1].count == 3.0


def test_histogram_layout_does_not_matter() -> None:
    a = parse_histogram("{{schema:1 count:3 buckets:[0 1 2] offset:-1}}")
    b = parse_histogram("{{count:3 schema:1 offset:0 buckets:[1 2]}}")
    assert a.equals(b, float.__eq__)
    assert not a.equals(parse_histogram("{{schema:1 count:3 buckets:[1 2] offset:1}}"),
                        float.__eq__)


@pytest.mark.parametrize(("text", "message"), [
    ("{{count:1 colour:red}}", "unknown native histogram field"),
    ("{{count:x}}", "bad number"),
    ("{{schema:1.5}}", "must be an integer"),
    ("{{count:1 count:2}}", "given twice"),
    ("count:1", "written"),
])
def test_bad_histograms(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_histogram(text)


def test_histogram_table_lookback_staleness_and_hints() -> None:
    table = HistogramTable()
    h = parse_histogram("{{count:2 sum:3 buckets:[2]}}")
    lower = parse_histogram("{{count:1 sum:1 buckets:[1]}}")
    table.add((("__name__", "h"),), [(0, h), (60_000, h), (120_000, lower)])
    table.add((("__name__", "s"),), [(0, h), (60_000, float("nan"))])
    table.add((("__name__", "s2"),), [(0, h)])
    name = [("__name__", "=", "h")]
    assert table.select(name, -1, 300_000) == []
    first = table.select(name, 30_000, 300_000)[0][1]
    assert getattr(first, "hint", None) == "unknown"
    assert getattr(table.select(name, 60_000, 300_000)[0][1], "hint", None) == "not_reset"
    assert getattr(table.select(name, 120_000, 300_000)[0][1], "hint", None) == "reset"
    assert table.select([("__name__", "=", "s2")], 299_999, 300_000) != []
    assert table.select([("__name__", "=", "s2")], 300_000, 300_000) == []


def test_stale_marker_hides_a_histogram_series() -> None:
    from monitoring.engine.model import STALE_NAN

    table = HistogramTable()
    h = parse_histogram("{{count:2}}")
    table.add((("__name__", "s"),), [(0, h), (60_000, STALE_NAN)])
    assert table.select([("__name__", "=", "s")], 59_000, 300_000) != []
    assert table.select([("__name__", "=", "s")], 60_000, 300_000) == []


def test_whole_file() -> None:
    tf = parse("""
rule_files: [a.yml, 'b/*.yml']
evaluation_interval: 30s
group_eval_order: [g2, g1]
fuzzy_compare: true
tests:
  - name: one
    start_timestamp: "2024-01-01T00:00:00Z"
    external_labels: {region: eu}
    external_url: http://x
    input_series:
      - series: up
        values: 1
    alert_rule_test:
      - eval_time: 5m
        alertname: A
        exp_alerts:
          - {}
          - exp_labels: {a: b}
            exp_annotations: {s: t}
    promql_expr_test:
      - expr: up
        eval_time: 1m
        exp_samples:
          - value: 1.5
          - labels: up
            histogram: '{{count:1}}'
  - start_timestamp: 1609459200
    interval: 1m
""")
    assert tf.rule_files == ["a.yml", "b/*.yml"]
    assert tf.evaluation_interval_ms == 30_000 and tf.fuzzy_compare
    assert tf.group_eval_order == ["g2", "g1"]
    one, two = tf.groups
    assert one.interval_ms == 30_000  # defaults to evaluation_interval
    assert one.start_ms == 1_704_067_200_000 and two.start_ms == 1_609_459_200_000
    assert one.external_labels == {"region": "eu"} and one.external_url == "http://x"
    assert [e.labels for e in one.alert_tests[0].exp_alerts] == [{}, {"a": "b"}]
    assert one.expr_tests[0].exp_samples[0].labels == ()
    assert one.expr_tests[0].exp_samples[1].histogram == "{{count:1}}"
    assert one.max_eval_time_ms() == 300_000 and two.max_eval_time_ms() == 0
    assert two.display_name == "unnamed#1" and two.interval_ms == 60_000


def test_number_values_keep_their_text() -> None:
    tf = parse("tests:\n  - input_series:\n      - series: x\n        values: 2.9999999999999996\n")
    assert tf.groups[0].input_series[0].values == [2.9999999999999996]


def test_errors_name_file_line_column() -> None:
    found = errors("""tests:
  - name: x
    interval: 1m
    input_seriess: []
    promql_expr_test:
      - expr: up
        eval_time: 5
""")
    assert found == [
        "t.yml:4:5: field input_seriess not found in a test group",
        "t.yml:7:20: eval_time: not a valid duration string: '5'",
    ]


def test_repeated_group_in_eval_order() -> None:
    assert errors("group_eval_order: [a, a]\ntests: []\n") == [
        "t.yml:1:23: group name repeated in evaluation order: a"]


def test_empty_and_wrong_shapes() -> None:
    assert errors("") == ["t.yml:1:1: the test file is empty"]
    assert errors("- a\n- b\n")[0].endswith("the test file must be a mapping, not a list")
    assert errors("tests: {a: 1}\n")[0].endswith("tests must be a list, not a mapping")
