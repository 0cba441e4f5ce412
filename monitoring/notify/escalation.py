"""Escalation: page stage after stage until somebody acknowledges or the alert resolves.

A rule names a policy of ``escalation_policies.yaml`` (``alert.escalation``). From the
moment the alert starts firing, stage ``i`` is due at ``start + delay_i`` (the delays are
offsets from the firing start, which is why the lint check ``config/stage-order`` wants
them increasing). A stage's ``repeat`` sends it again that many times, one step apart (its
delay minus the previous stage's), pushing later stages back by as much; the policy's
``repeat`` restarts the stages that many times, each cycle starting at the previous
cycle's last stage. Escalation stops at the first acknowledgement or resolution.

Progress is a row of ``notify_escalations`` per firing episode (fingerprint + start),
committed each time a stage is emitted, so a restarted engine continues where the last
one stopped: overdue stages are all sent, none twice. The one window a crash could open,
between committing a stage and the caller enqueueing its messages, is closed by replay:
after a restart the messages of the last emitted batch are emitted once more with the
same ids, which the outbox ignores when it already holds them.

Every stage message goes to the channels the stage names, and everything sent is recorded
so that an acknowledgement reaches the same places ("acknowledged" messages: PagerDuty
acknowledges its incident, a Slack thread gets an update) and a resolution too.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import duckdb

from monitoring.dsl.config import ChannelTarget, EscalationPolicy, NotificationChannel
from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.notify.acks import AckStore
from monitoring.notify.model import FIRING, Alert, AuditSink, Clock, Message, message_id
from monitoring.notify.oncall import OnCallConfig
from monitoring.notify.oncall_config import ConfigDiagnosticsError

REPLAY_WINDOW_MS = 86_400_000
"""After a restart, the last batch is emitted again only if it is younger than this (the
outbox's default expiry): older messages were enqueued or are past delivering anyway."""

ACTIVE, ACKED, RESOLVED, DONE = "active", "acked", "resolved", "done"
ESCALATION_STATUSES = (ACTIVE, ACKED, RESOLVED, DONE)
"""``active`` stages still to come; ``acked`` stopped by an acknowledgement; ``resolved``
stopped by the resolution; ``done`` every stage sent, nobody acknowledged yet."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_escalations (
    fingerprint TEXT NOT NULL,
    started_ms BIGINT NOT NULL,
    policy TEXT NOT NULL,
    rule TEXT NOT NULL,
    status TEXT NOT NULL,
    next_step INTEGER NOT NULL,
    batch_start INTEGER NOT NULL,
    next_due_ms BIGINT,
    alert TEXT NOT NULL,
    notified TEXT NOT NULL,
    notice TEXT NOT NULL,
    acked_by TEXT NOT NULL,
    updated_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    PRIMARY KEY (fingerprint, started_ms)
)
"""
_COLUMNS = ("fingerprint, started_ms, policy, rule, status, next_step, batch_start, "
            "next_due_ms, alert, notified, notice, acked_by, updated_ms, ended_ms")


class EscalationConfigError(ConfigDiagnosticsError):
    """Policies that name channels or schedules which do not exist."""

    what = "escalation policies"


@dataclass(frozen=True, slots=True)
class Step:
    """One notification of a policy's timeline: stage ``stage`` at ``offset_ms``."""

    stage: int
    """0-based index into the policy's stages (messages carry ``stage + 1``)."""
    offset_ms: int
    """From the alert's firing start."""
    cycle: int = 0


def plan(policy: EscalationPolicy) -> list[Step]:
    """The whole timeline of a policy: stages, their repeats and the policy's repeats.

    Stage delays are offsets from the firing start; a stage's step is its delay minus the
    previous stage's (a stage listed out of order gets a step of 0: it goes out with the
    previous one). Repeats need a step: a stage repeat with a step of 0, or a policy repeat
    of a timeline whose last stage is at 0, is not sent.
    """
    cycle: list[tuple[int, int]] = []
    at = 0
    previous = 0
    for index, stage in enumerate(policy.stages):
        step = max(0, stage.delay.ms - previous)
        at += step
        cycle.append((index, at))
        for _ in range(stage.repeat if step > 0 else 0):
            at += step
            cycle.append((index, at))
        previous = stage.delay.ms
    if not cycle:
        return []
    length = cycle[-1][1]
    cycles = 1 + (policy.repeat if length > 0 else 0)
    return [Step(index, c * length + offset, c) for c in range(cycles) for index, offset in cycle]


@dataclass(frozen=True, slots=True)
class Sent:
    """One message an escalation emitted: enough to rebuild it and to reach it again."""

    id: str
    channel: str
    step: int
    stage: int
    created_ms: int
    recipients: tuple[str, ...] = ()
    target: Mapping[str, Any] = field(default_factory=dict)
    person: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "step": self.step,
                "stage": self.stage, "created_ms": self.created_ms,
                "recipients": list(self.recipients), "target": dict(self.target),
                "person": self.person}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sent:
        return cls(str(data["id"]), str(data["channel"]), int(data["step"]),
                   int(data["stage"]), int(data["created_ms"]),
                   tuple(data.get("recipients", ())), dict(data.get("target", {})),
                   data.get("person"))

    def audience(self) -> tuple[str, tuple[str, ...], str]:
        """Who received it: the same audience gets one acknowledgement, not one per stage."""
        return self.channel, self.recipients, json.dumps(dict(self.target), sort_keys=True)


@dataclass(frozen=True, slots=True)
class EscalationStatus:
    """Where one alert's escalation stands (for the API and the CLI)."""

    fingerprint: str
    rule: str
    policy: str
    started_ms: int
    status: str
    next_stage: int | None
    """1-based stage number of the next message, None when no more will be sent."""
    next_due_ms: int | None
    sent: int
    """How many stage messages were emitted."""
    channels: tuple[str, ...]
    acked_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "rule": self.rule, "policy": self.policy,
                "started_ms": self.started_ms, "status": self.status,
                "next_stage": self.next_stage, "next_due_ms": self.next_due_ms,
                "sent": self.sent, "channels": list(self.channels), "acked_by": self.acked_by}


@dataclass(slots=True)
class _Episode:
    """One firing episode under escalation (mirrors its row)."""

    alert: Alert
    policy: str
    status: str = ACTIVE
    next_step: int = 0
    batch_start: int = 0
    notified: list[Sent] = field(default_factory=list)
    notice: str = ""
    """A notice still to emit to the notified channels: ``resolved`` or ``acknowledged``."""
    acked_by: str = ""
    ended_ms: int | None = None
    replay: bool = False

    @property
    def fingerprint(self) -> str:
        return self.alert.fingerprint

    @property
    def started_ms(self) -> int:
        return self.alert.starts_at_ms

    @property
    def group_key(self) -> str:
        return f"escalation/{self.policy}/{self.fingerprint}/{self.started_ms}"


class Escalations:
    """Tracks firing alerts that have a policy and emits their stage messages when due."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, policies: Mapping[str, EscalationPolicy],
                 channels: Mapping[str, NotificationChannel], oncall: OnCallConfig | None,
                 acks: AckStore, clock: Clock, audit: AuditSink | None = None, *,
                 muted: Callable[[Alert], bool] | None = None) -> None:
        problems = [d for d in check_policies(policies.values(), channels, oncall)
                    if d.severity is Severity.ERROR]
        if problems:
            raise EscalationConfigError(problems)
        self._conn = conn
        self._policies = dict(policies)
        self._plans = {name: plan(p) for name, p in policies.items()}
        self._channel_types = {name: c.type for name, c in channels.items()}
        self._channel_types.setdefault("console", "console")
        self._targets = {name: [[target_channel(t, channels) for t in stage.targets]
                                for stage in p.stages] for name, p in policies.items()}
        self._oncall = oncall
        self._acks = acks
        self._clock = clock
        self._audit = audit
        self._muted = muted
        self._unknown_policies: set[str] = set()
        conn.execute(_SCHEMA)
        self._episodes: dict[str, _Episode] = {}
        self._closing: list[_Episode] = []  # resolved, their notice not yet emitted
        self._load()

    # ------------------------------------------------------------ inputs

    def observe(self, alerts: Iterable[Alert]) -> None:
        """Track new firing episodes of alerts with a policy; stop those that resolved."""
        for alert in alerts:
            if alert.status == FIRING:
                self._firing(alert)
            else:
                self._resolved(alert)

    def acknowledge(self, fingerprint: str, *, by: str, comment: str = "") -> list[Message]:
        """Record an acknowledgement and stop the alert's escalation.

        Returns ``acknowledged`` messages to every audience the escalation already
        notified (none when it had not notified anyone, or was stopped before). The
        acknowledgement is recorded even for an alert without escalation.
        """
        episode = self._episodes.get(fingerprint.strip())
        ack = self._acks.acknowledge(fingerprint, by=by, comment=comment,
                                     rule=episode.alert.rule if episode else "")
        if episode is None or episode.status not in (ACTIVE, DONE):
            return []
        episode.status = ACKED
        episode.acked_by = ack.by
        episode.ended_ms = ack.acked_ms
        messages = self._notices(episode, "acknowledged", ack.acked_ms, ack.by, ack.comment)
        self._stopped(episode, "acknowledged", by=ack.by)
        self._save(episode)
        return messages

    # ------------------------------------------------------------ outputs

    def due(self) -> list[Message]:
        """The messages due now: stages reached, and notices of stops not yet sent."""
        now = self._clock.now_ms()
        out: list[Message] = []
        closing, self._closing = self._closing, []
        for episode in (*closing, *sorted(self._episodes.values(),
                                          key=lambda e: (e.started_ms, e.fingerprint))):
            changed = False
            if episode.replay:
                out.extend(self._replay(episode, now))
                episode.replay = False
            due_at = self._due_ms(episode) if episode.status == ACTIVE else None
            if due_at is not None and due_at <= now:
                changed = self._advance(episode, now, out)
            if episode.notice:
                out.extend(self._notices(episode, episode.notice, now, episode.acked_by, ""))
                episode.notice = ""
                changed = True
            if changed:
                self._save(episode)
        return out

    def next_due_ms(self) -> int | None:
        """When :meth:`due` has something next (now when notices wait), None if never."""
        times = [self._clock.now_ms() for e in (*self._closing, *self._episodes.values())
                 if e.notice or e.replay]
        times.extend(t for e in self._episodes.values()
                     if e.status == ACTIVE and (t := self._due_ms(e)) is not None)
        return min(times) if times else None

    def active(self) -> list[EscalationStatus]:
        """Every tracked episode not yet resolved (active, acked or done), oldest first."""
        return [self._status(e) for e in sorted(self._episodes.values(),
                                                key=lambda e: (e.started_ms, e.fingerprint))]

    def status(self, fingerprint: str) -> EscalationStatus | None:
        """The escalation of one alert, if tracked."""
        episode = self._episodes.get(fingerprint)
        return self._status(episode) if episode is not None else None

    # ------------------------------------------------------------ episodes

    def _firing(self, alert: Alert) -> None:
        name = alert.escalation
        if not name:
            return
        episode = self._episodes.get(alert.fingerprint)
        if episode is not None and episode.started_ms == alert.starts_at_ms:
            return
        if episode is not None:  # a new episode while the old one never resolved
            self._resolved(alert.resolved(alert.starts_at_ms))
        if name not in self._policies:
            if name not in self._unknown_policies:
                self._unknown_policies.add(name)
                self._emit_audit("escalation_unknown_policy", alert, "warning",
                                 {"policy": name, "known": sorted(self._policies)})
            return
        if self._stored(alert.fingerprint, alert.starts_at_ms):
            return  # this episode ended before a restart
        episode = _Episode(alert, name)
        self._episodes[alert.fingerprint] = episode
        if self._acks.is_acked(alert.fingerprint, alert.starts_at_ms):
            episode.status = ACKED
            last = self._acks.last(alert.fingerprint, alert.starts_at_ms)
            episode.acked_by = last.by if last else ""
        self._emit_audit("escalation_started", alert, "info",
                         {"policy": name, "status": episode.status,
                          "first_due_ms": self._due_ms(episode)})
        self._save(episode)

    def _resolved(self, alert: Alert) -> None:
        episode = self._episodes.pop(alert.fingerprint, None)
        if episode is None:
            return
        was = episode.status
        episode.status = RESOLVED
        episode.ended_ms = alert.ends_at_ms if alert.ends_at_ms is not None else \
            self._clock.now_ms()
        if episode.notified:
            episode.notice = "resolved"
        if was in (ACTIVE, DONE):
            self._stopped(episode, "resolved")
        self._save(episode)
        if episode.notice:
            self._closing.append(episode)

    def _advance(self, episode: _Episode, now: int, out: list[Message]) -> bool:
        """Emit every step due by ``now`` (all overdue ones after a restart); True if changed."""
        ack = self._acks.last(episode.fingerprint, episode.started_ms)
        if ack is not None:  # acknowledged outside this engine (CLI on the database file)
            episode.status = ACKED
            episode.acked_by = ack.by
            episode.ended_ms = ack.acked_ms
            episode.notice = "acknowledged" if episode.notified else ""
            self._stopped(episode, "acknowledged", by=ack.by)
            return True
        steps = self._plans[episode.policy]
        episode.batch_start = episode.next_step
        while episode.next_step < len(steps) and \
                episode.started_ms + steps[episode.next_step].offset_ms <= now:
            out.extend(self._stage(episode, episode.next_step, now))
            episode.next_step += 1
        if episode.next_step >= len(steps):
            episode.status = DONE
            self._stopped(episode, "done")
        return True

    def _stage(self, episode: _Episode, index: int, now: int) -> list[Message]:
        """The messages of one step, recorded in the episode as sent."""
        step = self._plans[episode.policy][index]
        policy = self._policies[episode.policy]
        alert = episode.alert
        due_ms = episode.started_ms + step.offset_ms
        if self._muted is not None and self._muted(alert):
            self._emit_audit("escalation", alert, "info",
                             {"policy": episode.policy, "stage": step.stage + 1, "step": index,
                              "suppressed": True, "reason": "silenced"})
            return []
        out: list[Message] = []
        for t, target in enumerate(policy.stages[step.stage].targets):
            channel = self._targets[episode.policy][step.stage][t]
            recipients, extra, person = self._audience(target, channel, alert, now)
            mid = message_id(channel, "escalation", episode.group_key, (alert,), due_ms,
                             f"{episode.policy}:{index}:{t}")
            sent = Sent(mid, channel, index, step.stage + 1, now, recipients, extra, person)
            episode.notified.append(sent)
            out.append(self._message(episode, sent, "escalation", alert))
        self._emit_audit("escalation", alert, "warning" if step.stage > 0 else "info",
                         {"policy": episode.policy, "stage": step.stage + 1, "step": index,
                          "cycle": step.cycle, "due_ms": due_ms,
                          "channels": [m.channel for m in out],
                          "people": [m.person for m in out if m.person],
                          "message_ids": [m.id for m in out]})
        return out

    def _audience(self, target: ChannelTarget, channel: str, alert: Alert,
                  now: int) -> tuple[tuple[str, ...], dict[str, Any], str | None]:
        """Recipients, target overrides and on-call person of one stage target."""
        settings = dict(target.settings)
        schedule = settings.pop("schedule", None)
        recipients = target.recipients
        if not isinstance(schedule, str) or self._oncall is None:
            return recipients, settings, None
        person = self._oncall.current(schedule, now)
        kind = self._channel_types.get(channel, target.type or channel)
        if person is None:
            self._emit_audit("escalation_nobody_on_call", alert, "warning",
                             {"schedule": schedule, "channel": channel})
            return recipients, settings, None
        contact = person.contact(kind)
        if contact is None:
            self._emit_audit("escalation_no_contact", alert, "warning",
                             {"schedule": schedule, "person": person.name, "channel": channel,
                              "channel_type": kind})
            return recipients, settings, person.name
        return (contact,), settings, person.name

    def _replay(self, episode: _Episode, now: int) -> list[Message]:
        """The last emitted batch again, same ids (after a restart; the outbox dedups)."""
        return [self._message(episode, sent, "escalation", episode.alert)
                for sent in episode.notified
                if sent.step >= episode.batch_start and now - sent.created_ms <= REPLAY_WINDOW_MS]

    def _notices(self, episode: _Episode, kind: str, at_ms: int, by: str,
                 comment: str) -> list[Message]:
        """One ``acknowledged`` or ``resolved`` message per audience already notified."""
        alert = episode.alert
        if kind == "resolved":
            alert = alert.resolved(episode.ended_ms if episode.ended_ms is not None else at_ms)
        else:
            extra = {"acknowledged_by": by, **({"acknowledged_comment": comment} if comment
                                              else {})}
            alert = replace(alert, annotations={**alert.annotations, **extra})
        latest: dict[tuple[str, tuple[str, ...], str], Sent] = {}
        for sent in episode.notified:
            latest[sent.audience()] = sent
        out = []
        for sent in latest.values():
            mid = message_id(sent.channel, kind, episode.group_key, (alert,), at_ms,
                             f"{episode.policy}:{json.dumps(sent.audience())}")
            out.append(self._message(episode, replace(sent, id=mid, created_ms=at_ms), kind,
                                     alert))
        return out

    def _message(self, episode: _Episode, sent: Sent, kind: str, alert: Alert) -> Message:
        return Message(sent.id, sent.channel, kind, episode.group_key, (alert,),
                       sent.created_ms, sent.recipients, dict(sent.target), sent.stage,
                       episode.policy, sent.person)

    def _due_ms(self, episode: _Episode) -> int | None:
        steps = self._plans.get(episode.policy, [])
        if episode.next_step >= len(steps):
            return None
        return episode.started_ms + steps[episode.next_step].offset_ms

    def _stopped(self, episode: _Episode, reason: str, *, by: str = "") -> None:
        self._emit_audit("escalation_stopped", episode.alert, "info",
                         {"policy": episode.policy, "reason": reason, "by": by,
                          "stages_sent": len({s.step for s in episode.notified})})

    def _status(self, episode: _Episode) -> EscalationStatus:
        due = self._due_ms(episode) if episode.status == ACTIVE else None
        steps = self._plans.get(episode.policy, [])
        next_stage = steps[episode.next_step].stage + 1 if due is not None else None
        return EscalationStatus(episode.fingerprint, episode.alert.rule, episode.policy,
                                episode.started_ms, episode.status, next_stage, due,
                                len(episode.notified),
                                tuple(dict.fromkeys(s.channel for s in episode.notified)),
                                episode.acked_by)

    def _emit_audit(self, action: str, alert: Alert, severity: str,
                    details: Mapping[str, Any]) -> None:
        if self._audit is None:
            return
        self._audit({"event_type": "notification", "action": action, "severity": severity,
                     "resource": alert.fingerprint,
                     "details": {"fingerprint": alert.fingerprint, "rule": alert.rule,
                                 "alertname": alert.name, **details}})

    # ------------------------------------------------------------ storage

    def _save(self, episode: _Episode) -> None:
        self._conn.execute(
            f"INSERT OR REPLACE INTO notify_escalations ({_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [episode.fingerprint, episode.started_ms, episode.policy, episode.alert.rule,
             episode.status, episode.next_step, episode.batch_start,
             self._due_ms(episode) if episode.status == ACTIVE else None,
             json.dumps(episode.alert.to_json(), sort_keys=True),
             json.dumps([s.to_json() for s in episode.notified], sort_keys=True),
             episode.notice, episode.acked_by, self._clock.now_ms(), episode.ended_ms])

    def _stored(self, fingerprint: str, started_ms: int) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM notify_escalations WHERE fingerprint = ? AND started_ms = ?",
            [fingerprint, started_ms]).fetchone()
        return row is not None

    def _load(self) -> None:
        """Pick up the episodes a previous engine left unresolved (or with a notice due)."""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM notify_escalations "
            "WHERE status <> 'resolved' OR notice <> '' ORDER BY started_ms").fetchall()
        for row in rows:
            alert = Alert.from_json(json.loads(row[8]))
            episode = _Episode(alert, str(row[2]), str(row[4]), int(row[5]), int(row[6]),
                               [Sent.from_json(s) for s in json.loads(row[9])], str(row[10]),
                               str(row[11]), None if row[13] is None else int(row[13]))
            if episode.status == RESOLVED:
                self._closing.append(episode)
                continue
            if episode.policy not in self._policies and episode.status == ACTIVE:
                episode.status = DONE  # the policy was removed from the configuration
            episode.replay = episode.status in (ACTIVE, DONE) and episode.next_step > 0
            self._episodes[episode.fingerprint] = episode  # rows in start order: latest wins


# ---------------------------------------------------------------- configuration checks


def target_channel(target: ChannelTarget, channels: Mapping[str, NotificationChannel]) -> str:
    """The configured channel a stage target sends through (see :func:`check_policies`).

    A named channel is itself; ``{type: email}`` is the channel named like the type if it
    has that type, else the first channel of that type; ``console`` always exists.
    """
    if target.channel is not None:
        return target.channel.value
    kind = target.type or ""
    named = channels.get(kind)
    if named is not None and named.type == kind:
        return kind
    first = next((name for name, c in channels.items() if c.type == kind), None)
    return first if first is not None else kind


def check_policies(policies: Iterable[EscalationPolicy],
                   channels: Mapping[str, NotificationChannel],
                   oncall: OnCallConfig | None) -> list[Diagnostic]:
    """Errors for stage targets that name missing channels or schedules, located."""
    out: list[Diagnostic] = []
    schedules: Sequence[str] = sorted(oncall.schedules) if oncall is not None else []
    for policy in policies:
        for stage in policy.stages:
            for target in stage.targets:
                out.extend(_check_target(policy, target, channels, schedules, oncall))
    return out


def _check_target(policy: EscalationPolicy, target: ChannelTarget,
                  channels: Mapping[str, NotificationChannel], schedules: Sequence[str],
                  oncall: OnCallConfig | None) -> list[Diagnostic]:
    where = f"in escalation policy {policy.name.value!r}"
    span = target.channel.span if target.channel is not None and target.channel.span \
        else target.span
    out: list[Diagnostic] = []
    name = target_channel(target, channels)
    configured = channels.get(name)
    if configured is None and name != "console":
        if target.channel is not None:
            hint = did_you_mean(name, channels)
            listing = ", ".join(sorted(channels)) or "none"
            out.append(Diagnostic("name/unknown-channel", Severity.ERROR,
                                  f"unknown notification channel {name!r} {where}", span,
                                  (hint or f"configured channels: {listing}",)))
        else:
            out.append(Diagnostic("config/no-channel-of-type", Severity.ERROR,
                                  f"no notification channel of type {name!r} is configured "
                                  f"({where})", span,
                                  (f"add a {name} channel to notification_config.yaml",)))
    elif configured is not None and target.type is not None and configured.type != target.type:
        out.append(Diagnostic("config/channel-type", Severity.ERROR,
                              f"channel {name!r} is of type {configured.type!r}, not "
                              f"{target.type!r} ({where})", span))
    schedule = target.settings.get("schedule")
    if isinstance(schedule, str) and schedule not in schedules:
        hint = did_you_mean(schedule, schedules)
        reason = "no oncall.yaml is loaded" if oncall is None else \
            f"schedules: {', '.join(schedules) or 'none'}"
        out.append(Diagnostic("name/unknown-schedule", Severity.ERROR,
                              f"unknown on-call schedule {schedule!r} {where}", target.span,
                              (hint or reason,)))
    return out
