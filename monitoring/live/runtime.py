"""The running engine's wiring: one event loop, one DuckDB file, every component connected.

Why one module owns the wiring: each component (scheduler, pipeline, escalations, outbox,
channels, collectors) is small and tested alone on a fake clock; what remains is the flow
between them, and it lives here so that ``monitoring serve`` and ``MonitoringSystem`` run the
same engine::

    collectors, DemoFeed, record() ─► Store (through StoreAccess, one thread)
    LiveEvaluator ─ on_alerts ─► Pipeline.ingest + Escalations.observe
    notify loop: Pipeline.flush() + Escalations.due() at their next_due_ms ─► Outbox.enqueue
    Deliverer ─► channels ─► delivery log (and the ledger)

Every decision goes to the audit ledger (:class:`~monitoring.live.audit_sink.LedgerSink`),
opened on the same DuckDB file. All timing goes through ``clock`` so that ``--demo`` (a
:class:`~monitoring.notify.model.ScaledClock`) and tests run the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb

from monitoring.audit.ledger import Ledger
from monitoring.audit.policy import AuditPolicy
from monitoring.dryrun.ruleset import RuleSet
from monitoring.dsl.config import Config
from monitoring.dsl.loader import load_paths
from monitoring.engine.store import Store
from monitoring.live import rules_api
from monitoring.live.audit_sink import LedgerSink
from monitoring.live.rules_api import ApiRule, ApiRuleStore, RuleError, RuleInfo
from monitoring.notify.model import (
    Alert,
    AuditSink,
    Clock,
    Message,
    SystemClock,
    message_id,
    sleep_or,
)

log = logging.getLogger("monitoring.live")

ACK_CHANNEL_TYPES = ("pagerduty", "slack", "webhook")
"""Channel types told of an acknowledgement besides the escalation's (see _ack_receivers)."""
FIRST_PULL_MAX_MS = 6 * 3_600_000
"""How far back the first pull from ``prometheus_url`` reaches at most."""
SHIP_EVERY_MS = 30_000
"""How often (engine clock) new ledger entries are copied to Elasticsearch."""

DEFAULT_DB = Path("var/monitoring.duckdb")
COLLECT_INTERVAL_MS = 15_000
"""How often (clock time) collected samples, demo samples and record() values are written."""
DEMO_BACKFILL_HOURS = 6.0
IDLE_MS = 60_000
"""The notify loop looks again after this long (clock time) even when nothing is due."""
Sample = tuple[dict[str, str], int, float]


@dataclass
class RuntimeOptions:
    """What the engine runs on: files, the store, the clock, and what it collects."""

    paths: Sequence[str | Path] = ("rules",)
    """Rule files and folders, and configuration files (the loader tells them apart)."""
    config_dir: str | Path | None = None
    """A folder with notification_config.yaml, escalation_policies.yaml, audit_filters.yaml,
    routing.yaml, oncall.yaml (all optional); loaded after ``paths``."""
    db: str | Path = DEFAULT_DB
    clock: Clock = field(default_factory=SystemClock)
    console: bool = True
    collect_system: bool = True
    prometheus_url: str | None = None
    elasticsearch_url: str | None = None
    demo: bool = False
    demo_seed: int = 1
    external_url: str = "http://127.0.0.1:9464"
    collect_interval_ms: int = COLLECT_INTERVAL_MS
    freeze_heap: bool = False
    """Freeze the heap after the first evaluation of every group (see
    :mod:`monitoring.live.heap`): for a process of the engine's own."""
    ledger_options: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of :meth:`Ledger.open` (key_path, kek_path: tests)."""

    def load_paths(self) -> list[Path]:
        """The rule and configuration paths, the config folder last, without duplicates."""
        out = [Path(p) for p in self.paths]
        if self.config_dir is not None and Path(self.config_dir).is_dir():
            cfg = Path(self.config_dir)
            if all(cfg.resolve() != p.resolve() for p in out):
                out.append(cfg)
        return out


class Runtime:
    """The engine: :meth:`open` builds it (no tasks), :meth:`start`/:meth:`stop` run it."""

    def __init__(self, options: RuntimeOptions) -> None:
        self.options = options
        self.clock = options.clock
        self.opened = False
        self.running = False
        self.started_ms: int | None = None
        self.broken_rules: dict[str, str] = {}
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._records: list[Sample] = []
        self._last_pull_ms: int | None = None

    # ------------------------------------------------------------ opening

    def open(self) -> None:
        """Open the store and the ledger, load the rules and build every component."""
        if self.opened:
            return
        opts = self.options
        db = Path(opts.db)
        db.parent.mkdir(parents=True, exist_ok=True)
        self.paths = opts.load_paths()
        ws = load_paths(self.paths)
        self.config: Config = ws.config
        self.store = Store(db)
        self.conn = duckdb.connect(str(db))  # the same database instance as the store's
        try:
            self.ledger = Ledger.open(self.conn, policy=AuditPolicy.from_config(ws.config),
                                      **dict(opts.ledger_options))
        except BaseException:
            self.conn.close()
            self.store.close()
            raise
        try:
            self._build()
        except BaseException as exc:
            self._close_storage()
            if getattr(exc, "diagnostics", None) and not isinstance(exc, RuleError):
                diags = getattr(exc, "diagnostics")  # noqa: B009
                raise RuleError(rules_api.render(diags), diags) from None
            if type(exc).__name__ == "ChannelConfigError":
                raise RuleError(str(exc)) from None
            raise
        self.opened = True

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        return self.conn.cursor()

    def _build(self) -> None:
        from monitoring.live.alert_state import AlertStateStore
        from monitoring.live.history import AlertHistory
        from monitoring.live.metrics import EngineMetrics
        from monitoring.live.scheduler import LiveEvaluator
        from monitoring.live.store_access import StoreAccess
        from monitoring.notify.acks import AckStore
        from monitoring.notify.channels.base import ChannelContext
        from monitoring.notify.channels.registry import build_channels
        from monitoring.notify.channels.state import DuckChannelState
        from monitoring.notify.delivery import Deliverer
        from monitoring.notify.escalation import Escalations
        from monitoring.notify.outbox import Outbox
        from monitoring.notify.pipeline import Pipeline
        from monitoring.notify.silences import SilenceStore

        opts, clock = self.options, self.clock
        self.metrics = EngineMetrics()
        self.sink = LedgerSink(self.ledger, on_failure=self._audit_failed)
        self.audit: AuditSink = self.sink
        self.api_rules = ApiRuleStore(self._cursor(), clock, self.audit)
        self.rule_set = self._load_rules()
        self.access = StoreAccess(self.store)
        self.alert_state = AlertStateStore(self._cursor())
        self.history = AlertHistory(self._cursor())
        self.evaluator = LiveEvaluator(self.rule_set, self.access, self.alert_state,
                                       self.history, clock, on_alerts=self._on_alerts,
                                       audit=self.audit, metrics=self.metrics,
                                       freeze_heap=opts.freeze_heap)
        self.silences = SilenceStore(self._cursor(), clock, self.audit)
        self.channel_names = tuple(c.name.value for c in self.config.channels)
        # One connection for the outbox and the pipeline's notification log: notify_once
        # takes what is due and enqueues it in one transaction.
        self.outbox = Outbox(self._cursor(), clock)
        routing_file = self._find_config("routing.yaml")
        self._default_routing = routing_file is None
        self.pipeline = Pipeline(self._routing(), self.silences, self.outbox.conn,
                                 clock, self.audit)
        context = ChannelContext(clock, DuckChannelState(self._cursor()), self._plot_source(),
                                 opts.external_url)
        self.channels = build_channels(self.config.channels, context, console=opts.console)
        self.deliverer = Deliverer(self.outbox, self.channels, clock, audit=self.audit,
                                   on_result=self._delivered)
        self.acks = AckStore(self._cursor(), clock, self.audit)
        policies = {p.name.value: p for p in self.config.policies}
        configured = {c.name.value: c for c in self.config.channels}
        self.escalations = Escalations(self._cursor(), policies, configured, self._oncall(),
                                       self.acks, clock, self.audit, muted=self._silenced)
        self.collectors = self._collectors()
        self.shipper = self._shipper()

    def _shipper(self) -> Any:
        """With ``elasticsearch_url``: the ledger's shipper (audit/elastic.py), else None."""
        if not self.options.elasticsearch_url:
            return None
        from monitoring.audit.elastic import ElasticShipper, connect

        return ElasticShipper(connect(self.options.elasticsearch_url))

    def ship_once(self) -> Any:
        """Copy the ledger's new entries to Elasticsearch; the report, or None on failure.

        Runs in a worker thread with its own cursor. Elasticsearch is a copy and an index,
        never the record: a failure is logged and counted, and the next round resumes after
        the highest entry the index holds.
        """
        from monitoring.audit.errors import AuditError
        from monitoring.audit.storage import LedgerStorage

        cursor = self.conn.cursor()
        try:
            report = self.shipper.ship(LedgerStorage(cursor))
        except AuditError as exc:
            log.warning("shipping the audit ledger to Elasticsearch failed: %s", exc)
            self.metrics.audit_failure()
            return None
        finally:
            cursor.close()
        if not report.ok:
            log.error("Elasticsearch holds documents that differ from the ledger: %s", report)
            self.metrics.audit_failure()
        return report

    async def _ship_loop(self) -> None:
        while not self._stop.is_set():
            await asyncio.to_thread(self.ship_once)
            await sleep_or(self.clock, SHIP_EVERY_MS, self._stop)

    def _load_rules(self) -> RuleSet:
        rule_set, broken = rules_api.load_rule_set(self.paths, self.api_rules.all())
        self.broken_rules = broken
        for name, problems in broken.items():
            log.error("API rule %s no longer compiles and is not evaluated:\n%s", name, problems)
        return rule_set

    def _find_config(self, name: str) -> Path | None:
        """``name`` (routing.yaml, oncall.yaml) in the config folder or a folder of paths."""
        folders = [p for p in reversed(self.paths) if p.is_dir()]
        folders += [p.parent for p in self.paths if p.is_file() and p.name == name]
        return next((f / name for f in folders if (f / name).is_file()), None)

    def _routing(self) -> Any:
        """routing.yaml if there is one; else the console (when on) gets every alert.

        Without routing.yaml an alert goes to its rule's channels, and the alerts of a
        rule that names none to every configured channel (as the dry-run counts them,
        docs/dryrun.md); see :meth:`_on_alerts`.
        """
        from monitoring.notify.routing_config import RoutingConfig, load_routing_config

        console = ("console",) if self.options.console else ()
        path = self._find_config("routing.yaml")
        if path is None:
            return RoutingConfig.default(console)
        return load_routing_config(path, (*self.channel_names, *console))

    def _oncall(self) -> Any:
        path = self._find_config("oncall.yaml")
        if path is None:
            return None
        from monitoring.notify.oncall_config import load_oncall

        return load_oncall(path)

    def _collectors(self) -> list[Callable[[int], Awaitable[list[Sample]] | list[Sample]]]:
        opts = self.options
        self.puller: Any = None
        out: list[Callable[[int], Awaitable[list[Sample]] | list[Sample]]] = []
        if opts.collect_system:
            from monitoring.live.collect_system import SystemCollector

            out.append(SystemCollector().collect)
        if opts.demo:
            from monitoring.live.demo_feed import DemoFeed

            feed = DemoFeed(self.clock.now_ms(), seed=opts.demo_seed)
            if self.store.time_range() is None:
                feed.backfill(self.store, DEMO_BACKFILL_HOURS)
            out.append(feed.samples_until)
        if opts.prometheus_url:
            from monitoring.live.prom_pull import PrometheusPuller, rule_selectors

            self.puller = PrometheusPuller(opts.prometheus_url, rule_selectors(self.rule_set))
            self._pulled_rules: RuleSet | None = self.rule_set
            out.append(self._pull)
        return out

    async def _pull(self, now_ms: int) -> list[Sample]:
        """New samples of what the rules read from ``prometheus_url``.

        The first pull reaches back as far as the rules read (their longest window,
        capped at :data:`FIRST_PULL_MAX_MS`), so windowed rules see full windows at once;
        later pulls take what came since. The selectors follow rule changes.
        """
        from monitoring.live.prom_pull import rule_lookback_ms, rule_selectors

        puller = self.puller
        if self._pulled_rules is not self.rule_set:  # rules changed: new selectors
            puller.selectors = rule_selectors(self.rule_set)
            self._pulled_rules = self.rule_set
        if self._last_pull_ms is None:
            reach = min(max(rule_lookback_ms(self.rule_set), self.options.collect_interval_ms),
                        FIRST_PULL_MAX_MS)
            since = now_ms - reach
        else:
            since = self._last_pull_ms
        samples: list[Sample] = await puller.pull(since, now_ms)
        self._last_pull_ms = now_ms
        return samples

    def _plot_source(self) -> Any:
        from monitoring.notify.channels.plot import store_plot_source

        return store_plot_source(self._plot_series)

    def _plot_series(self, message: Message) -> list[tuple[Mapping[str, str], list[int],
                                                           list[float]]]:
        """What an email's plot shows: the value the rule compares, around the alerts.

        The value is the condition's left side (``avg_over_time(error_rate[5m])`` of
        ``... > 5``), as the dry-run's report plots it, evaluated over the plot window
        at the rule's interval (500 points at most) and kept for the series whose labels
        agree with an alert of the message. Called from a channel's worker thread.
        """
        from monitoring.dryrun.values import value_of
        from monitoring.engine.evaluator import evaluate
        from monitoring.notify.channels.plot import plot_window

        lo, hi = plot_window(message)
        names = {a.labels.get("alertname", a.rule) for a in message.alerts}
        rule = next((r for r in self.rule_set.rules if r.kind == "alert" and r.name in names),
                    None)
        if rule is None:
            return []
        node = value_of(rule.condition).node
        step = max(rule.interval_ms, (hi - lo) // 500, 1)

        def read(store: Store) -> Any:
            return evaluate(node, store, lo, hi, step)

        result = self.access.run_sync(read)
        wanted = [a.labels for a in message.alerts]
        out: list[tuple[Mapping[str, str], list[int], list[float]]] = []
        for series in result.series:
            labels = dict(series.labels)
            if any(all(want.get(k, v) == v for k, v in labels.items()) for want in wanted):
                out.append((labels, [int(t) for t in series.ts],
                            [float(v) for v in series.values]))
        return out

    # ------------------------------------------------------------ running

    async def start(self) -> None:
        """Open if needed and start the loops (evaluation, notification, delivery, collection)."""
        if self.running:
            return
        self.open()
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self.started_ms = self.clock.now_ms()
        self.audit({"event_type": "system", "action": "engine.start", "severity": "notice",
                    "resource": "engine",
                    "details": {"rules": len(self.rule_set.rules), "db": str(self.options.db),
                                "channels": sorted(self.channels)}})
        await self._collect_once()
        self._tasks = [
            asyncio.create_task(self._guard("collect", self._collect_loop)),
            asyncio.create_task(self._guard("evaluate", lambda: self.evaluator.run(self._stop))),
            asyncio.create_task(self._guard("notify", self._notify_loop)),
            asyncio.create_task(self._guard("deliver", lambda: self.deliverer.run(self._stop))),
        ]
        if self.shipper is not None:
            self._tasks.append(asyncio.create_task(self._guard("ship", self._ship_loop)))
        self.running = True

    async def _guard(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one loop; an unexpected error is logged and the loop restarted (not the engine)."""
        while not self._stop.is_set():
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the %s loop failed; restarting it", name)
                await self._sleep(1_000)

    async def stop(self) -> None:
        """Stop the loops, deliver what is due once more, close everything (idempotent)."""
        if self.running:
            self.running = False
            self._stop.set()
            self._wake.set()
            self.deliverer.wake()
            _done, pending = await asyncio.wait(self._tasks, timeout=10.0)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
            self.audit({"event_type": "system", "action": "engine.stop", "severity": "notice",
                        "resource": "engine",
                        "details": {"pending_notifications": self.outbox.pending()}})
            if self.shipper is not None:  # the last entries too, engine.stop included
                await asyncio.to_thread(self.ledger.flush)
                await asyncio.to_thread(self.ship_once)
        await self.close()

    async def close(self) -> None:
        """Close channels, the store thread, the ledger and the database (idempotent)."""
        if not self.opened:
            return
        self.opened = False
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.aclose()
        if self.puller is not None:
            with contextlib.suppress(Exception):
                await self.puller.aclose()
        self.access.close()
        self._close_storage()

    def _close_storage(self) -> None:
        try:
            self.ledger.close()
        finally:
            self.conn.close()
            self.store.close()

    async def _sleep(self, ms: int) -> None:
        """Sleep ``ms`` of clock time, or less when the engine stops or is woken."""
        await sleep_or(self.clock, ms, self._stop, self._wake)

    # ------------------------------------------------------------ the flow

    async def _on_alerts(self, alerts: list[Alert]) -> None:
        """The evaluator's output: into the pipeline and the escalations, then notify."""
        if not alerts:
            return
        if self._default_routing and self.channel_names:
            alerts = [a if a.channels else replace(a, channels=self.channel_names)
                      for a in alerts]
        self.pipeline.ingest(alerts)
        self.escalations.observe(alerts)
        self._wake.set()

    async def _notify_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self.notify_once()
            nexts = [t for t in (self.pipeline.next_due_ms(), self.escalations.next_due_ms())
                     if t is not None]
            delay = min([IDLE_MS, *(t - self.clock.now_ms() for t in nexts)])
            await self._sleep(max(delay, 1))

    def notify_once(self) -> int:
        """Enqueue what the pipeline and the escalations have due now; returns how many."""
        with self.outbox.transaction():
            messages: list[Message] = [*self.pipeline.flush(), *self.escalations.due()]
            return self.enqueue(messages)

    def enqueue(self, messages: Sequence[Message]) -> int:
        if not messages:
            return 0
        added = self.outbox.enqueue(messages)
        self.deliverer.wake()
        return added

    def _delivered(self, message: Message, result: Any) -> None:
        self.metrics.notification(message.channel, bool(result.ok))

    def _audit_failed(self, reason: str) -> None:
        self.metrics.audit_failure()

    def _silenced(self, alert: Alert) -> bool:
        return bool(self.silences.silencing(alert.labels))

    # ------------------------------------------------------------ collection

    async def _collect_loop(self) -> None:
        interval = self.options.collect_interval_ms
        while not self._stop.is_set():
            now = self.clock.now_ms()
            await sleep_or(self.clock, interval - now % interval, self._stop)
            if self._stop.is_set():
                return
            await self._collect_once()

    async def _collect_once(self) -> int:
        """One collection: every collector, the records, the engine's own metrics."""
        now = self.clock.now_ms()
        samples: list[Sample] = []
        for collect in self.collectors:
            try:
                got = collect(now)
                samples.extend(await got if inspect.isawaitable(got) else got)
            except Exception as exc:
                log.warning("collection failed: %s", exc)
        samples.extend(self._drain_records())
        self._update_metrics()
        samples.extend(self.metrics.samples(now))
        if not samples:
            return 0
        return await self.access.append(samples)

    def _update_metrics(self) -> None:
        self.metrics.queue_depth(self.outbox.pending())
        self.metrics.ledger_size(self.ledger.size)

    def record(self, metric: str, value: float, labels: Mapping[str, str] | None = None,
               timestamp_ms: int | None = None) -> None:
        """Buffer one custom sample; written with the next collection."""
        row = {**(labels or {}), "__name__": metric}
        ts = self.clock.now_ms() if timestamp_ms is None else timestamp_ms
        self._records.append((row, ts, float(value)))

    def _drain_records(self) -> list[Sample]:
        out, self._records = self._records, []
        return out

    async def flush_records(self) -> int:
        """Write the buffered records now (tests, and MonitoringSystem.stop)."""
        samples = self._drain_records()
        if not samples:
            return 0
        return await self.access.append(samples)

    # ------------------------------------------------------------ operations (API, CLI)

    def alert_views(self) -> list[dict[str, Any]]:
        """Every active alert (pending, firing, no-data) and what the pipeline does with it."""
        statuses = {st.alert.fingerprint: st for st in self.pipeline.statuses()}
        escalating = {e.fingerprint: e for e in self.escalations.active()}
        out = []
        for alert in self.evaluator.alerts():
            view = alert.to_json()
            st = statuses.get(alert.fingerprint)
            view["notification"] = {"state": "unprocessed"} if st is None else {
                "state": st.state, "silenced_by": list(st.silenced_by),
                "inhibited_by": list(st.inhibited_by), "muted": st.muted,
                "cooldown": st.cooldown, "receivers": list(st.receivers)}
            esc = escalating.get(alert.fingerprint)
            view["escalation"] = None if esc is None else esc.to_json()
            out.append(view)
        return out

    def rule_views(self) -> list[dict[str, Any]]:
        return [_jsonable(status) for status in self.evaluator.rules()]

    async def acknowledge(self, fingerprint: str, *, by: str, comment: str = "") -> int:
        """Acknowledge an alert: stops its escalation; returns the messages enqueued.

        Raises KeyError for a fingerprint that is neither an active alert nor escalating
        (a typo must not be recorded as an acknowledgement).
        """
        known = self.escalations.status(fingerprint) is not None or any(
            a.fingerprint == fingerprint for a in self.evaluator.alerts())
        if not known:
            raise KeyError(f"no active alert with fingerprint {fingerprint}")
        messages = self.escalations.acknowledge(fingerprint, by=by, comment=comment)
        messages += self._ack_receivers(fingerprint, {m.channel for m in messages}, by, comment)
        return self.enqueue(messages)

    def _ack_receivers(self, fingerprint: str, told: set[str], by: str,
                       comment: str) -> list[Message]:
        """Messages of kind ``acknowledged`` to the alert's routed receivers where it matters.

        PagerDuty acknowledges the incident (same dedup key: the channel finds the incident
        by the alert), Slack posts in the alert's thread, a webhook receiver gets the event;
        email and the console are not told (a mail per acknowledgement is noise), nor
        receivers the escalation already told.
        """
        status = next((s for s in self.pipeline.statuses()
                       if s.alert.fingerprint == fingerprint and s.alert.status == "firing"),
                      None)
        if status is None:
            return []
        note = {"acknowledged_by": by, **({"acknowledged_comment": comment} if comment else {})}
        alert = replace(status.alert, annotations={**status.alert.annotations, **note})
        now = self.clock.now_ms()
        group_key = f"ack/{fingerprint}/{status.alert.starts_at_ms}"
        out: list[Message] = []
        for receiver in status.receivers:
            channel = self.config.channel(receiver)
            if receiver in told or channel is None or channel.type not in ACK_CHANNEL_TYPES:
                continue
            out.append(Message(message_id(receiver, "acknowledged", group_key, [alert], now),
                               receiver, "acknowledged", group_key, (alert,), now))
        return out

    def silence(self, matchers: str | Sequence[str], *, ends_ms: int,
                starts_ms: int | None = None, created_by: str, comment: str) -> Any:
        silence = self.silences.create(matchers, ends_ms=ends_ms, starts_ms=starts_ms,
                                       created_by=created_by, comment=comment)
        self._wake.set()
        return silence

    def expire_silence(self, silence_id: str, by: str) -> Any:
        silence = self.silences.expire(silence_id, by)
        self._wake.set()
        return silence

    def add_rule(self, rule: ApiRule, *, by: str = "api") -> RuleInfo:
        """Validate an API rule against the files and the others, store it, run it."""
        rule_set, warnings = rules_api.validate(self.paths, self.api_rules.all(), rule)
        self.api_rules.put(rule, by=by)
        self._use_rules(rule_set)
        return rules_api.info(rule, rule_set, warnings)

    def delete_rule(self, name: str, *, by: str = "api") -> bool:
        old = self.api_rules.get(name)
        if old is None:
            return False
        self.api_rules.delete(name, by=by)
        self._use_rules(self._load_rules())
        return True

    def _use_rules(self, rule_set: RuleSet) -> None:
        self.rule_set = rule_set
        self.evaluator.replace_rules(rule_set)

    def status(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "started_ms": self.started_ms,
            "now_ms": self.clock.now_ms(),
            "db": str(self.options.db),
            "rules": len(self.rule_set.rules),
            "broken_api_rules": sorted(self.broken_rules),
            "channels": sorted(self.channels),
            "outbox": self.outbox.counts(),
            "ledger": {"size": self.ledger.size, "origin": self.ledger.origin,
                       "submitted": self.sink.submitted, "failures": self.sink.failures,
                       "last_error": self.sink.last_error},
        }


def _jsonable(value: Any) -> Any:
    """A status object (dataclass or with to_json) as JSON data."""
    to_json = getattr(value, "to_json", None)
    if callable(to_json):
        return to_json()
    import dataclasses

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


__all__ = ["DEFAULT_DB", "RuleError", "Runtime", "RuntimeOptions"]
