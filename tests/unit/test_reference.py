"""The reference evaluator against hand-computed Prometheus answers.

Each expectation below is worked out by hand from Prometheus 3's engine rules
(the comments show the arithmetic), for the parts that are easy to get subtly
wrong: rate extrapolation, staleness and lookback, subquery grids, ``@``,
delayed metric-name removal, vector matching errors, Kahan summation and
``histogram_quantile``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.dsl.compiler import compile_query
from monitoring.engine.evaluator import evaluate as fast
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import STALE_NAN, EvalError, QueryResult, Series, labels_of
from monitoring.engine.promqltest import Outcome, parse_test, run_script
from monitoring.engine.query import QueryOptions
from monitoring.engine.reference import evaluate
from monitoring.engine.reference.gosort import heap_push, value_less
from monitoring.engine.reference.util import format_f, format_g, go_quote, xxhash64
from monitoring.engine.reference.values import Sample

S = 1000


def series(labels: dict[str, str], *points: tuple[float, float]) -> Series:
    """A series from (seconds, value) points."""
    return Series.of(labels_of(labels), [(int(t * S), v) for t, v in points])


def run(text: str, source: MemorySource, at_s: float) -> QueryResult:
    node, diagnostics, positions = compile_query(text)
    assert node is not None, diagnostics
    return evaluate(node, source, int(at_s * S), int(at_s * S), 0,
                    QueryOptions(positions=positions), instant=True)


def run_range(text: str, source: MemorySource, start_s: float, end_s: float,
              step_s: float) -> QueryResult:
    node, diagnostics, positions = compile_query(text)
    assert node is not None, diagnostics
    return evaluate(node, source, int(start_s * S), int(end_s * S), int(step_s * S),
                    QueryOptions(positions=positions))


def values(result: QueryResult) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant vector as {labels: value}."""
    assert result.kind == "vector"
    out = {}
    for s in result.series:
        assert len(s.values) == 1
        out[s.labels] = float(s.values[0])
    return out


def only(result: QueryResult) -> float:
    """The single value of an instant vector or scalar result."""
    assert result.kind in ("vector", "scalar")
    assert len(result.series) == 1 and len(result.series[0].values) == 1
    return float(result.series[0].values[0])


def lbl(**pairs: str) -> tuple[tuple[str, str], ...]:
    """A label set; ``name=`` stands for ``__name__``."""
    return labels_of({("__name__" if k == "name" else k): v for k, v in pairs.items()})


# ------------------------------------------------------------------ rate and friends


def test_rate_extrapolates_to_both_window_edges() -> None:
    # Window (0s, 60s]: samples at 5, 20, 35, 50 s; increase 3 over 45 s sampled.
    # Gaps to the edges (5 s, 10 s) are under 1.1 x 15 s, so extrapolate fully:
    # 3 * (45 + 5 + 10) / 45 = 4 over the window, 4 / 60 per second.
    src = MemorySource([series({"__name__": "c_total"}, (5, 1), (20, 2), (35, 3), (50, 4))])
    assert only(run("increase(c_total[1m])", src, 60)) == pytest.approx(4.0)
    assert only(run("rate(c_total[1m])", src, 60)) == pytest.approx(4 / 60)


def test_rate_extrapolates_half_an_interval_when_the_series_starts_late() -> None:
    # Samples at 30, 45, 60 s: 30 s to the window start exceeds 1.1 x 15 s, so only
    # 7.5 s is added: 20 * (30 + 7.5) / 30 = 25.
    src = MemorySource([series({"__name__": "c_total"}, (30, 10), (45, 20), (60, 30))])
    assert only(run("increase(c_total[1m])", src, 60)) == pytest.approx(25.0)


def test_counter_resets_add_the_value_before_the_reset() -> None:
    # 10 -> 20 -> 5: the raw difference -5 plus 20 (lost at the reset) gives 15,
    # extrapolated like above: 15 * 37.5 / 30 = 18.75.
    src = MemorySource([series({"__name__": "c_total"}, (30, 10), (45, 20), (60, 5))])
    assert only(run("increase(c_total[1m])", src, 60)) == pytest.approx(18.75)
    assert only(run("resets(c_total[1m])", src, 60)) == 1.0
    # delta does not treat the drop as a reset: (5 - 10) * 37.5 / 30.
    assert only(run("delta(c_total[1m])", src, 60)) == pytest.approx(-6.25)


def test_counter_extrapolation_stops_at_zero() -> None:
    # Starting at 0, the counter's zero point is the first sample: no extension
    # to the left, so the increase is exactly 20.
    src = MemorySource([series({"__name__": "c_total"}, (30, 0), (45, 10), (60, 20))])
    assert only(run("increase(c_total[1m])", src, 60)) == pytest.approx(20.0)


def test_rate_needs_two_samples_and_irate_uses_the_last_two() -> None:
    src = MemorySource([series({"__name__": "c_total"}, (30, 10), (45, 20), (60, 50))])
    assert run("rate(c_total[20s])", src, 60).series != []
    assert values(run("rate(c_total[10s])", src, 60)) == {}
    assert only(run("irate(c_total[1m])", src, 60)) == pytest.approx(30 / 15)
    assert only(run("idelta(c_total[1m])", src, 60)) == pytest.approx(30.0)


def test_rate_of_a_non_counter_name_is_an_info_with_its_position() -> None:
    src = MemorySource([series({"__name__": "gauge"}, (0, 1), (30, 2), (60, 3))])
    result = run("rate(gauge[1m])", src, 60)
    assert result.infos == ['PromQL info: metric might not be a counter, name does not end '
                            'in _total/_sum/_count/_bucket: "gauge" (1:6)']
    assert run("rate(gauge_total[1m])", MemorySource(), 60).infos == []


def test_deriv_and_predict_linear_fit_a_line() -> None:
    src = MemorySource([series({"__name__": "g"}, (0, 0), (30, 60), (60, 120))])
    assert only(run("deriv(g[2m])", src, 60)) == pytest.approx(2.0)
    # The line through the samples, evaluated 30 s after the evaluation time.
    assert only(run("predict_linear(g[2m], 30)", src, 60)) == pytest.approx(180.0)


# ------------------------------------------------------------------ lookback and staleness


def test_lookback_is_five_minutes_and_excludes_its_lower_edge() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 7))])
    assert values(run("x", src, 299.999)) == {lbl(name="x"): 7.0}
    assert values(run("x", src, 300)) == {}


def test_a_stale_marker_hides_the_series_from_its_timestamp_on() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1), (10, 2), (20, STALE_NAN))])
    assert values(run("x", src, 15)) == {lbl(name="x"): 2.0}
    assert values(run("x", src, 20)) == {}
    assert values(run("x", src, 25)) == {}  # the older sample is within lookback, yet hidden
    # Range windows drop the marker itself.
    assert only(run("count_over_time(x[1m])", src, 30)) == 2.0


def test_range_windows_are_left_open_and_right_closed() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1), (15, 10), (30, 100))])
    # (0s, 30s]: the sample at 0 s is out, the one at 30 s is in.
    assert only(run("sum_over_time(x[30s])", src, 30)) == 110.0
    matrix = run("x[30s]", src, 30)
    assert matrix.kind == "matrix"
    assert list(matrix.series[0].ts) == [15 * S, 30 * S]


def test_offset_and_at_move_the_evaluation_time() -> None:
    src = MemorySource([series({"__name__": "x"}, *[(t, t) for t in range(0, 301, 10)])])
    assert only(run("x offset 1m", src, 200)) == 140.0
    assert only(run("x offset -1m", src, 200)) == 260.0
    assert only(run("x @ 50", src, 1000)) == 50.0
    assert only(run("x @ 50 offset 20s", src, 1000)) == 30.0
    assert only(run("sum_over_time(x[30s] @ 100)", src, 0)) == 80 + 90 + 100
    # @ start() / end() pin to the range query's bounds at every step.
    result = run_range("x @ end()", src, 100, 200, 50)
    assert list(result.series[0].values) == [200.0, 200.0, 200.0]
    result = run_range("x @ start()", src, 100, 200, 50)
    assert list(result.series[0].values) == [100.0, 100.0, 100.0]


# ------------------------------------------------------------------ subqueries


def test_subquery_steps_are_aligned_to_multiples_of_the_step() -> None:
    src = MemorySource([series({"__name__": "x"}, *[(t, t) for t in range(0, 121, 5)])])
    # At 70 s, the window is (10 s, 70 s]: grid points 20, 40, 60 s.
    result = run("x[1m:20s]", src, 70)
    assert result.kind == "matrix"
    assert list(result.series[0].ts) == [20 * S, 40 * S, 60 * S]
    assert list(result.series[0].values) == [20.0, 40.0, 60.0]
    assert only(run("count_over_time(x[1m:20s])", src, 70)) == 3.0
    # A subquery without a step uses the default step of the options.
    node, _, _ = compile_query("count_over_time(x[1m:])")
    assert node is not None
    res = evaluate(node, src, 70 * S, 70 * S, 0, QueryOptions(default_subquery_step_ms=10 * S),
                   instant=True)
    assert float(res.series[0].values[0]) == 6.0  # 20, 30, ..., 70 s


def test_subquery_with_offset_and_at() -> None:
    src = MemorySource([series({"__name__": "x"}, *[(t, t) for t in range(0, 121, 5)])])
    # End at 100 - 30 = 70 s: points 60 and 70 s in (50 s, 70 s].
    result = run("x[20s:10s] @ 100 offset 30s", src, 5)
    assert list(result.series[0].ts) == [60 * S, 70 * S]


def test_nested_subquery_evaluates_the_inner_rate_at_each_grid_point() -> None:
    # A counter rising 1 per second: rate is 1 wherever it is computed.
    src = MemorySource([series({"__name__": "c_total"}, *[(t, t) for t in range(0, 601, 15)])])
    assert only(run("max_over_time(rate(c_total[1m])[5m:30s])", src, 600)) == pytest.approx(1)


# ------------------------------------------------------------------ metric names


def test_functions_and_arithmetic_drop_the_name_but_selection_functions_keep_it() -> None:
    src = MemorySource([series({"__name__": "x", "a": "1"}, (0, 4))])
    assert values(run("x * 2", src, 10)) == {lbl(a="1"): 8.0}
    assert values(run("abs(x)", src, 10)) == {lbl(a="1"): 4.0}
    assert values(run("x > 1", src, 10)) == {lbl(name="x", a="1"): 4.0}
    assert values(run("x > bool 1", src, 10)) == {lbl(a="1"): 1.0}
    assert values(run("last_over_time(x[1m])", src, 10)) == {lbl(name="x", a="1"): 4.0}
    assert values(run("sum_over_time(x[1m])", src, 10)) == {lbl(a="1"): 4.0}


def test_name_removal_is_delayed_until_the_query_ends() -> None:
    src = MemorySource([series({"__name__": "x", "a": "1"}, (0, 4))])
    # The name is only marked for removal by `* 2`, so label_replace still reads it.
    result = run('label_replace(x * 2, "copy", "$1", "__name__", "(.*)")', src, 10)
    assert values(result) == {lbl(a="1", copy="x"): 8.0}
    # Writing __name__ clears the mark: the new name survives.
    result = run('label_replace(x * 2, "__name__", "y", "", "")', src, 10)
    assert values(result) == {lbl(name="y", a="1"): 8.0}


def test_same_labelset_after_dropping_names_is_an_error() -> None:
    src = MemorySource([series({"__name__": "x", "a": "1"}, (0, 1)),
                        series({"__name__": "y", "a": "1"}, (0, 2))])
    with pytest.raises(EvalError, match=r"^vector cannot contain metrics with the same labelset$"):
        run('{__name__=~"x|y"} * 2', src, 10)
    # Without dropping the names they stay distinct.
    assert len(values(run('{__name__=~"x|y"} > 0', src, 10))) == 2


# ------------------------------------------------------------------ vector matching


def matching_source() -> MemorySource:
    return MemorySource([
        series({"__name__": "req", "job": "a", "code": "200"}, (0, 10)),
        series({"__name__": "req", "job": "a", "code": "500"}, (0, 2)),
        series({"__name__": "lim", "job": "a"}, (0, 100)),
        series({"__name__": "lim", "job": "b"}, (0, 50)),
    ])


def test_many_to_one_matching_with_group_left_and_extra_labels() -> None:
    src = matching_source()
    result = run("req / on(job) group_left lim", src, 10)
    assert values(result) == {lbl(job="a", code="200"): 0.1, lbl(job="a", code="500"): 0.02}
    src.add(series({"__name__": "owner", "job": "a", "team": "t1"}, (0, 1)))
    result = run("req * on(job) group_left(team) owner", src, 10)
    assert set(values(result)) == {lbl(job="a", code="200", team="t1"),
                                   lbl(job="a", code="500", team="t1")}


def test_one_to_one_matching_keeps_only_the_on_labels() -> None:
    src = matching_source()
    assert values(run("sum by (job) (req) / on(job) lim", src, 10)) == {lbl(job="a"): 0.12}


def test_duplicates_on_the_one_side_are_many_to_many() -> None:
    with pytest.raises(EvalError) as err:
        run("req / on(job) group_right lim", matching_source(), 10)
    assert str(err.value) == (
        'found duplicate series for the match group {job="a"} on the left hand-side of the '
        'operation: [{__name__="req", code="500", job="a"}, {__name__="req", code="200", '
        'job="a"}];many-to-many matching not allowed: matching labels must be unique on one '
        "side")


def test_one_to_one_with_several_left_matches_must_be_explicit() -> None:
    with pytest.raises(EvalError, match="many-to-one matching must be explicit"):
        run("req / on(job) lim", matching_source(), 10)


def test_grouping_labels_must_make_results_unique() -> None:
    src = MemorySource([
        series({"__name__": "l", "a": "1", "b": "x"}, (0, 1)),
        series({"__name__": "l", "a": "1", "b": "y"}, (0, 2)),
        series({"__name__": "r", "a": "1", "b": "q"}, (0, 3)),
    ])
    assert len(values(run("l + on(a) group_left r", src, 10))) == 2
    # Copying b from the one side makes both results {a="1", b="q"}.
    with pytest.raises(EvalError, match="grouping labels must ensure unique matches"):
        run("l + on(a) group_left(b) r", src, 10)


def test_set_operators() -> None:
    src = matching_source()
    assert set(values(run("lim and on(job) req", src, 10))) == {lbl(name="lim", job="a")}
    assert set(values(run("lim unless on(job) req", src, 10))) == {lbl(name="lim", job="b")}
    assert len(values(run("req or lim", src, 10))) == 4


# ------------------------------------------------------------------ aggregations


def test_sum_uses_compensated_summation() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, v))
                        for i, v in enumerate([1.0, 1e100, 1.0, -1e100])])
    assert only(run("sum(v)", src, 10)) == 2.0  # a plain float sum gives 0


def test_avg_falls_back_to_an_incremental_mean_on_overflow() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, v))
                        for i, v in enumerate([1e308, 1e308, -1e308])])
    assert only(run("avg(v)", src, 10)) == pytest.approx(1e308 / 3)
    assert only(run("avg_over_time(w[1m])", MemorySource([series(
        {"__name__": "w"}, (10, 1e308), (20, 1e308), (30, -1e308))]), 30)) == pytest.approx(
        1e308 / 3)


def test_topk_and_bottomk_order_nan_last() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, v))
                        for i, v in enumerate([3.0, math.nan, 1.0, 2.0])])
    top = run("topk(3, v)", src, 10)
    assert [float(s.values[0]) for s in top.series] == [3.0, 2.0, 1.0]
    bottom = run("bottomk(4, v)", src, 10)
    got = [float(s.values[0]) for s in bottom.series]
    assert got[:3] == [1.0, 2.0, 3.0] and math.isnan(got[3])


def test_quantile_and_its_warning() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, float(i)))
                        for i in range(5)])
    assert only(run("quantile(0.5, v)", src, 10)) == 2.0
    assert only(run("quantile(0.3, v)", src, 10)) == pytest.approx(1.2)
    result = run("quantile(1.5, v)", src, 10)
    assert only(result) == math.inf
    assert result.warnings == [
        "PromQL warning: quantile value should be between 0 and 1, got 1.5 (1:10)"]


def test_count_values_and_its_label_check() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, v))
                        for i, v in enumerate([1.0, 1.0, 0.5])])
    assert values(run('count_values("val", v)', src, 10)) == {
        lbl(val="1"): 2.0, lbl(val="0.5"): 1.0}
    with pytest.raises(EvalError, match=r'^invalid label name "a\\xc5z"$'):
        run('count_values("a\\xc5z", v)', src, 10)


def test_topk_with_a_nan_parameter_fails() -> None:
    with pytest.raises(EvalError, match=r"^Parameter value is NaN$"):
        run("topk(NaN, missing)", MemorySource(), 10)
    with pytest.raises(EvalError, match=r"^Ratio value is NaN$"):
        run("limit_ratio(NaN, missing)", MemorySource(), 10)


def test_limitk_keeps_go_heap_order() -> None:
    heap: list[Sample] = []
    for v in (5.0, 3.0, 4.0, 1.0):
        heap_push(heap, Sample((), v), value_less)
    assert [s.value for s in heap] == [1.0, 3.0, 4.0, 5.0]


# ------------------------------------------------------------------ histogram_quantile


def buckets(counts: dict[str, float]) -> MemorySource:
    return MemorySource([series({"__name__": "h_bucket", "le": le}, (0, c))
                         for le, c in counts.items()])


def test_histogram_quantile_interpolates_inside_buckets() -> None:
    src = buckets({"0.1": 10, "0.5": 20, "1": 30, "+Inf": 40})
    # rank 20 ends exactly at the 0.5 bucket; rank 24 lies 4/10 into (0.5, 1].
    assert only(run("histogram_quantile(0.5, h_bucket)", src, 10)) == pytest.approx(0.5)
    assert only(run("histogram_quantile(0.6, h_bucket)", src, 10)) == pytest.approx(0.7)
    assert only(run("histogram_quantile(0.25, h_bucket)", src, 10)) == pytest.approx(0.1)
    # In the +Inf bucket the answer is the highest finite bound.
    assert only(run("histogram_quantile(0.9, h_bucket)", src, 10)) == 1.0
    assert values(run("histogram_quantile(0.5, h_bucket)", src, 10)).keys() == {()}


def test_histogram_quantile_forces_monotonic_buckets_with_an_info() -> None:
    # 10, 8, 30, 40 becomes 10, 10, 30, 40: rank 20 lies halfway into (0.5, 1].
    src = buckets({"0.1": 10, "0.5": 8, "1": 30, "+Inf": 40})
    result = run("histogram_quantile(0.5, h_bucket)", src, 10)
    assert only(result) == pytest.approx(0.75)
    assert result.infos == [
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see "
        "https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
        ' for metric name "h_bucket" (1:25)']


def test_histogram_quantile_edge_cases() -> None:
    assert math.isnan(only(run("histogram_quantile(0.5, h_bucket)",
                               buckets({"1": 1, "2": 2}), 10)))  # no +Inf bucket
    assert math.isnan(only(run("histogram_quantile(0.5, h_bucket)",
                               buckets({"1": 0, "+Inf": 0}), 10)))  # no observations
    result = run("histogram_quantile(-1, h_bucket)", buckets({"1": 1, "+Inf": 2}), 10)
    assert only(result) == -math.inf and result.warnings != []
    bad = run("histogram_quantile(0.5, h_bucket)", buckets({"x": 1, "+Inf": 2}), 10)
    assert bad.warnings == ['PromQL warning: bucket label "le" is missing or has a malformed '
                            'value of "x" for metric name "h_bucket" (1:25)']


# ------------------------------------------------------------------ query shapes


def test_range_query_result_shape() -> None:
    src = MemorySource([series({"__name__": "x", "a": "2"}, (0, 1), (60, 2)),
                        series({"__name__": "x", "a": "1"}, (120, 5))])
    result = run_range("x", src, 0, 180, 60)
    assert result.kind == "matrix"
    assert list(result.steps) == [0, 60 * S, 120 * S, 180 * S]
    assert [s.labels for s in result.series] == [lbl(name="x", a="1"), lbl(name="x", a="2")]
    assert list(result.series[0].ts) == [120 * S, 180 * S]
    scalar = run_range("time()", src, 0, 120, 60)
    assert [s.labels for s in scalar.series] == [()]
    assert list(scalar.series[0].values) == [0.0, 60.0, 120.0]


def test_range_query_of_a_range_vector_is_refused() -> None:
    with pytest.raises(EvalError, match='invalid expression type "range vector"'):
        run_range("x[1m]", MemorySource(), 0, 60, 30)


def test_sort_in_a_range_query_warns() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1))])
    assert run_range("sort(x)", src, 0, 60, 30).warnings == [
        "PromQL warning: sort is ineffective for range queries since results are always "
        "ordered by labels (1:1)"]
    assert run("sort(x)", src, 30).warnings == []


def test_scalar_and_string_results() -> None:
    src = MemorySource()
    scalar = run("1 / 0", src, 0)
    assert scalar.kind == "scalar" and float(scalar.series[0].values[0]) == math.inf
    string = run('"hello"', src, 0)
    assert string.kind == "string" and string.string == "hello"
    assert math.isnan(only(run("0 / 0", src, 0)))
    assert math.isnan(only(run("5 % 0", src, 0)))


def test_time_functions() -> None:
    # 2024-02-29T13:45:00Z, a leap day.
    t = 1709214300
    src = MemorySource([series({"__name__": "ts"}, (0, float(t)))])
    assert only(run("day_of_month(ts)", src, 10)) == 29.0
    assert only(run("days_in_month(ts)", src, 10)) == 29.0
    assert only(run("hour(ts)", src, 10)) == 13.0
    assert only(run("minute(ts)", src, 10)) == 45.0
    assert only(run("day_of_week(ts)", src, 10)) == 4.0  # Thursday
    assert only(run("day_of_year(ts)", src, 10)) == 60.0
    assert only(run("year()", src, 10)) == 1970.0
    assert only(run("timestamp(ts)", src, 100)) == 0.0
    # Beyond Python's datetime range, as Go's time package computes it.
    assert only(run("year(vector(1e12))", src, 10)) == 33658.0
    assert only(run("day_of_week(vector(-1))", src, 10)) == 3.0  # 1969-12-31, a Wednesday
    assert only(run("minute(vector(-1))", src, 10)) == 59.0


def test_functions_without_an_implementation_are_refused_by_name() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1))])
    with pytest.raises(EvalError, match=r"^info\(\) is not supported by the reference "
                                        r"evaluator$"):
        run("info(x)", src, 10)


def test_outlier_score_needs_three_peers() -> None:
    src = MemorySource([series({"__name__": "x", "i": str(i)}, (0, v))
                        for i, v in enumerate([1.0, 2.0])])
    assert values(run("outlier_score(x)", src, 10)) == {}
    src = MemorySource([series({"__name__": "x", "i": str(i)}, (0, v))
                        for i, v in enumerate([1.0, 2.0, 3.0, 10.0])])
    got = {dict(k)["i"]: v for k, v in values(run("outlier_score(x)", src, 10)).items()}
    # median 2.5, deviations 1.5 0.5 0.5 7.5, MAD 1.0 -> scale 1.4826
    assert got == pytest.approx({"0": 1.5 / 1.4826, "1": 0.5 / 1.4826, "2": 0.5 / 1.4826,
                                 "3": 7.5 / 1.4826})


def test_label_replace_and_join() -> None:
    src = MemorySource([series({"__name__": "x", "src": "a-1", "b": "z"}, (0, 1))])
    result = run('label_replace(x, "dst", "$2:${1}", "src", "(.*)-(.*)")', src, 10)
    assert set(values(result)) == {lbl(name="x", src="a-1", b="z", dst="1:a")}
    result = run('label_join(x, "j", ",", "src", "b")', src, 10)
    assert set(values(result)) == {lbl(name="x", src="a-1", b="z", j="a-1,z")}
    with pytest.raises(EvalError, match="invalid regular expression in label_replace"):
        run('label_replace(x, "dst", "", "src", "(")', src, 10)


# ------------------------------------------------------------------ Go formatting helpers


def test_go_formatting_helpers() -> None:
    assert [format_g(v) for v in (1.5, 1e21, 1e20, 1e-5, math.nan, -math.inf)] == [
        "1.5", "1e+21", "100000000000000000000", "1e-05", "NaN", "-Inf"]
    assert format_f(1e22) == "10000000000000000000000"
    assert format_f(0.1) == "0.1"
    assert go_quote("a\udcc5z\"") == '"a\\xc5z\\""'
    # Reference values of XXH64 with seed 0.
    assert xxhash64(b"") == 0xEF46DB3751D8E999
    assert xxhash64(b"a") == 0xD24EC4F1A98C6E5B


def test_memoised_values_are_not_shared_between_queries() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1))])
    first = run("x", src, 10)
    src.add(series({"__name__": "x"}, (5, 2)))
    second = run("x", src, 10)
    assert float(first.series[0].values[0]) == 1.0
    assert float(second.series[0].values[0]) == 2.0
    assert isinstance(second.steps, np.ndarray)


def test_max_samples_limits_what_one_step_holds() -> None:
    src = MemorySource([series({"__name__": "x", "i": str(i)}, (0, 1)) for i in range(5)])
    node, _, _ = compile_query("sum(x)")
    assert node is not None
    ok = evaluate(node, src, 10 * S, 10 * S, 0, QueryOptions(max_samples=5), instant=True)
    assert float(ok.series[0].values[0]) == 5.0
    with pytest.raises(EvalError, match=r"^query processing would load too many samples"):
        evaluate(node, src, 10 * S, 10 * S, 0, QueryOptions(max_samples=4), instant=True)


SCRIPT = """
load 15s
    c_total{job="a"} 0+10x20
    g{job="a"} 1 2 _ 4 stale 6

eval instant at 2m rate(c_total[1m])
    {job="a"} 0.6666666666666666

eval instant at 50s g
    g{job="a"} 4

eval instant at 1m g

eval range from 0 to 1m step 30s count_over_time(g[30s])
    {job="a"} 1 1 1

eval instant at 50s sum by (job) (c_total) / on(job) g
    {job="a"} 7.5
"""


def test_a_conformance_style_script_passes() -> None:
    report = run_script(parse_test(SCRIPT, "inline.test"), evaluate)
    assert [(b.line, b.outcome, b.reason) for b in report.blocks if
            b.outcome is not Outcome.PASSED] == []
    assert report.passed == 5


def test_sort_warns_only_where_prometheus_evaluates_several_steps() -> None:
    src = MemorySource([series({"__name__": "x"}, (0, 1))])
    # Pinned with @, the call is step-invariant: evaluated once, so no warning.
    assert run_range("sort(x @ 10)", src, 0, 60, 30).warnings == []
    # Inside a subquery of several steps, even an instant query warns.
    assert run("max_over_time(sort(x)[1m:30s])", src, 60).warnings == [
        "PromQL warning: sort is ineffective for range queries since results are always "
        "ordered by labels (1:15)"]


def test_ties_and_nans_come_out_in_go_order() -> None:
    src = MemorySource([series({"__name__": "v", "i": str(i)}, (0, v))
                        for i, v in enumerate([1.0, 1.0, 2.0])])
    # The heap root (i=0) is displaced by 2, so the later of the two 1s survives.
    top = run("topk(2, v)", src, 10)
    assert [dict(s.labels)["i"] for s in top.series] == ["2", "1"]
    # Go's insertion sort moves every NaN right past its NaN neighbours too.
    src = MemorySource([series({"__name__": "w", "i": str(i)}, (0, v))
                        for i, v in enumerate([math.nan, 1.0, math.nan])])
    ordered = run("sort(w)", src, 10)
    assert [dict(s.labels)["i"] for s in ordered.series] == ["1", "2", "0"]


def test_range_series_are_keyed_with_their_name_until_the_query_ends() -> None:
    # Prometheus 3's rangeEval keys output series by labels that still hold the
    # pending-removal name: `abs(m)` (name to drop) and `m` of one instance are
    # one series, which keeps or drops the name as at its first point.
    src = MemorySource([series({"__name__": "m", "instance": "a"},
                               (0, 0.2), (60, 0.8), (120, 0.3), (180, 0.9))])
    text = "(abs(m) and on(instance) (m < 0.5)) or on(instance) (m > 0.5)"
    got = run_range(text, src, 0, 180, 60)
    assert [s.labels for s in got.series] == [lbl(instance="a")]
    assert got.series[0].values.tolist() == [0.2, 0.8, 0.3, 0.9]
    node, _, _ = compile_query(text)
    assert node is not None
    other = fast(node, src, 0, 180_000, 60_000)
    assert [(s.labels, s.values.tolist()) for s in other.series] == [
        (s.labels, s.values.tolist()) for s in got.series]


def test_range_series_that_coincide_once_names_are_dropped_fail_where_they_overlap() -> None:
    src = MemorySource([series({"__name__": "a", "job": "x"}, (0, 1), (60, 2)),
                        series({"__name__": "b", "job": "x"}, (0, 3), (60, 4))])
    with pytest.raises(EvalError, match="same labelset"):
        run_range('abs({__name__=~"a|b"})', src, 0, 60, 60)
