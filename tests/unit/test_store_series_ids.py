"""The store's label set -> series id cache (``Store._ids``): same answers as the table.

A collector appends the same label sets every scrape, so the store keeps the
ids it resolved. These tests check that a kept id is never used once the
series table changed under it: series dropped by retention, series created in
a rolled-back transaction, series deleted through another connection; and
that label sets given unsorted or with empty values still find their series.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitoring.engine import store as store_module
from monitoring.engine.model import Labels, Series
from monitoring.engine.store import Store, StoreError

A: Labels = (("__name__", "up"), ("job", "a"))
B: Labels = (("__name__", "up"), ("job", "b"))
KEY_A = '[["__name__","up"],["job","a"]]'
KEY_B = '[["__name__","up"],["job","b"]]'


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "s.duckdb") as s:
        yield s


def ids(store: Store) -> dict[str, int]:
    rows = store._con.execute("SELECT key, id FROM series ORDER BY id").fetchall()
    return {str(k): int(i) for k, i in rows}


def read(store: Store) -> dict[Labels, list[tuple[int, float]]]:
    out: dict[Labels, list[tuple[int, float]]] = {}
    for s in store.select([], 0, 10**9):
        assert isinstance(s, Series)
        out[s.labels] = [(int(t), float(v)) for t, v in zip(s.ts, s.values, strict=True)]
    return out


def write(store: Store, label_sets: list[Labels], ts: int, value: float) -> None:
    n = len(label_sets)
    store.append_arrays(label_sets, np.arange(n), np.full(n, ts), np.full(n, value))


def test_known_label_sets_keep_their_series(store: Store) -> None:
    write(store, [A, B], 1000, 1.0)
    first = ids(store)
    write(store, [B, A], 2000, 2.0)
    write(store, [A], 3000, 3.0)
    assert ids(store) == first
    assert read(store) == {A: [(1000, 1.0), (2000, 2.0), (3000, 3.0)],
                           B: [(1000, 1.0), (2000, 2.0)]}


def test_unnormalised_label_sets_find_the_known_series(store: Store) -> None:
    write(store, [A], 1000, 1.0)
    unsorted = (("job", "a"), ("__name__", "up"), ("empty", ""))
    store.append_arrays([unsorted, (("job", "a"), ("__name__", "up"))], [0, 1], [2000, 3000],
                        [2.0, 3.0])
    store.append_arrays([{"job": "a", "__name__": "up"}], [0], [4000], [4.0])
    assert len(ids(store)) == 1
    assert read(store) == {A: [(1000, 1.0), (2000, 2.0), (3000, 3.0), (4000, 4.0)]}


def test_series_dropped_by_retention_are_created_again(store: Store) -> None:
    write(store, [A, B], 1000, 1.0)
    write(store, [B], 5000, 5.0)
    old = ids(store)
    store.drop_before(2000)  # A has no samples left: its series row goes
    assert ids(store) == {KEY_B: old[KEY_B]}
    write(store, [A], 6000, 6.0)
    assert ids(store) == {KEY_B: old[KEY_B], KEY_A: max(old.values()) + 1}
    assert read(store) == {A: [(6000, 6.0)], B: [(5000, 5.0)]}


def test_series_of_a_rolled_back_transaction_are_not_kept(store: Store) -> None:
    write(store, [A], 1000, 1.0)
    with pytest.raises(RuntimeError), store.transaction():
        write(store, [B], 1000, 1.0)  # creates B, then everything rolls back
        raise RuntimeError("abort")
    assert list(ids(store)) == [KEY_A]
    write(store, [B], 2000, 2.0)
    write(store, [A, B], 3000, 3.0)
    assert read(store) == {A: [(1000, 1.0), (3000, 3.0)], B: [(2000, 2.0), (3000, 3.0)]}


def test_a_doomed_nested_write_drops_what_it_resolved(store: Store) -> None:
    with pytest.raises(StoreError), store.transaction():
        write(store, [A], 1000, 1.0)
        with pytest.raises(ValueError), store.transaction():
            write(store, [B], 1000, 1.0)
            raise ValueError("caught by the caller: the outer transaction is doomed")
    assert ids(store) == {}
    write(store, [A], 2000, 2.0)
    assert read(store) == {A: [(2000, 2.0)]}


def test_series_deleted_through_another_connection_are_created_again(
        store: Store, tmp_path: Path) -> None:
    write(store, [A, B], 1000, 1.0)
    other = store._con.cursor()  # another connection to the same database
    other.execute("DELETE FROM samples")
    other.execute("DELETE FROM series")
    write(store, [A, B], 2000, 2.0)
    assert len(ids(store)) == 2
    assert read(store) == {A: [(2000, 2.0)], B: [(2000, 2.0)]}


# ---------------------------------------------------------------- the head's time bounds


def head_rows(store: Store) -> list[int]:
    return [int(r[0]) for r in store._con.execute("SELECT ts FROM samples ORDER BY ts").fetchall()]


def block_spans(store: Store) -> list[tuple[int, int, int]]:
    rows = store._con.execute("SELECT mint, maxt, n FROM blocks ORDER BY mint").fetchall()
    return [(int(a), int(b), int(n)) for a, b, n in rows]


@pytest.fixture
def small_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_HEAD_LIMIT", 3)
    monkeypatch.setattr(store_module, "BLOCK_MS", 10)


def test_kept_head_bounds_still_fold_when_a_new_window_starts(
        store: Store, small_windows: None) -> None:
    for ts in ([0, 1, 2, 3, 4], [5, 6, 7, 8]):  # all in window [0, 9]: nothing to fold
        store.append_arrays([A], np.zeros(len(ts), dtype=np.int64), ts, np.ones(len(ts)))
    assert head_rows(store) == list(range(9)) and block_spans(store) == []
    write(store, [A], 12, 1.0)  # window [10, 19] begins: 9 older rows > 3
    assert head_rows(store) == [12] and block_spans(store) == [(0, 8, 9)]
    write(store, [A], 13, 1.0)
    assert head_rows(store) == [12, 13] and block_spans(store) == [(0, 8, 9)]


def test_head_bounds_of_a_rolled_back_transaction_are_not_kept(
        store: Store, small_windows: None) -> None:
    store.append_arrays([A], np.zeros(4, dtype=np.int64), [5, 6, 7, 8], np.ones(4))
    with pytest.raises(RuntimeError), store.transaction():
        store.drop_before(10)  # the head is empty for a moment
        write(store, [A], 15, 1.0)  # bounds (15, 15) inside the transaction
        raise RuntimeError("abort")
    assert head_rows(store) == [5, 6, 7, 8]
    write(store, [A], 16, 1.0)  # 4 rows older than window [10, 19] > 3: folded
    assert head_rows(store) == [16] and block_spans(store) == [(5, 8, 4)]
