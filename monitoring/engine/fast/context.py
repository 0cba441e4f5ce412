"""What every step of one vectorised query shares: its grid, settings and annotations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitoring.engine.fast.values import Grid
from monitoring.engine.query import QueryOptions, info, warning

if TYPE_CHECKING:
    from monitoring.dsl.ir import Node


@dataclass(slots=True)
class Context:
    """The evaluation grid of the (sub)query being computed, settings, collected annotations."""

    grid: Grid
    options: QueryOptions = field(default_factory=QueryOptions)
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

    def warn(self, text: str, node: Node | None = None) -> None:
        """Record a warning once (Prometheus reports each distinct annotation once)."""
        rendered = warning(text, node, self.options)
        if rendered not in self.warnings:
            self.warnings.append(rendered)

    def info(self, text: str, node: Node | None = None) -> None:
        """Record an info annotation once."""
        rendered = info(text, node, self.options)
        if rendered not in self.infos:
            self.infos.append(rendered)
