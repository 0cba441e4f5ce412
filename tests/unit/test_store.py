"""The DuckDB metric store: writes, reads, staleness, retention, atomicity, matchers.

Every test uses a real DuckDB file. The matcher semantics are checked against
``MemorySource`` (the reference) on the same data, with Hypothesis choosing the
matchers, including regular expressions, negations, absent labels and empty
values.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.engine import store as store_module
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import STALE_NAN, Labels, Matcher, Series, is_stale, labels_of
from monitoring.engine.store import Store, StoreError, series_query

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def lbl(**pairs: str) -> Labels:
    return labels_of({("__name__" if k == "name" else k): v for k, v in pairs.items()})


def as_dict(series: list[Series]) -> dict[Labels, list[tuple[int, float | str]]]:
    """Series as comparable data: NaN and staleness markers spelled out."""
    out: dict[Labels, list[tuple[int, float | str]]] = {}
    for s in series:
        points: list[tuple[int, float | str]] = []
        for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
            if is_stale(v):
                points.append((t, "stale"))
            elif math.isnan(v):
                points.append((t, "nan"))
            else:
                points.append((t, v))
        assert s.labels not in out
        out[s.labels] = points
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "m.duckdb") as s:
        yield s


# ---------------------------------------------------------------- basics


def test_empty_store(store: Store) -> None:
    assert store.select([], 0, 10**15) == []
    assert store.time_range() is None
    stats = store.stats()
    assert (stats.series, stats.samples) == (0, 0)
    assert stats.bytes > 0


def test_append_and_select_round_trip(store: Store) -> None:
    a, b = lbl(name="up", job="api"), lbl(name="up", job="db")
    n = store.append([(a, T0, 1.0), (b, T0, 0.0), (a, T0 + 15_000, 2.5), (b, T0 + 30_000, 1.0)])
    assert n == 4
    got = as_dict(store.select([("__name__", "=", "up")], T0, T0 + 60_000))
    assert got == {a: [(T0, 1.0), (T0 + 15_000, 2.5)], b: [(T0, 0.0), (T0 + 30_000, 1.0)]}
    assert store.time_range() == (T0, T0 + 30_000)
    stats = store.stats()
    assert (stats.series, stats.samples) == (2, 4)


def test_select_bounds_are_inclusive_and_empty_series_left_out(store: Store) -> None:
    a, b = lbl(name="m", i="a"), lbl(name="m", i="b")
    store.append([(a, 1000, 1.0), (a, 2000, 2.0), (a, 3000, 3.0), (b, 5000, 5.0)])
    got = as_dict(store.select([], 2000, 3000))
    assert got == {a: [(2000, 2.0), (3000, 3.0)]}
    assert store.select([], 3001, 4999) == []
    assert store.select([], 4000, 1000) == []
    assert as_dict(store.select([], 5000, 5000)) == {b: [(5000, 5.0)]}


def test_selected_arrays_have_model_dtypes(store: Store) -> None:
    store.append([(lbl(name="m"), 1, 1.0)])
    (s,) = store.select([], 0, 10)
    assert s.ts.dtype == np.int64 and s.values.dtype == np.float64


def test_series_come_in_creation_order(store: Store) -> None:
    names = ["zeta", "alpha", "mid", "beta"]
    for i, name in enumerate(names):
        store.append([(lbl(name=name), 1000 * i, float(i))])
    assert [s.labels for s in store.select([], 0, 10**6)] == [lbl(name=n) for n in names]
    assert store.series_matching([]) == [lbl(name=n) for n in names]


def test_labels_given_as_mapping_or_pairs_are_one_series(store: Store) -> None:
    store.append([({"__name__": "m", "b": "2", "a": "1"}, 1, 1.0),
                  ((("a", "1"), ("__name__", "m"), ("b", "2")), 2, 2.0),
                  ({"__name__": "m", "a": "1", "b": "2", "c": ""}, 3, 3.0)])
    got = as_dict(store.select([], 0, 10))
    assert got == {lbl(name="m", a="1", b="2"): [(1, 1.0), (2, 2.0), (3, 3.0)]}


def test_same_label_set_twice_in_one_arrays_call(store: Store) -> None:
    sets = [{"__name__": "m", "a": "1"}, (("__name__", "m"), ("a", "1"))]
    store.append_arrays(sets, [0, 1, 0], [1, 2, 3], [1.0, 2.0, 3.0])
    assert as_dict(store.select([], 0, 10)) == {lbl(name="m", a="1"): [(1, 1.0), (2, 2.0),
                                                                        (3, 3.0)]}
    assert store.stats().series == 1


def test_duplicate_label_name_is_an_error(store: Store) -> None:
    with pytest.raises(ValueError, match="duplicate label name"):
        store.append([((("a", "1"), ("a", "2")), 1, 1.0)])
    assert store.stats().series == 0


def test_series_without_metric_name(store: Store) -> None:
    store.append([(lbl(job="x"), 1, 1.0)])
    assert as_dict(store.select([("job", "=", "x")], 0, 10)) == {lbl(job="x"): [(1, 1.0)]}
    assert store.select([("__name__", "=~", ".+")], 0, 10) == []
    assert len(store.select([("__name__", "=", "")], 0, 10)) == 1


def test_last_write_wins_within_a_batch_and_across_writes(store: Store) -> None:
    a = lbl(name="m")
    store.append([(a, 3000, 3.0), (a, 1000, 1.0), (a, 1000, 10.0), (a, 2000, 2.0)])
    assert as_dict(store.select([], 0, 10**6)) == {a: [(1000, 10.0), (2000, 2.0), (3000, 3.0)]}
    store.append([(a, 2000, 20.0), (a, 4000, 4.0)])
    assert as_dict(store.select([], 0, 10**6)) == {
        a: [(1000, 10.0), (2000, 20.0), (3000, 3.0), (4000, 4.0)]}
    assert store.stats().samples == 4


def reference(sets: list[Labels], idx: np.ndarray, ts: np.ndarray, vs: np.ndarray,
              memory: MemorySource | None = None) -> MemorySource:
    """A MemorySource holding the samples, the last of each (series, time) kept."""
    memory = memory or MemorySource()
    last: dict[tuple[int, int], float] = {}
    for i, t, v in zip(idx.tolist(), ts.tolist(), vs.tolist(), strict=True):
        last[(i, t)] = v
    for k, labels in enumerate(sets):
        points = sorted((t, v) for (i, t), v in last.items() if i == k)
        if points:
            memory.add(Series.of(labels, points))
    return memory


def test_writes_agree_with_memory_source_on_overwrites(store: Store) -> None:
    rng = np.random.default_rng(3)
    memory = MemorySource()
    sets = [lbl(name="m", i=str(i)) for i in range(4)]
    for _ in range(6):
        n = 50
        idx = rng.integers(0, len(sets), n)
        ts = rng.integers(0, 40, n) * 1000
        values = rng.normal(size=n)
        store.append_arrays(sets, idx, ts, values)
        reference(sets, idx, ts, values, memory)
    assert as_dict(store.select([], 0, 10**6)) == as_dict(memory.select([], 0, 10**6))


# ---------------------------------------------------------------- values


def test_staleness_markers_are_null_and_come_back_as_stale_nan(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    a = lbl(name="m")
    with Store(path) as store:
        store.append([(a, 1, 1.0), (a, 2, STALE_NAN), (a, 3, math.nan), (a, 4, math.inf),
                      (a, 5, -math.inf), (a, 6, -0.0), (a, 7, 5e-324)])
        (s,) = store.select([], 0, 10)
        assert as_dict([s]) == {a: [(1, 1.0), (2, "stale"), (3, "nan"), (4, math.inf),
                                    (5, -math.inf), (6, -0.0), (7, 5e-324)]}
        assert math.copysign(1.0, s.values[5]) == -1.0
    with duckdb.connect(str(path), read_only=True) as con:
        nulls = con.execute("SELECT ts FROM samples WHERE value IS NULL").fetchall()
        nans = con.execute("SELECT ts FROM samples WHERE isnan(value)").fetchall()
    assert nulls == [(2,)]
    assert nans == [(3,)]


def test_only_nan_or_only_stale_batches(store: Store) -> None:
    store.append_series(Series(lbl(name="a"), np.array([1, 2]), np.array([math.nan] * 2)))
    store.append_series(Series(lbl(name="b"), np.array([1, 2]), np.array([STALE_NAN] * 2)))
    got = as_dict(store.select([], 0, 10))
    assert got == {lbl(name="a"): [(1, "nan"), (2, "nan")],
                   lbl(name="b"): [(1, "stale"), (2, "stale")]}


def test_int64_extremes(store: Store) -> None:
    a = lbl(name="m")
    lo, hi = -(2**63), 2**63 - 1
    store.append([(a, lo, 1.0), (a, -1, 2.0), (a, hi, 3.0)])
    assert as_dict(store.select([], lo, hi)) == {a: [(lo, 1.0), (-1, 2.0), (hi, 3.0)]}
    assert len(store.select([], -(2**70), 2**70)[0].ts) == 3  # bounds beyond int64
    assert store.time_range() == (lo, hi)


# ---------------------------------------------------------------- bulk paths


def test_append_series_and_arrays_agree(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    series = [Series(lbl(name="m", i=str(i)), np.arange(100, dtype=np.int64) * 15_000 + T0,
                     rng.normal(size=100)) for i in range(7)]
    with Store(tmp_path / "a.duckdb") as a, Store(tmp_path / "b.duckdb") as b:
        assert a.append_series(series) == 700
        idx = np.repeat(np.arange(7), 100)
        # Shuffled: the arrays path sorts by (series, time).
        order = rng.permutation(700)
        ts = np.concatenate([s.ts for s in series])[order]
        vs = np.concatenate([s.values for s in series])[order]
        assert b.append_arrays([s.labels for s in series], idx[order], ts, vs) == 700
        want = as_dict(series)
        assert as_dict(a.select([], 0, 2**62)) == want
        assert as_dict(b.select([], 0, 2**62)) == want


def test_append_series_accepts_one_series_a_generator_and_skips_empty(store: Store) -> None:
    one = Series(lbl(name="one"), np.array([1]), np.array([1.0]))
    assert store.append_series(one) == 1
    gen = (Series(lbl(name="g", i=str(i)), np.array([i], dtype=np.int64),
                  np.array([float(i)])) for i in range(3))
    assert store.append_series(gen) == 3
    empty = Series(lbl(name="empty"), np.array([], dtype=np.int64), np.array([]))
    assert store.append_series([empty]) == 0
    assert store.stats().series == 4


def test_append_arrays_checks_its_arguments(store: Store) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        store.append_arrays([lbl(name="m")], [0, 0], [1], [1.0, 2.0])
    with pytest.raises(ValueError, match="out of range"):
        store.append_arrays([lbl(name="m")], [1], [1], [1.0])
    with pytest.raises(ValueError, match="out of range"):
        store.append_arrays([lbl(name="m")], [-1], [1], [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        store.append_arrays([lbl(name="m")], [[0]], [[1]], [[1.0]])
    assert store.append_arrays([lbl(name="m")], [], [], []) == 0
    assert store.stats().series == 0


def test_writes_and_reads_in_small_pieces(store: Store, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    """Bulk writes and large reads are split; the result must not depend on the split."""
    monkeypatch.setattr(store_module, "_CHUNK", 7)
    monkeypatch.setattr(store_module, "_READ_GROUP", 5)
    rng = np.random.default_rng(11)
    sets = [lbl(name="m", i=str(i)) for i in range(5)]
    idx = rng.integers(0, 5, 200)
    ts = rng.integers(0, 60, 200)
    vs = rng.normal(size=200)
    store.append_arrays(sets, idx, ts, vs)
    memory = reference(sets, idx, ts, vs)
    assert sum(len(s.ts) for s in memory.all_series()) < 200  # duplicates were given
    assert as_dict(store.select([], 0, 100)) == as_dict(memory.select([], 0, 100))
    assert as_dict(store.select([], 10, 20)) == as_dict(memory.select([], 10, 20))
    streamed = list(store.iter_series(batch_samples=3))
    assert as_dict(streamed) == as_dict(memory.select([], 0, 100))


def test_interleaved_small_appends_read_back_sorted(store: Store) -> None:
    sets = [lbl(name="m", i=str(i)) for i in range(3)]
    for step in range(20):
        store.append([(s, T0 + step * 1000, float(step)) for s in reversed(sets)])
    got = store.select([], T0, T0 + 10**6)
    assert [s.labels for s in got] == list(reversed(sets))  # created in that order
    for s in got:
        assert s.ts.tolist() == [T0 + k * 1000 for k in range(20)]
    before = as_dict(got)
    store.compact()
    assert as_dict(store.select([], T0, T0 + 10**6)) == before


def test_iter_series_union_of_selectors_and_bounds(store: Store) -> None:
    store.append([(lbl(name="a"), 1, 1.0), (lbl(name="b"), 2, 2.0), (lbl(name="c"), 3, 3.0)])
    got = list(store.iter_series([[("__name__", "=", "a")], [("__name__", "=~", "a|c")]]))
    assert [s.labels for s in got] == [lbl(name="a"), lbl(name="c")]
    got = list(store.iter_series(mint_ms=2, maxt_ms=2))
    assert as_dict(got) == {lbl(name="b"): [(2, 2.0)]}


# ---------------------------------------------------------------- transactions


def test_failed_write_leaves_the_store_as_it_was(store: Store) -> None:
    store.append([(lbl(name="m"), 1, 1.0)])

    def samples() -> Iterator[tuple[Labels, int, float]]:
        yield lbl(name="m"), 1, 100.0  # overwrite...
        yield lbl(name="new"), 2, 2.0  # ...and a new series
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        store.append(samples())
    assert as_dict(store.select([], 0, 10)) == {lbl(name="m"): [(1, 1.0)]}
    # The id counter was rolled back too: the next series gets the next id.
    store.append([(lbl(name="later"), 3, 3.0)])
    assert store.series_matching([]) == [lbl(name="m"), lbl(name="later")]


def test_transaction_groups_writes(store: Store) -> None:
    with pytest.raises(KeyError), store.transaction():
        store.append([(lbl(name="a"), 1, 1.0)])
        store.append_series(Series(lbl(name="b"), np.array([2]), np.array([2.0])))
        raise KeyError("stop")
    assert store.select([], 0, 10) == []
    with store.transaction():
        store.append([(lbl(name="a"), 1, 1.0)])
        store.append([(lbl(name="b"), 2, 2.0)])
    assert len(store.select([], 0, 10)) == 2


def test_failure_caught_inside_a_transaction_still_rolls_it_back(store: Store) -> None:
    with pytest.raises(StoreError, match="nothing was written"), store.transaction():
        store.append([(lbl(name="a"), 1, 1.0)])
        with pytest.raises(ValueError):
            store.append([((("x", "1"), ("x", "2")), 1, 1.0)])
    assert store.select([], 0, 10) == []
    store.append([(lbl(name="a"), 1, 1.0)])  # the store is usable afterwards
    assert len(store.select([], 0, 10)) == 1


# ---------------------------------------------------------------- retention


def test_drop_before_deletes_old_samples_and_empty_series(store: Store) -> None:
    old, both = lbl(name="old"), lbl(name="both")
    store.append([(old, 1000, 1.0), (both, 1000, 1.0), (both, 5000, 5.0)])
    gone = store.drop_before(5000)
    assert (gone.samples, gone.series) == (2, 1)
    assert as_dict(store.select([], 0, 10**6)) == {both: [(5000, 5.0)]}
    assert store.series_matching([]) == [both]
    # Ids are never reused: a new series sorts after the surviving one.
    store.append([(lbl(name="new"), 6000, 6.0), (old, 6000, 6.0)])
    assert store.series_matching([]) == [both, lbl(name="new"), old]


def test_retain_counts_from_the_newest_sample(store: Store) -> None:
    a = lbl(name="m")
    store.append([(a, T0 + k * 60_000, float(k)) for k in range(10)])
    gone = store.retain(5 * 60_000)  # keep [T0+4m, T0+9m]
    assert gone.samples == 4 and gone.series == 0
    assert store.time_range() == (T0 + 4 * 60_000, T0 + 9 * 60_000)
    gone = store.retain(0, now_ms=T0 + 100 * 60_000)
    assert (gone.samples, gone.series) == (6, 1)
    assert store.time_range() is None
    assert store.retain(60_000) == store_module.Retention(0, 0)
    with pytest.raises(ValueError, match="negative"):
        store.retain(-1)


# ---------------------------------------------------------------- opening


def test_data_persists_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with Store(path) as s:
        s.append([(lbl(name="m", a='q"\\\n'), 1, 1.0), (lbl(name="m"), 2, STALE_NAN)])
    with Store(path, read_only=True) as s:
        assert as_dict(s.select([], 0, 10)) == {lbl(name="m", a='q"\\\n'): [(1, 1.0)],
                                                lbl(name="m"): [(2, "stale")]}
        assert s.stats().samples == 2


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    Store(path).close()
    with Store(path, read_only=True) as s:
        for write in (lambda: s.append([(lbl(name="m"), 1, 1.0)]),
                      lambda: s.append_arrays([lbl(name="m")], [0], [1], [1.0]),
                      lambda: s.append_series([]), lambda: s.drop_before(0),
                      lambda: s.compact()):
            with pytest.raises(StoreError, match="read-only"):
                write()


def test_opening_errors(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        Store(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a database\n" * 100)
    with pytest.raises(StoreError, match="cannot open the store"):
        Store(text)
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t (x INT)")
    with pytest.raises(StoreError, match="not a metric store"):
        Store(other, read_only=True)
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    with pytest.raises(StoreError, match="schema version 99 is not supported"):
        Store(other)


def test_store_in_use_by_another_process(tmp_path: Path) -> None:
    path = tmp_path / "m.duckdb"
    with Store(path) as s:
        s.append([(lbl(name="m"), 1, 1.0)])
        code = ("import sys\nfrom monitoring.engine.store import Store, StoreError\n"
                "try:\n    Store(sys.argv[1])\nexcept StoreError as e:\n    print(e)\n")
        out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                             text=True, timeout=60, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert "in use by another process" in out.stdout


# ---------------------------------------------------------------- matchers


AWKWARD = ['it\'s', 'say "hi"', "back\\slash", "new\nline", "tab\there", "ünï☃",
           "'; DROP TABLE samples; --", "a|b", ".*", "$p0", "?"]


def test_awkward_label_values_in_matchers(store: Store) -> None:
    sets = [lbl(name="m", v=v) for v in AWKWARD]
    store.append([(s, 1, float(i)) for i, s in enumerate(sets)])
    memory = MemorySource(store.select([], 0, 10))
    for v in AWKWARD:
        for m in (("v", "=", v), ("v", "!=", v), ("v", "=~", re_escape(v)),
                  ("v", "!~", re_escape(v)), ("v", "=~", re_escape(v) + "|x"),
                  ("v", "=~", v)):
            try:
                want = as_dict(memory.select([m], 0, 10))
            except ValueError:  # the raw value is not a valid regex ("?", "a|b" is)
                with pytest.raises(ValueError, match="invalid regular expression"):
                    store.select([m], 0, 10)
                continue
            assert as_dict(store.select([m], 0, 10)) == want, m
        (hit,) = store.select([("v", "=", v)], 0, 10)
        assert dict(hit.labels)["v"] == v
    assert store.stats().samples == len(AWKWARD)  # nothing was dropped


def re_escape(value: str) -> str:
    """Escape RE2 metacharacters (Python's re.escape also escapes harmless ones)."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in value)


def test_matcher_values_are_bound_as_parameters() -> None:
    sql, params = series_query([("v", "=", "'; DROP TABLE samples; --"),
                                ("__name__", "=~", "a|b"), ("job", "!=", "x")])
    assert "DROP" not in sql and "'a'" not in sql and "job" not in sql
    assert set(params.values()) == {"'; DROP TABLE samples; --", "a", "b", "v", "job", "x"}


def test_invalid_regex_raises_even_without_series(store: Store) -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        store.select([("a", "=~", "(")], 0, 10)
    store.append([(lbl(name="m"), 1, 1.0)])
    with pytest.raises(ValueError, match="invalid regular expression"):
        store.select([("__name__", "=", "m"), ("a", "!~", "[")], 0, 10)
    with pytest.raises(ValueError, match="invalid regular expression"):
        MemorySource(store.select([], 0, 10)).select([("a", "!~", "[")], 0, 10)


# The fixed data set of the property test: label names with absent and empty
# cases, values that look like regex syntax, a newline (RE2's '.' matches it in
# Prometheus 3), upper and lower case, a series without a name.
NAMES = ["up", "Up", "http_requests_total", "a", "node_cpu"]
VALUES = ["", "a", "A", "ab", "abc", "b", "a.c", "a\nb", "x|y", "1", "10", "é"]
LABELS = ["job", "instance", "le", "missing"]


def _dataset() -> list[Series]:
    rng = np.random.default_rng(42)
    out: dict[Labels, Series] = {}
    for i in range(60):
        pairs = {"__name__": NAMES[i % len(NAMES)]} if i % 13 else {}
        for name in LABELS[:3]:
            value = VALUES[int(rng.integers(0, len(VALUES)))]
            pairs[name] = value
        labels = labels_of(pairs)
        n = int(rng.integers(1, 6))
        ts = np.sort(rng.choice(np.arange(0, 100_000, 1000), size=n, replace=False))
        out[labels] = Series(labels, ts.astype(np.int64), rng.normal(size=n))
    return list(out.values())


@pytest.fixture(scope="module")
def both_sources(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store,
                                                                            MemorySource]]:
    data = _dataset()
    with Store(tmp_path_factory.mktemp("store") / "m.duckdb") as store:
        store.append_series(data)
        yield store, MemorySource(data)


value_st = st.one_of(st.sampled_from(VALUES), st.text(alphabet="abAx.é\n|1", max_size=3))
regex_st = st.one_of(
    value_st,
    st.lists(st.sampled_from(VALUES[1:]), min_size=2, max_size=3).map("|".join),
    st.sampled_from([".*", ".+", "a.*", ".*b", "(?i)a", "[ab]+", "a|", "|a", "a?b?c?",
                     "x\\|y", "a\\.c", "\\d+", "é|1.", "(a|b)c?", "[^a]*", ".", "..."]),
)
matcher_st = st.one_of(
    st.tuples(st.sampled_from(["__name__", *LABELS]), st.sampled_from(["=", "!="]), value_st),
    st.tuples(st.sampled_from(["__name__", *LABELS]), st.sampled_from(["=~", "!~"]), regex_st),
    st.tuples(st.just("__name__"), st.just("="), st.sampled_from(NAMES)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(matchers=st.lists(matcher_st, max_size=4),
       window=st.tuples(st.integers(-1000, 100_000), st.integers(0, 100_000)))
def test_select_agrees_with_memory_source(both_sources: tuple[Store, MemorySource],
                                          matchers: list[Matcher],
                                          window: tuple[int, int]) -> None:
    store, memory = both_sources
    lo, hi = window
    got, want = store.select(matchers, lo, hi), memory.select(matchers, lo, hi)
    assert as_dict(got) == as_dict(want)
    # Same order too: both keep the order in which series were first written.
    assert [s.labels for s in got] == [s.labels for s in want]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.lists(
    st.tuples(st.dictionaries(st.sampled_from(["__name__", "a", "b"]), value_st, max_size=3),
              st.integers(0, 50), st.floats(allow_nan=True, allow_infinity=True)),
    max_size=40),
    matchers=st.lists(matcher_st, max_size=3))
def test_writes_then_select_agree_with_memory_source(
        tmp_path_factory: pytest.TempPathFactory,
        data: list[tuple[dict[str, str], int, float]], matchers: list[Matcher]) -> None:
    memory = MemorySource()
    for labels, t, v in data:
        memory.add(Series(labels_of(labels), np.array([t]), np.array([v])))
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as d, \
            Store(Path(d) / "m.duckdb") as store:
        store.append(data)
        assert as_dict(store.select(matchers, 0, 50)) == as_dict(memory.select(matchers, 0, 50))


# ---------------------------------------------------------------- blocks


def block_rows(store: Store) -> list[tuple[int, int, int, int]]:
    """(series id, mint, maxt, n) of every block, ordered."""
    return [tuple(r) for r in store._con.execute(
        "SELECT series_id, mint, maxt, n FROM blocks ORDER BY series_id, mint").fetchall()]


def head_rows(store: Store) -> int:
    row = store._con.execute("SELECT count(*) FROM samples").fetchone()
    assert row is not None
    return int(row[0])


def test_compact_moves_the_head_into_aligned_blocks(store: Store,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BLOCK_MS", 10)
    a, b = lbl(name="m", i="a"), lbl(name="m", i="b")
    store.append([(a, t, float(t)) for t in (-11, -10, -1, 0, 9, 10, 25)]
                 + [(b, 5, 5.0)])
    before = as_dict(store.select([], -100, 100))
    store.compact()
    assert head_rows(store) == 0
    # One block per series and aligned window [10k, 10k + 9], negative times included.
    assert block_rows(store) == [(1, -11, -11, 1), (1, -10, -1, 2), (1, 0, 9, 2),
                                 (1, 10, 10, 1), (1, 25, 25, 1), (2, 5, 5, 1)]
    assert as_dict(store.select([], -100, 100)) == before
    assert store.stats().samples == 8
    assert store.time_range() == (-11, 25)
    # Bounds inside and at the edges of blocks.
    for lo, hi in [(-10, -1), (-9, 0), (0, 0), (9, 10), (1, 8), (11, 24), (26, 99), (-1, -1)]:
        want = {k: [p for p in v if lo <= p[0] <= hi] for k, v in before.items()}
        assert as_dict(store.select([], lo, hi)) == {k: v for k, v in want.items() if v}


def test_writes_into_compacted_windows_replace_block_samples(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BLOCK_MS", 100)
    a = lbl(name="m")
    store.append([(a, t, 1.0) for t in range(0, 300, 10)])
    store.compact()
    store.append([(a, 50, 2.0), (a, 55, 3.0), (a, 350, 4.0)])
    got = dict(as_dict(store.select([], 0, 1000))[a])
    assert (got[50], got[55], got[350], got[40]) == (2.0, 3.0, 4.0, 1.0)
    assert store.stats().samples == 32
    assert head_rows(store) == 1  # 350 is in a window without a block
    assert [r[1:] for r in block_rows(store)] == [(0, 90, 11), (100, 190, 10), (200, 290, 10)]


def test_staleness_and_nan_in_blocks(store: Store) -> None:
    a = lbl(name="m")
    odd_nan = np.array([0x7FF8_0000_0000_1234], dtype=np.uint64).view(np.float64)[0]
    store.append([(a, 1, 1.0), (a, 2, STALE_NAN), (a, 3, math.nan), (a, 4, -0.0),
                  (a, 5, float(odd_nan)), (a, 6, math.inf)])
    store.compact()
    store.append_series(Series(a, np.array([7, 8]), np.array([STALE_NAN, -math.inf])))
    store.compact()
    (s,) = store.select([], 0, 10)
    assert as_dict([s]) == {a: [(1, 1.0), (2, "stale"), (3, "nan"), (4, -0.0), (5, "nan"),
                                (6, math.inf), (7, "stale"), (8, -math.inf)]}
    assert math.copysign(1.0, s.values[3]) == -1.0
    assert head_rows(store) == 0
    s.values[0] = 9.0  # selected arrays are ordinary writable arrays


def test_int64_extremes_in_blocks(store: Store) -> None:
    a = lbl(name="m")
    lo, hi = -(2**63), 2**63 - 1
    store.append([(a, lo, 1.0), (a, lo + 1, 1.5), (a, -1, 2.0), (a, hi - 1, 2.5), (a, hi, 3.0)])
    store.compact()
    store.append([(a, lo, 10.0), (a, hi, 30.0)])  # into the blocks at both ends
    assert as_dict(store.select([], lo, hi)) == {
        a: [(lo, 10.0), (lo + 1, 1.5), (-1, 2.0), (hi - 1, 2.5), (hi, 30.0)]}
    assert store.time_range() == (lo, hi)
    assert head_rows(store) == 0


def test_retention_rewrites_straddling_blocks(store: Store,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BLOCK_MS", 100)
    old, both = lbl(name="old"), lbl(name="both")
    store.append([(old, t, 1.0) for t in range(0, 100, 10)]
                 + [(both, t, 2.0) for t in range(0, 250, 10)])
    store.compact()
    store.append([(both, 300, 3.0)])  # a head row too
    gone = store.drop_before(150)
    assert (gone.samples, gone.series) == (10 + 15, 1)
    assert [r[1:] for r in block_rows(store)] == [(150, 190, 5), (200, 240, 5)]
    assert as_dict(store.select([], 0, 1000)) == {
        both: [(t, 2.0) for t in range(150, 250, 10)] + [(300, 3.0)]}
    assert store.stats().samples == 11
    assert store.series_matching([]) == [both]


def test_failed_write_into_blocks_leaves_the_store_as_it_was(store: Store) -> None:
    a = lbl(name="m")
    store.append([(a, t, 1.0) for t in range(5)])
    store.compact()
    rows = block_rows(store)

    def samples() -> Iterator[tuple[Labels, int, float]]:
        yield a, 2, 100.0
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        store.append(samples())
    with pytest.raises(StoreError), store.transaction():
        store.append([(a, 3, 100.0)])
        store.compact()
        with pytest.raises(ValueError):
            store.append([((("x", "1"), ("x", "2")), 1, 1.0)])
    assert block_rows(store) == rows
    assert as_dict(store.select([], 0, 10)) == {a: [(t, 1.0) for t in range(5)]}


def test_a_large_head_is_folded_into_blocks_by_writes(store: Store,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_HEAD_LIMIT", 10)
    monkeypatch.setattr(store_module, "BLOCK_MS", 10)
    a = lbl(name="m")
    store.append([(a, t, float(t)) for t in range(5)])
    assert head_rows(store) == 5
    store.append_arrays([a], np.zeros(20, dtype=np.int64), np.arange(5, 25), np.ones(20))
    # The newest window [20, 29] stays in the head, where later writes land.
    assert head_rows(store) == 5
    assert [r[1:] for r in block_rows(store)] == [(0, 9, 10), (10, 19, 10)]
    assert store.stats().samples == 25
    assert len(store.select([], 0, 100)[0].ts) == 25
    store.append([(a, 25, 2.0)])  # below the limit: no fold
    assert head_rows(store) == 6


def test_old_schema_is_upgraded_when_opened_for_writing(tmp_path: Path) -> None:
    path = tmp_path / "v1.duckdb"
    with duckdb.connect(str(path)) as con:  # a store as version 1 wrote it
        con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL)")
        con.execute("CREATE TABLE series (id BIGINT PRIMARY KEY, name VARCHAR,"
                    " labels MAP(VARCHAR, VARCHAR) NOT NULL, key VARCHAR NOT NULL UNIQUE)")
        con.execute("CREATE TABLE samples (series_id BIGINT NOT NULL, ts BIGINT NOT NULL,"
                    " value DOUBLE)")
        con.execute("INSERT INTO meta VALUES ('schema_version', '1'), ('next_series_id', '2')")
        con.execute("""INSERT INTO series VALUES (1, 'm', MAP {}, '[["__name__","m"]]')""")
        con.execute("INSERT INTO samples VALUES (1, 1, 1.0), (1, 2, NULL)")
    with pytest.raises(StoreError, match="version 1 must be upgraded"):
        Store(path, read_only=True)
    with Store(path) as s:
        assert as_dict(s.select([], 0, 10)) == {lbl(name="m"): [(1, 1.0), (2, "stale")]}
        s.compact()
    with Store(path, read_only=True) as s:
        assert as_dict(s.select([], 0, 10)) == {lbl(name="m"): [(1, 1.0), (2, "stale")]}
        assert s.stats().samples == 2


op_st = st.one_of(
    st.tuples(st.just("append"),
              st.lists(st.tuples(st.integers(0, 3), st.integers(-30, 60),
                                 st.sampled_from([0.0, 1.5, -2.0, math.nan, STALE_NAN,
                                                  math.inf])), max_size=25)),
    st.tuples(st.just("compact"), st.just([])),
    st.tuples(st.just("drop"), st.integers(-40, 70)),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op_st, max_size=8), window=st.tuples(st.integers(-40, 70),
                                                          st.integers(-40, 70)))
def test_blocks_and_head_agree_with_memory_source(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
        ops: list[tuple[str, object]], window: tuple[int, int]) -> None:
    """Random appends, overwrites, compactions and retention, against a plain model."""
    monkeypatch.setattr(store_module, "BLOCK_MS", 10)
    sets = [lbl(name="m", i=str(i)) for i in range(4)]
    model: dict[Labels, dict[int, float]] = {}  # in order of (re)creation, as ids are
    with tempfile.TemporaryDirectory(dir=tmp_path_factory.getbasetemp()) as d, \
            Store(Path(d) / "m.duckdb") as store:
        for op, arg in ops:
            if op == "append":
                assert isinstance(arg, list)
                store.append([(sets[i], t, v) for i, t, v in arg])
                for i, t, v in arg:
                    model.setdefault(sets[i], {})[t] = v
            elif op == "compact":
                store.compact()
            else:
                assert isinstance(arg, int)
                store.drop_before(arg)
                for k in list(model):
                    model[k] = {t: v for t, v in model[k].items() if t >= arg}
                    if not model[k]:
                        del model[k]
        memory = MemorySource([Series.of(k, v.items()) for k, v in model.items()])
        lo, hi = window
        got, want = store.select([], lo, hi), memory.select([], lo, hi)
        assert as_dict(got) == as_dict(want)
        assert [s.labels for s in got] == [s.labels for s in want]
        assert store.stats().samples == sum(len(v) for v in model.values())
        times = [t for v in model.values() for t in v]
        assert store.time_range() == ((min(times), max(times)) if times else None)
        assert as_dict(list(store.iter_series(batch_samples=3))) == as_dict(
            memory.select([], -(2**63), 2**63 - 1))


def test_memory_limit_is_applied_and_a_bad_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "limited.duckdb"
    with Store(path, memory_limit="300MB") as store:
        row = store._con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert row is not None and row[0].startswith("286")  # DuckDB shows MiB
    with pytest.raises(StoreError, match=r"memory limit .lots'.+Memory must have a number"):
        Store(path, memory_limit="lots'")
