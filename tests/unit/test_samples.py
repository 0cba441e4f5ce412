"""``Samples``: both layouts hold the same series, and every operation agrees on both.

The live read cache hands out selections concatenated, the DuckDB store series
by series; evaluation must not depend on which one a selection came in.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.fast import search
from monitoring.engine.fast.samples import Samples
from monitoring.engine.fast.selectors import Selection, instant_lookup
from monitoring.engine.model import STALE_NAN, stale_mask

Rows = list[tuple[list[int], bytes, list[bool] | None]]

value = st.one_of(st.floats(-1e3, 1e3), st.just(math.nan), st.just(STALE_NAN))
one_series = st.lists(st.tuples(st.integers(0, 400), value), max_size=25).map(
    lambda pairs: sorted(dict(pairs).items()))
series_lists = st.lists(one_series, max_size=6)


def both(data: list[list[tuple[int, float]]]) -> tuple[Samples, Samples]:
    """The same series made series by series and concatenated."""
    ts_list = [np.array([t for t, _ in s], dtype=np.int64) for s in data]
    vs_list = [np.array([v for _, v in s], dtype=np.float64) for s in data]
    marks = [stale_mask(v) for v in vs_list]
    stale_list = [m if m.any() else None for m in marks]
    lists = Samples.of_lists(ts_list, vs_list, stale_list)
    lens = np.array([len(t) for t in ts_list], dtype=np.int64)
    joined = np.concatenate(marks) if marks else np.zeros(0, dtype=bool)
    flat = Samples.of_flat(
        np.concatenate(ts_list) if data else np.zeros(0, dtype=np.int64),
        np.concatenate(vs_list) if data else np.zeros(0), lens,
        joined if joined.any() else None)
    return lists, flat


def rows(s: Samples) -> Rows:
    """Series by series, values as bytes (NaN payloads included)."""
    return [(t.tolist(), v.tobytes(), None if m is None else m.tolist())
            for t, v, m in zip(s.ts_list, s.vs_list, s.stale_list, strict=True)]


def reference_cut(data: list[list[tuple[int, float]]], mint: int, maxt: int
                  ) -> tuple[list[int], Rows]:
    kept, out = [], []
    for i, s in enumerate(data):
        inside = [(t, v) for t, v in s if mint <= t <= maxt]
        if inside:
            vs = np.array([v for _, v in inside], dtype=np.float64)
            marks = stale_mask(vs)
            kept.append(i)
            out.append(([t for t, _ in inside], vs.tobytes(),
                        marks.tolist() if marks.any() else None))
    return kept, out


@settings(max_examples=300, deadline=None)
@given(series_lists, st.integers(-10, 410), st.integers(-10, 410))
def test_both_layouts_cut_like_the_reference(data: list[list[tuple[int, float]]], mint: int,
                                             maxt: int) -> None:
    lists, flat = both(data)
    assert rows(lists) == rows(flat)
    assert lists.ts.tolist() == flat.ts.tolist() and lists.lens.tolist() == flat.lens.tolist()
    want_rows, want = reference_cut(data, mint, maxt)
    for limit in (search.SEARCH_KEY_LIMIT, 0):  # 0: the searches fall back to their loops
        with pytest.MonkeyPatch.context() as m:
            m.setattr(search, "SEARCH_KEY_LIMIT", limit)
            for s in both(data):
                kept, cut = s.cut(mint, maxt)
                assert kept.tolist() == want_rows
                assert rows(cut) == want


@settings(max_examples=300, deadline=None)
@given(series_lists, st.integers(0, 6), st.integers(0, 6))
def test_both_layouts_agree_on_every_other_operation(data: list[list[tuple[int, float]]],
                                                     a: int, b: int) -> None:
    lists, flat = both(data)
    assert rows(lists.rows(a, max(a, b))) == rows(flat.rows(a, max(a, b)))
    clean_rows, clean = lists.without_stale()
    flat_rows, flat_clean = flat.without_stale()
    assert clean_rows.tolist() == flat_rows.tolist()
    assert rows(clean) == rows(flat_clean)
    for i, t, v in zip(clean_rows.tolist(), clean.ts_list, clean.vs_list, strict=True):
        keep = [(ts, val) for ts, val in data[i] if not stale_mask(np.array([val])).any()]
        assert t.tolist() == [ts for ts, _ in keep]
        assert v.tobytes() == np.array([val for _, val in keep], dtype=np.float64).tobytes()
    some = np.arange(0, len(data), 2, dtype=np.int64)
    assert rows(lists.take(some)) == rows(flat.take(some))


@settings(max_examples=200, deadline=None)
@given(series_lists, st.lists(st.integers(-20, 420), min_size=1, max_size=5, unique=True),
       st.integers(1, 120))
def test_lookups_agree_on_both_layouts(data: list[list[tuple[int, float]]], times: list[int],
                                       lookback: int) -> None:
    labels = [(("i", str(i)),) for i in range(len(data))]
    at = np.array(sorted(times), dtype=np.int64)
    one = instant_lookup(Selection(labels, both(data)[1]), at, lookback, True)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(search, "SEARCH_KEY_LIMIT", 0)  # series by series
        other = instant_lookup(Selection(labels, both(data)[1]), at, lookback, True)
    assert np.array_equal(one[1], other[1])
    present = one[1]
    assert one[0][present].tobytes() == other[0][present].tobytes()
    assert one[2] is not None and other[2] is not None
    assert np.array_equal(one[2][present], other[2][present])
