"""Every case of the tamper catalogue (T01-T44) has a test, and docs/audit.md maps each to it.

The catalogue is the design study's list of attacks the ledger must detect; a case that loses
its test, or a test the documentation no longer names, should fail loudly rather than drift.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CASES = range(1, 45)


def _tests_by_case() -> dict[int, set[str]]:
    found: dict[int, set[str]] = {n: set() for n in CASES}
    for path in (ROOT / "tests").rglob("test_audit_*.py"):
        for match in re.finditer(r"^(?:async )?def (test_t(\d\d)_\w+)", path.read_text(), re.M):
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    return found


def test_every_catalogue_case_has_a_test() -> None:
    missing = [f"T{n:02d}" for n, names in _tests_by_case().items() if not names]
    assert missing == []


def test_docs_map_every_case_to_existing_tests() -> None:
    docs = (ROOT / "docs" / "audit.md").read_text()
    tests = _tests_by_case()
    for n in CASES:
        row = re.search(rf"^\| T{n:02d} \|.*$", docs, re.M)
        assert row is not None, f"T{n:02d} is not in docs/audit.md"
        named = set(re.findall(r"::(test_t\d\d_\w+)", row.group(0)))
        assert named, f"T{n:02d}: no test named in docs/audit.md"
        assert named <= tests[n], f"T{n:02d}: docs name tests that do not exist: {named - tests[n]}"
