"""Collector appends merged into the live engine's read cache.

After :meth:`ReadCache.append` (what :meth:`StoreAccess.append` runs on the
store thread) every cut the cache answers must still be exactly the store's
own answer: appends of new series, of series the cache has not seen in a
window, out-of-order and overlapping samples, duplicates within a batch (the
last wins), staleness markers and NaNs. And the cache must keep what an
append did not make unknowable, or it would not save a running engine anything.
"""

from __future__ import annotations

import asyncio
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.fast.selectors import selection_of
from monitoring.engine.model import STALE_NAN, Labels, Matcher, Series
from monitoring.engine.store import Store
from monitoring.live.read_cache import ReadCache
from monitoring.live.store_access import StoreAccess
from tests.unit.test_live_read_cache import T0, data, fill, lbl, sorted_data

SELECTIONS: list[list[Matcher]] = [
    [("__name__", "=", "m")],
    [("__name__", "=", "m"), ("i", "=", "a")],
    [("__name__", "=~", "m|other")],
    [("i", "!=", "b")],
    [("__name__", "=", "other")],
]
POOL = [lbl("m", i="a"), lbl("m", i="b"), lbl("m", i="c"), lbl("m", i="d"), lbl("m", i="e"),
        lbl("other"), lbl("new"), lbl("m", i="d", j="x")]
WINDOWS = [(T0, T0 + 300_000), (T0 + 200_000, T0 + 420_000), (T0 + 250_000, T0 + 500_000),
           (T0 - 60_000, T0 + 60_000)]

samples = st.tuples(st.sampled_from(POOL), st.integers(T0 - 30_000, T0 + 480_000),
                    st.one_of(st.floats(-5, 5), st.just(STALE_NAN), st.just(math.nan)))
batches = st.lists(st.lists(samples, min_size=1, max_size=12), min_size=1, max_size=4)


def check_all(reads: ReadCache, store: Store) -> None:
    for matchers in SELECTIONS:
        for mint, maxt in WINDOWS:
            assert data(reads.select(matchers, mint, maxt)) == \
                data(store.select(matchers, mint, maxt)), (matchers, mint, maxt)
            assert sorted_data(reads.select_samples(matchers, mint, maxt)) == \
                sorted_data(selection_of(store.select(matchers, mint, maxt)))


@settings(max_examples=80, deadline=None)
@given(batches, st.sampled_from([0, 60_000]))
def test_cuts_after_appends_are_the_stores_own_answers(
        appends: list[list[tuple[Labels, int, float]]], trim: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "m.duckdb") as store:
        fill(store)
        reads = ReadCache(store, trim_ms=trim)
        check_all(reads, store)
        for batch in appends:
            assert reads.append(batch) == len(batch)
            check_all(reads, store)


def test_an_append_at_the_newest_time_keeps_the_selection(tmp_path: Path) -> None:
    """A collector's batch at "now" extends the kept window: the next group hits it."""
    with Store(tmp_path / "m.duckdb") as store:
        fill(store)
        access = StoreAccess(store)
        m: list[Matcher] = [("__name__", "=", "m")]

        async def go() -> list[list[float]]:
            def newest(reads: ReadCache) -> list[float]:
                got = reads.select(m, T0 + 240_000, T0 + 300_000)
                return [float(s.values[-1]) for s in got]

            seen = [await access.evaluate(newest)]
            await access.append([(lbl("m", i="a"), T0 + 300_000, 41.0),
                                 (lbl("m", i="b"), T0 + 299_007, 42.0),
                                 (lbl("m", i="d"), T0 + 300_000, 43.0),
                                 (lbl("other"), T0 + 300_000, 44.0)])
            seen.append(await access.evaluate(newest))
            return seen

        try:
            assert asyncio.run(go()) == [[19.0, -19.0], [41.0, 42.0, 43.0]]
            assert (access.reads.reads, access.reads.hits) == (1, 1)
        finally:
            access.close()


def test_a_series_the_window_did_not_hold_drops_only_that_selection(tmp_path: Path) -> None:
    """``m{i="c"}`` exists but has no samples after T0 + 110 s: its place is unknown."""
    with Store(tmp_path / "m.duckdb") as store:
        fill(store)
        reads = ReadCache(store)
        m: list[Matcher] = [("__name__", "=", "m")]
        other: list[Matcher] = [("__name__", "=", "other")]
        reads.select(m, T0 + 200_000, T0 + 280_000)
        reads.select(other, T0 + 200_000, T0 + 280_000)
        reads.append([(lbl("m", i="c"), T0 + 250_000, 5.0)])
        assert [s.labels for s in reads.select(m, T0 + 200_000, T0 + 280_000)] == \
            [lbl("m", i="a"), lbl("m", i="b"), lbl("m", i="c")]
        reads.select(other, T0 + 200_000, T0 + 280_000)
        assert (reads.reads, reads.hits) == (3, 1)


def test_a_failed_append_empties_the_cache(tmp_path: Path) -> None:
    with Store(tmp_path / "m.duckdb") as store:
        fill(store)
        reads = ReadCache(store)
        m: list[Matcher] = [("__name__", "=", "m")]
        reads.select(m, T0, T0 + 280_000)
        bad = [((("a", "1"), ("a", "2")), T0 + 1, 1.0)]  # a duplicate label name
        try:
            reads.append(bad)
        except ValueError as exc:
            assert "duplicate label name" in str(exc)
        else:
            raise AssertionError("the append should have failed")
        reads.select(m, T0, T0 + 280_000)
        assert (reads.reads, reads.hits) == (2, 0)


def test_a_running_engine_reads_a_selection_once_and_forgets_what_is_old(
        tmp_path: Path) -> None:
    """An hour of minutes as a running engine asks, a collector writing each minute's
    samples: one read, then cuts; what is kept stays bounded; the store's answers."""

    def minute_of(minute: int) -> list[tuple[Labels, int, float]]:
        return [(lbl("m", i=str(k)), T0 + j * 15_000 + k, float(j * k))
                for j in range(4 * minute, 4 * minute + 4) for k in range(3)]

    with Store(tmp_path / "m.duckdb") as store:
        store.append([row for minute in range(15) for row in minute_of(minute)])
        asked: list[tuple[int, int]] = []
        select = store.select

        def spy(matchers: Sequence[Matcher], mint: int, maxt: int) -> list[Series]:
            asked.append((mint, maxt))
            return select(matchers, mint, maxt)

        store.select = spy  # type: ignore[method-assign,assignment]
        reads = ReadCache(store)
        m: list[Matcher] = [("__name__", "=", "m")]
        kept = []
        for minute in range(15, 75):
            reads.append(minute_of(minute))
            t = T0 + minute * 60_000 + 30_000
            for width in (600_000, 300_000):
                assert data(reads.select(m, t - width, t)) == data(select(m, t - width, t))
            kept.append(reads.kept)
        assert (reads.reads, reads.hits) == (1, 119)
        # From the first window's start up to the newest sample (minute 15's last).
        assert asked == [(T0 + 330_000, T0 + 63 * 15_000 + 2)]
        # The widest window (ten minutes), at most a minute not yet forgotten, and
        # the samples after the evaluation time: 40 to 46 samples of each series.
        assert all(3 * 40 <= k <= 3 * 46 for k in kept), kept
        assert max(kept[-40:]) == max(kept[:20])


def test_a_selection_read_up_to_the_newest_sample_holds_later_ones(tmp_path: Path) -> None:
    """``m{i="a"}``'s staleness marker at T0 + 400 s comes after a window without it."""
    with Store(tmp_path / "m.duckdb") as store:
        fill(store)
        reads = ReadCache(store)
        m: list[Matcher] = [("__name__", "=", "m"), ("i", "=", "a")]
        assert reads.select(m, T0 + 290_000, T0 + 300_000) == []
        assert data(reads.select(m, T0 + 290_000, T0 + 420_000)) == \
            [(lbl("m", i="a"), [T0 + 400_000], ["stale"])]
        assert (reads.reads, reads.hits) == (1, 1)
