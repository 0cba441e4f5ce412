"""The scheduler: every rule group evaluated at its aligned times, state saved, alerts handed on.

Times. A group with interval ``I`` is evaluated at ``phase + k * I``, the
phase being Prometheus's group offset (:func:`monitoring.dryrun.schedule.group_phase_ms`),
so a group is evaluated at the same instants as in Prometheus and in a
dry-run, and groups spread over the interval instead of all running on the
minute. Times are aligned, never "interval after the previous run": a slow
evaluation does not shift later ones (no drift). When the loop falls behind
(a stall, a suspended machine, a slow group) it evaluates the *latest* due
time and skips the ones in between, counting them (``missed``,
``EngineMetrics.eval_missed``) instead of running them back to back (no
pile-up). Lag (how late an evaluation starts after its time) is measured on
the engine's clock and reported with each evaluation. Groups due at the same
time are evaluated in order, groups holding recording rules first, so an
alerting group reads the samples recorded at that time.

One loop evaluates one group at a time: the store thread
(:class:`~monitoring.live.store_access.StoreAccess`) runs the expressions, the
event loop feeds the state machines, writes the history and the state, and
calls ``on_alerts`` with every firing alert (resent at each evaluation, as
Prometheus resends to Alertmanager) and every newly resolved one (once).

Which alerts count as firing for notifications: FIRING ones; NODATA ones
that had fired before the data went away (they keep their notification open
instead of resolving and firing again), and the rule-level no-data alert of
the ``nodata`` policy. Such an alert leaving that set is resolved.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb

from monitoring.dryrun.ruleset import RuleSet
from monitoring.engine.alerts import NODATA_LABEL, AlertMachine, AlertState, Transition
from monitoring.engine.alerts import Alert as MachineAlert
from monitoring.engine.model import Labels
from monitoring.engine.query import QueryOptions
from monitoring.live.alert_state import AlertStateStore, StoredState, in_transaction, same_database
from monitoring.live.heap import HeapFreezer
from monitoring.live.history import AlertHistory, TransitionRecord, insert_transitions
from monitoring.live.rule_eval import (
    Computed,
    LiveGroup,
    LiveRule,
    RuleStatus,
    advance,
    compute,
    finite,
    plan_groups,
)
from monitoring.live.store_access import StoreAccess
from monitoring.notify.model import FIRING, Alert, AuditSink, Clock, fingerprint, sleep_or

log = logging.getLogger(__name__)

OnAlerts = Callable[[list[Alert]], Awaitable[None] | None]


class EvalMetrics(Protocol):
    """What the scheduler reports (``monitoring.live.metrics.EngineMetrics`` has these)."""

    def eval_done(self, group: str, seconds: float, failed: bool, lag_seconds: float) -> None: ...

    def eval_missed(self, group: str, n: int) -> None: ...

    def alerts_by_state(self, counts: Mapping[str, int]) -> None: ...


@dataclass(frozen=True, slots=True)
class AlertView:
    """One active alert (pending, firing or no-data) as the API and the CLI show it."""

    rule: str
    group: str
    file: str
    labels: dict[str, str]
    annotations: dict[str, str]
    state: str  # pending | firing | nodata
    active_at_ms: int
    fired_at_ms: int | None
    value: float | None
    flapping: bool

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "rule": self.rule, "group": self.group,
                "file": self.file, "labels": self.labels, "annotations": self.annotations,
                "state": self.state, "active_at_ms": self.active_at_ms,
                "fired_at_ms": self.fired_at_ms,
                "value": None if self.value is None else repr(self.value),
                "flapping": self.flapping}


class LiveEvaluator:
    """Runs a rule set continuously; see the module docstring."""

    def __init__(self, rule_set: RuleSet, access: StoreAccess, state: AlertStateStore,
                 history: AlertHistory, clock: Clock, *, on_alerts: OnAlerts | None = None,
                 audit: AuditSink | None = None, metrics: EvalMetrics | None = None,
                 options: QueryOptions | None = None, freeze_heap: bool = False) -> None:
        """``freeze_heap``: see :mod:`monitoring.live.heap` (for a process of its own)."""
        self._access = access
        self._state = state
        self._history = history
        self._one_transaction = same_database(state.conn, history.conn)
        self._clock = clock
        self._on_alerts = on_alerts
        self._audit = audit
        self._metrics = metrics
        self._options = options or QueryOptions()
        self._groups = plan_groups(rule_set)
        self._heap = HeapFreezer(freeze_heap)
        self._heap.loaded(self._groups)
        self._wake = asyncio.Event()
        self._orphans: list[Alert] = []  # resolutions of removed rules, sent with the next call
        self._restore()

    # ------------------------------------------------------------ state

    def _restore(self) -> None:
        """Machines from ``live_alert_state``; rows of other or changed rules are dropped."""
        stored = self._state.load()
        wanted: dict[str, LiveRule] = {r.key: r for r in self._alerting()}
        drop = []
        for key, st in stored.items():
            r = wanted.get(key)
            if r is None or st.signature != r.signature or r.spec is None:
                drop.append(key)
                continue
            try:
                r.machine = AlertMachine.restore(r.spec, st.snapshot)
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("alert state of %s not restored: %s", key, exc)
                drop.append(key)
                continue
            r.saved = r.machine.state_key()
            r.sent = {a.labels: self._notify(r, a) for a in r.machine.alerts() if _told(a)}
        self._state.delete(drop)

    def _alerting(self) -> list[LiveRule]:
        return [r for g in self._groups.values() for r in g.alerting]

    def replace_rules(self, rule_set: RuleSet) -> None:
        """Load a new rule set; rules whose compiled form is unchanged keep their state.

        Firing alerts of rules that are gone (or changed) are resolved with the
        next evaluation's ``on_alerts`` call.
        """
        old = {r.key: r for g in self._groups.values() for r in g.rules}
        groups = plan_groups(rule_set)
        kept: set[str] = set()
        for g in groups.values():
            for i, r in enumerate(g.rules):
                prev = old.get(r.key)
                if prev is not None and prev.signature == r.signature \
                        and prev.broken == r.broken:
                    prev.rule, prev.status = r.rule, _moved(prev.status, r.status)
                    g.rules[i] = prev
                    kept.add(r.key)
            by_key = {r.key: r for r in g.rules}
            g.alerting = [by_key[r.key] for r in g.alerting]
            g.levels = [[by_key[r.key] for r in level] for level in g.levels]
            prev_group = self._groups.get(g.key)
            if prev_group is not None and prev_group.interval_ms == g.interval_ms:
                g.evaluations, g.missed, g.failures = (prev_group.evaluations, prev_group.missed,
                                                       prev_group.failures)
                g.last_eval_ms = prev_group.last_eval_ms
        now = self._clock.now_ms()
        gone = [r for key, r in old.items() if key not in kept]
        for r in gone:
            self._orphans.extend(a.resolved(now) for a in r.sent.values())
        self._state.delete(r.key for r in gone if r.rule.kind == "alert")
        self._groups = groups
        self._heap.loaded(groups)
        self._wake.set()

    # ------------------------------------------------------------ queries

    def groups(self) -> list[LiveGroup]:
        """The groups being evaluated (with their counters)."""
        return list(self._groups.values())

    def rules(self) -> list[RuleStatus]:
        """Every rule's status, in file and group order."""
        return [r.status for g in self._groups.values() for r in g.rules]

    def alerts(self) -> list[AlertView]:
        """Every pending, firing and no-data alert, by rule."""
        out: list[AlertView] = []
        for g in self._groups.values():
            for r in g.alerting:
                assert r.machine is not None
                for a in r.machine.alerts():
                    if a.state is AlertState.INACTIVE:
                        continue
                    out.append(AlertView(
                        r.rule.name, g.name, g.file, dict(a.labels), dict(a.annotations),
                        a.state.label, a.active_at_ms, a.fired_at_ms, finite(a.last_value),
                        a.flapping))
        return out

    # ------------------------------------------------------------ the loop

    async def run(self, stop: asyncio.Event) -> None:
        """Evaluate every group at its times until ``stop`` is set."""
        due: dict[str, int] = {}
        while not stop.is_set():
            now = self._clock.now_ms()
            for key in [k for k in due if k not in self._groups]:
                del due[key]
            for key, g in self._groups.items():
                if key not in due:
                    due[key] = g.next_tick(now)
            order = {key: i for i, key in enumerate(self._groups)}
            ready = sorted((k for k, t in due.items() if t <= now),
                           key=lambda k: (due[k], not self._groups[k].records, order[k]))
            if not ready:
                await self._sleep(min(due.values()) - now if due else None, stop)
                continue
            for key in ready:
                group = self._groups.get(key)
                if stop.is_set() or group is None:
                    break
                tick = due[key]
                latest = max(tick, group.last_tick(self._clock.now_ms()))
                missed = (latest - tick) // group.interval_ms
                if missed:
                    group.missed += missed
                    log.warning("rule group %s fell behind: %d evaluation(s) skipped",
                                key, missed)
                    if self._metrics is not None:
                        self._metrics.eval_missed(key, missed)
                await self.evaluate_group(key, latest)
                due[key] = latest + group.interval_ms

    async def _sleep(self, ms: int | None, stop: asyncio.Event) -> None:
        """Sleep ``ms`` on the clock, or until ``stop`` or a rule change."""
        self._wake.clear()
        await sleep_or(self._clock, ms, stop, self._wake)

    # ------------------------------------------------------------ one evaluation

    async def evaluate_group(self, group_key: str, at_ms: int) -> list[Alert]:
        """Evaluate one group at ``at_ms``: machines, history, state, metrics, ``on_alerts``.

        Returns the alerts handed to ``on_alerts`` (firing ones and new resolutions).
        """
        group = self._groups[group_key]
        lag_ms = max(0, self._clock.now_ms() - at_ms)
        started = time.perf_counter()
        try:
            computed = await self._access.evaluate(
                lambda reads: compute(reads.store, group, at_ms, self._options, reads))
        except Exception as exc:  # the store failed: every rule of the group failed
            log.error("rule group %s: evaluation failed: %s", group_key, exc)
            computed = Computed(errors={r.key: f"{type(exc).__name__}: {exc}"
                                        for r in group.rules})
        alerts: list[Alert] = []
        records: list[TransitionRecord] = []
        states: list[StoredState] = []
        for r in group.rules:
            if r.rule.kind == "record":
                self._recorded(r, computed)
            else:
                self._alerted(r, group, computed, at_ms, alerts, records, states)
        self._persist(group_key, records, states)
        duration = time.perf_counter() - started
        failed = False
        for r in group.rules:
            r.status.last_eval_ms = at_ms
            r.status.duration_s = duration
            failed = failed or r.status.health == "err"
        group.evaluations += 1
        group.failures += int(failed)
        group.last_eval_ms, group.last_duration_s, group.last_lag_ms = at_ms, duration, lag_ms
        if self._metrics is not None:
            self._metrics.eval_done(group_key, duration, failed, lag_ms / 1000)
            self._metrics.alerts_by_state(self._counts())
        if self._orphans:
            alerts.extend(self._orphans)
            self._orphans = []
        if alerts and self._on_alerts is not None:
            outcome = self._on_alerts(alerts)
            if inspect.isawaitable(outcome):
                await outcome
        self._heap.evaluated(group_key)
        return alerts

    def _recorded(self, r: LiveRule, computed: Computed) -> None:
        error = r.broken or computed.errors.get(r.key)
        found = computed.recorded.get(r.key)
        if error is None and found is not None:
            r.present = found
            r.status.series = len(found)
        self._health(r, error)

    def _alerted(self, r: LiveRule, group: LiveGroup, computed: Computed, at_ms: int,
                 alerts: list[Alert], records: list[TransitionRecord],
                 states: list[StoredState]) -> None:
        error = r.broken or computed.errors.get(r.key)
        adv = None
        if error is None:
            adv, error = advance(r, computed.results, at_ms, group.query_offset_ms)
        self._health(r, error)
        if adv is None:
            return
        assert r.machine is not None
        records.extend(TransitionRecord.of(r.rule.name, t) for t in adv.transitions)
        self._audit_transitions(r, adv.transitions)
        current = r.machine.alerts()
        counts = {s: 0 for s in AlertState}
        told: dict[Labels, Alert] = {}
        for a in current:
            counts[a.state] += 1
            if _told(a):
                told[a.labels] = self._notify(r, a)
        r.status.pending = counts[AlertState.PENDING]
        r.status.firing = counts[AlertState.FIRING]
        r.status.nodata = counts[AlertState.NODATA]
        alerts.extend(told.values())
        alerts.extend(a.resolved(at_ms) for labels, a in r.sent.items() if labels not in told)
        r.sent = told
        key = r.machine.state_key()
        if key != r.saved:
            states.append(StoredState(r.key, r.rule.name, r.rule.group, r.rule.file,
                                      r.signature, r.machine.snapshot(), at_ms))
            r.saved = key

    def _persist(self, group_key: str, records: list[TransitionRecord],
                 states: list[StoredState]) -> None:
        """History and state in the database; a failure is logged, the engine goes on.

        Both go in one transaction when the tables share a database (a commit
        costs milliseconds, and a cycle persists hundreds of groups); if that
        fails, each is tried on its own, so one table's failure keeps the other.
        """
        if not records and not states:
            return
        if self._one_transaction:
            try:
                with in_transaction(self._state.conn):
                    insert_transitions(self._state.conn, records)
                    self._state.write(states)
                return
            except duckdb.Error:
                pass  # each on its own below: the error is logged there
        try:
            self._history.add(records)
        except duckdb.Error as exc:
            log.error("rule group %s: %d transition(s) not recorded: %s", group_key,
                      len(records), exc)
        try:
            self._state.save(states)
        except duckdb.Error as exc:
            log.error("rule group %s: alert state not saved: %s", group_key, exc)
            for st in states:  # try again after the next evaluation
                for r in self._groups[group_key].alerting:
                    if r.key == st.rule_key:
                        r.saved = None

    def _health(self, r: LiveRule, error: str | None) -> None:
        before = r.status.health
        r.status.health = "ok" if error is None else "err"
        r.status.last_error = error
        if self._audit is None or before == r.status.health or \
                (before == "unknown" and error is None):
            return
        self._audit({
            "event_type": "system", "action": "rule_failed" if error else "rule_recovered",
            "severity": "error" if error else "info",
            "resource": f"rule:{r.rule.group}/{r.rule.name}",
            "details": {"rule": r.rule.name, "group": r.rule.group, "file": r.rule.file,
                        "error": error}})

    def _audit_transitions(self, r: LiveRule, transitions: list[Transition]) -> None:
        if self._audit is None:
            return
        for t in transitions:
            if t.new is AlertState.FIRING:
                action, severity = "firing", "warning"
            elif t.old is AlertState.FIRING and t.new is AlertState.INACTIVE:
                action, severity = "resolved", "info"
            else:
                continue
            labels = dict(t.alert)
            self._audit({
                "event_type": "alert", "action": action, "severity": severity,
                "resource": f"alert:{fingerprint(labels)}",
                "details": {"rule": r.rule.name, "group": r.rule.group,
                            "fingerprint": fingerprint(labels), "labels": labels,
                            "at_ms": t.time_ms, "value": repr(t.value)}})

    def _notify(self, r: LiveRule, a: MachineAlert) -> Alert:
        """The notification side's view of a firing alert of rule ``r``."""
        start = a.fired_at_ms if a.fired_at_ms is not None else a.active_at_ms
        return Alert(dict(a.labels), dict(a.annotations), FIRING, start, None,
                     finite(a.last_value), r.rule.name, r.channels, r.escalation,
                     r.cooldown_ms)

    def _counts(self) -> dict[str, int]:
        out = {"pending": 0, "firing": 0, "nodata": 0}
        for r in self._alerting():
            out["pending"] += r.status.pending
            out["firing"] += r.status.firing
            out["nodata"] += r.status.nodata
        return out


def _told(a: MachineAlert) -> bool:
    """Whether notifications treat the alert as firing (see the module docstring)."""
    if a.state is AlertState.FIRING:
        return True
    return a.state is AlertState.NODATA and (a.fired_at_ms is not None
                                             or NODATA_LABEL in a.labels)


def _moved(old: RuleStatus, new: RuleStatus) -> RuleStatus:
    """A kept rule's status under its (possibly new) group position and query text."""
    old.query = new.query
    return old
