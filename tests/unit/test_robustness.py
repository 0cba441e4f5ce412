"""Bad input never crashes the pipeline: any bytes give an AST or diagnostics.

The whole lint job (load, compile, checks, suppressions, rendering) runs on
random byte strings and on random mutations of every file of the golden corpus
and of the shipped rules, in each of the formats.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.dsl.render import render_json, render_sarif, render_text
from monitoring.lint.runner import lint_paths

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    p for p in [*(ROOT / "tests" / "golden").rglob("*"), *(ROOT / "rules").iterdir()]
    if p.is_file() and not p.name.endswith(".expected")
)
NAMES = ["x.rules", "alert_rules.yaml", "notification_config.yaml", "escalation_policies.yaml",
         "audit_filters.yaml", "prom.yml"]


def lint_bytes(tmp: Path, name: str, data: bytes) -> None:
    path = tmp / name
    path.write_bytes(data)
    report = lint_paths([str(path)])
    for d in report.diagnostics:
        render_text(d)
    render_json(report.diagnostics, {})
    render_sarif(report.diagnostics, {}, "test")
    assert report.files == 1 or [d.code for d in report.diagnostics] == ["io/unreadable"]


SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])


@SETTINGS
@given(name=st.sampled_from(NAMES), data=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, name: str, data: bytes) -> None:
    lint_bytes(tmp_path, name, data)


@SETTINGS
@given(source=st.sampled_from(CORPUS), data=st.data())
def test_mutated_corpus(tmp_path: Path, source: Path, data: st.DataObject) -> None:
    original = source.read_bytes()
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        kind = data.draw(st.sampled_from(["flip", "delete", "insert", "duplicate"]))
        if kind == "flip" and mutated:
            mutated[pos] = data.draw(st.integers(0, 255))
        elif kind == "delete":
            del mutated[pos : pos + data.draw(st.integers(1, 8))]
        elif kind == "insert":
            mutated[pos:pos] = data.draw(st.sampled_from(
                [b"{", b"}", b"(", b"\"", b"'", b"\n", b"- ", b": ", b"&a ", b"*a", b"#",
                 b"\t", b"\xff", b"[5m]", b"offset", b"when", b"%", b"{{"]))
        else:
            mutated[pos:pos] = mutated[pos : pos + 20]
    lint_bytes(tmp_path, source.name, bytes(mutated))
