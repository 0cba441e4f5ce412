"""One live evaluation of one rule group: the dry-run's evaluator and state machine, one column.

A live group evaluation is the dry-run's chunk with a single step (see
:mod:`monitoring.dryrun.engine`): the group's expressions go through one
:func:`~monitoring.engine.evaluator.evaluate_many` call per recording level
and one for all of its alerting rules (shared reads and sub-expressions), and
each alerting rule's result becomes a one-column
:class:`~monitoring.engine.alerts.RuleOutput` for that rule's
:class:`~monitoring.engine.alerts.AlertMachine`. Same evaluator, same machine,
same evaluation times (Prometheus's group offset), so the live engine and the
dry-run agree on the same history (tested).

Recording rules are evaluated first, in dependency order, and their samples
(with staleness markers for series that disappeared, as Prometheus writes
them) are written to the store before the group's alerting rules run, so
alerting rules of this group and of every later group read them from the
store as they would in Prometheus. Like the dry-run, an alerting rule sees the
recording rules of its own group at this evaluation even where Prometheus's
rule order would give it the previous one.

:func:`compute` is the part that touches the store and runs on the store
thread (:class:`~monitoring.live.store_access.StoreAccess`), reading through
the thread's :class:`~monitoring.live.read_cache.ReadCache` so that groups
evaluated one after the other share what they read; :func:`advance` feeds one
rule's machine and runs on the event loop. One failing expression
fails only its rule: its error is kept in the rule's :class:`RuleStatus`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from monitoring.dryrun.engine import EVAL_FAILED
from monitoring.dryrun.recording import DUPLICATE, record_labels
from monitoring.dryrun.ruleset import RuleSet, recording_levels, unsupported
from monitoring.dryrun.schedule import group_phase_ms
from monitoring.dryrun.values import ValueSpec, value_of
from monitoring.dsl import ir
from monitoring.dsl.ast import AlertRule
from monitoring.dsl.compiler import CompiledRule
from monitoring.engine.alerts import Advance, AlertMachine, AlertRuleSpec, RuleOutput
from monitoring.engine.evaluator import evaluate_many
from monitoring.engine.model import (
    STALE_NAN,
    EvalError,
    Labels,
    QueryResult,
    Series,
    SeriesSource,
)
from monitoring.engine.query import QueryOptions
from monitoring.engine.store import Store
from monitoring.live.alert_state import rule_key
from monitoring.live.read_cache import ReadCache
from monitoring.notify.model import Alert


@dataclass(slots=True)
class RuleStatus:
    """A rule's health as the last evaluation left it (``/api/v1/rules``, ``monitoring serve``).

    ``health`` is ``unknown`` before the first evaluation, ``ok``, or ``err``
    with ``last_error``. ``duration_s`` is the wall time of the group
    evaluation that included the rule (rules of a group are evaluated together).
    """

    name: str
    group: str
    file: str
    kind: str  # alert | record
    query: str
    interval_ms: int
    health: str = "unknown"
    last_error: str | None = None
    last_eval_ms: int | None = None
    duration_s: float = 0.0
    pending: int = 0
    firing: int = 0
    nodata: int = 0
    series: int = 0  # recording rules: series written by the last evaluation

    @property
    def active(self) -> int:
        """Pending, firing and no-data alerts."""
        return self.pending + self.firing + self.nodata

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "group": self.group, "file": self.file, "kind": self.kind,
                "query": self.query, "interval_ms": self.interval_ms, "health": self.health,
                "last_error": self.last_error, "last_eval_ms": self.last_eval_ms,
                "duration_s": self.duration_s, "active": self.active, "pending": self.pending,
                "firing": self.firing, "nodata": self.nodata, "series": self.series}


@dataclass(slots=True)
class LiveRule:
    """One rule being evaluated live, and what it carries between evaluations."""

    rule: CompiledRule
    key: str
    signature: str
    status: RuleStatus
    value: ValueSpec
    spec: AlertRuleSpec | None = None
    machine: AlertMachine | None = None
    broken: str | None = None  # why the rule can never be evaluated (cycle, start()...)
    present: set[Labels] = field(default_factory=set)  # recorded series at the last evaluation
    sent: dict[Labels, Alert] = field(default_factory=dict)  # alerts told as firing last time
    saved: tuple[object, ...] | None = None  # the machine's state key when last saved

    def nodes(self) -> list[ir.Node]:
        return [*self.rule.roots, self.value.node]

    @property
    def channels(self) -> tuple[str, ...]:
        node = self.rule.rule
        return tuple(c.value for c in node.channels) if isinstance(node, AlertRule) else ()

    @property
    def escalation(self) -> str | None:
        node = self.rule.rule
        if isinstance(node, AlertRule) and node.escalation is not None:
            return node.escalation.value
        return None

    @property
    def cooldown_ms(self) -> int:
        node = self.rule.rule
        if isinstance(node, AlertRule) and node.cooldown is not None:
            return node.cooldown.ms
        return 0


@dataclass(slots=True)
class LiveGroup:
    """A rule group: its evaluation grid, its rules in evaluation order, its own counters."""

    key: str
    name: str
    file: str
    interval_ms: int
    phase_ms: int
    query_offset_ms: int
    rules: list[LiveRule]
    levels: list[list[LiveRule]]  # recording rules, each level reads only earlier ones
    alerting: list[LiveRule]
    evaluations: int = 0
    missed: int = 0
    failures: int = 0
    last_eval_ms: int | None = None
    last_duration_s: float = 0.0
    last_lag_ms: int = 0

    @property
    def records(self) -> bool:
        return bool(self.levels)

    def next_tick(self, at_or_after_ms: int) -> int:
        """The first evaluation time ``phase + k * interval`` at or after the given time."""
        k = -((self.phase_ms - at_or_after_ms) // self.interval_ms)
        return self.phase_ms + k * self.interval_ms

    def last_tick(self, at_or_before_ms: int) -> int:
        """The last evaluation time at or before the given time."""
        return self.phase_ms + (at_or_before_ms - self.phase_ms) // self.interval_ms \
            * self.interval_ms

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "file": self.file,
                "interval_ms": self.interval_ms, "phase_ms": self.phase_ms,
                "query_offset_ms": self.query_offset_ms, "rules": len(self.rules),
                "evaluations": self.evaluations, "missed": self.missed,
                "failures": self.failures, "last_eval_ms": self.last_eval_ms,
                "last_duration_s": self.last_duration_s, "last_lag_ms": self.last_lag_ms}


def group_key(file: str, name: str) -> str:
    """A group's identity (Prometheus's ``rule_group`` label: ``file;name``)."""
    return f"{file};{name}"


def signature(rule: CompiledRule, spec: AlertRuleSpec | None) -> str:
    """What a saved state belongs to: the compiled rule, its alert spec, its grid."""
    offset = rule.group_ast.query_offset
    text = repr((rule.kind, rule.interval_ms, offset.ms if offset is not None else 0,
                 rule.condition, rule.recover, spec if spec is not None
                 else record_labels(rule, ())))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_groups(rule_set: RuleSet) -> dict[str, LiveGroup]:
    """The rule set's groups in file order, each with its rules planned for evaluation."""
    by_key: dict[str, list[CompiledRule]] = {}
    for rule in rule_set.rules:
        by_key.setdefault(group_key(rule.file, rule.group), []).append(rule)
    groups: dict[str, LiveGroup] = {}
    for key, rules in by_key.items():
        first = rules[0]
        live = [_live_rule(r) for r in rules]
        records = [r for r in live if r.rule.kind == "record" and r.broken is None]
        levels, cycle = recording_levels([r.rule for r in records])
        by_id = {id(r.rule): r for r in records}
        for rule in cycle:
            by_id[id(rule)].broken = "recording rules read each other in a cycle"
        offset = first.group_ast.query_offset
        groups[key] = LiveGroup(
            key, first.group, first.file, first.interval_ms,
            group_phase_ms(first.group, first.file, first.interval_ms),
            offset.ms if offset is not None else 0, live,
            [[by_id[id(r)] for r in level] for level in levels],
            [r for r in live if r.rule.kind == "alert"])
    return groups


def _live_rule(rule: CompiledRule) -> LiveRule:
    spec = AlertRuleSpec.from_rule(rule) if rule.kind == "alert" else None
    ast_rule = rule.rule
    from monitoring.dsl.printer import format_expr

    query = format_expr(ast_rule.expr) if ast_rule.expr is not None else \
        ir.describe(rule.condition)
    status = RuleStatus(rule.name, rule.group, rule.file, rule.kind, query, rule.interval_ms)
    live = LiveRule(rule, rule_key(rule.file, rule.group, rule.name), signature(rule, spec),
                    status, value_of(rule.condition), spec)
    live.broken = unsupported(rule)
    if spec is not None:
        live.machine = AlertMachine(spec)
    return live


# ------------------------------------------------------------------ store thread


@dataclass(slots=True)
class Computed:
    """What :func:`compute` found: alerting results, recorded series, errors per rule key."""

    results: dict[ir.Node, QueryResult] = field(default_factory=dict)
    recorded: dict[str, set[Labels]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    written: int = 0


def compute(store: Store, group: LiveGroup, at_ms: int, options: QueryOptions,
            reads: ReadCache | None = None) -> Computed:
    """Evaluate the group's expressions at ``at_ms``; write its recording rules' samples.

    Runs on the store thread. Reads nothing of the machines; recorded series
    sets of the previous evaluation (``LiveRule.present``) are read to write
    staleness markers, and the new sets are returned, not stored. With
    ``reads`` (the store thread's cache over ``store``), selections go through
    it, and it is told of the recorded samples written.
    """
    source: Store | ReadCache = store if reads is None else reads
    out = Computed()
    query_ms = at_ms - group.query_offset_ms
    for level in group.levels:
        live = [r for r in level if r.broken is None]
        if not live:
            continue
        nodes = list(dict.fromkeys(r.rule.condition for r in live))
        results = evaluate_isolated(live, source, query_ms, group.interval_ms, options, nodes)
        samples: list[tuple[Labels, int, float]] = []
        for r in live:
            found = _record(r, results[r.rule.condition], query_ms, samples)
            if isinstance(found, str):
                out.errors[r.key] = found
            else:
                out.recorded[r.key] = found
        if samples:
            try:
                out.written += store.append(samples)
            finally:
                if reads is not None:
                    reads.wrote()
    alerting = [r for r in group.alerting if r.broken is None]
    if alerting:
        nodes = list(dict.fromkeys(n for r in alerting for n in r.nodes()))
        out.results = evaluate_isolated(alerting, source, query_ms, group.interval_ms, options,
                                        nodes)
    return out


def _record(r: LiveRule, res: QueryResult, query_ms: int,
            samples: list[tuple[Labels, int, float]]) -> set[Labels] | str:
    """Add one recording rule's samples (and staleness markers); its series, or an error."""
    error = failure(res)
    if error is not None:
        return error
    values: dict[Labels, float] = {}
    for s in res.series:
        if not len(s.ts):
            continue
        labels = record_labels(r.rule, s.labels)
        if labels in values:
            return DUPLICATE
        values[labels] = float(s.values[-1])
    samples.extend((labels, query_ms, v) for labels, v in values.items())
    samples.extend((labels, query_ms, STALE_NAN) for labels in r.present - values.keys())
    return set(values)


def evaluate_isolated(rules: Sequence[LiveRule], store: SeriesSource, query_ms: int,
                      step_ms: int,
                      options: QueryOptions, nodes: Sequence[ir.Node]
                      ) -> dict[ir.Node, QueryResult]:
    """``evaluate_many`` at one time; if the call itself fails, rule by rule, so one fails."""
    try:
        return evaluate_many(nodes, store, query_ms, query_ms, step_ms, options)
    except Exception as exc:  # one failing rule must not stop the others
        if len(rules) == 1:
            text = str(exc) if isinstance(exc, EvalError | ValueError) else \
                f"{type(exc).__name__}: {exc}"
            times = np.array([query_ms], dtype=np.int64)
            return {n: QueryResult("matrix", times, warnings=[f"{EVAL_FAILED}{text}"])
                    for n in nodes}
        out: dict[ir.Node, QueryResult] = {}
        for r in rules:
            mine = r.nodes() if r.rule.kind == "alert" else [r.rule.condition]
            out.update(evaluate_isolated([r], store, query_ms, step_ms, options, mine))
        return out


def failure(res: QueryResult | None) -> str | None:
    """The evaluation error a result carries, if any."""
    if res is None:
        return None
    for w in res.warnings:
        if w.startswith(EVAL_FAILED):
            return w.removeprefix(EVAL_FAILED)
    return None


# ------------------------------------------------------------------ event loop


def advance(r: LiveRule, results: dict[ir.Node, QueryResult], at_ms: int,
            query_offset_ms: int) -> tuple[Advance | None, str | None]:
    """Feed one alerting rule's results at ``at_ms`` to its machine.

    Returns the machine's output (None when the rule could not be evaluated)
    and the evaluation error, if any.
    """
    assert r.machine is not None
    when = results.get(r.rule.condition)
    recover = results.get(r.rule.recover) if r.rule.recover is not None else None
    value = results.get(r.value.node)
    if when is None or value is None:
        return None, "the rule was not evaluated"
    for res in (when, recover, value):
        error = failure(res)
        if error is not None:
            return None, error
    distinct = r.value.node != r.rule.condition
    times = np.array([at_ms], dtype=np.int64)
    if recover is None and r.machine.idle and not _has_points(when):
        try:  # nothing fires and nothing is remembered: nothing to map
            return r.machine.advance_idle(times), None
        except ValueError as exc:  # a time not after the last
            return None, str(exc)
    try:
        out = RuleOutput.from_results(
            times, _at_eval_time(when, query_offset_ms), _opt_at(recover, query_offset_ms),
            _at_eval_time(value, query_offset_ms) if distinct else None,
            r.machine.has_alert_for)
        adv = r.machine.advance(out, idle_rows=False)  # transitions and alerts only
    except ValueError as exc:  # a condition returning a scalar; a time not after the last
        return None, str(exc)
    return adv, adv.errors[0][1] if adv.errors else None


def _has_points(res: QueryResult) -> bool:
    """Whether a condition's result has a point (a scalar result counts: it is an error)."""
    if res.kind not in ("vector", "matrix"):
        return True
    if res.grid is not None:
        return bool(res.grid.present.any())
    return any(len(s.ts) for s in res.series)


def _at_eval_time(res: QueryResult, shift_ms: int) -> QueryResult:
    """A result at query time moved to the evaluation time (``query_offset`` later)."""
    if not shift_ms:
        return res
    return QueryResult(res.kind, res.steps + shift_ms,
                       [Series(s.labels, s.ts + shift_ms, s.values) for s in res.series],
                       res.string, res.warnings, res.infos, res.grid)


def _opt_at(res: QueryResult | None, shift_ms: int) -> QueryResult | None:
    return None if res is None else _at_eval_time(res, shift_ms)


def finite(value: float) -> float | None:
    """A value for JSON and notifications: None for NaN."""
    return None if math.isnan(value) else value
