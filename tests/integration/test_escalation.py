"""Escalations on a FakeClock with real DuckDB files: the seed policy, acks, resolution,
restarts (with the real outbox deduplicating), repeats and on-call schedule targets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.dsl.config import (
    Config,
    EscalationPolicy,
    NotificationChannel,
    load_escalation_policies,
    load_notification_config,
)
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import load_yaml
from monitoring.notify.acks import AckStore
from monitoring.notify.escalation import EscalationConfigError, Escalations, plan
from monitoring.notify.model import Alert, FakeClock, Message
from monitoring.notify.oncall import OnCallConfig
from monitoring.notify.oncall_config import parse_oncall
from monitoring.notify.outbox import Outbox

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
S = 1000


def seed_config() -> Config:
    channels, d1 = load_notification_config(
        SourceFile.read(ROOT / "rules" / "notification_config.yaml"))
    policies, d2 = load_escalation_policies(
        SourceFile.read(ROOT / "rules" / "escalation_policies.yaml"))
    assert not d1 and not d2
    merged, d3 = channels.merge(policies)
    assert not d3
    return merged


def config_from(channels_yaml: str, policies_yaml: str) -> Config:
    channels, d1 = load_notification_config(SourceFile("notification_config.yaml",
                                                       channels_yaml))
    policies, d2 = load_escalation_policies(SourceFile("escalation_policies.yaml",
                                                       policies_yaml))
    assert [d.message for d in (*d1, *d2)] == []
    return channels.merge(policies)[0]


def oncall_from(text: str) -> OnCallConfig:
    config, diags = parse_oncall(load_yaml(SourceFile("oncall.yaml", text)))
    assert config is not None, [d.message for d in diags]
    return config


def alert(start_ms: int = T0, *, policy: str | None = "critical_alerts",
          name: str = "HighCPU") -> Alert:
    return Alert({"alertname": name, "severity": "critical", "instance": "web-1"},
                 {"summary": "CPU above 90%"}, "firing", start_ms, rule=name,
                 channels=("email",), escalation=policy)


class Engine:
    """An Escalations over a DuckDB file, rebuilt from the same file by ``restart``."""

    def __init__(self, path: Path, clock: FakeClock, config: Config,
                 oncall: OnCallConfig | None = None) -> None:
        self.path, self.clock, self.config, self.oncall = path, clock, config, oncall
        self.audit: list[Mapping[str, Any]] = []
        self._open()

    def _open(self) -> None:
        self.conn = duckdb.connect(str(self.path))
        self.acks = AckStore(self.conn.cursor(), self.clock, self.audit.append)
        self.esc = Escalations(self.conn.cursor(), policies(self.config),
                               channels(self.config), self.oncall, self.acks, self.clock,
                               self.audit.append)
        self.outbox = Outbox(self.conn.cursor(), self.clock)

    def restart(self) -> None:
        self.conn.close()
        self._open()

    def at(self, seconds: int) -> list[Message]:
        """Advance to T0 + seconds, emit what is due, enqueue it; the emitted messages."""
        self.clock.set(T0 + seconds * S)
        out = self.esc.due()
        self.outbox.enqueue(out)
        return out

    def close(self) -> None:
        self.conn.close()


def policies(config: Config) -> dict[str, EscalationPolicy]:
    return {p.name.value: p for p in config.policies}


def channels(config: Config) -> dict[str, NotificationChannel]:
    return {c.name.value: c for c in config.channels}


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = Engine(tmp_path / "m.duckdb", FakeClock(T0), seed_config())
    yield e
    e.close()


def outbox_rows(e: Engine) -> list[tuple[str, str, int | None]]:
    return [(m.channel, m.kind, m.stage) for m in
            (entry.message() for entry in reversed(e.outbox.entries(limit=100)))]


# ---------------------------------------------------------------- the seed policy


def test_seed_policy_timeline(engine: Engine) -> None:
    assert [(s.stage, s.offset_ms) for s in plan(policies(engine.config)["critical_alerts"])] \
        == [(0, 300 * S), (1, 900 * S)]
    engine.esc.observe([alert()])
    assert engine.esc.next_due_ms() == T0 + 300 * S
    assert engine.at(299) == []
    first = engine.at(300)
    assert [(m.channel, m.kind, m.stage, m.recipients, dict(m.target), m.policy)
            for m in first] == [("email", "escalation", 1, ("team@example.com",), {},
                                 "critical_alerts")]
    assert first[0].created_ms == T0 + 300 * S
    assert first[0].alerts[0].fingerprint == alert().fingerprint
    assert engine.esc.next_due_ms() == T0 + 900 * S
    engine.esc.observe([alert()])  # re-sent every evaluation: one episode
    assert engine.at(899) == []
    second = engine.at(900)
    assert [(m.channel, m.kind, m.stage, m.recipients, dict(m.target)) for m in second] == \
        [("slack", "escalation", 2, (), {"channel": "#alerts-critical"})]
    assert second[0].group_key == first[0].group_key
    assert engine.at(5000) == []
    [status] = engine.esc.active()
    assert (status.status, status.next_stage, status.sent, status.channels) == \
        ("done", None, 2, ("email", "slack"))
    assert engine.esc.next_due_ms() is None
    actions = [(e["event_type"], e["action"]) for e in engine.audit]
    assert actions == [("notification", "escalation_started"),
                       ("notification", "escalation"), ("notification", "escalation"),
                       ("notification", "escalation_stopped")]
    assert engine.audit[2]["details"]["stage"] == 2
    assert engine.audit[2]["severity"] == "warning"


def test_ack_between_stages_stops_stage_two(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(300)
    engine.clock.set(T0 + 600 * S)
    notices = engine.esc.acknowledge(alert().fingerprint, by="alice", comment="looking")
    assert [(m.channel, m.kind, m.recipients, m.group_key) for m in notices] == \
        [("email", "acknowledged", ("team@example.com",),
          f"escalation/critical_alerts/{alert().fingerprint}/{T0}")]
    assert notices[0].alerts[0].annotations["acknowledged_by"] == "alice"
    assert notices[0].alerts[0].annotations["acknowledged_comment"] == "looking"
    assert notices[0].created_ms == T0 + 600 * S
    assert engine.esc.next_due_ms() is None
    assert engine.at(900) == []
    assert engine.at(3600) == []
    [status] = engine.esc.active()
    assert (status.status, status.acked_by) == ("acked", "alice")
    [ack] = engine.acks.list()
    assert (ack.fingerprint, ack.by, ack.rule, ack.acked_ms) == \
        (alert().fingerprint, "alice", "HighCPU", T0 + 600 * S)
    audited = [e for e in engine.audit if e["event_type"] == "acknowledgement"]
    assert [(e["action"], e["resource"], e["details"]["by"]) for e in audited] == \
        [("acknowledge", alert().fingerprint, "alice")]
    # a second acknowledgement is recorded but notifies nobody again
    assert engine.esc.acknowledge(alert().fingerprint, by="bob") == []
    assert len(engine.acks.list()) == 2


def test_ack_before_any_stage_sends_nothing(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.clock.set(T0 + 10 * S)
    assert engine.esc.acknowledge(alert().fingerprint, by="alice") == []
    assert engine.at(300) == [] and engine.at(900) == []


def test_resolution_stops_and_tells_who_was_paged(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(300)
    engine.clock.set(T0 + 400 * S)
    engine.esc.observe([alert().resolved(T0 + 400 * S)])
    assert engine.esc.next_due_ms() == T0 + 400 * S  # the resolved notice is due
    notices = engine.at(400)
    assert [(m.channel, m.kind, m.recipients) for m in notices] == \
        [("email", "resolved", ("team@example.com",))]
    assert notices[0].alerts[0].status == "resolved"
    assert notices[0].alerts[0].ends_at_ms == T0 + 400 * S
    assert engine.at(900) == []
    assert engine.esc.active() == []
    assert engine.esc.next_due_ms() is None


def test_resolution_before_first_stage_is_silent(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.clock.set(T0 + 100 * S)
    engine.esc.observe([alert().resolved(T0 + 100 * S)])
    assert engine.at(300) == [] and engine.at(900) == []


def test_new_firing_episode_escalates_again(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(300)
    engine.esc.acknowledge(alert().fingerprint, by="alice")
    engine.clock.set(T0 + 1000 * S)
    engine.esc.observe([alert().resolved(T0 + 1000 * S)])
    engine.at(1000)
    again = alert(T0 + 2000 * S)
    engine.esc.observe([again])
    assert engine.at(2299) == []
    assert [(m.channel, m.stage) for m in engine.at(2300)] == [("email", 1)]


def test_alert_without_policy_or_with_unknown_policy(engine: Engine) -> None:
    engine.esc.observe([alert(policy=None), alert(policy="nope", name="Other")])
    engine.esc.observe([alert(policy="nope", name="Other")])
    assert engine.esc.active() == []
    assert engine.at(1000) == []
    warned = [e for e in engine.audit if e["action"] == "escalation_unknown_policy"]
    assert len(warned) == 1 and warned[0]["details"]["policy"] == "nope"


# ---------------------------------------------------------------- restarts


def test_restart_in_the_middle_sends_each_stage_once(engine: Engine) -> None:
    engine.esc.observe([alert()])
    first = engine.at(300)
    engine.restart()
    engine.esc.observe([alert()])  # the evaluator re-sends the firing alert
    replay = engine.at(600)
    assert [m.id for m in replay] == [first[0].id]  # the last batch again, same id
    engine.restart()
    later = engine.at(900)  # after another restart: the replay again, then stage 2
    assert [(m.stage, m.id == first[0].id) for m in later] == [(1, True), (2, False)]
    assert engine.at(1000) == []
    assert outbox_rows(engine) == [("email", "escalation", 1), ("slack", "escalation", 2)]


def test_restart_after_a_long_stop_sends_every_overdue_stage(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(200)
    engine.restart()
    assert [(m.channel, m.stage) for m in engine.at(1500)] == [("email", 1), ("slack", 2)]
    assert outbox_rows(engine) == [("email", "escalation", 1), ("slack", "escalation", 2)]


def test_crash_between_commit_and_enqueue_loses_nothing(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.clock.set(T0 + 300 * S)
    lost = engine.esc.due()  # progress committed, the process dies before enqueueing
    assert len(lost) == 1
    engine.restart()
    engine.at(301)
    assert outbox_rows(engine) == [("email", "escalation", 1)]
    assert engine.outbox.get(lost[0].id) is not None


def test_ack_and_resolution_survive_a_restart(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(300)
    engine.esc.acknowledge(alert().fingerprint, by="alice")
    engine.restart()
    engine.esc.observe([alert()])
    assert engine.at(900) == []
    [status] = engine.esc.active()
    assert status.status == "acked"
    engine.esc.observe([alert().resolved(T0 + 950 * S)])
    engine.restart()  # the resolved notice is still owed after the restart
    assert [(m.kind, m.channel) for m in engine.at(960)] == [("resolved", "email")]
    assert engine.esc.active() == []
    engine.restart()
    assert engine.at(970) == []


def test_ack_written_to_the_database_by_another_process_stops_escalation(
        engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(300)
    # `monitoring ack --db FILE` while no server runs: another connection writes the ack
    other = AckStore(duckdb.connect(str(engine.path)).cursor(), engine.clock)
    engine.clock.set(T0 + 500 * S)
    other.acknowledge(alert().fingerprint, by="carol")
    got = engine.at(900)
    assert [(m.kind, m.channel) for m in got] == [("acknowledged", "email")]
    assert got[0].alerts[0].annotations["acknowledged_by"] == "carol"
    assert engine.esc.active()[0].status == "acked"


# ---------------------------------------------------------------- repeats


REPEAT_POLICIES = """
- name: loud
  repeat: 1
  stages:
    - delay: 300
      channels:
        - type: email
          recipients: [team@example.com]
    - delay: 15m
      repeat: 1
      channels: [slack]
"""


def test_policy_and_stage_repeats(tmp_path: Path) -> None:
    config = config_from((ROOT / "rules" / "notification_config.yaml").read_text(),
                         REPEAT_POLICIES)
    assert [(s.stage, s.offset_ms // S, s.cycle) for s in plan(policies(config)["loud"])] == \
        [(0, 300, 0), (1, 900, 0), (1, 1500, 0), (0, 1800, 1), (1, 2400, 1), (1, 3000, 1)]
    e = Engine(tmp_path / "r.duckdb", FakeClock(T0), config)
    e.esc.observe([alert(policy="loud")])
    sent = [(t, m.channel, m.stage) for t in range(0, 4000, 50) for m in e.at(t)]
    assert sent == [(300, "email", 1), (900, "slack", 2), (1500, "slack", 2),
                    (1800, "email", 1), (2400, "slack", 2), (3000, "slack", 2)]
    assert len({m.id for m in (entry.message() for entry in e.outbox.entries())}) == 6
    e.close()


def test_repeat_stops_on_ack(tmp_path: Path) -> None:
    config = config_from((ROOT / "rules" / "notification_config.yaml").read_text(),
                         REPEAT_POLICIES)
    e = Engine(tmp_path / "r.duckdb", FakeClock(T0), config)
    e.esc.observe([alert(policy="loud")])
    e.at(1500)
    e.clock.set(T0 + 1600 * S)
    notices = e.esc.acknowledge(alert().fingerprint, by="bob")
    # one acknowledgement per audience: the email recipients and the Slack channel
    assert sorted((m.channel, m.kind) for m in notices) == \
        [("email", "acknowledged"), ("slack", "acknowledged")]
    assert e.at(4000) == []
    e.close()


# ---------------------------------------------------------------- on-call targets


ONCALL = """
people:
  alice: {email: alice@example.com, slack: "@alice"}
  bob: {email: bob@example.com, slack: "@bob"}
  carol: {email: carol@example.com}
schedules:
  - name: primary
    timezone: Europe/Berlin
    rotations:
      - members: [alice, bob]
        length: daily
        handoff: "2026-03-23T09:00"
    overrides:
      - {member: carol, start: "2026-03-30T08:00", end: "2026-03-30T12:00"}
"""

ONCALL_POLICIES = """
- name: page_primary
  stages:
    - delay: 5m
      channels:
        - {type: email, schedule: primary}
    - delay: 10m
      channels:
        - {type: slack, schedule: primary}
"""


def berlin_ms(text: str) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return int(datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin"))
               .timestamp() * 1000)


@pytest.mark.parametrize(("fired", "email_to", "slack_person"), [
    # alice's shift (25 Mar 09:00 to 26 Mar 09:00 CET): stage 1 at 08:57 pages her, stage 2
    # at 09:02 pages bob, whose shift began at the hand-off
    ("2026-03-26T08:52", ("alice", "alice@example.com"), ("bob", "@bob")),
    # after the DST change (29 Mar 02:00 -> 03:00) the hand-off stays at 09:00 local time
    # (07:00 UTC, not 08:00 UTC as 24-hour steps from a CET hand-off would give)
    ("2026-03-29T08:52", ("bob", "bob@example.com"), ("alice", "@alice")),
    # override 30 Mar 08:00-12:00: carol, who has no Slack contact
    ("2026-03-30T08:50", ("carol", "carol@example.com"), ("carol", None)),
])
def test_schedule_targets_page_the_person_on_call(
        tmp_path: Path, fired: str, email_to: tuple[str, str],
        slack_person: tuple[str, str | None]) -> None:
    config = config_from((ROOT / "rules" / "notification_config.yaml").read_text(),
                         ONCALL_POLICIES)
    start = berlin_ms(fired)
    clock = FakeClock(start)
    e = Engine(tmp_path / "o.duckdb", clock, config, oncall_from(ONCALL))
    e.esc.observe([alert(start, policy="page_primary")])
    got: list[Message] = []
    for minutes in range(0, 12):
        clock.set(start + minutes * 60 * S)
        got.extend(e.esc.due())
    assert [(m.channel, m.person, m.recipients) for m in got] == [
        ("email", email_to[0], (email_to[1],)),
        ("slack", slack_person[0], (slack_person[1],) if slack_person[1] else ()),
    ]
    if slack_person[1] is None:
        [warn] = [a for a in e.audit if a["action"] == "escalation_no_contact"]
        assert warn["details"]["person"] == "carol"
    e.close()


def test_unknown_channels_and_schedules_are_errors_at_load(tmp_path: Path) -> None:
    config = config_from((ROOT / "rules" / "notification_config.yaml").read_text(), """
- name: bad
  stages:
    - delay: 5m
      channels: [emial, {type: pagerduty}, {type: email, schedule: primray}]
""")
    conn = duckdb.connect(str(tmp_path / "b.duckdb"))
    clock = FakeClock(T0)
    with pytest.raises(EscalationConfigError) as info:
        Escalations(conn, policies(config), channels(config), oncall_from(ONCALL),
                    AckStore(conn, clock), clock)
    found = [(d.code, d.location(), d.message, d.hints) for d in info.value.diagnostics]
    assert found == [
        ("name/unknown-channel", "escalation_policies.yaml:5:18",
         "unknown notification channel 'emial' in escalation policy 'bad'",
         ("did you mean 'email'?",)),
        ("config/no-channel-of-type", "escalation_policies.yaml:5:25",
         "no notification channel of type 'pagerduty' is configured (in escalation "
         "policy 'bad')",
         ("add a pagerduty channel to notification_config.yaml",)),
        ("name/unknown-schedule", "escalation_policies.yaml:5:44",
         "unknown on-call schedule 'primray' in escalation policy 'bad'",
         ("did you mean 'primary'?",)),
    ]
    assert "escalation_policies.yaml:5:18: unknown notification channel 'emial'" in \
        str(info.value)
    conn.close()


# ---------------------------------------------------------------- silences, several alerts


def test_stages_due_while_silenced_are_skipped_and_audited(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    conn = duckdb.connect(str(tmp_path / "m.duckdb"))
    silenced = {"on": True}
    audit: list[Mapping[str, Any]] = []
    config = seed_config()
    esc = Escalations(conn.cursor(), policies(config), channels(config), None,
                      AckStore(conn.cursor(), clock), clock, audit.append,
                      muted=lambda a: silenced["on"])
    esc.observe([alert()])
    clock.set(T0 + 300 * S)
    assert esc.due() == []
    silenced["on"] = False
    clock.set(T0 + 900 * S)
    assert [m.stage for m in esc.due()] == [2]
    skipped = [a["details"] for a in audit if a["details"].get("suppressed")]
    assert [(d["stage"], d["reason"]) for d in skipped] == [(1, "silenced")]
    conn.close()


def test_several_alerts_each_on_their_own_clock(engine: Engine) -> None:
    a = alert()
    b = alert(T0 + 100 * S, name="DiskFull")
    engine.esc.observe([a, b])
    assert engine.esc.next_due_ms() == T0 + 300 * S
    assert [m.alerts[0].name for m in engine.at(300)] == ["HighCPU"]
    assert engine.esc.next_due_ms() == T0 + 400 * S
    assert [m.alerts[0].name for m in engine.at(400)] == ["DiskFull"]
    assert [(s.rule, s.next_stage, s.next_due_ms) for s in engine.esc.active()] == \
        [("HighCPU", 2, T0 + 900 * S), ("DiskFull", 2, T0 + 1000 * S)]
    engine.esc.acknowledge(a.fingerprint, by="alice")
    assert [m.alerts[0].name for m in engine.at(1000)] == ["DiskFull"]


def test_ack_store_rejects_missing_fields(engine: Engine) -> None:
    from monitoring.notify.acks import AckError

    with pytest.raises(AckError, match="by: who acknowledges must be named"):
        engine.acks.acknowledge("abc", by="  ")
    with pytest.raises(AckError, match="fingerprint"):
        engine.acks.acknowledge("", by="alice")
    assert engine.acks.list() == []
    engine.clock.set(T0 + 5 * S)
    first = engine.acks.acknowledge("abc", by="alice")
    engine.clock.set(T0 + 9 * S)
    engine.acks.acknowledge("def", by="bob", comment="on it")
    assert engine.acks.is_acked("abc", T0) and not engine.acks.is_acked("abc", T0 + 6 * S)
    assert [a.fingerprint for a in engine.acks.list()] == ["def", "abc"]
    assert engine.acks.list(fingerprint="abc") == [first]
    assert engine.acks.last("def") is not None
    assert engine.acks.list(since_ms=T0 + 6 * S)[0].to_json() == {
        "id": engine.acks.list(since_ms=T0 + 6 * S)[0].id, "fingerprint": "def", "rule": "",
        "acked_ms": T0 + 9 * S, "by": "bob", "comment": "on it"}


def test_no_replay_of_a_batch_older_than_a_day(engine: Engine) -> None:
    engine.esc.observe([alert()])
    engine.at(900)
    engine.restart()
    assert [m.stage for m in engine.at(1000)] == [1, 2]  # replayed: the outbox holds them
    engine.restart()
    assert engine.at(900 + 86_401) == []
