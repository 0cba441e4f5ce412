"""The driver: build every page, render its figures, write docs/conditions/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from monitoring.docgen_conditions.markdown import Page

ROOT = Path(__file__).resolve().parent.parent.parent
FOLDER = ROOT / "docs" / "conditions"
IMAGES = "img"


def _builders() -> list[Callable[[], Page]]:
    """The page builders (imported lazily: matplotlib and the evaluator are heavy)."""
    from monitoring.docgen_conditions import anomalies, composites, thresholds, trends

    return [thresholds.page, trends.page, anomalies.page, composites.page]


def generate() -> dict[str, str]:
    """Every generated file's text, keyed by its path relative to docs/conditions/."""
    from monitoring.docgen_conditions.plot import render_svg

    files: dict[str, str] = {}
    for build in _builders():
        page = build()
        files[page.name] = page.markdown
        for figure in page.figures:
            files[f"{IMAGES}/{figure.name}.svg"] = render_svg(figure)
    return files


def write(folder: Path = FOLDER) -> list[str]:
    """Rewrite the generated files under ``folder``; SVGs no page uses any more are removed."""
    files = generate()
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    for old in sorted((folder / IMAGES).glob("*.svg")):
        if f"{IMAGES}/{old.name}" not in files:
            old.unlink()
    for name, text in files.items():
        (folder / name).write_text(text, "utf-8")
    return sorted(files)


def main() -> int:
    """Rewrite docs/conditions/ and say what was written."""
    for name in write():
        print(f"wrote docs/conditions/{name}")
    return 0
