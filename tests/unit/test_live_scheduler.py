"""The live evaluator on a fake clock over a real DuckDB file: times, alerts, failures, rules.

Evaluation times are ``T0 + phase + m minutes``; series switch on whole minutes
(tests/support/live_engine.py), so every expected time follows from minutes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.dryrun.ruleset import load_rule_set
from monitoring.engine.model import STALE_NAN, labels_of
from monitoring.live.history import read_transitions
from monitoring.notify.model import FakeClock
from tests.support.live_engine import MIN, T0, LiveCase, minute_wave, square

HIGH = "group g every 1m {\n alert High {\n  when x > 0.5\n  for 2m\n }\n}\n"


@pytest.fixture
def case(tmp_path: Path) -> Iterator[LiveCase]:
    c = LiveCase(tmp_path, HIGH, {"x": ({"instance": "a"}, minute_wave(2, square(10, 30)))})
    c.open()
    yield c
    c.close()


def transitions(case: LiveCase) -> list[tuple[str, str, int]]:
    assert case.conn is not None
    return [(t.from_state, t.to_state, t.at_ms) for t in read_transitions(case.conn)]


# ---------------------------------------------------------------- one evaluation


def test_for_timer_fires_at_the_right_evaluation_and_resolves_once(case: LiveCase) -> None:
    out = case.evaluate(range(9, 33))
    by_minute = dict(zip(range(9, 33), out, strict=True))
    assert by_minute[9] == [] and by_minute[11] == []  # pending: nothing to notify
    first = by_minute[12]
    assert [(a.status, a.starts_at_ms, a.labels["instance"], a.value) for a in first] == [
        ("firing", case.at(12), "a", 1.0)]
    # Resent at every evaluation while firing (as Prometheus resends to Alertmanager).
    assert all([a.status for a in by_minute[m]] == ["firing"] for m in range(12, 30))
    assert [(a.status, a.starts_at_ms, a.ends_at_ms) for a in by_minute[30]] == [
        ("resolved", case.at(12), case.at(30))]
    assert by_minute[31] == [] and by_minute[32] == []
    assert transitions(case) == [("inactive", "pending", case.at(10)),
                                 ("pending", "firing", case.at(12)),
                                 ("firing", "inactive", case.at(30))]


def test_alert_carries_rule_channels_cooldown_escalation_and_annotations(tmp_path: Path
                                                                         ) -> None:
    rules = ('group g every 1m {\n alert High {\n  when x > 0.5\n  severity critical\n'
             '  notify ops\n  cooldown 10m\n  escalate oncall\n'
             '  summary "x is {{ $value }} on {{ $labels.instance }}"\n }\n}\n')
    case = LiveCase(tmp_path, rules, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))})
    case.open()
    (alert,) = case.evaluate([10])[0]
    assert alert.labels == {"alertname": "High", "instance": "a", "severity": "critical"}
    assert alert.annotations == {"summary": "x is 1 on a"}
    assert alert.channels == ("ops",)
    assert alert.cooldown_ms == 10 * MIN
    assert alert.escalation == "oncall"
    assert alert.rule == "High"
    assert alert.starts_at_ms == case.at(10)
    case.close()


def test_views_and_statuses(case: LiveCase) -> None:
    case.evaluate([10])
    (view,) = case.ev.alerts()
    assert (view.state, view.active_at_ms, view.fired_at_ms, view.value) == (
        "pending", case.at(10), None, 1.0)
    assert view.to_json()["fingerprint"] == view.fingerprint
    (status,) = case.ev.rules()
    assert (status.health, status.last_eval_ms, status.pending, status.firing) == (
        "ok", case.at(10), 1, 0)
    case.evaluate([12])
    assert case.ev.alerts()[0].state == "firing"
    assert case.ev.rules()[0].firing == 1


def test_recording_rules_are_written_to_the_store_with_staleness(tmp_path: Path) -> None:
    rules = ("group r every 1m {\n record y = x * 2\n}\n"
             "group g every 1m {\n alert High {\n  when y > 1\n }\n}\n")
    # x only exists from minute 0 to 19 (then the series ends).
    ts, vs = minute_wave(1, square(10, 60))
    keep = ts < T0 + 20 * MIN
    case = LiveCase(tmp_path, rules, {"x": ({"instance": "a"}, (ts[keep], vs[keep]))})
    case.open()
    for m in (10, 11, 25):
        case.evaluate([m], group="r")
        case.evaluate([m], group="g")
    assert case.store is not None
    (series,) = case.store.select([("__name__", "=", "y")], T0, T0 + 2 * 60 * MIN)
    assert series.labels == labels_of({"__name__": "y", "instance": "a"})
    assert series.ts.tolist() == [case.at(10, "r"), case.at(11, "r"), case.at(25, "r")]
    assert series.values[:2].tolist() == [2.0, 2.0]
    assert np.isnan(series.values[2]) and series.values[2].tobytes() == \
        np.float64(STALE_NAN).tobytes()
    assert [a.status for a in case.received[-1]] == ["resolved"]
    case.close()


def test_a_failing_rule_keeps_its_error_and_the_others_run(tmp_path: Path) -> None:
    rules = ("group g every 1m {\n alert Good {\n  when x > 0.5\n }\n"
             "  alert Bad {\n  when x + on(instance) group_left y > 0\n }\n}\n")
    series = {"x": ({"instance": "a"}, minute_wave(1, square(10, 30))),
              # two y series with the same instance: a many-to-many match error in Bad
              "y#1": ({"instance": "a", "k": "1"}, minute_wave(1, square(0, 60))),
              "y#2": ({"instance": "a", "k": "2"}, minute_wave(1, square(0, 60)))}
    case = LiveCase(tmp_path, rules, series)
    audit: list[Mapping[str, Any]] = []
    case.open(audit=audit.append)
    (alerts,) = case.evaluate([10])
    assert [a.name for a in alerts] == ["Good"]
    statuses = {s.name: s for s in case.ev.rules()}
    assert statuses["Good"].health == "ok" and statuses["Good"].last_error is None
    assert statuses["Bad"].health == "err"
    assert "many-to-many matching not allowed" in (statuses["Bad"].last_error or "")
    failed = [e for e in audit if e["action"] == "rule_failed"]
    assert [e["details"]["rule"] for e in failed] == ["Bad"]
    assert [e["action"] for e in audit if e["event_type"] == "alert"] == ["firing"]
    case.close()


# ---------------------------------------------------------------- the loop


class Metrics:
    def __init__(self) -> None:
        self.done: list[tuple[str, bool, float]] = []
        self.missed: list[tuple[str, int]] = []
        self.states: list[dict[str, int]] = []

    def eval_done(self, group: str, seconds: float, failed: bool, lag_seconds: float) -> None:
        assert seconds >= 0
        self.done.append((group, failed, lag_seconds))

    def eval_missed(self, group: str, n: int) -> None:
        self.missed.append((group, n))

    def alerts_by_state(self, counts: Mapping[str, int]) -> None:
        self.states.append(dict(counts))


class StallingClock(FakeClock):
    """A fake clock that jumps ahead once (a stalled process) and stops the loop at ``end``."""

    def __init__(self, start: int, end: int, stop: asyncio.Event) -> None:
        super().__init__(start)
        self.end, self.stop = end, stop
        self.stall: tuple[int, int] | None = None  # (when now passes this, jump by)

    async def sleep_ms(self, ms: int) -> None:
        if self.now_ms() + ms > self.end:
            self.stop.set()
            return
        await super().sleep_ms(ms)
        if self.stall is not None and self.now_ms() >= self.stall[0]:
            self.advance(self.stall[1])
            self.stall = None


def test_loop_runs_aligned_times_and_skips_missed_ticks(tmp_path: Path) -> None:
    stop = asyncio.Event()
    clock = StallingClock(T0 + 5 * MIN + 1, T0 + 40 * MIN, stop)
    case = LiveCase(tmp_path, HIGH, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))},
                    clock=clock)
    metrics = Metrics()
    case.open(metrics=metrics)
    phase = case.phase()
    # At minute 14 the process stalls for 4.5 minutes: ticks 15..18 are skipped, 19 runs late.
    clock.stall = (T0 + phase + 14 * MIN, 4 * MIN + 30_000)
    asyncio.run(case.ev.run(stop))
    group = case.ev.groups()[0]
    times = [t for _, _, t in transitions(case)]
    assert times == [case.at(10), case.at(12), case.at(30)]
    first = 5 if phase >= 1 else 6  # the first tick at or after the start
    expected = [m for m in range(first, 40) if m < 15 or m > 18]
    assert group.evaluations == len(expected)
    assert group.missed == 4
    assert metrics.missed == [(case.key(), 4)]
    # Every evaluation but the late one starts on time; minute 19 starts 30 s late.
    lags = [lag for _, _, lag in metrics.done]
    assert lags.count(0.0) == len(expected) - 1 and 30.0 in lags
    assert metrics.states[-1] == {"pending": 0, "firing": 0, "nodata": 0}
    assert group.last_eval_ms == case.at(39)
    case.close()


def test_groups_due_together_run_recording_groups_first(tmp_path: Path) -> None:
    # The alerting group comes first in the file; both are given the same phase so that
    # they are due at the same instants: the recording group must still run first.
    rules = ("group a every 2m {\n alert High {\n  when y > 1\n }\n}\n"
             "group r every 1m {\n record y = x * 2\n}\n")
    stop = asyncio.Event()
    clock = StallingClock(T0 + 9 * MIN, T0 + 16 * MIN, stop)
    case = LiveCase(tmp_path, rules, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))},
                    clock=clock)
    case.open()
    for g in case.ev.groups():
        g.phase_ms = 0
    order: list[tuple[str, int]] = []
    inner = case.ev.evaluate_group

    async def spy(key: str, at_ms: int) -> Any:
        order.append((key.split(";")[1], (at_ms - T0) // MIN))
        return await inner(key, at_ms)

    case.ev.evaluate_group = spy  # type: ignore[method-assign,assignment]
    asyncio.run(case.ev.run(stop))
    assert order == [("r", 9), ("r", 10), ("a", 10), ("r", 11), ("r", 12), ("a", 12),
                     ("r", 13), ("r", 14), ("a", 14), ("r", 15), ("r", 16), ("a", 16)]
    # So the alert fired at minute 10, on the sample recorded at minute 10.
    assert transitions(case)[0] == ("inactive", "firing", T0 + 10 * MIN)
    case.close()


def test_stop_ends_the_loop_while_sleeping(case: LiveCase) -> None:
    async def go() -> None:
        stop = asyncio.Event()
        real_clock_sleep = asyncio.get_running_loop().create_future()
        case.clock.sleep_ms = lambda ms: real_clock_sleep  # type: ignore[method-assign,assignment,return-value]
        task = asyncio.create_task(case.ev.run(stop))
        await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 5)
    asyncio.run(go())


# ---------------------------------------------------------------- rule changes


def test_replace_rules_keeps_unchanged_rules_and_resolves_removed_ones(tmp_path: Path
                                                                       ) -> None:
    two = HIGH.replace("}\n}\n", "}\n alert Other {\n  when x > 0.5\n }\n}\n")
    case = LiveCase(tmp_path, two, {"x": ({"instance": "a"}, minute_wave(1, square(10, 30)))})
    case.open()
    case.evaluate([10, 11, 12])
    assert {v.rule: v.state for v in case.ev.alerts()} == {"High": "firing", "Other": "firing"}
    # Other is gone: resolved once, with the next evaluation; High is unchanged: kept.
    Path(case.paths[0]).write_text(HIGH, encoding="utf-8")
    case.ev.replace_rules(load_rule_set(case.paths))
    (out,) = case.evaluate([13])
    assert sorted((a.name, a.status) for a in out) == [("High", "firing"), ("Other", "resolved")]
    assert [(v.rule, v.active_at_ms) for v in case.ev.alerts()] == [("High", case.at(10))]
    assert case.ev.rules()[0].health == "ok"
    # A changed High starts afresh (its old alert is resolved, the new one is pending).
    Path(case.paths[0]).write_text(HIGH.replace("x > 0.5", "x > 0.6"), encoding="utf-8")
    case.ev.replace_rules(load_rule_set(case.paths))
    (out,) = case.evaluate([14])
    assert [(a.name, a.status) for a in out] == [("High", "resolved")]
    assert [(v.state, v.active_at_ms) for v in case.ev.alerts()] == [("pending", case.at(14))]
    case.close()
