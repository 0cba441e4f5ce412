"""Acknowledgements: "I am on it" for one alert, durable and audited.

An acknowledgement stops the alert's escalation (:mod:`monitoring.notify.escalation`) and
counts towards the mean time to acknowledge (``monitoring alerts stats`` joins this
table). It is kept per alert fingerprint with its time, so it applies to the firing episode
it was made in: :meth:`AckStore.is_acked` asks "acknowledged since this episode started?",
and an alert that resolves and fires again escalates afresh.

The table ``notify_acks`` lives in the engine's DuckDB file; every acknowledgement is one
committed row and one audit event (``event_type`` ``acknowledgement``).
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass

import duckdb

from monitoring.notify.model import AuditSink, Clock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_acks (
    id TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    rule TEXT NOT NULL,
    acked_ms BIGINT NOT NULL,
    acked_by TEXT NOT NULL,
    comment TEXT NOT NULL
)
"""
_COLUMNS = "id, fingerprint, rule, acked_ms, acked_by, comment"


class AckError(ValueError):
    """An acknowledgement that cannot be recorded (no fingerprint, nobody named)."""


@dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledgement of one alert."""

    id: str
    fingerprint: str
    rule: str
    acked_ms: int
    by: str
    comment: str = ""

    def to_json(self) -> dict[str, str | int]:
        return {"id": self.id, "fingerprint": self.fingerprint, "rule": self.rule,
                "acked_ms": self.acked_ms, "by": self.by, "comment": self.comment}


class AckStore:
    """The ``notify_acks`` table: record, query and list acknowledgements."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, clock: Clock,
                 audit: AuditSink | None = None) -> None:
        self._conn = conn
        self._clock = clock
        self._audit = audit
        conn.execute(_SCHEMA)

    def acknowledge(self, fingerprint: str, *, by: str, comment: str = "",
                    rule: str = "") -> Ack:
        """Record that ``by`` acknowledged the alert ``fingerprint`` now; audited."""
        fingerprint = fingerprint.strip()
        by = by.strip()
        if not fingerprint:
            raise AckError("fingerprint: the alert to acknowledge is missing")
        if not by:
            raise AckError("by: who acknowledges must be named")
        ack = Ack(uuid.uuid4().hex, fingerprint, rule, self._clock.now_ms(), by, comment)
        self._conn.execute(f"INSERT INTO notify_acks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                           [ack.id, ack.fingerprint, ack.rule, ack.acked_ms, ack.by,
                            ack.comment])
        if self._audit is not None:
            self._audit({"event_type": "acknowledgement", "action": "acknowledge",
                         "severity": "info", "resource": fingerprint,
                         "details": {"fingerprint": fingerprint, "rule": rule, "by": by,
                                     "comment": comment, "acked_ms": ack.acked_ms}})
        return ack

    def last(self, fingerprint: str, since_ms: int | None = None) -> Ack | None:
        """The latest acknowledgement of ``fingerprint`` (at or after ``since_ms``)."""
        found = self.list(fingerprint=fingerprint, since_ms=since_ms, limit=1)
        return found[0] if found else None

    def is_acked(self, fingerprint: str, since_ms: int) -> bool:
        """Whether the alert was acknowledged at or after ``since_ms`` (its episode start)."""
        return self.last(fingerprint, since_ms) is not None

    def list(self, *, fingerprint: str | None = None, since_ms: int | None = None,
             limit: int = 100) -> builtins.list[Ack]:
        """Acknowledgements, newest first, optionally of one alert and since a time."""
        where: builtins.list[str] = []
        params: builtins.list[object] = []
        if fingerprint is not None:
            where.append("fingerprint = ?")
            params.append(fingerprint)
        if since_ms is not None:
            where.append("acked_ms >= ?")
            params.append(since_ms)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM notify_acks {clause} ORDER BY acked_ms DESC, id "
            f"LIMIT ?", [*params, max(0, limit)]).fetchall()
        return [Ack(str(r[0]), str(r[1]), str(r[2]), int(r[3]), str(r[4]), str(r[5]))
                for r in rows]
