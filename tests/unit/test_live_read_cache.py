"""The live engine's read cache and the store's kept matcher answers.

A cut of what the cache read must be exactly what the store itself answers
(same series, same samples, same order); the cache must forget what it read
whenever the store may have changed: work on the store thread that is not an
evaluation, the engine's own recording writes, writes that bypass the thread.
The store's kept matcher answers must follow inserts, deletions and rollbacks.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.engine import store as store_module
from monitoring.engine.fast.selectors import Selection, selection_of
from monitoring.engine.model import (
    STALE_NAN,
    Labels,
    Matcher,
    Series,
    is_stale,
    labels_of,
    stale_mask,
)
from monitoring.engine.store import Store, StoreError
from monitoring.live.read_cache import ReadCache
from monitoring.live.store_access import StoreAccess

T0 = 1_767_225_600_000
M: list[Matcher] = [("__name__", "=", "m")]


def lbl(name: str, **pairs: str) -> Labels:
    return labels_of({"__name__": name, **pairs})


def data(series: list[Series]) -> list[tuple[Labels, list[int], list[float | str]]]:
    """Comparable form: staleness markers and NaN spelled out."""
    return [(s.labels, s.ts.tolist(),
             ["stale" if is_stale(v) else "nan" if math.isnan(v) else v
              for v in s.values.tolist()]) for s in series]


def sorted_data(sel: Selection) -> list[tuple[Labels, list[int], list[float | str]]]:
    """A sorted, concatenated selection in the comparable form of :func:`data`.

    Also checks that its staleness column marks exactly the markers.
    """
    s = sel.samples
    for vs, marks in zip(s.vs_list, s.stale_list, strict=True):
        want = stale_mask(vs)
        assert (marks is None and not want.any()) or np.array_equal(marks, want)
    return data([Series(labels, ts, vs) for labels, ts, vs in
                 zip(sel.labels, s.ts_list, s.vs_list, strict=True)])


def fill(store: Store) -> None:
    """Three series of ``m`` with gaps, a staleness marker and a NaN; one of ``other``."""
    rows: list[tuple[Labels, int, float]] = []
    for i in range(20):
        rows.append((lbl("m", i="a"), T0 + i * 15_000, float(i)))
        if i % 3:
            rows.append((lbl("m", i="b"), T0 + i * 15_000 + 7, -float(i)))
        rows.append((lbl("other"), T0 + i * 15_000, 1.0))
    rows += [(lbl("m", i="c"), T0 + 100_000, STALE_NAN), (lbl("m", i="c"), T0 + 110_000, math.nan),
             (lbl("m", i="a"), T0 + 400_000, STALE_NAN)]
    store.append(rows)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "m.duckdb") as s:
        fill(s)
        yield s


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-50_000, 450_000), st.integers(-10_000, 300_000)),
                min_size=1, max_size=6),
       st.sampled_from([0, 1, 60_000]))
def test_cuts_are_the_stores_own_answers(store: Store, windows: list[tuple[int, int]],
                                         trim: int) -> None:
    reads = ReadCache(store, trim_ms=trim)
    for start, length in windows:
        lo, hi = T0 + start, T0 + start + length
        assert data(reads.select(M, lo, hi)) == data(store.select(M, lo, hi))
        assert sorted_data(reads.select_samples(M, lo, hi)) == \
            sorted_data(selection_of(store.select(M, lo, hi)))
    assert reads.reads + reads.hits == 2 * sum(length >= 0 for _, length in windows)


def test_a_window_inside_what_was_read_is_a_cut_and_a_wider_one_a_read(store: Store) -> None:
    reads = ReadCache(store)
    first = reads.select(M, T0 + 100_000, T0 + 200_000)
    assert [s.labels for s in first] == [lbl("m", i="a"), lbl("m", i="b"), lbl("m", i="c")]
    later = reads.select(M, T0 + 150_000, T0 + 260_000)  # read up to the newest sample
    assert (reads.reads, reads.hits) == (1, 1)
    assert later[0].ts.tolist() == [T0 + k * 15_000 for k in range(10, 18)]
    assert [s.labels for s in later] == [lbl("m", i="a"), lbl("m", i="b")]  # c has none there
    reads.select(M, T0, T0 + 200_000)  # starts earlier: read again, the union kept
    reads.select(M, T0 + 50_000, T0 + 250_000)
    assert (reads.reads, reads.hits) == (2, 2)
    assert reads.select(M, T0 + 300_000, T0 + 200_000) == []  # an empty interval
    with pytest.raises(ValueError, match="read-only"):
        later[0].values[0] = 1.0  # handed-out arrays are views of what is kept


def test_the_cache_forgets_after_other_work_its_own_writes_and_writes_around_it(
        store: Store) -> None:
    access = StoreAccess(store)
    late = [(lbl("m", i="a"), T0 + 290_000, 99.0)]

    async def newest(n: int) -> list[float]:
        def work(reads: ReadCache) -> list[float]:
            values: list[float] = reads.select(M, T0 + 280_000, T0 + 300_000)[0].values.tolist()
            return values[-n:]
        return await access.evaluate(work)

    async def go() -> list[list[float]]:
        seen = [await newest(1)]
        await access.run(lambda s: s.append(late))  # a collector's write
        seen.append(await newest(1))

        def own_write(reads: ReadCache) -> list[float]:
            reads.select(M, T0, T0 + 300_000)
            reads.store.append([(lbl("m", i="a"), T0 + 295_000, 7.0)])
            reads.wrote()
            values: list[float] = reads.select(M, T0 + 280_000, T0 + 300_000)[0].values.tolist()
            return values

        seen.append(await access.evaluate(own_write))
        store.append([(lbl("m", i="a"), T0 + 299_000, 8.0)])  # bypassing the thread
        seen.append(await newest(1))
        return seen

    try:
        assert asyncio.run(go()) == [[19.0], [99.0], [19.0, 99.0, 7.0], [8.0]]
        assert (access.reads.reads, access.reads.hits) == (5, 0)
    finally:
        access.close()
        store.close()


def test_what_is_kept_is_bounded(store: Store) -> None:
    probe = ReadCache(store)
    probe.select(M, T0, T0 + 100_000)  # read up to the newest sample (T0 + 400 s)
    assert probe.kept == 21 + 13 + 2
    reads = ReadCache(store, limit_samples=probe.kept + 10)
    reads.select(M, T0, T0 + 100_000)
    reads.select([("__name__", "=", "other")], T0, T0 + 400_000)  # 20 more: over the limit
    reads.select(M, T0, T0 + 100_000)
    assert (reads.reads, reads.hits) == (3, 0)
    reads.select(M, T0, T0 + 100_000)
    assert (reads.reads, reads.hits) == (3, 1)
    small = ReadCache(store, limit_samples=5)  # one selection larger than the limit
    for _ in range(2):
        assert data(small.select(M, T0, T0 + 100_000)) == data(store.select(M, T0, T0 + 100_000))
    assert (small.reads, small.hits) == (2, 0)


# ------------------------------------------------------------ the store's matcher answers


def test_matcher_answers_follow_inserts_deletions_and_rollbacks(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.append([(lbl("m", i="a"), T0, 1.0)])
        assert store.series_matching(M) == [lbl("m", i="a")]
        store.append([(lbl("m", i="b"), T0 + 1, 2.0)])
        assert store.series_matching(M) == [lbl("m", i="a"), lbl("m", i="b")]
        with pytest.raises(RuntimeError), store.transaction():
            store.append([(lbl("m", i="z"), T0 + 2, 3.0)])
            assert len(store.series_matching(M)) == 3  # inside: the new series is there
            raise RuntimeError("abandon")
        assert store.series_matching(M) == [lbl("m", i="a"), lbl("m", i="b")]
        with pytest.raises(StoreError), store.transaction():
            store.append([(lbl("m", i="y"), T0 + 2, 3.0)])
            assert len(store.select(M, T0, T0 + 10)) == 3
            try:
                with store.transaction():
                    raise RuntimeError("doomed")
            except RuntimeError:
                pass
        assert [s.labels for s in store.select(M, T0, T0 + 10)] == [lbl("m", i="a"),
                                                                    lbl("m", i="b")]
        store.drop_before(T0 + 1)
        assert store.series_matching(M) == [lbl("m", i="b")]
        # Another connection to the same database adds a series: seen by its stamp.
        store._con.cursor().execute(
            "INSERT INTO series VALUES (1000, 'm', map(['i'], ['w']), 'w')")
        assert store.series_matching(M) == [lbl("m", i="b"), lbl("m", i="w")]


def test_reads_larger_than_a_group_are_counted_and_split(tmp_path: Path) -> None:
    """The one-query path and the counted path give the same series, head and blocks."""
    with Store(tmp_path / "s.duckdb") as store:
        day = 86_400_000
        store.append([(lbl("m", i=str(k)), T0 + t * 60_000, float(t + k))
                      for k in range(5) for t in range(0, 60)])
        store.compact()
        store.append([(lbl("m", i=str(k)), T0 + day + t * 60_000, float(t))
                      for k in range(5) for t in range(0, 30)])
        whole = store.select(M, T0, T0 + 2 * day)
        assert [len(s.ts) for s in whole] == [90] * 5
        for limit in (1, 7, 100, 1_000):
            groups = list(store.select_groups(M, T0, T0 + 2 * day, group_samples=limit))
            assert data([s for g in groups for s in g]) == data(whole)
            assert len(groups) == (5 if limit <= 100 else 1)
        recent = store.select(M, T0 + day + 10 * 60_000, T0 + day + 12 * 60_000)
        assert [s.ts.tolist() for s in recent] == [[T0 + day + 600_000, T0 + day + 660_000,
                                                    T0 + day + 720_000]] * 5
        assert np.array_equal(recent[4].values, [10.0, 11.0, 12.0])


def test_kept_matcher_answers_are_bounded(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_MATCHED_LIMIT", 2)
    wanted = {"a": [lbl("m", i="a")], "b": [lbl("m", i="b")], "c": [lbl("m", i="c")]}
    for _ in range(2):
        for value, expected in wanted.items():
            assert store.series_matching([*M, ("i", "=", value)]) == expected
    assert len(store._matched) <= 2
    store.close()
