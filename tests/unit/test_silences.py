"""Silences in a real DuckDB file on a FakeClock: create, match, expire, persist, audit."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import pytest

from monitoring.notify.matchers import Matcher
from monitoring.notify.model import FakeClock
from monitoring.notify.silences import InvalidSilence, SilenceError, SilenceStore

T0 = 1_767_225_600_000
M = 60_000


def store(path: Path, clock: FakeClock, events: list[Mapping[str, Any]] | None = None
          ) -> tuple[duckdb.DuckDBPyConnection, SilenceStore]:
    conn = duckdb.connect(str(path))
    return conn, SilenceStore(conn.cursor(), clock, events.append if events is not None else None)


def test_create_match_and_end_by_time(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    conn, silences = store(tmp_path / "m.duckdb", clock)
    s = silences.create('{alertname="HighCPU", instance=~"web-.*"}', ends_ms=T0 + 30 * M,
                        starts_ms=T0 + 10 * M, created_by="alice", comment="deploy")
    assert s.matchers == (Matcher("alertname", "=", "HighCPU"),
                          Matcher("instance", "=~", "web-.*"))
    web = {"alertname": "HighCPU", "instance": "web-1"}
    assert silences.silencing(web) == []  # pending
    assert s.state(clock.now_ms()) == "pending"
    clock.set(T0 + 10 * M)
    assert silences.silencing(web) == [s.id]
    assert silences.silencing({"alertname": "HighCPU", "instance": "db-1"}) == []
    clock.set(T0 + 30 * M - 1)
    assert silences.silencing(web) == [s.id]
    clock.set(T0 + 30 * M)  # the end is exclusive
    assert silences.silencing(web) == []
    assert silences.list() == []
    assert [x.id for x in silences.list(include_expired=True)] == [s.id]
    conn.close()


def test_persisted_across_stores_and_expired(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    events: list[Mapping[str, Any]] = []
    conn, silences = store(tmp_path / "m.duckdb", clock, events)
    s = silences.create(["severity=warning"], ends_ms=T0 + 60 * M, created_by="alice",
                        comment="noisy")
    conn.close()
    clock.set(T0 + 5 * M)
    conn, again = store(tmp_path / "m.duckdb", clock, events)
    assert [x.to_json(clock.now_ms()) for x in again.list()] == [{
        "id": s.id, "matchers": ['severity="warning"'], "starts_ms": T0, "ends_ms": T0 + 60 * M,
        "created_by": "alice", "comment": "noisy", "created_ms": T0, "state": "active"}]
    assert again.silencing({"severity": "warning"}) == [s.id]
    ended = again.expire(s.id, "bob")
    assert (ended.ends_ms, ended.state(clock.now_ms())) == (T0 + 5 * M, "expired")
    assert again.silencing({"severity": "warning"}) == []
    with pytest.raises(SilenceError, match="has expired already"):
        again.expire(s.id, "bob")
    with pytest.raises(SilenceError, match="no silence with id 'nope'"):
        again.expire("nope", "bob")
    assert isinstance(SilenceError("x"), KeyError)
    conn.close()
    conn, third = store(tmp_path / "m.duckdb", clock)
    assert third.list() == [] and third.get(s.id) == ended
    conn.close()
    assert [(e["event_type"], e["action"], e["user_id"], e["details"]["id"]) for e in events] == [
        ("silence", "create", "alice", s.id), ("silence", "expire", "bob", s.id)]
    assert events[1]["details"]["ends_ms"] == T0 + 5 * M


@pytest.mark.parametrize(("matchers", "kwargs", "message"), [
    ('alertname=~"(', {}, "invalid matcher"),
    ([], {}, "at least one matcher"),
    ('env=~".*"', {}, "match every alert"),
    ('a="b"', {"ends_ms": T0}, "must end after it starts"),
    ('a="b"', {"starts_ms": T0 - 20 * M, "ends_ms": T0 - M}, "must end in the future"),
    ('a="b"', {"created_by": " "}, "created_by"),
])
def test_invalid_silences(tmp_path: Path, matchers: Any, kwargs: dict[str, Any],
                          message: str) -> None:
    conn, silences = store(tmp_path / "m.duckdb", FakeClock(T0))
    args: dict[str, Any] = {"ends_ms": T0 + M, "created_by": "alice", "comment": ""}
    args.update(kwargs)
    with pytest.raises(InvalidSilence, match=message):
        silences.create(matchers, **args)
    assert silences.list(include_expired=True) == []
    conn.close()
