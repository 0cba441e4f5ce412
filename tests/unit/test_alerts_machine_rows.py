"""The machine's kept series -> row look-ups must never change what it reports.

Live evaluation calls ``advance`` once per step with mostly the same series,
so the machine remembers each series' row. Whatever the series do between
steps (come and go, swap places, two series sharing one alert identity, the
rule-level no-data alert sharing the identity of a label-less series, rows
forgotten), stepping must equal a fresh machine fed the whole history in one
call, and annotations must be rendered from the series seen last.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, RuleOutput
from monitoring.engine.model import Labels, QueryResult, Series, drop_name

MIN = 60_000
POOL: list[Labels] = [
    (("__name__", "errors"), ("instance", "a")),
    (("__name__", "faults"), ("instance", "a")),  # same identity as the first
    (("instance", "b"),),
    (),  # the identity of the no-data alert
]
SPEC = AlertRuleSpec("High", for_ms=MIN, annotations=(("from", "{{ $labels.__name__ }}"),),
                     no_data=NoDataPolicy.FIRE, flap_window=3, flap_changes=2)

steps = st.lists(st.lists(st.tuples(st.sampled_from(range(len(POOL))), st.booleans()),
                          max_size=4), min_size=1, max_size=12)


def step(t: int, present: list[tuple[int, bool]], holds: list[bool] | None = None
         ) -> RuleOutput:
    chosen = list(dict(present).items())
    labels = [POOL[i] for i, _ in chosen]
    fire = np.array([[f] for _, f in chosen], dtype=bool).reshape(len(chosen), 1)
    # The value_of data of idle series too; a firing series' value may be NaN.
    value = np.array([[fired_value(i, t) if f else float(-t)] for i, f in chosen]
                     ).reshape(len(chosen), 1)
    hold = None
    if holds is not None:
        hold = np.array([[h] for h in holds[:len(chosen)]] + [[False]] * (
            len(chosen) - len(holds[:len(chosen)])), dtype=bool).reshape(len(chosen), 1)
    return RuleOutput(np.array([t * MIN], dtype=np.int64), labels, fire, value, hold,
                      no_data=np.array([not chosen]))


def fired_value(series: int, t: int) -> float:
    """A firing series' value: NaN for the third series at odd steps."""
    return math.nan if series == 2 and t % 2 else float(t)


def whole(history: list[list[tuple[int, bool]]]) -> RuleOutput:
    """The same history as one call: a row per series, NaN and no fire where absent."""
    order = list(dict.fromkeys(i for present in history for i, _ in present))
    fire = np.zeros((len(order), len(history)), dtype=bool)
    for t, present in enumerate(history):
        for i, f in dict(present).items():
            fire[order.index(i), t] = f
    value = np.array([[fired_value(i, t) if fire[k, t] else math.nan
                       for t in range(len(history))] for k, i in enumerate(order)]
                     ).reshape(len(order), len(history))
    return RuleOutput(np.arange(len(history), dtype=np.int64) * MIN, [POOL[i] for i in order],
                      fire, value, no_data=np.array([not p for p in history]))


@settings(max_examples=300, deadline=None)
@given(steps, st.sampled_from([0, MIN, 2 * MIN]), st.sampled_from([0, MIN, 2 * MIN]))
def test_stepping_equals_one_call_and_sources_follow_the_series(
        history: list[list[tuple[int, bool]]], for_ms: int, keep_ms: int) -> None:
    spec = replace(SPEC, for_ms=for_ms, keep_firing_for_ms=keep_ms)
    stepped = AlertMachine(spec)
    got: list[dict[Labels, int]] = []
    for t, present in enumerate(history):
        adv = stepped.advance(step(t, present))
        got.append({lab: int(adv.states[i, 0]) for i, lab in enumerate(adv.alert_labels)
                    if adv.states[i, 0]})
        last: dict[Labels, Labels] = {}
        for i in dict(present):
            last[stepped._static_identity(POOL[i])] = POOL[i]
        for ident, source in last.items():
            row = stepped._rows.get(ident)
            if row is not None and dict(source):
                assert stepped._source[row] == source
    at_once = AlertMachine(spec)
    adv = at_once.advance(whole(history))
    want = [{lab: int(adv.states[i, t]) for i, lab in enumerate(adv.alert_labels)
             if adv.states[i, t]} for t in range(len(history))]
    assert got == want
    # Times and flapping too (the one-column path against the many-column one); not
    # the source of an identity two series share (the order of series differs), nor
    # the value: one call keeps a row it would prune between steps, and with it the
    # value of an earlier alert of that identity where the new one's value is NaN.
    def kept(machine: AlertMachine) -> list[dict[str, object]]:
        return [{k: v for k, v in row.items() if k not in ("source", "last_value")}
                for row in machine.snapshot()["alerts"]]

    assert kept(stepped) == kept(at_once)


def alerts(machine: AlertMachine) -> list[tuple[object, ...]]:
    return [(a.labels, a.annotations, a.state, a.active_at_ms, a.fired_at_ms,
             a.resolved_at_ms, repr(a.last_value), a.flapping) for a in machine.alerts()]


@settings(max_examples=150, deadline=None)
@given(steps, st.one_of(st.none(), st.lists(st.booleans(), min_size=4, max_size=4)),
       st.sampled_from(list(NoDataPolicy)))
def test_leaving_out_idle_rows_changes_no_transition_alert_or_snapshot(
        history: list[list[tuple[int, bool]]], holds: list[bool] | None,
        no_data: NoDataPolicy) -> None:
    spec = AlertRuleSpec("High", for_ms=MIN, annotations=(("v", "{{ $value }}"),),
                         no_data=no_data, flap_window=3, flap_changes=2)
    every, busy = AlertMachine(spec), AlertMachine(spec)
    for t, present in enumerate(history):
        out = step(t, present, holds)
        a, b = every.advance(out), busy.advance(out, idle_rows=False)
        # Sorted: when an idle series shares its identity with a later busy one,
        # the identity's row comes later (rows are in order of creation).
        assert sorted((x.alert, x.time_ms, x.old, x.new, repr(x.value))
                      for x in b.transitions) == sorted(
            (x.alert, x.time_ms, x.old, x.new, repr(x.value)) for x in a.transitions)
        assert b.errors == a.errors
        rows = {lab: i for i, lab in enumerate(a.alert_labels)}
        assert set(b.alert_labels) <= set(rows)
        for i, lab in enumerate(b.alert_labels):
            assert int(b.states[i, 0]) == int(a.states[rows[lab], 0])
        left_out = set(rows) - set(b.alert_labels)
        assert all(int(a.states[rows[lab], 0]) == 0 for lab in left_out)
        assert sorted(alerts(busy)) == sorted(alerts(every))
        assert busy.snapshot() == every.snapshot()


def test_a_series_replacing_another_of_the_same_identity_renders_its_own_annotations(
        ) -> None:
    machine = AlertMachine(AlertRuleSpec("High", annotations=(("from",
                                                               "{{ $labels.__name__ }}"),)))
    seen = []
    for t, i in enumerate([0, 0, 1, 0, 1, 1, 0]):
        machine.advance(step(t, [(i, True)]))
        [alert] = machine.alerts()
        seen.append(alert.annotations["from"])
    assert seen == ["errors", "errors", "faults", "errors", "faults", "faults", "errors"]


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(list(NoDataPolicy)))
def test_quiet_steps_of_an_idle_machine_change_what_a_full_step_changes(
        history: list[list[tuple[int, bool]]], no_data: NoDataPolicy) -> None:
    """``advance_idle`` (live evaluation of a quiet rule) against ``advance``."""
    spec = AlertRuleSpec("High", for_ms=MIN, no_data=no_data, flap_window=3, flap_changes=2)
    quick, full = AlertMachine(spec), AlertMachine(spec)
    skipped = 0
    for t, present in enumerate(history):
        out = step(t, present)
        want = full.advance(out, idle_rows=False)
        if quick.idle and not out.fire.any():
            got = quick.advance_idle(out.times_ms)
            skipped += 1
            assert not want.transitions and not want.errors and not want.alert_labels
        else:
            got = quick.advance(out, idle_rows=False)
        assert [(x.alert, x.old, x.new) for x in got.transitions] == \
            [(x.alert, x.old, x.new) for x in want.transitions]
        assert alerts(quick) == alerts(full)
        assert quick.snapshot() == full.snapshot()
    if no_data in (NoDataPolicy.FIRE, NoDataPolicy.NODATA):
        assert skipped == 0  # their rule-level alert needs every step's no-data flag


def without_values(snapshot: dict[str, object]) -> dict[str, object]:
    rows = snapshot["alerts"]
    assert isinstance(rows, list)
    return {**{k: v for k, v in snapshot.items() if k != "last_time"},
            "alerts": [{k: v for k, v in row.items() if k != "last_value"} for row in rows]}


@settings(max_examples=150, deadline=None)
@given(steps)
def test_the_state_key_changes_exactly_when_the_snapshot_less_its_values_does(
        history: list[list[tuple[int, bool]]]) -> None:
    machine = AlertMachine(SPEC)
    key, kept = machine.state_key(), without_values(machine.snapshot())
    for t, present in enumerate(history):
        machine.advance(step(t, present), idle_rows=False)
        new_key, new_kept = machine.state_key(), without_values(machine.snapshot())
        assert (new_key == key) == (new_kept == kept)
        key, kept = new_key, new_kept


@settings(max_examples=200, deadline=None)
@given(steps, st.sampled_from(list(NoDataPolicy)))
def test_leaving_out_value_series_without_an_alert_changes_nothing(
        history: list[list[tuple[int, bool]]], no_data: NoDataPolicy) -> None:
    """``known`` (live evaluation) against mapping every series of the value result."""
    spec = AlertRuleSpec("High", for_ms=MIN, annotations=(("v", "{{ $value }}"),),
                         no_data=no_data, flap_window=3, flap_changes=2)
    plain, filtered = AlertMachine(spec), AlertMachine(spec)
    for t, present in enumerate(history):
        times = np.array([t * MIN], dtype=np.int64)
        chosen = dict(present)
        value = QueryResult("vector", times, [
            Series(POOL[i], times, np.array([float(t + i)])) for i in chosen])
        when = QueryResult("vector", times, [  # a comparison drops the name
            Series(drop_name(POOL[i]), times, np.array([float(t + i)]))
            for i, fires in chosen.items() if fires])
        a = plain.advance(RuleOutput.from_results(times, when, None, value), idle_rows=False)
        b = filtered.advance(RuleOutput.from_results(times, when, None, value,
                                                     filtered.has_alert_for), idle_rows=False)
        assert [(x.alert, x.old, x.new, repr(x.value)) for x in b.transitions] == \
            [(x.alert, x.old, x.new, repr(x.value)) for x in a.transitions]
        assert b.errors == a.errors
        assert alerts(filtered) == alerts(plain)
        assert filtered.snapshot() == plain.snapshot()


def test_a_nan_value_keeps_the_value_before_on_both_paths() -> None:
    values = [1.0, math.nan, 2.0, math.nan]
    labels: list[Labels] = [(("instance", "a"),)]
    stepped = AlertMachine(AlertRuleSpec("High", for_ms=MIN))
    seen = []
    for t, v in enumerate(values):
        stepped.advance(RuleOutput(np.array([t * MIN], dtype=np.int64), labels,
                                   np.array([[True]]), np.array([[v]])), idle_rows=False)
        seen.append(stepped.alerts()[0].last_value)
    assert seen == [1.0, 1.0, 2.0, 2.0]
    at_once = AlertMachine(AlertRuleSpec("High", for_ms=MIN))
    at_once.advance(RuleOutput(np.arange(4, dtype=np.int64) * MIN, labels,
                               np.ones((1, 4), dtype=bool), np.array([values])))
    assert at_once.alerts()[0].last_value == 2.0
