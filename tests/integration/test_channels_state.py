from __future__ import annotations

from pathlib import Path

import duckdb

from monitoring.notify.channels.state import DuckChannelState
from monitoring.notify.model import FakeClock


def test_state_survives_a_reopen_and_is_per_channel(tmp_path: Path) -> None:
    db = tmp_path / "monitoring.duckdb"
    clock = FakeClock()
    with duckdb.connect(str(db)) as conn:
        state = DuckChannelState(conn.cursor(), clock)
        state.put("slack-ops", "group-1", "1767225600.000100")
        state.put("slack-ops", "group-1", "1767225600.000200")  # replaced
        state.put("slack-dev", "group-1", "other")
        assert state.get("slack-ops", "group-1") == "1767225600.000200"
        assert state.get("slack-ops", "group-2") is None
    with duckdb.connect(str(db)) as conn:
        state = DuckChannelState(conn.cursor(), clock)  # CREATE TABLE IF NOT EXISTS: no-op
        assert state.get("slack-ops", "group-1") == "1767225600.000200"
        assert state.get("slack-dev", "group-1") == "other"
        assert conn.execute("SELECT count(*) FROM notify_channel_state").fetchone() == (2,)


def test_prune_forgets_entries_not_written_since(tmp_path: Path) -> None:
    clock = FakeClock(1_000_000)
    with duckdb.connect(str(tmp_path / "m.duckdb")) as conn:
        state = DuckChannelState(conn, clock)
        state.put("slack", "old", "1")
        clock.advance(60_000)
        state.put("slack", "new", "2")
        assert state.prune(1_000_000 + 30_000) == 1
        assert (state.get("slack", "old"), state.get("slack", "new")) == (None, "2")
        assert state.prune(0) == 0
