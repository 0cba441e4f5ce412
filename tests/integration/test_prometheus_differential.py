"""Differential test: our evaluator against a real Prometheus on the same data.

The data set (``datagen.generate_chunks``: gauges ``m``, counters ``c`` with
resets, histogram buckets ``h_bucket``; 60 series over 3 hours at 15 s) is
written to our DuckDB store, exported to OpenMetrics with our exporter, turned
into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and
served by the Debian ``prometheus`` binary (2.42) on a free 127.0.0.1 port.
Hypothesis generates expressions of the supported subset; each runs as a range
query through ``/api/v1/query_range`` and through our vectorised evaluator, and
the results must agree: the same series, the same steps, values equal to a
relative tolerance of 1e-6 with NaN equal to NaN (promqltest's comparison). An
expression Prometheus refuses must fail in ours too. Another test checks that
``monitoring query --format json`` writes what Prometheus's API writes: the
same tokens (numbers compared as text) and, for range queries, the same bytes;
its expressions involve no sums, whose last digit may differ (see below).

Our semantics are Prometheus 3.x's; the peer is 2.x. Where the two differ by
design, the data or the generated expressions keep out of the difference:

* Range windows and the lookback of instant selectors are closed on the left
  in 2.x (``[t - r, t]``) and left-open in 3.x (``(t - r, t]``). Samples sit 1-4 s
  after each 15 s slot and every step, range, offset and subquery step is a
  whole number of minutes, so no sample ever lies on a window's edge.
* Subqueries are excluded as such, because their inner points do lie on whole
  minutes: ``x[10m:1m]`` at a whole minute has 11 points in 2.x and 10 in 3.x.
  The generated subqueries use a range of 570 s, so the window's edge falls
  half-way between two inner points.
* ``rate``/``increase`` of a counter whose first sample lies inside the window
  (far from the window's start): 2.x first moves the start to the counter's
  extrapolated zero point and then compares with 110% of the sample interval;
  3.x compares first, so it extrapolates less. Queries start 40 minutes into
  the data and ranges plus offsets stay below 30 minutes, so every window of a
  counter begins after the counter's first sample.
* 3.x emits annotations (e.g. "metric might not be a counter" for ``rate(c)``)
  that 2.x does not: only values are compared, never warnings or infos.
* ``holt_winters`` (renamed ``double_exponential_smoothing`` in 3.x and put
  behind a feature flag), ``info()``, native histograms and the 3.x-only
  functions are not generated; nor are ``label_replace``/``label_join`` on
  ``__name__``, whose result depends on when the metric name is dropped
  (eagerly in 2.x, delayed behind a flag in 3.x).
* ``predict_linear`` with an ``@`` modifier: 2.42 returns its value at only
  some of the steps (one step for ``@ end()``), where 3.x repeats it at every
  step; it is generated with offsets but without ``@``.
* Set operators whose two sides hold series that differ only by a pending
  metric-name removal, as in ``(abs(m) and on(instance) (m < 0.5)) or
  on(instance) (m > 0.5)``: 3.x removes names at the end of the query and keys
  the series of a range result by their labels *with* the name, so the two
  sides become one series per instance (whose name is kept or dropped as at
  its first point); 2.x drops the name at once and keeps two series. The
  reference evaluator and the conformance scripts follow 3.x. The generated
  right-hand side of a set operator carries an extra label, so its series
  never coincide with the left-hand side's.
* ``topk`` and ``bottomk`` are not generated: among equal values (frequent
  after ``floor``, ``count`` or a clipped gauge) which series is kept depends
  on the order of series, which neither engine specifies.
* Sums and means are computed with Kahan summation in 3.x and plainly in 2.42:
  the last bits differ, which the tolerance absorbs. The data is mostly of one
  sign (``m`` in [0, 1], rates of counters) and no subtraction of two series
  is generated, so that no aggregate cancels to nearly zero, where a relative
  tolerance would not hold. For the same reason ``stddev`` and ``stdvar`` are not
  generated over ``timestamp()``: sample times near 1.8e9 s that differ by seconds
  cancel in the variance's subtraction. In the one case found, ``stddev without
  (instance) (timestamp(m offset -5m))``, 2.42's value equalled the exact one and
  ours differed from it by 2e-6 relative: a known limitation of our variance on
  nearly equal large values, recorded in docs/conformance.md.
"""

from __future__ import annotations

import json
import math
import os
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from monitoring.dsl.compiler import compile_query
from monitoring.engine.evaluator import evaluate
from monitoring.engine.model import EvalError, Labels, QueryResult
from monitoring.engine.query import QueryOptions
from monitoring.engine.query_cli import render
from monitoring.engine.store import Store
from tests.support import datagen
from tests.support.prometheus import PrometheusError, PrometheusServer, serving

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DURATION_MS = 3 * 3_600_000
N_SERIES = 60
# Away from the edges of the data, so that the longest windows are full.
Q_START_S = (START_MS + 40 * 60_000) / 1000
Q_END_S = (START_MS + DURATION_MS - 10 * 60_000) / 1000
STEP_S = 60.0
EPSILON = 1e-6

Peer = tuple[PrometheusServer, Store]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    root = tmp_path_factory.mktemp("differential")
    store = Store(root / "history.duckdb")
    for chunk in datagen.generate_chunks(N_SERIES, START_MS, DURATION_MS):
        store.append_arrays(chunk.label_sets, chunk.index, chunk.ts, chunk.values)
    try:
        with serving(store, root) as server:
            yield server, store
    finally:
        store.close()


GAUGES = st.sampled_from([
    "m", 'm{job="job0"}', 'm{instance=~"i[0-3]"}', 'm{job!="job1"}', 'm{instance!~"i1.*"}',
])
COUNTERS = st.sampled_from(["c", 'c{job="job1"}', 'c{instance!~"i1.*"}'])
PLAIN_OFFSETS = ["", "", "", "", " offset 5m", " offset 15m", " offset -5m"]
OFFSETS = st.sampled_from([*PLAIN_OFFSETS, " @ end()", " @ start() offset 5m"])
RANGES = st.sampled_from(["1m", "2m", "5m", "10m"])
GROUPING = st.sampled_from(["", " by (job)", " without (instance)", " by (instance)"])


@st.composite
def instant_vectors(draw: st.DrawFn, depth: int = 0) -> str:
    """PromQL text for an instant vector, over functions both engines implement alike."""
    choices = ["selector", "over_time", "counter", "absent", "math", "aggregate", "quantile",
               "binary_scalar", "compare", "histogram", "subquery", "set", "matched", "label",
               "versus_scalar"]
    if depth >= 2:
        choices = choices[:4]
    kind = draw(st.sampled_from(choices))
    if kind == "selector":
        return draw(GAUGES) + draw(OFFSETS)
    if kind == "over_time":
        fn = draw(st.sampled_from(["avg", "min", "max", "sum", "count", "last", "stddev",
                                   "stdvar", "present", "quantile", "predict_linear"]))
        window = f"{draw(GAUGES)}[{draw(RANGES)}]"
        if fn == "quantile":
            return (f"quantile_over_time({draw(st.sampled_from(['0', '0.5', '0.9']))}, "
                    f"{window}{draw(OFFSETS)})")
        if fn == "predict_linear":
            return (f"predict_linear({window}{draw(st.sampled_from(PLAIN_OFFSETS))}, "
                    f"{draw(st.sampled_from(['60', '600']))})")
        window += draw(OFFSETS)
        return f"{fn}_over_time({window})"
    if kind == "absent":
        return draw(st.sampled_from(['absent(m{job="nope"})', "absent(m)",
                                     'absent_over_time(m{job="nope",instance="x"}[5m])',
                                     "absent_over_time(c[1m])"]))
    if kind == "counter":
        fn = draw(st.sampled_from(["rate", "irate", "increase", "delta", "idelta", "deriv",
                                   "changes", "resets"]))
        return f"{fn}({draw(COUNTERS)}[{draw(RANGES)}]{draw(OFFSETS)})"
    if kind == "histogram":
        return (f"histogram_quantile({draw(st.sampled_from(['0.5', '0.9', '0.99']))}, "
                f"sum by (le{draw(st.sampled_from(['', ', job']))}) "
                f"(rate(h_bucket[{draw(RANGES)}])))")
    if kind == "subquery":
        fn = draw(st.sampled_from(["max", "avg", "min"]))
        return f"{fn}_over_time(rate({draw(COUNTERS)}[5m])[570s:1m])"
    if kind == "matched":
        return (f"sum by (job) (rate({draw(COUNTERS)}[5m])) / on(job) group_left "
                f"count by (job) (m)")
    inner = draw(instant_vectors(depth + 1))
    if kind == "math":
        fn = draw(st.sampled_from(["abs", "ceil", "floor", "round", "sqrt", "sgn", "exp",
                                   "clamp_min", "clamp_max", "clamp", "timestamp", "ln", "log2",
                                   "log10", "sin", "atan", "sinh", "age", "hour"]))
        if fn == "age":
            return f"time() - timestamp({inner})"
        if fn == "hour":
            return f"minute(timestamp({inner})) + hour()"
        if fn in ("clamp_min", "clamp_max"):
            return f"{fn}({inner}, 0.5)"
        if fn == "clamp":
            return f"clamp({inner}, 0.2, 0.8)"
        if fn == "round":
            return f"round({inner}, {draw(st.sampled_from(['1', '0.1', '5']))})"
        if fn == "exp":
            return f"exp(-abs({inner}))"
        return f"{fn}({inner})"
    if kind == "aggregate":
        ops = ["sum", "avg", "min", "max", "count", "stddev", "stdvar", "group"]
        if "timestamp(" in inner:  # values near 1.8e9 a few seconds apart: see the docstring
            ops = [op for op in ops if op not in ("stddev", "stdvar")]
        op = draw(st.sampled_from(ops))
        return f"{op}{draw(GROUPING)} ({inner})"
    if kind == "quantile":
        param = draw(st.sampled_from(["0", "0.1", "0.75", "1"]))
        return f"quantile{draw(GROUPING)} ({param}, {inner})"
    if kind == "label":
        return (f'label_replace({inner}, "team", "t-$1", "job", "job(.*)")'
                if draw(st.booleans()) else f'label_join({inner}, "where", "/", "job", "instance")')
    if kind == "versus_scalar":
        return f"{inner} > bool scalar(avg({draw(GAUGES)}))"
    if kind == "binary_scalar":
        op = draw(st.sampled_from(["+", "*", "/"]))
        number = draw(st.sampled_from(["2", "0.5", "10"]))
        return f"{inner} {op} {number}" if draw(st.booleans()) else f"{number} {op} {inner}"
    if kind == "compare":
        op = draw(st.sampled_from([">", "<", ">=", "<=", "!="]))
        boolean = " bool" if draw(st.booleans()) else ""
        return f"{inner} {op}{boolean} 0.5"
    op = draw(st.sampled_from(["and", "or", "unless"]))
    right = f'label_replace({draw(GAUGES)} > 0.5, "side", "right", "", "")'
    return f"({inner}) {op} on(instance) {right}"


Points = dict[Labels, dict[float, float]]


def ours_as_map(result: QueryResult) -> Points:
    return {s.labels: {float(t) / 1000: float(v) for t, v in zip(s.ts, s.values, strict=True)}
            for s in result.series}


def prometheus_as_map(data: dict[str, Any]) -> Points:
    out: Points = {}
    for item in data["result"]:
        labels = tuple(sorted(item["metric"].items()))
        out[labels] = {float(t): float(v) for t, v in item["values"]}
    return out


def almost_equal(a: float, b: float) -> bool:
    """promqltest's ``almostEqual`` with its epsilon."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    diff = abs(a - b)
    total = abs(a) + abs(b)
    if a == 0 or b == 0 or total < 2.2250738585072014e-308:
        return diff < EPSILON * 2.2250738585072014e-308
    return diff / min(total, 1.7976931348623157e308) < EPSILON


def ours_range(store: Store, expr: str) -> QueryResult:
    node, diags, positions = compile_query(expr)
    assert node is not None, [d.message for d in diags]
    return evaluate(node, store, int(Q_START_S * 1000), int(Q_END_S * 1000), int(STEP_S * 1000),
                    QueryOptions(positions=positions))


@settings(max_examples=int(os.environ.get("DIFFERENTIAL_EXAMPLES", "100")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(expr=instant_vectors())
# `or` between a function's result (metric name dropped) and other series of the same instance.
@example(expr='(abs(m) and on(instance) (m < 0.5)) or on(instance) '
              'label_replace(m > 0.5, "side", "right", "", "")')
# A histogram_quantile and a join over the same rates.
@example(expr="histogram_quantile(0.9, sum by (le, job) (rate(h_bucket[5m]))) "
              "> on(job) group_left sum by (job) (rate(c[5m])) / 1000")
# timestamp() of a selector with @ looks back from the @ time through the samples selected
# for @ minus the offset (engine.go, 2.x and 3.x alike): an offset of 5m finds nothing.
@example(expr="timestamp(m @ start() offset 5m)")
def test_same_results_as_prometheus(peer: Peer, expr: str) -> None:
    server, store = peer
    try:
        data = server.query_range(expr, Q_START_S, Q_END_S, STEP_S)
    except PrometheusError as refused:
        with pytest.raises(EvalError):
            ours_range(store, expr)
        assert str(refused)
        return
    result = ours_range(store, expr)
    ours = ours_as_map(result)
    assert len(ours) == len(result.series), f"{expr}: a label set appears twice"
    theirs = prometheus_as_map(data)
    assert set(ours) == set(theirs), f"{expr}: series differ"
    for labels, points in theirs.items():
        mine = ours[labels]
        assert set(mine) == set(points), f"{expr} {labels}: steps differ"
        for t, v in points.items():
            assert almost_equal(mine[t], v), f"{expr} {labels} at {t}: ours {mine[t]!r}, {v!r}"


def test_peer_serves_the_whole_data_set(peer: Peer) -> None:
    server, store = peer
    layout = datagen.Layout.of(N_SERIES)
    counts = server.query("count by (__name__) ({__name__=~'m|c|h_bucket'})", Q_END_S)
    assert {item["metric"]["__name__"]: int(item["value"][1]) for item in counts["result"]} == {
        "m": layout.gauges, "c": layout.counters,
        "h_bucket": layout.histograms * len(datagen.BUCKETS)}
    end_s = (START_MS + DURATION_MS) / 1000
    total = sum(int(server.query(f"sum(count_over_time({name}[1y]))", end_s)["result"][0]
                    ["value"][1]) for name in ("m", "c", "h_bucket"))
    assert total == store.stats().samples


def raw_body(server: PrometheusServer, path: str, **params: str) -> str:
    url = f"{server.url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=60) as r:
        text: str = r.read().decode()
        return text


def tokens(text: str) -> Any:
    """Decoded JSON with every number kept as its text, result lists in a fixed order."""
    body = json.loads(text, parse_float=lambda s: ("number", s), parse_int=lambda s: ("number", s))
    result = body["data"]["result"]
    if body["data"]["resultType"] in ("vector", "matrix"):
        result.sort(key=lambda item: json.dumps(item["metric"], sort_keys=True))
    return body


@pytest.mark.parametrize(("expr", "instant"), [
    ('m{job="job1"}', False),
    ("max by (job) (max_over_time(m[5m])) > 0.3", False),
    ("1 / 8", False),
    ("m", True),
    ('m{instance="i1"}[2m]', True),
    ("max(m)", True),
    ("2 * 0.25", True),
])
def test_json_output_is_what_prometheus_writes(peer: Peer, expr: str, instant: bool) -> None:
    server, store = peer
    node, _, positions = compile_query(expr)
    assert node is not None
    if instant:
        at_ms = int(Q_END_S * 1000) + 500  # a fraction of a second: "1767235800.5"
        result = evaluate(node, store, at_ms, at_ms, 1, QueryOptions(positions=positions),
                          instant=True)
        theirs = raw_body(server, "/api/v1/query", query=expr, time=f"{at_ms / 1000:.3f}")
    else:
        result = ours_range(store, expr)
        theirs = raw_body(server, "/api/v1/query_range", query=expr, start=f"{Q_START_S:.3f}",
                          end=f"{Q_END_S:.3f}", step=f"{STEP_S:g}")
    mine = render(result, instant, "json")
    assert mine.endswith("\n")
    assert tokens(mine) == tokens(theirs)
    if not instant:  # a range result is sorted by labels in both: the bytes are equal
        assert mine.rstrip("\n") == theirs.rstrip("\n")

