from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.docgen import PAGES

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_generated_page_is_current(name: str) -> None:
    committed = (DOCS / name).read_text("utf-8")
    assert committed == PAGES[name](), f"docs/{name} is stale: run `make docs`"


def test_function_reference_lists_every_function() -> None:
    from monitoring.stdlib import REGISTRY

    text = (DOCS / "functions.md").read_text("utf-8")
    for name in REGISTRY.functions:
        assert f"### `{name}`" in text
