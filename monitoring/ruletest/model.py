"""The parsed form of a promtool rule unit-test file.

Every item keeps the :class:`~monitoring.dsl.source.Span` it came from, so a
failure or a bad value can be reported at ``file:line:col``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitoring.dsl.source import Span
from monitoring.engine.model import Labels
from monitoring.ruletest.histograms import Histogram

DEFAULT_EVALUATION_INTERVAL_MS = 60_000
"""promtool's default ``evaluation_interval``."""


@dataclass(slots=True)
class InputSeries:
    """One ``input_series`` item: a label set and its expanded values, one per interval."""

    labels: Labels
    values: list[float | Histogram | None]
    span: Span


@dataclass(slots=True)
class ExpAlert:
    """One ``exp_alerts`` item: labels (without ``alertname``) and annotations."""

    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(slots=True)
class AlertTest:
    """One ``alert_rule_test`` item."""

    eval_time_ms: int
    alertname: str
    exp_alerts: list[ExpAlert]
    span: Span


@dataclass(slots=True)
class ExpSample:
    """One ``exp_samples`` item: a float value, or a native histogram (its ``{{...}}`` text)."""

    labels: Labels
    value: float
    histogram: str | None = None


@dataclass(slots=True)
class ExprTest:
    """One ``promql_expr_test`` item."""

    expr: str
    eval_time_ms: int
    exp_samples: list[ExpSample]
    span: Span
    expr_span: Span


@dataclass(slots=True)
class TestGroup:
    """One item under ``tests``: its own store, inputs and expectations."""

    __test__ = False  # not a pytest class

    index: int
    name: str
    interval_ms: int
    start_ms: int
    input_series: list[InputSeries] = field(default_factory=list)
    alert_tests: list[AlertTest] = field(default_factory=list)
    expr_tests: list[ExprTest] = field(default_factory=list)
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    span: Span | None = None

    @property
    def display_name(self) -> str:
        """The name, or ``unnamed#N`` as promtool calls a group without one."""
        return self.name or f"unnamed#{self.index}"

    def max_eval_time_ms(self) -> int:
        """The latest ``eval_time`` of the group (0 when there is none)."""
        times = [t.eval_time_ms for t in self.alert_tests]
        times += [t.eval_time_ms for t in self.expr_tests]
        return max(times, default=0)


@dataclass(slots=True)
class TestFile:
    """A whole test file."""

    __test__ = False

    path: str
    rule_files: list[str]
    rule_file_spans: list[Span]
    evaluation_interval_ms: int = DEFAULT_EVALUATION_INTERVAL_MS
    group_eval_order: list[str] = field(default_factory=list)
    fuzzy_compare: bool = False
    groups: list[TestGroup] = field(default_factory=list)
