"""The dry-run engine: evaluate whole rule sets over stored history, chunk by chunk.

Per rule group, the evaluation times are Prometheus's (:mod:`.schedule`). All
rules sharing an evaluation grid (interval, phase, query offset, data source)
are evaluated together with :func:`~monitoring.engine.evaluator.evaluate_many`
one time chunk at a time (``chunk_steps`` steps; the evaluator reads only the
data that chunk needs, back to its longest range and lookback), so memory
stays bounded however long the range is. Each chunk's result of an alerting
rule becomes a :class:`~monitoring.engine.alerts.RuleOutput` fed to that rule's
:class:`~monitoring.engine.alerts.AlertMachine`, whose state carries from one
chunk to the next: the outcome is the same as one long call (tested).

Recording rules run first, in dependency order, over the whole range; their
results (with staleness markers where a series disappears, as Prometheus
writes them) go to an in-memory overlay that later rules read. Prometheus
evaluates groups concurrently and rules of a group in order, so a rule reading
a recording rule of a *later* position (same group) or of a group evaluated
at the same instant sees the previous evaluation's value there; here it sees
the value of the same evaluation time. docs/dryrun.md lists this and the other
differences.

With two rule sets (``--compare``), rules of both are planned into the same
``evaluate_many`` calls when they read the same data (the recording rules of
both sets are identical), so expressions the two sets share are computed once.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from monitoring.dryrun.annotations import summary_renderer
from monitoring.dryrun.collect import AlertCollector, PlotCollector
from monitoring.dryrun.compare import compare_reports
from monitoring.dryrun.notify import notifications, rule_channels
from monitoring.dryrun.overlay import OverlaySource
from monitoring.dryrun.recording import Recording, recording_signature
from monitoring.dryrun.report import (
    CompareReport,
    DryRunReport,
    GroupInfo,
    PlotSeries,
    RulePlot,
    RuleReport,
    RunInfo,
)
from monitoring.dryrun.ruleset import (
    RuleSet,
    load_rule_set,
    recording_levels,
    selectors,
    unsupported,
    walk,
)
from monitoring.dryrun.schedule import Schedule, group_phase_ms
from monitoring.dryrun.values import ValueSpec, nan_extreme, value_of
from monitoring.dsl import ir
from monitoring.dsl.ast import AlertRule
from monitoring.dsl.compiler import CompiledRule
from monitoring.dsl.printer import format_expr
from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, RuleOutput
from monitoring.engine.evaluator import evaluate_many
from monitoring.engine.model import (
    METRIC_NAME,
    EvalError,
    Labels,
    QueryResult,
    Series,
    SeriesSource,
    format_labels,
)
from monitoring.engine.query import QueryOptions
from monitoring.gcpause import paused_gc

DEFAULT_CHUNK_STEPS = 1440
"""Evaluation steps per chunk: a day at a 1-minute interval."""

EVAL_FAILED = "evaluation failed: "
MAX_ERRORS = 20
"""Distinct evaluation errors kept per rule (the count of further ones is not kept)."""

Progress = Callable[[int, int], None]
"""Called with (chunks done, chunks in total) after each chunk of each grid."""


class DryRunError(Exception):
    """Input that stops a dry-run (no store, empty range...): the message is for the user."""


@dataclass(frozen=True, slots=True)
class DryRunOptions:
    """How a dry-run evaluates and what its report keeps."""

    chunk_steps: int = DEFAULT_CHUNK_STEPS
    plot_points: int = 1000  # points per plotted series at most
    plot_fired: int = 20  # plotted series that fired, at most
    plot_others: int = 3  # plus this many that did not (most alarming first)
    query: QueryOptions = field(default_factory=QueryOptions)


# ------------------------------------------------------------------ entry points


def open_store(db: str) -> SeriesSource:
    """The store, read-only (a dry-run never writes), or :class:`DryRunError`."""
    from monitoring.engine.store import Store, StoreError

    try:
        store = Store(db, read_only=True, memory_limit=STORE_CACHE_LIMIT)
    except StoreError as exc:
        raise DryRunError(str(exc)) from None
    return store


STORE_CACHE_LIMIT = "256MB"
"""DuckDB memory limit of the dry-run's store connection.

A dry-run reads each chunk's data once; DuckDB's buffer cache would otherwise
keep what it read (about 100 MB per day of 1,000 series at 15 s) up to 80 % of
the machine's memory, for no benefit to a single pass.
"""


def resolve_range(source: SeriesSource, start_ms: int | None, end_ms: int | None
                  ) -> tuple[int, int]:
    """The range to evaluate: the given bounds, or the store's first/last sample."""
    span = getattr(source, "time_range", lambda: None)()
    if span is None:
        raise DryRunError("the store holds no samples: nothing to evaluate")
    lo = span[0] if start_ms is None else start_ms
    hi = span[1] if end_ms is None else end_ms
    if hi < lo:
        raise DryRunError("the range is empty: --to is before --from")
    if hi < span[0] or lo > span[1]:
        raise DryRunError(
            f"no data in the range {_iso(lo)} .. {_iso(hi)}: the store holds samples from "
            f"{_iso(span[0])} to {_iso(span[1])}")
    return lo, hi


def run_dry_run(paths: Sequence[str], db: str, start_ms: int | None = None,
                end_ms: int | None = None, options: DryRunOptions | None = None,
                progress: Progress | None = None) -> DryRunReport:
    """Load, compile and dry-run ``paths`` over the store ``db`` (library entry point)."""
    rule_set = load_rule_set(paths)
    if not rule_set.rules:
        raise DryRunError(f"no rules found in {', '.join(paths)}")
    source = open_store(db)
    try:
        lo, hi = resolve_range(source, start_ms, end_ms)
        return evaluate_rule_sets([rule_set], source, lo, hi, options, progress,
                                  store_name=db)[0]
    finally:
        getattr(source, "close", lambda: None)()


def run_compare(old_paths: Sequence[str], paths: Sequence[str], db: str,
                start_ms: int | None = None, end_ms: int | None = None,
                options: DryRunOptions | None = None,
                progress: Progress | None = None) -> CompareReport:
    """Dry-run the old and the new rule set on the same history and compare them."""
    old_set = load_rule_set(old_paths)
    new_set = load_rule_set(paths)
    source = open_store(db)
    try:
        lo, hi = resolve_range(source, start_ms, end_ms)
        engine = Engine([new_set, old_set], source, lo, hi, options or DryRunOptions(),
                        progress, store_name=db)
        new, old = engine.run()
        return compare_reports(old, new, engine.shared_nodes)
    finally:
        getattr(source, "close", lambda: None)()


def evaluate_rule_sets(sets: Sequence[RuleSet], source: SeriesSource, start_ms: int,
                       end_ms: int, options: DryRunOptions | None = None,
                       progress: Progress | None = None, store_name: str = ""
                       ) -> list[DryRunReport]:
    """Dry-run compiled rule sets over ``source`` (the first set's groups set the grids)."""
    return Engine(sets, source, start_ms, end_ms, options or DryRunOptions(), progress,
                  store_name).run()


# ------------------------------------------------------------------ the engine


GridKey = tuple[int, int, int, int]  # interval, phase, query offset, overlay index


@dataclass(slots=True)
class _Unit:
    """One rule of one rule set being evaluated."""

    set_index: int
    rule: CompiledRule
    schedule: Schedule
    overlay: int
    report: RuleReport
    value: ValueSpec
    machine: AlertMachine | None = None
    collector: AlertCollector | None = None
    plot: PlotCollector | None = None
    had_data: bool = False
    failed: bool = False

    @property
    def key(self) -> GridKey:
        s = self.schedule
        return (s.interval_ms, s.phase_ms, s.query_offset_ms, self.overlay)

    def nodes(self) -> list[ir.Node]:
        return [*self.rule.roots, self.value.node]


class Engine:
    """One dry-run of one or more rule sets over the same source and range."""

    def __init__(self, sets: Sequence[RuleSet], source: SeriesSource, start_ms: int,
                 end_ms: int, options: DryRunOptions, progress: Progress | None = None,
                 store_name: str = "") -> None:
        self.sets = list(sets)
        self.source = source
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.options = options
        self.progress = progress
        self.store_name = store_name
        self.shared_nodes = 0
        self.reports = [DryRunReport(RunInfo(rs.paths, store_name, start_ms, end_ms))
                        for rs in self.sets]
        self.overlays: list[OverlaySource] = []
        self.units: list[_Unit] = []
        self._done = 0
        self._total = 0
        self._known: dict[tuple[int, tuple[tuple[str, str, str], ...]], bool] = {}

    # ------------------------------------------------------------ planning

    def _group_files(self) -> dict[str, list[str]]:
        """Group name -> files of the first rule set, so a compared set shares its phases."""
        out: dict[str, list[str]] = {}
        for rule in self.sets[0].rules:
            files = out.setdefault(rule.group, [])
            if rule.file not in files:
                files.append(rule.file)
        return out

    def _schedule(self, rule: CompiledRule, set_index: int,
                  files: dict[str, list[str]]) -> Schedule:
        """The rule's evaluation times; a compared set's group takes the first set's file.

        Group names are unique per file only: with several files holding the group,
        the one with the same file name is taken.
        """
        file = rule.file
        if set_index > 0:
            candidates = files.get(rule.group, [])
            if len(candidates) == 1:
                file = candidates[0]
            else:
                file = next((f for f in candidates if Path(f).name == Path(rule.file).name),
                            rule.file)
        offset = rule.group_ast.query_offset
        return Schedule.within(self.start_ms, self.end_ms, rule.interval_ms,
                               group_phase_ms(rule.group, file, rule.interval_ms),
                               offset.ms if offset is not None else 0)

    def _plan(self) -> None:
        files = self._group_files()
        signatures = [recording_signature(rs.rules) for rs in self.sets]
        overlay_of: list[int] = []
        for i, sig in enumerate(signatures):
            same = next((overlay_of[j] for j in range(i) if signatures[j] == sig), None)
            if same is None:
                names = sorted({r.name for r in self.sets[i].rules if r.kind == "record"})
                self.overlays.append(OverlaySource(self.source, names))
                same = len(self.overlays) - 1
            overlay_of.append(same)
        for i, rs in enumerate(self.sets):
            groups: dict[tuple[str, str], GroupInfo] = {}
            for rule in rs.rules:
                schedule = self._schedule(rule, i, files)
                unit = _Unit(i, rule, schedule, overlay_of[i], _rule_report(rule, rs),
                             value_of(rule.condition))
                self.units.append(unit)
                groups.setdefault((rule.file, rule.group), GroupInfo(
                    rule.group, rule.file, schedule.interval_ms, schedule.phase_ms,
                    schedule.query_offset_ms, schedule.count,
                    schedule.first_ms if schedule.count else None, schedule.last_ms))
            self.reports[i].info = RunInfo(rs.paths, self.store_name, self.start_ms,
                                           self.end_ms, tuple(groups.values()), 0.0,
                                           self.options.chunk_steps)
        self._count_shared()

    def _count_shared(self) -> None:
        """Expression nodes both rule sets evaluate on the same grid (computed once)."""
        if len(self.sets) < 2:
            return
        per_set: list[set[tuple[GridKey, ir.Node]]] = [set() for _ in self.sets]
        for u in self.units:
            per_set[u.set_index].update((u.key, n) for n in walk(u.nodes()))
        self.shared_nodes = len(set.intersection(*per_set))

    # ------------------------------------------------------------ running

    def run(self) -> list[DryRunReport]:
        """Evaluate everything; one report per rule set, in the given order.

        The cyclic garbage collector is paused: a long dry-run builds many small
        objects (intervals, notifications) and none of them form cycles.
        """
        with paused_gc():
            return self._run()

    def _run(self) -> list[DryRunReport]:
        started = time.perf_counter()
        self._plan()
        records = [u for u in self.units if u.rule.kind == "record"]
        alerts = [u for u in self.units if u.rule.kind == "alert"]
        for u in self.units:
            reason = unsupported(u.rule)
            if reason is not None:
                _fail(u, reason)
        levels_per_overlay = self._record_levels(records)
        self._total = sum(self._chunks(group) for levels in levels_per_overlay
                          for level in levels for group in _by_grid(level).values())
        self._total += sum(self._chunks(group) for group in _by_grid(alerts).values())
        for levels in levels_per_overlay:
            for level in levels:
                for group in _by_grid(level).values():
                    self._record(group)
        for u in alerts:
            self._check_metrics(u)
            if not u.failed:
                self._start_alert(u)
        for group in _by_grid(alerts).values():
            self._alerts(group)
        elapsed = time.perf_counter() - started
        for u in self.units:
            self._finish(u)
        for i, rep in enumerate(self.reports):
            info = rep.info
            rep.info = RunInfo(info.paths, info.store, info.start_ms, info.end_ms, info.groups,
                               elapsed, info.chunk_steps)
            rep.rules = [u.report for u in self.units if u.set_index == i]
        return self.reports

    def _chunks(self, group: list[_Unit]) -> int:
        return -(-group[0].schedule.count // max(1, self.options.chunk_steps))

    def _tick(self) -> None:
        self._done += 1
        if self.progress is not None:
            self.progress(self._done, self._total)

    def _evaluate(self, group: list[_Unit], lo: int, hi: int,
                  nodes: Sequence[ir.Node]) -> dict[ir.Node, QueryResult]:
        """One chunk of a grid: every node evaluated at the chunk's query times."""
        s = group[0].schedule
        times = s.times(lo, hi)
        start = int(times[0]) - s.query_offset_ms
        end = int(times[-1]) - s.query_offset_ms
        source = self.overlays[group[0].overlay]
        try:
            return evaluate_many(nodes, source, start, end, s.interval_ms, self.options.query)
        except Exception as exc:  # one failing rule must not stop the others
            if len(group) == 1:
                text = str(exc) if isinstance(exc, EvalError | ValueError) else \
                    f"{type(exc).__name__}: {exc}"
                return {n: QueryResult("matrix", times, warnings=[f"{EVAL_FAILED}{text}"])
                        for n in nodes}
            out: dict[ir.Node, QueryResult] = {}
            for u in group:  # find the rule that fails: evaluate each on its own
                out.update(self._evaluate([u], lo, hi, [n for n in u.nodes()]))
            return out

    # ------------------------------------------------------------ recording rules

    def _record_levels(self, records: list[_Unit]) -> list[list[list[_Unit]]]:
        out: list[list[list[_Unit]]] = []
        for index in range(len(self.overlays)):
            mine = [u for u in records if u.overlay == index and not u.failed]
            # One copy per overlay: rule sets sharing an overlay have identical recordings.
            first_set = min((u.set_index for u in mine), default=0)
            owners = [u for u in mine if u.set_index == first_set]
            levels, cycle = recording_levels([u.rule for u in owners])
            by_rule = {id(u.rule): u for u in owners}
            for rule in cycle:
                _fail(by_rule[id(rule)], "recording rules read each other in a cycle")
            out.append([[by_rule[id(r)] for r in level] for level in levels])
        return out

    def _record(self, group: list[_Unit]) -> None:
        """Evaluate recording rules of one grid over the range; add their series."""
        s = group[0].schedule
        overlay = self.overlays[group[0].overlay]
        for u in group:
            self._check_metrics(u)
        nodes = list(dict.fromkeys(u.rule.condition for u in group if not u.failed))
        recordings = {id(u): Recording(u.rule) for u in group}
        for lo, hi in s.chunks(self.options.chunk_steps):
            live = [u for u in group if not u.failed]
            if live:
                results = self._evaluate(live, lo, hi, nodes)
                query_times = s.times(lo, hi) - s.query_offset_ms
                for u in live:
                    res = results[u.rule.condition]
                    if not _failure(u, res):
                        problem = recordings[id(u)].add(res, query_times)
                        if problem is not None:
                            _fail(u, problem)
            self._tick()
        for u in group:
            if u.failed:
                continue
            recorded = recordings[id(u)].series()
            for series in recorded:
                overlay.add(series)
            u.report.series = len(recorded)
            u.had_data = bool(recorded)
        self._copy_recordings(group)

    def _copy_recordings(self, group: list[_Unit]) -> None:
        """Rule sets sharing an overlay share recordings: copy the figures to their reports."""
        for u in group:
            for other in self.units:
                if other is not u and other.overlay == u.overlay and other.rule.kind == "record" \
                        and other.set_index != u.set_index and other.rule.name == u.rule.name \
                        and other.rule.condition == u.rule.condition:
                    other.report.series = u.report.series
                    other.report.status = u.report.status
                    other.report.reason = u.report.reason
                    other.had_data = u.had_data
                    other.failed = u.failed

    # ------------------------------------------------------------ alerting rules

    def _check_metrics(self, u: _Unit) -> None:
        """Warn about selectors that match no series at all (an unknown metric)."""
        overlay = self.overlays[u.overlay]
        for sel in selectors(u.rule, skip_absence=True):
            key = (u.overlay, sel.matchers)
            if key not in self._known:
                listing = getattr(overlay, "series_matching", None)
                self._known[key] = bool(listing(sel.matchers)) if listing is not None else True
            if not self._known[key]:
                text = ir.describe(ir.Selector(sel.metric, sel.matchers))
                u.report.warnings.append(f"unknown metric: {text} matches no series in the store")

    def _start_alert(self, u: _Unit) -> None:
        u.machine = _machine(AlertRuleSpec.from_rule(u.rule))
        u.collector = AlertCollector(low_is_bad=u.value.low_is_bad)
        u.plot = PlotCollector(u.schedule.count, self.options.plot_points, u.value.low_is_bad)

    def _alerts(self, group: list[_Unit]) -> None:
        s = group[0].schedule
        for lo, hi in s.chunks(self.options.chunk_steps):
            live = [u for u in group if not u.failed]
            if live:
                nodes = list(dict.fromkeys(n for u in live for n in u.nodes()))
                results = self._evaluate(live, lo, hi, nodes)
                times = s.times(lo, hi)
                for u in live:
                    self._advance(u, results, lo, times)
            self._tick()

    def _advance(self, u: _Unit, results: dict[ir.Node, QueryResult], lo: int,
                 times: np.ndarray) -> None:
        when = results[u.rule.condition]
        recover = results[u.rule.recover] if u.rule.recover is not None else None
        value = results[u.value.node]
        for res in (when, recover, value):
            if res is not None and _failure(u, res):
                return
        assert u.machine is not None and u.collector is not None and u.plot is not None
        distinct = u.value.node != u.rule.condition
        shift = u.schedule.query_offset_ms
        try:
            out = RuleOutput.from_results(
                times, _shifted(when, shift) or when, _shifted(recover, shift),
                _shifted(value, shift) if distinct else None)
        except ValueError as exc:  # e.g. a condition that returns a scalar
            _fail(u, str(exc))
            return
        adv = u.machine.advance(out)
        u.collector.add(adv, times)
        u.plot.add(out.labels, out.value, lo)
        u.had_data = u.had_data or bool(value.series)
        for t, message in adv.errors:
            text = f"{_iso(t)}: {message}"
            if len(u.report.errors) < MAX_ERRORS and text not in u.report.errors:
                u.report.errors.append(text)

    # ------------------------------------------------------------ reports

    def _finish(self, u: _Unit) -> None:
        rep = u.report
        if u.failed:
            return
        # No data: a metric the store does not know, or a threshold's compared side that
        # never had a series. An empty result of any other condition (`x > y`,
        # `absent(x)`) only means that it never held.
        unknown = [w for w in rep.warnings if w.startswith("unknown metric")]
        compared = u.rule.kind == "alert" and u.value.node != u.rule.condition
        if unknown or (compared and not u.had_data):
            rep.status = "no_data"
            rep.reason = "; ".join(w.removeprefix("unknown metric: ") for w in unknown) \
                if unknown else "its input had no series anywhere in the range"
        if u.collector is None:
            return
        intervals = u.collector.finish(u.schedule.last_ms)
        rep.intervals = intervals
        rep.series = len(u.collector.seen)
        rep.firings = len(intervals)
        rep.flaps = u.collector.flaps
        durations = [iv.duration_ms for iv in intervals]
        rep.firing_ms = sum(durations)
        if intervals:
            rep.first_firing_ms = intervals[0].start_ms
            rep.last_firing_ms = max(iv.start_ms for iv in intervals)
            rep.median_firing_ms = float(statistics.median(durations))
        channels = rule_channels(rep.channels, self.sets[u.set_index].channels)
        outcome = notifications(intervals, channels, rep.cooldown_ms, summary_renderer(u.rule))
        rep.notifications = outcome.notifications
        rep.suppressed = outcome.suppressed
        rep.plot = self._plot(u)

    def _plot(self, u: _Unit) -> RulePlot | None:
        plot, collector = u.plot, u.collector
        if plot is None or collector is None:
            return None
        # An alert's identity is its series' labels with the rule's labels on top: without
        # those (and the name) it is the series the plot shows.
        rule_keys = {k for k, _ in _alert_label_keys(u.rule)} | {METRIC_NAME}
        fired_series = {frozenset(p for p in a if p[0] not in rule_keys)
                        for a in collector.fired}
        rows = list(zip(plot.names, range(len(plot.names)), strict=True))

        def fired(labels: Labels) -> bool:
            return frozenset(p for p in labels if p[0] not in rule_keys) in fired_series

        marked = [(labels, row, fired(labels)) for labels, row in rows]
        data = plot.data[:len(rows)].astype(np.float64)
        score = nan_extreme(data, 1, u.value.low_is_bad) if rows else np.empty(0)
        sign = 1.0 if u.value.low_is_bad else -1.0
        order = sorted(range(len(marked)), key=lambda i: (
            np.isnan(score[i]), sign * np.nan_to_num(score[i]), format_labels(marked[i][0])))
        chosen = [i for i in order if marked[i][2]][:self.options.plot_fired]
        chosen += [i for i in order if not marked[i][2]][:self.options.plot_others]
        chosen.sort(key=lambda i: format_labels(marked[i][0]))
        s = u.schedule
        times = tuple(s.first_ms + k * plot.bucket * s.interval_ms
                      for k in range(data.shape[1]))
        series = tuple(PlotSeries(dict(marked[i][0]), _plot_values(data[marked[i][1]]),
                                  marked[i][2]) for i in chosen)
        return RulePlot(ir.describe(u.value.node), times, series, u.value.threshold, u.value.op,
                        len(rows), plot.bucket * s.interval_ms)


# ------------------------------------------------------------------ helpers


def _plot_values(row: np.ndarray) -> tuple[float, ...]:
    """Plot values as floats, rounded to the 7 digits their float32 storage holds."""
    return tuple(float(f"{v:.7g}") for v in row.tolist())


def _machine(spec: AlertRuleSpec) -> AlertMachine:
    """A state machine that builds no ``Advance.transitions``.

    The dry-run reads the state matrices only; skipping the per-transition
    objects saves most of the machine's Python time on rules that fire often.
    """
    return AlertMachine(spec, record_transitions=False)


def _by_grid(units: Sequence[_Unit]) -> dict[GridKey, list[_Unit]]:
    out: dict[GridKey, list[_Unit]] = {}
    for u in units:
        if not u.failed and u.schedule.count:
            out.setdefault(u.key, []).append(u)
    return out


def _fail(u: _Unit, reason: str) -> None:
    u.failed = True
    u.report.status = "not_evaluated"
    u.report.reason = reason


def _failure(u: _Unit, res: QueryResult) -> bool:
    """Mark the rule not evaluated if its result carries an evaluation failure."""
    for w in res.warnings:
        if w.startswith(EVAL_FAILED):
            _fail(u, w.removeprefix(EVAL_FAILED))
            return True
    for w in res.warnings:
        if w not in u.report.warnings and len(u.report.warnings) < MAX_ERRORS:
            u.report.warnings.append(w)
    return False


def _shifted(res: QueryResult | None, shift_ms: int) -> QueryResult | None:
    """A result at query times moved to evaluation times (``query_offset`` later)."""
    if res is None or not shift_ms:
        return res
    return QueryResult(res.kind, res.steps + shift_ms,
                       [Series(s.labels, s.ts + shift_ms, s.values) for s in res.series],
                       res.string, res.warnings, res.infos, res.grid)


def _alert_label_keys(rule: CompiledRule) -> list[tuple[str, str]]:
    """The labels an alerting rule puts on its alerts (AlertRuleSpec.from_rule's)."""
    pairs = [(p.key, p.value) for p in (*rule.group_ast.labels, *rule.rule.labels)]
    if isinstance(rule.rule, AlertRule) and rule.rule.severity is not None:
        pairs.append(("severity", rule.rule.severity.value))
    return [*pairs, ("alertname", rule.name)]


def _rule_report(rule: CompiledRule, rs: RuleSet) -> RuleReport:
    ast_rule = rule.rule
    expr = format_expr(ast_rule.expr) if ast_rule.expr is not None else ir.describe(rule.condition)
    rep = RuleReport(rule.name, rule.group, rule.file, rule.kind, expr, rule.interval_ms)
    if isinstance(ast_rule, AlertRule):
        rep.for_ms = ast_rule.for_.ms if ast_rule.for_ is not None else 0
        rep.keep_firing_for_ms = (ast_rule.keep_firing_for.ms
                                  if ast_rule.keep_firing_for is not None else 0)
        rep.severity = ast_rule.severity.value if ast_rule.severity is not None else None
        rep.channels = tuple(c.value for c in ast_rule.channels)
        rep.cooldown_ms = ast_rule.cooldown.ms if ast_rule.cooldown is not None else 0
    return rep


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
