"""The `monitoring` command, run as users run it: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, stdin: str | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoring", *args], capture_output=True,
                          text=True, input=stdin, cwd=cwd, timeout=120)


BAD = """group "g" {
  alert A {
    when rate(x) > 1
    severity warning
    summary "s"
  }
  alert B {
    when up == 0 )
  }
}
"""


def test_lint_clean_rules_exits_0() -> None:
    result = run("lint", "rules/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("no problems in 8 files")
    assert result.stderr == ""


def test_lint_reports_every_error_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bad.rules").write_text(BAD)
    result = run("lint", str(tmp_path / "bad.rules"), "--color", "never")
    assert result.returncode == 1
    assert "bad.rules:3:15: error[type/mismatch]" in result.stdout
    assert "bad.rules:8:18: error[syntax/unexpected-token]" in result.stdout
    assert "\033[" not in result.stdout
    assert "Traceback" not in result.stderr


def test_lint_json_and_sarif(tmp_path: Path) -> None:
    (tmp_path / "bad.rules").write_text(BAD)
    doc = json.loads(run("lint", str(tmp_path), "--format", "json").stdout)
    assert doc["summary"]["errors"] == 2
    first = doc["diagnostics"][0]
    assert (first["line"], first["column"], first["code"]) == (3, 15, "type/mismatch")
    sarif = json.loads(run("lint", str(tmp_path), "--format", "sarif").stdout)
    assert sarif["version"] == "2.1.0"
    run_ = sarif["runs"][0]
    assert {r["id"] for r in run_["tool"]["driver"]["rules"]} == {"type/mismatch",
                                                                  "syntax/unexpected-token"}
    region = run_["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (3, 15)
    for result in run_["results"]:
        assert run_["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")


def test_colour_is_forced_with_always(tmp_path: Path) -> None:
    (tmp_path / "bad.rules").write_text(BAD)
    assert "\033[" in run("lint", str(tmp_path), "--color", "always").stdout


def test_strict_fails_on_warnings(tmp_path: Path) -> None:
    (tmp_path / "w.rules").write_text('group g { alert A { when up == 0 severity x } }')
    assert run("lint", str(tmp_path)).returncode == 0
    assert run("lint", str(tmp_path), "--strict").returncode == 1


def test_usage_errors_exit_2() -> None:
    assert run("lint", "does/not/exist").returncode == 2
    assert run("lint").returncode == 2
    assert run().returncode == 2
    assert run("schema", "alert_rulez").returncode == 2
    assert run("lint", "rules", "--format", "xml").returncode == 2


def test_schema_command() -> None:
    names = run("schema").stdout.split()
    assert names == sorted(["alert_rules", "audit_filters", "escalation_policies",
                            "notification_config", "oncall", "prometheus_rules", "routing"])
    schema = json.loads(run("schema", "alert_rules").stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")


def test_graph_text_and_dot() -> None:
    text = run("graph", "rules/").stdout
    assert text.startswith("evaluation graph: 25 rules")
    dot = run("graph", "rules/", "--format", "dot")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph evaluation {")


def test_fmt_check_and_stdin(tmp_path: Path) -> None:
    path = tmp_path / "a.rules"
    path.write_text('group g {\nalert A {when up==0   severity critical}}\n')
    assert run("fmt", "--check", str(path)).returncode == 1
    assert run("fmt", str(path)).returncode == 0
    assert run("fmt", "--check", str(path)).returncode == 0
    out = run("fmt", "-", stdin="group g { record r = sum(x)by(job) }\n")
    assert out.returncode == 0
    assert "record r = sum by (job) (x)" in out.stdout


def test_shipped_rules_are_formatted() -> None:
    result = run("fmt", "--check", "rules/")
    assert result.returncode == 0, result.stderr


def test_console_script_entry_point() -> None:
    from monitoring.cli import main

    assert main(["schema"]) == 0
