from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import monitoring.docgen_conditions.pages as docs
from monitoring.docgen_conditions.example import ExampleError, compile_pair
from monitoring.docgen_conditions.plot import FigureSpec, Level, Line, Marks, Panel, render_svg
from monitoring.stdlib import REGISTRY
from monitoring.stdlib.registry import Category

REGENERATE = ("run `make docs` (with the pinned matplotlib: another release draws "
              "different SVG bytes)")
FAMILIES = {
    "thresholds.md": Category.CONDITION,
    "trends.md": Category.TREND,
    "anomalies.md": Category.ANOMALY,
}


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return docs.generate()


def test_committed_pages_and_figures_are_current(generated: dict[str, str]) -> None:
    for name, text in generated.items():
        path = docs.FOLDER / name
        assert path.exists(), f"docs/conditions/{name} is missing: {REGENERATE}"
        assert path.read_text("utf-8") == text, f"docs/conditions/{name} is stale: {REGENERATE}"


def test_no_committed_figure_is_left_over(generated: dict[str, str]) -> None:
    committed = {f"img/{p.name}" for p in (docs.FOLDER / "img").glob("*.svg")}
    assert committed == {n for n in generated if n.startswith("img/")}


def test_every_family_has_a_page_that_shows_its_figures(generated: dict[str, str]) -> None:
    pages = {n: t for n, t in generated.items() if n.endswith(".md")}
    assert set(pages) == {"thresholds.md", "trends.md", "anomalies.md", "composites.md"}
    linked = {m for text in pages.values() for m in re.findall(r"\]\((img/[^)]+\.svg)\)", text)}
    assert linked == {n for n in generated if n.startswith("img/")}
    for name, text in pages.items():
        assert "](img/" in text, f"{name} has no figure"


@pytest.mark.parametrize("page", sorted(FAMILIES))
def test_a_family_page_lists_every_function_of_its_family(generated: dict[str, str],
                                                          page: str) -> None:
    names = [d.name for d in REGISTRY.functions.values() if d.category is FAMILIES[page]]
    assert names
    for name in names:
        assert f"(../functions.md#{name}-extension)" in generated[page], name


def test_links_point_at_existing_pages_and_headings(generated: dict[str, str]) -> None:
    for name, text in generated.items():
        for target, anchor in re.findall(r"\]\(\.\./([\w.-]+\.md)(?:#([^)]+))?\)", text):
            page = docs.FOLDER.parent / target
            assert page.exists(), f"{name} links to missing docs/{target}"
            if anchor:
                headings = re.findall(r"^#+ (.+)$", page.read_text("utf-8"), re.M)
                assert anchor in {_github_anchor(h) for h in headings}, f"{target}#{anchor}"


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.lower())
    return text.replace(" ", "-")


def _small_figure(name: str) -> FigureSpec:
    x = np.linspace(0, 2, 50)
    y = np.sin(x * 3)
    return FigureSpec(name, [Panel("p", [Line("y", x, y), Level("> 0.5", 0.5),
                                         Marks("holds", x[y > 0.5], y[y > 0.5])])])


def test_svg_output_is_deterministic() -> None:
    first = render_svg(_small_figure("same"))
    assert first == render_svg(_small_figure("same"))
    assert "<dc:date>" not in first
    assert "<text" in first  # text is kept as text, not as font-dependent outlines
    ids = set(re.findall(r'id="([^"]+)"', first))
    other = set(re.findall(r'id="([^"]+)"', render_svg(_small_figure("other"))))
    assert ids - other, "ids derived from hashes are salted with the figure's name"


DSL = """
group "g" every 1m {
  alert A { when cpu_usage_ratio > 90% severity warning summary "busy" }
}
"""


def _yaml(value: str, summary: str = "busy") -> str:
    return f"""
- name: A
  group: g
  interval: 1m
  condition: {{type: threshold, metric: cpu_usage_ratio, operator: ">", value: "{value}"}}
  severity: warning
  summary: {summary}
"""


def test_the_two_forms_of_an_example_must_mean_the_same() -> None:
    rules = compile_pair(DSL, _yaml("90%"))
    assert [r.name for r in rules] == ["A"]
    with pytest.raises(ExampleError, match="differ"):
        compile_pair(DSL, _yaml("80%"))


def test_an_example_must_compile_and_be_lint_clean() -> None:
    with pytest.raises(ExampleError, match="syntax"):
        compile_pair(DSL.replace("> 90%", "> > 90%"), _yaml("90%"))
    with pytest.raises(ExampleError, match="alert/missing-summary"):
        compile_pair(DSL, _yaml("90%").replace("  summary: busy\n", ""))


def test_write_replaces_stale_figures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docs, "generate", lambda: {"a.md": "page\n", "img/a.svg": "<svg/>"})
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "gone.svg").write_text("<svg/>")
    (tmp_path / "img" / "notes.txt").write_text("kept")
    assert docs.write(tmp_path) == ["a.md", "img/a.svg"]
    assert sorted(p.name for p in (tmp_path / "img").iterdir()) == ["a.svg", "notes.txt"]
    assert (tmp_path / "a.md").read_text() == "page\n"
