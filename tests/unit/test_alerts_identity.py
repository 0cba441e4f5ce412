"""Alert identity, templates, and building the machine's inputs from rules and results."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl.ast import NoDataPolicy
from monitoring.dsl.compiler import compile_expression, compile_rule_files
from monitoring.dsl.parser import parse_rule_file
from monitoring.dsl.source import SourceFile
from monitoring.engine.alerts import AlertMachine, AlertRuleSpec, AlertState, RuleOutput
from monitoring.engine.alerts.identity import LabelMaker
from monitoring.engine.evaluator import evaluate_many
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import QueryResult, Series, labels_of

MIN = 60_000


def identity(spec: AlertRuleSpec, series: tuple[tuple[str, str], ...],
             value: float = 1.0) -> dict[str, str]:
    return dict(LabelMaker(spec).identity(series, value))


def test_identity_drops_name_adds_alertname_rule_labels_win() -> None:
    spec = AlertRuleSpec("Down", labels=(("job", "override"), ("team", "db")))
    got = identity(spec, (("__name__", "up"), ("job", "node"), ("instance", "a")))
    assert got == {"alertname": "Down", "instance": "a", "job": "override", "team": "db"}
    # alertname always wins, even over a rule label or a series label of that name
    spec = AlertRuleSpec("Down", labels=(("alertname", "Other"),))
    assert identity(spec, (("alertname", "series"),))["alertname"] == "Down"


def test_label_templates_see_series_labels_value_and_external_labels() -> None:
    spec = AlertRuleSpec(
        "Down", labels=(("where", "{{ $labels.instance }}@{{ $externalLabels.dc }}"),
                        ("empty", "{{ if false }}x{{ end }}")),
        external_labels=(("dc", "eu1"),))
    got = identity(spec, (("__name__", "up"), ("instance", "a")))
    assert got == {"alertname": "Down", "instance": "a", "where": "a@eu1"}  # empty: deleted


def test_template_errors_render_as_prometheus_does() -> None:
    spec = AlertRuleSpec("Down", labels=(("bad", "{{ $labels.x | nosuchfn }}"),),
                         annotations=(("s", "{{ template \"nope\" }}"),))
    assert identity(spec, (("x", "1"),))["bad"].startswith("<error expanding template: ")
    out = LabelMaker(spec).annotations((("x", "1"),), 1.0)
    assert out["s"].startswith("<error expanding template: ")


def test_annotations_rendered_with_last_value() -> None:
    spec = AlertRuleSpec("High", annotations=(
        ("summary", "{{ $labels.instance }} at {{ $value | humanize }}"),))
    fire = np.array([[True, True]])
    out = RuleOutput(np.array([0, MIN]), [(("instance", "a"),)], fire,
                     np.array([[1500.0, 2_500_000.0]]))
    machine = AlertMachine(spec)
    machine.advance(out)
    [alert] = machine.alerts()
    assert alert.annotations == {"summary": "a at 2.5M"}
    assert machine.render_annotations(alert.labels, 1500.0, 0) == {"summary": "a at 1.5k"}


def test_label_using_value_changes_identity_per_step() -> None:
    # Prometheus's documented pitfall: every new value is a new alert.
    spec = AlertRuleSpec("High", labels=(("v", "{{ $value }}"),))
    fire = np.array([[True, True, True]])
    out = RuleOutput(np.array([0, MIN, 2 * MIN]), [(("instance", "a"),)], fire,
                     np.array([[1.0, 2.0, 2.0]]))
    machine = AlertMachine(spec)
    adv = machine.advance(out)
    rows = {dict(lab)["v"]: [int(x) for x in adv.states[i]]
            for i, lab in enumerate(adv.alert_labels)}
    assert rows == {"1": [2, 0, 0], "2": [0, 2, 2]}
    assert [(dict(t.alert)["v"], t.old, t.new) for t in adv.transitions] == [
        ("1", AlertState.INACTIVE, AlertState.FIRING), ("1", AlertState.FIRING,
                                                        AlertState.INACTIVE),
        ("2", AlertState.INACTIVE, AlertState.FIRING)]


RULES = """
group "api" every 30s {
  labels { team = "payments" severity = "info" }
  alert HighErrorRate {
    when            error_rate > 5
    recover_when    error_rate < 3
    for             2m
    keep_firing_for 5m
    severity        critical
    no_data         nodata
    summary         "Error rate {{ $value }}"
    labels          { team = "api" }
  }
  alert Plain { when up == 0 }
}
"""


def compiled() -> list:  # type: ignore[type-arg]
    result = parse_rule_file(SourceFile("t.rules", RULES))
    assert result.ok, [(d.code, d.message) for d in result.diagnostics]
    return compile_rule_files([result.node]).program.rules


def test_spec_from_rule() -> None:
    high, plain = compiled()
    spec = AlertRuleSpec.from_rule(high, external_url="http://x")
    assert spec.name == "HighErrorRate"
    assert (spec.for_ms, spec.keep_firing_for_ms) == (2 * MIN, 5 * MIN)
    assert dict(spec.labels) == {"team": "api", "severity": "critical"}
    assert spec.annotations == (("summary", "Error rate {{ $value }}"),)
    assert spec.no_data is NoDataPolicy.NODATA and spec.external_url == "http://x"
    other = AlertRuleSpec.from_rule(plain)
    assert dict(other.labels) == {"team": "payments", "severity": "info"}
    assert (other.for_ms, other.no_data) == (0, NoDataPolicy.RESOLVE)


def test_spec_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        AlertRuleSpec("X", for_ms=-1)
    with pytest.raises(ValueError, match="at least 1"):
        AlertRuleSpec("X", flap_window=0)


def series(labels: dict[str, str], points: dict[int, float]) -> Series:
    return Series.of(tuple(sorted(labels.items())), [(t * MIN, v) for t, v in points.items()])


def test_rule_output_from_results() -> None:
    steps = np.arange(5, dtype=np.int64) * MIN
    lhs = QueryResult("matrix", steps, [
        series({"__name__": "error_rate", "i": "a"}, {0: 6, 1: 4, 2: 2, 4: 7}),
        series({"__name__": "error_rate", "i": "b"}, {0: 1, 1: 1, 2: 1, 4: 1})])
    when = QueryResult("matrix", steps, [series({"i": "a"}, {0: 6, 4: 7})])
    recover = QueryResult("matrix", steps, [
        series({"i": "a"}, {2: 2}), series({"i": "b"}, {0: 1, 1: 1, 2: 1, 4: 1})])
    out = RuleOutput.from_results(steps, when, recover, lhs)
    assert out.labels == [(("i", "a"),), (("__name__", "error_rate"), ("i", "b"))]
    assert out.fire.tolist() == [[True, False, False, False, True], [False] * 5]
    assert out.hold is not None and out.no_data is not None
    assert out.hold.tolist() == [[True, True, False, False, True], [False] * 5]
    assert out.no_data.tolist() == [False, False, False, True, False]
    assert out.value[0].tolist()[:3] == [6.0, 4.0, 2.0] and math.isnan(out.value[0, 3])
    machine = AlertMachine(AlertRuleSpec("High", no_data=NoDataPolicy.RESOLVE))
    adv = machine.advance(out)
    row = adv.alert_labels.index((("alertname", "High"), ("i", "a")))
    assert adv.states[row].tolist() == [2, 2, 0, 0, 2]  # hysteresis keeps it at 4 (< 5)
    only_when = RuleOutput.from_results(steps, when)
    assert only_when.hold is None and only_when.no_data is None


def test_rule_output_rejects_scalars_and_off_grid_points() -> None:
    steps = np.arange(3, dtype=np.int64) * MIN
    with pytest.raises(ValueError, match="must return series"):
        RuleOutput.from_results(steps, QueryResult("scalar", steps))
    off = QueryResult("matrix", steps, [Series.of((("i", "a"),), [(30_000, 1.0)])])
    with pytest.raises(ValueError, match="grid"):
        RuleOutput.from_results(steps, off)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_rule_output_reads_the_evaluators_matrices_as_it_reads_series(seed: int) -> None:
    """The matrices an evaluator result carries give the same output as its series."""
    rng = np.random.default_rng(seed)
    source = MemorySource()
    for i in range(4):  # two metric names with the same other labels: rows that merge
        name = "a" if i % 2 else "b"
        ts = np.arange(0, 20 * MIN, 15_000, dtype=np.int64) + int(rng.integers(1, 5_000))
        keep = rng.random(len(ts)) > 0.3
        labels = labels_of({"__name__": name, "i": str(i // 3)})
        source.add(Series(labels, ts[keep], rng.random(int(keep.sum()))))
    nodes = []
    for text in ('{__name__=~"a|b"} > 0.5', '{__name__=~"a|b"} < 0.3', '{__name__=~"a|b"}'):
        node, _ = compile_expression(text)
        assert node is not None
        nodes.append(node)
    results = evaluate_many(nodes, source, 5 * MIN, 20 * MIN, MIN)
    when, recover, value = (results[n] for n in nodes)
    assert when.grid is not None
    steps = when.steps
    with_grid = RuleOutput.from_results(steps, when, recover, value)
    plain = RuleOutput.from_results(
        steps, *(dataclasses.replace(r, grid=None) for r in (when, recover, value)))
    assert with_grid.labels == plain.labels
    for a, b in ((with_grid.fire, plain.fire), (with_grid.hold, plain.hold),
                 (with_grid.no_data, plain.no_data)):
        assert a is not None and b is not None and a.tolist() == b.tolist()
    np.testing.assert_array_equal(with_grid.value, plain.value)
