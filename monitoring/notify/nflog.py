"""The notification log: what each receiver of each group was last told, kept in DuckDB.

Alertmanager decides whether to notify by comparing a group's alerts with its
notification log (which alerts the receiver last heard of as firing and as
resolved, and when); it keeps that log in memory and in snapshots that users
cannot read (prometheus/alertmanager #172). Here it is a table,
``notify_nflog``, written when a notification is handed to the outbox, so a
restarted engine neither resends what was sent nor forgets what a receiver
knows. ``notify_alert_log`` keeps, per alert, the episode last notified as
firing and when (the rule cooldown reads it).

Alerts are identified by episode: ``fingerprint@starts_at_ms``, so an alert that
resolves and fires again is a new alert to its receivers even if the resolution
was never sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from monitoring.notify.model import Alert

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notify_nflog (group_key VARCHAR NOT NULL, receiver VARCHAR "
    "NOT NULL, firing VARCHAR NOT NULL, resolved VARCHAR NOT NULL, sent_ms BIGINT NOT NULL, "
    "repeats INTEGER NOT NULL, PRIMARY KEY (group_key, receiver))",
    "CREATE TABLE IF NOT EXISTS notify_alert_log (fingerprint VARCHAR PRIMARY KEY, "
    "starts_ms BIGINT NOT NULL, notified_ms BIGINT NOT NULL)",
)


def episode(alert: Alert) -> str:
    """The identity of one firing episode of an alert."""
    return f"{alert.fingerprint}@{alert.starts_at_ms}"


@dataclass(frozen=True, slots=True)
class NflogEntry:
    """What a receiver of a group was last told."""

    group_key: str
    receiver: str
    firing: frozenset[str]
    resolved: frozenset[str]
    sent_ms: int
    repeats: int = 0


class NotificationLog:
    """The ``notify_nflog`` and ``notify_alert_log`` tables (event-loop thread only).

    The log is read once and then kept in memory as well (every flush of every group
    consults it); the pipeline that owns it is its only writer.
    """

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        for statement in _SCHEMA:
            conn.execute(statement)
        self._entries = {(e.group_key, e.receiver): e for e in self._read()}

    def get(self, group_key: str, receiver: str) -> NflogEntry | None:
        """The last notification of a group to a receiver, if any is recorded."""
        return self._entries.get((group_key, receiver))

    def log(self, group_key: str, receiver: str, firing: Iterable[str],
            resolved: Iterable[str], sent_ms: int, repeats: int) -> None:
        """Record a notification; a group whose receiver knows of nothing firing is dropped."""
        firing_set, resolved_set = frozenset(firing), frozenset(resolved)
        if not firing_set:
            self.conn.execute("DELETE FROM notify_nflog WHERE group_key = ? AND receiver = ?",
                              [group_key, receiver])
            self._entries.pop((group_key, receiver), None)
            return
        self.conn.execute(
            "INSERT OR REPLACE INTO notify_nflog VALUES (?, ?, ?, ?, ?, ?)",
            [group_key, receiver, json.dumps(sorted(firing_set)),
             json.dumps(sorted(resolved_set)), sent_ms, repeats])
        self._entries[(group_key, receiver)] = NflogEntry(group_key, receiver, firing_set,
                                                          resolved_set, sent_ms, repeats)

    def entries(self) -> list[NflogEntry]:
        """Every recorded group and receiver, as stored (for the API and tests)."""
        return self._read()

    def _read(self) -> list[NflogEntry]:
        rows = self.conn.execute("SELECT group_key, receiver, firing, resolved, sent_ms, repeats "
                                 "FROM notify_nflog ORDER BY group_key, receiver").fetchall()
        return [NflogEntry(r[0], r[1], frozenset(json.loads(r[2])), frozenset(json.loads(r[3])),
                           int(r[4]), int(r[5])) for r in rows]

    def last_firing(self, fingerprint: str) -> tuple[int, int] | None:
        """``(starts_ms, notified_ms)`` of the alert's episode last notified as firing."""
        row = self.conn.execute("SELECT starts_ms, notified_ms FROM notify_alert_log "
                                "WHERE fingerprint = ?", [fingerprint]).fetchone()
        return None if row is None else (int(row[0]), int(row[1]))

    def notified_firing(self, alerts: Iterable[Alert], at_ms: int) -> None:
        """Record that these firing alerts were just notified."""
        rows = [[a.fingerprint, a.starts_at_ms, at_ms] for a in alerts]
        if rows:
            self.conn.executemany("INSERT OR REPLACE INTO notify_alert_log VALUES (?, ?, ?)",
                                  rows)
