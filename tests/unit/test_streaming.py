"""Range functions streamed group by group from the store give the same answers.

A range function over a selector that nothing else in the query reads is fed
by :meth:`Store.select_groups` through a read-ahead thread; everything else
reads whole selections. These tests make the groups tiny (many groups, series
from every kind of metric mixed across them) and compare the two paths on a
real DuckDB file, including annotations and errors raised half-way through.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitoring.dsl.compiler import compile_query
from monitoring.engine.evaluator import evaluate
from monitoring.engine.fast import selectors
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import STALE_NAN, EvalError, QueryResult, Series, labels_of
from monitoring.engine.query import QueryOptions
from monitoring.engine.store import Store
from tests.support import datagen

START = 1_767_225_600_000
HOUR = 3_600_000


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("streaming") / "history.duckdb"
    series = list(datagen.generate(40, START, 6 * HOUR, seed=3))
    # A gauge whose name does not look like a counter (rate() adds an info), and a
    # series with a staleness marker in the middle.
    ts = START + np.arange(0, 6 * HOUR, 15_000, dtype=np.int64) + 500
    values = np.linspace(0.0, 100.0, len(ts))
    values[len(ts) // 2] = STALE_NAN
    series.append(Series(labels_of({"__name__": "gauge_like", "job": "x"}), ts, values))
    with Store(path) as s:
        s.append_series(series[: len(series) // 2])
        s.compact()
        s.append_series(series[len(series) // 2:])  # half in blocks, half in the head
    with Store(path, read_only=True) as s:
        yield s


@pytest.fixture()
def tiny_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selectors, "STREAM_GROUP", 500)
    monkeypatch.setattr(selectors, "STREAM_GROUP_CHEAP", 500)


def run(expr: str, source: Store | MemorySource, options: QueryOptions | None = None
        ) -> QueryResult:
    node, diagnostics, _ = compile_query(expr)
    assert node is not None, diagnostics
    return evaluate(node, source, START + HOUR, START + 5 * HOUR, 60_000, options)


def as_table(result: QueryResult) -> dict[object, list[tuple[int, float]]]:
    return {s.labels: [(int(t), float(v)) for t, v in zip(s.ts, s.values, strict=True)]
            for s in result.series}


def same_result(a: QueryResult, b: QueryResult) -> None:
    """Same series, points, annotations; values equal up to summation rounding.

    Range kernels take compensated prefix sums over a batch of series (deriv's
    regression sums also over times relative to the batch's first sample), so the
    last digits of a value depend on which series share its batch; documented in
    docs/architecture.md. Seen: 3e-12 relative on deriv, 1e-14 elsewhere. A real
    difference (a wrong window, a lost series) is far larger.
    """
    assert [s.labels for s in a.series] == [s.labels for s in b.series]
    ta, tb = as_table(a), as_table(b)
    for key, points in ta.items():
        other = tb[key]
        assert [t for t, _ in points] == [t for t, _ in other]
        for (_, x), (_, y) in zip(points, other, strict=True):
            assert x == pytest.approx(y, rel=1e-10, abs=1e-300, nan_ok=True)
    assert a.warnings == b.warnings
    assert a.infos == b.infos


@pytest.mark.parametrize("expr", [
    "rate(c_total[5m])",
    "rate(gauge_like[5m])",
    "avg_over_time(m[5m]) > 0.5",
    "max by (job) (avg_over_time(m[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(h_bucket[5m])))",
    "quantile_over_time(0.5, m[10m])",
    "deriv(m[30m])",
    "count_over_time({job=~\".+\"}[2m])",
    "last_over_time(gauge_like[1m] offset 10m)",
    "limitk(3, rate(c_total[5m]))",  # takes the first series in (label) order
    "absent_over_time(c_total[5m])",
    "absent_over_time(nothing{job=\"x\"}[5m])",
])
def test_streamed_equals_whole_and_memory(store: Store, tiny_groups: None, expr: str) -> None:
    streamed = run(expr, store)
    calls: list[int] = []
    original = Store.select_groups

    def counting(self: Store, *args: object, **kwargs: object) -> Iterator[list[Series]]:
        for group in original(self, *args, **kwargs):  # type: ignore[arg-type]
            calls.append(len(group))
            yield group

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Store, "select_groups", counting)
        run(expr, store)
    if "absent_over_time" in expr:  # reads whole selections, in one group at most
        assert len(calls) <= 1
    elif "gauge_like" in expr:  # one series: one group
        assert len(calls) == 1
    else:
        assert len(calls) > 2  # really several groups
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(selectors.RawStore, "stream", lambda *_: None)
        whole = run(expr, store)
    memory = run(expr, MemorySource(_everything(store)))
    same_result(streamed, whole)
    same_result(streamed, memory)


def _everything(store: Store) -> list[Series]:
    return store.select([("__name__", "=~", ".+")], START - HOUR, START + 7 * HOUR)


def test_a_selector_read_twice_is_not_streamed(store: Store, tiny_groups: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    streams: list[object] = []
    original = selectors.RawStore.stream

    def spy(self: selectors.RawStore, *args: object) -> object:
        out = original(self, *args)  # type: ignore[arg-type]
        streams.append(out)
        return out

    monkeypatch.setattr(selectors.RawStore, "stream", spy)
    run("rate(c_total[5m]) / increase(c_total[5m])", store)
    run("rate(c_total[5m]) + on() group_left count(c_total)", store)
    assert streams and all(s is None for s in streams)
    streams.clear()
    run("rate(c_total[5m])", store)
    assert streams and streams[0] is not None


def test_select_groups_partition_select(store: Store) -> None:
    matchers = [("__name__", "=~", "m|c_total")]
    whole = store.select(matchers, START, START + 6 * HOUR)
    groups = list(store.select_groups(matchers, START, START + 6 * HOUR, group_samples=800))
    assert len(groups) > 3
    flat = [s for g in groups for s in g]
    assert [s.labels for s in flat] == [s.labels for s in whole]
    for a, b in zip(flat, whole, strict=True):
        assert np.array_equal(a.ts, b.ts)
        assert np.array_equal(a.values, b.values, equal_nan=True)


def test_too_many_samples_stops_the_stream_and_frees_the_store(store: Store,
                                                                tiny_groups: None) -> None:
    with pytest.raises(EvalError, match="too many samples"):
        run("rate(c_total[5m])", store, QueryOptions(max_samples=3_000))
    # The read-ahead thread has let go of the store: another thread can read it.
    done = threading.Event()

    def other() -> None:
        store.select([("__name__", "=", "m")], START, START + HOUR)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(timeout=10)
    assert done.is_set()


def test_read_ahead_hands_over_errors_and_stops_early() -> None:
    closed = threading.Event()

    def failing() -> Iterator[int]:
        try:
            yield 1
            raise RuntimeError("disk on fire")
        finally:
            closed.set()

    seen = []
    with pytest.raises(RuntimeError, match="disk on fire"):
        for item in selectors.read_ahead(failing()):
            seen.append(item)
    assert seen == [1] and closed.is_set()

    produced: list[int] = []
    stopped = threading.Event()

    def endless() -> Iterator[int]:
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            stopped.set()

    reader = selectors.read_ahead(endless())
    assert next(reader) == 0
    reader.close()
    assert stopped.wait(5)
    assert len(produced) <= 4  # it read ahead by at most a group or two


def test_the_stream_holds_one_state_of_the_store(tmp_path: Path, tiny_groups: None) -> None:
    """A writer waits until a streamed read has finished (the lock is held between groups)."""
    path = tmp_path / "h.duckdb"
    with Store(path) as s:
        s.append_series(list(datagen.generate(12, START, 2 * HOUR, seed=1)))
        groups = s.select_groups([("__name__", "=", "c_total")], START, START + 2 * HOUR,
                                 group_samples=500)
        first = next(groups)
        wrote = threading.Event()

        def writer() -> None:
            s.append([({"__name__": "c_total", "instance": "new"}, START + 10, 1.0)])
            wrote.set()

        t = threading.Thread(target=writer)
        t.start()
        assert not wrote.wait(0.3)
        rest = list(groups)
        t.join(timeout=10)
        assert wrote.is_set()
        names = {dict(x.labels).get("instance") for g in [first, *rest] for x in g}
        assert "new" not in names
