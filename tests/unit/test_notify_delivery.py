"""Deliverer: send after commit, retries with backoff and jitter, give-up, expiry, audit,
the concurrency limit, per-group order, cancellation and the run loop.

Real DuckDB files in tmp_path, a FakeClock, fake in-process channels.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.notify.delivery import Deliverer
from monitoring.notify.model import DeliveryResult, FakeClock, Message
from monitoring.notify.outbox import Outbox
from monitoring.notify.retry import RetryPolicy
from tests.support.outbox_worker import make_message

T0 = 1_767_225_600_000
OK = DeliveryResult(True, detail="HTTP 200")


class FakeChannel:
    """Answers from ``script(message, call_number)``; records every send and its time."""

    type = "fake"

    def __init__(self, name: str, clock: FakeClock,
                 script: Callable[[Message, int], DeliveryResult] | None = None,
                 latency_ms: int = 0) -> None:
        self.name = name
        self.clock = clock
        self.script = script or (lambda m, n: OK)
        self.latency_ms = latency_ms
        self.sent: list[tuple[str, int]] = []
        self.calls: dict[str, int] = {}
        self.before_send: Callable[[Message], None] | None = None

    async def send(self, message: Message) -> DeliveryResult:
        if self.before_send is not None:
            self.before_send(message)
        n = self.calls[message.id] = self.calls.get(message.id, 0) + 1
        self.sent.append((message.id, self.clock.now_ms()))
        if self.latency_ms:
            await self.clock.sleep_ms(self.latency_ms)
        return self.script(message, n)

    async def aclose(self) -> None:
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def outbox(tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    conn = duckdb.connect(str(tmp_path / "notify.duckdb"))
    yield Outbox(conn.cursor(), clock)
    conn.close()


def _deliverer(outbox: Outbox, channels: Mapping[str, Any], clock: FakeClock,
               **kw: Any) -> tuple[Deliverer, list[dict[str, Any]]]:
    events: list[dict[str, Any]] = []
    d = Deliverer(outbox, channels, clock, audit=lambda e: events.append(dict(e)),
                  rng=random.Random(42), **kw)
    return d, events


def test_a_message_is_committed_before_it_is_sent(outbox: Outbox, clock: FakeClock) -> None:
    observer = outbox.conn.cursor()  # another connection: sees committed rows only
    seen: list[tuple[str, int]] = []

    def check(m: Message) -> None:
        row = observer.execute("SELECT status, attempts FROM notify_outbox WHERE id = ?",
                               [m.id]).fetchone()
        assert row is not None
        seen.append((str(row[0]), int(row[1])))

    ch = FakeChannel("hook", clock)
    ch.before_send = check
    d, _ = _deliverer(outbox, {"hook": ch}, clock)
    msgs = [make_message(i) for i in range(3)]
    outbox.enqueue(msgs)
    assert asyncio.run(d.run_once()) == 3
    assert seen == [("pending", 0)] * 3
    assert outbox.counts()["delivered"] == 3


def test_retries_follow_the_backoff_with_jitter_until_delivered(
        outbox: Outbox, clock: FakeClock) -> None:
    policy = RetryPolicy(initial_ms=1000, factor=2.0, max_ms=3000, jitter=0.2)
    ch = FakeChannel("hook", clock, lambda m, n: OK if n == 5 else
                     DeliveryResult(False, True, f"HTTP 503 (call {n})"))
    results: list[tuple[str, bool]] = []
    d, events = _deliverer(outbox, {"hook": ch}, clock, policy=policy,
                           on_result=lambda m, r: results.append((m.id, r.ok)))
    m = make_message(1)
    outbox.enqueue([m])

    async def drive() -> list[int]:
        waits = []
        for attempt in range(1, 5):
            assert await d.run_once() == 1
            entry = outbox.get(m.id)
            assert entry is not None and entry.status == "pending"
            assert entry.attempts == attempt
            wait = entry.next_attempt_ms - clock.now_ms()
            low, high = policy.bounds_ms(attempt)
            assert low <= wait <= high
            waits.append(wait)
            clock.advance(wait - 1)
            assert await d.run_once() == 0  # not due one millisecond early
            clock.advance(1)
        assert await d.run_once() == 1
        return waits

    waits = asyncio.run(drive())
    # bases 1000, 2000, 3000 (cap), 3000, each minus up to 20 % jitter
    assert [policy.bounds_ms(n) for n in range(1, 5)] == [
        (800, 1000), (1600, 2000), (2400, 3000), (2400, 3000)]
    assert len(set(waits)) == 4  # jittered, no two equal with this seed
    entry = outbox.get(m.id)
    assert entry is not None and entry.status == "delivered" and entry.attempts == 5
    log = outbox.deliveries(message_id=m.id)
    assert [(r.attempt, r.ok, r.status) for r in log] == [
        (1, False, "pending"), (2, False, "pending"), (3, False, "pending"),
        (4, False, "pending"), (5, True, "delivered")]
    times = [t for _, t in ch.sent]
    assert [b - a for a, b in itertools.pairwise(times)] == waits
    assert [r.at_ms for r in log] == times
    assert results == [(m.id, False)] * 4 + [(m.id, True)]
    assert [(e["action"], e["severity"], e["details"]["attempt"], e["details"]["ok"])
            for e in events] == [("delivery", "warning", n, False) for n in range(1, 5)] + [
        ("delivery", "info", 5, True)]
    assert events[0]["details"]["detail"] == "HTTP 503 (call 1)"
    assert events[0]["details"]["next_attempt_ms"] == times[1]


def test_jitter_spreads_messages_that_failed_together(outbox: Outbox,
                                                      clock: FakeClock) -> None:
    ch = FakeChannel("hook", clock, lambda m, n: DeliveryResult(False, True, "down"))
    d, _ = _deliverer(outbox, {"hook": ch}, clock)
    outbox.enqueue([make_message(i) for i in range(50)])
    assert asyncio.run(d.run_once()) == 50
    next_times = {e.next_attempt_ms for e in outbox.entries(limit=50)}
    assert len(next_times) > 40
    assert all(T0 + 800 <= t <= T0 + 1000 for t in next_times)


def test_a_non_retryable_failure_stops_at_once(outbox: Outbox, clock: FakeClock) -> None:
    ch = FakeChannel("hook", clock, lambda m, n: DeliveryResult(False, False, "HTTP 400"))
    d, events = _deliverer(outbox, {"hook": ch}, clock)
    m = make_message(1)
    outbox.enqueue([m])

    async def drive() -> int:
        first = await d.run_once()
        clock.advance(3_600_000)
        return first + await d.run_once()

    assert asyncio.run(drive()) == 1
    entry = outbox.get(m.id)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.last_error) == ("failed", 1, "HTTP 400")
    assert len(ch.sent) == 1
    assert [(e["action"], e["outcome"], e["details"]["status"], e["details"]["retryable"])
            for e in events] == [("delivery", "failure", "failed", False)]


def test_a_message_expires_when_no_retry_fits_before_its_expiry(outbox: Outbox,
                                                               clock: FakeClock) -> None:
    policy = RetryPolicy(initial_ms=1000, factor=2.0, max_ms=4000, jitter=0.0,
                         expire_ms=10_000)
    ch = FakeChannel("hook", clock, lambda m, n: DeliveryResult(False, True, "timeout"))
    d, events = _deliverer(outbox, {"hook": ch}, clock, policy=policy)
    m = make_message(1)
    outbox.enqueue([m])

    async def drive() -> None:
        for _ in range(10):
            await d.run_once()
            due = outbox.next_due_ms()
            if due is None:
                return
            clock.set(due)

    asyncio.run(drive())
    # attempts at +0, +1000, +3000, +7000; the next would be +11000 > expiry +10000
    assert [t - T0 for _, t in ch.sent] == [0, 1000, 3000, 7000]
    entry = outbox.get(m.id)
    assert entry is not None and (entry.status, entry.attempts) == ("expired", 4)
    assert [r.status for r in outbox.deliveries(message_id=m.id)] == ["pending"] * 3 + [
        "expired"]
    expired = [e for e in events if e["action"] == "expired"]
    assert expired == [{
        "event_type": "notification", "action": "expired", "severity": "warning",
        "outcome": "failure", "resource": f"notification/{m.id}",
        "details": {"message_id": m.id, "channel": "hook", "kind": "firing", "attempts": 4,
                    "last_error": "timeout", "reason": "no retry possible before the expiry"}}]


def test_a_message_never_attempted_before_its_expiry_is_not_sent(outbox: Outbox,
                                                                clock: FakeClock) -> None:
    ch = FakeChannel("hook", clock)
    d, events = _deliverer(outbox, {"hook": ch}, clock)
    late, fresh = make_message(1), make_message(2)
    outbox.enqueue([late], expires_ms=T0 + 60_000)
    outbox.enqueue([fresh])
    clock.advance(60_000)  # the engine was down for a minute
    assert asyncio.run(d.run_once()) == 1
    assert [mid for mid, _ in ch.sent] == [fresh.id]
    entry = outbox.get(late.id)
    assert entry is not None and (entry.status, entry.attempts) == ("expired", 0)
    assert [(e["action"], e["severity"], e["details"]["reason"]) for e in events
            if e["action"] == "expired"] == [
        ("expired", "warning", "expiry reached before delivery")]


def test_an_unknown_channel_fails_without_retry_naming_the_channels(
        outbox: Outbox, clock: FakeClock) -> None:
    d, _ = _deliverer(outbox, {"hook": FakeChannel("hook", clock),
                               "mail": FakeChannel("mail", clock)}, clock)
    m = make_message(1, channel="pager")
    outbox.enqueue([m])
    assert asyncio.run(d.run_once()) == 1
    entry = outbox.get(m.id)
    assert entry is not None and entry.status == "failed"
    assert entry.last_error == "unknown channel 'pager' (configured channels: hook, mail)"


def test_a_channel_that_raises_is_a_retryable_failure_without_its_text(
        outbox: Outbox, clock: FakeClock) -> None:
    def explode(m: Message, n: int) -> DeliveryResult:
        raise RuntimeError("https://hooks.example/T000/SECRET")

    d, events = _deliverer(outbox, {"hook": FakeChannel("hook", clock, explode)}, clock)
    m = make_message(1)
    outbox.enqueue([m])
    assert asyncio.run(d.run_once()) == 1
    entry = outbox.get(m.id)
    assert entry is not None and entry.status == "pending" and entry.attempts == 1
    assert entry.last_error == "channel 'hook' raised RuntimeError"
    assert "SECRET" not in repr(events)


def test_sends_never_exceed_the_concurrency_limit(outbox: Outbox, clock: FakeClock) -> None:
    gate = asyncio.Event()
    in_flight = 0
    peak = 0

    class Slow(FakeChannel):
        async def send(self, message: Message) -> DeliveryResult:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await gate.wait()
            in_flight -= 1
            return OK

    d, _ = _deliverer(outbox, {"hook": Slow("hook", clock)}, clock, concurrency=5)
    outbox.enqueue([make_message(i) for i in range(40)])  # 40 groups: 40 lanes

    async def drive() -> int:
        task = asyncio.create_task(d.run_once())
        for _ in range(50):
            await asyncio.sleep(0)
        assert (in_flight, peak) == (5, 5)
        gate.set()
        return await task

    assert asyncio.run(drive()) == 40
    assert peak == 5
    assert outbox.counts()["delivered"] == 40


def test_messages_of_one_group_go_in_order(outbox: Outbox, clock: FakeClock) -> None:
    order: list[str] = []

    class Recording(FakeChannel):
        async def send(self, message: Message) -> DeliveryResult:
            order.append(f"{message.group_key}:{message.kind}:start")
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            order.append(f"{message.group_key}:{message.kind}:end")
            return OK

    ch = Recording("hook", clock)
    firing = make_message(1, group="g", kind="firing")
    resolved = make_message(1, group="g", kind="resolved")
    other = make_message(2, group="h")
    outbox.enqueue([firing, other, resolved])
    d, _ = _deliverer(outbox, {"hook": ch}, clock)
    assert asyncio.run(d.run_once()) == 3
    g = [x for x in order if x.startswith("g:")]
    assert g == ["g:firing:start", "g:firing:end", "g:resolved:start", "g:resolved:end"]
    assert order.index("h:firing:start") < order.index("g:firing:end")  # lanes overlap


def test_the_delivery_log_has_one_row_per_attempt_with_its_fields(
        outbox: Outbox, clock: FakeClock) -> None:
    ch = FakeChannel("hook", clock, lambda m, n: DeliveryResult(True, detail="accepted",
                                                                remote_id=f"ts-{n}"),
                     latency_ms=250)
    d, events = _deliverer(outbox, {"hook": ch}, clock, concurrency=1)
    m = make_message(7, kind="escalation", recipients=("alice@example.org",),
                     person="alice")
    outbox.enqueue([m])
    asyncio.run(d.run_once())
    [row] = outbox.deliveries()
    assert row.to_json() == {
        "message_id": m.id, "channel": "hook", "kind": "escalation", "attempt": 1,
        "at_ms": T0, "duration_ms": 250, "ok": True, "retryable": True, "detail": "accepted",
        "status": "delivered", "remote_id": "ts-1", "recipients": ["alice@example.org"],
        "person": "alice"}
    entry = outbox.get(m.id)
    assert entry is not None and (entry.delivered_ms, entry.remote_id) == (T0 + 250, "ts-1")
    assert events == [{
        "event_type": "notification", "action": "delivery", "severity": "info",
        "outcome": "success", "resource": f"notification/{m.id}",
        "details": {"message_id": m.id, "channel": "hook", "kind": "escalation",
                    "group_key": "g7", "attempt": 1, "ok": True, "retryable": True,
                    "detail": "accepted", "status": "delivered", "duration_ms": 250,
                    "remote_id": "ts-1"}}]


def test_outcomes_are_recorded_in_batches_and_on_cancellation(outbox: Outbox,
                                                              clock: FakeClock) -> None:
    stuck = make_message(0)
    hang = asyncio.Event()

    class Hanging(FakeChannel):
        async def send(self, message: Message) -> DeliveryResult:
            if message.id == stuck.id:
                await hang.wait()  # never set
            return OK

    statements: list[int] = []
    d, _ = _deliverer(outbox, {"hook": Hanging("hook", clock)}, clock, record_every=4)
    record = outbox.record

    def counting(attempts: Any) -> None:
        statements.append(len(attempts))
        record(attempts)

    outbox.record = counting  # type: ignore[method-assign]
    outbox.enqueue([stuck] + [make_message(i) for i in range(1, 11)])

    async def drive() -> None:
        task = asyncio.create_task(d.run_once())
        for _ in range(50):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(drive())
    assert statements == [4, 4, 2]  # batches of 4, the rest when cancelled
    assert outbox.counts() == {"pending": 1, "delivered": 10, "failed": 0, "expired": 0}
    assert outbox.due() == [stuck]


def test_run_delivers_on_wake_and_retries_on_its_own_until_stopped(
        outbox: Outbox, clock: FakeClock) -> None:
    ch = FakeChannel("hook", clock, lambda m, n: OK if n >= 3 else
                     DeliveryResult(False, True, "busy"))
    d, _ = _deliverer(outbox, {"hook": ch}, clock)
    msgs = [make_message(i) for i in range(3)]

    async def drive() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(d.run(stop))
        await asyncio.sleep(0)
        outbox.enqueue(msgs)
        d.wake()
        for _ in range(10_000):
            if outbox.pending() == 0:
                break
            await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(task, 30)

    asyncio.run(drive())
    assert outbox.counts()["delivered"] == 3
    assert sorted(ch.calls.values()) == [3, 3, 3]
    # third attempts after two backoffs: at least 0.8 s + 1.6 s of clock time later
    assert min(t for _, t in ch.sent[-3:]) >= T0 + 2400


def test_failure_log_reports_first_failure_then_a_summary_a_minute(
        caplog: pytest.LogCaptureFixture) -> None:
    from monitoring.notify.delivery import FailureLog
    from monitoring.notify.outbox import PENDING

    now = [100.0]
    failures = FailureLog(every_s=60, now=lambda: now[0])
    bad = DeliveryResult(False, True, "connection refused")
    caplog.set_level(logging.WARNING, logger="monitoring.notify.delivery")
    for i in range(4):
        failures.report(make_message(i), bad, PENDING)
    now[0] += 61
    failures.report(make_message(9), bad, PENDING)
    failures.report(make_message(10), bad, PENDING)
    failures.report(make_message(11), DeliveryResult(True, False, "HTTP 200"), "delivered")
    failures.report(make_message(12), DeliveryResult(True, False, "HTTP 200"), "delivered")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "will retry: connection refused" in lines[0]
    assert lines[1].endswith("(3 more failures in the last 60 s)")
    assert lines[2] == "channel 'hook' delivers again (1 more failures not shown)"
