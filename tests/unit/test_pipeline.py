"""The notification pipeline on a FakeClock over real DuckDB files."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import load_yaml
from monitoring.notify.inhibit import Inhibitor, InhibitRule
from monitoring.notify.matchers import parse_matchers
from monitoring.notify.model import Alert, FakeClock, Message, message_id
from monitoring.notify.pipeline import Pipeline
from monitoring.notify.routing_config import RoutingConfig, parse_routing
from monitoring.notify.silences import SilenceStore

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday
S, M, H = 1000, 60_000, 3_600_000


def routing(text: str) -> RoutingConfig:
    config, diagnostics = parse_routing(load_yaml(SourceFile("routing.yaml", text)))
    assert diagnostics == [] and config is not None
    return config


SIMPLE = routing("""\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 1h
""")


FAST = "route:\n  receiver: ops\n  group_wait: 0s\n  group_interval: 1m\n"
"""A root route that notifies at once and looks at its groups every minute."""


def alert(name: str = "HighCPU", *, status: str = "firing", starts: int = T0,
          channels: tuple[str, ...] = (), cooldown_ms: int = 0, **labels: str) -> Alert:
    return Alert({"alertname": name, **labels}, {"summary": f"{name} fires"}, status, starts,
                 None if status == "firing" else starts + M, 1.0, name, channels, None,
                 cooldown_ms)


class Env:
    def __init__(self, path: Path, config: RoutingConfig, clock: FakeClock) -> None:
        self.path = path
        self.clock = clock
        self.events: list[Mapping[str, Any]] = []
        self.conn = duckdb.connect(str(path))
        self.silences = SilenceStore(self.conn.cursor(), clock, self.events.append)
        self.pipeline = Pipeline(config, self.silences, self.conn.cursor(), clock,
                                 self.events.append)

    def at(self, ms: int, *alerts: Alert) -> list[Message]:
        """Move the clock to T0 + ms, ingest, flush."""
        self.clock.set(T0 + ms)
        self.pipeline.ingest(alerts)
        return self.pipeline.flush()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def make(tmp_path: Path) -> Iterator[Any]:
    envs: list[Env] = []

    def factory(config: RoutingConfig = SIMPLE, clock: FakeClock | None = None) -> Env:
        env = Env(tmp_path / "monitoring.duckdb", config, clock or FakeClock(T0))
        envs.append(env)
        return env

    yield factory
    for env in envs:
        env.close()


def summary(messages: list[Message]) -> list[tuple[str, str, list[str]]]:
    return [(m.channel, m.kind, [f"{a.name}:{a.status}" for a in m.alerts]) for m in messages]


# ---------------------------------------------------------------- grouping timing


def test_group_wait_then_group_interval(make: Any) -> None:
    env = make()
    a = alert("HighCPU", instance="a")
    assert env.at(0, a) == []
    assert env.pipeline.next_due_ms() == T0 + 30 * S
    assert env.at(29 * S, a) == []
    [m] = env.at(30 * S, a)
    assert (m.channel, m.kind, m.group_key, m.created_ms) == ("ops", "firing",
                                                              '{}{alertname="HighCPU"}',
                                                              T0 + 30 * S)
    assert m.alerts == (a,)
    assert m.id == message_id("ops", "firing", m.group_key, [a], T0 + 30 * S)
    assert env.pipeline.next_due_ms() == T0 + 330 * S
    # a second alert of the group waits for the next group_interval tick
    b = alert("HighCPU", instance="b", starts=T0 + M)
    assert env.at(M, a, b) == []
    assert env.at(5 * M + 29 * S, a, b) == []
    [m] = env.at(5 * M + 30 * S, a, b)
    assert m.kind == "firing"
    assert sorted(x.labels["instance"] for x in m.alerts) == ["a", "b"]
    # unchanged: nothing at the following ticks
    assert env.at(10 * M + 30 * S, a, b) == []


def test_repeat_interval_is_checked_at_group_interval_ticks(make: Any) -> None:
    env = make()
    a = alert()
    env.at(0, a)
    sent = []
    for tick in range(0, 140):  # every 5 minutes from 30 s on, like Alertmanager's timer
        at = 30 * S + tick * 5 * M
        sent += [(at, m.kind) for m in env.at(at, a)]
    # 30s, then the first tick after 1h has passed (1h05m30s), then 1h05m later
    assert [(t, k) for t, k in sent][:3] == [(30 * S, "firing"), (65 * M + 30 * S, "repeat"),
                                             (130 * M + 30 * S, "repeat")]


def test_repeat_backoff_grows_to_the_cap_and_resets_on_change(make: Any) -> None:
    config = routing("""\
route:
  receiver: ops
  group_wait: 30s
  group_interval: 1m
  repeat_interval: 10m
  repeat_backoff: 2
  max_repeat_interval: 30m
""")
    env = make(config)
    a = alert()
    env.at(0, a)
    sent: list[tuple[int, str]] = []
    for minute in range(0, 95):
        sent += [((30 * S + minute * M) // S, m.kind) for m in env.at(30 * S + minute * M, a)]
    # 10m, then 20m, then capped at 30m (each plus one tick, as in Alertmanager)
    assert sent == [(30, "firing"), (30 + 11 * 60, "repeat"), (30 + 32 * 60, "repeat"),
                    (30 + 63 * 60, "repeat"), (30 + 94 * 60, "repeat")]
    b = alert(instance="b", starts=T0 + 95 * M)
    [m] = env.at(95 * M + 30 * S, a, b)
    assert m.kind == "firing"  # the change resets the back-off
    later = [(minute, msg.kind) for minute in range(96, 110)
             for msg in env.at(minute * M + 30 * S, a, b)]
    assert later == [(106, "repeat")]


def test_old_alert_in_a_new_group_flushes_at_once(make: Any) -> None:
    env = make()
    [m] = env.at(10 * M, alert(starts=T0))  # started 10 minutes ago: no group_wait
    assert m.kind == "firing"


def test_ingest_is_idempotent(make: Any) -> None:
    env = make()
    a = alert()
    env.at(0, a, a)
    env.at(S, a)
    [m] = env.at(30 * S, a)
    assert m.alerts == (a,)


# ---------------------------------------------------------------- routing


def test_rule_channels_plus_tree_one_message_per_receiver(make: Any) -> None:
    config = routing("""\
route:
  receiver: ops
  group_by: [alertname]
  group_wait: 10s
  routes:
    - matchers: [severity="critical"]
      receivers: [pager, email]
    - matchers: [team="db"]
      receiver: dba
""")
    env = make(config)
    a = alert("DiskFull", channels=("email", "slack"), severity="critical", team="db")
    assert env.pipeline.routes_for(a.labels, a.channels) == ["email", "slack", "pager"]
    assert env.at(0, a) == []
    messages = env.at(10 * S)
    assert sorted((m.channel, m.group_key) for m in messages) == [
        ("email", 'rule{alertname="DiskFull"}'), ("pager", '{}/0{alertname="DiskFull"}'),
        ("slack", 'rule{alertname="DiskFull"}')]
    # an alert without rule channels that matches no child goes to the root receiver
    env.at(M, alert("Other", severity="info", starts=T0 + M))
    [m] = env.at(M + 10 * S)
    assert (m.channel, m.group_key) == ("ops", '{}{alertname="Other"}')


def test_default_config_routes_rule_channels_and_console(make: Any) -> None:
    env = make(RoutingConfig.default(["console"]))
    a = alert(channels=("email",))
    assert env.at(0, a) == []
    messages = env.at(30 * S, a)
    assert sorted(m.channel for m in messages) == ["console", "email"]


# ---------------------------------------------------------------- resolution


def test_resolved_notification(make: Any) -> None:
    env = make()
    a = alert()
    env.at(0, a)
    env.at(30 * S, a)
    assert env.at(2 * M, a.resolved(T0 + 2 * M)) == []  # waits for the group_interval tick
    [m] = env.at(5 * M + 30 * S)
    assert m.kind == "resolved" and m.alerts == (a.resolved(T0 + 2 * M),)
    assert env.pipeline.next_due_ms() is None  # the group is gone
    assert env.pipeline.statuses() == []
    assert env.pipeline.nflog.entries() == []


def test_resolution_of_an_alert_never_notified_is_not_sent(make: Any) -> None:
    env = make()
    a = alert()
    env.at(0, a)
    env.at(10 * S, a.resolved(T0 + 10 * S))
    assert env.at(30 * S) == []
    assert env.pipeline.next_due_ms() is None


def test_resolved_goes_only_to_receivers_told_of_the_firing(make: Any) -> None:
    config = routing("""\
route:
  receiver: slack
  group_wait: 0s
  group_interval: 1m
  routes:
    - matchers: [severity="critical"]
      receiver: slack
      continue: true
    - matchers: [severity="critical"]
      receiver: pager
      group_wait: 10m
""")
    env = make(config)
    a = alert(severity="critical")
    assert summary(env.at(0, a)) == [("slack", "firing", ["HighCPU:firing"])]
    assert env.at(M, a) == []
    assert env.at(90 * S, a.resolved(T0 + 90 * S)) == []
    # slack was told: it hears of the resolution; pager never heard of the alert
    assert summary(env.at(2 * M)) == [("slack", "resolved", ["HighCPU:resolved"])]
    assert env.at(10 * M) == [] and env.pipeline.next_due_ms() is None


def test_partial_resolution_and_send_resolved_false(make: Any) -> None:
    config = routing(FAST + """\
  repeat_interval: 1h
  routes:
    - matchers: [team="quiet"]
      receiver: quiet
      send_resolved: false
""")
    env = make(config)
    a, b = alert(instance="a"), alert(instance="b")
    qa, qb = alert("Q", team="quiet", instance="a"), alert("Q", team="quiet", instance="b")
    assert sorted(summary(env.at(0, a, b, qa, qb))) == [
        ("ops", "firing", ["HighCPU:firing", "HighCPU:firing"]),
        ("quiet", "firing", ["Q:firing", "Q:firing"])]
    env.at(30 * S, a, b.resolved(T0 + 30 * S), qa, qb.resolved(T0 + 30 * S))
    # ops: an update with the firing and the resolved alert; quiet: nothing
    [m] = env.at(M, a, qa)
    assert (m.channel, m.kind) == ("ops", "firing")
    assert [(x.labels["instance"], x.status) for x in m.alerts] == [("a", "firing"),
                                                                   ("b", "resolved")]
    env.at(90 * S, a.resolved(T0 + 90 * S), qa.resolved(T0 + 90 * S))
    assert summary(env.at(2 * M)) == [("ops", "resolved", ["HighCPU:resolved"])]
    assert env.pipeline.nflog.entries() == []  # quiet's log is cleared without a message


# ---------------------------------------------------------------- inhibition


def test_inhibition_with_equal_labels(make: Any) -> None:
    config = routing("""\
route:
  receiver: ops
  group_by: ['...']
  group_wait: 0s
  group_interval: 1m
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [cluster]
""")
    env = make(config)
    down = alert("ClusterDown", severity="critical", cluster="a")
    slow_a = alert("Slow", severity="warning", cluster="a")
    slow_b = alert("Slow", severity="warning", cluster="b")
    sent = env.at(0, down, slow_a, slow_b)
    assert sorted(m.alerts[0].name + m.alerts[0].labels["cluster"] for m in sent) == [
        "ClusterDowna", "Slowb"]
    status = {s.alert.fingerprint: s for s in env.pipeline.statuses()}
    assert status[slow_a.fingerprint].state == "suppressed"
    assert status[slow_a.fingerprint].inhibited_by == (down.fingerprint,)
    assert status[slow_b.fingerprint].state == "active"
    assert status[down.fingerprint].inhibited_by == ()  # never inhibits itself
    suppress = [e["details"] for e in env.events if e["details"].get("decision") == "suppress"]
    assert suppress == [{"decision": "suppress", "reason": "inhibited",
                         "fingerprint": slow_a.fingerprint, "alertname": "Slow",
                         "starts_at_ms": T0, "by": [down.fingerprint]}]
    # the root cause resolves: the target is notified at its group's next tick
    sent = env.at(30 * S, down.resolved(T0 + 30 * S), slow_a, slow_b)
    assert sent == []
    assert sorted(summary(env.at(M, slow_a, slow_b))) == [
        ("ops", "firing", ["Slow:firing"]), ("ops", "resolved", ["ClusterDown:resolved"])]


# ---------------------------------------------------------------- silences


def test_silenced_alert_is_notified_when_the_silence_ends(make: Any) -> None:
    env = make()
    a, b = alert("HighCPU"), alert("DiskFull")
    silence = env.silences.create('alertname="HighCPU"', ends_ms=T0 + 20 * M,
                                  created_by="alice", comment="maintenance")
    env.at(0, a, b)
    assert summary(env.at(30 * S, a, b)) == [("ops", "firing", ["DiskFull:firing"])]
    [status] = [s for s in env.pipeline.statuses() if s.alert.name == "HighCPU"]
    assert (status.state, status.silenced_by) == ("suppressed", (silence.id,))
    assert env.at(5 * M + 30 * S, a, b) == []
    assert env.at(15 * M + 30 * S, a, b) == []
    assert summary(env.at(20 * M + 30 * S, a, b)) == [("ops", "firing", ["HighCPU:firing"])]
    assert env.pipeline.counts["silenced"] == 1 and env.pipeline.counts["notified"] == 2


def test_expiring_a_silence_releases_the_alert(make: Any) -> None:
    env = make()
    a = alert()
    silence = env.silences.create(['alertname="HighCPU"'], ends_ms=T0 + H, created_by="bob",
                                  comment="")
    env.at(0, a)
    assert env.at(30 * S, a) == []
    env.clock.set(T0 + 2 * M)
    env.silences.expire(silence.id, "bob")
    assert summary(env.at(5 * M + 30 * S, a)) == [("ops", "firing", ["HighCPU:firing"])]


# ---------------------------------------------------------------- time intervals


def test_mute_and_active_time_intervals(make: Any) -> None:
    config = routing(FAST + """\
  routes:
    - matchers: [team="db"]
      receiver: dba
      mute_time_intervals: [nights]
    - matchers: [team="web"]
      receiver: web
      active_time_intervals: [office]
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "06:00"}]
  - name: office
    time_intervals:
      - times: [{start_time: "09:00", end_time: "17:00"}]
        weekdays: [monday:friday]
""")
    env = make(config, FakeClock(T0))
    db, web = alert("Db", team="db"), alert("Web", team="web")
    # Thursday 00:00: night (db muted) and outside office hours (web inactive)
    assert env.at(0, db, web) == []
    status = {s.alert.name: s for s in env.pipeline.statuses()}
    assert status["Db"].muted and status["Web"].muted and status["Db"].state == "suppressed"
    mutes = [e["details"]["receiver"] for e in env.events
             if e["details"].get("decision") == "mute"]
    assert sorted(mutes) == ["dba", "web"]
    assert env.at(5 * H + 59 * M, db, web) == []
    assert summary(env.at(6 * H, db, web)) == [("dba", "firing", ["Db:firing"])]
    assert env.at(8 * H + 59 * M, db, web) == []
    assert summary(env.at(9 * H, db, web)) == [("web", "firing", ["Web:firing"])]


def test_resolution_while_muted_is_sent_when_the_route_is_active(make: Any) -> None:
    config = routing(FAST + """\
  mute_time_intervals: [nights]
time_intervals:
  - name: nights
    time_intervals:
      - times: [{start_time: "22:00", end_time: "06:00"}]
""")
    env = make(config)
    a = alert(starts=T0 - 3 * H)
    assert summary(env.at(-3 * H, a)) == [("ops", "firing", ["HighCPU:firing"])]  # 21:00
    env.at(-M, a.resolved(T0 - M))  # 23:59, muted
    assert env.at(0) == []
    assert summary(env.at(6 * H)) == [("ops", "resolved", ["HighCPU:resolved"])]


# ---------------------------------------------------------------- cooldown


def test_cooldown_suppresses_a_quick_refire(make: Any) -> None:
    config = routing(FAST)
    env = make(config)
    first = alert(cooldown_ms=H)
    assert summary(env.at(0, first)) == [("ops", "firing", ["HighCPU:firing"])]
    assert [env.at(minute * M, first) for minute in range(1, 5)] == [[]] * 4
    assert env.at(270 * S, first.resolved(T0 + 270 * S)) == []
    assert summary(env.at(5 * M)) == [("ops", "resolved", ["HighCPU:resolved"])]
    again = alert(starts=T0 + 10 * M, cooldown_ms=H)
    for minute in range(10, 60):
        assert env.at(minute * M, again) == [], minute
    [status] = env.pipeline.statuses()
    assert status.cooldown and status.state == "suppressed"
    assert env.pipeline.counts["cooldown"] == 1
    [held] = [e["details"] for e in env.events if e["details"].get("reason") == "cooldown"]
    assert held == {"decision": "suppress", "reason": "cooldown",
                    "fingerprint": again.fingerprint, "alertname": "HighCPU",
                    "starts_at_ms": T0 + 10 * M, "by": []}
    # once the cooldown since the last firing notification has passed, it is notified
    assert summary(env.at(60 * M, again)) == [("ops", "firing", ["HighCPU:firing"])]


# ---------------------------------------------------------------- audit and restart


def test_every_notification_is_audited(make: Any) -> None:
    env = make()
    a = alert()
    env.at(0, a)
    [m] = env.at(30 * S, a)
    [event] = [e for e in env.events if e["details"].get("decision") == "notify"]
    assert event == {"event_type": "notification", "action": "decision", "severity": "info",
                     "resource": "notification/ops",
                     "details": {"decision": "notify", "message_id": m.id, "receiver": "ops",
                                 "kind": "firing", "group_key": m.group_key,
                                 "firing": [a.fingerprint], "resolved": [], "repeats": 0}}


def test_restart_does_not_resend_what_the_nflog_says_was_sent(make: Any) -> None:
    first = make()
    a = alert()
    first.at(0, a)
    assert summary(first.at(30 * S, a)) == [("ops", "firing", ["HighCPU:firing"])]
    first.close()
    # a new engine over the same file; the evaluator sends the firing alert again
    second = make(SIMPLE, FakeClock(T0 + 3 * M))
    assert second.at(3 * M, a) == []
    assert second.at(8 * M, a) == []
    assert second.pipeline.nflog.get('{}{alertname="HighCPU"}', "ops") is not None
    # it still repeats on schedule: at the first of its ticks (every 5 minutes from the
    # restart at 3m) after 1h has passed since the notification at 30s
    repeats = [(t, m.kind) for t in range(8, 70) for m in second.at(t * M, a)]
    assert repeats == [(63, "repeat")]
    # ... and the resolution reaches the receiver that was told before the restart
    second.at(70 * M, a.resolved(T0 + 70 * M))
    assert summary(second.at(75 * M)) == [("ops", "resolved", ["HighCPU:resolved"])]


def test_two_sided_inhibition_does_not_mute_both() -> None:
    either = tuple(parse_matchers('severity=~"critical|warning"'))
    inhibitor = Inhibitor([InhibitRule(either, either, ("cluster",)),
                           InhibitRule(tuple(parse_matchers('alertname="Down"')),
                                       tuple(parse_matchers('severity="warning"')))])
    down = alert("Down", severity="critical", cluster="a")
    slow = alert("Slow", severity="warning", cluster="a")
    inhibitor.update([down, slow])
    # the first rule matches both on both sides: neither mutes the other
    assert inhibitor.inhibited_by(down.labels, down.fingerprint) == []
    # the second rule still applies
    assert inhibitor.inhibited_by(slow.labels, slow.fingerprint) == [down.fingerprint]
    inhibitor.update([down.resolved(T0 + M), slow])
    assert inhibitor.inhibited_by(slow.labels, slow.fingerprint) == []


def test_replace_config_routes_new_alerts_the_new_way(make: Any) -> None:
    env = make(routing(FAST))
    a = alert()
    assert summary(env.at(0, a)) == [("ops", "firing", ["HighCPU:firing"])]
    env.pipeline.replace_config(routing(FAST.replace("receiver: ops", "receiver: pager")))
    assert env.pipeline.routes_for(a.labels) == ["pager"]
    assert summary(env.at(M, a)) == [("pager", "firing", ["HighCPU:firing"])]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.booleans(), st.integers(1, 4)), max_size=25))
def test_receivers_hear_each_resolution_only_after_its_firing(
        tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, bool, int]]) -> None:
    """Random firing/resolving sequences: every resolved alert a receiver gets was sent to it
    firing before, and each firing episode is announced (kind firing) at most once."""
    path = tmp_path_factory.mktemp("prop") / "m.duckdb"
    conn = duckdb.connect(str(path))
    clock = FakeClock(T0)
    config = routing(FAST + "  group_by: ['...']\n  repeat_interval: 3m\n")
    pipeline = Pipeline(config, SilenceStore(conn.cursor(), clock), conn.cursor(), clock)
    firing: dict[int, Alert] = {}
    told: set[tuple[str, int]] = set()
    announced: list[tuple[str, int]] = []
    for instance, fire, minutes in steps:
        clock.advance(minutes * 20 * S)
        now = clock.now_ms()
        if fire and instance not in firing:
            firing[instance] = alert(instance=str(instance), starts=now)
        elif not fire and instance in firing:
            pipeline.ingest([firing.pop(instance).resolved(now)])
        pipeline.ingest(firing.values())
        for m in pipeline.flush():
            for a in m.alerts:
                key = (a.fingerprint, a.starts_at_ms)
                if a.status == "resolved":
                    assert key in told
                    assert m.kind in ("firing", "resolved")
                elif m.kind == "firing" and key not in told:
                    announced.append(key)
                    told.add(key)
                else:
                    assert key in told
    assert len(announced) == len(set(announced))
    conn.close()
