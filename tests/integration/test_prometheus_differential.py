"""Differential test: our evaluator against a real Prometheus on the same data.

The data set is written to our DuckDB store, exported to OpenMetrics, turned
into TSDB blocks with ``promtool tsdb create-blocks-from openmetrics`` and
served by the Debian ``prometheus`` binary on a free 127.0.0.1 port. Hypothesis
generates expressions of the supported subset; each is run as a range query by
both, and the results must agree to a relative tolerance of 1e-6 (NaN equals
NaN), as promqltest compares them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl.compiler import compile_expression
from monitoring.engine.evaluator import evaluate
from monitoring.engine.model import QueryResult
from monitoring.engine.store import Store
from tests.support import datagen
from tests.support.prometheus import PeerMissing, PrometheusServer, create_blocks, require

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DURATION_MS = 3 * 3600_000
# Evaluate away from the edges of the data so that every window is full.
Q_START_S = (START_MS + 40 * 60_000) / 1000
Q_END_S = (START_MS + DURATION_MS - 10 * 60_000) / 1000
STEP_S = 60.0


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PrometheusServer, Store]]:
    try:
        require("prometheus")
        require("promtool")
    except PeerMissing as e:
        if os.environ.get("CI") == "true":
            pytest.fail(str(e))
        pytest.skip(str(e))
    root = tmp_path_factory.mktemp("differential")
    store = Store(root / "history.duckdb")
    for series in datagen.generate(60, START_MS, DURATION_MS):
        store.append_series(series)
    from monitoring.engine.export import export_openmetrics

    om = root / "history.om"
    with om.open("w", encoding="utf-8") as f:
        export_openmetrics(store, f)
    storage = root / "tsdb"
    create_blocks(om, storage)
    with PrometheusServer(storage) as server:
        yield server, store
    store.close()


SELECTORS = st.sampled_from([
    "m", 'm{job="job0"}', 'm{instance=~"i[0-3]"}', 'm{job!="job1"}', "m offset 5m",
])
COUNTERS = st.sampled_from(["c_total", 'c_total{job="job1"}', 'c_total{instance!~"i1.*"}'])
RANGES = st.sampled_from(["1m", "2m", "5m", "10m"])
GROUPING = st.sampled_from(["", " by (job)", " without (instance)", " by (instance)"])


@st.composite
def instant_vectors(draw: st.DrawFn, depth: int = 0) -> str:
    """PromQL text for an instant vector, over functions both engines implement alike."""
    choices = ["selector", "over_time", "counter", "math", "aggregate", "binary_scalar",
               "compare", "histogram", "subquery", "set", "matched"]
    if depth >= 2:
        choices = choices[:3]
    kind = draw(st.sampled_from(choices))
    if kind == "selector":
        return draw(SELECTORS)
    if kind == "over_time":
        fn = draw(st.sampled_from(["avg", "min", "max", "sum", "count", "last", "stddev",
                                   "stdvar", "present"]))
        return f"{fn}_over_time({draw(SELECTORS)}[{draw(RANGES)}])"
    if kind == "counter":
        fn = draw(st.sampled_from(["rate", "irate", "increase", "delta", "idelta", "deriv",
                                   "changes", "resets"]))
        return f"{fn}({draw(COUNTERS)}[{draw(RANGES)}])"
    inner = draw(instant_vectors(depth + 1))
    if kind == "math":
        fn = draw(st.sampled_from(["abs", "ceil", "floor", "round", "sqrt", "sgn", "exp",
                                   "clamp_min", "clamp_max", "timestamp"]))
        if fn in ("clamp_min", "clamp_max"):
            return f"{fn}({inner}, 0.5)"
        if fn == "sqrt":
            return f"sqrt(abs({inner}))"
        if fn == "exp":
            return f"exp(-abs({inner}))"
        return f"{fn}({inner})"
    if kind == "aggregate":
        op = draw(st.sampled_from(["sum", "avg", "min", "max", "count", "stddev", "stdvar",
                                   "group"]))
        return f"{op}{draw(GROUPING)} ({inner})"
    if kind == "binary_scalar":
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        number = draw(st.sampled_from(["2", "0.5", "10"]))
        return f"{inner} {op} {number}" if draw(st.booleans()) else f"{number} {op} {inner}"
    if kind == "compare":
        op = draw(st.sampled_from([">", "<", ">=", "<=", "!="]))
        boolean = " bool" if draw(st.booleans()) else ""
        return f"{inner} {op}{boolean} 0.5"
    if kind == "histogram":
        return (f"histogram_quantile({draw(st.sampled_from(['0.5', '0.9', '0.99']))}, "
                f"sum by (le{draw(st.sampled_from(['', ', job']))}) "
                f"(rate(h_bucket[{draw(RANGES)}])))")
    if kind == "subquery":
        fn = draw(st.sampled_from(["max", "avg", "min"]))
        return f"{fn}_over_time(rate({draw(COUNTERS)}[5m])[10m:1m])"
    if kind == "set":
        op = draw(st.sampled_from(["and", "or", "unless"]))
        return f"({inner}) {op} on(instance) ({draw(SELECTORS)} > 0.5)"
    return (f"sum by (job) (rate({draw(COUNTERS)}[5m])) / on(job) group_left "
            f"count by (job) (m)")


def as_map(result: QueryResult) -> dict[tuple[tuple[str, str], ...], dict[float, float]]:
    return {s.labels: {float(t) / 1000: float(v) for t, v in zip(s.ts, s.values, strict=True)}
            for s in result.series}


def prometheus_map(data: dict) -> dict[tuple[tuple[str, str], ...], dict[float, float]]:
    out = {}
    for item in data["result"]:
        labels = tuple(sorted(item["metric"].items()))
        out[labels] = {float(t): float(v) for t, v in item["values"]}
    return out


def close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if a == b:
        return True
    return abs(a - b) <= 1e-6 * max(abs(a), abs(b))


@settings(max_examples=int(os.environ.get("DIFFERENTIAL_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(expr=instant_vectors())
def test_same_results_as_prometheus(peer: tuple[PrometheusServer, Store], expr: str) -> None:
    server, store = peer
    node, diags = compile_expression(expr)
    assert node is not None, [d.message for d in diags]
    ours = as_map(evaluate(node, store, int(Q_START_S * 1000), int(Q_END_S * 1000),
                           int(STEP_S * 1000)))
    theirs = prometheus_map(server.query_range(expr, Q_START_S, Q_END_S, STEP_S))
    assert set(ours) == set(theirs), f"{expr}: series differ"
    for labels, points in theirs.items():
        mine = ours[labels]
        assert set(mine) == set(points), f"{expr} {labels}: steps differ"
        for t, v in points.items():
            assert close(mine[t], v), f"{expr} {labels} at {t}: ours {mine[t]} vs {v}"


def test_peer_really_runs(peer: tuple[PrometheusServer, Store]) -> None:
    server, _ = peer
    data = server.query("count(m)", Q_END_S)
    assert data["result"] and float(data["result"][0]["value"][1]) == 20
    assert Path(server.storage).exists()
