"""Prometheus's own PromQL test scripts, run against both evaluators.

The scripts live next to the checkout (``../shared/peer/promql``, copied
unmodified from Prometheus, see the README there). Every block that needs
neither native histograms nor an experimental function must pass (and, run
with the experimental functions on, every block without native histograms), including
the harness's ``@`` re-runs and range-mode check. The counts are printed
(``pytest -s``) and recorded in docs/conformance.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from monitoring.engine.promqltest import Outcome, evaluator_by_name, run_file

PEER = Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "promql"

EVAL_BLOCKS = {
    "aggregators.test": 160,
    "at_modifier.test": 78,
    "collision.test": 2,
    "functions.test": 431,
    "literals.test": 25,
    "range_queries.test": 18,
    "selectors.test": 31,
    "staleness.test": 17,
    "trig_functions.test": 19,
}
"""Eval blocks per file, as the folder's README counts them: none may be lost in parsing."""


def _script(name: str) -> Path:
    path = PEER / name
    if not path.is_file():
        message = f"the PromQL test scripts are missing: {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.parametrize("experimental", [False, True], ids=["stable", "experimental"])
@pytest.mark.parametrize("engine", ["fast", "reference"])
@pytest.mark.parametrize("name", sorted(EVAL_BLOCKS))
def test_supported_blocks_pass(name: str, engine: str, experimental: bool) -> None:
    report = run_file(_script(name), evaluator_by_name(engine), experimental=experimental)
    print(f"{engine} {name} experimental={experimental}: {report.summary()}")
    assert len(report.blocks) == EVAL_BLOCKS[name]
    failures = [f"{name}:{b.line}: {b.expr}\n    {b.reason}"
                for b in report.blocks if b.outcome is Outcome.FAILED]
    assert not failures, f"{len(failures)} failed:\n" + "\n".join(failures)


def test_only_native_histograms_and_experimental_functions_are_unsupported() -> None:
    reasons = set()
    for name in sorted(EVAL_BLOCKS):
        report = run_file(_script(name), evaluator_by_name("fast"))
        reasons |= {b.reason.split(" (")[0] for b in report.blocks
                    if b.outcome is Outcome.UNSUPPORTED}
    assert reasons, "the scripts do use native histograms and experimental functions"
    for reason in reasons:
        assert reason.startswith(("native histograms in ", "experimental function ")), reason


def test_with_experimental_functions_only_native_histograms_are_unsupported() -> None:
    for name in sorted(EVAL_BLOCKS):
        report = run_file(_script(name), evaluator_by_name("fast"), experimental=True)
        for b in report.blocks:
            if b.outcome is Outcome.UNSUPPORTED:
                assert b.reason.startswith("native histograms in "), (name, b.line, b.reason)
