"""OpenMetrics export: exact text, exact times, what is left out, round trips."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.engine.export import (
    export_openmetrics,
    export_to_file,
    seconds_text,
    series_text,
)
from monitoring.engine.ingest import import_files
from monitoring.engine.model import STALE_NAN, Labels, Series, is_stale, labels_of
from monitoring.engine.store import Store

T0 = 1_767_225_600_000


def lbl(**pairs: str) -> Labels:
    return labels_of({("__name__" if k == "name" else k): v for k, v in pairs.items()})


def go_ms(text: str) -> int:
    """What Prometheus makes of an OpenMetrics timestamp: int64(ParseFloat(s) * 1000)."""
    return math.trunc(float(text) * 1000.0)


def contents(store: Store) -> list[tuple[Labels, list[tuple[int, str]]]]:
    out = []
    for s in store.select([], -(2**63), 2**63 - 1):
        points = [(t, "stale" if is_stale(v) else repr(v))
                  for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True)]
        out.append((s.labels, points))
    return out


def test_export_text(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.append([
            (lbl(name="up", job="api", instance="a:9100"), T0, 1.0),
            (lbl(name="up", job="api", instance="a:9100"), T0 + 15_001, 0.0),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 1, math.nan),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 2, math.inf),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 3, -math.inf),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 4, STALE_NAN),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 5, 0.1),
            (lbl(name="odd", v='say "hi"\\\nbye'), T0 + 6, 1e300),
            (lbl(name="gone"), T0, STALE_NAN),
            (lbl(job="nameless"), T0, 1.0),
            ((("__name__", "bad"), ("a-b", "x")), T0, 1.0),
            (lbl(name="bad-name"), T0, 1.0),
        ])
        out = io.StringIO()
        report = export_openmetrics(store, out)
    assert out.getvalue() == (
        'up{instance="a:9100",job="api"} 1.0 1767225600.0\n'
        'up{instance="a:9100",job="api"} 0.0 1767225615.001\n'
        'odd{v="say \\"hi\\"\\\\\\nbye"} NaN 1767225600.001\n'
        'odd{v="say \\"hi\\"\\\\\\nbye"} +Inf 1767225600.002\n'
        'odd{v="say \\"hi\\"\\\\\\nbye"} -Inf 1767225600.003\n'
        'odd{v="say \\"hi\\"\\\\\\nbye"} 0.1 1767225600.005\n'
        'odd{v="say \\"hi\\"\\\\\\nbye"} 1e+300 1767225600.006\n'
        "# EOF\n"
    )
    assert (report.series, report.samples, report.stale_dropped, report.skipped_series) == (
        2, 7, 2, 3)


def test_series_text() -> None:
    assert series_text(lbl(name="m")) == "m"
    assert series_text(lbl(name="m", b="2", a="1")) == 'm{a="1",b="2"}'
    assert series_text(lbl(a="1")) is None
    assert series_text(lbl(name="1m")) is None
    assert series_text((("__name__", "m"), ("é", "x"))) is None


@settings(max_examples=1000, deadline=None)
@given(st.integers(-(2**49), 2**49))
def test_every_millisecond_survives_prometheus_conversion(ms: int) -> None:
    (text,) = seconds_text(np.array([ms], dtype=np.int64))
    assert go_ms(text) == ms


def test_times_that_need_the_next_double() -> None:
    ms = np.arange(-20_000, 20_000, dtype=np.int64)
    naive = [go_ms(repr(t / 1000)) for t in ms.tolist()]
    assert naive[21_001] == 1000  # 1001 ms: 1.001 * 1000 is just below 1001
    assert sum(n != t for n, t in zip(naive, ms.tolist(), strict=True)) > 100
    assert [go_ms(t) for t in seconds_text(ms)] == ms.tolist()


def test_selectors_and_bounds(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        store.append([(lbl(name="a", j="1"), 1000, 1.0), (lbl(name="a", j="2"), 2000, 2.0),
                      (lbl(name="b"), 3000, 3.0), (lbl(name="c"), 4000, 4.0)])
        out = io.StringIO()
        report = export_openmetrics(store, out, [[("__name__", "=", "a"), ("j", "!=", "1")],
                                                 [("__name__", "=~", "c|b")]], 2000, 3000)
    assert out.getvalue() == 'a{j="2"} 2.0 2.0\nb 3.0 3.0\n# EOF\n'
    assert (report.series, report.samples) == (2, 2)


def test_export_to_file_is_all_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.om"
    with Store(tmp_path / "s.duckdb") as store:
        store.append([(lbl(name="m"), 1000, 1.0)])
        report = export_to_file(store, target)
        assert report.samples == 1
        assert target.read_text() == "m 1.0 1.0\n# EOF\n"
        with pytest.raises(ValueError, match="invalid regular expression"):
            export_to_file(store, tmp_path / "never.om", [[("x", "=~", "(")]])
    assert not (tmp_path / "never.om").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.om", "s.duckdb"]


def test_round_trip_through_our_import(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    with Store(tmp_path / "a.duckdb") as a:
        a.append_series([
            Series(lbl(name="m", i=str(i), v=['', 'x"y', "a\\b", "n\nl", "é☃"][i % 5]),
                   np.sort(rng.choice(np.arange(-5_000, 10**7), 50, replace=False)),
                   rng.normal(size=50) * 10.0 ** rng.integers(-300, 300, 50))
            for i in range(10)])
        a.append([(lbl(name="special"), 1, v) for v in [math.nan]] +
                 [(lbl(name="special"), 2, math.inf), (lbl(name="special"), 3, -0.0),
                  (lbl(name="special"), 4, 5e-324), (lbl(name="special"), 5, STALE_NAN)])
        export_to_file(a, tmp_path / "a.om")
        want = contents(a)
    with Store(tmp_path / "b.duckdb") as b:
        report = import_files(b, [tmp_path / "a.om"])
        assert report.ok, report.errors
        got = contents(b)
    # Staleness markers cannot be written; everything else comes back bit for bit.
    want = [(labels, [p for p in points if p[1] != "stale"]) for labels, points in want]
    assert got == want
