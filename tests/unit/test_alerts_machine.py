"""The alert state machine, transition by transition, with a fake clock (times we pass)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.alerts import (
    DUPLICATE_LABELSET,
    AlertMachine,
    AlertRuleSpec,
    AlertState,
    RuleOutput,
)
from monitoring.engine.model import Labels

X, P, F, N = (AlertState.INACTIVE, AlertState.PENDING, AlertState.FIRING, AlertState.NODATA)
MIN = 60_000
SERIES: Labels = (("__name__", "errors"), ("instance", "a"))
ALERT: Labels = (("alertname", "High"), ("instance", "a"))


def output(pattern: str, *, hold: str | None = None, no_data: str | None = None,
           start: int = 0, step: int = MIN, values: list[float] | None = None) -> RuleOutput:
    """One series; ``pattern`` has ``1`` where the condition holds, ``.`` where not."""
    n = len(pattern)

    def bools(text: str) -> np.ndarray:
        return np.array([ch == "1" for ch in text], dtype=bool).reshape(1, n)

    fire = bools(pattern)
    held = bools(hold) if hold is not None else None
    value = np.array([values if values is not None else [float(i) for i in range(n)]],
                     dtype=float).reshape(1, n)
    value = np.where(fire if held is None else fire | held, value, math.nan)
    return RuleOutput(np.arange(n, dtype=np.int64) * step + start, [SERIES], fire, value, held,
                      None if no_data is None else bools(no_data)[0])


def states(spec: AlertRuleSpec, out: RuleOutput, labels: Labels = ALERT) -> list[AlertState]:
    """States of one alert over all steps; also checks that one call equals step calls."""
    whole = AlertMachine(spec).advance(out)
    stepped = AlertMachine(spec)
    per_step = []
    for t in range(len(out.times_ms)):
        adv = stepped.advance(out.slice(t, t + 1))
        row = {lab: int(adv.states[i, 0]) for i, lab in enumerate(adv.alert_labels)}
        per_step.append(AlertState(row.get(labels, 0)))
    rows = {lab: i for i, lab in enumerate(whole.alert_labels)}
    got = [AlertState(int(x)) for x in whole.states[rows[labels]]] if labels in rows else [
        X] * len(out.times_ms)
    assert got == per_step
    return got


def test_inactive_pending_firing_resolved() -> None:
    spec = AlertRuleSpec("High", for_ms=2 * MIN)
    assert states(spec, output(".1111..")) == [X, P, P, F, F, X, X]
    machine = AlertMachine(spec)
    adv = machine.advance(output(".1111.."))
    assert [(t.time_ms, t.old, t.new) for t in adv.transitions] == [
        (1 * MIN, X, P), (3 * MIN, P, F), (5 * MIN, F, X)]
    [alert] = machine.alerts()  # resolved, kept for 15 minutes
    assert (alert.state, alert.active_at_ms, alert.fired_at_ms, alert.resolved_at_ms) == (
        X, 1 * MIN, 3 * MIN, 5 * MIN)
    assert alert.last_value == 4.0


def test_pending_that_clears_is_dropped_and_restarts() -> None:
    spec = AlertRuleSpec("High", for_ms=2 * MIN)
    machine = AlertMachine(spec)
    machine.advance(output("11.111"))
    [alert] = machine.alerts()
    # a new alert after the gap: new ActiveAt
    assert (alert.state, alert.active_at_ms, alert.fired_at_ms) == (F, 3 * MIN, 5 * MIN)


def test_for_zero_fires_at_first_evaluation() -> None:
    spec = AlertRuleSpec("High")
    assert states(spec, output(".11.")) == [X, F, F, X]
    adv = AlertMachine(spec).advance(output(".11."))
    assert [(t.old, t.new) for t in adv.transitions] == [(X, F), (F, X)]


def test_for_is_measured_in_time_not_steps() -> None:
    spec = AlertRuleSpec("High", for_ms=90_000)
    assert states(spec, output("1111", step=30_000)) == [P, P, P, F]
    assert states(spec, output("1111", step=45_000)) == [P, P, F, F]


def test_keep_firing_for_holds_then_resolves() -> None:
    spec = AlertRuleSpec("High", keep_firing_for_ms=2 * MIN)
    assert states(spec, output("11....")) == [F, F, F, F, X, X]


def test_keep_firing_condition_returns_during_window() -> None:
    spec = AlertRuleSpec("High", keep_firing_for_ms=2 * MIN)
    machine = AlertMachine(spec)
    assert states(spec, output("1..1..1")) == [F, F, F, F, F, F, F]
    adv = machine.advance(output("1..1..1"))
    assert [(t.old, t.new) for t in adv.transitions] == [(X, F)]
    [alert] = machine.alerts()
    assert alert.active_at_ms == 0  # the same alert all along


def test_keep_firing_does_not_apply_to_pending() -> None:
    spec = AlertRuleSpec("High", for_ms=3 * MIN, keep_firing_for_ms=10 * MIN)
    assert states(spec, output("11.1111")) == [P, P, X, P, P, P, F]


def test_resolved_alert_kept_fifteen_minutes() -> None:
    spec = AlertRuleSpec("High")
    machine = AlertMachine(spec)
    machine.advance(output("1" + "." * 15))  # resolved at 1m; last evaluation at 15m
    assert [a.state for a in machine.alerts()] == [X]
    machine.advance(RuleOutput(np.array([17 * MIN]), [SERIES], np.zeros((1, 1), bool),
                               np.full((1, 1), math.nan)))
    assert machine.alerts() == []


def test_hysteresis_stays_active_until_recover_when() -> None:
    # fire above X (the 1s), hold while the series has data and recover_when is false.
    spec = AlertRuleSpec("High")
    out = output(".1....1..", hold="..11.11.1")
    assert states(spec, out) == [X, F, F, F, X, X, F, X, X]


def test_hysteresis_with_for_and_keep_firing() -> None:
    spec = AlertRuleSpec("High", for_ms=2 * MIN, keep_firing_for_ms=MIN)
    out = output("1.......", hold=".111....")
    assert states(spec, out) == [P, P, F, F, F, X, X, X]


def test_no_data_resolve_is_prometheus_behaviour() -> None:
    spec = AlertRuleSpec("High", no_data=NoDataPolicy.RESOLVE)
    assert states(spec, output("11.1", no_data="..1.")) == [F, F, X, F]


def test_no_data_keep_last_freezes_state() -> None:
    spec = AlertRuleSpec("High", for_ms=2 * MIN, no_data=NoDataPolicy.KEEP_LAST)
    # Pending survives the no-data steps; time keeps running, so it fires right after.
    assert states(spec, output("1..1.", no_data=".11..")) == [P, P, P, F, X]


def test_no_data_fire_raises_rule_level_alert() -> None:
    spec = AlertRuleSpec("High", for_ms=MIN, labels=(("severity", "page"),),
                         no_data=NoDataPolicy.FIRE)
    nodata: Labels = (("alertname", "High"), ("nodata", "true"), ("severity", "page"))
    out = output("1....1", no_data=".111..")
    assert states(spec, out, nodata) == [X, P, F, F, X, X]
    assert states(spec, out, (*ALERT, ("severity", "page"))) == [P, X, X, X, X, P]


def test_no_data_nodata_state() -> None:
    spec = AlertRuleSpec("High", no_data=NoDataPolicy.NODATA)
    nodata: Labels = (("alertname", "High"), ("nodata", "true"))
    out = output("1..1...", no_data=".1...11")
    assert states(spec, out) == [F, N, X, F, X, X, X]
    assert states(spec, out, nodata) == [X, X, X, X, X, N, N]
    machine = AlertMachine(spec)
    machine.advance(out)
    [alert] = [a for a in machine.alerts() if a.state is N]
    assert (alert.labels, alert.active_at_ms) == (nodata, 5 * MIN)


def test_flapping_marks_and_clears() -> None:
    spec = AlertRuleSpec("High", flap_changes=4, flap_window=6)
    adv = AlertMachine(spec).advance(output("1.1.1........"))
    # changes at steps 0..5; flapping while at least 4 fall in the last 6 evaluations
    assert adv.flapping[0].tolist() == [False, False, False, True, True, True, True, True,
                                        False, False, False, False, False]
    quiet = AlertMachine(AlertRuleSpec("High", flap_changes=4, flap_window=2))
    assert not quiet.advance(output("1.1.1.")).flapping.any()


def test_flapping_on_alert() -> None:
    machine = AlertMachine(AlertRuleSpec("High", flap_changes=3, flap_window=5,
                                         keep_firing_for_ms=0))
    machine.advance(output("1.1.1"))
    [alert] = machine.alerts()
    assert alert.flapping


def test_duplicate_labelset_is_an_evaluation_error() -> None:
    spec = AlertRuleSpec("High", labels=(("instance", "all"),))
    series: list[Labels] = [(("instance", "a"),), (("instance", "b"),)]
    fire = np.array([[True, True, True], [False, True, False]])
    out = RuleOutput(np.array([0, MIN, 2 * MIN]), series, fire, np.where(fire, 1.0, math.nan))
    machine = AlertMachine(AlertRuleSpec("High", for_ms=2 * MIN, labels=spec.labels))
    adv = machine.advance(out)
    assert adv.errors == [(MIN, DUPLICATE_LABELSET)]
    # the failed evaluation changes nothing: still pending at 2m (ActiveAt 0, 2m >= for)
    assert adv.states.tolist() == [[1, 1, 2]]


def test_snapshot_restore_mid_pending() -> None:
    spec = AlertRuleSpec("High", for_ms=3 * MIN, keep_firing_for_ms=MIN)
    out = output("111111..")
    machine = AlertMachine(spec)
    machine.advance(out.slice(0, 2))
    snap = machine.snapshot()
    assert [a.state for a in machine.alerts()] == [P]
    restored = AlertMachine.restore(spec, snap)
    adv = restored.advance(out.slice(2, 8))
    assert [AlertState(int(x)) for x in adv.states[0]] == [P, F, F, F, F, X]
    with pytest.raises(ValueError, match="not after"):
        restored.advance(out.slice(7, 8))
    with pytest.raises(ValueError, match="snapshot version"):
        AlertMachine.restore(spec, {"version": 99})


def test_times_must_increase_and_shapes_match() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        RuleOutput(np.array([1, 1]), [SERIES], np.zeros((1, 2), bool), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="shape"):
        RuleOutput(np.array([1, 2]), [SERIES], np.zeros((1, 3), bool), np.zeros((1, 2)))


def test_empty_call_is_harmless() -> None:
    machine = AlertMachine(AlertRuleSpec("High"))
    adv = machine.advance(output(""))
    assert adv.states.shape == (1, 0) and adv.transitions == []


@pytest.mark.parametrize("policy", list(NoDataPolicy))
def test_without_recorded_transitions_the_matrices_are_the_same(policy: NoDataPolicy) -> None:
    spec = AlertRuleSpec("High", for_ms=2 * MIN, keep_firing_for_ms=MIN, no_data=policy,
                         flap_changes=2, flap_window=6)
    out = output("..111.1..1111...", hold="..1111111.11111.", no_data="......11........")
    full = AlertMachine(spec).advance(out)
    lean_machine = AlertMachine(spec, record_transitions=False)
    lean = lean_machine.advance(out)
    assert full.transitions and not lean.transitions
    assert full.alert_labels == lean.alert_labels
    assert np.array_equal(full.states, lean.states)
    assert np.array_equal(full.values, lean.values, equal_nan=True)
    assert np.array_equal(full.flapping, lean.flapping)
    restored = AlertMachine.restore(spec, lean_machine.snapshot(), record_transitions=False)
    assert not restored.advance(output("1", start=20 * MIN)).transitions
