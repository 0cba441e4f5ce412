"""The alert state machines' state in the database, so a restart resumes where it stopped.

Prometheus restores only ``for`` timers after a restart (from its
``ALERTS_FOR_STATE`` series), and only after a grace period. Here every
alerting rule's :class:`~monitoring.engine.alerts.AlertMachine` is written as
its own JSON snapshot (``AlertMachine.snapshot``) to the table
``live_alert_state`` after each evaluation that changed it, and restored at
start: a pending alert keeps its ``ActiveAt`` and fires at the evaluation it
would have fired at, a firing alert keeps firing without a new notification,
and hysteresis and flapping history carry over.

A row carries a ``signature`` of the rule's compiled form (condition, recovery
condition, ``for``, labels, annotations...): a snapshot is restored only into
the same rule. A changed rule starts afresh, as Prometheus does for a rule
whose query changed.

Rows are keyed by ``file;group;name``; the table is written only from the
event-loop thread, one transaction per group evaluation (shared with the
transitions of that evaluation, see ``LiveEvaluator._persist``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from monitoring.engine.alerts import AlertState

TABLE = "live_alert_state"

_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    rule_key VARCHAR PRIMARY KEY,
    rule VARCHAR NOT NULL,
    group_name VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    signature VARCHAR NOT NULL,
    snapshot VARCHAR NOT NULL,
    updated_ms BIGINT NOT NULL
)"""


def rule_key(file: str, group: str, name: str) -> str:
    """The identity of a rule across restarts (rule names are unique per group)."""
    return f"{file};{group};{name}"


@dataclass(frozen=True, slots=True)
class StoredState:
    """One rule's saved machine state."""

    rule_key: str
    rule: str
    group: str
    file: str
    signature: str
    snapshot: dict[str, Any]
    updated_ms: int


@dataclass(frozen=True, slots=True)
class StoredAlert:
    """One alert as the saved state shows it (what ``monitoring alerts`` lists)."""

    rule: str
    group: str
    file: str
    labels: dict[str, str]
    state: str  # pending | firing | nodata
    active_at_ms: int | None
    fired_at_ms: int | None
    value: float | None
    flapping: bool
    updated_ms: int


class AlertStateStore:
    """The ``live_alert_state`` table: one JSON machine snapshot per alerting rule."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        conn.execute(_DDL)

    def load(self) -> dict[str, StoredState]:
        """Every saved state by rule key (unreadable JSON is skipped: that rule starts afresh)."""
        return read_states(self.conn)

    def save(self, states: Sequence[StoredState]) -> None:
        """Insert or replace ``states`` in one transaction."""
        if not states:
            return
        with _transaction(self.conn):
            self.write(states)

    def write(self, states: Sequence[StoredState]) -> None:
        """Insert or replace ``states`` in the caller's transaction on :attr:`conn`.

        Nearly always every row exists already (a rule's state is rewritten at
        each evaluation that changed it): an ``UPDATE`` from the batch costs
        half of an ``INSERT OR REPLACE`` on the primary key (measured: 1.8 ms
        against 3.5 ms for 50 rules). Rows it did not find are then inserted.
        One statement for the batch (executemany costs ~0.1 ms per row in DuckDB).
        """
        if not states:
            return
        columns = [[s.rule_key for s in states], [s.rule for s in states],
                   [s.group for s in states], [s.file for s in states],
                   [s.signature for s in states],
                   [json.dumps(s.snapshot, separators=(",", ":"), allow_nan=True,
                               check_circular=False)
                    for s in states], [s.updated_ms for s in states]]
        batch = ("(SELECT unnest(?::VARCHAR[]) AS k, unnest(?::VARCHAR[]) AS r, "
                 "unnest(?::VARCHAR[]) AS g, unnest(?::VARCHAR[]) AS f, "
                 "unnest(?::VARCHAR[]) AS sig, unnest(?::VARCHAR[]) AS snap, "
                 "unnest(?::BIGINT[]) AS t) AS u")
        row = self.conn.execute(
            f"UPDATE {TABLE} SET rule = u.r, group_name = u.g, file = u.f, signature = u.sig, "
            f"snapshot = u.snap, updated_ms = u.t FROM {batch} WHERE rule_key = u.k",
            columns).fetchone()
        if row is not None and int(row[0]) == len(states):
            return
        self.conn.execute(
            f"INSERT INTO {TABLE} SELECT u.k, u.r, u.g, u.f, u.sig, u.snap, u.t FROM {batch} "
            f"WHERE u.k NOT IN (SELECT rule_key FROM {TABLE})", columns)

    def delete(self, keys: Iterable[str]) -> None:
        """Forget the state of rules that are gone."""
        keys = list(keys)
        if keys:
            with _transaction(self.conn):
                self.conn.executemany(f"DELETE FROM {TABLE} WHERE rule_key = ?",
                                      [(k,) for k in keys])

    def active_alerts(self) -> list[StoredAlert]:
        """Pending, firing and no-data alerts of every saved rule, by rule then labels."""
        return active_alerts(self.load().values())


def read_states(conn: duckdb.DuckDBPyConnection) -> dict[str, StoredState]:
    """See :meth:`AlertStateStore.load` (for read-only connections too: creates nothing)."""
    out: dict[str, StoredState] = {}
    rows = conn.execute(
        f"SELECT rule_key, rule, group_name, file, signature, snapshot, updated_ms "
        f"FROM {TABLE}").fetchall()
    for key, rule, group, file, signature, text, updated in rows:
        try:
            snapshot = json.loads(text)
        except ValueError:
            continue
        if isinstance(snapshot, dict):
            out[key] = StoredState(key, rule, group, file, signature, snapshot, int(updated))
    return out


def active_alerts(states: Iterable[StoredState]) -> list[StoredAlert]:
    """The alerts a set of saved states shows as pending, firing or no-data."""
    out: list[StoredAlert] = []
    for st in states:
        for row in st.snapshot.get("alerts", []):
            try:
                shown = AlertState(int(row["shown"]))
                labels = {str(k): str(v) for k, v in row["labels"]}
            except (KeyError, TypeError, ValueError):
                continue
            if shown is AlertState.INACTIVE:
                continue
            value = row.get("last_value")
            out.append(StoredAlert(
                st.rule, st.group, st.file, labels, shown.label, _int(row.get("active_at")),
                _int(row.get("fired_at")),
                None if value is None or not math.isfinite(float(value)) else float(value),
                bool(row.get("flapping", False)), st.updated_ms))
    out.sort(key=lambda a: (a.rule, sorted(a.labels.items())))
    return out


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


class _transaction:
    """``BEGIN`` ... ``COMMIT``, rolled back on an exception."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN TRANSACTION")

    def __exit__(self, kind: object, exc: object, tb: object) -> None:
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")


def in_transaction(conn: duckdb.DuckDBPyConnection) -> _transaction:
    """A context manager running its block in one transaction on ``conn``."""
    return _transaction(conn)


def same_database(a: duckdb.DuckDBPyConnection, b: duckdb.DuckDBPyConnection) -> bool:
    """Whether ``a`` and ``b`` reach one database, so one transaction can write through ``a``.

    True for the same connection, or two (cursors) on the same database file;
    two in-memory connections count as different.
    """
    if a is b:
        return True
    sql = "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    pa, pb = a.execute(sql).fetchall(), b.execute(sql).fetchall()
    return bool(pa) and pa == pb and pa[0][0] is not None
