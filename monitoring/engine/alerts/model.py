"""The alert state machine's data types: rule spec, per-step input, alerts, results.

Kept free of logic so that the test runner, the dry-run and (later) the live
engine can all build and read them without importing the machine itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from monitoring.dsl import ast
from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.model import Labels, QueryResult

if TYPE_CHECKING:
    from monitoring.dsl.compiler import CompiledRule

BoolMatrix = npt.NDArray[np.bool_]
FloatMatrix = npt.NDArray[np.float64]

NO_TIME = np.iinfo(np.int64).min
"""Sentinel for "no such time" in the machine's int64 time arrays."""

RESOLVED_RETENTION_MS = 15 * 60_000
"""How long a resolved alert is still reported (Prometheus's ``resolvedRetention``)."""

NODATA_LABEL = ("nodata", "true")
"""The label that marks the rule-level alert of the ``fire``/``nodata`` policies."""


class AlertState(enum.IntEnum):
    """The state of one alert at one evaluation (INACTIVE also means "resolved")."""

    INACTIVE = 0
    PENDING = 1
    FIRING = 2
    NODATA = 3

    @property
    def label(self) -> str:
        """Lower-case name, as Prometheus prints states (``alertstate`` label)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class AlertRuleSpec:
    """Everything the machine needs to know about one alerting rule.

    ``labels`` are the rule's label templates with the group's labels already
    merged in (rule labels override group labels, as in Prometheus 3); the
    DSL's ``severity`` field becomes a ``severity`` label unless a label of that
    name is set explicitly. ``no_data`` defaults to ``resolve``, which is what
    Prometheus does when a series disappears.
    """

    name: str
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    annotations: tuple[tuple[str, str], ...] = ()
    no_data: NoDataPolicy = NoDataPolicy.RESOLVE
    flap_changes: int = 4
    flap_window: int = 20
    external_labels: tuple[tuple[str, str], ...] = ()
    external_url: str = ""

    def __post_init__(self) -> None:
        if self.for_ms < 0 or self.keep_firing_for_ms < 0:
            raise ValueError("for and keep_firing_for must not be negative")
        if self.flap_window < 1 or self.flap_changes < 1:
            raise ValueError("flap_window and flap_changes must be at least 1")

    @classmethod
    def from_rule(cls, rule: CompiledRule, **overrides: Any) -> AlertRuleSpec:
        """The spec of a compiled alerting rule; ``overrides`` replace any field."""
        node = rule.rule
        if not isinstance(node, ast.AlertRule):
            raise ValueError(f"{rule.qualified_name} is a recording rule, not an alert")
        labels: dict[str, str] = {p.key: p.value for p in rule.group_ast.labels}
        if node.severity is not None:
            labels["severity"] = node.severity.value
        labels.update((p.key, p.value) for p in node.labels)
        spec = cls(
            name=rule.name,
            for_ms=node.for_.ms if node.for_ is not None else 0,
            keep_firing_for_ms=node.keep_firing_for.ms if node.keep_firing_for else 0,
            labels=tuple(labels.items()),
            annotations=tuple((p.key, p.value) for p in node.annotations),
            no_data=node.no_data if node.no_data is not None else NoDataPolicy.RESOLVE,
        )
        return replace(spec, **overrides) if overrides else spec


@dataclass(frozen=True, slots=True)
class RuleOutput:
    """One rule's query results at ``T`` evaluation times for ``S`` result series.

    ``fire[s, t]``: series ``s`` is in the ``when`` result at ``times_ms[t]``;
    ``value``: its value there (NaN where absent), which templates see as
    ``$value``; ``hold[s, t]``: with a recovery condition, the series has data and
    ``recover_when`` does not hold, so an active alert stays active; ``no_data[t]``:
    the rule's query returned nothing at all at that step.
    """

    times_ms: npt.NDArray[np.int64]
    labels: list[Labels]
    fire: BoolMatrix
    value: FloatMatrix
    hold: BoolMatrix | None = None
    no_data: BoolMatrix | None = None

    def __post_init__(self) -> None:
        t = len(self.times_ms)
        shape = (len(self.labels), t)
        if self.fire.shape != shape or self.value.shape != shape:
            raise ValueError(f"fire and value must have shape {shape}")
        if self.hold is not None and self.hold.shape != shape:
            raise ValueError(f"hold must have shape {shape}")
        if self.no_data is not None and self.no_data.shape != (t,):
            raise ValueError(f"no_data must have shape ({t},)")
        if t > 1 and bool(np.any(np.diff(self.times_ms) <= 0)):
            raise ValueError("times_ms must be strictly increasing")

    @classmethod
    def from_results(cls, times_ms: npt.ArrayLike, when: QueryResult,
                     recover: QueryResult | None = None,
                     value_of: QueryResult | None = None,
                     known: Callable[[Labels], bool] | None = None) -> RuleOutput:
        """Build the matrices from range-evaluation results on the grid ``times_ms``.

        ``value_of`` is the data the condition looks at (e.g. the left side of a
        top-level comparison); a step where it has no series is a no-data step.
        Without it, ``when`` stands in and no step is ever a no-data step.
        ``known``: see :func:`~monitoring.engine.alerts.results.rule_output`.
        """
        from monitoring.engine.alerts.results import rule_output

        return rule_output(times_ms, when, recover, value_of, known)

    def slice(self, start: int, stop: int) -> RuleOutput:
        """The columns ``[start, stop)`` (views, no copy)."""
        return RuleOutput(
            self.times_ms[start:stop], self.labels, self.fire[:, start:stop],
            self.value[:, start:stop],
            None if self.hold is None else self.hold[:, start:stop],
            None if self.no_data is None else self.no_data[start:stop])


@dataclass(slots=True)
class Alert:
    """One alert as it stands after the last evaluation."""

    labels: Labels
    annotations: dict[str, str]
    state: AlertState
    active_at_ms: int
    fired_at_ms: int | None
    resolved_at_ms: int | None
    last_value: float
    flapping: bool


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changing state at an evaluation."""

    alert: Labels
    time_ms: int
    old: AlertState
    new: AlertState
    value: float


@dataclass(slots=True)
class Advance:
    """What one :meth:`AlertMachine.advance` call produced, one row per alert identity."""

    alert_labels: list[Labels]
    states: npt.NDArray[np.int8]
    values: FloatMatrix
    flapping: BoolMatrix
    transitions: list[Transition] = field(default_factory=list)
    errors: list[tuple[int, str]] = field(default_factory=list)
