"""The vectorised evaluator: hand-checked PromQL semantics, sharing, and the DuckDB store.

Values below are worked out by hand from Prometheus 3's rules (5m lookback,
staleness markers, left-open windows, extrapolated rates, subquery step
alignment, vector matching, delayed name removal). A property test checks the
one thing vectorising could break on its own: a range query must agree, step
by step, with instant queries at each of its steps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_query
from monitoring.engine.evaluator import evaluate, evaluate_many
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import STALE_NAN, EvalError, Labels, Matcher, QueryResult, Series
from monitoring.engine.query import QueryOptions
from monitoring.engine.store import Store

S = 1000
M = 60 * S


def lab(name: str | None = None, **labels: str) -> Labels:
    pairs = dict(labels)
    if name is not None:
        pairs["__name__"] = name
    return tuple(sorted(pairs.items()))


def series(labels: Labels, start: int, step: int, values: Sequence[float | None]) -> Series:
    return Series.of(labels, [(start + i * step, v) for i, v in enumerate(values)
                              if v is not None])


def node_of(text: str) -> ir.Node:
    node, diagnostics, _ = compile_query(text)
    assert node is not None, diagnostics
    return node


def instant(src: MemorySource, text: str, at_ms: int) -> QueryResult:
    node, diagnostics, positions = compile_query(text)
    assert node is not None, diagnostics
    return evaluate(node, src, at_ms, at_ms, 1, QueryOptions(positions=positions), instant=True)


def ranged(src: MemorySource, text: str, start: int, end: int, step: int) -> QueryResult:
    node, diagnostics, positions = compile_query(text)
    assert node is not None, diagnostics
    return evaluate(node, src, start, end, step, QueryOptions(positions=positions))


def as_dict(res: QueryResult) -> dict[Labels, float]:
    assert res.kind == "vector", res
    return {s.labels: float(s.values[0]) for s in res.series}


def points(res: QueryResult) -> dict[Labels, list[tuple[int, float]]]:
    return {s.labels: [(int(t), float(v)) for t, v in zip(s.ts, s.values, strict=True)]
            for s in res.series}


@pytest.fixture
def src() -> MemorySource:
    """http_requests-like data: two jobs, counters every 15s from 0 to 10m."""
    return MemorySource([
        series(lab("req_total", job="a", inst="0"), 0, 15 * S, [10.0 * i for i in range(41)]),
        series(lab("req_total", job="b", inst="0"), 0, 15 * S, [5.0 * i for i in range(41)]),
        series(lab("quota", job="a"), 0, 15 * S, [100.0] * 41),
        series(lab("quota", job="b"), 0, 15 * S, [50.0] * 41),
        series(lab("gauge", job="a"), 0, M, [1.0, 5.0, 2.0, None, None, None, None, None, 7.0]),
    ])


# ---------------------------------------------------------------- selectors


def test_lookback_finds_the_latest_sample_within_five_minutes(src: MemorySource) -> None:
    # gauge: samples at 0,1,2m and 8m. At 2m30s the latest is 2 (from 2m).
    assert as_dict(instant(src, "gauge", 150 * S)) == {lab("gauge", job="a"): 2.0}
    # At 7m exactly the 2m sample is 5m old: the window (t-5m, t] excludes it.
    assert as_dict(instant(src, "gauge", 7 * M)) == {}
    assert as_dict(instant(src, "gauge", 7 * M - 1)) == {lab("gauge", job="a"): 2.0}
    assert as_dict(instant(src, "gauge", 8 * M)) == {lab("gauge", job="a"): 7.0}


def test_staleness_marker_hides_the_series_until_the_next_sample() -> None:
    src = MemorySource([series(lab("x"), 0, M, [1.0, 2.0, STALE_NAN, None, 4.0])])
    got = points(ranged(src, "x", 0, 5 * M, M))
    assert got == {lab("x"): [(0, 1.0), (M, 2.0), (4 * M, 4.0), (5 * M, 4.0)]}


def test_range_query_points_only_where_present_and_series_sorted(src: MemorySource) -> None:
    res = ranged(src, "quota", 9 * M, 16 * M, M)
    assert res.kind == "matrix"
    assert [s.labels for s in res.series] == [lab("quota", job="a"), lab("quota", job="b")]
    # Last sample at 10m, visible until 15m exclusive.
    assert [int(t) for t in res.series[0].ts] == [9 * M + i * M for i in range(6)]


def test_offset_and_at_modifiers(src: MemorySource) -> None:
    want_a = lab("req_total", job="a", inst="0")
    assert as_dict(instant(src, 'req_total{job="a"} offset 1m', 2 * M))[want_a] == 40.0
    assert as_dict(instant(src, 'req_total{job="a"} @ 60', 10 * M))[want_a] == 40.0
    assert as_dict(instant(src, 'req_total{job="a"} @ 2m offset 1m', 10 * M))[want_a] == 40.0
    res = ranged(src, 'req_total{job="a"} @ start()', M, 3 * M, M)
    assert points(res)[want_a] == [(M, 40.0), (2 * M, 40.0), (3 * M, 40.0)]
    res = ranged(src, 'req_total{job="a"} @ end()', M, 3 * M, M)
    assert points(res)[want_a] == [(M, 120.0), (2 * M, 120.0), (3 * M, 120.0)]


def test_instant_range_selector_returns_raw_samples(src: MemorySource) -> None:
    res = instant(src, 'req_total{job="a"}[1m]', 2 * M)
    assert res.kind == "matrix"
    # Left-open window (1m, 2m]: samples at 1m15s, 1m30s, 1m45s, 2m.
    assert points(res) == {lab("req_total", job="a", inst="0"): [
        (75 * S, 50.0), (90 * S, 60.0), (105 * S, 70.0), (120 * S, 80.0)]}
    with pytest.raises(EvalError, match='invalid expression type "range vector"'):
        ranged(src, 'req_total{job="a"}[1m]', 0, M, M)


def test_left_open_window() -> None:
    # Prometheus's own example: 0 1 10 at 15s, sum_over_time(bar[30s]) at 30s is 11.
    src = MemorySource([series(lab("bar"), 0, 15 * S, [0.0, 1.0, 10.0])])
    assert as_dict(instant(src, "sum_over_time(bar[30s])", 30 * S)) == {(): 11.0}


# ---------------------------------------------------------------- range functions


def test_rate_increase_delta_by_hand(src: MemorySource) -> None:
    # 10 per 15s: 5 samples in (1m, 2m] cover 45s... extrapolated to 60s: increase 40.
    got = as_dict(instant(src, 'increase(req_total{job="a"}[1m])', 2 * M))
    assert got == {lab(job="a", inst="0"): pytest.approx(40.0)}
    got = as_dict(instant(src, 'rate(req_total{job="a"}[1m])', 2 * M))
    assert got == {lab(job="a", inst="0"): pytest.approx(40.0 / 60)}
    got = as_dict(instant(src, 'delta(quota{job="b"}[5m])', 5 * M))
    assert got == {lab(job="b"): 0.0}


def test_counter_reset_is_corrected() -> None:
    src = MemorySource([series(lab("c_total"), 0, 15 * S, [0.0, 10.0, 20.0, 5.0, 15.0])])
    # Samples in (0, 60s]: 10, 20, 5, 15 -> 15 - 10 + 20 = 25 over 45s, extrapolated
    # to the start (15s away, within 1.1 x average) and limited by the zero point.
    got = as_dict(instant(src, "increase(c_total[1m])", M))[()]
    assert got == pytest.approx(25.0 * 60 / 45)
    assert as_dict(instant(src, "resets(c_total[2m])", M)) == {(): 1.0}
    assert as_dict(instant(src, "changes(c_total[2m])", M)) == {(): 4.0}


def test_rate_info_on_a_name_that_is_not_a_counter(src: MemorySource) -> None:
    res = instant(src, "rate(gauge[5m])", 3 * M)
    assert res.infos == ['PromQL info: metric might not be a counter, name does not end in '
                         '_total/_sum/_count/_bucket: "gauge" (1:6)']
    assert instant(src, "rate(req_total[5m])", 3 * M).infos == []


def test_over_time_functions(src: MemorySource) -> None:
    g = lab(job="a")
    assert as_dict(instant(src, "avg_over_time(gauge[3m])", 2 * M)) == {g: 8.0 / 3}
    assert as_dict(instant(src, "max_over_time(gauge[3m])", 2 * M)) == {g: 5.0}
    assert as_dict(instant(src, "min_over_time(gauge[3m])", 2 * M)) == {g: 1.0}
    assert as_dict(instant(src, "count_over_time(gauge[3m])", 2 * M)) == {g: 3.0}
    assert as_dict(instant(src, "quantile_over_time(0.5, gauge[3m])", 2 * M)) == {g: 2.0}
    # last_over_time keeps the metric name (Prometheus 3).
    assert as_dict(instant(src, "last_over_time(gauge[3m])", 2 * M)) == {
        lab("gauge", job="a"): 2.0}


def test_deriv_and_predict_linear(src: MemorySource) -> None:
    a = lab(job="a", inst="0")
    assert as_dict(instant(src, 'deriv(req_total{job="a"}[5m])', 5 * M))[a] == pytest.approx(
        10.0 / 15)
    got = as_dict(instant(src, 'predict_linear(req_total{job="a"}[5m], 60)', 5 * M))[a]
    assert got == pytest.approx(200.0 + 40.0)


def test_absent_over_time_labels_from_equality_matchers(src: MemorySource) -> None:
    assert as_dict(instant(src, 'absent_over_time(nope{job="x", inst=~"1"}[1m])', M)) == {
        lab(job="x"): 1.0}
    assert as_dict(instant(src, 'absent_over_time(gauge[1m])', 5 * M)) == {(): 1.0}
    assert as_dict(instant(src, 'absent_over_time(gauge[1m])', M)) == {}


def test_quantile_over_time_warns_on_a_bad_quantile(src: MemorySource) -> None:
    res = instant(src, "quantile_over_time(2, gauge[3m])", 2 * M)
    assert as_dict(res) == {lab(job="a"): math.inf}
    assert res.warnings == ["PromQL warning: quantile value should be between 0 and 1, "
                            "got 2 (1:20)"]


# ---------------------------------------------------------------- subqueries


def test_subquery_steps_are_aligned_to_multiples_of_the_step(src: MemorySource) -> None:
    # (10s, 70s] holds the aligned steps 20s, 40s, 60s.
    assert as_dict(instant(src, "count_over_time(gauge[1m:20s])", 70 * S)) == {
        lab(job="a"): 3.0}
    res = instant(src, "gauge[1m:20s]", 70 * S)
    assert points(res) == {lab("gauge", job="a"): [(20 * S, 1.0), (40 * S, 1.0),
                                                   (60 * S, 5.0)]}


def test_subquery_default_step_and_offset(src: MemorySource) -> None:
    opts = QueryOptions(default_subquery_step_ms=30 * S)
    node = node_of("sum_over_time(gauge[1m:] offset 1m)")
    res = evaluate(node, src, 3 * M, 3 * M, 1, opts, instant=True)
    # Window (1m, 2m] at 30s steps: 1m30s (5), 2m (2).
    assert as_dict(res) == {lab(job="a"): 7.0}


def test_nested_subquery_with_rate(src: MemorySource) -> None:
    got = as_dict(instant(src, 'max_over_time(rate(req_total{job="b"}[1m])[2m:30s])', 5 * M))
    assert got == {lab(job="b", inst="0"): pytest.approx(5.0 / 15)}
    # As in Prometheus, last_over_time keeps the name even of a subquery whose own
    # result would have lost it; the subquery alone does lose it.
    got = as_dict(instant(src, 'last_over_time(rate(req_total{job="b"}[1m])[2m:30s])', 5 * M))
    assert got == {lab("req_total", job="b", inst="0"): pytest.approx(5.0 / 15)}
    res = instant(src, 'rate(req_total{job="b"}[1m])[1m:30s]', 5 * M)
    assert list(points(res)) == [lab(job="b", inst="0")]


# ---------------------------------------------------------------- binary operators


def test_arithmetic_drops_the_name_comparison_keeps_it(src: MemorySource) -> None:
    assert as_dict(instant(src, "quota * 2", 0)) == {lab(job="a"): 200.0, lab(job="b"): 100.0}
    assert as_dict(instant(src, "quota > 60", 0)) == {lab("quota", job="a"): 100.0}
    assert as_dict(instant(src, "60 < quota", 0)) == {lab("quota", job="a"): 100.0}
    assert as_dict(instant(src, "quota > bool 60", 0)) == {lab(job="a"): 1.0, lab(job="b"): 0.0}
    assert as_dict(instant(src, "-quota", 0)) == {lab(job="a"): -100.0, lab(job="b"): -50.0}
    assert instant(src, "2 ^ 3 - time()", 5 * S).series[0].values[0] == 3.0


def test_one_to_one_matching(src: MemorySource) -> None:
    # One-to-one results lose the ignored labels (and keep only the on() ones).
    got = as_dict(instant(src, "req_total / ignoring(inst) quota", 10 * M))
    assert got == {lab(job="a"): 4.0, lab(job="b"): 4.0}
    got = as_dict(instant(src, "req_total > on(job) quota", 10 * M))
    assert got == {lab(job="a"): 400.0, lab(job="b"): 200.0}
    assert as_dict(instant(src, "req_total / quota", 10 * M)) == {}


def test_group_left_with_extra_labels() -> None:
    src = MemorySource([
        series(lab("used", job="a", disk="1"), 0, M, [10.0]),
        series(lab("used", job="a", disk="2"), 0, M, [30.0]),
        series(lab("info", job="a", owner="ops"), 0, M, [1.0]),
    ])
    got = as_dict(instant(src, "used * on(job) group_left(owner) info", 0))
    assert got == {lab(job="a", disk="1", owner="ops"): 10.0,
                   lab(job="a", disk="2", owner="ops"): 30.0}
    got = as_dict(instant(src, "info * on(job) group_right used", 0))
    assert got == {lab(job="a", disk="1"): 10.0, lab(job="a", disk="2"): 30.0}


def test_matching_errors_have_prometheus_wording() -> None:
    src = MemorySource([
        series(lab("used", job="a", disk="1"), 0, M, [10.0]),
        series(lab("used", job="a", disk="2"), 0, M, [30.0]),
        series(lab("free", job="a", disk="1"), 0, M, [5.0]),
        series(lab("info", job="a", owner="ops"), 0, M, [1.0]),
    ])
    with pytest.raises(EvalError) as exc:
        instant(src, "info * on(job) used", 0)
    assert str(exc.value) == (
        'found duplicate series for the match group {job="a"} on the right hand-side of the '
        'operation: [{__name__="used", disk="2", job="a"}, {__name__="used", disk="1", '
        'job="a"}];many-to-many matching not allowed: matching labels must be unique on one side')
    with pytest.raises(EvalError, match="multiple matches for labels: many-to-one matching must "
                                        r"be explicit \(group_left/group_right\)"):
        instant(src, "used * on(job) info", 0)
    with pytest.raises(EvalError, match="multiple matches for labels: grouping labels must "
                                        "ensure unique matches"):
        # used and free on disk 1 both become {disk="1", job="a"} once the name goes.
        instant(src, '{__name__=~"used|free"} * on(job) group_left info', 0)


def test_matching_error_of_the_earliest_step_wins() -> None:
    src = MemorySource([
        series(lab("a", job="x", i="1"), 0, M, [1.0]),
        series(lab("a", job="x", i="2"), 0, M, [1.0]),
        series(lab("a", job="x", i="3"), 10 * M, M, [1.0]),
        series(lab("b", job="x", k="1"), 0, 10 * M, [1.0, 1.0]),
        series(lab("b", job="x", k="2"), 10 * M, M, [1.0]),
    ])
    # At 0 two left-hand series match one right-hand one; at 10m the right side has two.
    with pytest.raises(EvalError, match="many-to-one matching must be explicit"):
        ranged(src, "a * on(job) b", 0, 10 * M, 10 * M)
    with pytest.raises(EvalError, match="found duplicate series for the match group"):
        ranged(src, "a * on(job) b", 5 * M, 10 * M, 5 * M)


def test_set_operators(src: MemorySource) -> None:
    got = as_dict(instant(src, 'quota and on(job) req_total{job="a"}', M))
    assert got == {lab("quota", job="a"): 100.0}
    got = as_dict(instant(src, 'quota unless on(job) req_total{job="a"}', M))
    assert got == {lab("quota", job="b"): 50.0}
    got = as_dict(instant(src, 'quota{job="a"} or gauge or quota', M))
    assert got == {lab("quota", job="a"): 100.0, lab("quota", job="b"): 50.0}


def test_or_fills_in_per_step(src: MemorySource) -> None:
    res = ranged(src, "gauge or quota * 0", 0, 10 * M, M)
    got = points(res)
    # gauge (samples at 0, 1m, 2m, 8m) is visible for 5m after 2m, so it is missing at
    # 7m only; the right-hand side (same job="a" signature) fills just that step.
    assert got[lab("gauge", job="a")] == [(0, 1.0), (M, 5.0)] + [
        (t * M, 2.0) for t in range(2, 7)] + [(t * M, 7.0) for t in (8, 9, 10)]
    assert got[lab(job="a")] == [(7 * M, 0.0)]
    assert got[lab(job="b")] == [(t * M, 0.0) for t in range(11)]


def test_names_dropped_at_the_end_and_collisions_fail(src: MemorySource) -> None:
    with pytest.raises(EvalError, match="vector cannot contain metrics with the same labelset"):
        instant(src, '-{__name__=~"quota|gauge", job="a"}', M)
    # Rows that become identical but never overlap in time are one series.
    src.add(series(lab("early", job="z"), 0, M, [1.0]))
    src.add(series(lab("late", job="z"), 20 * M, M, [2.0]))
    res = ranged(src, '-{__name__=~"early|late"}', 0, 20 * M, 10 * M)
    assert points(res) == {lab(job="z"): [(0, -1.0), (20 * M, -2.0)]}
    res = instant(src, '(-{__name__=~"early|late"})[30m:10m]', 20 * M)
    assert res.kind == "matrix"
    assert points(res) == {lab(job="z"): [(0, -1.0), (20 * M, -2.0)]}


@pytest.mark.parametrize(("values", "want"), [
    ([-1.0, 1.0], lab(job="a")),       # first point from -x: the series loses its name
    ([1.0, -1.0], lab("x", job="a")),  # first point from x: the series keeps it
])
def test_one_series_takes_the_name_flag_of_its_first_point(values: list[float],
                                                           want: Labels) -> None:
    """Prometheus 3 keys a range result by labels, name included, until the query ends.

    ``-x`` (name to be dropped) and ``x`` have the same labels while the query runs,
    so ``or`` makes one series of them; rangeEval keeps the flag of its first sample.
    """
    src = MemorySource([series(lab("x", job="a"), 0, M, values)])
    res = ranged(src, "(-x and x < 0) or x", 0, M, M)
    assert points(res) == {want: [(0, 1.0), (M, 1.0)]}


def test_timestamp_of_selector_and_of_expression(src: MemorySource) -> None:
    assert as_dict(instant(src, "timestamp(gauge)", 150 * S)) == {lab(job="a"): 120.0}
    assert as_dict(instant(src, "timestamp(gauge * 1)", 150 * S)) == {lab(job="a"): 150.0}


def test_weighted_sums_the_weights_of_the_conditions_that_hold() -> None:
    src = MemorySource([
        series(lab("cpu", host="h1"), 0, M, [95.0]),
        series(lab("mem", host="h1"), 0, M, [85.0]),
        series(lab("cpu", host="h2"), 0, M, [10.0]),
        series(lab("mem", host="h2"), 0, M, [90.0]),
    ])
    got = as_dict(instant(src, "weighted(0.6: cpu > 90, 0.4: mem > 80)", 0))
    assert got == {lab(host="h1"): pytest.approx(1.0), lab(host="h2"): 0.4}


def test_sort_warns_only_where_it_cannot_order(src: MemorySource) -> None:
    warning = ("PromQL warning: sort is ineffective for range queries since results are "
               "always ordered by labels (1:5)")
    assert ranged(src, "sum(sort(quota))", 0, M, M).warnings == [warning]
    assert ranged(src, "sum(sort(quota))", M, M, M).warnings == []
    assert instant(src, "sum(sort(quota))", M).warnings == []


def test_a_function_no_evaluator_runs_is_refused_by_name(src: MemorySource) -> None:
    node = ir.Call("info", (ir.Selector("gauge", (("__name__", "=", "gauge"),)),))
    with pytest.raises(EvalError, match=r"^function info\(\) is not supported$"):
        evaluate(node, src, 0, 0, 1, instant=True)


def test_query_functions(src: MemorySource) -> None:
    res = ranged(src, "range() + step() + start() - end()", 60 * S, 180 * S, 60 * S)
    # range 120s, step 60s, start 60s, end 180s.
    assert points(res) == {(): [(t * S, 120.0 + 60.0 + 60.0 - 180.0) for t in (60, 120, 180)]}


# ---------------------------------------------------------------- sharing


class CountingSource:
    """A source that counts reads per matcher set."""

    def __init__(self, inner: MemorySource) -> None:
        self.inner = inner
        self.calls: dict[tuple[Matcher, ...], int] = {}

    def select(self, matchers: Sequence[Matcher], mint_ms: int, maxt_ms: int) -> list[Series]:
        key = tuple(matchers)
        self.calls[key] = self.calls.get(key, 0) + 1
        return self.inner.select(matchers, mint_ms, maxt_ms)


def test_evaluate_many_reads_each_selector_once_and_matches_single_queries(
        src: MemorySource) -> None:
    texts = ["rate(req_total[1m]) > 0.5", "rate(req_total[5m])", "req_total / ignoring(inst) "
             "quota", "rate(req_total[1m]) * 2", "max_over_time(req_total[2m:30s])"]
    nodes = [node_of(t) for t in texts]
    counting = CountingSource(src)
    results = evaluate_many(nodes, counting, 0, 10 * M, 30 * S)
    assert counting.calls == {(("__name__", "=", "req_total"),): 1,
                              (("__name__", "=", "quota"),): 1}
    for text, node in zip(texts, nodes, strict=True):
        single = ranged(src, text, 0, 10 * M, 30 * S)
        assert points(results[node]) == points(single), text


def test_evaluate_many_reports_annotations_of_shared_parts_to_each_user(
        src: MemorySource) -> None:
    first, second = node_of("rate(gauge[5m]) > 0"), node_of("rate(gauge[5m]) < 100")
    out = evaluate_many([first, second], src, 0, 10 * M, M)
    for node in (first, second):
        assert out[node].infos == ["PromQL info: metric might not be a counter, name does not "
                                   'end in _total/_sum/_count/_bucket: "gauge"']


def test_evaluate_many_keeps_other_results_when_one_fails(src: MemorySource) -> None:
    bad = node_of('-{__name__=~"quota|gauge", job="a"}')
    good = node_of("quota")
    out = evaluate_many([bad, good], src, 0, M, M)
    assert out[bad].series == [] and "vector cannot contain" in out[bad].warnings[0]
    assert len(out[good].series) == 2


# ---------------------------------------------------------------- properties

EXPRESSIONS = [
    "gauge", "gauge offset 1m", "rate(req_total[1m])", "sum_over_time(gauge[2m])",
    "req_total / ignoring(inst) quota", "gauge > bool 1.5", "quota > 60 or gauge",
    "max_over_time(gauge[3m:45s])", "deriv(req_total[3m])", "-gauge",
    "quota unless on(job) gauge", "timestamp(gauge)", "irate(req_total[2m] offset 30s)",
    "count_over_time(req_total[1m:20s] offset 10s)",
]


@settings(max_examples=30, deadline=None)
@given(text=st.sampled_from(EXPRESSIONS), start=st.integers(-2, 12), count=st.integers(1, 8),
       step=st.sampled_from([7, 15, 60, 100]))
def test_range_query_equals_instant_queries_at_each_step(text: str, start: int, count: int,
                                                        step: int) -> None:
    src = MemorySource([
        series(lab("req_total", job="a", inst="0"), 0, 15 * S, [10.0 * i for i in range(41)]),
        series(lab("quota", job="a"), 0, 15 * S, [100.0] * 41),
        series(lab("gauge", job="a"), 0, M, [1.0, 5.0, STALE_NAN, None, 3.0, 2.0]),
    ])
    begin = start * 30 * S
    end = begin + (count - 1) * step * S
    res = ranged(src, text, begin, end, step * S)
    by_step: dict[int, dict[Labels, float]] = {}
    for s in res.series:
        for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
            by_step.setdefault(t, {})[s.labels] = v
    for t in range(begin, end + 1, step * S):
        single = instant(src, text, t)
        want = {s.labels: float(s.values[0]) for s in single.series}
        assert by_step.get(t, {}) == pytest.approx(want, nan_ok=True), (text, t)


# ---------------------------------------------------------------- the DuckDB store


def test_store_and_memory_source_give_the_same_results(tmp_path: Path) -> None:
    data = [
        series(lab("req_total", job="a"), 0, 15 * S, [10.0 * i for i in range(41)]),
        series(lab("req_total", job="b"), 0, 15 * S, [5.0 * i for i in range(20)] + [STALE_NAN]),
        series(lab("quota", job="a"), 0, 15 * S, [100.0] * 41),
    ]
    mem = MemorySource(data)
    with Store(tmp_path / "m.duckdb") as store:
        store.append_series(data)
        for text in ["req_total", "rate(req_total[1m])", "req_total / on(job) quota",
                     "max_over_time(req_total[2m:30s])"]:
            node = node_of(text)
            got = evaluate(node, store, 0, 10 * M, 30 * S)
            want = evaluate(node, mem, 0, 10 * M, 30 * S)
            assert points(got) == points(want), text
            assert got.series, text


def test_empty_store_range_gives_empty_matrix(tmp_path: Path) -> None:
    with Store(tmp_path / "e.duckdb") as store:
        res = evaluate(node_of("rate(x[5m])"), store, 0, 10 * M, M)
    assert res.kind == "matrix" and res.series == []
    assert np.array_equal(res.steps, np.arange(0, 11 * M, M))
