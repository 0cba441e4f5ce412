"""``monitoring dry-run`` end to end: real store files, the CLI, exit codes, JSON schema.

Also checks the evaluation phase against a real Prometheus: the timestamps of
a recording rule's samples are the group's evaluation times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from monitoring.cli import main
from monitoring.dryrun.schedule import group_phase_ms
from monitoring.dryrun.schema import COMPARE_SCHEMA, REPORT_SCHEMA
from monitoring.engine.store import Store
from tests.support.prometheus import free_port, peer_binary
from tests.unit.test_dryrun_engine import MIN, T0, minute_wave, square, write_store

RULES = """
group g every 1m {
  record job:x:max = max by (job) (x)

  alert High {
    when x > 0.5
    for 2m
    severity warning
    notify email
    cooldown 10m
    summary "x is {{ $value }} on {{ $labels.instance }}"
  }

  alert FromRecording {
    when job:x:max > 0.5
  }
}
"""


def square_store(path: Path, hours: int = 3) -> None:
    """x{instance="a"} is 1 in minutes 10-29 of every hour, else 0; b stays at 0.4."""
    write_store(path, {"x#a": ({"job": "j", "instance": "a"}, minute_wave(hours, square(10, 30))),
                       "x#b": ({"job": "j", "instance": "b"},
                               minute_wave(hours, lambda m: np.full(len(m), 0.4)))})


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "r.rules"
    rules.write_text(RULES, encoding="utf-8")
    db = tmp_path / "s.duckdb"
    square_store(db)
    return rules, db


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["dry-run", "-q", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    code, out, err = run(capsys, str(rules), "--db", str(db), "--color", "never")
    assert code == 0, err
    row = next(line for line in out.splitlines() if "g/High" in line and "│" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:5] == ["g/High", "ok", "3", "54m", "0"]
    assert "g/High: 3 firing interval(s)" in out
    assert "notifications: email: 3 firing, 3 resolved" in out
    assert "recording rules: 1 (1 evaluated, 1 series recorded)" in out


def test_json_output_matches_the_schema_and_figures(setup: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    code, out, err = run(capsys, str(rules), "--db", str(db), "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    jsonschema.validate(data, REPORT_SCHEMA)
    phase = group_phase_ms("g", str(rules), MIN)
    assert data["info"]["groups"] == [{
        "name": "g", "file": str(rules), "interval_ms": MIN, "phase_ms": phase,
        "query_offset_ms": 0, "steps": data["info"]["groups"][0]["steps"],
        "first_eval_ms": T0 + phase, "last_eval_ms": data["info"]["groups"][0]["last_eval_ms"]}]
    high = next(r for r in data["rules"] if r["name"] == "High")
    assert [(i["start_ms"], i["end_ms"]) for i in high["intervals"]] == [
        (T0 + phase + (60 * h + 12) * MIN, T0 + phase + (60 * h + 30) * MIN) for h in range(3)]
    assert high["notifications"][0] == {
        "time_ms": T0 + phase + 12 * MIN, "channel": "email", "kind": "firing",
        "labels": {"alertname": "High", "instance": "a", "job": "j", "severity": "warning"},
        "value": 1.0, "summary": "x is 1 on a"}
    plot = high["plot"]
    assert plot["threshold"] == 0.5 and plot["op"] == ">" and plot["expr"] == "x"
    assert [s["fired"] for s in plot["series"]] == [True, False]
    assert all(len(s["values"]) == len(plot["times_ms"]) for s in plot["series"])


def test_a_dry_run_never_writes_to_the_store(setup: tuple[Path, Path],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    before = (db.read_bytes(), db.stat().st_mtime_ns)
    wal = db.with_name(db.name + ".wal")
    assert not wal.exists()
    code, _, err = run(capsys, str(rules), "--db", str(db), "--format", "json")
    assert code == 0, err
    assert (db.read_bytes(), db.stat().st_mtime_ns) == before
    assert not wal.exists()


# ---------------------------------------------------------------- bad input


def test_missing_store(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                       tmp_path: Path) -> None:
    rules, _ = setup
    code, out, err = run(capsys, str(rules), "--db", str(tmp_path / "nope.duckdb"))
    assert code == 2 and out == ""
    assert "no such store" in err and "nope.duckdb" in err
    assert not (tmp_path / "nope.duckdb").exists()


def test_range_without_data(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    code, out, err = run(capsys, str(rules), "--db", str(db), "--from", "2030-01-01T00:00:00Z",
                         "--to", "2030-01-02T00:00:00Z")
    assert code == 1 and out == ""
    assert "no data in the range 2030-01-01T00:00:00Z .. 2030-01-02T00:00:00Z" in err
    assert "Traceback" not in err


def test_empty_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rules = tmp_path / "r.rules"
    rules.write_text(RULES, encoding="utf-8")
    db = tmp_path / "empty.duckdb"
    Store(db).close()
    code, _, err = run(capsys, str(rules), "--db", str(db))
    assert code == 1 and "the store holds no samples" in err


def test_to_before_from(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    code, _, err = run(capsys, str(rules), "--db", str(db), "--from", str(T0 // 1000 + 600),
                       "--to", str(T0 // 1000))
    assert code == 1 and "--to is before --from" in err


def test_bad_time(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    code, _, err = run(capsys, str(rules), "--db", str(db), "--from", "yesterday")
    assert code == 2 and "invalid time 'yesterday'" in err


def test_unknown_metric_warns_and_fails(setup: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    _, db = setup
    rules = tmp_path / "unknown.rules"
    rules.write_text("group g {\n alert Typo {\n  when xx > 0.5\n }\n"
                     " alert Fine {\n  when x > 0.5\n }\n}\n", encoding="utf-8")
    code, out, err = run(capsys, str(rules), "--db", str(db), "--color", "never")
    assert code == 1
    assert "g/Typo: warning: unknown metric: xx matches no series in the store" in out
    assert "g/Typo: xx matches no series in the store" in err
    assert "g/Fine" in out


def test_rule_file_errors_are_diagnostics(setup: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _, db = setup
    rules = tmp_path / "broken.rules"
    rules.write_text("group g {\n alert A {\n  when rate(x) > 1\n }\n}\n", encoding="utf-8")
    code, out, err = run(capsys, str(rules), "--db", str(db), "--color", "never")
    assert code == 1 and out == ""
    assert f"{rules}:3:" in err
    assert "nothing was evaluated" in err


def test_no_rules(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                  tmp_path: Path) -> None:
    _, db = setup
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run(capsys, str(empty), "--db", str(db))
    assert code == 1 and out == ""
    assert f"no rules found in {empty}" in err


def test_missing_rule_path(setup: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                           tmp_path: Path) -> None:
    _, db = setup
    code, _, err = run(capsys, str(tmp_path / "none.rules"), "--db", str(db))
    assert code == 2 and "no such file or directory" in err


def test_html_without_the_renderer_is_a_clear_error(setup: tuple[Path, Path], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rules, db = setup
    monkeypatch.setitem(sys.modules, "monitoring.dryrun.html", None)  # import fails
    code, out, err = run(capsys, str(rules), "--db", str(db), "--html",
                         str(tmp_path / "r.html"))
    assert code == 2 and out == ""
    assert "--html is not available: cannot import monitoring.dryrun.html" in err


def test_html_report_is_written(setup: tuple[Path, Path], tmp_path: Path,
                                capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    rules, db = setup
    seen: list[Any] = []
    fake = types.ModuleType("monitoring.dryrun.html")
    fake.render = lambda report: seen.append(report) or "<html>ok</html>"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "monitoring.dryrun.html", fake)
    out_file = tmp_path / "r.html"
    code, _, err = run(capsys, str(rules), "--db", str(db), "--html", str(out_file))
    assert code == 0, err
    assert out_file.read_text() == "<html>ok</html>"
    assert [r.name for r in seen[0].rules] == ["job:x:max", "High", "FromRecording"]


# ---------------------------------------------------------------- compare


def test_compare(setup: tuple[Path, Path], tmp_path: Path,
                 capsys: pytest.CaptureFixture[str]) -> None:
    rules, db = setup
    old = tmp_path / "old"
    old.mkdir()
    # The old set: High without `for` (fires 2 minutes earlier), FromRecording on a higher
    # threshold that never holds, and a rule the new set removed.
    (old / "r.rules").write_text(
        RULES.replace("    for 2m\n", "").replace("job:x:max > 0.5", "job:x:max > 2")
        + "group other {\n alert Removed {\n  when x > 0.1\n }\n}\n", encoding="utf-8")
    code, out, err = run(capsys, str(rules), "--db", str(db), "--compare", str(old),
                         "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    jsonschema.validate(data, COMPARE_SCHEMA)
    by_rule = {d["rule"]: d for d in data["rules"]}
    assert by_rule["g/job:x:max"]["change"] == "unchanged"
    assert by_rule["other/Removed"]["change"] == "removed"
    high = by_rule["g/High"]
    assert high["change"] == "changed"
    assert [c["kind"] for c in high["intervals"]] == ["changed"] * 3
    phase = group_phase_ms("g", str(rules), MIN)
    first = high["intervals"][0]
    assert (first["old"]["start_ms"], first["new"]["start_ms"]) == (
        T0 + phase + 10 * MIN, T0 + phase + 12 * MIN)
    rec = by_rule["g/FromRecording"]
    assert (rec["old_firings"], rec["new_firings"]) == (0, 3)
    assert [c["kind"] for c in rec["intervals"]] == ["new"] * 3
    assert data["shared_nodes"] > 0  # x, job:x:max, max by (job) (x), 0.5 ...

    code, out, err = run(capsys, str(rules), "--db", str(db), "--compare", str(old),
                         "--color", "never")
    assert code == 0, err
    assert "g/FromRecording: fired 3 time(s) instead of 0" in out
    assert "other/Removed: rule removed" in out


# ---------------------------------------------------------------- Prometheus's phase


@pytest.fixture
def prometheus_binary() -> str:
    return peer_binary("prometheus")


@pytest.fixture
def prometheus_with_rules(prometheus_binary: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = tmp_path / "phase.yml"
    rules.write_text("groups:\n  - name: phase-check\n    interval: 2s\n    rules:\n"
                     "      - record: phase_probe\n        expr: vector(1)\n", encoding="utf-8")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global:\n  scrape_interval: 1h\nrule_files:\n  - {rules}\n",
                      encoding="utf-8")
    port = free_port()
    with open(tmp_path / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [prometheus_binary, f"--config.file={config}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
             "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield f"http://127.0.0.1:{port}", rules
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_evaluation_phase_matches_prometheus(prometheus_with_rules: tuple[str, Path]) -> None:
    url, rules = prometheus_with_rules
    deadline = time.monotonic() + 30
    stamps: list[int] = []
    while time.monotonic() < deadline and len(stamps) < 3:
        time.sleep(1)
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?query=phase_probe%5B1m%5D",
                                        timeout=5) as r:
                result = json.loads(r.read())["data"]["result"]
        except OSError:
            continue
        if result:
            stamps = [round(float(v[0]) * 1000) for v in result[0]["values"]]
    assert len(stamps) >= 3, "Prometheus recorded too few samples"
    phase = group_phase_ms("phase-check", str(rules), 2000)
    assert {t % 2000 for t in stamps} == {phase}


class _Terminal:
    """A stand-in for a terminal on standard error: collects what is written."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("not a real terminal")


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_only_on_a_terminal_without_quiet(setup: tuple[Path, Path], quiet: bool,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    rules, db = setup
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    code = main(["dry-run", str(rules), "--db", str(db), "--chunk-steps", "30",
                 *(["-q"] if quiet else [])])
    assert code == 0
    shown = "".join(term.parts)
    if quiet:
        assert "evaluating" not in shown
    else:
        assert "evaluating" in shown and "chunks" in shown
    capsys.readouterr()
