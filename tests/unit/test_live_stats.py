"""Alert history and statistics on hand-made transitions, real acks and a real delivery log."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from monitoring.live.history import AlertHistory, TransitionRecord, read_transitions
from monitoring.live.stats import alert_stats
from monitoring.notify.acks import AckStore
from monitoring.notify.model import Alert, DeliveryResult, FakeClock, Message, fingerprint
from monitoring.notify.outbox import Attempt, Outbox

MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
W = 1_767_571_200_000  # Monday 2026-01-05T00:00:00Z


def rec(rule: str, inst: str, a: str, b: str, at: int, value: float | None = 1.0
        ) -> TransitionRecord:
    labels = {"alertname": rule, "instance": inst}
    return TransitionRecord(rule, fingerprint(labels), labels, a, b, at, value)


def fp(rule: str, inst: str) -> str:
    return fingerprint({"alertname": rule, "instance": inst})


@pytest.fixture
def conn(tmp_path: Path) -> duckdb.DuckDBPyConnection:
    c = duckdb.connect(str(tmp_path / "stats.duckdb"))
    history = AlertHistory(c)
    history.add([
        rec("B", "b1", "pending", "firing", W - 2 * HOUR),  # before the range
        rec("A", "a1", "inactive", "pending", W),
        rec("A", "a1", "pending", "firing", W + 5 * MIN),
        rec("B", "b1", "firing", "inactive", W + 30 * MIN),
        rec("A", "a1", "firing", "inactive", W + 65 * MIN),
        rec("A", "a1", "inactive", "firing", W + 90 * MIN),  # 25 min after: a re-firing
        rec("A", "a1", "firing", "inactive", W + 100 * MIN),
        rec("A", "a1", "inactive", "firing", W + 120 * MIN),  # and another
        rec("A", "a1", "firing", "inactive", W + 130 * MIN),
        *[rec("C", "c1", a, b, W + i * MIN) for i, (a, b) in enumerate(
            [("inactive", "pending"), ("pending", "inactive")] * 2
            + [("inactive", "pending"), ("pending", "firing")])],
    ])
    clock = FakeClock(W + 2 * MIN)
    acks = AckStore(c, clock)
    acks.acknowledge(fp("A", "a1"), by="alice")  # while pending: not a time to acknowledge
    clock.set(W + 15 * MIN)
    acks.acknowledge(fp("A", "a1"), by="alice")
    clock.set(W + 16 * MIN)
    acks.acknowledge(fp("A", "a1"), by="bob")  # only the first one counts
    outbox = Outbox(c, clock)
    deliveries = [("m1", "alice", W + HOUR, False, "escalation"),
                  ("m1", "alice", W + HOUR + 1, True, "escalation"),
                  ("m2", "bob", W + 2 * HOUR, True, "escalation"),
                  ("m3", "alice", W + 8 * DAY, True, "firing"),
                  ("m4", "carol", W + HOUR, False, "escalation"),
                  ("m5", "alice", W + HOUR, True, "test"),
                  ("m6", None, W + HOUR, True, "firing")]
    alert = Alert({"alertname": "A"}, {}, "firing", W)
    outbox.record([Attempt(Message(mid, "email", kind, "g", (alert,), W, person=person), 1, at,
                           5, DeliveryResult(ok), "delivered" if ok else "pending")
                   for mid, person, at, ok, kind in deliveries])
    return c


def test_history_query_filters_and_limits(conn: duckdb.DuckDBPyConnection) -> None:
    everything = read_transitions(conn)
    assert len(everything) == 15
    assert [r.at_ms for r in everything] == sorted(r.at_ms for r in everything)
    a = read_transitions(conn, rule="A", since_ms=W + HOUR)
    assert [(r.from_state, r.to_state) for r in a] == [
        ("firing", "inactive"), ("inactive", "firing"), ("firing", "inactive"),
        ("inactive", "firing"), ("firing", "inactive")]
    newest = read_transitions(conn, fingerprint=fp("A", "a1"), limit=2)
    assert [r.at_ms for r in newest] == [W + 120 * MIN, W + 130 * MIN]
    assert newest[0].to_json()["value"] == "1.0"


def test_stats_figures(conn: duckdb.DuckDBPyConnection) -> None:
    stats = alert_stats(conn, W - HOUR, W + 14 * DAY)
    rules = {r.rule: r for r in stats.rules}
    assert (rules["A"].firings, rules["A"].changes, rules["A"].refires) == (3, 7, 2)
    assert rules["A"].mean_time_to_resolve_ms == pytest.approx((60 + 10 + 10) / 3 * MIN)
    assert (rules["A"].acked, rules["A"].mean_time_to_ack_ms) == (1, 10 * MIN)
    # B fired before the range: its resolution in the range counts, its firing does not.
    assert (rules["B"].firings, rules["B"].resolved) == (0, 1)
    assert rules["B"].mean_time_to_resolve_ms == 150 * MIN
    assert (rules["C"].firings, rules["C"].changes, rules["C"].changes_per_firing) == (1, 6, 6)
    assert stats.firings == 4
    assert stats.mean_time_to_resolve_ms == pytest.approx((60 + 10 + 10 + 150) / 4 * MIN)
    assert stats.mean_time_to_ack_ms == 10 * MIN
    assert [r.rule for r in stats.flapping] == ["A", "C"]
    assert [r.rule for r in stats.noisiest] == ["A", "C", "B"]
    assert [(p.person, p.week_start_ms, p.pages) for p in stats.pages] == [
        ("alice", W, 1), ("bob", W, 1), ("alice", W + 7 * DAY, 1)]
    assert stats.notes == []
    data = stats.to_json()
    assert data["flapping"] == ["A", "C"]
    assert data["rules"][0] == {
        "rule": "A", "firings": 3, "changes": 7, "resolved": 3, "acknowledged": 1, "refires": 2,
        "changes_per_firing": 2.333, "mean_time_to_resolve_ms": 1_600_000,
        "mean_time_to_ack_ms": 600_000, "flapping": True}


def test_stats_of_a_narrow_range(conn: duckdb.DuckDBPyConnection) -> None:
    stats = alert_stats(conn, W + 80 * MIN, W + 110 * MIN, top=1)
    assert [(r.rule, r.firings, r.resolved) for r in stats.rules] == [("A", 1, 1)]
    assert stats.mean_time_to_resolve_ms == 10 * MIN
    assert [r.rule for r in stats.noisiest] == ["A"]
    assert stats.pages == []


def test_stats_without_tables(tmp_path: Path) -> None:
    c = duckdb.connect(str(tmp_path / "empty.duckdb"))
    stats = alert_stats(c, 0, W)
    assert stats.rules == [] and stats.firings == 0
    assert stats.notes == ["no alert history in this database (the live engine never ran here)"]
    AlertHistory(c)
    stats = alert_stats(c, 0, W)
    assert [n.split(" (")[0] for n in stats.notes] == ["no acknowledgements table",
                                                       "no delivery log"]
    c.close()
