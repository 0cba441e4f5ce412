"""Saving an evaluation's transitions and alert state: one transaction, durable, fallbacks.

The scheduler writes both tables in one transaction when they share a
database (``same_database``), the state by ``UPDATE`` and inserting only the
rows it did not find (``AlertStateStore.write``). These tests read through
another connection after each evaluation, and break the history table to
show that the state is still saved on its own.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from monitoring.live.alert_state import (
    AlertStateStore,
    StoredState,
    in_transaction,
    read_states,
    same_database,
)
from monitoring.live.history import read_transitions
from tests.support.live_engine import LiveCase
from tests.unit import test_live_scheduler

case = test_live_scheduler.case  # the fixture: rule High over x, above 0.5 in minutes 10-29



def state(key: str, snapshot: dict[str, object], at: int, signature: str = "s1"
          ) -> StoredState:
    return StoredState(key, key.upper(), "g", "f", signature, dict(snapshot), at)


def test_write_updates_known_rows_and_inserts_new_ones(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "a.duckdb"))
    table = AlertStateStore(conn)
    table.save([state("a", {"n": 1}, 10), state("b", {"n": 1}, 10)])
    with in_transaction(conn):
        table.write([state("b", {"n": 2}, 20, "s2"), state("c", {"n": 3}, 20)])
    got = read_states(conn.cursor())
    assert {k: (s.snapshot, s.signature, s.updated_ms, s.rule) for k, s in got.items()} == {
        "a": ({"n": 1}, "s1", 10, "A"), "b": ({"n": 2}, "s2", 20, "B"),
        "c": ({"n": 3}, "s1", 20, "C")}
    conn.close()


def test_same_database_only_for_one_database_file(tmp_path: Path) -> None:
    a = duckdb.connect(str(tmp_path / "a.duckdb"))
    b = duckdb.connect(str(tmp_path / "b.duckdb"))
    m1, m2 = duckdb.connect(":memory:"), duckdb.connect(":memory:")
    assert same_database(a, a) and same_database(a, a.cursor()) and same_database(m1, m1)
    assert not same_database(a, b) and not same_database(m1, m2)
    for c in (a, b, m1, m2):
        c.close()


def shown(conn: duckdb.DuckDBPyConnection) -> list[tuple[int, int | None]]:
    """(shown state, active_at) of each saved alert of the one rule."""
    [st] = read_states(conn).values()
    return [(row["shown"], row["active_at"]) for row in st.snapshot["alerts"]]


def test_state_and_transitions_are_durable_after_each_evaluation(case: LiveCase) -> None:
    assert case.conn is not None
    other = case.conn.cursor()  # another connection: sees committed writes only
    case.evaluate([10])
    assert shown(other) == [(1, case.at(10))]  # pending
    assert [(t.to_state, t.at_ms) for t in read_transitions(other)] == [
        ("pending", case.at(10))]
    case.evaluate([12])
    assert shown(other) == [(2, case.at(10))]  # firing, same ActiveAt
    assert [(t.to_state, t.at_ms) for t in read_transitions(other)] == [
        ("pending", case.at(10)), ("firing", case.at(12))]


def test_state_is_saved_when_the_history_cannot_be(case: LiveCase) -> None:
    assert case.conn is not None
    case.conn.execute("DROP TABLE live_alert_transitions")
    case.evaluate([10])  # the joint transaction fails: each table on its own
    assert shown(case.conn.cursor()) == [(1, case.at(10))]
    case.open()  # a restart resumes from the saved state: fires at minute 12
    case.conn.execute("DROP TABLE IF EXISTS live_alert_transitions")
    out = case.evaluate([11, 12])
    assert [[(a.status, a.starts_at_ms) for a in alerts] for alerts in out] == [
        [], [("firing", case.at(12))]]
