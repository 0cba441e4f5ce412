"""``monitoring alerts`` / ``history`` / ``stats`` on a database the live engine wrote.

The engine runs first (real DuckDB file, fake clock), is closed, and the
commands read the file. A database held by another process (a running engine)
is shown from the engine's API instead (a loopback HTTP server stands in).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from monitoring.engine.timeparse import format_time
from monitoring.live.alerts_cli import add_parsers
from monitoring.notify.model import fingerprint
from tests.support.live_engine import LiveCase, minute_wave, square
from tests.support.processes import stop_process_group

RULES = ("group g every 1m {\n alert High {\n  when x > 0.5\n  for 2m\n  severity page\n }\n"
         " alert Low {\n  when x < 0.5\n  for 30m\n }\n}\n")


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="monitoring")
    add_parsers(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.func(args))


@pytest.fixture(scope="module")
def engine_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveCase, str]]:
    tmp = tmp_path_factory.mktemp("alerts_cli")
    series = {"x#a": ({"instance": "a"}, minute_wave(1, square(10, 30))),
              "x#b": ({"instance": "b"}, minute_wave(1, square(10, 14)))}
    case = LiveCase(tmp, RULES, series)
    case.open()
    case.evaluate(range(8, 21))
    case.close()
    yield case, str(case.db)


def test_alerts_lists_active_alerts_with_filters(engine_db: tuple[LiveCase, str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    case, db = engine_db
    assert cli("alerts", "--db", db, "--format", "json") == 0
    views = json.loads(capsys.readouterr().out)
    assert sorted((v["rule"], v["labels"]["instance"], v["state"]) for v in views) == [
        ("High", "a", "firing"), ("Low", "b", "pending")]
    high = next(v for v in views if v["rule"] == "High")
    assert high["fingerprint"] == fingerprint(high["labels"])
    assert high["labels"] == {"alertname": "High", "instance": "a", "severity": "page"}
    assert cli("alerts", "--db", db, "--state", "pending", "--label", "instance=b",
               "--format", "json") == 0
    assert [(v["rule"], v["labels"]["instance"]) for v in json.loads(capsys.readouterr().out)
            ] == [("Low", "b")]
    assert cli("alerts", "--db", db, "--rule", "High") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["STATE", "SINCE", "RULE", "FINGERPRINT", "VALUE", "LABELS"]
    assert lines[1].split() == ["firing", format_time(case.at(12)), "High",
                                high["fingerprint"], "1", 'instance="a",', 'severity="page"']
    assert cli("alerts", "--db", db, "--rule", "Nope") == 0
    assert capsys.readouterr().out == "no active alerts\n"


def test_history_and_stats(engine_db: tuple[LiveCase, str],
                           capsys: pytest.CaptureFixture[str]) -> None:
    case, db = engine_db
    since = str(case.at(0) // 1000)
    until = str(case.at(30) // 1000)
    assert cli("alerts", "history", "--db", db, "--since", since, "--until", until,
               "--rule", "High", "--format", "json") == 0
    records = json.loads(capsys.readouterr().out)
    assert [(r["labels"]["instance"], r["from"], r["to"], r["at_ms"]) for r in records] == [
        ("a", "inactive", "pending", case.at(10)), ("b", "inactive", "pending", case.at(10)),
        ("a", "pending", "firing", case.at(12)), ("b", "pending", "firing", case.at(12)),
        ("b", "firing", "inactive", case.at(14))]
    # --db before the sub-command is kept; table output by default.
    assert cli("alerts", "--db", db, "history", "--since", since, "--until", until,
               "--limit", "1") == 0
    lines = capsys.readouterr().out.splitlines()
    # The newest change: Low's alert on b went pending when x fell, at minute 14.
    assert len(lines) == 2 and lines[1].split() == [
        format_time(case.at(14)), "Low", fingerprint({"alertname": "Low", "instance": "b"}),
        "inactive", "->", "pending", "0", 'instance="b"']
    assert cli("alerts", "stats", "--db", db, "--since", since, "--until", until,
               "--format", "json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["firings"] == 2
    assert stats["mean_time_to_resolve_ms"] == 2 * 60_000
    assert stats["noisiest"] == ["High", "Low"]
    assert cli("alerts", "stats", "--db", db, "--since", since, "--until", until) == 0
    out = capsys.readouterr().out
    assert "firings: 2" in out and "mean time to resolve: 2m00s" in out
    assert "noisiest: High (2)" in out


def test_missing_database_and_bad_arguments(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "none.duckdb")
    for argv in (["alerts"], ["alerts", "history"], ["alerts", "stats"]):
        assert cli(*argv, "--db", missing) == 2
        err = capsys.readouterr().err
        assert f"no database at {missing}" in err and "Traceback" not in err
    db = tmp_path / "x.duckdb"
    db.write_bytes(b"")
    assert cli("alerts", "history", "--db", str(db), "--since", "yesterday") == 2
    assert "invalid duration 'yesterday'" in capsys.readouterr().err
    assert cli("alerts", "--db", str(db), "--label", "nolabel") == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


class _Api(BaseHTTPRequestHandler):
    body: bytes = b""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/api/v1/alerts" else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_busy_database_asks_the_running_engine(engine_db: tuple[LiveCase, str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    _, db = engine_db
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(120)", db],
        stdout=subprocess.PIPE, start_new_session=True)
    server = HTTPServer(("127.0.0.1", 0), _Api)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        _Api.body = json.dumps({"alerts": [
            {"fingerprint": "f1", "rule": "R", "labels": {"alertname": "R", "k": "v"},
             "state": "firing", "active_at_ms": 0, "fired_at_ms": 60_000, "value": "2.5"}]}
        ).encode()
        free_url = f"http://127.0.0.1:{server.server_address[1]}"
        server.server_close()  # nothing listens there now
        assert cli("alerts", "--db", db, "--url", free_url) == 2
        err = capsys.readouterr().err
        assert "is in use by another process" in err and "no engine answers" in err
        assert cli("alerts", "history", "--db", db, "--url", free_url) == 2
        err = capsys.readouterr().err
        assert "is in use by another process" in err and "no engine answers" in err
        server = HTTPServer(("127.0.0.1", 0), _Api)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        assert cli("alerts", "--db", db, "--url", url, "--format", "json") == 0
        assert [v["fingerprint"] for v in json.loads(capsys.readouterr().out)] == ["f1"]
        assert cli("alerts", "--db", db, "--url", url, "--state", "pending") == 0
        assert capsys.readouterr().out == "no active alerts\n"
        server.shutdown()
    finally:
        server.server_close()
        stop_process_group(holder)
        if holder.stdout is not None:
            holder.stdout.close()
