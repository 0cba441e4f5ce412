"""Every alert state change, kept in the database for ``monitoring alerts history`` and stats.

Prometheus keeps alert history only as ``ALERTS`` series, bounded by the TSDB
retention; Alertmanager keeps none (prometheus/alertmanager #2223). The live
evaluator appends each :class:`~monitoring.engine.alerts.Transition` of each
evaluation here, as a row of ``live_alert_transitions``: the rule, the alert's
fingerprint (:func:`monitoring.notify.model.fingerprint`, the id the CLI and
API use), its labels as JSON, the states before and after, the evaluation time
and the value (as text: JSON and DuckDB disagree on NaN; NULL when there was
none). Rows are only ever appended, from the event-loop thread.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from monitoring.engine.alerts import Transition
from monitoring.live.alert_state import in_transaction
from monitoring.notify.model import fingerprint

TABLE = "live_alert_transitions"

_DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    rule VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    labels VARCHAR NOT NULL,
    from_state VARCHAR NOT NULL,
    to_state VARCHAR NOT NULL,
    at_ms BIGINT NOT NULL,
    value VARCHAR
)"""


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One stored state change of one alert."""

    rule: str
    fingerprint: str
    labels: dict[str, str]
    from_state: str
    to_state: str
    at_ms: int
    value: float | None

    @classmethod
    def of(cls, rule: str, t: Transition) -> TransitionRecord:
        labels = dict(t.alert)
        return cls(rule, fingerprint(labels), labels, t.old.label, t.new.label, t.time_ms,
                   None if math.isnan(t.value) else t.value)

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "fingerprint": self.fingerprint, "labels": self.labels,
                "from": self.from_state, "to": self.to_state, "at_ms": self.at_ms,
                "value": None if self.value is None else _text(self.value)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TransitionRecord:
        """The record :meth:`to_json` wrote (the CLI reads a running engine's API)."""
        value = data.get("value")
        return cls(data["rule"], data["fingerprint"], dict(data["labels"]), data["from"],
                   data["to"], int(data["at_ms"]), None if value is None else float(value))


class AlertHistory:
    """The ``live_alert_transitions`` table."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        conn.execute(_DDL)

    def record(self, rule: str, transitions: Iterable[Transition]) -> int:
        """Append one rule's transitions; returns how many."""
        return self.add([TransitionRecord.of(rule, t) for t in transitions])

    def add(self, records: Sequence[TransitionRecord]) -> int:
        """Append ``records`` in one transaction; returns how many."""
        if not records:
            return 0
        with in_transaction(self.conn):
            insert_transitions(self.conn, records)
        return len(records)

    def query(self, *, since_ms: int | None = None, until_ms: int | None = None,
              rule: str | None = None, fingerprint: str | None = None,
              limit: int | None = None) -> list[TransitionRecord]:
        """Transitions in time order (``since`` inclusive, ``until`` exclusive).

        With ``limit``, the newest ``limit`` of them (still in time order).
        """
        return read_transitions(self.conn, since_ms=since_ms, until_ms=until_ms, rule=rule,
                                fingerprint=fingerprint, limit=limit)


def insert_transitions(conn: duckdb.DuckDBPyConnection,
                       records: Sequence[TransitionRecord]) -> None:
    """Append ``records`` in the caller's transaction (the scheduler joins it with the state).

    One statement for the whole batch: executemany costs ~0.1 ms per row in DuckDB.
    """
    if not records:
        return
    columns = ([r.rule for r in records], [r.fingerprint for r in records],
                   [json.dumps(r.labels, sort_keys=True) for r in records],
                   [r.from_state for r in records], [r.to_state for r in records],
                   [r.at_ms for r in records],
               [None if r.value is None else _text(r.value) for r in records])
    conn.execute(
        f"INSERT INTO {TABLE} SELECT unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
        "unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), unnest(?::VARCHAR[]), "
        "unnest(?::BIGINT[]), unnest(?::VARCHAR[])", list(columns))


def read_transitions(conn: duckdb.DuckDBPyConnection, *, since_ms: int | None = None,
                     until_ms: int | None = None, rule: str | None = None,
                     fingerprint: str | None = None, limit: int | None = None
                     ) -> list[TransitionRecord]:
    """See :meth:`AlertHistory.query` (also for read-only connections: creates nothing)."""
    where: list[str] = []
    params: list[object] = []
    for column, op, value in (("at_ms", ">=", since_ms), ("at_ms", "<", until_ms),
                              ("rule", "=", rule), ("fingerprint", "=", fingerprint)):
        if value is not None:
            where.append(f"{column} {op} ?")
            params.append(value)
    sql = f"SELECT rule, fingerprint, labels, from_state, to_state, at_ms, value FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    # rowid keeps the order of transitions written at the same time (pending -> firing).
    sql += " ORDER BY at_ms DESC, rowid DESC" if limit is not None else " ORDER BY at_ms, rowid"
    if limit is not None:
        sql += " LIMIT ?"
        params.append(limit)
    rows = conn.execute(sql, params).fetchall()
    if limit is not None:
        rows.reverse()
    return [TransitionRecord(r, fp, json.loads(labels), a, b, int(at),
                             None if v is None else float(v))
            for r, fp, labels, a, b, at, v in rows]


def _text(value: float) -> str:
    """A value as text that reads back to the same float (``repr``), NaN and infinities too."""
    return repr(float(value))
