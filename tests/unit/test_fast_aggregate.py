"""Aggregations of the vectorised evaluator: hand-checked cases and a per-step cross-check.

The hand-checked values follow Prometheus 3's aggregation code
(``promql/engine.go``): Kahan sums, the direct mean with its incremental
fallback, Welford's variance, NaN ordering in min/max/topk/bottomk/quantile,
and its errors and warnings. The property tests compare the vectorised
result, computed for all steps at once, with a plain per-step Python
transcription of the same Go code.
"""

from __future__ import annotations

import math
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_expression
from monitoring.engine.fast import aggregate as aggregate_module
from monitoring.engine.fast.aggregate import aggregate, go_g, kahan_inc
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.labels import format_go_float, labels_hash
from monitoring.engine.fast.values import Grid, Scalar, String, Value, Vector
from monitoring.engine.model import EvalError, Labels
from tests.support.vectors import Cell, lab, vec

NAN = math.nan
INF = math.inf




def node(text: str) -> ir.Aggregate:
    n, diagnostics = compile_expression(text)
    assert isinstance(n, ir.Aggregate), diagnostics
    return n


def ctx(steps: int = 1) -> Context:
    return Context(Grid(0, 60_000, steps) if steps > 1 else Grid(0, 1, 1))


def run(text: str, v: Vector, param: Value | None = None,
        context: Context | None = None) -> dict[Labels, list[Cell]]:
    n = node(text)
    if param is None and isinstance(n.param, ir.Const):
        param = Scalar(np.full(v.steps, n.param.value))
    if param is None and isinstance(n.param, ir.Neg) and isinstance(n.param.expr, ir.Const):
        param = Scalar(np.full(v.steps, -n.param.expr.value))
    if param is None and isinstance(n.param, ir.StringConst):
        param = String(n.param.value)
    out = aggregate(n, v, param, context or ctx(v.steps))
    return cells(out)


def cells(out: Vector) -> dict[Labels, list[Cell]]:
    result: dict[Labels, list[Cell]] = {}
    for i, labels in enumerate(out.labels):
        assert labels not in result, f"duplicate row {labels}"
        result[labels] = [float(out.values[i, s]) if out.present[i, s] else None
                          for s in range(out.steps)]
    return result


def same(a: Cell, b: Cell) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


HTTP = [
    (lab("http_requests", job="api", instance="0", group="production"), [100.0]),
    (lab("http_requests", job="api", instance="1", group="production"), [200.0]),
    (lab("http_requests", job="api", instance="0", group="canary"), [300.0]),
    (lab("http_requests", job="api", instance="1", group="canary"), [400.0]),
    (lab("http_requests", job="app", instance="0", group="production"), [500.0]),
    (lab("http_requests", job="app", instance="1", group="production"), [600.0]),
    (lab("http_requests", job="app", instance="0", group="canary"), [700.0]),
    (lab("http_requests", job="app", instance="1", group="canary"), [800.0]),
]


# ---------------------------------------------------------------- grouping


def test_sum_by_keeps_only_the_listed_labels() -> None:
    assert run("sum by (job) (http_requests)", vec(HTTP)) == {
        lab(job="api"): [1000.0], lab(job="app"): [2600.0]}


def test_without_drops_the_labels_and_the_metric_name() -> None:
    assert run("sum without (instance) (http_requests)", vec(HTTP)) == {
        lab(job="api", group="production"): [300.0],
        lab(job="api", group="canary"): [700.0],
        lab(job="app", group="production"): [1100.0],
        lab(job="app", group="canary"): [1500.0]}


def test_no_grouping_and_grouping_on_missing_labels_give_one_group() -> None:
    assert run("sum(http_requests)", vec(HTTP)) == {(): [3600.0]}
    assert run("count by (nonexistent) (http_requests)", vec(HTTP)) == {(): [8.0]}


def test_by_metric_name_keeps_it_and_passes_the_drop_flag_on() -> None:
    v = vec([(lab("a", x="1"), [1.0]), (lab("a", x="2"), [2.0])], drop=[True, False])
    out = aggregate(node("sum by (__name__) (a)"), v, None, ctx())
    assert out.labels == [lab("a")]
    assert out.drop_name.tolist() == [True]


def test_each_step_aggregates_only_the_rows_present_there() -> None:
    v = vec([(lab("m", a="x"), [1.0, None, 3.0, None]),
             (lab("m", a="y"), [10.0, 20.0, None, None])])
    assert run("sum(m)", v) == {(): [11.0, 20.0, 3.0, None]}
    assert run("count(m)", v) == {(): [2.0, 1.0, 1.0, None]}
    assert run("group(m)", v) == {(): [1.0, 1.0, 1.0, None]}
    assert run("avg(m)", v) == {(): [5.5, 20.0, 3.0, None]}


def test_empty_input_gives_an_empty_result() -> None:
    assert run("sum(m)", Vector.empty(3)) == {}
    assert run("topk(2, m)", Vector.empty(3)) == {}


# ---------------------------------------------------------------- numerics


def test_sum_is_kahan_compensated() -> None:
    v = vec([(lab(i=str(i)), [x]) for i, x in enumerate([1e100, 1.0, -1e100])])
    assert run("sum(m)", v) == {(): [1.0]}


def test_sum_with_infinities_and_nan() -> None:
    v = vec([(lab(i="0"), [INF, INF, 1.0]), (lab(i="1"), [-INF, 1.0, NAN])])
    out = run("sum(m)", v)[()]
    assert out[0] is not None and math.isnan(out[0])
    assert out[1] == INF
    assert out[2] is not None and math.isnan(out[2])


def test_sum_adds_the_compensation_term_at_the_end() -> None:
    # Prometheus returns value + compensation, so even a lone -0 comes out as +0.
    out = aggregate(node("sum(m)"), vec([(lab(i="0"), [-0.0])]), None, ctx())
    assert math.copysign(1.0, float(out.values[0, 0])) == 1.0


def test_avg_falls_back_to_an_incremental_mean_on_overflow() -> None:
    v = vec([(lab(i=str(i)), [x]) for i, x in enumerate([1e308, 1e308, 1e308, -1e308])])
    assert run("avg(m)", v) == {(): [5e307]}


def test_avg_is_a_kahan_mean() -> None:
    v = vec([(lab(i=str(i)), [x]) for i, x in enumerate([1e100, 1.0, -1e100, 2.0])])
    assert run("avg(m)", v) == {(): [0.75]}


def test_min_and_max_ignore_nan_unless_everything_is_nan() -> None:
    v = vec([(lab(i="0"), [NAN, NAN, 3.0]), (lab(i="1"), [2.0, NAN, NAN]),
             (lab(i="2"), [5.0, NAN, -1.0])])
    mx = run("max(m)", v)[()]
    mn = run("min(m)", v)[()]
    assert mx[0] == 5.0 and mx[2] == 3.0 and mn[0] == 2.0 and mn[2] == -1.0
    assert mx[1] is not None and math.isnan(mx[1])
    assert mn[1] is not None and math.isnan(mn[1])


def test_stddev_and_stdvar() -> None:
    v = vec([(lab(i=str(i)), [x]) for i, x in enumerate([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0,
                                                          9.0])])
    assert run("stdvar(m)", v) == {(): [4.0]}
    assert run("stddev(m)", v) == {(): [2.0]}


def test_stddev_of_one_sample_is_zero_and_infinite_samples_give_nan() -> None:
    assert run("stddev(m)", vec([(lab(i="0"), [42.0])])) == {(): [0.0]}
    out = run("stdvar(m)", vec([(lab(i="0"), [INF]), (lab(i="1"), [1.0])]))[()]
    assert out[0] is not None and math.isnan(out[0])


# ---------------------------------------------------------------- quantile


def test_quantile_interpolates_between_ranks() -> None:
    v = vec([(lab(i=str(i)), [x]) for i, x in enumerate([10.0, 40.0, 20.0, 30.0])])
    assert run("quantile(0.5, m)", v) == {(): [25.0]}
    assert run("quantile(0.75, m)", v) == {(): [32.5]}
    assert run("quantile(0, m)", v) == {(): [10.0]}
    assert run("quantile(1, m)", v) == {(): [40.0]}


def test_quantile_sorts_nan_lowest() -> None:
    v = vec([(lab(i="0"), [NAN]), (lab(i="1"), [1.0]), (lab(i="2"), [2.0])])
    assert run("quantile(1, m)", v) == {(): [2.0]}
    assert run("quantile(0.75, m)", v) == {(): [1.5]}
    low = run("quantile(0.25, m)", v)[()][0]
    assert low is not None and math.isnan(low)


def test_quantile_out_of_range_warns_and_gives_infinities() -> None:
    v = vec([(lab(i="0"), [1.0]), (lab(i="1"), [2.0])])
    c = ctx()
    assert run("quantile(2, m)", v, context=c) == {(): [INF]}
    assert run("quantile(-1, m)", v, Scalar(np.array([-1.0])), context=c) == {(): [-INF]}
    assert c.warnings == [
        "PromQL warning: quantile value should be between 0 and 1, got 2",
        "PromQL warning: quantile value should be between 0 and 1, got -1"]


def test_quantile_nan_parameter_warns_even_without_input() -> None:
    c = ctx()
    assert run("quantile(NaN, m)", Vector.empty(1), context=c) == {}
    assert c.warnings == ["PromQL warning: quantile value should be between 0 and 1, got NaN"]


def test_quantile_range_warnings_use_go_max_and_min_over_the_steps() -> None:
    v = vec([(lab(i="0"), [1.0, 1.0, 1.0])])
    c = ctx(3)
    run("quantile(0.5, m)", v, Scalar(np.array([0.5, NAN, 2.0])), context=c)
    # math.Max(NaN, 2) is NaN, so only the NaN warning is given.
    assert c.warnings == ["PromQL warning: quantile value should be between 0 and 1, got NaN"]
    c = ctx(3)
    run("quantile(0.5, m)", v, Scalar(np.array([2.0, -1.5, 0.5])), context=c)
    assert c.warnings == [
        "PromQL warning: quantile value should be between 0 and 1, got 2",
        "PromQL warning: quantile value should be between 0 and 1, got -1.5"]


def test_quantile_parameter_per_step() -> None:
    v = vec([(lab(i="0"), [1.0, 1.0]), (lab(i="1"), [3.0, 3.0])])
    assert run("quantile(0.5, m)", v, Scalar(np.array([0.0, 0.5]))) == {(): [1.0, 2.0]}


# ---------------------------------------------------------------- topk and friends


def test_topk_keeps_the_series_and_orders_an_instant_result() -> None:
    out = aggregate(node("topk(3, http_requests)"), vec(HTTP), Scalar(np.array([3.0])), ctx())
    assert [float(x) for x in out.values[:, 0]] == [800.0, 700.0, 600.0]
    assert out.labels[0] == HTTP[7][0]
    out = aggregate(node("bottomk(2, http_requests)"), vec(HTTP), Scalar(np.array([2.0])),
                    ctx())
    assert out.labels == [HTTP[0][0], HTTP[1][0]]


def test_topk_by_group_orders_groups_by_first_appearance() -> None:
    out = aggregate(node("topk by (group) (1, http_requests)"), vec(HTTP),
                    Scalar(np.array([1.0])), ctx())
    assert out.labels == [HTTP[5][0], HTTP[7][0]]


def test_topk_and_bottomk_put_nan_last() -> None:
    rows = [(lab("m", i="0"), [100.0]), (lab("m", i="1"), [200.0]), (lab("m", i="2"), [NAN])]
    top = aggregate(node("topk(3, m)"), vec(rows), Scalar(np.array([3.0])), ctx())
    bottom = aggregate(node("bottomk(3, m)"), vec(rows), Scalar(np.array([3.0])), ctx())
    assert [r[1][1] for r in top.labels] == ["1", "0", "2"]
    assert [r[1][1] for r in bottom.labels] == ["0", "1", "2"]
    one = aggregate(node("topk(1, m)"), vec(rows), Scalar(np.array([1.0])), ctx())
    assert one.labels == [rows[1][0]]


def test_topk_keeps_the_name_flag_of_each_selected_series() -> None:
    v = vec([(lab("m", i="0"), [1.0]), (lab("m", i="1"), [2.0])], drop=[True, False])
    out = aggregate(node("topk(2, m)"), v, Scalar(np.array([2.0])), ctx())
    assert dict(zip(out.labels, out.drop_name.tolist(), strict=True)) == {
        lab("m", i="0"): True, lab("m", i="1"): False}


def test_topk_k_varies_per_step() -> None:
    v = vec([(lab(i="0"), [1.0, 1.0, 1.0]), (lab(i="1"), [2.0, 2.0, 2.0]),
             (lab(i="2"), [3.0, None, 0.5])])
    k = Scalar(np.array([0.0, 1.9, 2.0]))
    assert run("topk(1, m)", v, k) == {
        lab(i="1"): [None, 2.0, 2.0], lab(i="0"): [None, None, 1.0]}


def test_k_parameter_errors() -> None:
    with pytest.raises(EvalError, match=r"^Parameter value is NaN$"):
        run("topk(NaN, m)", Vector.empty(1))
    with pytest.raises(EvalError, match=r"^Parameter value is NaN$"):
        run("limitk(1, m)", Vector.empty(2), Scalar(np.array([1.0, NAN])))
    with pytest.raises(EvalError, match=r"^Ratio value is NaN$"):
        run("limit_ratio(NaN, m)", Vector.empty(1))
    with pytest.raises(EvalError, match=r"^Scalar value 1e\+19 overflows int64$"):
        run("topk(1e19, m)", Vector.empty(1))
    assert run("topk(0, m)", vec(HTTP)) == {}


def test_limitk_takes_the_first_k_present_series() -> None:
    v = vec([(lab(i="0"), [None, 5.0]), (lab(i="1"), [2.0, 6.0]), (lab(i="2"), [3.0, 7.0])])
    assert run("limitk(1, m)", v) == {lab(i="1"): [2.0, None], lab(i="0"): [None, 5.0]}


def test_limitk_instant_result_is_in_go_heap_order() -> None:
    # Go pushes each kept sample onto a min-heap (the first one is placed directly),
    # and an instant query returns the heap's slice as it stands.
    v = vec([(lab(i="0"), [5.0]), (lab(i="1"), [1.0]), (lab(i="2"), [3.0]),
             (lab(i="3"), [2.0])])
    out = aggregate(node("limitk(3, m)"), v, Scalar(np.array([3.0])), ctx())
    assert [dict(x)["i"] for x in out.labels] == ["1", "0", "2"]


def test_limit_ratio_samples_by_label_hash_and_its_complement() -> None:
    rows = [(lab("m", i=str(i)), [float(i)]) for i in range(40)]
    half = set(run("limit_ratio(0.5, m)", vec(rows)))
    rest = set(run("limit_ratio(-0.5, m)", vec(rows)))
    assert half | rest == {r[0] for r in rows} and not half & rest
    expected = {r[0] for r in rows if labels_hash(r[0]) / float(2**64 - 1) < 0.5}
    assert half == expected
    assert set(run("limit_ratio(1, m)", vec(rows))) == {r[0] for r in rows}


def test_limit_ratio_above_one_warns_and_caps() -> None:
    c = ctx()
    out = run("limit_ratio(1.5, m)", vec(HTTP), context=c)
    assert len(out) == len(HTTP)
    assert c.warnings == [
        "PromQL warning: ratio value should be between -1 and 1, got 1.5, capping to 1"]


# ---------------------------------------------------------------- count_values


def test_count_values_counts_per_value_and_group() -> None:
    v = vec([(lab("v", job="a", i="0"), [1.0, 2.0]), (lab("v", job="a", i="1"), [1.0, 1.0]),
             (lab("v", job="b", i="0"), [0.5, None])])
    assert run('count_values("value", v)', v) == {
        lab(value="1"): [2.0, 1.0], lab(value="2"): [None, 1.0], lab(value="0.5"): [1.0, None]}
    assert run('count_values by (job) ("value", v)', v) == {
        lab(job="a", value="1"): [2.0, 1.0], lab(job="a", value="2"): [None, 1.0],
        lab(job="b", value="0.5"): [1.0, None]}
    assert run('count_values without (i) ("job", v)', v) == {
        lab(job="1"): [2.0, 1.0], lab(job="2"): [None, 1.0], lab(job="0.5"): [1.0, None]}


def test_count_values_formats_like_go() -> None:
    v = vec([(lab(i="0"), [1e21]), (lab(i="1"), [-0.0]), (lab(i="2"), [NAN]),
             (lab(i="3"), [INF]), (lab(i="4"), [0.1])])
    assert set(run('count_values("x", v)', v)) == {
        lab(x="1000000000000000000000"), lab(x="-0"), lab(x="NaN"), lab(x="+Inf"),
        lab(x="0.1")}


def test_count_values_rejects_an_invalid_label_name() -> None:
    with pytest.raises(EvalError, match=r'^invalid label name "a\\xc5z"$'):
        run('count_values("a\\xc5z", v)', vec(HTTP))


# ---------------------------------------------------------------- helpers


def test_go_number_formats() -> None:
    assert [go_g(x) for x in (2.0, 0.5, 1e6, 123456.0, 1e-5, NAN, -INF)] == [
        "2", "0.5", "1e+06", "123456", "1e-05", "NaN", "-Inf"]
    assert go_g(1e19) == "1e+19"
    assert go_g(-1234567.5) == "-1.2345675e+06"


def test_kahan_inc_matches_the_scalar_definition() -> None:
    total, comp = kahan_inc(np.array([1.0]), np.array([1e100]), np.array([0.0]))
    total, comp = kahan_inc(np.array([-1e100]), total, comp)
    assert float(total[0] + comp[0]) == 1.0


# ---------------------------------------------------------------- per-step cross-check


def _kahan(inc: float, total: float, c: float) -> tuple[float, float]:
    t = total + inc
    if math.isinf(t):
        c = 0.0
    elif abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def _naive_simple(op: str, samples: list[float]) -> float:
    """engine.go's aggregation() for one group at one step, sample by sample."""
    f = samples[0]
    value, mean, comp, count, incremental = f, f, 0.0, 1.0, False
    if op in ("stddev", "stdvar"):
        value = math.nan if math.isnan(f) or math.isinf(f) else 0.0
    for f in samples[1:]:
        if op == "sum":
            value, comp = _kahan(f, value, comp)
        elif op == "avg":
            count += 1
            if not incremental:
                nv, nc = _kahan(f, value, comp)
                if not math.isinf(nv):
                    value, comp = nv, nc
                    continue
                incremental = True
                mean = value / (count - 1)
                comp /= count - 1
            q = (count - 1) / count
            mean, comp = _kahan(f / count, q * mean, q * comp)
        elif op == "max":
            if value < f or math.isnan(value):
                value = f
        elif op == "min":
            if value > f or math.isnan(value):
                value = f
        elif op == "count":
            count += 1
        elif op in ("stddev", "stdvar"):
            count += 1
            delta = f - mean
            mean += delta / count
            value += delta * (f - mean)
    if op == "sum":
        return value + comp
    if op == "avg":
        return mean + comp if incremental else value / count + comp / count
    if op == "count":
        return count
    if op == "group":
        return 1.0
    if op == "stdvar":
        return value / count
    if op == "stddev":
        return math.sqrt(value / count)
    return value


def _naive_quantile(q: float, samples: list[float]) -> float:
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(samples, key=lambda x: (0, 0.0) if math.isnan(x) else (1, x))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


def _naive(op: str, rows: list[tuple[Labels, list[Cell]]], by: tuple[str, ...],
           param: list[float]) -> dict[Labels, list[Cell]]:
    steps = len(rows[0][1])
    out: dict[Labels, list[Cell]] = {}
    for s in range(steps):
        groups: dict[Labels, list[float]] = {}
        for labels, cs in rows:
            c = cs[s]
            if c is None:
                continue
            key = tuple(p for p in labels if p[0] in by)
            groups.setdefault(key, []).append(c)
        for key, samples in groups.items():
            if op == "quantile":
                value = _naive_quantile(param[s], samples)
            else:
                value = _naive_simple(op, samples)
            out.setdefault(key, [None] * steps)[s] = value
    return out


def _naive_k(op: str, rows: list[tuple[Labels, list[Cell]]], by: tuple[str, ...],
             param: list[float]) -> dict[Labels, list[Cell]]:
    steps = len(rows[0][1])
    out: dict[Labels, list[Cell]] = {}
    for s in range(steps):
        k = int(param[s])
        if k < 1:
            continue
        groups: dict[Labels, list[tuple[Labels, float]]] = {}
        for labels, cs in rows:
            c = cs[s]
            if c is not None:
                key = tuple(p for p in labels if p[0] in by)
                groups.setdefault(key, []).append((labels, c))
        for members in groups.values():
            if op == "limitk":
                chosen = members[:k]
            else:
                sign = -1.0 if op == "topk" else 1.0
                ranked = sorted(members, key=lambda m: (1, 0.0) if math.isnan(m[1])
                                else (0, sign * m[1]))
                chosen = ranked[:k]
            for labels, value in chosen:
                out.setdefault(labels, [None] * steps)[s] = value
    return out


def _naive_count_values(rows: list[tuple[Labels, list[Cell]]],
                        by: tuple[str, ...]) -> dict[Labels, list[Cell]]:
    steps = len(rows[0][1])
    out: dict[Labels, list[Cell]] = {}
    for s in range(steps):
        counts: dict[Labels, int] = {}
        for labels, cs in rows:
            c = cs[s]
            if c is None:
                continue
            key = tuple(sorted([p for p in labels if p[0] in by and p[0] != "v"]
                               + [("v", format_go_float(c))]))
            counts[key] = counts.get(key, 0) + 1
        for key, n in counts.items():
            out.setdefault(key, [None] * steps)[s] = float(n)
    return out


cell_values = st.one_of(
    st.none(),
    # Big values of both signs make the Kahan compensation matter.
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, NAN, INF, -INF, 1e308, -1e308, 1e100, -1e100,
                     3.0]),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
)


@st.composite
def matrices(draw: st.DrawFn) -> list[tuple[Labels, list[Cell]]]:
    steps = draw(st.integers(1, 5))
    n = draw(st.integers(1, 8))
    rows = []
    for i in range(n):
        labels = lab("m", i=str(i), a=draw(st.sampled_from(["x", "y", "z"])),
                     b=draw(st.sampled_from(["p", "q"])))
        rows.append((labels, draw(st.lists(cell_values, min_size=steps, max_size=steps))))
    return rows


def _check(ours: dict[Labels, list[Cell]], theirs: dict[Labels, list[Cell]]) -> None:
    assert set(ours) == set(theirs)
    for key, row in theirs.items():
        assert all(same(a, b) for a, b in zip(ours[key], row, strict=True)), (key, ours[key],
                                                                               row)


@settings(max_examples=150, deadline=None)
@given(rows=matrices(),
       op=st.sampled_from(["sum", "avg", "count", "group", "min", "max", "stddev", "stdvar",
                           "quantile"]),
       by=st.sampled_from([(), ("a",), ("a", "b")]),
       q=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0, NAN, -0.5, 1.5]), min_size=5,
                  max_size=5),
       row_wise=st.booleans())
def test_vectorised_aggregation_matches_per_step_evaluation(
        rows: list[tuple[Labels, list[Cell]]], op: str, by: tuple[str, ...],
        q: list[float], row_wise: bool) -> None:
    steps = len(rows[0][1])
    text = f"{op} by ({', '.join(by)}) ({'0.5, ' if op == 'quantile' else ''}m)"
    param = Scalar(np.array(q[:steps])) if op == "quantile" else None
    # Both ways of folding order-free reductions (row by row for long rows, segment
    # reductions for short ones) must give the per-step result.
    with patch.object(aggregate_module, "ROW_WISE_MIN_STEPS", 1 if row_wise else 10**9):
        ours = run(text, vec(rows), param)
    _check(ours, _naive(op, rows, by, q[:steps]))


@settings(max_examples=100, deadline=None)
@given(rows=matrices(), op=st.sampled_from(["topk", "bottomk", "limitk"]),
       by=st.sampled_from([(), ("a",), ("b",)]),
       k=st.lists(st.sampled_from([0.0, 1.0, 2.0, 2.7, 3.0, 10.0]), min_size=5, max_size=5))
def test_vectorised_topk_matches_per_step_evaluation(
        rows: list[tuple[Labels, list[Cell]]], op: str, by: tuple[str, ...],
        k: list[float]) -> None:
    steps = len(rows[0][1])
    text = f"{op} by ({', '.join(by)}) (1, m)"
    _check(run(text, vec(rows), Scalar(np.array(k[:steps]))),
           _naive_k(op, rows, by, k[:steps]))


@settings(max_examples=60, deadline=None)
@given(rows=matrices(), by=st.sampled_from([(), ("a",), ("a", "b")]))
def test_vectorised_count_values_matches_per_step_evaluation(
        rows: list[tuple[Labels, list[Cell]]], by: tuple[str, ...]) -> None:
    text = f'count_values by ({", ".join(by)}) ("v", m)'
    _check(run(text, vec(rows)), _naive_count_values(rows, by))
