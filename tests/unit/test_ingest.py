"""Imports: Prometheus text, OpenMetrics, CSV and Parquet files into a real store.

Bad rows are reported with file:line[:column] and what was expected; a failed
import leaves the store exactly as it was; ``skip_bad`` keeps the good rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest

from monitoring.engine import store as store_module
from monitoring.engine.ingest import (
    ImportReport,
    IngestError,
    detect_format,
    import_files,
    parse_epoch_or_rfc3339,
    parse_file,
    parse_rfc3339,
    parse_value,
    seconds_to_ms,
)
from monitoring.engine.model import Labels, is_stale, labels_of
from monitoring.engine.store import Store

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def lbl(**pairs: str) -> Labels:
    return labels_of({("__name__" if k == "name" else k): v for k, v in pairs.items()})


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def parse(path: Path, fmt: str = "auto", default_ts_ms: int | None = None
          ) -> tuple[list[tuple[Labels, int, float]], list[IngestError]]:
    samples, errors = [], []
    for item in parse_file(path, fmt, default_ts_ms):
        if isinstance(item, IngestError):
            errors.append(item)
        else:
            samples.append(item)
    return samples, errors


def only_error(path: Path, fmt: str = "auto") -> str:
    _samples, errors = parse(path, fmt)
    assert len(errors) == 1, errors
    return str(errors[0])


def contents(store: Store) -> list[tuple[Labels, list[tuple[int, str]]]]:
    """Everything in a store, as text (so NaN and staleness compare exactly)."""
    out = []
    for s in store.select([], -(2**63), 2**63 - 1):
        points = [(t, "stale" if is_stale(v) else repr(v))
                  for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True)]
        out.append((s.labels, points))
    return out


# ---------------------------------------------------------------- values and times


def test_parse_value_as_go_does() -> None:
    assert parse_value("1e3") == 1000.0
    assert parse_value(".5") == 0.5
    assert parse_value("-0") == 0.0 and math.copysign(1, parse_value("-0")) == -1
    assert math.isnan(parse_value("NaN")) and math.isnan(parse_value("nan"))
    assert parse_value("+Inf") == math.inf and parse_value("-Inf") == -math.inf
    assert parse_value("Infinity") == math.inf and parse_value("inf") == math.inf
    assert parse_value("1e-400") == 0.0  # underflow is fine in Go too
    for bad in ("1_000", "0x10", "0x1p3", "+NaN", "-nan", "1e400", "-1e400", "", "abc",
                "١", "1,5", "infin"):
        with pytest.raises(ValueError):
            parse_value(bad)


def test_time_parsing() -> None:
    assert parse_rfc3339("2026-01-01T00:00:00Z") == T0
    assert parse_rfc3339("2026-01-01T01:00:00.250+01:00") == T0 + 250
    assert parse_rfc3339("2026-01-01T00:00:00.123999Z") == T0 + 123
    assert seconds_to_ms("1767225600.5") == T0 + 500
    assert seconds_to_ms("1767225600.0019") == T0 + 1
    assert parse_epoch_or_rfc3339("1767225600") == T0  # seconds
    assert parse_epoch_or_rfc3339(str(T0)) == T0  # milliseconds (>= 1e11)
    assert parse_epoch_or_rfc3339("1767225600.25") == T0 + 250
    assert parse_epoch_or_rfc3339("2026-01-01T00:00:00Z") == T0
    for bad in ("2026-01-01", "2026-01-01T00:00:00", "2026-13-01T00:00:00Z", "soon",
                "1e30"):
        with pytest.raises(ValueError):
            parse_epoch_or_rfc3339(bad)


# ---------------------------------------------------------------- Prometheus text


def test_prometheus_text(tmp_path: Path) -> None:
    path = write(tmp_path / "metrics.prom", (
        "# HELP http_requests_total The total.\n"
        "# TYPE http_requests_total counter\n"
        "# an ordinary comment\n"
        "\n"
        'http_requests_total{method="post",code="200"} 1027 1767225600000\n'
        'http_requests_total{ method = "post" , code="400", } 3 1767225600000\n'
        'weird{path="C:\\\\dir\\"x\\"\\nnext",other="\\q"} -Inf 1767225601000\n'
        "no_labels NaN 1767225602000\r\n"
        "plain\t2.5e-3    -5\n"
    ))
    samples, errors = parse(path)
    assert errors == []
    assert samples == [
        (lbl(name="http_requests_total", method="post", code="200"), T0, 1027.0),
        (lbl(name="http_requests_total", method="post", code="400"), T0, 3.0),
        (lbl(name="weird", path='C:\\dir"x"\nnext', other="\\q"), T0 + 1000, -math.inf),
        (lbl(name="no_labels"), T0 + 2000, samples[3][2]),
        (lbl(name="plain"), -5, 0.0025),
    ]
    assert math.isnan(samples[3][2])


def test_prometheus_text_errors_name_line_column_and_expectation(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.prom", (
        "ok 1 1\n"
        "ok 1\n"                       # 2: no timestamp
        "ok x 1\n"                     # 3: bad value
        "ok 1 1.5\n"                   # 4: ms must be integers
        'ok{a="1",a="2"} 1 1\n'        # 5: duplicate label
        'ok{a="1} 1 1\n'               # 6: unterminated
        "ok 1 2 3\n"                   # 7: extra field
        "# TYPE ok thing\n"            # 8: bad type
        "9bad 1 1\n"                   # 9: bad name
        "ok{a=1} 1 1\n"                # 10: unquoted
    ))
    samples, errors = parse(path)
    assert len(samples) == 1
    text = [str(e) for e in errors]
    assert text == [
        f"{path}:2: error: sample has no timestamp (give --default-time to stamp such samples)",
        f"{path}:3:4: error: invalid value 'x'",
        f"{path}:4:6: error: invalid timestamp '1.5': expected integer milliseconds",
        f"{path}:5:3: error: duplicate label name 'a'",
        f"{path}:6:6: error: unterminated label value",
        f"{path}:7:8: error: unexpected '3' after the sample (expected a value and an "
        "optional timestamp)",
        f"{path}:8:11: error: invalid metric type 'thing' (expected one of counter, gauge, "
        "histogram, summary, untyped)",
        f"{path}:9:1: error: expected a metric name, a comment or a blank line",
        f"{path}:10:6: error: expected a quoted label value",
    ]


def test_default_time_stamps_samples_without_one(tmp_path: Path) -> None:
    path = write(tmp_path / "scrape.prom", "a 1\nb 2 5\n")
    samples, errors = parse(path, default_ts_ms=T0)
    assert errors == []
    assert samples == [(lbl(name="a"), T0, 1.0), (lbl(name="b"), 5, 2.0)]


def test_invalid_utf8_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bin.prom"
    path.write_bytes(b"a 1 1\nb{x=\"\xff\"} 1 1\nc 1 1\n")
    samples, errors = parse(path)
    assert [s[0] for s in samples] == [lbl(name="a"), lbl(name="c")]
    assert [str(e) for e in errors] == [f"{path}:2:6: error: invalid UTF-8"]


# ---------------------------------------------------------------- OpenMetrics


def test_openmetrics(tmp_path: Path) -> None:
    path = write(tmp_path / "data.om", (
        "# HELP rpc_seconds Latency, with an escape \\n in help.\n"
        "# TYPE rpc_seconds histogram\n"
        "# UNIT rpc_seconds seconds\n"
        'rpc_seconds_bucket{le="0.1"} 3 1767225600.5 # {trace_id="abc"} 0.05 1767225600.4\n'
        'rpc_seconds_bucket{le="+Inf"} 5 1767225600.5\n'
        "rpc_seconds_count 5 1767225600.5\n"
        "# TYPE requests counter\n"
        'requests_total{path="/a b",q="\\"x\\"\\\\"} 7 1767225601.001 # {} 1\n'
        "g{} 1e3 1767225602\n"
        "# EOF\n"
    ))
    assert detect_format(path) == "openmetrics"
    samples, errors = parse(path)
    assert errors == []
    assert samples == [
        (lbl(name="rpc_seconds_bucket", le="0.1"), T0 + 500, 3.0),
        (lbl(name="rpc_seconds_bucket", le="+Inf"), T0 + 500, 5.0),
        (lbl(name="rpc_seconds_count"), T0 + 500, 5.0),
        (lbl(name="requests_total", path="/a b", q='"x"\\'), T0 + 1001, 7.0),
        (lbl(name="g"), T0 + 2000, 1000.0),
    ]


def test_openmetrics_timestamps_truncate_like_prometheus(tmp_path: Path) -> None:
    # int64(seconds * 1000) in float64: 0.0005 s is lost, 1.5e3 s is allowed,
    # and for some times the product lands just below the millisecond.
    path = write(tmp_path / "t.om", "a 1 1767225600.0005\na 2 1.5e3\na 3 0.009\n# EOF")
    samples, errors = parse(path)
    assert errors == []
    assert [t for _, t, _ in samples] == [T0, 1_500_000, math.trunc(0.009 * 1000)]
    assert math.trunc(0.009 * 1000) == 9


@pytest.mark.parametrize(("text", "line", "message"), [
    ("a 1 1\n", 1, "OpenMetrics data must end with '# EOF'"),
    ("a 1 1\n\n# EOF\n", 2, "blank line (OpenMetrics does not allow empty lines)"),
    ("a 1 1\n# EOF\n\n", 3, "unexpected content after '# EOF' (it must be the last line)"),
    ("a 1 1\n# EOF\na 2 2\n", 3, "unexpected content after '# EOF' (it must be the last line)"),
    ("# hello\na 1 1\n# EOF\n", 1, "expected '# HELP', '# TYPE', '# UNIT' or '# EOF'"),
    ("a  1 1\n# EOF\n", 1, "expected one space and a value after the series"),
    ("a\t1 1\n# EOF\n", 1, "expected one space and a value after the series"),
    ("a 1 1 \n# EOF\n", 1, "expected the end of the line or ' # {' and an exemplar"),
    ("a 1 1\r\n# EOF\n", 1, "carriage return at the end of the line"),
    ('a{x="1",} 1 1\n# EOF\n', 1, "expected a label name"),
    ('a{x="1", y="2"} 1 1\n# EOF\n', 1, "expected a label name"),
    ('a{x = "1"} 1 1\n# EOF\n', 1, "expected '=' after label name 'x'"),
    ("a 1\n# EOF\n", 1, "sample has no timestamp"),
    ("a 1 NaN\n# EOF\n", 1, "invalid timestamp 'NaN'"),
    ("a 1 1e20\n# EOF\n", 1, "timestamp out of range"),
    ("# TYPE a untyped\na 1 1\n# EOF\n", 1, "invalid metric type 'untyped'"),
    ("# TYPE a\na 1 1\n# EOF\n", 1, "expected one space and text after # TYPE a"),
    ("# HELP  a x\na 1 1\n# EOF\n", 1, "expected one space and a metric name after # HELP"),
    ("# UNIT a seconds\na 1 1\n# EOF\n", 1, "unit 'seconds' is not a suffix of metric 'a'"),
    ('a 1 1 # {t="x"} 1\n# EOF\n', 1, "metric 'a' cannot have exemplars"),
    ('a_total 1 1 # {t="x"}\n# EOF\n', 1, "expected one space and a value after the exemplar"),
    ('a_total 1 1 #{t="x"} 1\n# EOF\n', 1, "expected the end of the line or ' # {'"),
    ('a{__name__="b"} 1 1\n# EOF\n', 1, "duplicate label name '__name__'"),
    ("a 1 1 2\n# EOF\n", 1, "expected the end of the line or ' # {'"),
])
def test_openmetrics_rejects_what_promtool_rejects(tmp_path: Path, text: str, line: int,
                                                   message: str) -> None:
    path = write(tmp_path / "bad.om", text)
    error = only_error(path)
    assert error.startswith(f"{path}:{line}:") and "error: " + message in error, error


def test_openmetrics_error_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "c.om", 'a{x="1"} 1 zz\n# EOF\n')
    assert only_error(path) == f"{path}:1:12: error: invalid value 'zz'"


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(write(tmp_path / "a.txt", "a 1 1\n")) == "prometheus"
    assert detect_format(write(tmp_path / "b.txt", "a 1 1\n# EOF\n")) == "openmetrics"
    assert detect_format(write(tmp_path / "c.om", "")) == "openmetrics"
    assert detect_format(write(tmp_path / "d.CSV", "")) == "csv"
    pq = tmp_path / "e.bin"
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 1 AS x) TO '{pq}' (FORMAT parquet)")
    assert detect_format(pq) == "parquet"
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        parse_file(tmp_path / "a.txt", "xml")


# ---------------------------------------------------------------- CSV


def test_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", (
        "metric,timestamp,value,job,labels\n"
        'cpu,1767225600,0.5,api,"{instance=""a:9100"",mode=""idle""}"\n'
        "cpu,1767225600000,1,api,\n"
        "cpu,2026-01-01T00:00:01.250Z,NaN,,\n"
        'cpu,1767225602.5,+Inf,"a,b","{x=""1\\n2""}"\n'
        "\n"
        "cpu,1767225603,-1e-3,db,{}\n"
    ))
    samples, errors = parse(path)
    assert errors == []
    assert samples[0] == (lbl(name="cpu", job="api", instance="a:9100", mode="idle"), T0, 0.5)
    assert samples[1] == (lbl(name="cpu", job="api"), T0, 1.0)
    assert samples[2][:2] == (lbl(name="cpu"), T0 + 1250) and math.isnan(samples[2][2])
    assert samples[3] == (lbl(name="cpu", job="a,b", x="1\n2"), T0 + 2500, math.inf)
    assert samples[4] == (lbl(name="cpu", job="db"), T0 + 3000, -0.001)


def test_csv_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.csv", (
        "timestamp,metric,value,job\n"
        "1767225600,cpu,1,api\n"
        "1767225600,cpu,one,api\n"      # 3: value
        "yesterday,cpu,1,api\n"         # 4: timestamp
        "1767225600,9cpu,1,api\n"       # 5: metric name
        "1767225600,cpu\n"              # 6: too few fields
        ",cpu,1,api\n"                  # 7: missing timestamp
    ))
    samples, errors = parse(path)
    assert len(samples) == 1
    assert [str(e) for e in errors] == [
        f"{path}:3:16: error: invalid value 'one'",
        f"{path}:4:1: error: invalid time 'yesterday': expected RFC 3339 such as "
        "2024-05-01T12:00:00Z",
        f"{path}:5:12: error: invalid metric name '9cpu'",
        f"{path}:6: error: expected 4 fields, found 2",
        f"{path}:7:1: error: missing timestamp",
    ]


@pytest.mark.parametrize(("header", "message"), [
    ("time,metric,value", "missing column 'timestamp' (the header must name timestamp, "
     "metric and value)"),
    ("timestamp,metric", "missing column 'value'"),
    ("timestamp,metric,value,value", "column 'value' appears twice"),
    ("timestamp,metric,value,bad-name", "column 'bad-name' is not a valid label name"),
    ("timestamp,metric,value,__name__", "column '__name__' is not a valid label name"),
])
def test_csv_header_errors(tmp_path: Path, header: str, message: str) -> None:
    path = write(tmp_path / "h.csv", header + "\n")
    error = only_error(path)
    assert error.startswith(f"{path}:1") and message in error, error


def test_csv_labels_cell_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "l.csv", (
        "timestamp,metric,value,labels\n"
        '1,m,1,"job=api"\n'
        '1,m,1,"{job=""a"",job=""b""}"\n'
        '1,m,1,"{__name__=""x""}"\n'
        '1,m,1,"{a=""1""} extra"\n'
    ))
    _samples, errors = parse(path)
    assert [e.message for e in errors] == [
        'labels must look like {name="value", ...}',
        "duplicate label name 'job'",
        "__name__ belongs in the metric column",
        "unexpected text after the labels",
    ]
    assert [e.line for e in errors] == [2, 3, 4, 5]


def test_csv_broken_quote_stops_with_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path / "q.csv", 'timestamp,metric,value\n1,m,1\n1,"m,1\n')
    samples, errors = parse(path)
    assert len(samples) == 1
    assert len(errors) == 1 and errors[0].line == 3 and "malformed CSV" in errors[0].message


def test_csv_with_byte_order_mark(tmp_path: Path) -> None:
    path = write(tmp_path / "bom.csv", "\ufefftimestamp,metric,value\n1767225600,m,1\n")
    assert parse(path) == ([(lbl(name="m"), T0, 1.0)], [])


def test_empty_csv(tmp_path: Path) -> None:
    path = write(tmp_path / "e.csv", "")
    assert only_error(path) == f"{path}:1: error: empty file: expected a header row"


# ---------------------------------------------------------------- Parquet


def to_parquet(path: Path, select: str) -> Path:
    with duckdb.connect() as con:
        con.execute(f"COPY ({select}) TO '{path}' (FORMAT parquet)")
    return path


def test_parquet_with_typed_columns(tmp_path: Path) -> None:
    path = to_parquet(tmp_path / "d.parquet", (
        "SELECT * FROM (VALUES "
        "(TIMESTAMP '2026-01-01 00:00:00.250', 'up', 1.0, 'api', MAP {'instance': 'a'}),"
        "(TIMESTAMP '2026-01-01 00:00:01', 'up', 'NaN'::DOUBLE, NULL, MAP {})"
        ") AS t(timestamp, metric, value, job, labels)"))
    samples, errors = parse(path)
    assert errors == []
    assert samples[0] == (lbl(name="up", job="api", instance="a"), T0 + 250, 1.0)
    assert samples[1][:2] == (lbl(name="up"), T0 + 1000) and math.isnan(samples[1][2])


def test_parquet_with_epoch_and_text_columns(tmp_path: Path) -> None:
    path = to_parquet(tmp_path / "e.parquet", (
        "SELECT * FROM (VALUES (1767225600, 'm', 2, '{a=\"x\"}'), "
        f"({T0 + 5}, 'm', 3, NULL)) AS t(timestamp, metric, value, labels)"))
    samples, errors = parse(path)
    assert errors == []
    assert samples == [(lbl(name="m", a="x"), T0, 2.0), (lbl(name="m"), T0 + 5, 3.0)]


def test_parquet_errors_name_the_row_and_column(tmp_path: Path) -> None:
    path = to_parquet(tmp_path / "b.parquet", (
        "SELECT * FROM (VALUES (1, 'm', '1'), (2, 'bad name', '2'), (3, 'm', 'x'), "
        "(NULL, 'm', '4')) AS t(timestamp, metric, value)"))
    samples, errors = parse(path)
    assert len(samples) == 1
    assert [str(e) for e in errors] == [
        f"{path}:2: error: invalid metric name 'bad name' (column 'metric')",
        f"{path}:3: error: invalid value 'x' (column 'value')",
        f"{path}:4: error: missing timestamp (column 'timestamp')",
    ]
    missing = to_parquet(tmp_path / "m.parquet", "SELECT 1 AS timestamp, 'm' AS metric")
    assert "missing column 'value'" in only_error(missing)
    broken = write(tmp_path / "broken.parquet", "PAR1 not really")
    assert "cannot read Parquet" in only_error(broken)


# ---------------------------------------------------------------- import


def good_files(tmp_path: Path) -> list[Path]:
    return [
        write(tmp_path / "a.prom", 'up{job="a"} 1 1767225600000\nup{job="b"} 0 1767225600000\n'),
        write(tmp_path / "b.om", 'up{job="a"} 2 1767225615\nlat_seconds 0.5 1767225615\n# EOF\n'),
        write(tmp_path / "c.csv", "timestamp,metric,value,job\n1767225630,up,3,a\n"),
    ]


def test_import_files(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        report = import_files(store, good_files(tmp_path))
        assert report.ok and report.committed
        assert (report.files, report.series, report.samples) == (3, 3, 5)
        assert contents(store) == [
            (lbl(name="up", job="a"), [(T0, "1.0"), (T0 + 15_000, "2.0"), (T0 + 30_000, "3.0")]),
            (lbl(name="up", job="b"), [(T0, "0.0")]),
            (lbl(name="lat_seconds"), [(T0 + 15_000, "0.5")]),
        ]


def test_failed_import_leaves_the_store_exactly_as_it_was(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny write pieces: the good files reach DuckDB before the bad row is seen.
    monkeypatch.setattr(store_module, "_CHUNK", 2)
    with Store(tmp_path / "s.duckdb") as store:
        store.append([(lbl(name="up", job="a"), T0, 42.0), (lbl(name="old"), 1, math.nan)])
        before = contents(store)
        stats = store.stats()
        files = [*good_files(tmp_path),
                 write(tmp_path / "d.prom", 'up{job="c"} 1 1767225600000\nup{job="c"} ? 5\n')]
        report = import_files(store, files)
        assert not report.ok and not report.committed
        assert (report.samples, report.series, report.error_count) == (0, 0, 1)
        assert [str(e) for e in report.errors] == [
            f"{files[-1]}:2:13: error: invalid value '?'"]
        assert contents(store) == before
        after = store.stats()
        assert (after.series, after.samples) == (stats.series, stats.samples)
        # New series created by the failed import did not take ids either.
        store.append([(lbl(name="next"), 1, 1.0)])
        assert store.series_matching([])[-1] == lbl(name="next")
        assert len(store.series_matching([])) == 3


def test_skip_bad_imports_the_good_rows(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        files = [*good_files(tmp_path),
                 write(tmp_path / "d.prom", 'up{job="c"} 1 1767225600000\nbroken\n')]
        report = import_files(store, files, skip_bad=True)
        assert report.committed and not report.ok
        assert (report.samples, report.series, report.error_count) == (6, 4, 1)
        assert [str(e) for e in report.errors] == [
            f"{files[-1]}:2:7: error: expected a value after the series"]
        assert store.stats().samples == 6


def test_error_limit(tmp_path: Path) -> None:
    path = write(tmp_path / "many.prom", "x\n" * 30 + "ok 1 1\n")
    with Store(tmp_path / "s.duckdb") as store:
        report = import_files(store, [path], max_errors=5)
        assert report.stopped_early and report.error_count == 5 and len(report.errors) == 5
        assert store.stats().samples == 0
        report = import_files(store, [path], skip_bad=True, max_errors=5)
        assert not report.stopped_early and report.error_count == 30
        assert len(report.errors) == 5 and report.samples == 1


def test_progress_reports_every_byte(tmp_path: Path) -> None:
    files = good_files(tmp_path)
    seen: list[int] = []
    with Store(tmp_path / "s.duckdb") as store:
        report = import_files(store, files[:2], progress=seen.append)
    assert isinstance(report, ImportReport) and report.ok
    assert sum(seen) == sum(f.stat().st_size for f in files[:2])
