"""Worked examples: compiled by the real compiler, linted, run by the real evaluator.

A page shows an example twice, in the DSL and in the seed's YAML. Both are
compiled here, must be free of errors and lint warnings, and must lower to the
same evaluation graph (condition, recovery condition, interval, ``for``...), so
the two forms on a page cannot disagree. The example then runs over
deterministic data (:class:`Timeline`, a seeded generator) through
:func:`monitoring.engine.evaluator.evaluate` and, for alerts, through the alert
state machine, and the figures are drawn from those results.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from monitoring.dsl import ast, ir
from monitoring.dsl.compiler import CompiledRule, compile_expression
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.loader import Workspace, load_source
from monitoring.dsl.render import render_text
from monitoring.dsl.source import SourceFile
from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, AlertState, RuleOutput
from monitoring.engine.evaluator import evaluate, evaluate_many
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import Labels, QueryResult, Series, drop_name, labels_of

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
START_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: every example's data starts here (fixed, for reproducible pages)."""


class ExampleError(Exception):
    """An example on a page does not compile, is not lint-clean, or its two forms differ."""


# ------------------------------------------------------------------ compiling


def _problems(diagnostics: Sequence[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity >= Severity.WARNING]


def compile_rules(name: str, text: str) -> list[CompiledRule]:
    """Compile one rule file held in memory; any error or warning is an :class:`ExampleError`.

    ``name`` picks the format as on disk (``*.rules``, ``alert_rules.yaml``).
    """
    from monitoring.lint.runner import compile_workspace

    ws = Workspace()
    load_source(ws, SourceFile(name, text))
    state = compile_workspace(ws)
    problems = _problems([*ws.diagnostics, *state.diagnostics])
    if problems:
        raise ExampleError("\n".join(render_text(d) for d in problems))
    return list(state.program.rules)


def lint(name: str, text: str) -> None:
    """Run ``monitoring lint`` over the file; any finding is an :class:`ExampleError`."""
    from monitoring.lint.runner import lint_paths

    with tempfile.TemporaryDirectory(prefix="condition-docs-") as folder:
        path = Path(folder) / name
        path.write_text(text, "utf-8")
        report = lint_paths([path])
        if report.diagnostics:
            raise ExampleError("\n".join(render_text(d) for d in report.diagnostics))


def _meaning(rule: CompiledRule) -> tuple[object, ...]:
    """What must agree between the DSL and the YAML form of one rule."""
    node = rule.rule
    assert isinstance(node, ast.AlertRule)
    spec = AlertRuleSpec.from_rule(rule)
    return (rule.name, rule.group, rule.interval_ms, rule.condition, rule.recover,
            spec.for_ms, spec.keep_firing_for_ms, dict(spec.labels),
            tuple(c.value for c in node.channels))


def compile_pair(dsl: str, yaml: str) -> list[CompiledRule]:
    """Compile and lint both forms of an example and check that they mean the same.

    Returns the DSL's rules, in file order.
    """
    rules = compile_rules("example.rules", dsl)
    seed = compile_rules("alert_rules.yaml", yaml)
    lint("example.rules", dsl)
    lint("alert_rules.yaml", yaml)
    if len(rules) != len(seed):
        raise ExampleError(f"the DSL form has {len(rules)} rules, the YAML form {len(seed)}")
    for a, b in zip(rules, seed, strict=True):
        if _meaning(a) != _meaning(b):
            raise ExampleError(f"rule {a.name}: the DSL and YAML forms differ:\n"
                               f"  DSL:  {_meaning(a)}\n  YAML: {_meaning(b)}")
    return rules


def expression(text: str) -> ir.Node:
    """Compile one expression (a query, not a rule); errors are an :class:`ExampleError`."""
    node, diagnostics = compile_expression(text)
    problems = _problems(diagnostics)
    if node is None or problems:
        raise ExampleError(f"{text}: " + "; ".join(d.message for d in problems))
    return node


# ------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where an example's data lies: samples every ``scrape_ms``, evaluations every ``step_ms``.

    The evaluation starts ``warmup_ms`` after the first sample, so that range
    functions have a full window from the first plotted step.
    """

    hours: float
    scrape_ms: int = 15_000
    step_ms: int = MINUTE_MS
    warmup_ms: int = 0

    @property
    def end_ms(self) -> int:
        """The last sample and the last evaluation."""
        return START_MS + self.warmup_ms + int(self.hours * HOUR_MS)

    def sample_times(self) -> TimeArray:
        """Times of the samples."""
        return np.arange(START_MS, self.end_ms + 1, self.scrape_ms, dtype=np.int64)

    def steps(self) -> TimeArray:
        """Evaluation times."""
        return np.arange(START_MS + self.warmup_ms, self.end_ms + 1, self.step_ms,
                         dtype=np.int64)

    def x(self, times: TimeArray) -> FloatArray:
        """Hours since the first evaluation (the figures' time axis)."""
        out: FloatArray = (times - (START_MS + self.warmup_ms)) / HOUR_MS
        return out

    def sample_hours(self) -> FloatArray:
        """Each sample's time in hours since the first evaluation (for generating data)."""
        return self.x(self.sample_times())


def rng(seed: int) -> np.random.Generator:
    """The seeded generator of one example."""
    return np.random.default_rng(seed)


def series(name: str, labels: Mapping[str, str], times: TimeArray, values: FloatArray) -> Series:
    """A series of generated values, rounded to 4 decimals.

    Rounding keeps tiny floating-point differences between machines (in ``sin``,
    say) from moving a plotted point.
    """
    return Series(labels_of({"__name__": name, **labels}), times, np.round(values, 4))


# ------------------------------------------------------------------ evaluation


@dataclass(frozen=True, slots=True)
class Grid:
    """Results laid out on the evaluation steps: one row per series, NaN where absent."""

    labels: list[Labels]
    values: FloatArray

    def row(self, **labels: str) -> FloatArray:
        """The row whose labels include ``labels``."""
        want = set(labels.items())
        for i, have in enumerate(self.labels):
            if want <= set(have):
                out: FloatArray = self.values[i]
                return out
        raise ExampleError(f"no series with {labels} among {self.labels}")

    @property
    def present(self) -> BoolArray:
        """Where a value exists."""
        out: BoolArray = ~np.isnan(self.values)
        return out


def on_grid(result: QueryResult, steps: TimeArray) -> Grid:
    """A range query's result as a :class:`Grid` (labels without the metric name)."""
    labels = [drop_name(s.labels) for s in result.series]
    values = np.full((len(labels), len(steps)), np.nan)
    for i, s in enumerate(result.series):
        values[i, np.searchsorted(steps, s.ts)] = s.values
    return Grid(labels, values)


def run(node: ir.Node, source: MemorySource, timeline: Timeline) -> Grid:
    """Range-evaluate ``node`` at the timeline's steps; an evaluation error stops the page."""
    steps = timeline.steps()
    result = evaluate(node, source, int(steps[0]), int(steps[-1]), timeline.step_ms)
    if result.warnings:
        raise ExampleError(f"{ir.describe(node)}: {'; '.join(result.warnings)}")
    return on_grid(result, steps)


def instant(node: ir.Node, source: MemorySource, at_ms: int) -> float:
    """The value of a one-series expression at one time (NaN when it has none)."""
    result = evaluate(node, source, at_ms, at_ms, MINUTE_MS, instant=True)
    if result.warnings or len(result.series) > 1:
        raise ExampleError(f"{ir.describe(node)}: expected at most one series; "
                           f"{'; '.join(result.warnings)}")
    return float(result.series[0].values[0]) if result.series else float("nan")


def alert_states(rule: CompiledRule, source: MemorySource, timeline: Timeline,
                 **overrides: object) -> tuple[list[Labels], npt.NDArray[np.int8]]:
    """The rule's alerts and their state at every step, from the alert state machine.

    ``overrides`` replace fields of the rule's :class:`AlertRuleSpec`.
    """
    from monitoring.dryrun.values import value_of

    steps = timeline.steps()
    value = value_of(rule.condition).node  # its series are the data a recovery needs
    results = evaluate_many([*rule.roots, value], source, int(steps[0]), int(steps[-1]),
                            timeline.step_ms)
    for result in results.values():
        if result.warnings:
            raise ExampleError(f"{rule.name}: {'; '.join(result.warnings)}")
    recover = results[rule.recover] if rule.recover is not None else None
    out = RuleOutput.from_results(steps, results[rule.condition], recover,
                                  results[value] if value != rule.condition else None)
    machine = AlertMachine(AlertRuleSpec.from_rule(rule, **overrides), record_transitions=False)
    adv = machine.advance(out)
    return adv.alert_labels, adv.states


def intervals(mask: BoolArray, x: FloatArray, step_hours: float) -> list[tuple[float, float]]:
    """The runs of True in ``mask`` as ``(start, end)`` in the units of ``x``.

    A run ends one step after its last True step (an alert firing at a step
    fires until the next evaluation).
    """
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)
    return [(float(x[a]), float(x[b - 1]) + step_hours) for a, b in zip(starts, ends, strict=True)]


def firing(states: npt.NDArray[np.int8]) -> BoolArray:
    """Where any alert of the rule fires."""
    out: BoolArray = (states == np.int8(AlertState.FIRING)).any(axis=0)
    return out
