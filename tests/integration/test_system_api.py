"""The library API as the seed uses it: MonitoringSystem on a real DuckDB file, a fake clock.

Rules created from the seed's condition dict and from DSL text are compiled and linted (an
invalid one raises RuleError with ``api/<name>.yaml:LINE:COL`` diagnostics), persisted (a new
MonitoringSystem on the same file runs them) and audited as ``rule_change``;
``log_audit_event`` lands in the ledger; ``record()`` values reach the store and a rule on
them fires, is routed to the console channel, enqueued and delivered. The loops are driven
step by step (evaluate_group, notify_once, run_once) so every time is a fake-clock time.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from monitoring import MonitoringSystem
from monitoring.live.rules_api import RuleError
from monitoring.notify.model import FakeClock
from tests.support.serve_process import ledger_events, query

T0 = 1_767_225_600_000
SEED = {"type": "threshold", "metric": "cpu_usage", "operator": ">", "value": 90}
DSL = """\
alert DiskAlmostFull {
  when disk_used_ratio > 0.9
  for 2m
  severity warning
  notify console
  summary "disk {{ $labels.mount }} at {{ $value }}"
}
"""


def run(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """An async test body run in a fresh event loop (no asyncio plugin needed)."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config folder (no files: every channel name is allowed) and private audit keys."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MONITORING_AUDIT_KEY", raising=False)
    (tmp_path / "config").mkdir()
    return tmp_path


def system(home: Path, clock: FakeClock) -> MonitoringSystem:
    return MonitoringSystem(config_dir=home / "config", db=home / "m.duckdb", clock=clock,
                            console=True, collect_system=False)


@run
async def test_rules_from_seed_dict_and_dsl_are_checked_persisted_and_audited(
        home: Path) -> None:
    clock = FakeClock(T0)
    m = system(home, clock)
    info = await m.create_alert_rule(name="high_cpu", condition=SEED, severity="critical",
                                     channels=["console"], description="CPU above 90%",
                                     cooldown=300)
    assert (info.name, info.kind, info.file, info.rules) == \
        ("high_cpu", "seed", "api/high_cpu.yaml", ("high_cpu",))
    dsl = await m.create_alert_rule(dsl=DSL)
    assert (dsl.name, dsl.kind, dsl.rules) == ("DiskAlmostFull", "dsl", ("DiskAlmostFull",))
    names = {r["name"] for r in m.rules()}
    assert {"high_cpu", "DiskAlmostFull"} <= names

    with pytest.raises(RuleError) as bad:
        await m.create_alert_rule(name="bad", condition={**SEED, "operator": "=>"},
                                  severity="critical")
    assert str(bad.value).startswith("api/bad.yaml:7:19: error[schema/invalid-value]")
    with pytest.raises(RuleError) as syntax:
        await m.create_alert_rule(dsl="alert Broken {\n  when cpu_usage >\n  severity x\n}\n")
    assert "api/Broken.rules:3:" in str(syntax.value) and "error[syntax/" in str(syntax.value)
    with pytest.raises(RuleError) as field:
        await m.create_alert_rule(name="9lives", condition=SEED)
    assert field.value.field == "name"
    assert len(m.rules()) == 2  # the rejected ones are not evaluated
    await m.stop()

    again = system(home, clock)
    assert {r["name"] for r in again.rules()} == {"high_cpu", "DiskAlmostFull"}
    assert await again.delete_alert_rule("DiskAlmostFull") is True
    assert await again.delete_alert_rule("DiskAlmostFull") is False
    assert {r["name"] for r in again.rules()} == {"high_cpu"}
    await again.stop()

    changes = [(e["action"], e["data"]["name"]) for e in ledger_events(home / "m.duckdb")
               if e["category"] == "rule_change"]
    assert changes == [("rule.create", "high_cpu"), ("rule.create", "DiskAlmostFull"),
                       ("rule.delete", "DiskAlmostFull")]


@run
async def test_unknown_channel_is_rejected_with_the_config_loaded(home: Path) -> None:
    (home / "config" / "notification_config.yaml").write_text(
        'email:\n  smtp_server: "127.0.0.1"\n  to: ["a@test.local"]\n')
    m = system(home, FakeClock(T0))
    with pytest.raises(RuleError) as bad:
        await m.create_alert_rule(name="x", condition=SEED, severity="critical",
                                  channels=["emial"])
    assert "api/x.yaml:" in str(bad.value) and "unknown-channel" in str(bad.value)
    assert "email" in str(bad.value)  # the did-you-mean hint
    await m.stop()


@run
async def test_log_audit_event_lands_in_the_ledger(home: Path) -> None:
    m = system(home, FakeClock(T0))
    appended = await m.log_audit_event(event_type="authentication", action="login",
                                       severity="info", resource="auth",
                                       details={"method": "password"})
    assert appended.seq is not None and appended.seq >= 1
    await m.stop()
    events = ledger_events(home / "m.duckdb")
    assert [(e["seq"], e["category"], e["action"]) for e in events if e["action"] == "login"] \
        == [(appended.seq, "authentication", "login")]


@run
async def test_recorded_values_reach_the_store_and_a_rule_on_them_fires(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock(T0)
    m = system(home, clock)
    await m.create_alert_rule(name="hot", condition=SEED, severity="critical",
                              channels=["console"])
    for i in range(5):
        m.record("cpu_usage", 95.0 + i, {"host": "db-1"}, timestamp_ms=T0 - 60_000 + i * 15_000)
    assert await m.flush() == 5
    rt = m.runtime
    stored = query_store(rt)
    assert stored == [(T0 - 60_000 + i * 15_000, 95.0 + i) for i in range(5)]

    group = next(g for g in rt.evaluator.groups() if g.name == "hot")
    alerts = await rt.evaluator.evaluate_group(group.key, T0)
    assert [(a.name, a.status, a.labels["host"]) for a in alerts] == [("hot", "firing", "db-1")]
    assert [a["state"] for a in m.alerts()] == ["firing"]
    assert rt.notify_once() == 0  # group_wait (30 s) not over yet
    clock.advance(30_000)
    assert rt.notify_once() == 1
    assert await rt.deliverer.run_once() == 1
    entry = rt.outbox.entries()[0]
    assert (entry.channel, entry.kind, entry.status) == ("console", "firing", "delivered")
    assert "hot" in capsys.readouterr().out
    await m.stop()
    rows = query(home / "m.duckdb", "SELECT rule, from_state, to_state, at_ms "
                 "FROM live_alert_transitions ORDER BY at_ms")
    assert rows == [("hot", "inactive", "firing", T0)]


def query_store(rt: Any) -> list[tuple[int, float]]:
    """The cpu_usage samples in the store, read on the store thread."""

    def read(store: Any) -> list[tuple[int, float]]:
        series = store.select([("__name__", "=", "cpu_usage")], T0 - 3_600_000, T0)
        return [(int(t), float(v)) for s in series for t, v in zip(s.ts, s.values, strict=True)]

    result: list[tuple[int, float]] = rt.access.run_sync(read)
    return result


@run
async def test_elasticsearch_url_ships_the_ledger(home: Path) -> None:
    """The seed's ``elasticsearch_url``: audit events reach the index, checked by leaf hash."""
    from monitoring.audit.elastic import DEFAULT_EVENTS_INDEX, document_leaf
    from tests.support.fake_elasticsearch import FakeElasticsearch

    with FakeElasticsearch() as es:
        m = MonitoringSystem(config_dir=home / "config", db=home / "m.duckdb",
                             elasticsearch_url=es.url, clock=FakeClock(T0),
                             collect_system=False)
        await m.start()
        appended = await m.log_audit_event(event_type="authentication", action="login",
                                           user_id="user123", severity="info",
                                           details={"success": True})
        await m.stop()
        docs = es.documents(DEFAULT_EVENTS_INDEX)
    by_seq = {d["seq"]: d for d in docs.values()}
    assert by_seq[appended.seq]["category"] == "authentication"
    assert by_seq[appended.seq]["action"] == "login"
    assert "user123" not in str(by_seq[appended.seq])  # personal data stays sealed
    actions = [d["action"] for d in sorted(docs.values(), key=lambda d: d["seq"])]
    assert actions[-1] == "engine.stop"  # shipped once more on stop
    assert sorted(by_seq) == list(range(len(by_seq)))  # every entry, none twice
    assert all(document_leaf(d) is not None for d in docs.values())


@run
async def test_elasticsearch_url_that_does_not_answer_is_logged_not_fatal(
        home: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tests.support.prometheus import free_port

    m = MonitoringSystem(config_dir=home / "config", db=home / "m.duckdb",
                         elasticsearch_url=f"http://127.0.0.1:{free_port()}",
                         clock=FakeClock(T0), collect_system=False)
    await m.start()
    appended = await m.log_audit_event(event_type="system", action="still.recorded")
    await m.stop()
    assert appended.recorded
    assert "shipping the audit ledger to Elasticsearch failed" in caplog.text


@run
async def test_acknowledging_an_alert_acknowledges_its_pagerduty_incident(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`monitoring ack` on an alert routed to PagerDuty (no escalation policy): PagerDuty gets
    an acknowledge event with the trigger's dedup_key; the email channel is not told."""
    from tests.support.loopback import LoopbackReceiver

    path = "/pagerduty/v2/enqueue"
    with LoopbackReceiver() as pd:
        monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0123456789abcdefABCDEF")
        (home / "config" / "notification_config.yaml").write_text(
            f'pagerduty:\n  routing_key: "${{PD_KEY}}"\n  url: "{pd.url(path)}"\n'
            'email:\n  smtp_server: "127.0.0.1"\n  smtp_port: 1\n  from: "m@test.local"\n'
            '  to: ["a@test.local"]\n')
        clock = FakeClock(T0)
        m = MonitoringSystem(config_dir=home / "config", db=home / "m.duckdb", clock=clock,
                             collect_system=False)
        await m.create_alert_rule(name="hot", condition=SEED, severity="critical",
                                  channels=["pagerduty", "email"])
        m.record("cpu_usage", 97.0, {"host": "db-1"}, timestamp_ms=T0 - 15_000)
        await m.flush()
        rt = m.runtime
        group = next(g for g in rt.evaluator.groups() if g.name == "hot")
        [alert] = await rt.evaluator.evaluate_group(group.key, T0)
        clock.advance(30_000)
        assert rt.notify_once() == 2  # pagerduty and email
        await rt.deliverer.run_once()
        assert await m.acknowledge(alert.fingerprint, by="ann", comment="on it") == 1
        await rt.deliverer.run_once()
        events = [r.json for r in pd.requests(path)]
        acked = [(e.channel, e.status) for e in rt.outbox.entries() if e.kind == "acknowledged"]
        await m.stop()
    assert pd.problems == []
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge"]
    assert events[0]["dedup_key"] == events[1]["dedup_key"]
    assert acked == [("pagerduty", "delivered")]
