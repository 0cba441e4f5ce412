"""The vectorised alert machine equals a per-step mirror of Prometheus's Eval (hypothesis)."""

from __future__ import annotations

import itertools
import math
from unittest.mock import patch

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, AlertState, RuleOutput
from monitoring.engine.alerts import machine as machine_module
from tests.support.alerts_mirror import Mirror

SERIES = [
    (("__name__", "up"), ("instance", "a"), ("job", "x")),
    (("__name__", "up"), ("instance", "b"), ("job", "x")),
    (("instance", "c"), ("job", "y")),
    (("instance", "a"), ("job", "y")),
]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[AlertRuleSpec, RuleOutput, list[int]]:
    n_series = draw(st.integers(1, len(SERIES)))
    n_steps = draw(st.integers(1, 45))
    gaps = draw(st.lists(st.sampled_from([15_000, 60_000, 60_000, 60_000, 150_000]),
                         min_size=n_steps, max_size=n_steps))
    times = np.cumsum(np.array(gaps, dtype=np.int64)) + 1_000_000
    density = draw(st.sampled_from([0.2, 0.5, 0.8]))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    fire = rng.random((n_series, n_steps)) < density
    value = np.where(fire, rng.integers(0, 100, (n_series, n_steps)).astype(float), math.nan)
    hysteresis = draw(st.booleans())
    hold = None
    if hysteresis:
        hold = rng.random((n_series, n_steps)) < 0.6
        value = np.where(hold & ~fire, rng.integers(0, 100, (n_series, n_steps)), value)
    no_data = rng.random(n_steps) < draw(st.sampled_from([0.0, 0.1, 0.3]))
    labels: tuple[tuple[str, str], ...] = draw(st.sampled_from([
        (), (("severity", "page"),), (("job", "z"),), (("instance", "{{ $labels.job }}"),),
        (("band", "{{ if gt $value 50.0 }}high{{ else }}low{{ end }}"),)]))
    spec = AlertRuleSpec(
        "A", for_ms=draw(st.sampled_from([0, 60_000, 120_000, 150_000, 300_000])),
        keep_firing_for_ms=draw(st.sampled_from([0, 60_000, 90_000, 180_000, 600_000])),
        labels=labels, no_data=draw(st.sampled_from(list(NoDataPolicy))),
        flap_changes=draw(st.integers(1, 5)), flap_window=draw(st.integers(1, 8)))
    out = RuleOutput(times, SERIES[:n_series], fire, value, hold,
                     no_data if draw(st.booleans()) else None)
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, n_steps - 1)), max_size=5))))
    return spec, out, cuts


def _run_chunked(spec: AlertRuleSpec, out: RuleOutput, cuts: list[int]) -> dict[
        tuple[tuple[str, str], ...], tuple[list[int], list[bool]]]:
    """Per identity: shown state and flapping at every step, over chunked calls."""
    machine = AlertMachine(spec)
    n = len(out.times_ms)
    rows: dict[tuple[tuple[str, str], ...], tuple[list[int], list[bool]]] = {}
    bounds = [0, *[c for c in cuts if 0 < c < n], n]
    done = 0
    for a, b in itertools.pairwise(bounds):
        if a == b:
            continue
        adv = machine.advance(out.slice(a, b))
        assert adv.states.shape == (len(adv.alert_labels), b - a)
        for i, lab in enumerate(adv.alert_labels):
            states, flaps = rows.setdefault(lab, ([0] * done, [False] * done))
            states.extend(int(x) for x in adv.states[i])
            flaps.extend(bool(x) for x in adv.flapping[i])
        done = b
        for states, flaps in rows.values():
            states.extend([0] * (done - len(states)))
            flaps.extend([False] * (done - len(flaps)))
    return rows


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_vectorised_equals_per_step_mirror(case: tuple[AlertRuleSpec, RuleOutput, list[int]]
                                           ) -> None:
    spec, out, _ = case
    machine = AlertMachine(spec)
    mirror = Mirror(spec)
    for t in range(len(out.times_ms)):
        adv = machine.advance(out.slice(t, t + 1))
        shown, flapping, error = mirror.step(
            int(out.times_ms[t]), out.labels, list(out.fire[:, t]),
            None if out.hold is None else list(out.hold[:, t]), list(out.value[:, t]),
            bool(out.no_data[t]) if out.no_data is not None else False)
        got = {lab: AlertState(int(adv.states[i, 0])) for i, lab in enumerate(adv.alert_labels)}
        assert {k: v for k, v in got.items() if v} == {k: v for k, v in shown.items() if v}, t
        got_flap = {lab for i, lab in enumerate(adv.alert_labels) if adv.flapping[i, 0]}
        assert got_flap == {k for k, v in flapping.items() if v}, t
        assert [m for _, m in adv.errors] == ([error] if error else []), t
        want = mirror.alerts()
        alerts = {a.labels: a for a in machine.alerts()}
        assert set(alerts) == set(want), t
        for lab, a in alerts.items():
            w = want[lab]
            if a.state is not AlertState.NODATA:
                assert a.state == w.state, (t, lab)
            assert a.active_at_ms == w.active_at, (t, lab)
            assert a.fired_at_ms == w.fired_at, (t, lab)
            assert a.flapping == flapping.get(lab, False), (t, lab)
            if a.state is AlertState.INACTIVE:
                assert a.resolved_at_ms == w.resolved_at, (t, lab)
            assert (math.isnan(a.last_value) and math.isnan(w.value)) or a.last_value == w.value


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_chunked_calls_equal_one_call(case: tuple[AlertRuleSpec, RuleOutput, list[int]]) -> None:
    spec, out, cuts = case
    whole = _run_chunked(spec, out, [])
    with patch.object(machine_module, "CELLS_PER_BLOCK", 7):  # blocks inside one call
        assert _run_chunked(spec, out, []) == whole
    chunked = _run_chunked(spec, out, cuts)
    active = {k: v for k, v in whole.items() if any(v[0]) or any(v[1])}
    assert active == {k: v for k, v in chunked.items() if any(v[0]) or any(v[1])}
    one = AlertMachine(spec)
    one.advance(out)
    many = AlertMachine(spec)
    bounds = [0, *cuts, len(out.times_ms)]
    for a, b in itertools.pairwise(bounds):
        if a < b:
            many = AlertMachine.restore(spec, many.snapshot())
            many.advance(out.slice(a, b))
    assert one.snapshot() == many.snapshot()
