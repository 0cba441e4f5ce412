"""The notification pipeline: alerts in, the messages due now out.

Stages, in Alertmanager's order, each in its own module: routing (the rule's own
channels plus every matching route of the tree, one receiver once), grouping
(one aggregation group per route, grouping labels and receiver), and at each
flush of a group: inhibition, silences, the rule's cooldown, mute/active time
intervals, then the notification log decides whether the receiver needs to hear
anything (new firing alerts, resolutions of alerts it was told of, or a repeat).

Timing is Alertmanager's: a new group waits ``group_wait`` (or flushes at once
when its first alert started longer ago than that, as after a restart), then
flushes every ``group_interval``; a group that keeps firing unchanged is
repeated at the first flush after ``repeat_interval`` has passed since the last
notification (so with the defaults 4h and 5m, after 4h05m), the interval growing
by ``repeat_backoff`` after each repeat up to ``max_repeat_interval`` and reset
by any change. The pipeline never sleeps: the caller calls :meth:`Pipeline.flush`
at :meth:`Pipeline.next_due_ms` and enqueues the messages in the outbox.

Every decision is audited as event_type ``notification``, action ``decision``:
each message made, and each alert held back (silenced, inhibited, cooldown) or
group muted, once per change rather than at every flush.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import duckdb

from monitoring.notify.inhibit import Inhibitor
from monitoring.notify.model import (
    FIRING,
    RESOLVED,
    Alert,
    AuditSink,
    Clock,
    Message,
    message_id,
)
from monitoring.notify.nflog import NflogEntry, NotificationLog, episode
from monitoring.notify.routing import Route
from monitoring.notify.routing_config import RoutingConfig
from monitoring.notify.silences import SilenceStore

RULE_ROUTE_KEY = "rule"
"""The key of the implicit route that carries a rule's own channels."""


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """An alert the pipeline knows, and whether (and why) it is held back now."""

    alert: Alert
    state: str  # "active" | "suppressed"
    silenced_by: tuple[str, ...] = ()
    inhibited_by: tuple[str, ...] = ()
    muted: bool = False
    cooldown: bool = False
    receivers: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"fingerprint": self.alert.fingerprint, "alert": self.alert.to_json(),
                "state": self.state, "silenced_by": list(self.silenced_by),
                "inhibited_by": list(self.inhibited_by), "muted": self.muted,
                "cooldown": self.cooldown, "receivers": list(self.receivers)}


@dataclass(slots=True)
class _Group:
    """One aggregation group for one receiver."""

    key: str
    route: Route
    receiver: str
    next_ms: int
    alerts: dict[str, Alert] = field(default_factory=dict)


class Pipeline:
    """Routing, grouping, inhibition, silences, cooldown, time intervals and the nflog."""

    def __init__(self, config: RoutingConfig, silences: SilenceStore,
                 conn: duckdb.DuckDBPyConnection, clock: Clock,
                 audit: AuditSink | None = None) -> None:
        self.config = config
        self.silences = silences
        self.clock = clock
        self.audit = audit
        self.nflog = NotificationLog(conn)
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self.counts: Counter[str] = Counter()
        """Decisions so far: notified, silenced, inhibited, cooldown, muted (for metrics)."""
        self._groups: dict[tuple[str, str], _Group] = {}
        self._alerts: dict[str, Alert] = {}
        self._last_firing: dict[str, tuple[int, int] | None] = {}
        self._reported: dict[str, tuple[str, ...]] = {}
        self._muted_groups: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ input

    def replace_config(self, config: RoutingConfig) -> None:
        """Use a new routing config for alerts from now on (existing groups run out)."""
        self.config = config
        self.inhibitor = Inhibitor(config.inhibit_rules)

    def ingest(self, alerts: Iterable[Alert]) -> None:
        """Take the current firing alerts and new resolutions (the same alert twice is one)."""
        now = self.clock.now_ms()
        resolutions = False
        for alert in alerts:
            fp = alert.fingerprint
            resolutions = resolutions or alert.status == RESOLVED
            if alert.status == RESOLVED and fp not in self._alerts:
                continue  # never heard of it: nothing to resolve
            self._alerts[fp] = alert
            for route, receiver in self._targets(alert.labels, alert.channels):
                key = (route.group_key(alert.labels), receiver)
                group = self._groups.get(key)
                if group is None:
                    if alert.status == RESOLVED:
                        continue
                    wait = route.settings.group_wait_ms
                    start = now if alert.starts_at_ms + wait < now else now + wait
                    group = self._groups[key] = _Group(key[0], route, receiver, start)
                if alert.status == RESOLVED and fp not in group.alerts:
                    continue
                group.alerts[fp] = alert
        if resolutions:
            self._prune()

    # ------------------------------------------------------------ output

    def next_due_ms(self) -> int | None:
        """When :meth:`flush` has something to do next (None: no group)."""
        return min((g.next_ms for g in self._groups.values()), default=None)

    def flush(self) -> list[Message]:
        """The messages due now; the notification log records them as sent."""
        now = self.clock.now_ms()
        due = [g for g in self._groups.values() if g.next_ms <= now]
        if not due:
            return []
        self.inhibitor.update(self._alerts.values())
        out: list[Message] = []
        for group in sorted(due, key=lambda g: (g.next_ms, g.key, g.receiver)):
            message = self._flush_group(group, now)
            if message is not None:
                out.append(message)
            if group.alerts:
                group.next_ms = now + group.route.settings.group_interval_ms
            else:
                del self._groups[(group.key, group.receiver)]
        self._prune()
        return out

    def statuses(self) -> list[AlertStatus]:
        """Every alert the pipeline knows, with why it is held back if it is."""
        now = self.clock.now_ms()
        self.inhibitor.update(self._alerts.values())
        out: list[AlertStatus] = []
        for fp in sorted(self._alerts):
            alert = self._alerts[fp]
            targets = self._targets(alert.labels, alert.channels)
            silenced = tuple(self.silences.silencing(alert.labels))
            inhibited = tuple(self.inhibitor.inhibited_by(alert.labels, fp))
            muted = bool(targets) and all(self._muted(route, now) for route, _ in targets)
            cooldown = alert.status == FIRING and self._in_cooldown(alert, now)
            held = alert.status == FIRING and bool(silenced or inhibited or muted or cooldown)
            out.append(AlertStatus(alert, "suppressed" if held else "active", silenced,
                                   inhibited, muted, cooldown,
                                   tuple(receiver for _, receiver in targets)))
        return out

    def routes_for(self, labels: Mapping[str, str], channels: Sequence[str] = ()) -> list[str]:
        """The receivers an alert with ``labels`` (and rule ``channels``) would go to."""
        return [receiver for _, receiver in self._targets(labels, tuple(channels))]

    # ------------------------------------------------------------ stages

    def _targets(self, labels: Mapping[str, str],
                 channels: tuple[str, ...]) -> list[tuple[Route, str]]:
        """(route, receiver) pairs: the rule's channels first, then the tree; each receiver once."""
        out: list[tuple[Route, str]] = []
        seen: set[str] = set()
        root = self.config.route
        routes = [root.with_receivers(RULE_ROUTE_KEY, channels)] if channels else []
        routes += root.match(labels)
        for route in routes:
            for receiver in route.receivers:
                if receiver not in seen:
                    seen.add(receiver)
                    out.append((route, receiver))
        return out

    def _muted(self, route: Route, now: int) -> bool:
        intervals = self.config.time_intervals
        if any(name in intervals and intervals[name].contains(now)
               for name in route.mute_time_intervals):
            return True
        active = route.active_time_intervals
        return bool(active) and not any(name in intervals and intervals[name].contains(now)
                                        for name in active)

    def _in_cooldown(self, alert: Alert, now: int) -> bool:
        """A new episode of an alert notified less than its rule's cooldown ago."""
        if alert.cooldown_ms <= 0:
            return False
        fp = alert.fingerprint
        if fp not in self._last_firing:
            self._last_firing[fp] = self.nflog.last_firing(fp)
        last = self._last_firing[fp]
        return last is not None and last[0] != alert.starts_at_ms and \
            now < last[1] + alert.cooldown_ms

    def _held_back(self, alert: Alert, now: int) -> bool:
        """Whether a firing alert is silenced, inhibited or in cooldown (audited on change)."""
        fp = alert.fingerprint
        reasons: list[tuple[str, list[str]]] = []
        silenced = self.silences.silencing(alert.labels)
        if silenced:
            reasons.append(("silenced", silenced))
        inhibited = self.inhibitor.inhibited_by(alert.labels, fp)
        if inhibited:
            reasons.append(("inhibited", inhibited))
        if self._in_cooldown(alert, now):
            reasons.append(("cooldown", []))
        state = tuple(f"{r}:{','.join(by)}" for r, by in reasons)
        if state and self._reported.get(fp) != state:
            for reason, by in reasons:
                self.counts[reason] += 1
                self._decision("suppress", "info", {
                    "reason": reason, "fingerprint": fp, "alertname": alert.name,
                    "starts_at_ms": alert.starts_at_ms, "by": list(by)})
        self._reported[fp] = state
        return bool(state)

    def _flush_group(self, group: _Group, now: int) -> Message | None:
        settings = group.route.settings
        firing: list[Alert] = []
        resolved: list[Alert] = []
        for alert in group.alerts.values():
            if alert.status == RESOLVED:
                resolved.append(alert)
            elif not self._held_back(alert, now):
                firing.append(alert)
        key = (group.key, group.receiver)
        if self._muted(group.route, now):
            if firing and key not in self._muted_groups:
                self._muted_groups.add(key)
                self.counts["muted"] += 1
                self._decision("mute", "info", {"group_key": group.key,
                                                "receiver": group.receiver,
                                                "firing": sorted(a.fingerprint for a in firing)})
            return None  # resolved alerts stay until the route is active again
        self._muted_groups.discard(key)
        entry = self.nflog.get(group.key, group.receiver)
        told = entry.firing if entry is not None else frozenset()
        resolved_told = [a for a in resolved if episode(a) in told]
        for alert in resolved:
            del group.alerts[alert.fingerprint]
        kind = _needs_update(entry, firing, resolved_told, settings.send_resolved,
                             settings.repeat_after_ms(entry.repeats if entry else 0), now)
        if kind is None:
            return None
        repeats = entry.repeats + 1 if kind == "repeat" and entry is not None else 0
        firing_keys = {episode(a) for a in firing}
        self.nflog.log(group.key, group.receiver, firing_keys,
                       {episode(a) for a in resolved_told}, now, repeats)
        alerts = firing + (resolved_told if settings.send_resolved else [])
        if not alerts or (not firing and not settings.send_resolved):
            return None
        if firing:
            self.nflog.notified_firing(firing, now)
            for alert in firing:
                self._last_firing[alert.fingerprint] = (alert.starts_at_ms, now)
        alerts.sort(key=lambda a: (a.status != FIRING, a.fingerprint))
        message = Message(message_id(group.receiver, kind, group.key, alerts, now),
                          group.receiver, kind, group.key, tuple(alerts), now)
        self.counts["notified"] += 1
        self._decision("notify", "info", {
            "message_id": message.id, "receiver": group.receiver, "kind": kind,
            "group_key": group.key, "firing": [a.fingerprint for a in message.firing],
            "resolved": [a.fingerprint for a in message.resolved], "repeats": repeats})
        return message

    def _prune(self) -> None:
        """Forget resolved alerts that no group holds any more."""
        held = {fp for g in self._groups.values() for fp in g.alerts}
        for fp in [fp for fp, a in self._alerts.items() if a.status == RESOLVED
                   and fp not in held]:
            del self._alerts[fp]
            self._reported.pop(fp, None)

    def _decision(self, decision: str, severity: str, details: dict[str, object]) -> None:
        if self.audit is None:
            return
        about = details.get("receiver") or details.get("fingerprint")
        self.audit({"event_type": "notification", "action": "decision", "severity": severity,
                    "resource": f"notification/{about}", "details": {"decision": decision,
                                                                     **details}})


def _needs_update(entry: NflogEntry | None, firing: Sequence[Alert], resolved: Sequence[Alert],
                  send_resolved: bool, repeat_ms: int, now: int) -> str | None:
    """The kind of message the receiver needs, or None (Alertmanager's dedup stage)."""
    if entry is None:
        return "firing" if firing else None
    firing_keys = {episode(a) for a in firing}
    if not firing_keys <= entry.firing:
        return "firing"
    if not firing:
        return "resolved" if resolved else None
    if send_resolved and not {episode(a) for a in resolved} <= entry.resolved:
        return "firing"
    return "repeat" if entry.sent_ms < now - repeat_ms else None
