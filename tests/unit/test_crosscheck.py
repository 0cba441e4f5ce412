"""The two evaluators agree: the vectorised one and the step-by-step reference.

Hypothesis draws small data sets (gauges and counters with resets, sample
times off the step grid, gaps and staleness markers) and expressions of the
subset both evaluators implement (selectors with offsets, range functions,
aggregations, binary operators with vector matching, set operators,
subqueries), runs each as a range query on a MemorySource with both
evaluators, and requires the same outcome: the same vector-matching error, or
the same series with the same points and values (relative tolerance 1e-6, NaN
equals NaN).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl.compiler import compile_expression
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import STALE_NAN, EvalError, QueryResult, Series, labels_of
from monitoring.engine.promqltest import almost_equal, evaluator_by_name

START_MS, END_MS, STEP_MS = 10 * 60_000, 25 * 60_000, 60_000
DATA_END_MS = 26 * 60_000
SCRAPE_MS = 15_000

# ------------------------------------------------------------------ data


@st.composite
def data_sets(draw: st.DrawFn) -> MemorySource:
    """Two to five series of a gauge ``g`` and a counter ``c``, with gaps and stale markers."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    gap_rate = draw(st.sampled_from([0.0, 0.1, 0.4]))
    stale_rate = draw(st.sampled_from([0.0, 0.02, 0.1]))
    source = MemorySource()
    n = draw(st.integers(2, 5))
    for i in range(n):
        metric = "g" if i % 2 == 0 else "c"
        labels = labels_of({"__name__": metric, "job": "ab"[i % 3 % 2],
                            "instance": str(i)})
        ts = np.arange(0, DATA_END_MS, SCRAPE_MS, dtype=np.int64)
        ts = ts + rng.integers(1, 4000, size=len(ts))  # never on a step or window edge
        if metric == "g":
            values = np.round(rng.normal(5, 3, size=len(ts)), 2)
        else:
            incs = rng.integers(0, 20, size=len(ts)).astype(np.float64)
            values = np.cumsum(incs)
            reset = rng.random(len(ts)) < 0.05
            for k in np.nonzero(reset)[0]:
                values[k:] -= values[k] - incs[k]  # the counter restarts from its increment
        keep = rng.random(len(ts)) >= gap_rate
        values = np.where(rng.random(len(ts)) < stale_rate, STALE_NAN, values)
        source.add(Series(labels, ts[keep], values[keep].astype(np.float64)))
    return source


# ------------------------------------------------------------------ expressions

SELECTORS = ['g', 'c', 'g{job="a"}', 'c{job!="a"}', '{__name__=~"g|c", instance=~"[0-2]"}']
OFFSETS = ["", " offset 1m", " offset -30s", " offset 2m30s"]
RANGES = ["1m", "2m", "5m", "90s"]
RANGE_FUNCS = ["rate", "increase", "delta", "irate", "idelta", "resets", "changes", "deriv",
               "avg_over_time", "sum_over_time", "min_over_time", "max_over_time",
               "count_over_time", "last_over_time", "stddev_over_time", "stdvar_over_time",
               "present_over_time"]
AGGREGATIONS = ["sum", "avg", "min", "max", "count", "stddev", "stdvar", "group"]
GROUPINGS = ["", " by (job)", " without (instance)", " by (instance, job)", " by ()"]
ARITH = ["+", "-", "*", "/"]
COMPARE = [">", "<", ">=", "==", "!="]


@st.composite
def selectors(draw: st.DrawFn) -> str:
    return draw(st.sampled_from(SELECTORS)) + draw(st.sampled_from(OFFSETS))


@st.composite
def range_calls(draw: st.DrawFn) -> str:
    sel = draw(st.sampled_from(SELECTORS))
    window = draw(st.sampled_from(RANGES))
    offset = draw(st.sampled_from(OFFSETS))
    func = draw(st.sampled_from([*RANGE_FUNCS, "quantile_over_time"]))
    arg = f"{sel}[{window}]{offset}"
    if func == "quantile_over_time":
        return f"quantile_over_time({draw(st.sampled_from(['0', '0.5', '0.9', '1']))}, {arg})"
    return f"{func}({arg})"


@st.composite
def vectors(draw: st.DrawFn, depth: int = 0) -> str:
    """An instant-vector expression."""
    leaf = st.one_of(selectors(), range_calls())
    if depth >= 2:
        return draw(leaf)
    inner = vectors(depth + 1)
    kind = draw(st.sampled_from(["leaf", "leaf", "agg", "topk", "scalar_op", "vector_op",
                                 "compare", "set", "subquery", "math", "condition"]))
    if kind == "leaf":
        return draw(leaf)
    if kind == "agg":
        op = draw(st.sampled_from(AGGREGATIONS))
        return f"{op}{draw(st.sampled_from(GROUPINGS))} ({draw(inner)})"
    if kind == "topk":
        op = draw(st.sampled_from(["topk", "bottomk"]))
        return f"{op}{draw(st.sampled_from(GROUPINGS))} ({draw(st.integers(1, 3))}, {draw(inner)})"
    if kind == "scalar_op":
        op = draw(st.sampled_from(ARITH))
        number = draw(st.sampled_from(["2", "0.5", "0", "-1"]))
        if draw(st.booleans()):
            return f"({draw(inner)}) {op} {number}"
        return f"{number} {op} ({draw(inner)})"
    if kind == "vector_op":
        op = draw(st.sampled_from(ARITH))
        matching = draw(st.sampled_from(["", " on (instance)", " ignoring (job)"]))
        lhs, rhs = draw(inner), draw(inner)
        return f"({lhs}) {op}{matching} ({rhs})"
    if kind == "compare":
        op = draw(st.sampled_from(COMPARE))
        flag = draw(st.sampled_from(["", " bool"]))
        return f"({draw(inner)}) {op}{flag} {draw(st.sampled_from(['3', '10', '0']))}"
    if kind == "set":
        op = draw(st.sampled_from(["and", "or", "unless"]))
        matching = draw(st.sampled_from(["", " on (job)", " ignoring (instance)"]))
        return f"({draw(inner)}) {op}{matching} ({draw(inner)})"
    if kind == "subquery":
        func = draw(st.sampled_from(["max_over_time", "avg_over_time", "rate",
                                     "count_over_time", "last_over_time"]))
        window = draw(st.sampled_from(["5m:1m", "3m:30s", "4m:", "2m:45s"]))
        return f"{func}(({draw(inner)})[{window}])"
    if kind == "condition":
        func = draw(st.sampled_from(["between", "outside", "outlier_score"]))
        if func == "outlier_score":
            by = draw(st.sampled_from(["", ', "job"']))
            return f"outlier_score({draw(inner)}{by})"
        lo, hi = draw(st.sampled_from([("0", "5"), ("3", "10"), ("5", "2"), ("-1", "1")]))
        return f"{func}({draw(inner)}, {lo}, {hi})"
    func = draw(st.sampled_from(["abs", "ceil", "floor", "sqrt", "ln", "exp", "clamp_min",
                                 "round"]))
    if func == "clamp_min":
        return f"clamp_min({draw(inner)}, 1)"
    return f"{func}({draw(inner)})"


# ------------------------------------------------------------------ comparison

QUERY_ERRORS = ("many-to-many matching not allowed", "found duplicate series",
                "same labelset", "many-to-one matching must be explicit")
"""The only errors expressions of this subset can legitimately raise (Prometheus's wording)."""


def _outcome(evaluate: Any, node: Any, source: MemorySource) -> QueryResult | str:
    try:
        result: QueryResult = evaluate(node, source, START_MS, END_MS, STEP_MS)
    except EvalError as e:
        return f"error: {e}"
    return result


def _describe(s: Series) -> str:
    return f"{dict(s.labels)} {list(zip(s.ts.tolist(), s.values.tolist(), strict=True))}"


def _assert_same(fast: QueryResult | str, ref: QueryResult | str, expr: str) -> None:
    if isinstance(fast, str) or isinstance(ref, str):
        if not (isinstance(fast, str) and fast == ref):
            pytest.fail(f"{expr}: fast gives {fast if isinstance(fast, str) else 'a result'}, "
                        f"reference gives {ref if isinstance(ref, str) else 'a result'}")
        # In this subset only vector matching can fail; anything else is a gap in both.
        assert any(m in fast for m in QUERY_ERRORS), f"{expr}: {fast}"
        return
    assert fast.kind == ref.kind, f"{expr}: kind {fast.kind} vs {ref.kind}"
    f_series = [s for s in fast.series if len(s.ts)]
    r_series = [s for s in ref.series if len(s.ts)]
    assert [s.labels for s in f_series] == [s.labels for s in r_series], (
        f"{expr}: series differ\nfast: {[dict(s.labels) for s in f_series]}\n"
        f"ref:  {[dict(s.labels) for s in r_series]}")
    for fs, rs in zip(f_series, r_series, strict=True):
        assert fs.ts.tolist() == rs.ts.tolist(), (
            f"{expr}: points differ\nfast: {_describe(fs)}\nref:  {_describe(rs)}")
        for fv, rv in zip(fs.values.tolist(), rs.values.tolist(), strict=True):
            assert almost_equal(rv, fv), (
                f"{expr}: values differ\nfast: {_describe(fs)}\nref:  {_describe(rs)}")


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(source=data_sets(), expr=vectors())
def test_fast_and_reference_evaluators_agree(source: MemorySource, expr: str) -> None:
    node, diagnostics = compile_expression(expr)
    assert node is not None, f"{expr}: {[d.message for d in diagnostics]}"
    fast = _outcome(evaluator_by_name("fast"), node, source)
    ref = _outcome(evaluator_by_name("reference"), node, source)
    _assert_same(fast, ref, expr)
