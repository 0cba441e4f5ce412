"""Golden files: the exact report of each test file in tests/golden/ruletest.

Each ``<case>.yml`` there (the ``rules*.yml`` files are the rules they load)
is run with `monitoring test`; its report (stdout and stderr as one text,
paths relative to the repository) must equal ``<case>.expected``: failure
diffs, file:line errors for bad files, and the summary. Regenerate after a
deliberate change with ``UPDATE_GOLDEN=1 python -m pytest
tests/unit/test_ruletest_golden.py`` and review the diff.
"""

from __future__ import annotations

import os
import subprocess
from io import StringIO
from pathlib import Path

import pytest

from monitoring.ruletest.report import write_text
from monitoring.ruletest.runner import run_file
from tests.conformance.test_promtool_peer import require_promtool

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "tests" / "golden" / "ruletest"
CASES = sorted(p for p in FOLDER.glob("*.yml") if not p.name.startswith("rules"))


def render(path: Path) -> str:
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        result = run_file(str(path.relative_to(ROOT)))
    finally:
        os.chdir(cwd)
    out = StringIO()
    write_text([result], out, out)
    return out.getvalue()


@pytest.mark.parametrize("case", CASES, ids=[p.stem for p in CASES])
def test_golden(case: Path) -> None:
    expected = case.with_suffix(".expected")
    got = render(case)
    if os.environ.get("UPDATE_GOLDEN"):
        expected.write_text(got)
    assert expected.exists(), f"missing {expected.name}: run with UPDATE_GOLDEN=1"
    assert got == expected.read_text()


def test_every_failing_case_says_so() -> None:
    for case in CASES:
        text = case.with_suffix(".expected").read_text()
        if case.stem.startswith(("fail", "bad", "eval")):
            assert "FAILED:" in text, case.name
        else:
            assert "SUCCESS" in text, case.name


def _promtool_run(folder: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_promtool(), "test", "rules", name], capture_output=True,
                          text=True, cwd=folder, timeout=300)


@pytest.mark.parametrize("name", ["fail_values", "fail_alerts", "eval_error"])
def test_failures_read_as_promtool_writes_them(name: str) -> None:
    """promtool 2.42 on the same file: each of its failure messages is in our report."""
    real = _promtool_run(FOLDER, f"{name}.yml")
    assert real.returncode == 1
    ours = (FOLDER / f"{name}.expected").read_text()
    lines = [line for line in real.stderr.splitlines() if line.strip() not in ("", "FAILED:")]
    assert lines
    for line in lines:
        assert line in ours, line


def test_passing_features_pass_in_promtool_too(tmp_path: Path) -> None:
    """pass_features.yml without start_timestamp (unknown to promtool 2.42) passes there."""
    import yaml

    data = yaml.safe_load((FOLDER / "pass_features.yml").read_text())
    group = data["tests"][1]
    del group["start_timestamp"]
    for test in group["promql_expr_test"]:
        if test["expr"] == "ALERTS_FOR_STATE":
            test["exp_samples"][0]["value"] = 60
    (tmp_path / "rules.yml").write_text((FOLDER / "rules.yml").read_text())
    (tmp_path / "p.yml").write_text(yaml.safe_dump(data))
    real = _promtool_run(tmp_path, "p.yml")
    assert real.returncode == 0, real.stderr
    assert not run_file(tmp_path / "p.yml").failed
