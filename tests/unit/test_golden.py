"""Golden files: each bad example gives exactly its expected diagnostics.

`tests/golden/lint/<code>.*` is the bad example of one lint check (a file, or a
folder for checks that need several files); `tests/golden/syntax/*` pins the
rendering of parse and type errors. The expected output is the plain-text
rendering next to it (`<name>.expected`). Regenerate after a deliberate change
with `UPDATE_GOLDEN=1 python -m pytest tests/unit/test_golden.py` and review the
diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitoring.docgen import golden_name
from monitoring.dsl.render import render_text, summarise
from monitoring.lint.registry import CHECKS
from monitoring.lint.runner import lint_paths

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
CASES = sorted(
    p for p in (GOLDEN / "lint").iterdir() if not p.name.endswith(".expected")
) + sorted(p for p in (GOLDEN / "syntax").iterdir() if not p.name.endswith(".expected"))


def render(path: Path) -> str:
    cwd = Path.cwd()
    os.chdir(ROOT)
    try:
        report = lint_paths([str(path.relative_to(ROOT))])
    finally:
        os.chdir(cwd)
    parts = [render_text(d) for d in report.diagnostics]
    parts.append(summarise(report.diagnostics, report.files, report.rules))
    return "\n\n".join(parts) + "\n"


@pytest.mark.parametrize("case", CASES, ids=[p.name for p in CASES])
def test_golden(case: Path) -> None:
    expected_file = case.parent / (case.name + ".expected")
    actual = render(case)
    if os.environ.get("UPDATE_GOLDEN"):
        expected_file.write_text(actual, "utf-8")
    assert expected_file.exists(), f"missing {expected_file.name}; run with UPDATE_GOLDEN=1"
    assert actual == expected_file.read_text("utf-8")


@pytest.mark.parametrize("code", sorted(CHECKS))
def test_every_check_has_a_golden_example_that_triggers_it(code: str) -> None:
    stem = golden_name(code)
    matches = [p for p in (GOLDEN / "lint").iterdir()
               if p.name.split(".")[0] == stem and not p.name.endswith(".expected")]
    assert matches, f"no golden example tests/golden/lint/{stem}.* for {code}"
    (case,) = matches
    expected = (case.parent / (case.name + ".expected")).read_text("utf-8")
    assert f"[{code}]" in expected


def test_shipped_rules_are_clean() -> None:
    report = lint_paths([str(ROOT / "rules")])
    assert report.diagnostics == [], "\n\n".join(render_text(d) for d in report.diagnostics)
    assert report.rules > 20


def test_every_emitted_code_is_catalogued() -> None:
    import re

    from monitoring.lint.catalogue import descriptions

    known = descriptions()
    pattern = re.compile(r'"((?:syntax|type|name|promql|limit|yaml|schema|rule|config|io|fmt|lint|'
                         r'alert|unit|composite|template|routing)/[a-z-]+)"')
    emitted = set()
    for path in (ROOT / "monitoring").rglob("*.py"):
        emitted |= set(pattern.findall(path.read_text("utf-8")))
    assert sorted(emitted - set(known)) == []
