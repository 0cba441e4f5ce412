"""Outbox: durable idempotent enqueue, due order, recording attempts, expiry, the read side.

Real DuckDB files in tmp_path, a FakeClock.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from monitoring.notify.model import DeliveryResult, FakeClock
from monitoring.notify.outbox import Attempt, Outbox
from tests.support.outbox_worker import make_message

T0 = 1_767_225_600_000


def _outbox(path: Path, clock: FakeClock) -> tuple[duckdb.DuckDBPyConnection, Outbox]:
    conn = duckdb.connect(str(path))
    return conn, Outbox(conn.cursor(), clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def outbox(tmp_path: Path, clock: FakeClock) -> Iterator[Outbox]:
    conn, box = _outbox(tmp_path / "m.duckdb", clock)
    yield box
    conn.close()


def test_enqueued_messages_survive_a_reopen_unchanged(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    db = tmp_path / "m.duckdb"
    msgs = [make_message(i, recipients=("a@example.org",), person="alice") for i in range(3)]
    conn, outbox = _outbox(db, clock)
    assert outbox.enqueue(msgs) == 3
    conn.close()
    conn, again = _outbox(db, clock)
    assert again.pending() == 3
    assert again.due() == msgs  # same order, and the payload round-trips exactly
    entry = again.get(msgs[1].id)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.next_attempt_ms, entry.enqueued_ms,
            entry.created_ms, entry.expires_ms, entry.channel, entry.kind,
            entry.group_key) == ("pending", 0, T0, T0, msgs[1].created_ms, None, "hook",
                                 "firing", "g1")
    assert entry.message() == msgs[1]
    assert entry.to_json()["message"]["id"] == msgs[1].id
    conn.close()


def test_enqueue_is_idempotent_on_the_message_id(outbox: Outbox, clock: FakeClock) -> None:
    a, b, c = (make_message(i) for i in range(3))
    assert outbox.enqueue([a, b, a]) == 2  # a duplicate inside one batch counts once
    clock.advance(5000)
    assert outbox.enqueue([a, b, c]) == 1  # only c is new
    assert outbox.enqueue([]) == 0
    assert outbox.pending() == 3
    entry = outbox.get(a.id)
    assert entry is not None and entry.enqueued_ms == T0  # the first enqueue stays
    # Even after delivery, the same id is not queued again.
    outbox.record([Attempt(a, 1, T0, 5, DeliveryResult(True), "delivered")])
    assert outbox.enqueue([a]) == 0
    assert outbox.counts() == {"pending": 2, "delivered": 1, "failed": 0, "expired": 0}


def test_due_takes_only_what_is_due_oldest_first_up_to_the_limit(
        outbox: Outbox, clock: FakeClock) -> None:
    msgs = [make_message(i) for i in range(5)]
    outbox.enqueue(msgs[:3])
    clock.advance(10)
    outbox.enqueue(msgs[3:])
    assert [m.id for m in outbox.due(limit=4)] == [m.id for m in msgs[:4]]
    # message 0 fails and is rescheduled 1 s later: it is no longer due, then due last.
    outbox.record([Attempt(msgs[0], 1, T0 + 10, 0, DeliveryResult(False, True, "HTTP 503"),
                           "pending", T0 + 1010)])
    assert [m.id for m in outbox.due()] == [m.id for m in msgs[1:]]
    assert outbox.next_due_ms() == T0  # messages 1..2 were due since T0
    clock.set(T0 + 1010)
    assert [m.id for m in outbox.due()][-1] == msgs[0].id


def test_record_writes_the_log_row_and_the_new_state_together(
        outbox: Outbox, clock: FakeClock) -> None:
    m = make_message(1, recipients=("oncall@example.org", "b@example.org"), person="bob")
    outbox.enqueue([m])
    outbox.record([Attempt(m, 1, T0, 120, DeliveryResult(False, True, "HTTP 502"), "pending",
                           T0 + 1100)])
    entry = outbox.get(m.id)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.next_attempt_ms, entry.last_error,
            entry.delivered_ms) == ("pending", 1, T0 + 1100, "HTTP 502", None)
    clock.set(T0 + 1100)
    outbox.record([Attempt(m, 2, T0 + 1100, 30,
                           DeliveryResult(True, detail="HTTP 200", remote_id="r-9"),
                           "delivered")])
    entry = outbox.get(m.id)
    assert entry is not None
    assert (entry.status, entry.attempts, entry.delivered_ms, entry.remote_id,
            entry.last_error) == ("delivered", 2, T0 + 1130, "r-9", "HTTP 502")
    log = outbox.deliveries(message_id=m.id)
    assert [r.to_json() for r in log] == [
        {"message_id": m.id, "channel": "hook", "kind": "firing", "attempt": 1, "at_ms": T0,
         "duration_ms": 120, "ok": False, "retryable": True, "detail": "HTTP 502",
         "status": "pending", "remote_id": None,
         "recipients": ["oncall@example.org", "b@example.org"], "person": "bob"},
        {"message_id": m.id, "channel": "hook", "kind": "firing", "attempt": 2,
         "at_ms": T0 + 1100, "duration_ms": 30, "ok": True, "retryable": True,
         "detail": "HTTP 200", "status": "delivered", "remote_id": "r-9",
         "recipients": ["oncall@example.org", "b@example.org"], "person": "bob"}]
    assert outbox.pending() == 0 and outbox.next_due_ms() is None


def test_deliveries_filter_and_keep_the_latest_in_time_order(
        outbox: Outbox, clock: FakeClock) -> None:
    a, b = make_message(1), make_message(2, channel="mail")
    outbox.enqueue([a, b])
    fail = DeliveryResult(False, True, "down")
    outbox.record([Attempt(a, n, T0 + n * 1000, 1, fail, "pending", T0 + n * 1000 + 900)
                   for n in range(1, 4)] + [Attempt(b, 1, T0 + 1500, 1, fail, "pending", 0)])
    assert [r.attempt for r in outbox.deliveries(message_id=a.id, limit=2)] == [2, 3]
    assert [r.message_id for r in outbox.deliveries(channel="mail")] == [b.id]
    assert [(r.message_id, r.attempt) for r in outbox.deliveries(since_ms=T0 + 1500)] == [
        (b.id, 1), (a.id, 2), (a.id, 3)]


def test_expire_overdue_uses_the_explicit_expiry_or_the_default(
        outbox: Outbox, clock: FakeClock) -> None:
    short, default = make_message(1), make_message(2)
    outbox.enqueue([short], expires_ms=T0 + 500)
    outbox.enqueue([default])
    assert outbox.expire_overdue(10_000) == []
    clock.set(T0 + 500)
    expired = outbox.expire_overdue(10_000)
    assert [(e.id, e.status) for e in expired] == [(short.id, "pending")]  # as they were
    got = outbox.get(short.id)
    assert got is not None and got.status == "expired" and got.expires_ms == T0 + 500
    clock.set(T0 + 10_000)
    assert [e.id for e in outbox.expire_overdue(10_000)] == [default.id]
    assert outbox.counts()["expired"] == 2 and outbox.due() == []


def test_entries_list_newest_first_with_filters(outbox: Outbox, clock: FakeClock) -> None:
    msgs = [make_message(i, channel="mail" if i % 2 else "hook") for i in range(4)]
    outbox.enqueue(msgs)
    outbox.record([Attempt(msgs[0], 1, T0, 1, DeliveryResult(False, False, "HTTP 400"),
                           "failed")])
    assert [e.id for e in outbox.entries()] == [m.id for m in reversed(msgs)]
    assert [e.id for e in outbox.entries(status="failed")] == [msgs[0].id]
    assert [e.id for e in outbox.entries(channel="mail", limit=1)] == [msgs[3].id]
    with pytest.raises(ValueError, match="status must be one of pending, delivered"):
        outbox.entries(status="sent")


def test_prune_drops_finished_rows_but_keeps_pending_and_the_log(
        outbox: Outbox, clock: FakeClock) -> None:
    a, b = make_message(1), make_message(2)
    outbox.enqueue([a, b])
    outbox.record([Attempt(a, 1, T0, 1, DeliveryResult(True), "delivered")])
    assert outbox.prune(T0) == 0  # not older than T0
    assert outbox.prune(T0 + 1) == 1
    assert outbox.get(a.id) is None and outbox.get(b.id) is not None
    assert len(outbox.deliveries(message_id=a.id)) == 1


def test_an_unreadable_payload_is_failed_not_blocking(outbox: Outbox, clock: FakeClock) -> None:
    good, bad = make_message(1), make_message(2)
    outbox.enqueue([bad, good])
    outbox.conn.execute("UPDATE notify_outbox SET payload = '{\"id\": 1}' WHERE id = ?", [bad.id])
    assert outbox.due() == [good]
    entry = outbox.get(bad.id)
    assert entry is not None and entry.status == "failed"
    assert entry.last_error == "unreadable outbox payload: KeyError: 'channel'"


def test_enqueue_is_committed_for_other_connections_at_once(outbox: Outbox) -> None:
    other = outbox.conn.cursor()  # a separate connection: sees committed data only
    outbox.enqueue([make_message(1)])
    assert other.execute("SELECT count(*) FROM notify_outbox").fetchone() == (1,)
