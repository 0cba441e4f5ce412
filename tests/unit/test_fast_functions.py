"""Instant functions of the vectorised evaluator: hand-checked cases and per-step cross-checks.

Expected values follow ``promql/functions.go`` and ``promql/quantile.go`` of
Prometheus 3: which functions flag the metric name for removal, Go's rounding,
clamping and date arithmetic, ``label_replace`` template expansion, the sort
orders (NaN last), and classic ``histogram_quantile`` with its monotonicity
fix. Property tests compare the all-steps-at-once results with a plain
per-step transcription of the Go code (or Python's ``datetime``).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_expression
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.functions import INSTANT_FUNCTIONS, absent_labels, expand_template
from monitoring.engine.fast.values import Grid, Scalar, String, Value, Vector
from monitoring.engine.model import EvalError, Labels
from tests.support.vectors import Cell, lab, vec

NAN = math.nan
INF = math.inf




def scalar(*values: float) -> Scalar:
    return Scalar(np.array(values, dtype=np.float64))


def call(text: str, args: list[Value], context: Context | None = None) -> Value:
    n, diagnostics = compile_expression(text)
    assert isinstance(n, ir.Call), diagnostics
    steps = next((a.steps for a in args if isinstance(a, Vector)),
                 next((len(a.values) for a in args if isinstance(a, Scalar)), 1))
    c = context or Context(Grid(0, 60_000, steps) if steps > 1 else Grid(0, 1, 1))
    return INSTANT_FUNCTIONS[n.func](n, args, c)


def cells(out: Value) -> dict[Labels, list[Cell]]:
    assert isinstance(out, Vector)
    result: dict[Labels, list[Cell]] = {}
    for i, labels in enumerate(out.labels):
        result[labels] = [float(out.values[i, s]) if out.present[i, s] else None
                          for s in range(out.steps)]
    return result


def one(out: Value) -> list[float]:
    """The values of a one-step result, in row order."""
    assert isinstance(out, Vector)
    return [float(out.values[i, 0]) for i in range(len(out))]


def same(a: Cell, b: Cell) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))


# ---------------------------------------------------------------- math


def test_math_functions_compute_elementwise_and_flag_the_name() -> None:
    v = vec([(lab("m", i="0"), [-2.5, 4.0, None]), (lab("m", i="1"), [0.0, -0.0, NAN])])
    out = call("abs(m)", [v])
    assert isinstance(out, Vector)
    assert out.drop_name.tolist() == [True, True]
    assert cells(out)[lab("m", i="0")] == [2.5, 4.0, None]
    assert cells(call("ceil(m)", [v]))[lab("m", i="0")] == [-2.0, 4.0, None]
    assert cells(call("floor(m)", [v]))[lab("m", i="0")] == [-3.0, 4.0, None]
    sgn = cells(call("sgn(m)", [v]))
    assert sgn[lab("m", i="0")] == [-1.0, 1.0, None]
    assert sgn[lab("m", i="1")][:2] == [0.0, 0.0] and math.isnan(sgn[lab("m", i="1")][2] or 0)


def test_logs_and_roots_follow_ieee_rules() -> None:
    v = vec([(lab(i="0"), [0.0, -1.0, 8.0, INF])])
    assert one(call("ln(m)", [vec([(lab(), [0.0])])])) == [-INF]
    sqrt = cells(call("sqrt(m)", [v]))[lab(i="0")]
    assert math.isnan(sqrt[1] or 0) and sqrt[2] == pytest.approx(math.sqrt(8)) and sqrt[3] == INF
    assert cells(call("log2(m)", [v]))[lab(i="0")][2] == 3.0
    assert one(call("exp(m)", [vec([(lab(), [0.0])])])) == [1.0]


def test_trigonometry_and_angle_conversion() -> None:
    v = vec([(lab(), [0.5])])
    for name, fn in [("sin", math.sin), ("cos", math.cos), ("tan", math.tan),
                     ("asin", math.asin), ("acos", math.acos), ("atan", math.atan),
                     ("sinh", math.sinh), ("cosh", math.cosh), ("tanh", math.tanh),
                     ("asinh", math.asinh), ("atanh", math.atanh)]:
        assert one(call(f"{name}(m)", [v])) == [pytest.approx(fn(0.5))]
    assert one(call("acosh(m)", [vec([(lab(), [2.0])])])) == [pytest.approx(math.acosh(2))]
    assert one(call("deg(m)", [vec([(lab(), [math.pi])])])) == [180.0]
    assert one(call("rad(m)", [vec([(lab(), [180.0])])])) == [math.pi]
    assert one(call("atanh(m)", [vec([(lab(), [1.0])])])) == [INF]


def test_round_rounds_half_up_to_the_nearest_multiple() -> None:
    v = vec([(lab(), [2.5, -2.5, 0.1234, 7.0])])
    assert cells(call("round(m)", [v, scalar(1, 1, 1, 1)]))[()] == [3.0, -2.0, 0.0, 7.0]
    out = cells(call("round(m, 0.01)", [v, scalar(1, 1, 0.01, 5)]))[()]
    assert out == [3.0, -2.0, 0.12, 5.0]


def test_clamp_and_its_empty_result_when_min_exceeds_max() -> None:
    v = vec([(lab("m", i="0"), [-5.0, 5.0, 50.0]), (lab("m", i="1"), [NAN, 0.0, 1.0])])
    out = cells(call("clamp(m, 0, 10)", [v, scalar(0, 0, 20), scalar(10, -1, 30)]))
    assert out[lab("m", i="0")] == [0.0, None, 30.0]
    assert math.isnan(out[lab("m", i="1")][0] or 0) and out[lab("m", i="1")][2] == 20.0
    assert cells(call("clamp_min(m, 0)", [v, scalar(0, 0, 0)]))[lab("m", i="0")] == [
        0.0, 5.0, 50.0]
    assert cells(call("clamp_max(m, 0)", [v, scalar(0, 0, 0)]))[lab("m", i="0")] == [
        -5.0, 0.0, 0.0]
    # Go's math.Min lets -Inf win over NaN, and math.Max lets +Inf win.
    assert cells(call("clamp_max(m, 0)", [v, scalar(-INF, 0, 0)]))[lab("m", i="1")][0] == -INF
    assert cells(call("clamp_min(m, 0)", [v, scalar(INF, 0, 0)]))[lab("m", i="1")][0] == INF


def test_min_of_and_max_of() -> None:
    out = call("min_of(1, 2)", [scalar(1, 5, NAN), scalar(2, 3, 1)])
    assert isinstance(out, Scalar)
    assert out.values[:2].tolist() == [1.0, 3.0] and math.isnan(out.values[2])
    out = call("max_of(1, 2)", [scalar(1, 5), scalar(2, 3)])
    assert isinstance(out, Scalar) and out.values.tolist() == [2.0, 5.0]


def _go_max(a: float, b: float) -> float:
    if (math.isinf(a) and a > 0) or (math.isinf(b) and b > 0):
        return math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return max(a, b)


def _go_min(a: float, b: float) -> float:
    if (math.isinf(a) and a < 0) or (math.isinf(b) and b < 0):
        return -math.inf
    if math.isnan(a) or math.isnan(b):
        return math.nan
    return min(a, b)


def _go_round(v: float, nearest: float) -> float:
    inverse = _div(1.0, nearest)
    with np.errstate(all="ignore"):
        return float(np.floor(np.float64(v) * inverse + 0.5) / inverse)


samples = st.one_of(st.none(), st.sampled_from([0.0, -0.0, 0.5, -0.5, 2.5, NAN, INF, -INF]),
                    st.floats(-1e6, 1e6))
scalars = st.sampled_from([0.0, 0.1, 1.0, 5.0, -2.0, NAN, INF, -INF])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), steps=st.integers(1, 4))
def test_round_and_clamp_match_per_step_go(data: st.DataObject, steps: int) -> None:
    rows = [(lab("m", i=str(i)), data.draw(st.lists(samples, min_size=steps, max_size=steps)))
            for i in range(data.draw(st.integers(1, 3)))]
    a = data.draw(st.lists(scalars, min_size=steps, max_size=steps))
    b = data.draw(st.lists(scalars, min_size=steps, max_size=steps))
    rounded = cells(call("round(m, 1)", [vec(rows), scalar(*a)]))
    clamped = cells(call("clamp(m, 0, 1)", [vec(rows), scalar(*a), scalar(*b)]))
    for labels, cs in rows:
        want_round = [None if c is None else _go_round(c, a[s]) for s, c in enumerate(cs)]
        want_clamp = [None if c is None or b[s] < a[s] else _go_max(a[s], _go_min(b[s], c))
                      for s, c in enumerate(cs)]
        assert all(same(x, y) for x, y in zip(rounded[labels], want_round, strict=True))
        got = clamped.get(labels, [None] * steps)
        assert all(same(x, y) for x, y in zip(got, want_clamp, strict=True)), (got, want_clamp)


# ---------------------------------------------------------------- scalars, vectors, time


def test_time_pi_and_query_context() -> None:
    c = Context(Grid(10_000, 5_000, 3))
    for text, expected in [("time()", [10.0, 15.0, 20.0]), ("pi()", [math.pi] * 3),
                           ("start()", [10.0] * 3), ("end()", [20.0] * 3),
                           ("range()", [10.0] * 3), ("step()", [5.0] * 3)]:
        out = call(text, [], c)
        assert isinstance(out, Scalar) and out.values.tolist() == expected, text
    instant = Context(Grid(100_000, 1, 1))
    for text, value in [("step()", 0.0), ("range()", 0.0), ("start()", 100.0), ("end()", 100.0)]:
        out = call(text, [], instant)
        assert isinstance(out, Scalar) and out.values.tolist() == [value], text


def test_vector_and_scalar() -> None:
    assert cells(call("vector(1)", [scalar(1, 2)])) == {(): [1.0, 2.0]}
    v = vec([(lab("m", i="0"), [1.0, 2.0, None]), (lab("m", i="1"), [None, 3.0, None])])
    out = call("scalar(m)", [v])
    assert isinstance(out, Scalar)
    assert out.values[0] == 1.0 and math.isnan(out.values[1]) and math.isnan(out.values[2])
    empty = call("scalar(m)", [Vector.empty(2)])
    assert isinstance(empty, Scalar) and np.isnan(empty.values).all()


def test_absent_gives_the_equality_matchers_where_nothing_is_present() -> None:
    v = vec([(lab("x", job="a"), [1.0, None, None])])
    out = cells(call('absent(x{job="a", instance="1", env=~"p.*"})', [v]))
    assert out == {lab(instance="1", job="a"): [None, 1.0, 1.0]}
    assert cells(call('absent(x{job="a"})', [Vector.empty(2)])) == {lab(job="a"): [1.0, 1.0]}


def test_absent_labels_follow_prometheus_for_repeated_names() -> None:
    def labels_of(text: str) -> Labels:
        n, _ = compile_expression(text)
        assert isinstance(n, ir.Call)
        return absent_labels(n.args[0])

    assert labels_of('absent(x{job="a", job="b", foo="bar"})') == lab(foo="bar")
    assert labels_of('absent(x{job="a", env=~"p", env="q"})') == lab(job="a")
    assert labels_of("absent(sum(x))") == ()


def test_date_functions_without_argument_use_the_evaluation_time() -> None:
    c = Context(Grid(0, 86_400_000, 2))
    assert cells(call("year()", [], c)) == {(): [1970.0, 1970.0]}
    assert cells(call("day_of_week()", [], c)) == {(): [4.0, 5.0]}
    assert cells(call("day_of_month()", [], c)) == {(): [1.0, 2.0]}


def test_date_functions_of_sample_values() -> None:
    v = vec([(lab("m"), [1136239445.0, 1456790399.0, 1483191420.0, -1.0])])
    expected = {"year": [2006, 2016, 2016, 1969], "month": [1, 2, 12, 12],
                "day_of_month": [2, 29, 31, 31], "day_of_year": [2, 60, 366, 365],
                "day_of_week": [1, 1, 6, 3], "hour": [22, 23, 13, 23],
                "minute": [4, 59, 37, 59], "days_in_month": [31, 29, 31, 31]}
    for name, want in expected.items():
        out = call(f"{name}(m)", [v])
        assert cells(out)[lab("m")] == [float(x) for x in want], name
        assert isinstance(out, Vector) and out.drop_name.tolist() == [True]


# ---------------------------------------------------------------- labels


def test_expand_template_follows_go() -> None:
    value = "abc-123"
    spans = [(0, 7), (0, 3), (4, 7)]
    names = {"word": 1}
    assert expand_template("$1", value, spans, names) == "abc"
    assert expand_template("${2}x", value, spans, names) == "123x"
    assert expand_template("$2x", value, spans, names) == ""  # the group named "2x"
    assert expand_template("$word/$$/$", value, spans, names) == "abc/$/$"
    assert expand_template("${word", value, spans, names) == "${word"
    assert expand_template("$01", value, spans, names) == ""


def test_label_replace_sets_the_destination_where_the_regex_matches() -> None:
    v = vec([(lab("m", src="a-1"), [1.0]), (lab("m", src="b"), [2.0])], drop=[True, True])
    out = call('label_replace(m, "dst", "$1+$2", "src", "(.*)-(.*)")', [
        v, String("dst"), String("$1+$2"), String("src"), String("(.*)-(.*)")])
    assert isinstance(out, Vector)
    assert out.labels == [lab("m", src="a-1", dst="a+1"), lab("m", src="b")]
    assert out.drop_name.tolist() == [True, True]
    named = call('label_replace(m, "__name__", "n", "src", ".*")', [
        v, String("__name__"), String("n"), String("src"), String(".*")])
    assert isinstance(named, Vector) and named.drop_name.tolist() == [False, False]
    cleared = call('label_replace(m, "src", "", "src", "b")', [
        v, String("src"), String(""), String("src"), String("b")])
    assert isinstance(cleared, Vector) and cleared.labels[1] == lab("m")


def test_label_replace_errors() -> None:
    v = vec([(lab("m", a="1"), [1.0]), (lab("m", a="2"), [2.0])])
    with pytest.raises(EvalError, match=r"^invalid regular expression in label_replace\(\): "):
        call('label_replace(m, "a", "", "a", "(")',
             [v, String("a"), String(""), String("a"), String("(")])
    with pytest.raises(EvalError, match=r"^invalid destination label name in label_replace"):
        call('label_replace(m, "", "", "a", ".*")',
             [v, String(""), String(""), String("a"), String(".*")])
    with pytest.raises(EvalError, match=r"^vector cannot contain metrics with the same labelset"):
        call('label_replace(m, "a", "x", "a", ".*")',
             [v, String("a"), String("x"), String("a"), String(".*")])


def test_label_join() -> None:
    v = vec([(lab("m", a="1", b="2"), [1.0])], drop=[True])
    out = call('label_join(m, "c", "-", "a", "b", "z")',
               [v, String("c"), String("-"), String("a"), String("b"), String("z")])
    assert isinstance(out, Vector) and out.labels == [lab("m", a="1", b="2", c="1-2-")]
    assert out.drop_name.tolist() == [True]
    with pytest.raises(EvalError, match=r"^invalid source label name in label_join\(\): "):
        call('label_join(m, "c", "-", "")', [v, String("c"), String("-"), String("")])


# ---------------------------------------------------------------- sorting


SORTABLE = [(lab("m", i="0"), [3.0]), (lab("m", i="1"), [NAN]), (lab("m", i="2"), [1.0]),
            (lab("m", i="3"), [2.0]), (lab("m", i="4"), [NAN])]


def order(out: Value) -> list[str]:
    assert isinstance(out, Vector)
    return [dict(lab_)["i"] for lab_ in out.labels]


def test_sort_and_sort_desc_put_nan_last() -> None:
    assert order(call("sort(m)", [vec(SORTABLE)])) == ["2", "3", "0", "4", "1"]
    assert order(call("sort_desc(m)", [vec(SORTABLE)])) == ["0", "3", "2", "4", "1"]


def test_sort_leaves_a_range_query_alone() -> None:
    v = vec([(lab(i="0"), [2.0, 1.0]), (lab(i="1"), [1.0, 2.0])])
    assert order(call("sort(m)", [v])) == ["0", "1"]


def test_sort_by_label_uses_natural_order_then_the_whole_label_set() -> None:
    v = vec([(lab("m", i="0", host="n10"), [1.0]), (lab("m", i="1", host="n9"), [1.0]),
             (lab("m", i="2", host="n10", x="a"), [1.0]), (lab("m", i="3"), [1.0])])
    # natsort.Compare says neither "" < "n9" nor "n9" < "", so where the series
    # without the label lands depends on Go's insertion sort, as upstream.
    assert order(call('sort_by_label(m, "host")', [v, String("host")])) == ["1", "0", "2", "3"]
    assert order(call('sort_by_label_desc(m, "host")', [v, String("host")])) == [
        "3", "2", "0", "1"]


# ---------------------------------------------------------------- histogram_quantile


def buckets(name: str, counts: dict[str, Sequence[Cell]], **extra: str
            ) -> list[tuple[Labels, Sequence[Cell]]]:
    return [(lab(name, le=le, **extra), cs) for le, cs in counts.items()]


def test_histogram_quantile_interpolates_within_the_bucket() -> None:
    rows = buckets("h_bucket", {"0.1": [10.0], "0.5": [30.0], "1": [40.0], "+Inf": [40.0]},
                   job="a")
    out = call("histogram_quantile(0.5, h_bucket)", [scalar(0.5), vec(rows)])
    assert cells(out) == {lab("h_bucket", job="a"): [pytest.approx(0.3)]}
    assert isinstance(out, Vector) and out.drop_name.tolist() == [True]
    assert cells(call("histogram_quantile(0.1, h)", [scalar(0.1), vec(rows)])) == {
        lab("h_bucket", job="a"): [pytest.approx(0.04)]}
    # In the +Inf bucket: the upper bound of the second highest bucket.
    top = buckets("h_bucket", {"1": [1.0], "+Inf": [10.0]})
    assert one(call("histogram_quantile(0.9, h)", [scalar(0.9), vec(top)])) == [1.0]


def test_histogram_quantile_special_cases() -> None:
    no_inf = buckets("h", {"1": [5.0], "2": [10.0]})
    assert math.isnan(one(call("histogram_quantile(0.5, h)", [scalar(0.5), vec(no_inf)]))[0])
    empty = buckets("h", {"1": [0.0], "+Inf": [0.0]})
    assert math.isnan(one(call("histogram_quantile(0.5, h)", [scalar(0.5), vec(empty)]))[0])
    rows = buckets("h", {"-1": [5.0], "+Inf": [10.0]})
    assert one(call("histogram_quantile(0.2, h)", [scalar(0.2), vec(rows)])) == [-1.0]
    c = Context(Grid(0, 1, 1))
    assert one(call("histogram_quantile(2, h)", [scalar(2.0), vec(rows)], c)) == [INF]
    assert c.warnings == ["PromQL warning: quantile value should be between 0 and 1, got 2"]


def test_histogram_quantile_forces_monotonic_buckets_and_says_so() -> None:
    rows = buckets("h", {"1": [10.0], "2": [8.0], "+Inf": [20.0]})
    c = Context(Grid(0, 1, 1))
    assert one(call("histogram_quantile(0.5, h)", [scalar(0.5), vec(rows)], c)) == [1.0]
    assert c.infos == [
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see "
        "https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
        ' for metric name "h", from buckets 2 to 2, with a max diff of 2, over 1 samples from '
        "1970-01-01T00:00:00Z to 1970-01-01T00:00:00Z"]


def test_float_noise_between_buckets_is_ignored_silently() -> None:
    rows = buckets("h", {"1": [10.0 + 1e-11], "2": [10.0], "4": [20.0], "+Inf": [20.0]})
    c = Context(Grid(0, 1, 1))
    assert one(call("histogram_quantile(0.75, h)", [scalar(0.75), vec(rows)], c)) == [
        pytest.approx(3.0)]
    assert c.infos == []


def test_forced_monotonicity_is_reported_once_per_metric_with_merged_ranges() -> None:
    rows = [*buckets("h", {"1": [10.0, 10.0, 1.0], "2": [8.0, 9.5, 2.0],
                           "5": [7.0, 10.0, 3.0], "+Inf": [20.0, 20.0, 3.0]}, job="a"),
            *buckets("h", {"1": [4.0, 4.0, 4.0], "3": [3.0, 4.0, 4.0],
                           "+Inf": [5.0, 5.0, 5.0]}, job="b")]
    c = Context(Grid(60_000, 60_000, 3))
    call("histogram_quantile(0.5, h)", [scalar(0.5, 0.5, 0.5), vec(rows)], c)
    assert c.infos == [
        "PromQL info: input to histogram_quantile needed to be fixed for monotonicity (see "
        "https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)"
        ' for metric name "h", from buckets 2 to 5, with a max diff of 3, over 3 samples from '
        "1970-01-01T00:01:00Z to 1970-01-01T00:02:00Z"]


def test_histogram_quantile_warns_about_a_bad_le_label() -> None:
    rows = [(lab("h", le="x"), [1.0]), (lab("h", le="+Inf"), [1.0]), (lab("h", le="1"), [1.0])]
    c = Context(Grid(0, 1, 1))
    out = call("histogram_quantile(0.5, h)", [scalar(0.5), vec(rows)], c)
    assert set(cells(out)) == {lab("h")}
    assert c.warnings == ['PromQL warning: bucket label "le" is missing or has a malformed '
                          'value of "x" for metric name "h"']


def _div(a: float, b: float) -> float:
    """Go's float division (no exception for zero)."""
    if b != 0:
        return a / b
    if a == 0 or math.isnan(a):
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """util/almost.Equal."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < 2.2250738585072014e-308:
        return diff < epsilon * 2.2250738585072014e-308
    return _div(diff, min(abs_sum, 1.7976931348623157e308)) < epsilon


def _naive_bucket_quantile(q: float, bs: list[tuple[float, float]]) -> tuple[float, bool]:
    """quantile.go's bucketQuantile, transcribed."""
    if math.isnan(q):
        return math.nan, False
    if q < 0:
        return -math.inf, False
    if q > 1:
        return math.inf, False
    bs = sorted(bs, key=lambda b: b[0])
    if not math.isinf(bs[-1][0]):
        return math.nan, False
    merged: list[list[float]] = []
    for ub, c in bs:
        if merged and merged[-1][0] == ub:
            merged[-1][1] += c
        else:
            merged.append([ub, c])
    # ensureMonotonicAndIgnoreSmallDeltas
    forced = False
    prev = merged[0][1]
    for b in merged[1:]:
        curr = b[1]
        if curr == prev:
            continue
        if _almost_equal(prev, curr, 1e-12):
            b[1] = prev
            continue
        if curr < prev:
            b[1] = prev
            forced = True
            continue
        prev = curr
    if len(merged) < 2:
        return math.nan, forced
    obs = merged[-1][1]
    if obs == 0:
        return math.nan, forced
    rank = q * obs
    idx = next((i for i in range(len(merged) - 1) if merged[i][1] >= rank), len(merged) - 1)
    if idx == len(merged) - 1:
        return merged[-2][0], forced
    if idx == 0 and merged[0][0] <= 0:
        return merged[0][0], forced
    start, end, count = 0.0, merged[idx][0], merged[idx][1]
    if idx > 0:
        start = merged[idx - 1][0]
        count -= merged[idx - 1][1]
        rank -= merged[idx - 1][1]
    return start + (end - start) * _div(rank, count), forced


LES = ["-1", "0", "0.5", "1", "1.0", "2.5", "+Inf", "Inf"]
"""Bounds as ``le`` strings; "1"/"1.0" and "+Inf"/"Inf" are the same bound (coalesced)."""


@settings(max_examples=150, deadline=None)
@given(data=st.data(), steps=st.integers(1, 4))
def test_histogram_quantile_matches_per_step_bucket_quantile(data: st.DataObject,
                                                             steps: int) -> None:
    counts = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 2.0, 5.0, 5.0 + 1e-13, 10.0]),
                       st.floats(0, 100))
    rows: list[tuple[Labels, list[Cell]]] = []
    for job in data.draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3,
                                  unique=True)):
        for le in data.draw(st.lists(st.sampled_from(LES), min_size=1, max_size=7,
                                     unique=True)):
            rows.append((lab("h", le=le, job=job),
                         data.draw(st.lists(counts, min_size=steps, max_size=steps))))
    q = data.draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 0.75, 0.99, 1.0, NAN, -1.0, 2.0]),
                           min_size=steps, max_size=steps))
    out = cells(call("histogram_quantile(0.5, h)", [scalar(*q), vec(rows)]))
    expected: dict[Labels, list[Cell]] = {}
    for labels, _ in rows:
        expected.setdefault(tuple(p for p in labels if p[0] != "le"), [None] * steps)
    for key, row in expected.items():
        for s in range(steps):
            present = [(float(dict(labels)["le"]), c) for labels, cs in rows
                       if tuple(p for p in labels if p[0] != "le") == key
                       and (c := cs[s]) is not None]
            if present:
                row[s] = _naive_bucket_quantile(q[s], present)[0]
    expected = {k: v for k, v in expected.items() if any(x is not None for x in v)}
    assert set(out) == set(expected)
    for key, row in expected.items():
        assert all(same(a, b) for a, b in zip(out[key], row, strict=True)), (key, out[key], row)


@settings(max_examples=100, deadline=None)
@given(data=st.data(), steps=st.integers(1, 4))
def test_one_histogram_with_gaps_matches_per_step_bucket_quantile(data: st.DataObject,
                                                                  steps: int) -> None:
    les = data.draw(st.lists(st.sampled_from(LES), min_size=1, max_size=6, unique=True))
    counts = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 5.0, 5.0 + 1e-13, 10.0]),
                       st.floats(0, 100))
    rows = [(lab("h", le=le), data.draw(st.lists(counts, min_size=steps, max_size=steps)))
            for le in les]
    q = data.draw(st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.9, 1.0]), min_size=steps,
                           max_size=steps))
    c = Context(Grid(0, 60_000, steps) if steps > 1 else Grid(0, 1, 1))
    out = cells(call("histogram_quantile(0.5, h)", [scalar(*q), vec(rows)], c))
    any_forced = False
    row: list[Cell] = []
    for s in range(steps):
        present = [(float(dict(labels)["le"]), x) for labels, cs in rows
                   if (x := cs[s]) is not None]
        if not present:
            row.append(None)
            continue
        value, forced = _naive_bucket_quantile(q[s], present)
        any_forced |= forced
        row.append(value)
    if all(x is None for x in row):
        assert out == {}
    else:
        assert all(same(a, b) for a, b in zip(out[lab("h")], row, strict=True)), (out, row)
    assert bool(c.infos) == any_forced


def test_histogram_fraction_of_classic_buckets() -> None:
    rows = buckets("h_bucket", {"0.1": [10.0], "0.5": [30.0], "1": [40.0], "+Inf": [40.0]})
    def fraction(lo: float, hi: float) -> float:
        out = call("histogram_fraction(0, 1, h)", [scalar(lo), scalar(hi), vec(rows)])
        assert isinstance(out, Vector) and out.drop_name.tolist() == [True]
        return one(out)[0]

    assert fraction(0, 0.5) == 0.75
    assert fraction(0.3, 0.75) == pytest.approx(0.375)
    assert fraction(-INF, INF) == 1.0
    assert fraction(0.5, 0.5) == 0.0
    assert math.isnan(fraction(NAN, 1))
    no_inf = buckets("h", {"1": [5.0]})
    out = call("histogram_fraction(0, 1, h)", [scalar(0), scalar(1), vec(no_inf)])
    assert math.isnan(one(out)[0])


def _naive_bucket_fraction(lower: float, upper: float, bs: list[tuple[float, float]]) -> float:
    """quantile.go's BucketFraction, transcribed."""
    bs = sorted(bs, key=lambda b: b[0])
    if not math.isinf(bs[-1][0]):
        return math.nan
    merged: list[list[float]] = []
    for ub, c in bs:
        if merged and merged[-1][0] == ub:
            merged[-1][1] += c
        else:
            merged.append([ub, c])
    count = merged[-1][1]
    if count == 0 or math.isnan(lower) or math.isnan(upper):
        return math.nan
    if lower >= upper:
        return 0.0
    rank = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    lower_bound = 0.0 if merged[0][0] > 0 else -math.inf
    for i, (upper_bound, c) in enumerate(merged):
        if i > 0:
            lower_bound = merged[i - 1][0]

        def interp(v: float, lb: float = lower_bound, ub: float = upper_bound,
                   c: float = c, r: float = rank) -> float:
            if lb == -math.inf:
                return c
            return r + (c - r) * _div(v - lb, ub - lb)

        if not lower_set and lower_bound >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and lower_bound >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and lower_bound < lower < upper_bound:
            lower_rank, lower_set = interp(lower), True
        if not upper_set and lower_bound < upper < upper_bound:
            upper_rank, upper_set = interp(upper), True
        if lower_set and upper_set:
            break
        rank = c
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return _div(upper_rank - lower_rank, count)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), steps=st.integers(1, 4))
def test_histogram_fraction_matches_per_step_bucket_fraction(data: st.DataObject,
                                                             steps: int) -> None:
    les = data.draw(st.lists(st.sampled_from(LES), min_size=1, max_size=7, unique=True))
    counts = st.one_of(st.none(), st.sampled_from([0.0, 1.0, 5.0, 10.0]), st.floats(0, 100))
    rows = [(lab("h", le=le), data.draw(st.lists(counts, min_size=steps, max_size=steps)))
            for le in les]
    bounds = st.sampled_from([-INF, -1.0, 0.0, 0.2, 0.5, 1.0, 2.0, 3.0, INF, NAN])
    lo = data.draw(st.lists(bounds, min_size=steps, max_size=steps))
    hi = data.draw(st.lists(bounds, min_size=steps, max_size=steps))
    out = cells(call("histogram_fraction(0, 1, h)", [scalar(*lo), scalar(*hi), vec(rows)]))
    row: list[Cell] = []
    for s in range(steps):
        present = [(float(dict(labels)["le"]), x) for labels, cs in rows
                   if (x := cs[s]) is not None]
        row.append(_naive_bucket_fraction(lo[s], hi[s], present) if present else None)
    if all(x is None for x in row):
        assert out == {}
    else:
        assert all(same(a, b) for a, b in zip(out[lab("h")], row, strict=True)), (out, row)


# ---------------------------------------------------------------- dates against datetime


@settings(max_examples=200, deadline=None)
@given(seconds=st.lists(st.integers(-5_000_000_000, 10_000_000_000), min_size=1, max_size=4),
       frac=st.sampled_from([0.0, 0.25, 0.75]))
def test_date_functions_match_python_datetime(seconds: list[int], frac: float) -> None:
    values = [s + (frac if s >= 0 else -frac) for s in seconds]
    v = vec([(lab(), values)])
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    times = [epoch + dt.timedelta(seconds=s) for s in seconds]
    expected = {
        "minute": [t.minute for t in times], "hour": [t.hour for t in times],
        "day_of_week": [t.isoweekday() % 7 for t in times],
        "day_of_month": [t.day for t in times],
        "day_of_year": [t.timetuple().tm_yday for t in times],
        "month": [t.month for t in times], "year": [t.year for t in times],
        "days_in_month": [((t.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
                           - dt.timedelta(days=1)).day for t in times],
    }
    for name, want in expected.items():
        assert cells(call(f"{name}(m)", [v]))[()] == [float(x) for x in want], name
