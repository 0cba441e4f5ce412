"""Channel state in DuckDB: what a channel must remember across restarts.

A Slack bot posts a group's first message and answers every later update of the
group in that message's thread; the thread's ``ts`` must survive a restart, or the
resolution of an incident that started before the restart would land outside its
thread. :class:`DuckChannelState` keeps such ``(channel, key) -> value`` entries in
the table ``notify_channel_state`` of the engine's database.

Like every table owner of the engine, it takes a connection (the system passes a
cursor of the Store's connection), is used from the event-loop thread only, and
commits each write at once (DuckDB autocommit).
"""

from __future__ import annotations

import duckdb

from monitoring.notify.model import Clock, SystemClock

TABLE = "notify_channel_state"


class DuckChannelState:
    """:class:`~monitoring.notify.channels.base.ChannelState` in a DuckDB table."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, clock: Clock | None = None) -> None:
        self._conn = conn
        self._clock: Clock = clock or SystemClock()
        conn.execute(f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            channel VARCHAR NOT NULL,
            key VARCHAR NOT NULL,
            value VARCHAR NOT NULL,
            updated_ms BIGINT NOT NULL,
            PRIMARY KEY (channel, key))""")

    def get(self, channel: str, key: str) -> str | None:
        """The value stored for ``(channel, key)``, or None."""
        row = self._conn.execute(f"SELECT value FROM {TABLE} WHERE channel = ? AND key = ?",
                                 [channel, key]).fetchone()
        return None if row is None else str(row[0])

    def put(self, channel: str, key: str, value: str) -> None:
        """Store ``value`` for ``(channel, key)``, replacing an earlier one."""
        self._conn.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?)",
                           [channel, key, value, self._clock.now_ms()])

    def prune(self, older_than_ms: int) -> int:
        """Forget entries not written since ``older_than_ms``; returns how many went."""
        row = self._conn.execute(f"DELETE FROM {TABLE} WHERE updated_ms < ? RETURNING 1",
                                 [older_than_ms]).fetchall()
        return len(row)
