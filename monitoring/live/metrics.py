"""The engine's own metrics: on ``/metrics`` for Prometheus, and in the store for our rules.

Why both: an operator scrapes ``/metrics`` with the Prometheus they already
run; the embedded default has no Prometheus, so :meth:`EngineMetrics.samples`
writes the same values into the metric store each cycle and rules can alert on
the engine itself (evaluation failures, a growing outbox). The metrics live in
their own :class:`~prometheus_client.CollectorRegistry`, never the global one,
so two engines in one process (tests) do not share counters.

Names (all prefixed ``monitoring_``; docs/live.md, section "Collection", lists them):

=============================================== ========= ===============================
name                                            type      labels
=============================================== ========= ===============================
``monitoring_rule_evaluation_duration_seconds`` histogram ``group``
``monitoring_rule_evaluations_total``           counter   ``group``
``monitoring_rule_evaluation_failures_total``   counter   ``group``
``monitoring_rule_evaluations_missed_total``    counter   ``group``
``monitoring_rule_evaluation_lag_seconds``      gauge     ``group``
``monitoring_alerts``                           gauge     ``state``
``monitoring_notifications_sent_total``         counter   ``channel``
``monitoring_notifications_failed_total``       counter   ``channel``
``monitoring_outbox_pending``                   gauge
``monitoring_ledger_entries``                   gauge
``monitoring_audit_failures_total``             counter
=============================================== ========= ===============================
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

Sample = tuple[dict[str, str], int, float]

DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)
"""Evaluation duration buckets (seconds): a cycle of a few rules takes milliseconds."""
ALERT_STATES = ("pending", "firing")
"""States reported even when no alert is in them (a 0 is an answer, a missing series is not)."""


class EngineMetrics:
    """Counters, gauges and a histogram about the running engine (see the module docstring).

    Every method is cheap and never raises for ordinary values; callers are the
    scheduler (evaluations), the runtime (alerts, outbox, ledger) and the
    deliverer's ``on_result`` (notifications).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._duration = Histogram(
            "monitoring_rule_evaluation_duration_seconds",
            "Time one evaluation of a rule group took", ["group"], registry=r,
            buckets=DURATION_BUCKETS)
        self._evaluations = Counter(
            "monitoring_rule_evaluations", "Evaluations of a rule group", ["group"], registry=r)
        self._failures = Counter(
            "monitoring_rule_evaluation_failures",
            "Evaluations of a rule group in which at least one rule failed", ["group"], registry=r)
        self._missed = Counter(
            "monitoring_rule_evaluations_missed",
            "Evaluation times of a rule group skipped because the engine was behind",
            ["group"], registry=r)
        self._lag = Gauge(
            "monitoring_rule_evaluation_lag_seconds",
            "How late the last evaluation of a rule group started after its scheduled time",
            ["group"], registry=r)
        self._alerts = Gauge("monitoring_alerts", "Alerts by state", ["state"], registry=r)
        self._sent = Counter("monitoring_notifications_sent",
                             "Notifications delivered, by channel", ["channel"], registry=r)
        self._failed = Counter("monitoring_notifications_failed",
                               "Failed delivery attempts, by channel", ["channel"], registry=r)
        self._outbox = Gauge("monitoring_outbox_pending",
                             "Notifications in the outbox waiting for delivery", registry=r)
        self._ledger = Gauge("monitoring_ledger_entries", "Entries in the audit ledger",
                             registry=r)
        self._audit_failures = Counter(
            "monitoring_audit_failures",
            "Audit events the ledger could not record (an alarm: investigate)", registry=r)
        self._states: set[str] = set(ALERT_STATES)
        for state in ALERT_STATES:
            self._alerts.labels(state=state).set(0)

    # ------------------------------------------------------------ recording

    def eval_done(self, group: str, seconds: float, failed: bool, lag_seconds: float) -> None:
        """One evaluation of ``group``: its duration, whether a rule failed, its lag."""
        self._duration.labels(group=group).observe(max(seconds, 0.0))
        self._evaluations.labels(group=group).inc()
        failures = self._failures.labels(group=group)  # created at 0 on the first evaluation
        if failed:
            failures.inc()
        self._missed.labels(group=group)
        self._lag.labels(group=group).set(max(lag_seconds, 0.0))

    def eval_missed(self, group: str, n: int) -> None:
        """``n`` evaluation times of ``group`` were skipped (the engine was behind)."""
        if n > 0:
            self._missed.labels(group=group).inc(n)

    def alerts_by_state(self, counts: Mapping[str, int]) -> None:
        """The number of alerts per state now; states not in ``counts`` drop to 0."""
        self._states.update(counts)
        for state in self._states:
            self._alerts.labels(state=state).set(counts.get(state, 0))

    def notification(self, channel: str, ok: bool) -> None:
        """One delivery attempt to ``channel`` succeeded or failed."""
        sent, failed = self._sent.labels(channel=channel), self._failed.labels(channel=channel)
        (sent if ok else failed).inc()

    def queue_depth(self, n: int) -> None:
        """Messages waiting in the outbox."""
        self._outbox.set(n)

    def ledger_size(self, n: int) -> None:
        """Entries in the audit ledger."""
        self._ledger.set(n)

    def audit_failure(self) -> None:
        """The ledger failed to record an event."""
        self._audit_failures.inc()

    # ------------------------------------------------------------ reading

    def render(self) -> tuple[bytes, str]:
        """The ``/metrics`` body in the Prometheus text format, and its content type.

        Text format 0.0.4 (every name here is a classic one, so the body is the
        same as 1.0.0's): the version every Prometheus 2.x scraper understands.
        """
        return generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4

    def samples(self, now_ms: int) -> list[Sample]:
        """Every current value as a store sample at ``now_ms`` (``_created`` series left out).

        Histograms give their ``_bucket`` (with ``le``), ``_sum`` and ``_count``
        series, as a Prometheus scrape of :meth:`render` would store them.
        """
        out: list[Sample] = []
        for family in self.registry.collect():
            for s in family.samples:
                if s.name.endswith("_created"):
                    continue
                out.append(({"__name__": s.name, **s.labels}, now_ms, float(s.value)))
        return out

    def value(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        """The current value of one sample (tests, the status API); None when absent."""
        got = self.registry.get_sample_value(name, dict(labels or {}))
        return None if got is None else float(got)
