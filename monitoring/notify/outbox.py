"""The durable outbox: every notification is committed here before anything sends it.

A crash between "decided to notify" and "the receiver has it" must lose nothing, so the
pipeline writes each :class:`~monitoring.notify.model.Message` into ``notify_outbox``
(one transaction per batch) and only then may the :mod:`~monitoring.notify.delivery`
loop send it. Each attempt's outcome is written to ``notify_deliveries`` (the delivery
log) in the same transaction as the row's new status, so log and status never disagree.
A crash after a send and before that commit means the message is sent again on restart:
delivery is at-least-once, and the message id is the receivers' idempotency key.

Writes are columnar (one ``INSERT ... SELECT unnest(?)`` per batch, not one statement per
row) because the engine must sustain over a thousand notifications a second on DuckDB.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from monitoring.notify.model import Clock, DeliveryResult, Message

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
EXPIRED = "expired"
OUTBOX_STATUSES = (PENDING, DELIVERED, FAILED, EXPIRED)
"""``pending`` until delivered, given up (``failed``: not retryable) or ``expired``."""

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS notify_outbox (
        id VARCHAR PRIMARY KEY,
        seq BIGINT NOT NULL,
        channel VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        group_key VARCHAR NOT NULL,
        payload VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_ms BIGINT NOT NULL,
        created_ms BIGINT NOT NULL,
        enqueued_ms BIGINT NOT NULL,
        expires_ms BIGINT,
        last_error VARCHAR,
        delivered_ms BIGINT,
        remote_id VARCHAR,
        updated_ms BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS notify_deliveries (
        message_id VARCHAR NOT NULL,
        channel VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        attempt INTEGER NOT NULL,
        at_ms BIGINT NOT NULL,
        duration_ms BIGINT NOT NULL,
        ok BOOLEAN NOT NULL,
        retryable BOOLEAN NOT NULL,
        detail VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        remote_id VARCHAR,
        recipients VARCHAR[] NOT NULL,
        person VARCHAR)""",
)

_ENTRY_COLUMNS = ("id, channel, kind, group_key, status, attempts, next_attempt_ms, created_ms, "
                  "enqueued_ms, expires_ms, last_error, delivered_ms, remote_id, payload")
_DELIVERY_COLUMNS = ("message_id, channel, kind, attempt, at_ms, duration_ms, ok, retryable, "
                     "detail, status, remote_id, recipients, person")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One row of the outbox: a message and where its delivery stands.

    ``expires_ms`` None means "the delivery policy's default after ``enqueued_ms``".
    """

    id: str
    channel: str
    kind: str
    group_key: str
    status: str
    attempts: int
    next_attempt_ms: int
    created_ms: int
    enqueued_ms: int
    expires_ms: int | None
    last_error: str | None
    delivered_ms: int | None
    remote_id: str | None
    payload: str

    def message(self) -> Message:
        """The stored message (raises ValueError/KeyError on an unreadable payload)."""
        return Message.loads(self.payload)

    def to_json(self) -> dict[str, Any]:
        """The row for the HTTP API and the CLI (the message itself as an object)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in (
            "id", "channel", "kind", "group_key", "status", "attempts", "next_attempt_ms",
            "created_ms", "enqueued_ms", "expires_ms", "last_error", "delivered_ms",
            "remote_id")}
        try:
            out["message"] = json.loads(self.payload)
        except ValueError:
            out["message"] = None
        return out


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery attempt, as the delivery log keeps it.

    ``status`` is the message's status after the attempt (``pending`` means a retry is
    scheduled). ``recipients`` and ``person`` are the message's overrides (escalations).
    """

    message_id: str
    channel: str
    kind: str
    attempt: int
    at_ms: int
    duration_ms: int
    ok: bool
    retryable: bool
    detail: str
    status: str
    remote_id: str | None
    recipients: tuple[str, ...]
    person: str | None

    def to_json(self) -> dict[str, Any]:
        return {"message_id": self.message_id, "channel": self.channel, "kind": self.kind,
                "attempt": self.attempt, "at_ms": self.at_ms, "duration_ms": self.duration_ms,
                "ok": self.ok, "retryable": self.retryable, "detail": self.detail,
                "status": self.status, "remote_id": self.remote_id,
                "recipients": list(self.recipients), "person": self.person}


@dataclass(frozen=True, slots=True)
class DueMessage:
    """A message due for an attempt, with what the retry decision needs."""

    message: Message
    attempts: int
    enqueued_ms: int
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class Attempt:
    """The outcome of one attempt, to record: the log row and the message's new state.

    ``status`` is the new status; ``next_attempt_ms`` is set when it stays pending.
    """

    message: Message
    attempt: int
    at_ms: int
    duration_ms: int
    result: DeliveryResult
    status: str
    next_attempt_ms: int | None = None


class Outbox:
    """The tables ``notify_outbox`` and ``notify_deliveries`` over one DuckDB connection.

    Used from the event-loop thread only; every method commits before it returns.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        self._depth = 0
        with self._transaction():
            for statement in _SCHEMA:
                conn.execute(statement)
        row = conn.execute("SELECT coalesce(max(seq), 0) FROM notify_outbox").fetchone()
        self._seq = int(row[0]) if row else 0

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One transaction around the block; nested uses join the outer one.

        The engine wraps "take what the pipeline has due, then enqueue it" in one, with the
        pipeline's notification log on the same connection: a crash between the two can
        then neither lose a message (logged as sent, never enqueued) nor half-write one.
        """
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    _transaction = transaction

    # -- writing ------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[Message], *, expires_ms: int | None = None) -> int:
        """Store ``messages`` (committed before this returns); returns how many were new.

        A message whose id is already in the outbox (in any status) is ignored, so
        enqueueing the same notification twice sends it once. ``expires_ms`` is an absolute
        time after which the messages are no longer sent (None: the delivery policy's
        ``expire_ms`` after now). New messages are due at once.
        """
        unique: dict[str, Message] = {}
        for m in messages:
            unique.setdefault(m.id, m)
        if not unique:
            return 0
        now = self.clock.now_ms()
        batch = list(unique.values())
        n = len(batch)
        first = self._seq + 1
        self._seq += n
        with self._transaction():
            row = self.conn.execute(
                "INSERT OR IGNORE INTO notify_outbox (id, seq, channel, kind, group_key, payload,"
                " status, attempts, next_attempt_ms, created_ms, enqueued_ms, expires_ms,"
                " updated_ms) SELECT unnest(?::VARCHAR[]), unnest(?::BIGINT[]),"
                " unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
                " unnest(?::VARCHAR[]), 'pending', 0, ?, unnest(?::BIGINT[]), ?, ?, ?",
                [[m.id for m in batch], list(range(first, first + n)),
                 [m.channel for m in batch], [m.kind for m in batch],
                 [m.group_key for m in batch], [m.dumps() for m in batch], now,
                 [m.created_ms for m in batch], now, expires_ms, now]).fetchone()
        return int(row[0]) if row else 0

    def due_entries(self, limit: int = 256) -> list[DueMessage]:
        """Pending messages whose next attempt time has come, oldest first.

        A row whose payload cannot be read back (written by an incompatible version) is
        marked failed with the reason instead of blocking the queue.
        """
        now = self.clock.now_ms()
        rows = self.conn.execute(
            "SELECT id, payload, attempts, enqueued_ms, expires_ms FROM notify_outbox"
            " WHERE status = 'pending' AND next_attempt_ms <= ?"
            " ORDER BY next_attempt_ms, seq LIMIT ?", [now, limit]).fetchall()
        out: list[DueMessage] = []
        broken: list[tuple[str, str]] = []
        for mid, payload, attempts, enqueued_ms, expires_ms in rows:
            try:
                message = Message.loads(payload)
            except (ValueError, KeyError, TypeError) as exc:
                broken.append((mid, f"unreadable outbox payload: {type(exc).__name__}: {exc}"))
                continue
            out.append(DueMessage(message, int(attempts), int(enqueued_ms),
                                  None if expires_ms is None else int(expires_ms)))
        for mid, why in broken:
            log.error("outbox message %s: %s", mid, why)
            self.conn.execute("UPDATE notify_outbox SET status = 'failed', last_error = ?,"
                              " updated_ms = ? WHERE id = ?", [why, now, mid])
        return out

    def due(self, limit: int = 256) -> list[Message]:
        """The messages due now (see :meth:`due_entries`)."""
        return [d.message for d in self.due_entries(limit)]

    def record(self, attempts: Sequence[Attempt]) -> None:
        """Write the delivery-log rows and the new message states, in one transaction."""
        if not attempts:
            return
        now = self.clock.now_ms()
        a = attempts
        delivered = [x.at_ms + x.duration_ms if x.status == DELIVERED else None for x in a]
        errors = [None if x.result.ok else x.result.detail for x in a]
        with self._transaction():
            self.conn.execute(
                f"INSERT INTO notify_deliveries ({_DELIVERY_COLUMNS}) SELECT"
                " unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]),"
                " unnest(?::INTEGER[]), unnest(?::BIGINT[]), unnest(?::BIGINT[]),"
                " unnest(?::BOOLEAN[]), unnest(?::BOOLEAN[]), unnest(?::VARCHAR[]),"
                " unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[][]),"
                " unnest(?::VARCHAR[])",
                [[x.message.id for x in a], [x.message.channel for x in a],
                 [x.message.kind for x in a], [x.attempt for x in a], [x.at_ms for x in a],
                 [x.duration_ms for x in a], [x.result.ok for x in a],
                 [x.result.retryable for x in a], [x.result.detail for x in a],
                 [x.status for x in a], [x.result.remote_id for x in a],
                 [list(x.message.recipients) for x in a], [x.message.person for x in a]])
            self.conn.execute(
                "UPDATE notify_outbox SET status = u.status, attempts = u.attempt,"
                " next_attempt_ms = coalesce(u.next_ms, notify_outbox.next_attempt_ms),"
                " last_error = coalesce(u.error, notify_outbox.last_error),"
                " delivered_ms = u.delivered_ms,"
                " remote_id = coalesce(u.remote_id, notify_outbox.remote_id), updated_ms = ?"
                " FROM (SELECT unnest(?::VARCHAR[]) AS id, unnest(?::VARCHAR[]) AS status,"
                " unnest(?::INTEGER[]) AS attempt, unnest(?::BIGINT[]) AS next_ms,"
                " unnest(?::VARCHAR[]) AS error, unnest(?::BIGINT[]) AS delivered_ms,"
                " unnest(?::VARCHAR[]) AS remote_id) AS u WHERE notify_outbox.id = u.id",
                [now, [x.message.id for x in a], [x.status for x in a], [x.attempt for x in a],
                 [x.next_attempt_ms for x in a], errors, delivered,
                 [x.result.remote_id for x in a]])

    def expire_overdue(self, default_expire_ms: int) -> list[OutboxEntry]:
        """Mark pending messages past their expiry ``expired``; returns them (as they were).

        A message's expiry is its ``expires_ms``, else ``enqueued_ms + default_expire_ms``.
        """
        now = self.clock.now_ms()
        where = ("status = 'pending' AND coalesce(expires_ms, enqueued_ms + ?) <= ?")
        with self._transaction():
            rows = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM notify_outbox WHERE {where}"
                                     " ORDER BY seq", [default_expire_ms, now]).fetchall()
            if rows:
                self.conn.execute(f"UPDATE notify_outbox SET status = 'expired', updated_ms = ?"
                                  f" WHERE {where}", [now, default_expire_ms, now])
        return [_entry(r) for r in rows]

    def prune(self, before_ms: int) -> int:
        """Delete delivered, failed and expired rows last changed before ``before_ms``.

        The delivery log is kept (statistics and audits read it); returns rows deleted.
        """
        with self._transaction():
            row = self.conn.execute("DELETE FROM notify_outbox WHERE status <> 'pending'"
                                    " AND updated_ms < ?", [before_ms]).fetchone()
        return int(row[0]) if row else 0

    # -- reading ------------------------------------------------------------------------

    def pending(self) -> int:
        """How many messages wait for delivery (due now or scheduled for a retry)."""
        row = self.conn.execute(
            "SELECT count(*) FROM notify_outbox WHERE status = 'pending'").fetchone()
        return int(row[0]) if row else 0

    def counts(self) -> dict[str, int]:
        """Messages per status (every status present, zero included)."""
        out = dict.fromkeys(OUTBOX_STATUSES, 0)
        for status, n in self.conn.execute(
                "SELECT status, count(*) FROM notify_outbox GROUP BY status").fetchall():
            out[str(status)] = int(n)
        return out

    def next_due_ms(self) -> int | None:
        """When the earliest pending message is due (None: nothing pending)."""
        row = self.conn.execute("SELECT min(next_attempt_ms) FROM notify_outbox"
                                " WHERE status = 'pending'").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def get(self, message_id: str) -> OutboxEntry | None:
        row = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM notify_outbox WHERE id = ?",
                                [message_id]).fetchone()
        return None if row is None else _entry(row)

    def entries(self, *, status: str | None = None, channel: str | None = None,
                limit: int = 100) -> list[OutboxEntry]:
        """Outbox rows, newest first (optionally one status and/or one channel)."""
        if status is not None and status not in OUTBOX_STATUSES:
            raise ValueError(f"status must be one of {', '.join(OUTBOX_STATUSES)}, "
                             f"got {status!r}")
        where, params = _filters({"status": status, "channel": channel})
        rows = self.conn.execute(f"SELECT {_ENTRY_COLUMNS} FROM notify_outbox{where}"
                                 " ORDER BY seq DESC LIMIT ?", [*params, limit]).fetchall()
        return [_entry(r) for r in rows]

    def deliveries(self, *, message_id: str | None = None, channel: str | None = None,
                   since_ms: int | None = None, limit: int = 1000) -> list[DeliveryRecord]:
        """The delivery log: the latest ``limit`` attempts that match, oldest first."""
        where, params = _filters({"message_id": message_id, "channel": channel})
        if since_ms is not None:
            where += (" AND" if where else " WHERE") + " at_ms >= ?"
            params.append(since_ms)
        rows = self.conn.execute(
            f"SELECT * FROM (SELECT {_DELIVERY_COLUMNS} FROM notify_deliveries{where}"
            " ORDER BY at_ms DESC, attempt DESC LIMIT ?) ORDER BY at_ms, attempt",
            [*params, limit]).fetchall()
        return [DeliveryRecord(r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]), bool(r[6]),
                               bool(r[7]), r[8], r[9], r[10], tuple(r[11]), r[12])
                for r in rows]


def _filters(equal: Mapping[str, object]) -> tuple[str, list[object]]:
    parts = [f"{name} = ?" for name, value in equal.items() if value is not None]
    params = [value for value in equal.values() if value is not None]
    return ((" WHERE " + " AND ".join(parts)) if parts else ""), params


def _entry(row: tuple[Any, ...]) -> OutboxEntry:
    (mid, channel, kind, group_key, status, attempts, next_ms, created_ms, enqueued_ms,
     expires_ms, last_error, delivered_ms, remote_id, payload) = row
    return OutboxEntry(mid, channel, kind, group_key, status, int(attempts), int(next_ms),
                       int(created_ms), int(enqueued_ms),
                       None if expires_ms is None else int(expires_ms), last_error,
                       None if delivered_ms is None else int(delivered_ms), remote_id, payload)
