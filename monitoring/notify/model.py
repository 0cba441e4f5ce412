"""The values that flow through the notification pipeline: alerts, messages, results, clocks.

Every stage speaks these types, so a stage can be tested alone on a :class:`FakeClock`
and the live engine and the tests drive the same code. A :class:`Message` is what the
outbox stores and a channel sends; it serialises to JSON without loss (floats as
strings where JSON has no NaN) because it must survive a crash between enqueue and
delivery.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

FIRING = "firing"
RESOLVED = "resolved"
ALERT_STATUSES = (FIRING, RESOLVED)

MESSAGE_KINDS = ("firing", "resolved", "repeat", "escalation", "acknowledged", "test")
"""What a message tells its receiver: new or changed firing alerts, their resolution, a
repeat while they keep firing, an escalation stage, an acknowledgement, a test."""

AuditSink = Callable[[Mapping[str, Any]], None]
"""Records one audit event (the fields of ``monitoring.audit.envelope.AuditEvent``: event_type,
action, severity, resource, details...). Details hold strings, ints and bools, never floats.
Must not block: the live engine submits to the ledger and returns."""


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable 16-hex-digit identity of a label set (the alert's id in the CLI and API)."""
    h = hashlib.sha256()
    for k in sorted(labels):
        h.update(k.encode())
        h.update(b"\x00")
        h.update(labels[k].encode())
        h.update(b"\x00")
    return h.hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert instance as the notification side sees it (one label set of one rule).

    ``labels`` include ``alertname`` and, when the rule has one, ``severity``.
    ``ends_at_ms`` is the resolution time of a resolved alert, None while firing.
    ``channels``, ``escalation`` and ``cooldown_ms`` come from the rule.
    """

    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    status: str
    starts_at_ms: int
    ends_at_ms: int | None = None
    value: float | None = None
    rule: str = ""
    channels: tuple[str, ...] = ()
    escalation: str | None = None
    cooldown_ms: int = 0
    generator_url: str = ""

    def __post_init__(self) -> None:
        if self.status not in ALERT_STATUSES:
            raise ValueError(f"alert status must be one of {ALERT_STATUSES}, got {self.status!r}")

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def resolved(self, at_ms: int) -> Alert:
        """A copy of the alert, resolved at ``at_ms``."""
        return Alert(self.labels, self.annotations, RESOLVED, self.starts_at_ms, at_ms,
                     self.value, self.rule, self.channels, self.escalation, self.cooldown_ms,
                     self.generator_url)

    def to_json(self) -> dict[str, Any]:
        return {"labels": dict(self.labels), "annotations": dict(self.annotations),
                "status": self.status, "starts_at_ms": self.starts_at_ms,
                "ends_at_ms": self.ends_at_ms, "value": _float_out(self.value),
                "rule": self.rule, "channels": list(self.channels),
                "escalation": self.escalation, "cooldown_ms": self.cooldown_ms,
                "generator_url": self.generator_url}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        return cls(dict(data["labels"]), dict(data["annotations"]), data["status"],
                   int(data["starts_at_ms"]),
                   None if data.get("ends_at_ms") is None else int(data["ends_at_ms"]),
                   _float_in(data.get("value")), data.get("rule", ""),
                   tuple(data.get("channels", ())), data.get("escalation"),
                   int(data.get("cooldown_ms", 0)), data.get("generator_url", ""))


@dataclass(frozen=True, slots=True)
class Message:
    """One notification to one channel: what the outbox stores and a channel sends.

    ``id`` is the idempotency key (see :func:`message_id`): the same notification enqueued
    twice is stored once, and channels pass it on (``Idempotency-Key`` header, email
    ``Message-ID``) so a receiver can drop a redelivery after a crash. ``recipients`` and
    ``target`` override the channel's defaults (an escalation stage's addresses, a Slack
    channel, the on-call person). ``group_key`` identifies the aggregation group (one Slack
    thread, one PagerDuty incident per group).
    """

    id: str
    channel: str
    kind: str
    group_key: str
    alerts: tuple[Alert, ...]
    created_ms: int
    recipients: tuple[str, ...] = ()
    target: Mapping[str, Any] = field(default_factory=dict)
    stage: int | None = None
    policy: str | None = None
    person: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in MESSAGE_KINDS:
            raise ValueError(f"message kind must be one of {MESSAGE_KINDS}, got {self.kind!r}")

    @property
    def firing(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == FIRING)

    @property
    def resolved(self) -> tuple[Alert, ...]:
        return tuple(a for a in self.alerts if a.status == RESOLVED)

    @property
    def status(self) -> str:
        """``firing`` while any alert of the message fires, else ``resolved``."""
        return FIRING if self.firing else RESOLVED

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "channel": self.channel, "kind": self.kind,
                "group_key": self.group_key, "alerts": [a.to_json() for a in self.alerts],
                "created_ms": self.created_ms, "recipients": list(self.recipients),
                "target": dict(self.target), "stage": self.stage, "policy": self.policy,
                "person": self.person}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Message:
        return cls(data["id"], data["channel"], data["kind"], data["group_key"],
                   tuple(Alert.from_json(a) for a in data["alerts"]), int(data["created_ms"]),
                   tuple(data.get("recipients", ())), dict(data.get("target", {})),
                   data.get("stage"), data.get("policy"), data.get("person"))

    @classmethod
    def loads(cls, text: str) -> Message:
        return cls.from_json(json.loads(text))


def message_id(channel: str, kind: str, group_key: str, alerts: Iterable[Alert],
               created_ms: int, extra: str = "") -> str:
    """The idempotency key of a notification: the same inputs always give the same key."""
    h = hashlib.sha256()
    for part in (channel, kind, group_key, str(created_ms), extra):
        h.update(part.encode())
        h.update(b"\x00")
    for a in sorted(alerts, key=lambda a: a.fingerprint):
        h.update(f"{a.fingerprint}:{a.status}:{a.starts_at_ms}".encode())
        h.update(b"\x00")
    return h.hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    """The outcome of one delivery attempt.

    ``retryable`` False means retrying cannot help (HTTP 400, a rejected address): the
    outbox gives up at once. ``detail`` is shown to users and logged: never a secret.
    ``remote_id`` is what the receiver returned (Slack ``ts``, PagerDuty ``dedup_key``).
    ``retry_after_ms`` is how long the receiver asked us to wait (HTTP ``Retry-After``): the
    outbox waits at least that long before the next attempt.
    """

    ok: bool
    retryable: bool = True
    detail: str = ""
    remote_id: str | None = None
    retry_after_ms: int | None = None


class Clock(Protocol):
    """Time as the engine sees it: wall-clock milliseconds, and sleeping on that scale."""

    def now_ms(self) -> int: ...

    async def sleep_ms(self, ms: int) -> None: ...


class SystemClock:
    """The real clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(max(0, ms) / 1000)


class ScaledClock:
    """A clock running ``speed`` times faster than real time from ``start_ms`` on (demos).

    ``monitoring serve --demo`` runs on one, so that ``for 15m`` and a 15-minute
    escalation stage happen within a minute of real time.
    """

    def __init__(self, speed: float, start_ms: int | None = None) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_ms = time.time_ns() // 1_000_000 if start_ms is None else start_ms
        self._origin = time.monotonic()

    def now_ms(self) -> int:
        return self._start_ms + int((time.monotonic() - self._origin) * 1000 * self.speed)

    async def sleep_ms(self, ms: int) -> None:
        await asyncio.sleep(max(0, ms) / 1000 / self.speed)


class FakeClock:
    """A clock that moves only when told (tests): ``sleep_ms`` advances it at once."""

    def __init__(self, now_ms: int = 1_767_225_600_000) -> None:
        self._now = now_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, ms: int) -> int:
        self._now += ms
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = now_ms

    async def sleep_ms(self, ms: int) -> None:
        self._now += max(0, ms)
        await asyncio.sleep(0)


async def sleep_or(clock: Clock, ms: int | None, *events: asyncio.Event) -> None:
    """Sleep ``ms`` of clock time, or less: until one of ``events`` is set (stop, wake).

    ``ms`` None waits for an event only.
    """
    waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(e.wait()) for e in events]
    if ms is not None:
        waits.append(asyncio.ensure_future(clock.sleep_ms(max(ms, 0))))
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


def _float_out(value: float | None) -> float | str | None:
    if value is None:
        return None
    if math.isfinite(value):
        return value
    return repr(value)  # 'nan', 'inf', '-inf'


def _float_in(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)
