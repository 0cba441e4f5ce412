"""The live demo feed (monitoring.live.demo_feed): one continuous timeline handed out in slices."""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

import pytest

from monitoring.demo import HOUR_MS, MINUTE_MS, DemoError, family_names
from monitoring.engine.store import Store
from monitoring.live.demo_feed import (
    INCIDENT_SCRIPT,
    SEGMENT_MS,
    SURGE_FACTOR,
    DemoFeed,
    ScriptedIncident,
)

START = 1_767_225_600_000 + 10 * HOUR_MS  # 10:00 UTC


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def test_slices_join_into_the_timeline_one_call_gives() -> None:
    whole = DemoFeed(START, seed=3).samples_until(START + 40 * MINUTE_MS)
    feed = DemoFeed(START, seed=3)
    sliced = []
    now = START
    steps = (1, 7_000, 15_000, 60_000, 61_001, 300_000)  # uneven steps
    for i in range(200):
        now = min(now + steps[i % len(steps)], START + 40 * MINUTE_MS)
        sliced.extend(feed.samples_until(now))
    sliced.extend(feed.samples_until(START + 40 * MINUTE_MS))
    assert [(_key(k), t, v) for k, t, v in sliced] == [(_key(k), t, v) for k, t, v in whole]
    assert all(START <= t <= START + 40 * MINUTE_MS for _, t, _ in whole)
    assert feed.samples_until(START + 40 * MINUTE_MS) == []  # nothing twice
    assert feed.samples_until(START) == []  # time going back gives nothing


def test_every_metric_family_of_the_demo_is_fed() -> None:
    feed = DemoFeed(START)
    names = {labels["__name__"] for labels, _, _ in feed.samples_until(START + 5 * MINUTE_MS)}
    assert names == set(family_names()) == set(feed.metric_names())


def _series(samples: list[tuple[dict[str, str], int, float]]
            ) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    out: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = defaultdict(list)
    for labels, ts, value in samples:
        out[_key(labels)].append((ts, value))
    return out


def test_counters_continue_across_calls_and_into_the_next_segment() -> None:
    feed = DemoFeed(START, history_hours=1, script=())
    samples = []
    now = START
    while now < START + SEGMENT_MS + 2 * HOUR_MS:  # past the first generated segment
        now += 10 * MINUTE_MS
        samples.extend(feed.samples_until(now))
    counters = {k: v for k, v in _series(samples).items()
                if dict(k)["__name__"] == "http_requests_total"}
    assert len(counters) == 5 * 9  # 5 instances x 3 methods x 3 codes
    boundary = START + SEGMENT_MS
    for key, points in counters.items():
        times = [t for t, _ in points]
        assert times == sorted(set(times)), key
        before = [v for t, v in points if t < boundary]
        after = [v for t, v in points if t >= boundary]
        assert before and after
        # No reset at the segment boundary: the next segment starts from the last value.
        assert after[0] >= before[-1], key
        drops = sum(1 for a, b in itertools.pairwise(points) if b[1] < a[1])
        assert drops <= 3, key  # only the generator's rare restarts (a deploy every ~2 days)


def test_backfill_writes_the_history_before_the_start(tmp_path: Path) -> None:
    feed = DemoFeed(START, history_hours=2)
    with Store(tmp_path / "m.duckdb") as store:
        written = feed.backfill(store, 1.5)
        first, last = store.time_range() or (0, 0)
        assert written > 0
        assert START - 90 * MINUTE_MS <= first < START - 89 * MINUTE_MS
        assert START - 60_000 < last < START
        live = feed.samples_until(START + 2 * MINUTE_MS)
        assert min(t for _, t, _ in live) >= START
        # A counter continues from the backfill into the live samples without a reset.
        sel = [("__name__", "=", "http_requests_total"), ("instance", "=", "web-1:8080"),
               ("method", "=", "GET"), ("code", "=", "200")]
        stored = store.select(sel, START - HOUR_MS, START)[0]
        fed = [v for labels, _, v in live if _key(labels) == tuple(stored.labels)]
        assert fed and fed[0] >= float(stored.values[-1])


def test_backfill_limits() -> None:
    feed = DemoFeed(START, history_hours=1)
    with pytest.raises(DemoError, match="between 0 and 1"):
        feed.backfill(None, 2)  # type: ignore[arg-type]  # checked before the store is used
    feed.samples_until(START + SEGMENT_MS + MINUTE_MS)
    with pytest.raises(DemoError, match="before the live feed"):
        feed.backfill(None, 1)  # type: ignore[arg-type]


def test_incidents_are_at_fixed_offsets_from_the_start() -> None:
    feed = DemoFeed(START)
    by_kind = {i.kind: i for i in feed.incidents}
    spike = by_kind["error_spike"]
    assert spike.start_ms == START and spike.target == "api-1:8080"
    assert len(feed.incidents) == len(INCIDENT_SCRIPT)
    assert by_kind["cpu_saturation"].start_ms == START - 40 * MINUTE_MS


def test_traffic_surge_multiplies_the_request_rate() -> None:
    surge = ScriptedIncident("traffic_surge", "web-2:8080", 20, 20, ())
    plain = _series(DemoFeed(START, script=()).samples_until(START + HOUR_MS))
    surged = _series(DemoFeed(START, script=[surge]).samples_until(START + HOUR_MS))
    key = next(k for k in plain if dict(k)["__name__"] == "http_requests_total"
               and dict(k)["instance"] == "web-2:8080" and dict(k)["code"] == "200"
               and dict(k)["method"] == "GET")

    def growth(points: list[tuple[int, float]], lo: int, hi: int) -> float:
        inside = [v for t, v in points if START + lo * MINUTE_MS <= t < START + hi * MINUTE_MS]
        return inside[-1] - inside[0]

    before, during = growth(plain[key], 22, 38), growth(surged[key], 22, 38)
    assert during == pytest.approx(before * SURGE_FACTOR, rel=0.02)
    assert growth(plain[key], 0, 19) == growth(surged[key], 0, 19)  # unchanged before
    other = next(k for k in plain if dict(k)["__name__"] == "http_requests_total"
                 and dict(k)["instance"] == "web-1:8080")
    assert plain[other] == surged[other]
