"""The engine's own metrics (monitoring.live.metrics): /metrics text and store samples agree."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitoring.engine.store import Store
from monitoring.live.metrics import EngineMetrics

NOW = 1_767_225_600_000


def _exercised() -> EngineMetrics:
    m = EngineMetrics()
    m.eval_done("api", 0.003, False, 0.5)
    m.eval_done("api", 0.2, True, 1.25)
    m.eval_done("capacity", 0.04, False, 0.0)
    m.eval_missed("api", 3)
    m.eval_missed("api", 0)
    m.alerts_by_state({"firing": 2, "pending": 1})
    m.notification("email", True)
    m.notification("email", True)
    m.notification("slack", False)
    m.queue_depth(7)
    m.ledger_size(1234)
    m.audit_failure()
    return m


def _parsed(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_render_is_prometheus_text_with_the_recorded_values() -> None:
    body, content_type = _exercised().render()
    assert content_type.startswith("text/plain; version=0.0.4")
    got = _parsed(body)
    assert got[("monitoring_rule_evaluations_total", (("group", "api"),))] == 2
    assert got[("monitoring_rule_evaluation_failures_total", (("group", "api"),))] == 1
    assert got[("monitoring_rule_evaluation_failures_total", (("group", "capacity"),))] == 0
    assert got[("monitoring_rule_evaluations_missed_total", (("group", "api"),))] == 3
    assert got[("monitoring_rule_evaluations_missed_total", (("group", "capacity"),))] == 0
    assert got[("monitoring_rule_evaluation_lag_seconds", (("group", "api"),))] == 1.25
    assert got[("monitoring_rule_evaluation_duration_seconds_count", (("group", "api"),))] == 2
    assert abs(got[("monitoring_rule_evaluation_duration_seconds_sum", (("group", "api"),))]
               - 0.203) < 1e-12
    # 0.003 s falls in the 0.005 bucket and above, 0.2 s in 0.25 and above.
    assert got[("monitoring_rule_evaluation_duration_seconds_bucket",
                (("group", "api"), ("le", "0.0025")))] == 0
    assert got[("monitoring_rule_evaluation_duration_seconds_bucket",
                (("group", "api"), ("le", "0.005")))] == 1
    assert got[("monitoring_rule_evaluation_duration_seconds_bucket",
                (("group", "api"), ("le", "0.25")))] == 2
    assert got[("monitoring_alerts", (("state", "firing"),))] == 2
    assert got[("monitoring_alerts", (("state", "pending"),))] == 1
    assert got[("monitoring_notifications_sent_total", (("channel", "email"),))] == 2
    assert got[("monitoring_notifications_failed_total", (("channel", "email"),))] == 0
    assert got[("monitoring_notifications_failed_total", (("channel", "slack"),))] == 1
    assert got[("monitoring_outbox_pending", ())] == 7
    assert got[("monitoring_ledger_entries", ())] == 1234
    assert got[("monitoring_audit_failures_total", ())] == 1


def test_samples_are_the_rendered_values_at_now() -> None:
    m = _exercised()
    rendered = {k: v for k, v in _parsed(m.render()[0]).items() if not k[0].endswith("_created")}
    samples = m.samples(NOW)
    assert {ts for _, ts, _ in samples} == {NOW}
    as_keys = {(labels["__name__"], tuple(sorted((k, v) for k, v in labels.items()
                                                  if k != "__name__"))): value
               for labels, _, value in samples}
    assert len(as_keys) == len(samples)  # one sample per series
    assert as_keys == rendered
    assert not any(labels["__name__"].endswith("_created") for labels, _, _ in samples)


def test_alert_states_drop_to_zero_and_start_at_zero() -> None:
    m = EngineMetrics()
    assert m.value("monitoring_alerts", {"state": "firing"}) == 0
    assert m.value("monitoring_alerts", {"state": "pending"}) == 0
    m.alerts_by_state({"firing": 3, "suppressed": 2})
    m.alerts_by_state({"pending": 1})
    assert m.value("monitoring_alerts", {"state": "firing"}) == 0
    assert m.value("monitoring_alerts", {"state": "suppressed"}) == 0
    assert m.value("monitoring_alerts", {"state": "pending"}) == 1


def test_each_engine_has_its_own_registry() -> None:
    a, b = EngineMetrics(), EngineMetrics()
    a.notification("email", True)
    assert a.value("monitoring_notifications_sent_total", {"channel": "email"}) == 1
    assert b.value("monitoring_notifications_sent_total", {"channel": "email"}) is None


def test_negative_durations_and_lags_are_clamped() -> None:
    m = EngineMetrics()
    m.eval_done("g", -0.5, False, -2.0)  # a clock that stepped back
    assert m.value("monitoring_rule_evaluation_lag_seconds", {"group": "g"}) == 0
    assert m.value("monitoring_rule_evaluation_duration_seconds_sum", {"group": "g"}) == 0


def test_samples_go_into_the_store_as_they_are(tmp_path: Path) -> None:
    m = _exercised()
    samples = m.samples(NOW)
    with Store(tmp_path / "m.duckdb") as store:
        assert store.append(samples) == len(samples)
        got = store.select([("__name__", "=", "monitoring_rule_evaluation_duration_seconds_bucket"),
                            ("group", "=", "api"), ("le", "=", "+Inf")], NOW, NOW)
        assert [(s.ts.tolist(), s.values.tolist()) for s in got] == [([NOW], [2.0])]
        pending = store.select([("__name__", "=", "monitoring_outbox_pending")], NOW, NOW)
        assert pending[0].values.tolist() == [7.0]
