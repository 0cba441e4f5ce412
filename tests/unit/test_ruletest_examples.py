"""The example tests of the shipped rules pass, and coverage reports what they touch."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from monitoring.cli import main
from monitoring.ruletest import coverage
from monitoring.ruletest.runner import run_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "ruletests").glob("*.yml"))


def test_there_are_examples_for_the_dsl_and_the_seed_yaml() -> None:
    named = {p.name for p in EXAMPLES}
    assert {"api_test.yml", "seed_alert_rules_test.yml"} <= named


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_passes(path: Path) -> None:
    result = run_file(path)
    assert result.errors == []
    assert [f for g in result.groups for f in g.failures] == []
    assert result.groups and all(g.status == "passed" for g in result.groups)


def test_coverage_of_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        code = main(["test", *(str(p.relative_to(ROOT)) for p in EXAMPLES), "--coverage",
                     "--coverage-format", "json"])
    finally:
        os.chdir(cwd)
    assert code == 0
    out = capsys.readouterr().out
    doc = json.loads(out[out.index("{"):])
    rows = {(r["file"], r["name"]): r for r in doc["rules"]}
    api = "rules/api.rules"
    assert rows[(api, "HighErrorRate")]["asserted_by"] == ["alert_rule_test"]
    assert rows[(api, "HighErrorRate")]["seen_firing"] is True
    assert rows[(api, "ApiMetricsAbsent")]["seen_firing"] is False
    assert rows[(api, "HighLatencyP99")]["covered"] is False
    assert rows[(api, "InstanceDown")]["asserted_by"] == ["alert_rule_test", "promql_expr_test"]
    assert rows[(api, "job:http_requests:rate5m")]["read_by_rules"] == [
        "job:http_errors:ratio5m", "ErrorRatioFromRecording"]
    assert rows[("rules/alert_rules.yaml", "high_error_rate")]["covered"] is True
    assert doc["summary"] == {"rules": 8, "covered": 7, "percent": 87.5}


def test_coverage_counts_only_selected_groups(tmp_path: Path) -> None:
    rules = tmp_path / "r.yml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - record: a\n"
                     "        expr: vector(1)\n      - alert: B\n        expr: vector(1)\n")
    test = tmp_path / "t.yml"
    test.write_text("rule_files: [r.yml]\ntests:\n  - name: one\n    promql_expr_test:\n"
                    "      - expr: a\n        eval_time: 0\n        exp_samples: [{labels: a, "
                    "value: 1}]\n  - name: two\n    alert_rule_test:\n      - eval_time: 0\n"
                    "        alertname: B\n        exp_alerts: [{}]\n")
    import re

    only_one = coverage.compute([run_file(test, re.compile("one"))])
    assert [(r.name, r.covered) for r in only_one] == [("a", True), ("B", False)]
    both = coverage.compute([run_file(test)])
    assert [(r.name, r.covered, r.seen_firing) for r in both] == [("a", True, False),
                                                                   ("B", True, True)]
    assert coverage.percentage(both) == 100.0 and coverage.percentage([]) == 100.0


def test_coverage_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["test", str(EXAMPLES[0]), "--coverage", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "Rule coverage" in out and "not tested" in out
    assert "Rule coverage: 6/7 rules (85.7%)" in out
