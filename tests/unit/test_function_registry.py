"""Every declared function runs in both evaluators, and the two agree on it.

The registry (monitoring/stdlib) declares each function once; the fast
evaluator and the reference evaluator implement them separately. This test
builds one call of every function (every ``method`` of ``anomaly``) from its
declaration alone, runs it as a range query in both, and requires the same
result, so a declaration without an implementation, or an implementation that
drifts from its twin, cannot go unnoticed.
"""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_expression
from monitoring.engine.memory import MemorySource
from monitoring.engine.model import EvalError, Series, labels_of
from monitoring.engine.promqltest import almost_equal, evaluator_by_name
from monitoring.stdlib import REGISTRY
from monitoring.stdlib.registry import FunctionDecl
from monitoring.stdlib.types import ValueType

NOT_EVALUATED = {
    "info": "experimental in Prometheus; the checker and the linter know it, no evaluator runs it",
}
"""Declared functions that no evaluator runs, and why (the evaluators say so clearly)."""

REFERENCE_GAPS = {
    "histogram_fraction": "reads native histograms only",
}
"""Functions the reference evaluator does not implement, and why."""

MIN = 60_000
START, END, STEP = 90 * MIN, 120 * MIN, MIN


def _source() -> MemorySource:
    """Gauges with noise, a trend, a daily-ish wave and a spike, sampled every 15 s."""
    rng = np.random.default_rng(7)
    source = MemorySource()
    ts = np.arange(0, END + MIN, 15_000, dtype=np.int64) + 1_000
    for i, job in enumerate(["a", "a", "b", "b", "b"]):
        values = (10 + i + 0.002 * i * ts / 1000 + np.sin(ts / 600_000.0)
                  + rng.normal(0, 0.3, len(ts)))
        values[len(ts) - 20 - 7 * i] += 6
        labels = labels_of({"__name__": "g", "job": job, "instance": str(i), "le": str(i)})
        source.add(Series(labels, ts, values))
    return source


def _calls(decl: FunctionDecl) -> list[str]:
    """One call per string choice, built from the required parameters."""
    args: list[str] = []
    choice_sets: list[tuple[str, ...]] = [()]
    for p in decl.params:
        if p.optional or p.variadic:
            if p.choices:
                choice_sets = [p.choices]
                args.append("{choice}")
            continue
        if p.type is ValueType.VECTOR:
            args.append("g")
        elif p.type is ValueType.MATRIX:
            args.append("g[10m]")
        elif p.type is ValueType.SCALAR:
            args.append("0.5")
        else:
            args.append('"job"')
    template = f"{decl.name}({', '.join(args)})"
    choices = choice_sets[0]
    if not choices:
        return [template]
    return [template.replace("{choice}", f'"{c}"') for c in choices]


NEEDS_MORE = {'anomaly(g[10m], "seasonal")': 'anomaly(g[10m], "seasonal", 120)'}
"""Calls whose required-only form is refused at run time, and the call used instead."""

CALLS = [(decl.name, NEEDS_MORE.get(call, call)) for decl in REGISTRY.functions.values()
         for call in _calls(decl)]


@pytest.mark.parametrize(("name", "call"), CALLS, ids=[c for _, c in CALLS])
def test_both_evaluators_implement_and_agree(name: str, call: str) -> None:
    node, diagnostics = compile_expression(call)
    assert node is not None, f"{call}: {[d.message for d in diagnostics]}"
    source = _source()
    if name in NOT_EVALUATED:
        for engine in ("fast", "reference"):
            with pytest.raises(EvalError, match="not supported"):
                evaluator_by_name(engine)(node, source, START, END, STEP)
        return
    fast = evaluator_by_name("fast")(node, source, START, END, STEP)
    if name in REFERENCE_GAPS:
        with pytest.raises(EvalError, match="not supported by the reference evaluator"):
            evaluator_by_name("reference")(node, source, START, END, STEP)
        return
    ref = evaluator_by_name("reference")(node, source, START, END, STEP)
    f_series = [s for s in fast.series if len(s.ts)]
    r_series = [s for s in ref.series if len(s.ts)]
    assert [s.labels for s in f_series] == [s.labels for s in r_series], call
    for fs, rs in zip(f_series, r_series, strict=True):
        assert fs.ts.tolist() == rs.ts.tolist(), f"{call}: {dict(fs.labels)}"
        for fv, rv in zip(fs.values.tolist(), rs.values.tolist(), strict=True):
            assert almost_equal(rv, fv), f"{call}: {dict(fs.labels)} {fv} != {rv}"


def test_every_function_has_a_call() -> None:
    assert {name for name, _ in CALLS} == set(REGISTRY.functions)


def test_a_seasonal_method_without_a_season_is_refused_clearly() -> None:
    node, diagnostics = compile_expression('anomaly(g[10m], "seasonal")')
    assert node is None
    assert [d.code for d in diagnostics] == ["type/missing-argument"]
    assert diagnostics[0].message == 'anomaly() with method="seasonal" needs a season'
    # The evaluators refuse it too, should a caller build the node without the checker.
    node, _ = compile_expression('anomaly(g[10m], "seasonal", 120)')
    assert isinstance(node, ir.Call)
    node = ir.Call(node.func, (*node.args[:2], ir.Const(0.0)))
    for engine in ("fast", "reference"):
        with pytest.raises(EvalError, match='method "seasonal" needs a season'):
            evaluator_by_name(engine)(node, _source(), START, END, STEP)
