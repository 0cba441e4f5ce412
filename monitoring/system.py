"""``MonitoringSystem``: the engine as a library, used the way the seed shows it.

For example::

    monitoring = MonitoringSystem(config_dir="config", elasticsearch_url=None,
                                  prometheus_url=None)
    await monitoring.create_alert_rule(
        name="high_error_rate",
        condition={"type": "threshold", "metric": "error_rate", "operator": ">", "value": 5.0},
        severity="critical", channels=["email", "slack"])
    await monitoring.log_audit_event(event_type="authentication", action="login",
                                     user_id="user123", severity="info")
    monitoring.record("error_rate", 7.5, {"job": "api"})
    async with monitoring:            # start() ... stop()
        ...

It is a thin shell over :class:`~monitoring.live.runtime.Runtime` (what ``monitoring serve``
runs), so the library and the server are one engine. The store and the ledger are opened on
first use (creating a rule or logging an event works before :meth:`start`); the loops and,
with ``http_port``, the HTTP API run between :meth:`start` and :meth:`stop`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from monitoring.live.rules_api import RuleError, RuleInfo, dsl_rule, seed_rule
from monitoring.live.runtime import DEFAULT_DB, Runtime, RuntimeOptions
from monitoring.notify.model import Clock, SystemClock

if TYPE_CHECKING:
    from monitoring.audit.ledger import Appended
    from monitoring.live.server import HttpServer

__all__ = ["MonitoringSystem", "RuleError", "RuleInfo"]


class MonitoringSystem:
    """Rules evaluated continuously, notifications, escalation, audit: in one process.

    ``config_dir`` holds notification_config.yaml, escalation_policies.yaml,
    audit_filters.yaml, routing.yaml and oncall.yaml (each optional) and, unless
    ``rules_dir`` says otherwise, the rule files. ``db`` is the one DuckDB file for metrics,
    alert state, the outbox and the audit ledger. ``prometheus_url``: the series the rules
    read are pulled from that Prometheus on every collection. ``console`` adds a console
    channel (stdout); ``http_port`` serves /metrics and the JSON API on 127.0.0.1 (0: a free
    port, see :attr:`url`). ``freeze_heap`` keeps the garbage collector off the engine's
    long-lived objects once every group has been evaluated (process-wide:
    :mod:`monitoring.live.heap`); ``monitoring serve`` turns it on.
    """

    def __init__(self, config_dir: str | Path = "config", elasticsearch_url: str | None = None,
                 prometheus_url: str | None = None, db: str | Path = DEFAULT_DB, *,
                 rules_dir: str | Path | None = None, clock: Clock | None = None,
                 console: bool = False, http_port: int | None = None,
                 http_host: str = "127.0.0.1", collect_system: bool = True,
                 demo: bool = False, ledger_options: Mapping[str, Any] | None = None,
                 freeze_heap: bool = False) -> None:
        config = Path(config_dir)
        rules = Path(rules_dir) if rules_dir is not None else config
        paths = [p for p in dict.fromkeys([rules, config]) if p.exists()]
        self.clock = clock if clock is not None else SystemClock()
        self.elasticsearch_url = elasticsearch_url
        self.http_host = http_host
        self.http_port = http_port
        self.runtime = Runtime(RuntimeOptions(
            paths=paths, config_dir=None, db=Path(db), clock=self.clock, console=console,
            collect_system=collect_system, prometheus_url=prometheus_url,
            elasticsearch_url=elasticsearch_url, demo=demo,
            external_url=f"http://{http_host}:{http_port or 9464}",
            ledger_options=dict(ledger_options or {}), freeze_heap=freeze_heap))
        self._http: HttpServer | None = None

    # ------------------------------------------------------------ lifecycle

    def _opened(self) -> Runtime:
        self.runtime.open()
        return self.runtime

    async def start(self) -> None:
        """Open the store and the ledger, start evaluating, notifying and (maybe) serving."""
        await self.runtime.start()
        if self.http_port is not None and self._http is None:
            from monitoring.live.server import HttpServer

            self._http = HttpServer(self.runtime, self.http_host, self.http_port)
            await self._http.start()

    async def stop(self) -> None:
        """Stop the loops and the server; write buffered records; close everything."""
        if self._http is not None:
            await self._http.stop()
            self._http = None
        if self.runtime.opened:
            await self.runtime.flush_records()
        await self.runtime.stop()

    async def __aenter__(self) -> MonitoringSystem:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def url(self) -> str | None:
        """Where the HTTP API is served (None: not serving)."""
        return self._http.url if self._http is not None else None

    # ------------------------------------------------------------ rules

    async def create_alert_rule(self, name: str | None = None,
                                condition: Mapping[str, Any] | None = None,
                                severity: str | None = None, channels: Sequence[str] = (), *,
                                description: str = "", tags: Iterable[str] = (),
                                cooldown: int | str | None = None, for_: int | str | None = None,
                                labels: Mapping[str, str] | None = None,
                                escalation: str | None = None, dsl: str | None = None,
                                created_by: str = "api") -> RuleInfo:
        """Add (or replace) a rule: the seed's fields, or DSL text in ``dsl``.

        The rule is compiled and linted with the rule files and the configuration; an
        error-level finding raises :class:`RuleError` whose message is the rendered
        diagnostics (``api/<name>.yaml:LINE:COL: error[...]``). An accepted rule is stored in
        the database (it survives a restart), audited as ``rule_change``, and evaluated from
        the next cycle on.
        """
        if dsl is not None:
            rule = dsl_rule(dsl, name)
        else:
            rule = seed_rule(name, condition, severity, channels, description=description,
                             tags=tags, cooldown=cooldown, for_=for_, labels=labels,
                             escalation=escalation)
        return self._opened().add_rule(rule, by=created_by)

    async def delete_alert_rule(self, name: str, *, by: str = "api") -> bool:
        """Remove an API rule; False when there is none of that name."""
        return self._opened().delete_rule(name, by=by)

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule with its health (from the evaluator)."""
        return self._opened().rule_views()

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their notification status."""
        return self._opened().alert_views()

    # ------------------------------------------------------------ data and audit

    def record(self, metric: str, value: float, labels: Mapping[str, str] | None = None, *,
               timestamp_ms: int | None = None) -> None:
        """Record a custom metric sample (buffered; written at the next collection)."""
        if not isinstance(metric, str) or not metric:
            raise ValueError("metric: expected a metric name")
        self.runtime.record(metric, float(value), labels, timestamp_ms)

    async def flush(self) -> int:
        """Write the buffered :meth:`record` samples now; returns how many."""
        return await self._opened().flush_records()

    async def log_audit_event(self, **fields: Any) -> Appended:
        """Record an audit event (the seed's fields) in the ledger; returns once durable."""
        return await self._opened().ledger.log(fields)

    # ------------------------------------------------------------ operations

    async def silence(self, matchers: str | Sequence[str], *, duration: str | int | None = None,
                      ends_ms: int | None = None, starts_ms: int | None = None,
                      created_by: str, comment: str) -> Any:
        """Silence alerts matching ``matchers`` for ``duration`` (``"2h"``) or until ``ends_ms``."""
        from monitoring.live.server import parse_silence

        rt = self._opened()
        body: dict[str, Any] = {"matchers": matchers, "created_by": created_by,
                                "comment": comment}
        if duration is not None:
            body["duration"] = duration
        if ends_ms is not None:
            body["ends_at"] = ends_ms / 1000
        if starts_ms is not None:
            body["starts_at"] = starts_ms / 1000
        req = parse_silence(body, self.clock.now_ms())
        return rt.silence(req.matchers, ends_ms=req.ends_ms, starts_ms=req.starts_ms,
                          created_by=req.created_by, comment=req.comment)

    async def acknowledge(self, fingerprint: str, by: str, comment: str = "") -> int:
        """Acknowledge an alert (stops its escalation); returns the messages it caused."""
        return await self._opened().acknowledge(fingerprint, by=by, comment=comment)
