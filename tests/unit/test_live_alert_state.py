"""Alert state survives a restart: the evaluator is dropped and rebuilt from the same DB file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from monitoring.live.alert_state import AlertStateStore, StoredState, rule_key
from monitoring.live.history import read_transitions
from tests.support.live_engine import LiveCase, minute_wave, square

FOR5 = "group g every 1m {\n alert High {\n  when x > 0.5\n  for 5m\n }\n}\n"


@pytest.fixture
def case(tmp_path: Path) -> Iterator[LiveCase]:
    c = LiveCase(tmp_path, FOR5, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))})
    c.open()
    yield c
    c.close()


def history(case: LiveCase) -> list[tuple[str, str, int]]:
    assert case.conn is not None
    return [(t.from_state, t.to_state, t.at_ms) for t in read_transitions(case.conn)]


def test_restart_resumes_a_pending_for_timer(case: LiveCase) -> None:
    case.evaluate([10, 11, 12])
    assert [(v.state, v.active_at_ms) for v in case.ev.alerts()] == [("pending", case.at(10))]
    case.open()  # a restart: new store connection, new evaluator, state from the table
    assert [(v.state, v.active_at_ms) for v in case.ev.alerts()] == [("pending", case.at(10))]
    out = case.evaluate([13, 14, 15])
    assert out[:2] == [[], []]
    (alert,) = out[2]
    assert (alert.status, alert.starts_at_ms) == ("firing", case.at(15))  # 10 + for 5m
    assert history(case) == [("inactive", "pending", case.at(10)),
                             ("pending", "firing", case.at(15))]


def test_restart_keeps_a_firing_alert_firing_and_resolves_it_later(case: LiveCase) -> None:
    case.evaluate([10, 15, 16])
    case.open()
    (view,) = case.ev.alerts()
    assert (view.state, view.active_at_ms, view.fired_at_ms) == (
        "firing", case.at(10), case.at(15))
    (first,) = case.evaluate([17])[0]
    assert (first.status, first.starts_at_ms) == ("firing", case.at(15))
    (last,) = case.evaluate([30])[0]
    assert (last.status, last.starts_at_ms, last.ends_at_ms) == (
        "resolved", case.at(15), case.at(30))
    # No second firing transition: the restart continued the same alert.
    assert history(case) == [("inactive", "pending", case.at(10)),
                             ("pending", "firing", case.at(15)),
                             ("firing", "inactive", case.at(30))]


def test_same_outcome_with_and_without_restarts(tmp_path: Path) -> None:
    runs = []
    for restarts in (False, True):
        folder = tmp_path / str(restarts)
        folder.mkdir()
        c = LiveCase(folder, FOR5, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))})
        c.open()
        for m in range(8, 34):
            if restarts and m % 3 == 0:
                c.open()
            c.evaluate([m])
        assert c.conn is not None
        runs.append([(t.from_state, t.to_state, t.at_ms - c.at(0))
                     for t in read_transitions(c.conn)])
        c.close()
    assert runs[0] == runs[1]
    assert [s for _, s, _ in runs[0]] == ["pending", "firing", "inactive"]


def test_a_changed_rule_does_not_inherit_the_old_state(case: LiveCase) -> None:
    case.evaluate([10, 11])
    Path(case.paths[0]).write_text(FOR5.replace("for 5m", "for 3m"), encoding="utf-8")
    case.open()
    assert case.ev.alerts() == []
    assert case.conn is not None
    assert AlertStateStore(case.conn).load() == {}
    case.evaluate([12])
    assert [(v.state, v.active_at_ms) for v in case.ev.alerts()] == [("pending", case.at(12))]


def test_state_rows_are_written_only_when_they_change(case: LiveCase) -> None:
    assert case.conn is not None
    table = AlertStateStore(case.conn)
    case.evaluate([5])
    key = rule_key(case.paths[0], "g", "High")
    assert table.load()[key].snapshot["alerts"] == []
    assert table.load()[key].updated_ms == case.at(5)
    case.evaluate([6, 7, 8, 9])
    assert table.load()[key].updated_ms == case.at(5)  # nothing changed: not rewritten
    case.evaluate([10])
    assert table.load()[key].updated_ms == case.at(10)
    (alert,) = table.active_alerts()
    assert (alert.rule, alert.labels, alert.state, alert.active_at_ms, alert.value) == (
        "High", {"alertname": "High", "instance": "a"}, "pending", case.at(10), 1.0)


def test_an_unreadable_snapshot_starts_the_rule_afresh(case: LiveCase) -> None:
    case.evaluate([10])
    assert case.conn is not None
    key = rule_key(case.paths[0], "g", "High")
    case.conn.execute("UPDATE live_alert_state SET snapshot = ? WHERE rule_key = ?",
                      ['{"version": 7}', key])
    case.open()
    assert case.ev.alerts() == []
    case.evaluate([11])
    assert [v.active_at_ms for v in case.ev.alerts()] == [case.at(11)]


def test_state_store_round_trip(tmp_path: Path) -> None:
    conn = duckdb.connect(str(tmp_path / "x.duckdb"))
    table = AlertStateStore(conn)
    snap = {"version": 1, "rule": "R", "last_time": 5, "alerts": [
        {"labels": [["alertname", "R"]], "shown": 3, "active_at": 1, "fired_at": None,
         "last_value": float("inf"), "flapping": True}]}
    table.save([StoredState("k", "R", "g", "f", "sig", snap, 9)])
    assert table.load()["k"].snapshot == snap
    (alert,) = table.active_alerts()
    assert (alert.state, alert.value, alert.flapping) == ("nodata", None, True)
    table.delete(["k"])
    assert table.load() == {}
    conn.close()
