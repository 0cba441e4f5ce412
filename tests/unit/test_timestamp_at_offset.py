"""``timestamp(v @ t offset o)``: where Prometheus's engine finds the sample.

Regression for the differential test's ``timestamp(m @ start() offset 5m)``,
for which Prometheus (2.42 and 3.x alike) returns no series. engine.go's
``rangeEvalTimestampFunctionOverVectorSelector`` sets the selector's offset to
``step - t`` so that every step looks back from ``t`` itself (the written
offset is lost), while the storage returned only the selector's own samples,
``[t - o - 5m, t - o]``. So the sample found is the newest one in
``(t - 5m, t - o]`` for ``o >= 0`` and in ``[t - o - 5m, t]`` for ``o < 0``;
with ``o >= 5m`` there is none. Without ``timestamp()``, or without ``@``,
``offset`` moves the lookup as usual. Both evaluators must agree.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from monitoring.dsl.compiler import compile_query
from monitoring.engine import reference
from monitoring.engine.evaluator import evaluate as fast
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import QueryResult, Series, SeriesSource, labels_of
from monitoring.engine.query import QueryOptions

S = 1000
Evaluate = Callable[..., QueryResult]
ENGINES = pytest.mark.parametrize("engine", [fast, reference.evaluate], ids=["fast", "reference"])

# x: a sample every 10 s from 0 s to 600 s, its value its time. y: samples at 0 s and 140 s.
SOURCE = MemorySource([
    Series.of(labels_of({"__name__": "x"}), [(t * S, float(t)) for t in range(0, 601, 10)]),
    Series.of(labels_of({"__name__": "y"}), [(0, 1.0), (140 * S, 2.0)]),
])


def instant(engine: Evaluate, text: str, at_s: float, source: SeriesSource = SOURCE
            ) -> list[float]:
    node, diagnostics, positions = compile_query(text)
    assert node is not None, diagnostics
    result = engine(node, source, int(at_s * S), int(at_s * S), 0,
                    QueryOptions(positions=positions), instant=True)
    return [float(v) for s in result.series for v in s.values]


@ENGINES
def test_an_offset_of_the_whole_lookback_finds_nothing(engine: Evaluate) -> None:
    # The differential test's case: the sample at t - 5m lies outside (t - 5m, t].
    assert instant(engine, "timestamp(x @ 400 offset 5m)", 0) == []
    assert instant(engine, "timestamp((x @ 400 offset 5m))", 0) == []
    # The selector alone, and timestamp() without @, look 5 minutes back as usual.
    assert instant(engine, "x @ 400 offset 5m", 0) == [100.0]
    assert instant(engine, "timestamp(x offset 5m)", 400) == [100.0]


@ENGINES
def test_a_positive_offset_finds_the_newest_sample_within_the_lookback_of_at(
        engine: Evaluate) -> None:
    assert instant(engine, "timestamp(x @ 400 offset 2m)", 0) == [280.0]
    # The newest sample at or before 110 s is at 110 s, after 400 s - 5m = 100 s.
    assert instant(engine, "timestamp(x @ 400 offset 4m50s)", 0) == [110.0]
    # At or before 105 s it is the one at 100 s: not after 100 s (left-open lookback).
    assert instant(engine, "timestamp(x @ 400 offset 4m55s)", 0) == []


@ENGINES
def test_a_negative_offset_looks_back_from_at_within_the_selected_samples(
        engine: Evaluate) -> None:
    # Selected: [200 s + 60 s - 5m, 260 s]; looked up at 200 s, not at 260 s.
    assert instant(engine, "timestamp(x @ 200 offset -1m)", 0) == [200.0]
    assert instant(engine, "x @ 200 offset -1m", 0) == [260.0]
    # Selected from 140 s on, closed: the sample at 140 s is found at 200 s.
    assert instant(engine, "timestamp(y @ 200 offset -4m)", 0) == [140.0]
    # Selected from 141 s on: nothing at or before 200 s.
    assert instant(engine, "timestamp(y @ 200 offset -4m1s)", 0) == []


@ENGINES
def test_a_range_query_repeats_the_pinned_result_at_every_step(engine: Evaluate) -> None:
    node, diagnostics, positions = compile_query("timestamp(x @ end() offset 1m)")
    assert node is not None, diagnostics
    result = engine(node, SOURCE, 300 * S, 500 * S, 100 * S, QueryOptions(positions=positions))
    assert [(list(s.ts), list(s.values)) for s in result.series] == [
        ([300 * S, 400 * S, 500 * S], [440.0, 440.0, 440.0])]
    node, diagnostics, positions = compile_query("timestamp(x @ start() offset 5m)")
    assert node is not None, diagnostics
    result = engine(node, SOURCE, 400 * S, 500 * S, 100 * S, QueryOptions(positions=positions))
    assert result.series == []
