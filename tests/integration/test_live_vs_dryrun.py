"""Live evaluation equals the dry-run on the same history.

A rule set (a recording rule in its own group read by alerts of another, ``for``,
``keep_firing_for``, hysteresis, rates, aggregations) is dry-run over three hours
of a real DuckDB store; then the live scheduler runs the same files over the same
store on a fake clock, tick by tick, writing its recording rule to the store and
its transitions to the history table. The firing intervals rebuilt from the
history equal the dry-run's, alert by alert, to the millisecond.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from monitoring.dryrun.engine import run_dry_run
from monitoring.engine.model import Series, labels_of
from monitoring.engine.store import Store
from monitoring.live.history import TransitionRecord, read_transitions
from monitoring.notify.model import FakeClock
from tests.support.live_engine import HOUR, MIN, T0, LiveCase

RULES = """
group rec every 1m {
  record instance:req:rate2m = sum by (instance) (rate(req_total[2m]))
}

group alerts every 1m {
  alert HighLoad {
    when load > 0.8
    for 3m
  }
  alert BusyAndFlaky {
    when load > 0.7
    recover_when load < 0.4
    keep_firing_for 2m
  }
  alert FastRequests {
    when instance:req:rate2m > 4
    for 1m
  }
  alert FleetLoad {
    when avg(load) > 0.6
  }
}

group slow every 5m {
  alert SlowHigh {
    when max_over_time(load[10m]) > 0.9
    for 10m
  }
}
"""

Span = tuple[tuple[tuple[str, str], ...], int, int, int | None]


def _history(hours: int, seed: int = 7) -> list[Series]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(0, hours * HOUR, 15_000, dtype=np.int64)
    out = []
    for i, inst in enumerate("abcde"):
        wave = 0.5 + 0.45 * np.sin((ts - T0) / (17 + 6 * i) / MIN)
        load = np.clip(wave + rng.normal(0, 0.08, len(ts)), 0, 1.2)
        out.append(Series(labels_of({"__name__": "load", "instance": inst}), ts, load))
        rate = 3 + 2.5 * np.sin((ts - T0) / (23 + 4 * i) / MIN) + rng.normal(0, 0.3, len(ts))
        counter = np.cumsum(np.clip(rate, 0, None) * 15)
        for path in ("/a", "/b"):
            out.append(Series(labels_of({"__name__": "req_total", "instance": inst,
                                         "path": path}), ts, counter / 2))
    return out


def _live_spans(records: list[TransitionRecord]) -> dict[str, list[Span]]:
    """Firing intervals per rule from the stored transitions."""
    active: dict[str, int] = {}
    open_: dict[str, tuple[int, int]] = {}
    out: dict[str, list[Span]] = {}
    labels: dict[str, tuple[tuple[str, str], ...]] = {}
    for t in records:
        labels[t.fingerprint] = tuple(sorted(t.labels.items()))
        if t.from_state == "inactive":
            active[t.fingerprint] = t.at_ms
        if t.to_state == "firing":
            open_[t.fingerprint] = (active[t.fingerprint], t.at_ms)
        if t.from_state == "firing":
            act, start = open_.pop(t.fingerprint)
            out.setdefault(t.rule, []).append((labels[t.fingerprint], act, start, t.at_ms))
    for fp, (act, start) in open_.items():
        rule = dict(labels[fp])["alertname"]
        out.setdefault(rule, []).append((labels[fp], act, start, None))
    return {rule: sorted(spans) for rule, spans in out.items()}


class StopAt(FakeClock):
    """Stops the loop instead of sleeping past ``end``."""

    def __init__(self, start: int, end: int, stop: asyncio.Event) -> None:
        super().__init__(start)
        self.end, self.stop = end, stop

    async def sleep_ms(self, ms: int) -> None:
        if self.now_ms() + ms > self.end:
            self.stop.set()
            return
        await super().sleep_ms(ms)


def test_live_transitions_equal_dry_run_intervals(tmp_path: Path) -> None:
    start, end = T0, T0 + 3 * HOUR - 1
    stop = asyncio.Event()
    case = LiveCase(tmp_path, RULES, clock=StopAt(start, end, stop))
    with Store(case.db) as store:
        store.append_series(_history(3))
    report = run_dry_run(case.paths, str(case.db), start, end)
    expected = {r.name: sorted((tuple(sorted(iv.labels.items())), iv.active_ms, iv.start_ms,
                                iv.end_ms) for iv in r.intervals)
                for r in report.rules if r.kind == "alert" and r.intervals}
    assert all(r.status == "ok" for r in report.rules), [(r.name, r.reason) for r in report.rules]
    # The data must exercise every rule, or the comparison proves little. (How many
    # intervals depends on the groups' phase, a hash of the file path under tmp_path:
    # 37 to 47 in all, at least 3 per rule, over a dozen paths tried.)
    assert set(expected) == {"HighLoad", "BusyAndFlaky", "FastRequests", "FleetLoad",
                             "SlowHigh"}
    assert min(len(v) for v in expected.values()) >= 3
    assert sum(len(v) for v in expected.values()) >= 35

    case.open()
    asyncio.run(case.ev.run(stop))
    assert all(s.health == "ok" for s in case.ev.rules()), case.ev.rules()
    counts = {g.name: g.evaluations for g in case.ev.groups()}
    assert counts == {"rec": 180, "alerts": 180, "slow": 36}
    assert case.conn is not None
    live = _live_spans(read_transitions(case.conn))
    assert live == expected
    case.close()
