"""What every evaluator takes and gives: the query contract.

Two evaluators implement it: the vectorised one users run
(:mod:`monitoring.engine.evaluator`) and the plain step-by-step one tests
cross-check it against (:mod:`monitoring.engine.reference`). Both are called
the same way::

    evaluate(node, source, start_ms, end_ms, step_ms, options, instant=False)

``instant=True`` is an instant query at ``start_ms`` (``end_ms == start_ms``):
its result kind is ``vector``, ``scalar``, ``string`` or ``matrix`` (a range
selector or subquery, with raw sample times). A range query (``instant=False``)
returns a ``matrix`` with one point per step where a series has a value; like
Prometheus's ``/api/v1/query_range``, a scalar expression gives a ``matrix``
with one series without labels. Range results are sorted by label set.

Annotations (warnings and infos) are rendered with Prometheus's wording,
``PromQL warning: <text> (<line>:<col>)``, the position being that of the
sub-expression that caused them when :attr:`QueryOptions.positions` knows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from monitoring.engine.model import DEFAULT_LOOKBACK_MS, QueryResult, SeriesSource

if TYPE_CHECKING:
    from monitoring.dsl.ir import Node

DEFAULT_SUBQUERY_STEP_MS = 60_000
"""Step of a subquery written without one (``x[1h:]``) when no group interval applies."""


@dataclass(frozen=True, slots=True)
class QueryOptions:
    """Engine settings of one query."""

    lookback_ms: int = DEFAULT_LOOKBACK_MS
    default_subquery_step_ms: int = DEFAULT_SUBQUERY_STEP_MS
    positions: Mapping[Node, tuple[int, int]] = field(default_factory=dict)
    """(line, column), 1-based, of the source text each IR node came from (first occurrence)."""
    max_samples: int | None = None
    """Fail a query that would hold more samples than this at once (None: no limit)."""


class Evaluator(Protocol):
    """The signature both evaluators share."""

    def __call__(self, node: Node, source: SeriesSource, start_ms: int, end_ms: int,
                 step_ms: int, options: QueryOptions | None = None, *,
                 instant: bool = False) -> QueryResult:
        """Evaluate ``node`` at every step of ``[start_ms, end_ms]``."""
        ...


def annotation(level: str, text: str, node: Node | None, options: QueryOptions) -> str:
    """``PromQL warning: text (line:col)``: one annotation, rendered as Prometheus does."""
    rendered = f"PromQL {level}: {text}"
    if node is not None:
        pos = options.positions.get(node)
        if pos is not None:
            rendered += f" ({pos[0]}:{pos[1]})"
    return rendered


def warning(text: str, node: Node | None, options: QueryOptions) -> str:
    """A warning annotation."""
    return annotation("warning", text, node, options)


def info(text: str, node: Node | None, options: QueryOptions) -> str:
    """An info annotation."""
    return annotation("info", text, node, options)
