"""Parts of the dry-run that stand alone: schedule, value side, notifications, diff, overlay."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.dryrun.compare import diff_intervals, match_rules
from monitoring.dryrun.notify import DEFAULT_CHANNEL, notifications, rule_channels
from monitoring.dryrun.overlay import OverlaySource
from monitoring.dryrun.report import Interval, RuleReport
from monitoring.dryrun.schedule import Schedule, group_phase_ms
from monitoring.dryrun.values import downsample, reduce_buckets, value_of
from monitoring.dsl.compiler import compile_expression
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import Series, labels_of


def node(text: str):  # type: ignore[no-untyped-def]
    n, diags = compile_expression(text)
    assert n is not None, diags
    return n


# ---------------------------------------------------------------- schedule


def test_group_phase_is_prometheus_hash_mod_interval() -> None:
    # Checked against a real Prometheus in tests/integration/test_dryrun_cli.py; here:
    # the phase is below the interval and depends on name and file.
    a = group_phase_ms("api", "rules/api.rules", 60_000)
    assert 0 <= a < 60_000
    assert a != group_phase_ms("api", "rules/other.rules", 60_000)
    assert group_phase_ms("api", "rules/api.rules", 60_000) == a


@given(st.integers(-10**6, 10**6), st.integers(0, 10**6), st.integers(1, 10**5),
       st.integers(0, 10**5 - 1))
def test_schedule_times_are_the_slots_inside_the_range(start: int, length: int, interval: int,
                                                       phase_seed: int) -> None:
    phase = phase_seed % interval
    end = start + length
    s = Schedule.within(start, end, interval, phase)
    times = s.times()
    assert len(times) == s.count
    expected = [t for t in range(start, end + 1) if (t - phase) % interval == 0] \
        if length < 5000 else None
    if expected is not None:
        assert times.tolist() == expected
    if s.count:
        assert times[0] >= start and times[-1] <= end
        assert times[0] - interval < start and times[-1] + interval > end
        assert ((times - phase) % interval == 0).all()


def test_schedule_chunks_cover_all_steps_in_order() -> None:
    s = Schedule.within(0, 10 * 60_000, 60_000, 0)
    assert s.count == 11
    assert list(s.chunks(4)) == [(0, 4), (4, 8), (8, 11)]
    assert np.concatenate([s.times(lo, hi) for lo, hi in s.chunks(4)]).tolist() == \
        s.times().tolist()


# ---------------------------------------------------------------- value side


@pytest.mark.parametrize(("expr", "value", "threshold", "op"), [
    ("avg_over_time(x[5m]) > 5%", "avg_over_time(x[5m])", 0.05, ">"),
    ("5 < x", "x", 5.0, ">"),
    ("x <= 3", "x", 3.0, "<="),
    ("x > 1 unless on (job) y < 1", "x", 1.0, ">"),
    ("x > y", "x > y", None, None),
    ("x > bool 1", "x > bool 1", None, None),
    ("x or y", "x or y", None, None),
])
def test_value_of_finds_the_compared_side(expr: str, value: str, threshold: float | None,
                                          op: str | None) -> None:
    spec = value_of(node(expr))
    assert spec.node == node(value)
    assert spec.threshold == threshold
    assert spec.op == op


def test_downsample_keeps_the_alarming_extreme_per_bucket() -> None:
    values = np.array([[1.0, 5.0, 2.0, np.nan, np.nan, 0.5, 7.0]])
    out, size = downsample(values, 3, low_is_bad=False)
    assert size == 3
    assert out.tolist()[0][:2] == [5.0, 0.5] and out[0, 2] == 7.0
    low, _ = downsample(values, 3, low_is_bad=True)
    assert low.tolist()[0] == [1.0, 0.5, 7.0]
    empty = reduce_buckets(np.array([[np.nan, np.nan, 1.0]]), 2, low_is_bad=False)
    assert math.isnan(empty[0, 0]) and empty[0, 1] == 1.0
    same, one = downsample(values, 10, low_is_bad=False)
    assert one == 1 and same is values


# ---------------------------------------------------------------- notifications


def iv(start: int, end: int | None, **labels: str) -> Interval:
    stop = end if end is not None else start
    return Interval(dict(labels or {"alertname": "A"}), start, start, end, stop - start, 1.0, 1.0)


def test_cooldown_suppresses_refiring_of_the_same_alert_and_its_resolution() -> None:
    minute = 60_000
    ivs = [iv(0, 2 * minute), iv(3 * minute, 4 * minute), iv(6 * minute, 7 * minute)]
    out = notifications(ivs, ["email", "slack"], cooldown_ms=5 * minute)
    kinds = [(n.time_ms // minute, n.channel, n.kind) for n in out.notifications]
    # The second interval starts 3m after the first notification: suppressed with its
    # resolution. The third starts 6m after: sent.
    assert kinds == [(0, "email", "firing"), (0, "slack", "firing"),
                     (2, "email", "resolved"), (2, "slack", "resolved"),
                     (6, "email", "firing"), (6, "slack", "firing"),
                     (7, "email", "resolved"), (7, "slack", "resolved")]
    assert out.suppressed == 1


def test_cooldown_is_per_alert_and_zero_means_none() -> None:
    ivs = [iv(0, 10, alertname="A", instance="a"), iv(5, 20, alertname="A", instance="b"),
           iv(30, None, alertname="A", instance="a")]
    out = notifications(ivs, ["c"], cooldown_ms=100)
    assert [(n.time_ms, n.kind, n.labels["instance"]) for n in out.notifications] == [
        (0, "firing", "a"), (5, "firing", "b"), (10, "resolved", "a"), (20, "resolved", "b")]
    assert out.suppressed == 1
    none = notifications(ivs, ["c"], cooldown_ms=0)
    assert none.suppressed == 0 and len(none.notifications) == 5  # the open one: no resolution


def test_rule_channels_default_to_the_configured_ones() -> None:
    assert rule_channels(["email"], ["email", "slack"]) == ("email",)
    assert rule_channels([], ["email", "slack"]) == ("email", "slack")
    assert rule_channels([], []) == (DEFAULT_CHANNEL,)


# ---------------------------------------------------------------- compare


def test_diff_intervals_new_gone_changed() -> None:
    old = [iv(0, 10), iv(20, 30), iv(50, 60), iv(100, None)]
    new = [iv(0, 10), iv(22, 30), iv(70, 80), iv(100, None)]
    changes = diff_intervals(old, new)
    assert [(c.kind, c.old.start_ms if c.old else None, c.new.start_ms if c.new else None)
            for c in changes] == [("changed", 20, 22), ("gone", 50, None), ("new", None, 70)]


def test_diff_intervals_is_per_alert_identity() -> None:
    old = [iv(0, 10, alertname="A", instance="a")]
    new = [iv(0, 10, alertname="A", instance="b")]
    assert [c.kind for c in diff_intervals(old, new)] == ["gone", "new"]


def report(name: str, group: str = "g") -> RuleReport:
    return RuleReport(name, group, "f", "alert", "x > 1", 60_000)


def test_match_rules_by_key_then_by_unique_name() -> None:
    old = [report("A"), report("B", "old-group"), report("Gone")]
    new = [report("A"), report("B", "new-group"), report("Added")]
    pairs = [(o.key if o else None, n.key if n else None) for o, n in match_rules(old, new)]
    assert pairs == [("g/A", "g/A"), ("old-group/B", "new-group/B"), (None, "g/Added"),
                     ("g/Gone", None)]


# ---------------------------------------------------------------- overlay


def test_overlay_hides_stored_series_of_recorded_names() -> None:
    base = MemorySource([
        Series(labels_of({"__name__": "job:rate", "job": "a"}), np.array([0]), np.array([1.0])),
        Series(labels_of({"__name__": "raw", "job": "a"}), np.array([0]), np.array([2.0])),
    ])
    overlay = OverlaySource(base, ["job:rate"])
    overlay.add(Series(labels_of({"__name__": "job:rate", "job": "b"}), np.array([0]),
                       np.array([3.0])))
    got = overlay.select([("__name__", "=", "job:rate")], 0, 10)
    assert [s.labels for s in got] == [labels_of({"__name__": "job:rate", "job": "b"})]
    everything = overlay.select([("job", "=~", ".+")], 0, 10)
    assert sorted(dict(s.labels)["__name__"] for s in everything) == ["job:rate", "raw"]
    assert overlay.series_matching([("__name__", "=", "raw")]) == [
        labels_of({"__name__": "raw", "job": "a"})]
    assert overlay.series_matching([("__name__", "=", "job:rate")]) == [
        labels_of({"__name__": "job:rate", "job": "b"})]
