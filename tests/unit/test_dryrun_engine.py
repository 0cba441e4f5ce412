"""The dry-run engine on real DuckDB stores, checked against hand-computed intervals.

Sample times are whole 15 s steps from an hour boundary and the square waves
switch on whole minutes, so at every evaluation ``T0 + phase + m minutes``
(phase < 1 minute, Prometheus's group offset) the newest sample is the one of
minute ``m``: the expected intervals follow from the minutes alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitoring.dryrun.engine import DryRunOptions, run_dry_run
from monitoring.dryrun.report import DryRunReport, RuleReport
from monitoring.dryrun.schedule import group_phase_ms
from monitoring.engine.model import Series, labels_of
from monitoring.engine.store import Store

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR


def minute_wave(hours: int, value: Callable[[np.ndarray], np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """15 s samples from T0; ``value`` gets each sample's minute-of-hour."""
    ts = T0 + np.arange(0, hours * HOUR, 15_000, dtype=np.int64)
    minute = ((ts - T0) // MIN) % 60
    return ts, value(minute).astype(np.float64)


def square(lo: int, hi: int) -> Callable[[np.ndarray], np.ndarray]:
    """1 for minutes-of-hour in ``[lo, hi)``, else 0."""
    return lambda m: ((m >= lo) & (m < hi)).astype(np.float64)


def write_store(path: Path, series: dict[str, tuple[dict[str, str], tuple[np.ndarray, np.ndarray]]]
                ) -> None:
    with Store(path) as store:
        store.append_series([Series(labels_of({"__name__": name.split("#")[0], **labels}), ts, vs)
                             for name, (labels, (ts, vs)) in series.items()])


class Case:
    """A rule file and a store in a temporary folder."""

    def __init__(self, tmp: Path, rules: str, series: dict[str, Any]) -> None:
        self.rules = tmp / "r.rules"
        self.rules.write_text(rules, encoding="utf-8")
        self.db = tmp / "s.duckdb"
        write_store(self.db, series)

    def phase(self, group: str = "g", interval: int = MIN) -> int:
        return group_phase_ms(group, str(self.rules), interval)

    def run(self, start: int | None = None, end: int | None = None, **options: Any
            ) -> DryRunReport:
        return run_dry_run([str(self.rules)], str(self.db), start, end,
                           options=DryRunOptions(**options))


def rule(report: DryRunReport, name: str) -> RuleReport:
    return next(r for r in report.rules if r.name == name)


def spans(r: RuleReport) -> list[tuple[int, int, int | None]]:
    """(active, start, end) of each interval in minutes after T0 + phase."""
    return [(iv.active_ms, iv.start_ms, iv.end_ms) for iv in r.intervals]


def at(phase: int, *minutes: int | None) -> tuple[int | None, ...]:
    return tuple(None if m is None else T0 + phase + m * MIN for m in minutes)


def x_series(value: Callable[[np.ndarray], np.ndarray], hours: int = 3,
             **labels: str) -> dict[str, Any]:
    return {"x": ({"instance": "a", **labels}, minute_wave(hours, value))}


# ---------------------------------------------------------------- state machine figures


def test_square_wave_with_for_gives_the_known_intervals(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n alert High {\n  when x > 0.5\n  for 2m\n }\n}\n",
                x_series(square(10, 30)))
    p = case.phase()
    r = rule(case.run(), "High")
    assert r.status == "ok"
    assert spans(r) == [at(p, 60 * h + 10, 60 * h + 12, 60 * h + 30) for h in range(3)]
    assert r.firings == 3
    assert r.firing_ms == 3 * 18 * MIN
    assert r.median_firing_ms == 18 * MIN
    assert r.first_firing_ms == T0 + p + 12 * MIN
    assert r.last_firing_ms == T0 + p + 132 * MIN
    assert [iv.labels for iv in r.intervals] == [{"alertname": "High", "instance": "a"}] * 3
    assert all(iv.peak == 1.0 and iv.start_value == 1.0 for iv in r.intervals)


def test_for_zero_fires_at_the_first_evaluation(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n alert High {\n  when x > 0.5\n }\n}\n",
                x_series(square(10, 30), hours=1))
    p = case.phase()
    assert spans(rule(case.run(), "High")) == [at(p, 10, 10, 30)]


def test_keep_firing_for_extends_the_interval(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n alert High {\n  when x > 0.5\n  for 2m\n"
                "  keep_firing_for 5m\n }\n}\n", x_series(square(10, 30), hours=1))
    p = case.phase()
    # The condition is gone from minute 30; firing continues while t - 30m < 5m.
    assert spans(rule(case.run(), "High")) == [at(p, 10, 12, 35)]


def test_keep_firing_for_bridges_a_short_gap(tmp_path: Path) -> None:
    gap = lambda m: (((m >= 10) & (m < 20)) | ((m >= 22) & (m < 30))).astype(float)  # noqa: E731
    case = Case(tmp_path, "group g every 1m {\n alert High {\n  when x > 0.5\n"
                "  keep_firing_for 5m\n }\n}\n", x_series(gap, hours=1))
    p = case.phase()
    assert spans(rule(case.run(), "High")) == [at(p, 10, 10, 35)]


def test_recovery_condition_holds_the_alert_until_it_recovers(tmp_path: Path) -> None:
    triangle = lambda m: np.where(m <= 30, m / 30, (60 - m) / 30)  # noqa: E731
    text = ("group g every 1m {\n alert Hyst {\n  when x > 0.81\n  recover_when x < 0.19\n }\n"
            " alert Plain {\n  when x > 0.81\n }\n}\n")
    case = Case(tmp_path, text, x_series(triangle, hours=1))
    p = case.phase()
    report = case.run()
    # x > 0.81 for minutes 25..35; x < 0.19 first at minute 55.
    assert spans(rule(report, "Plain")) == [at(p, 25, 25, 36)]
    assert spans(rule(report, "Hyst")) == [at(p, 25, 25, 55)]


def test_cooldown_suppresses_notifications(tmp_path: Path) -> None:
    text = ("group g every 1m {\n alert Blink {\n  when x > 0.5\n  notify email, slack\n"
            "  cooldown 12m\n  summary \"x is {{ $value }}\"\n }\n}\n")
    case = Case(tmp_path, text, x_series(lambda m: (m % 5 < 2).astype(float), hours=1))
    p = case.phase()
    r = rule(case.run(), "Blink")
    assert r.firings == 12  # minutes 0, 5, ..., 55
    firing = [(n.time_ms, n.channel) for n in r.notifications if n.kind == "firing"]
    assert firing == [(t, ch) for t in at(p, 0, 15, 30, 45) for ch in ("email", "slack")]
    resolved = [n.time_ms for n in r.notifications if n.kind == "resolved" and
                n.channel == "email"]
    assert resolved == list(at(p, 2, 17, 32, 47))
    assert r.suppressed == 8
    assert {n.summary for n in r.notifications} == {"x is 1"}


def test_open_interval_at_the_end_of_the_range(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n alert High {\n  when x > 0.5\n }\n}\n",
                x_series(square(50, 60), hours=1))
    p = case.phase()
    report = case.run()
    r = rule(report, "High")
    last_eval = report.info.groups[0].last_eval_ms
    assert last_eval is not None
    assert [(iv.start_ms, iv.end_ms) for iv in r.intervals] == [(T0 + p + 50 * MIN, None)]
    assert r.intervals[0].duration_ms == last_eval - (T0 + p + 50 * MIN)
    assert [n.kind for n in r.notifications] == ["firing"]


def test_query_offset_shifts_what_each_evaluation_sees(tmp_path: Path) -> None:
    text = ("group g every 1m {\n query_offset 2m\n alert High {\n  when x > 0.5\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=1))
    p = case.phase()
    report = case.run()
    assert report.info.groups[0].query_offset_ms == 2 * MIN
    assert spans(rule(report, "High")) == [at(p, 12, 12, 32)]


def test_evaluation_times_follow_each_groups_phase(tmp_path: Path) -> None:
    text = ("group fast every 30s {\n alert A {\n  when x > 0.5\n }\n}\n"
            "group slow every 2m {\n alert B {\n  when x > 0.5\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=1))
    report = case.run()
    for g in report.info.groups:
        assert g.phase_ms == case.phase(g.name, g.interval_ms)
        assert g.first_eval_ms is not None
        assert (g.first_eval_ms - g.phase_ms) % g.interval_ms == 0
        assert g.first_eval_ms - g.interval_ms < T0 <= g.first_eval_ms
    for name in ("A", "B"):
        r = rule(report, name)
        assert r.firings == 1
        g = next(g for g in report.info.groups if g.name == ("fast" if name == "A" else "slow"))
        assert (r.intervals[0].start_ms - g.phase_ms) % g.interval_ms == 0


# ---------------------------------------------------------------- recording rules


def test_recording_rules_run_first_in_dependency_order(tmp_path: Path) -> None:
    text = ("group g every 1m {\n"
            " alert FromRecording {\n  when b > 2.5\n }\n"
            " record b = a + 1\n"
            " record a = x * 2\n"
            " alert Direct {\n  when x > 0.5\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=2))
    report = case.run()
    direct, recorded = rule(report, "Direct"), rule(report, "FromRecording")
    assert recorded.status == "ok" and rule(report, "a").series == 1
    assert [(iv.start_ms, iv.end_ms) for iv in recorded.intervals] == \
        [(iv.start_ms, iv.end_ms) for iv in direct.intervals]
    assert recorded.firings == 2


def test_recorded_series_go_stale_when_their_input_disappears(tmp_path: Path) -> None:
    # x stops at minute 40 (no staleness marker: still visible for the 5 m lookback).
    ts, vs = minute_wave(1, lambda m: np.ones_like(m, dtype=float))
    keep = ts < T0 + 40 * MIN
    text = ("group g every 1m {\n record r = x\n alert OnRecorded {\n  when r > 0\n }\n"
            " alert OnRaw {\n  when x > 0\n }\n}\n")
    case = Case(tmp_path, text, {"x": ({"instance": "a"}, (ts[keep], vs[keep]))})
    p = case.phase()
    report = case.run(end=T0 + HOUR)
    raw, rec = rule(report, "OnRaw"), rule(report, "OnRecorded")
    # Both end when x's lookback runs out: the recorded series gets a staleness marker at
    # the first evaluation without x, so it does not linger 5 more minutes.
    last_sample = T0 + 40 * MIN - 15_000
    end = next(t for t in at(p, *range(40, 50)) if t is not None and t > last_sample + 5 * MIN)
    assert [iv.end_ms for iv in raw.intervals] == [end]
    assert [iv.end_ms for iv in rec.intervals] == [end]


# ---------------------------------------------------------------- problems per rule


def test_rules_that_cannot_be_evaluated_are_reported_and_others_run(tmp_path: Path) -> None:
    text = ("group g every 1m {\n alert NotYet {\n  when info(x) > 0\n }\n"
            " alert Fine {\n  when x > 0.5\n }\n"
            " alert Unknown {\n  when no_such_metric > 1\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=1))
    report = case.run()
    not_yet, fine, unknown = (rule(report, n) for n in ("NotYet", "Fine", "Unknown"))
    assert not_yet.status == "not_evaluated"
    assert not_yet.reason is not None and "function info() is not supported" in not_yet.reason
    assert fine.status == "ok" and fine.firings == 1
    assert unknown.status == "no_data"
    assert unknown.reason == "no_such_metric matches no series in the store"
    assert unknown.warnings == ["unknown metric: no_such_metric matches no series in the store"]


# ---------------------------------------------------------------- chunking


def comparable(report: DryRunReport) -> str:
    """The JSON report without timings; floats to 12 digits.

    The evaluator's window kernels work from the start of the evaluated range, so
    a value can differ in the last bit or two between chunkings (1e-16 relative);
    states, times and labels must be identical.
    """
    data = report.to_json()
    data["info"].pop("elapsed_s")
    data["info"].pop("chunk_steps")

    def rounded(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.12g}")
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return v

    return json.dumps(rounded(data), sort_keys=True)


RANDOM_RULES = """
group g every 1m {
  record job:m:avg = avg by (job) (m)
  alert GaugeHigh {
    when m > 0.6
    for 3m
    keep_firing_for 2m
    notify email
    cooldown 10m
  }
  alert Hysteresis {
    when avg_over_time(m[5m]) > 0.55
    recover_when avg_over_time(m[5m]) < 0.45
  }
  alert Rate {
    when rate(c_total[5m]) > 0.5
    for 1m
  }
  alert JobAvg {
    when job:m:avg > 0.5
    for 2m
  }
}
group h every 45s {
  alert Low {
    when m < 0.3
    keep_firing_for 1m
  }
}
"""


def random_case(tmp_path: Path) -> Case:
    from tests.support import datagen

    case = Case(tmp_path, RANDOM_RULES, {})
    with Store(case.db) as store:
        store.append_series(list(datagen.generate(12, T0, 4 * HOUR, seed=11)))
    return case


@pytest.mark.parametrize("chunk", [1, 7, 60])
def test_chunked_evaluation_equals_one_chunk(tmp_path: Path, chunk: int) -> None:
    case = random_case(tmp_path)
    end = T0 + 2 * HOUR
    # 9 plot points: buckets of 14 steps, so chunks begin inside buckets.
    whole = case.run(end=end, chunk_steps=100_000, plot_points=9)
    assert sum(r.firings for r in whole.alerts) > 5  # the data exercises the rules
    plot = rule(whole, "GaugeHigh").plot
    assert plot is not None and plot.bucket_ms == 14 * MIN and len(plot.times_ms) == 9
    assert comparable(case.run(end=end, chunk_steps=chunk, plot_points=9)) == comparable(whole)


def test_vectorised_run_equals_stepping_the_reference_evaluator(tmp_path: Path) -> None:
    """Each evaluation time on its own: reference instant query, one machine column."""
    from monitoring.dryrun.collect import AlertCollector
    from monitoring.dryrun.ruleset import load_rule_set
    from monitoring.dryrun.schedule import Schedule
    from monitoring.dryrun.values import value_of
    from monitoring.engine import reference
    from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, RuleOutput

    case = random_case(tmp_path)
    span = (T0, T0 + 90 * MIN)
    report = case.run(*span)
    assert sum(r.firings for r in report.alerts) > 3
    rules = load_rule_set([str(case.rules)]).rules
    with Store(case.db, read_only=True) as store:
        for compiled in rules:
            if compiled.kind != "alert" or compiled.name == "JobAvg":
                continue  # JobAvg reads a recording rule: covered by the recording tests
            sched = Schedule.within(span[0], span[1], compiled.interval_ms,
                                    group_phase_ms(compiled.group, compiled.file,
                                                   compiled.interval_ms))
            machine = AlertMachine(AlertRuleSpec.from_rule(compiled))
            spec = value_of(compiled.condition)
            collector = AlertCollector(low_is_bad=spec.low_is_bad)
            for t in sched.times().tolist():
                def inst(node: Any, t: int = t) -> Any:
                    return reference.evaluate(node, store, t, t, 1, instant=True)
                when = inst(compiled.condition)
                recover = inst(compiled.recover) if compiled.recover is not None else None
                value = inst(spec.node) if spec.node != compiled.condition else None
                out = RuleOutput.from_results(np.array([t]), when, recover, value)
                collector.add(machine.advance(out), np.array([t], dtype=np.int64))
            expected = collector.finish(sched.last_ms)
            got = rule(report, compiled.name).intervals
            assert [(i.labels, i.active_ms, i.start_ms, i.end_ms) for i in got] == \
                [(i.labels, i.active_ms, i.start_ms, i.end_ms) for i in expected], compiled.name
            assert [i.peak for i in got] == pytest.approx([i.peak for i in expected])


def test_progress_reports_every_chunk(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n record r = x\n alert High {\n  when x > 0.5\n"
                " }\n}\n", x_series(square(10, 30), hours=1))
    calls: list[tuple[int, int]] = []
    run_dry_run([str(case.rules)], str(case.db), options=DryRunOptions(chunk_steps=10),
                progress=lambda done, total: calls.append((done, total)))
    # 60 steps in chunks of 10, one grid for the recording rule and one for the alert.
    assert calls == [(i, 12) for i in range(1, 13)]



def test_at_start_and_end_mean_the_evaluation_time(tmp_path: Path) -> None:
    # A rule is an instant query: `@ start()`/`@ end()` pin to the evaluation time itself,
    # not to the edges of the chunk a range evaluation covers.
    text = ("group g every 1m {\n alert Pinned {\n  when x @ end() > 0.5\n"
            "   and max_over_time(x[3m] @ start()) > 0.5\n }\n"
            " alert Plain {\n  when x > 0.5\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=2))
    report = case.run(chunk_steps=7)
    pinned, plain = rule(report, "Pinned"), rule(report, "Plain")
    assert pinned.status == "ok" and pinned.firings == 2
    assert [(iv.start_ms, iv.end_ms) for iv in pinned.intervals] == \
        [(iv.start_ms, iv.end_ms) for iv in plain.intervals]


def test_recorded_samples_carry_the_query_time_with_query_offset(tmp_path: Path) -> None:
    # Prometheus writes a recording rule's samples at the query time, evaluation time minus
    # query_offset: a reader in another group sees them that much earlier.
    text = ("group rec every 1m {\n query_offset 2m\n record r = x\n}\n"
            "group alerts every 1m {\n alert OnRecorded {\n  when r > 0.5\n }\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=1))
    p_rec, p_alert = case.phase("rec"), case.phase("alerts")
    late = 1 if p_rec > p_alert else 0  # the recording of the same minute is not written yet
    r = rule(case.run(), "OnRecorded")
    assert spans(r) == [at(p_alert, 10 + late, 10 + late, 30 + late)]


def test_an_evaluator_exception_stops_only_its_rule(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import monitoring.dryrun.engine as engine
    from monitoring.dsl import ir

    real = engine.evaluate_many

    def flaky(nodes: Any, *args: Any, **kwargs: Any) -> Any:
        nodes = list(nodes)
        if any(isinstance(n, ir.Selector) and n.metric == "y" for n in nodes):
            raise IndexError("boom")
        return real(nodes, *args, **kwargs)

    monkeypatch.setattr(engine, "evaluate_many", flaky)
    text = ("group g every 1m {\n alert Broken {\n  when y > 0.5\n }\n"
            " alert Fine {\n  when x > 0.5\n }\n}\n")
    series = {**x_series(square(10, 30), hours=1),
              "y": ({"instance": "a"}, minute_wave(1, square(0, 5)))}
    report = Case(tmp_path, text, series).run(chunk_steps=20)
    broken, fine = rule(report, "Broken"), rule(report, "Fine")
    assert broken.status == "not_evaluated" and broken.reason == "IndexError: boom"
    assert fine.status == "ok" and fine.firings == 1


def test_groups_of_the_same_name_in_two_files_keep_their_own_phase(tmp_path: Path) -> None:
    case = Case(tmp_path, "group g every 1m {\n alert A {\n  when x > 0.5\n }\n}\n",
                x_series(square(10, 30), hours=1))
    other = tmp_path / "other.rules"
    other.write_text("group g every 1m {\n alert B {\n  when x > 0.5\n }\n}\n", encoding="utf-8")
    report = run_dry_run([str(case.rules), str(other)], str(case.db))
    phases = {g.file: g.phase_ms for g in report.info.groups}
    assert phases == {str(case.rules): group_phase_ms("g", str(case.rules), MIN),
                      str(other): group_phase_ms("g", str(other), MIN)}
    assert len(set(phases.values())) == 2


def test_conditions_that_never_hold_are_not_no_data(tmp_path: Path) -> None:
    text = ("group g every 1m {\n alert Absent {\n  when absent(x)\n }\n"
            " alert Never {\n  when x > on (instance) x + 1\n }\n"
            " alert NoneInRange {\n  when x > 0.5\n }\n"
            " record filtered = x > 5\n}\n")
    case = Case(tmp_path, text, x_series(square(10, 30), hours=1))
    report = case.run()
    assert {r.name: r.status for r in report.rules} == {
        "Absent": "ok", "Never": "ok", "NoneInRange": "ok", "filtered": "ok"}


def test_compared_side_without_data_in_the_range_is_no_data(tmp_path: Path) -> None:
    # y exists (first hour only), x covers two hours: over the second hour y has no data.
    series = {**x_series(square(10, 30), hours=2),
              "y": ({"instance": "a"}, minute_wave(1, square(10, 30)))}
    case = Case(tmp_path, "group g every 1m {\n alert OnY {\n  when y > 0.5\n }\n}\n", series)
    r = rule(case.run(start=T0 + HOUR + 10 * MIN, end=T0 + 2 * HOUR), "OnY")
    assert r.status == "no_data"
    assert r.reason == "its input had no series anywhere in the range"
    assert r.warnings == []


def test_recording_rule_with_duplicate_labelsets_is_not_evaluated(tmp_path: Path) -> None:
    text = ('group g every 1m {\n record r = x\n  labels {\n   instance = "same"\n  }\n'
            " alert OnX {\n  when x > 0.5\n }\n}\n")
    series = {**x_series(square(10, 30), hours=1),
              "x#b": ({"instance": "b"}, minute_wave(1, square(0, 5)))}
    report = Case(tmp_path, text, series).run()
    assert rule(report, "r").status == "not_evaluated"
    assert rule(report, "r").reason == ("vector contains metrics with the same labelset after "
                                        "applying rule labels")
    assert rule(report, "OnX").firings == 2
