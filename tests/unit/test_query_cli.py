"""``monitoring query``: a store filled by ``monitoring import``, queried in every format."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from monitoring.cli import main
from monitoring.engine.query_cli import MAX_STEPS, dumps, format_seconds, format_value

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, in seconds
STEPS = 41  # samples per series: 10 minutes at 15 s


def prometheus_text() -> str:
    """Two gauges and a counter, sampled 1 s after each 15 s slot (ms timestamps)."""
    lines = ["# TYPE temp gauge", "# TYPE req_total counter"]
    for k in range(STEPS):
        ts = (T0 + 15 * k + 1) * 1000
        lines.append(f'temp{{job="api",instance="a"}} {20 + k * 0.5} {ts}')
        lines.append(f'temp{{job="api",instance="b"}} {-k * 0.25} {ts}')
        lines.append(f'req_total{{job="api",instance="a"}} {k * 10} {ts}')
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("query")
    (root / "data.prom").write_text(prometheus_text())
    store = root / "history.duckdb"
    assert main(["import", str(root / "data.prom"), "--db", str(store)]) == 0
    return store


def query(db: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["query", *args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------ instant queries


def test_instant_json_is_the_prometheus_response_body(db: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Latest samples at or before T0+300: the one at T0+286 (k=19).
    code, out, err = query(db, capsys, "temp", "--at", str(T0 + 300), "--format", "json")
    assert code == 0, err
    assert out == (
        '{"status":"success","data":{"resultType":"vector","result":['
        '{"metric":{"__name__":"temp","instance":"a","job":"api"},'
        f'"value":[{T0 + 300},"29.5"]}},'
        '{"metric":{"__name__":"temp","instance":"b","job":"api"},'
        f'"value":[{T0 + 300},"-4.75"]}}'
        "]}}\n")


def test_instant_table(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, 'temp{instance="a"} * 2', "--at", "2026-01-01T00:05:00Z")
    assert code == 0
    assert out == '{instance="a", job="api"}  59\n'


def test_instant_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, "temp", "--at", f"{T0 + 300}.5", "--format", "csv")
    assert code == 0
    rows = list(csv.reader(io.StringIO(out)))
    assert rows == [
        ["series", "time", "timestamp", "value"],
        ['temp{instance="a", job="api"}', "2026-01-01T00:05:00.500Z", f"{T0 + 300}.500", "29.5"],
        ['temp{instance="b", job="api"}', "2026-01-01T00:05:00.500Z", f"{T0 + 300}.500", "-4.75"],
    ]


def test_instant_scalar_and_string(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, "1 + 1.5", "--at", str(T0), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"status": "success",
                               "data": {"resultType": "scalar", "result": [T0, "2.5"]}}
    code, out, _ = query(db, capsys, "1 + 1.5", "--at", f"{T0}.25", "--format", "json")
    assert out == ('{"status":"success","data":{"resultType":"scalar",'
                   f'"result":[{T0}.25,"2.5"]}}}}\n')
    code, out, _ = query(db, capsys, '"hello"', "--at", str(T0), "--format", "json")
    assert code == 0
    assert json.loads(out) == {"status": "success",
                               "data": {"resultType": "string", "result": [T0, "hello"]}}
    code, out, _ = query(db, capsys, '"hello"', "--at", str(T0))
    assert (code, out) == (0, "hello\n")


def test_instant_range_selector_gives_raw_samples(db: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # (T0+270, T0+300]: the samples at T0+271 and T0+286.
    code, out, err = query(db, capsys, 'temp{instance="b"}[30s]', "--at", str(T0 + 300),
                           "--format", "json")
    assert code == 0, err
    assert out == (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"__name__":"temp","instance":"b","job":"api"},'
        f'"values":[[{T0 + 271},"-4.5"],[{T0 + 286},"-4.75"]]}}]}}}}\n')


# ------------------------------------------------------------ range queries


def test_range_json(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = query(db, capsys, 'temp{instance="a"}', "--from", str(T0 + 60), "--to",
                           str(T0 + 180), "--step", "60", "--format", "json")
    assert code == 0, err
    # Latest samples: T0+46 (k=3), T0+106 (k=7), T0+166 (k=11).
    assert out == (
        '{"status":"success","data":{"resultType":"matrix","result":['
        '{"metric":{"__name__":"temp","instance":"a","job":"api"},"values":['
        f'[{T0 + 60},"21.5"],[{T0 + 120},"23.5"],[{T0 + 180},"25.5"]]}}]}}}}\n')


def test_range_scalar_is_a_matrix_without_labels(db: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, "1 / 8", "--from", str(T0), "--to", str(T0 + 60),
                         "--step", "30s", "--format", "json")
    assert code == 0
    assert json.loads(out)["data"] == {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[T0, "0.125"], [T0 + 30, "0.125"], [T0 + 60, "0.125"]]}]}


def test_range_table_and_csv(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("temp > 21", "--from", "2026-01-01T00:01:00Z", "--to", "2026-01-01T00:02:00Z")
    code, out, _ = query(db, capsys, *args)
    assert code == 0
    assert out == ('temp{instance="a", job="api"}\n'
                   "  2026-01-01T00:01:00Z  21.5\n"
                   "  2026-01-01T00:02:00Z  23.5\n")
    code, out, _ = query(db, capsys, *args, "--format", "csv")
    assert code == 0
    assert out.splitlines() == [
        "series,time,timestamp,value",
        f'"temp{{instance=""a"", job=""api""}}",2026-01-01T00:01:00Z,{T0 + 60},21.5',
        f'"temp{{instance=""a"", job=""api""}}",2026-01-01T00:02:00Z,{T0 + 120},23.5',
    ]


def test_default_window_is_the_last_hour_of_data(db: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, 'temp{instance="a"}', "--format", "json")
    assert code == 0
    values = json.loads(out)["data"]["result"][0]["values"]
    newest = T0 + 15 * (STEPS - 1) + 1  # the newest sample
    assert values[-1] == [newest, "40"]
    assert values[0][0] == T0 + 1  # newest - 1h is before the data; the first step with a value
    assert len(values) == 11


def test_empty_result(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, "nothing_here", "--at", str(T0 + 60))
    assert (code, out) == (0, "(empty result)\n")
    code, out, _ = query(db, capsys, "nothing_here", "--at", str(T0 + 60), "--format", "json")
    assert json.loads(out) == {"status": "success",
                               "data": {"resultType": "vector", "result": []}}


def test_annotations_carry_the_position_of_their_sub_expression(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = query(db, capsys, "sum(rate(temp[5m]))", "--at", str(T0 + 300),
                         "--format", "json")
    assert code == 0
    body = json.loads(out)
    assert body["infos"] == ["PromQL info: metric might not be a counter, name does not end in "
                             '_total/_sum/_count/_bucket: "temp" (1:10)']
    assert list(body) == ["status", "data", "infos"]


# ------------------------------------------------------------ errors


def test_bad_expression_shows_a_caret_and_exits_1(db: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = query(db, capsys, "rate(temp) > 1", "--at", str(T0))
    assert code == 1
    assert out == ""
    assert "expected type range vector in call to function 'rate'" in err
    assert "\n  |      ^^^^" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("args", "message"), [
    (("--at", "yesterday"), "invalid time 'yesterday'"),
    (("--from", str(T0), "--to", str(T0 + 60), "--step", "fast"), "invalid duration 'fast'"),
    (("--from", str(T0), "--to", str(T0 + 60), "--step", "0"), "must be greater than zero"),
    (("--from", str(T0 + 60), "--to", str(T0)), "is before --from"),
    (("--from", "2026-01-01T01:00:00Z"),
     "--from (2026-01-01T01:00:00Z) is after the newest sample (2026-01-01T00:10:01Z)"),
    (("--at", str(T0), "--from", str(T0)), "give either --at"),
    (("--from", str(T0), "--to", str(T0 + 86_400), "--step", "1s"),
     f"86,401 steps: more than Prometheus's maximum resolution of {MAX_STEPS:,} points per "
     "series; use --step 8s or more"),
])
def test_bad_times_exit_2(db: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
                          message: str) -> None:
    code, out, err = query(db, capsys, "temp", *args)
    assert code == 2
    assert out == ""
    assert err.startswith("monitoring query: error: ")
    assert message in err


def test_the_step_limit_is_prometheus_s(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # (end - start) / step may be 11,000 (11,001 points), not more.
    code, out, err = query(db, capsys, "1", "--from", str(T0), "--to", str(T0 + 11_000),
                           "--step", "1s", "--format", "csv")
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 11_001
    code, _, err = query(db, capsys, "1", "--from", str(T0), "--to", str(T0 + 11_001),
                         "--step", "1s")
    assert code == 2 and "11,002 steps" in err


def test_range_query_of_a_range_vector_exits_2(db: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = query(db, capsys, "temp[5m]", "--from", str(T0), "--to", str(T0 + 60))
    assert code == 2
    assert 'invalid expression type "range vector" for range query' in err


def test_missing_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = query(tmp_path / "nope.duckdb", capsys, "temp", "--at", str(T0))
    assert code == 2
    assert out == ""
    assert "no such store" in err and "nope.duckdb" in err


def test_not_a_store_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bogus.duckdb"
    bogus.write_text("not a database\n")
    code, out, err = query(bogus, capsys, "temp", "--at", str(T0))
    assert code == 2
    assert out == "" and err.startswith("monitoring query: error: ")
    assert "Traceback" not in err


# ------------------------------------------------------------ number formatting


@pytest.mark.parametrize(("value", "text"), [
    (0.5, "0.5"), (2.0, "2"), (-0.0, "-0"), (1e-7, "0.0000001"),
    (1e21, "1000000000000000000000"), (1.5e300, "15" + "0" * 299),
    (0.1 + 0.2, "0.30000000000000004"),
    (float("nan"), "NaN"), (float("inf"), "+Inf"), (float("-inf"), "-Inf"),
])
def test_values_are_written_as_go_does(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(("ms", "text"), [
    (1_767_225_600_000, "1767225600"), (1_767_225_600_500, "1767225600.500"),
    (1_767_225_600_001, "1767225600.001"), (1_767_225_600_120, "1767225600.120"),
    (-1_500, "-1.500"), (0, "0"),
])
def test_times_are_written_as_prometheus_does(ms: int, text: str) -> None:
    assert format_seconds(ms) == text


def test_strings_are_escaped_as_prometheus_does() -> None:
    text = 'a"b\\c\n\t\x01\x08<>&\u2028é'
    out = dumps({"k": text})
    assert out == '{"k":"a\\"b\\\\c\\n\\t\\u0001\\u0008\\u003c\\u003e\\u0026\\u2028é"}'
    assert json.loads(out) == {"k": text}


@pytest.mark.parametrize("expr", [
    "temp", "sum by (job) (rate(req_total[1m]))", "temp > bool 21", "max_over_time(temp[2m])",
])
def test_the_reference_engine_prints_the_same(db: Path, capsys: pytest.CaptureFixture[str],
                                              expr: str) -> None:
    window = ("--from", str(T0), "--to", str(T0 + 600), "--step", "30s", "--format", "json")
    code, fast, _ = query(db, capsys, expr, *window)
    assert code == 0
    code, reference, _ = query(db, capsys, expr, *window, "--engine", "reference")
    assert code == 0
    assert fast == reference
    assert json.loads(fast)["data"]["result"]
