"""Running a test file: every test group against its own in-memory store.

The loop is promtool's (``cmd/promtool/unittest.go``): rule groups are
evaluated at ``start``, ``start + evaluation_interval``, ... up to the group's
largest ``eval_time``; at each step the groups run in ``group_eval_order`` and
the rules of a group in file order, each rule an instant query whose result is
written back to the store at once (recording rules under their new name,
alerting rules as ``ALERTS`` and ``ALERTS_FOR_STATE``), with staleness markers
for series a rule produced at the previous step and not now. Alerts go
through :class:`monitoring.engine.alerts.AlertMachine`, one ``advance()`` per
evaluation. An ``alert_rule_test`` compares the firing alerts at the last
evaluation at or before its ``eval_time``; ``promql_expr_test`` queries run
after the loop. An evaluation error in any rule ends the group at once.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from monitoring.dryrun.values import value_of
from monitoring.dsl import ir
from monitoring.dsl.compiler import CompiledRule, compile_query
from monitoring.dsl.diagnostics import Severity
from monitoring.engine.evaluator import evaluate
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import (
    DEFAULT_LOOKBACK_MS,
    STALE_NAN,
    EvalError,
    Labels,
    QueryResult,
    Series,
    labels_of,
)
from monitoring.engine.promqltest import histogram_series_selected, walk
from monitoring.engine.query import QueryOptions
from monitoring.ruletest.compare import (
    AlertView,
    FloatEq,
    Sample,
    alert_diff,
    alerts_text,
    exact_equal,
    expected_alert,
    fuzzy_equal,
    go_quote,
    indent_lines,
    sample_diff,
    samples_equal,
    samples_text,
)
from monitoring.ruletest.durations import format_go_duration, format_model_duration
from monitoring.ruletest.histograms import Histogram, HistogramTable
from monitoring.ruletest.model import AlertTest, ExprTest, TestFile, TestGroup
from monitoring.ruletest.parse import TestFileError, load_test_file
from monitoring.ruletest.ruleset import RuleGroup, RuleSet, load_rule_set

if TYPE_CHECKING:
    from monitoring.dsl.diagnostics import Diagnostic

ALERTS = "ALERTS"
ALERTS_FOR_STATE = "ALERTS_FOR_STATE"


class GroupStop(Exception):
    """A rule evaluation error: the group ends here (promtool returns at once)."""


@dataclass(slots=True)
class GroupResult:
    """The outcome of one test group."""

    name: str
    failures: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    seconds: float = 0.0
    alerts_seen_firing: set[str] = field(default_factory=set)

    @property
    def status(self) -> str:
        """``passed``, ``failed`` or ``unsupported`` (a failure wins over unsupported)."""
        if self.failures:
            return "failed"
        return "unsupported" if self.unsupported else "passed"


@dataclass(slots=True)
class FileResult:
    """The outcome of one test file."""

    path: str
    groups: list[GroupResult] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the file could not run
    diagnostics: list[Diagnostic] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    test: TestFile | None = None
    rules: RuleSet | None = None

    @property
    def failed(self) -> bool:
        """Whether the file fails (an error, or any failed group)."""
        return bool(self.errors) or any(g.status == "failed" for g in self.groups)

    @property
    def unsupported(self) -> bool:
        """Whether some group could not be checked (and none failed)."""
        return not self.failed and any(g.status == "unsupported" for g in self.groups)


def run_file(path: str | Path, run: re.Pattern[str] | None = None) -> FileResult:
    """Parse, load and run one test file; never raises on bad input."""
    result = FileResult(str(path))
    try:
        test = load_test_file(path)
    except TestFileError as e:
        result.diagnostics = e.diagnostics
        result.errors = [f"{d.location()}: {d.message}" for d in e.diagnostics]
        return result
    except OSError as e:
        result.errors = [f"{path}: cannot read: {e.strerror or e}"]
        return result
    result.test = test
    rules = load_rule_set(test)
    result.rules = rules
    result.warnings = rules.warnings
    if rules.errors:
        result.diagnostics = rules.errors
        result.errors = [f"{d.location()}: {d.message}" for d in rules.errors]
        return result
    known = {g.name for g in rules.groups}
    for name in test.group_eval_order:
        if name not in known:
            result.errors.append(f"group name {name} in group_eval_order not found in any "
                                 "of the rule files")
    if result.errors:
        return result
    groups = rules.ordered(test.group_eval_order)
    for group in test.groups:
        if run is not None and not run.search(group.name):
            continue
        started = time.perf_counter()
        gr = GroupRunner(test, group, groups).run()
        gr.seconds = time.perf_counter() - started
        result.groups.append(gr)
    return result


# ---------------------------------------------------------------- one test group


@dataclass(slots=True)
class _RuleState:
    """What one rule carries between evaluations."""

    rule: CompiledRule
    group: RuleGroup
    previous: set[Labels] = field(default_factory=set)  # series written at the last step
    machine: Any = None  # AlertMachine for alerting rules
    value_node: ir.Node | None = None  # what "has data" means for no-data and recovery

    def __post_init__(self) -> None:
        if self.rule.kind == "alert":
            # The value side of a threshold condition, found as `monitoring dry-run`
            # finds it, so both tell "no data" and "still above the recovery level"
            # the same way. Other conditions: the condition itself (never no-data).
            spec = value_of(self.rule.condition)
            self.value_node = spec.node if spec.threshold is not None else None


class GroupRunner:
    """Evaluates the rules for one test group and checks its expectations."""

    def __init__(self, test: TestFile, group: TestGroup, rule_groups: list[RuleGroup]) -> None:
        self.test = test
        self.group = group
        self.rule_groups = rule_groups
        self.result = GroupResult(group.display_name)
        self.source = MemorySource()
        self.histograms = HistogramTable()
        self.eq: FloatEq = fuzzy_equal if test.fuzzy_compare else exact_equal
        self.options = QueryOptions(default_subquery_step_ms=test.evaluation_interval_ms)
        self.start = group.start_ms
        self.end = group.start_ms + group.max_eval_time_ms()
        self.states = [_RuleState(r, g) for g in rule_groups for r in g.rules]

    def run(self) -> GroupResult:
        """Load inputs, run every evaluation step, then the expression tests."""
        self.load_inputs()
        blocked = self.rules_reading_histograms()
        if blocked:
            self.result.unsupported.append(blocked)
            return self.result
        try:
            self.evaluate_rules()
        except GroupStop:
            return self.result
        for test in self.group.expr_tests:
            self.check_expr(test)
        return self.result

    # ------------------------------------------------------------ inputs

    def load_inputs(self) -> None:
        """Input samples up to the last evaluation (promtool loads lazily up to it)."""
        step = self.group.interval_ms
        for s in self.group.input_series:
            timed = [(self.start + k * step, v) for k, v in enumerate(s.values) if v is not None]
            timed = [(t, v) for t, v in timed if t <= self.end]
            if any(isinstance(v, Histogram) for _, v in timed):
                self.histograms.add(s.labels, timed)
                continue
            floats = [(t, v) for t, v in timed if isinstance(v, float)]
            if floats:
                self.source.add(Series.of(s.labels, floats))

    def rules_reading_histograms(self) -> str | None:
        names = self.histograms.names()
        for st in self.states:
            for root in (st.rule.condition, st.rule.recover):
                if root is None:
                    continue
                hit = histogram_series_selected(root, names)
                if hit:
                    return (f"unsupported: native histograms: rule {st.rule.name} reads "
                            f"histogram series {_series_name(hit[0])}, which the evaluator "
                            "cannot evaluate")
        return None

    # ------------------------------------------------------------ the rule loop

    def evaluate_rules(self) -> None:
        alert_tests = sorted(self.group.alert_tests, key=lambda a: a.eval_time_ms)
        interval = self.test.evaluation_interval_ms
        pending = list(alert_tests)
        ts = self.start
        while ts <= self.end:
            for st in self.states:
                self.evaluate_rule(st, ts)
            offset = ts - self.start
            while pending and offset <= pending[0].eval_time_ms < offset + interval:
                eval_time = pending[0].eval_time_ms
                batch = [a for a in pending if a.eval_time_ms == eval_time]
                pending = [a for a in pending if a.eval_time_ms != eval_time]
                for test in batch:
                    self.check_alerts(test)
            ts += interval

    def evaluate_rule(self, st: _RuleState, ts: int) -> None:
        at = ts - st.group.query_offset_ms
        try:
            result = self.query(st.rule.condition, at)
            if st.rule.kind == "record":
                samples = self.recording_samples(st, result)
            else:
                recover = self.query(st.rule.recover, at) if st.rule.recover is not None \
                    else None
                data = self.query(st.value_node, at) if st.value_node is not None else None
                samples = self.alert_samples(st, result, recover, data, ts)
        except EvalError as e:
            reason = str(e)
            if "not supported yet" in reason:
                reason = f"not evaluated: {reason} (not implemented in this version)"
            self.result.failures.append(
                f"    rule: {st.rule.name}, time: {format_go_duration(ts)}, err: {reason}")
            raise GroupStop from None
        self.write(st, samples, at)

    def query(self, node: ir.Node, at: int) -> QueryResult:
        return evaluate(node, self.source, at, at, 1, self.options, instant=True)

    def recording_samples(self, st: _RuleState, result: QueryResult) -> list[tuple[Labels, float]]:
        """Prometheus's ``RecordingRule.Eval``: rename, apply labels, refuse duplicates."""
        extra = {**st.group.labels, **{p.key: p.value for p in st.rule.rule.labels}}
        out: dict[Labels, float] = {}
        for labels, value in _vector(result):
            lab = {**dict(labels), "__name__": st.rule.name, **extra}
            key = labels_of(lab)
            if key in out:
                raise EvalError("vector contains metrics with the same labelset after "
                                "applying rule labels")
            out[key] = value
        limit = st.group.limit
        if limit and len(out) > limit:
            raise EvalError(f"exceeded limit of {limit} with {len(out)} series")
        return list(out.items())

    def alert_samples(self, st: _RuleState, result: QueryResult, recover: QueryResult | None,
                      data: QueryResult | None, ts: int) -> list[tuple[Labels, float]]:
        """Advance the alert machine one evaluation; ``ALERTS`` and ``ALERTS_FOR_STATE``.

        The machine's clock is the evaluation time ``ts`` (``ActiveAt`` and ``for``
        count from it) even when the group's ``query_offset`` queried earlier, as
        Prometheus does.
        """
        from monitoring.engine.alerts import AlertState, RuleOutput

        machine = self.machine(st)
        times = np.array([ts], dtype=np.int64)
        out = RuleOutput.from_results(times, _as_vector(result, ts),
                                      _as_vector(recover, ts) if recover is not None else None,
                                      _as_vector(data, ts) if data is not None else None)
        advance = machine.advance(out)
        if advance.errors:
            raise EvalError(advance.errors[0][1])
        samples: list[tuple[Labels, float]] = []
        active = [a for a in machine.alerts()
                  if a.state in (AlertState.PENDING, AlertState.FIRING, AlertState.NODATA)]
        limit = st.group.limit
        if limit and len(active) > limit:
            raise EvalError(f"exceeded limit of {limit} with {len(active)} alerts")
        for a in active:
            base = dict(a.labels)
            state = {AlertState.PENDING: "pending", AlertState.FIRING: "firing"}.get(
                a.state, "nodata")
            samples.append((labels_of({**base, "__name__": ALERTS, "alertstate": state}), 1.0))
            samples.append((labels_of({**base, "__name__": ALERTS_FOR_STATE}),
                            float(a.active_at_ms // 1000)))
        return samples

    def machine(self, st: _RuleState) -> Any:
        if st.machine is None:
            from monitoring.engine.alerts import AlertMachine, AlertRuleSpec

            spec = AlertRuleSpec.from_rule(
                st.rule, external_labels=tuple(sorted(self.group.external_labels.items())),
                external_url=self.group.external_url)
            st.machine = AlertMachine(spec)
        return st.machine

    def write(self, st: _RuleState, samples: list[tuple[Labels, float]], ts: int) -> None:
        """Append a rule's output at ``ts``; mark series it no longer produces stale."""
        now = {labels for labels, _ in samples}
        for labels, value in samples:
            self.source.add(Series(labels, np.array([ts], dtype=np.int64),
                                   np.array([value], dtype=np.float64)))
        for labels in st.previous - now:
            self.source.add(Series(labels, np.array([ts], dtype=np.int64),
                                   np.array([STALE_NAN], dtype=np.float64)))
        st.previous = now

    # ------------------------------------------------------------ checks

    def check_alerts(self, test: AlertTest) -> None:
        from monitoring.engine.alerts import AlertState

        got: list[AlertView] = []
        for st in self.states:
            if st.rule.kind != "alert" or st.rule.name != test.alertname or st.machine is None:
                continue
            for a in st.machine.alerts():
                if a.state == AlertState.FIRING:
                    got.append(AlertView(a.labels, labels_of(a.annotations)))
        if got:
            self.result.alerts_seen_firing.add(test.alertname)
        exp = [expected_alert(test.alertname, e.labels, e.annotations) for e in test.exp_alerts]
        got.sort()
        exp.sort()
        if exp == got:
            return
        name = f"    name: {self.group.name},\n" if self.group.name else ""
        msg = (f"{name}    alertname: {test.alertname}, time: "
               f"{format_model_duration(test.eval_time_ms)}, \n"
               f"        exp:{indent_lines(alerts_text(exp), '            ')}, \n"
               f"        got:{indent_lines(alerts_text(got), '            ')}")
        diff = alert_diff(exp, got)
        self.result.failures.append(msg + "".join(f"\n        {d}" for d in diff))

    def check_expr(self, test: ExprTest) -> None:
        head = f"    expr: {go_quote(test.expr)}, time: {format_model_duration(test.eval_time_ms)}"
        node, diags, _ = compile_query(test.expr)
        if node is None:
            errors = [d for d in diags if d.severity is Severity.ERROR] or diags
            message = errors[0].message if errors else "cannot parse the expression"
            self.result.failures.append(f"{head}, err: {message}")
            return
        at = self.start + test.eval_time_ms
        hist_hit = histogram_series_selected(node, self.histograms.names())
        if hist_hit and not _plain_selector(node):
            self.result.unsupported.append(
                f"{head}: unsupported: native histograms: the expression reads histogram "
                f"series {_series_name(hist_hit[0])} and is not a plain selector")
            return
        try:
            result = self.query(node, at)
            got = [Sample(labels, value) for labels, value in _vector(result)]
        except EvalError as e:
            self.result.failures.append(f"{head}, err: {e}")
            return
        if hist_hit and isinstance(node, ir.Selector):
            got += self.histogram_samples(node, at)
        exp = [Sample(s.labels, s.value, _histogram(s.histogram)) for s in test.exp_samples]
        exp.sort(key=lambda s: s.labels)
        got.sort(key=lambda s: s.labels)
        if samples_equal(exp, got, self.eq):
            return
        diff = sample_diff(exp, got, self.eq)
        self.result.failures.append(
            f"{head},\n        exp: {samples_text(exp)}\n        got: {samples_text(got)}"
            + "".join(f"\n        {d}" for d in diff))

    def histogram_samples(self, node: ir.Selector, at: int) -> list[Sample]:
        t = at - node.offset_ms
        if node.at is not None:
            t = (node.at.ms if node.at.kind == "timestamp" else at) - node.offset_ms
        matchers = list(node.matchers)
        if node.metric is not None:
            matchers.append(("__name__", "=", node.metric))
        out = []
        for labels, value in self.histograms.select(matchers, t, self.options.lookback_ms):
            if isinstance(value, Histogram):
                out.append(Sample(labels, 0.0, value))
            else:
                out.append(Sample(labels, value))
        return out


def _plain_selector(node: ir.Node) -> bool:
    return isinstance(node, ir.Selector) and sum(1 for _ in walk(node)) == 1


def _histogram(text: str | None) -> Histogram | None:
    from monitoring.ruletest.histograms import parse_histogram

    return parse_histogram(text) if text is not None else None


def _series_name(labels: Labels) -> str:
    from monitoring.engine.gocompat import labels_string

    return labels_string(labels)


def _vector(result: QueryResult) -> list[tuple[Labels, float]]:
    """An instant result as (labels, value) pairs; a scalar is one sample without labels."""
    if result.kind == "scalar":
        return [((), float(result.series[0].values[-1]))] if result.series else []
    if result.kind != "vector":
        raise EvalError("rule result is not a vector or scalar")
    return [(s.labels, float(s.values[-1])) for s in result.series if len(s.values)]


def _as_vector(result: QueryResult, ts: int) -> QueryResult:
    """An instant result as a one-step vector at ``ts`` (a scalar: one series, no labels)."""
    step = np.array([ts], dtype=np.int64)
    return QueryResult("vector", step, [Series(labels, step.copy(), np.array([v]))
                                        for labels, v in _vector(result)],
                       warnings=result.warnings)


__all__ = ["DEFAULT_LOOKBACK_MS", "FileResult", "GroupResult", "run_file"]
