"""The seed's four alert types, end to end: DSL and YAML rules backtested on a real store.

One DuckDB store holds three instances' metrics with planted behaviour (an
error spike, a disk that fills steadily for an hour, CPU and memory pressure
that overlap only partly, a latency spike). Each family is written once in the
DSL and once in the seed's YAML form; both are dry-run over the same history
and must give the same alert intervals, at the places the data was planted.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from monitoring.dryrun.engine import run_dry_run
from monitoring.dryrun.report import DryRunReport, RuleReport
from monitoring.engine.model import labels_of
from monitoring.engine.store import Store

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPAN = 8 * HOUR
SCRAPE = 15_000
INSTANCES = ("a", "b", "c")


def _planted(ts: np.ndarray, lo_h: float, hi_h: float) -> np.ndarray:
    return (ts >= T0 + lo_h * HOUR) & (ts < T0 + hi_h * HOUR)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("families") / "history.duckdb"
    rng = np.random.default_rng(11)
    ts = np.arange(T0, T0 + SPAN, SCRAPE, dtype=np.int64) + 2_000
    series: list[tuple[dict[str, str], np.ndarray]] = []
    for inst in INSTANCES:
        err = 1.0 + rng.normal(0, 0.1, len(ts))
        if inst == "a":
            err[_planted(ts, 2, 2.5)] = 8.0  # error spike: 2h to 2h30
        disk = 0.5 + rng.normal(0, 0.002, len(ts))
        if inst == "b":
            ramp = _planted(ts, 3, 4)  # fills steadily from 3h to 4h, then stays
            disk[ramp] += np.linspace(0, 0.3, int(ramp.sum()))
            disk[ts >= T0 + 4 * HOUR] += 0.3
        cpu = 0.4 + rng.normal(0, 0.02, len(ts))
        mem = 0.5 + rng.normal(0, 0.02, len(ts))
        if inst == "c":
            cpu[_planted(ts, 5, 6)] = 0.95  # CPU high 5h-6h, memory high 5h30-6h30:
            mem[_planted(ts, 5.5, 6.5)] = 0.9  # both only 5h30-6h
        latency = 0.2 + rng.normal(0, 0.01, len(ts))
        if inst == "b":
            latency[_planted(ts, 7, 7 + 1 / 30)] = 0.6  # a two-minute latency spike at 7h
        series += [({"__name__": "latency_seconds", "instance": inst}, latency),
                   ({"__name__": "error_rate", "instance": inst}, err),
                   ({"__name__": "disk_used_ratio", "instance": inst}, disk),
                   ({"__name__": "cpu_usage_ratio", "instance": inst}, cpu),
                   ({"__name__": "memory_usage_ratio", "instance": inst}, mem)]
    with Store(db) as s:
        s.append_arrays([labels_of(lab) for lab, _ in series],
                        np.repeat(np.arange(len(series)), len(ts)),
                        np.tile(ts, len(series)), np.concatenate([v for _, v in series]))
    return db


DSL = """
group families every 1m {
  alert Threshold {
    when error_rate > 5
    notify console
  }
  alert ThresholdHysteresis {
    when error_rate > 5
    recover_when error_rate < 0.5
    notify console
  }
  alert Trend {
    when trend(disk_used_ratio[30m], confidence=0.99, min_change=0.05) == increasing
    notify console
  }
  alert CompositeAnd {
    when (cpu_usage_ratio > 90%) and (memory_usage_ratio > 80%)
    notify console
  }
  alert CompositeOr {
    when (cpu_usage_ratio > 90%) or (memory_usage_ratio > 80%)
    notify console
  }
  alert Weighted {
    when weighted(0.6: cpu_usage_ratio > 0.9, 0.4: memory_usage_ratio > 0.8) >= 0.5
    notify console
  }
  alert AnomalyEnsemble {
    # Plain noise breaks a 2-hour window's range every few hours (score just over 3):
    # 5 asks for a value beyond it by two thirds of its half-width. The ensemble flags
    # the sample that breaks the range; evaluated every minute over 15 s samples, the
    # subquery looks at every sample since the last evaluation.
    when max_over_time(anomaly(latency_seconds[2h], method="ensemble")[1m:15s]) > 5
    notify console
  }
  alert AnomalyMad {
    when anomaly(latency_seconds[1h], method="mad") > 6
    notify console
  }
  alert Nested {
    when weighted(0.5: ((cpu_usage_ratio > 90%) and (memory_usage_ratio > 80%)),
                  0.5: error_rate > 5) >= 0.5
    notify console
  }
}
"""

YAML = """
- name: Threshold
  condition: {type: threshold, metric: error_rate, operator: ">", value: 5}
  channels: [console]
- name: ThresholdHysteresis
  condition: {type: threshold, metric: error_rate, operator: ">", value: 5,
              recovery_value: 0.5}
  channels: [console]
- name: Trend
  condition: {type: trend, metric: disk_used_ratio, direction: increasing, window: 30m,
              confidence: 0.99, min_change: 0.05}
  channels: [console]
- name: CompositeAnd
  condition:
    type: composite
    operator: AND
    conditions:
      - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: "90%"}
      - {type: threshold, metric: memory_usage_ratio, operator: ">", value: "80%"}
  channels: [console]
- name: CompositeOr
  condition:
    type: composite
    operator: OR
    conditions:
      - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: "90%"}
      - {type: threshold, metric: memory_usage_ratio, operator: ">", value: "80%"}
  channels: [console]
- name: Weighted
  condition:
    type: composite
    weights: [0.6, 0.4]
    threshold: 0.5
    conditions:
      - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: 0.9}
      - {type: threshold, metric: memory_usage_ratio, operator: ">", value: 0.8}
  channels: [console]
- name: AnomalyEnsemble
  condition:
    type: expr
    expr: max_over_time(anomaly(latency_seconds[2h], method="ensemble")[1m:15s]) > 5
  channels: [console]
- name: AnomalyMad
  condition: {type: anomaly, metric: latency_seconds, window: 1h, method: mad, threshold: 6}
  channels: [console]
- name: Nested
  condition:
    type: composite
    weights: [0.5, 0.5]
    threshold: 0.5
    conditions:
      - type: composite
        operator: AND
        conditions:
          - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: "90%"}
          - {type: threshold, metric: memory_usage_ratio, operator: ">", value: "80%"}
      - {type: threshold, metric: error_rate, operator: ">", value: 5}
  channels: [console]
"""


@pytest.fixture(scope="module")
def reports(store: Path, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, DryRunReport]:
    folder = tmp_path_factory.mktemp("rules")
    (folder / "families.rules").write_text(textwrap.dedent(DSL), encoding="utf-8")
    (folder / "alert_rules.yaml").write_text(textwrap.dedent(YAML), encoding="utf-8")
    return {kind: run_dry_run([str(folder / name)], str(store))
            for kind, name in (("dsl", "families.rules"), ("yaml", "alert_rules.yaml"))}


def _rule(report: DryRunReport, name: str) -> RuleReport:
    (rule,) = [r for r in report.rules if r.name == name]
    assert rule.status == "ok", (name, rule.reason)
    return rule


def _spans(rule: RuleReport) -> list[tuple[str, float, float | None]]:
    """(instance, start hour, end hour) of every firing interval."""
    return sorted((iv.labels.get("instance", ""), (iv.start_ms - T0) / HOUR,
                   None if iv.end_ms is None else (iv.end_ms - T0) / HOUR)
                  for iv in rule.intervals)


NAMES = ("Threshold", "ThresholdHysteresis", "Trend", "CompositeAnd", "CompositeOr", "Weighted",
         "Nested", "AnomalyEnsemble", "AnomalyMad")


@pytest.mark.parametrize("name", NAMES)
def test_dsl_and_yaml_forms_fire_alike(reports: dict[str, DryRunReport], name: str) -> None:
    """The same intervals, up to one evaluation: each group evaluates at its own offset
    within the minute (Prometheus spreads groups by a hash of their name and file)."""
    # From 30 minutes on, when every window is full (see the trend test below).
    dsl, yaml = ([s for s in _spans(_rule(reports[kind], name)) if s[1] >= 0.5]
                 for kind in ("dsl", "yaml"))
    assert dsl and [s[0] for s in dsl] == [s[0] for s in yaml]
    step_h = 1 / 60
    for (_, a_start, a_end), (_, b_start, b_end) in zip(dsl, yaml, strict=True):
        assert abs(a_start - b_start) <= step_h
        assert (a_end is None) == (b_end is None)
        assert a_end is None or b_end is None or abs(a_end - b_end) <= step_h


def test_threshold_fires_on_the_spike_only(reports: dict[str, DryRunReport]) -> None:
    (span,) = _spans(_rule(reports["dsl"], "Threshold"))
    assert span[0] == "a" and 2.0 <= span[1] <= 2.05 and span[2] is not None
    assert 2.5 <= span[2] <= 2.55


def test_hysteresis_keeps_firing_until_the_recovery_level(
        reports: dict[str, DryRunReport]) -> None:
    plain = _rule(reports["dsl"], "Threshold")
    held = _rule(reports["dsl"], "ThresholdHysteresis")
    # Back at about 1 after the spike: below 5 but never below 0.5, so it never recovers.
    assert len(held.intervals) == 1 and held.intervals[0].end_ms is None
    assert held.intervals[0].start_ms == plain.intervals[0].start_ms


def test_trend_fires_while_the_disk_fills(reports: dict[str, DryRunReport]) -> None:
    # The fitted change over 30 minutes must reach 0.05: noise on a flat disk does not
    # once the window is full (before, a slope from a few samples is scaled to 30 minutes).
    (span,) = [s for s in _spans(_rule(reports["dsl"], "Trend")) if s[1] >= 0.5]
    assert span[0] == "b" and 3.0 < span[1] < 3.5
    # It ends once the window no longer holds enough of the ramp (by 4h30 at the latest).
    assert span[2] is not None and 4.0 < span[2] <= 4.5


def test_composites_combine_conditions_per_instance(reports: dict[str, DryRunReport]) -> None:
    both = _spans(_rule(reports["dsl"], "CompositeAnd"))
    either = _spans(_rule(reports["dsl"], "CompositeOr"))
    weighted = _spans(_rule(reports["dsl"], "Weighted"))
    assert [s[0] for s in both] == ["c"] and 5.5 <= both[0][1] <= 5.55
    assert [s[0] for s in either] == ["c"] and 5.0 <= either[0][1] <= 5.05
    assert either[0][2] is not None and 6.5 <= either[0][2] <= 6.55
    # 0.6 for CPU alone reaches 0.5; 0.4 for memory alone does not: CPU's hour.
    assert [s[0] for s in weighted] == ["c"]
    assert 5.0 <= weighted[0][1] <= 5.05 and weighted[0][2] is not None
    assert 6.0 <= weighted[0][2] <= 6.05


def test_composites_nest(reports: dict[str, DryRunReport]) -> None:
    spans = _spans(_rule(reports["dsl"], "Nested"))
    assert [s[0] for s in spans] == ["a", "c"]
    assert 2.0 <= spans[0][1] <= 2.05 and 5.5 <= spans[1][1] <= 5.55


@pytest.mark.parametrize("name", ["AnomalyEnsemble", "AnomalyMad"])
def test_anomaly_flags_the_latency_spike_only(reports: dict[str, DryRunReport],
                                              name: str) -> None:
    spans = [s for s in _spans(_rule(reports["dsl"], name)) if s[1] >= 0.5]
    assert spans and all(s[0] == "b" and 7.0 <= s[1] <= 7.05 for s in spans), spans
