"""Sending what the outbox holds: concurrent attempts, retries with backoff, expiry, audit.

The :class:`Deliverer` is the only reader of the outbox's due messages. Each
:meth:`Deliverer.run_once` takes the due batch, sends it concurrently (at most
``concurrency`` sends in flight; messages of one channel and group go in order, so a
resolution never overtakes its firing message in the same round), and records the
outcomes in batches: the delivery-log rows and the new states in one transaction each.
Channels never raise for a delivery failure; a channel that does anyway is treated as a
retryable failure, so one bad channel cannot stop the others.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from monitoring.notify.channels.base import Channel
from monitoring.notify.model import AuditSink, Clock, DeliveryResult, Message, sleep_or
from monitoring.notify.outbox import (
    DELIVERED,
    EXPIRED,
    FAILED,
    PENDING,
    Attempt,
    DueMessage,
    Outbox,
    OutboxEntry,
)
from monitoring.notify.retry import RetryPolicy

log = logging.getLogger(__name__)

ResultHook = Callable[[Message, DeliveryResult], None]
"""Called after every attempt (the system counts sent / failed notifications with it)."""

_IDLE_MS = 30_000
"""With nothing pending, look at the outbox again after this long (clock time) anyway."""
_ERROR_BACKOFF_MS = 1_000
"""After an unexpected error in a round (the database), wait this long before the next."""


class Deliverer:
    """Delivers due outbox messages through their channels, at least once.

    ``batch`` is the most messages one round takes; ``record_every`` how many outcomes
    are written per transaction; ``send_timeout_s`` is a real-time guard against a
    channel that ignores its own timeout (the network runs on real time, not on the
    demo clock; None: no guard). ``rng`` seeds the jitter (tests).
    """

    def __init__(self, outbox: Outbox, channels: Mapping[str, Channel], clock: Clock,
                 policy: RetryPolicy | None = None, audit: AuditSink | None = None,
                 concurrency: int = 16, on_result: ResultHook | None = None, *,
                 batch: int = 512, record_every: int = 128,
                 send_timeout_s: float | None = 300.0,
                 rng: random.Random | None = None) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if batch < 1 or record_every < 1:
            raise ValueError("batch and record_every must be at least 1")
        self.outbox = outbox
        self.channels = channels
        self.clock = clock
        self.policy = policy if policy is not None else RetryPolicy()
        self.audit = audit
        self.concurrency = concurrency
        self.on_result = on_result
        self.batch = batch
        self.record_every = record_every
        self.send_timeout_s = send_timeout_s
        self.rng = rng if rng is not None else random.Random()
        self._wake = asyncio.Event()
        self.failures = FailureLog()

    def replace_channels(self, channels: Mapping[str, Channel]) -> None:
        """Use ``channels`` from the next round on (configuration reload)."""
        self.channels = channels

    def wake(self) -> None:
        """Start the next round now (new messages were enqueued)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: a round, then sleep until the next due or wake()."""
        while not stop.is_set():
            self._wake.clear()
            try:
                attempted = await self.run_once()
            except Exception:  # a database error must not end delivery for good
                log.exception("delivery round failed; retrying in %d ms", _ERROR_BACKOFF_MS)
                await self._sleep(_ERROR_BACKOFF_MS, stop)
                continue
            if stop.is_set() or attempted >= self.batch:
                continue
            due = self.outbox.next_due_ms()
            delay = _IDLE_MS if due is None else min(_IDLE_MS, due - self.clock.now_ms())
            if delay > 0:
                await self._sleep(delay, stop)
            else:
                await asyncio.sleep(0)

    async def _sleep(self, ms: int, stop: asyncio.Event) -> None:
        await sleep_or(self.clock, ms, self._wake, stop)

    async def run_once(self) -> int:
        """Expire overdue messages, attempt every due one once; returns attempts made."""
        for entry in self.outbox.expire_overdue(self.policy.expire_ms):
            self._audit_expired(entry, "expiry reached before delivery")
        due = self.outbox.due_entries(self.batch)
        if not due:
            return 0
        lanes: dict[tuple[str, str], list[DueMessage]] = {}
        for d in due:
            lanes.setdefault((d.message.channel, d.message.group_key), []).append(d)
        gate = asyncio.Semaphore(self.concurrency)
        done: list[Attempt] = []

        async def lane(items: list[DueMessage]) -> None:
            for item in items:
                async with gate:
                    outcome = await self._attempt(item)
                done.append(outcome)
                if len(done) >= self.record_every:
                    self._record(done)

        try:
            async with asyncio.TaskGroup() as tasks:
                for items in lanes.values():
                    tasks.create_task(lane(items))
        finally:
            self._record(done)  # also when cancelled: what was sent is logged
        return len(due)

    def _record(self, done: list[Attempt]) -> None:
        if not done:
            return
        batch = list(done)
        done.clear()
        self.outbox.record(batch)
        for attempt in batch:
            self._audit_attempt(attempt)
            if attempt.status == EXPIRED:
                self._audit_expired_after(attempt)

    async def _attempt(self, due: DueMessage) -> Attempt:
        message = due.message
        number = due.attempts + 1
        started = self.clock.now_ms()
        result = await self._send(message)
        finished = self.clock.now_ms()
        if result.ok:
            status, next_ms = DELIVERED, None
        elif not result.retryable:
            status, next_ms = FAILED, None
        else:
            next_ms = finished + max(self.policy.delay_ms(number, self.rng),
                                     min(result.retry_after_ms or 0, self.policy.max_ms))
            expires = (due.expires_ms if due.expires_ms is not None
                       else due.enqueued_ms + self.policy.expire_ms)
            status = PENDING if next_ms < expires else EXPIRED
            if status == EXPIRED:
                next_ms = None
        self.failures.report(message, result, status)
        if self.on_result is not None:
            try:
                self.on_result(message, result)
            except Exception:
                log.exception("on_result hook failed for message %s", message.id)
        return Attempt(message, number, started, max(0, finished - started), result, status,
                       next_ms)

    async def _send(self, message: Message) -> DeliveryResult:
        channel = self.channels.get(message.channel)
        if channel is None:
            known = ", ".join(sorted(self.channels)) or "none"
            return DeliveryResult(False, False, f"unknown channel {message.channel!r} "
                                                f"(configured channels: {known})")
        try:
            if self.send_timeout_s is None:
                return await channel.send(message)
            return await asyncio.wait_for(channel.send(message), self.send_timeout_s)
        except TimeoutError:
            return DeliveryResult(False, True, f"channel {message.channel!r} did not answer "
                                               f"within {self.send_timeout_s:g} s")
        except Exception as exc:  # the Channel protocol says never; a bug must not stop us
            # Only the exception's type: its text may hold a URL with a secret in it.
            log.error("channel %r raised %s while sending message %s", message.channel,
                      type(exc).__name__, message.id)
            return DeliveryResult(False, True, f"channel {message.channel!r} raised "
                                               f"{type(exc).__name__}")

    # -- audit --------------------------------------------------------------------------

    def _emit(self, event: Mapping[str, Any]) -> None:
        if self.audit is None:
            return
        try:
            self.audit(event)
        except Exception:
            log.exception("audit sink failed for %s", event.get("action"))

    def _audit_attempt(self, a: Attempt) -> None:
        details: dict[str, Any] = {
            "message_id": a.message.id, "channel": a.message.channel, "kind": a.message.kind,
            "group_key": a.message.group_key, "attempt": a.attempt, "ok": a.result.ok,
            "retryable": a.result.retryable, "detail": a.result.detail, "status": a.status,
            "duration_ms": a.duration_ms}
        if a.next_attempt_ms is not None:
            details["next_attempt_ms"] = a.next_attempt_ms
        if a.result.remote_id is not None:
            details["remote_id"] = a.result.remote_id
        self._emit({"event_type": "notification", "action": "delivery",
                    "severity": "info" if a.result.ok else "warning",
                    "outcome": "success" if a.result.ok else "failure",
                    "resource": f"notification/{a.message.id}", "details": details})

    def _audit_expired_after(self, a: Attempt) -> None:
        self._emit(_expired_event(a.message.id, a.message.channel, a.message.kind,
                                  a.attempt, a.result.detail,
                                  "no retry possible before the expiry"))

    def _audit_expired(self, entry: OutboxEntry, why: str) -> None:
        self._emit(_expired_event(entry.id, entry.channel, entry.kind, entry.attempts,
                                  entry.last_error, why))


def _expired_event(message_id: str, channel: str, kind: str, attempts: int,
                   last_error: str | None, why: str) -> dict[str, Any]:
    return {"event_type": "notification", "action": "expired", "severity": "warning",
            "outcome": "failure", "resource": f"notification/{message_id}",
            "details": {"message_id": message_id, "channel": channel, "kind": kind,
                        "attempts": attempts, "last_error": last_error, "reason": why}}


class FailureLog:
    """Logs delivery failures for people: the first of a channel, then a summary a minute.

    Every attempt is in the delivery log and the ledger already; the log is for whoever
    watches the terminal, who needs to know that a channel is failing and why, not one
    line per message (a misconfigured channel would otherwise drown everything else).
    Real time, not the engine clock: the point is how often a person reads a line.
    """

    def __init__(self, every_s: float = 60.0, now: Callable[[], float] = time.monotonic
                 ) -> None:
        self.every_s = every_s
        self._now = now
        self._last: dict[str, float] = {}
        self._quiet: dict[str, int] = {}

    def report(self, message: Message, result: DeliveryResult, status: str) -> None:
        """Log ``result`` of ``message`` if it is news (a failure, or a recovery)."""
        channel = message.channel
        if result.ok:
            if self._last.pop(channel, None) is not None:
                skipped = self._quiet.pop(channel, 0)
                log.warning("channel %r delivers again%s", channel,
                            f" ({skipped} more failures not shown)" if skipped else "")
            return
        now = self._now()
        last = self._last.get(channel)
        if last is not None and now - last < self.every_s:
            self._quiet[channel] = self._quiet.get(channel, 0) + 1
            return
        skipped = self._quiet.pop(channel, 0)
        self._last[channel] = now
        outcome = {PENDING: "will retry", EXPIRED: "gave up (expired)",
                   FAILED: "gave up (cannot succeed)"}.get(status, status)
        log.warning("channel %r: message %s not delivered, %s: %s%s", channel, message.id,
                    outcome, result.detail,
                    f" ({skipped} more failures in the last {self.every_s:g} s)" if skipped
                    else "")
