"""The thresholds page: comparisons, ranges, percentages and hysteresis."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from monitoring.docgen_conditions import example as ex
from monitoring.docgen_conditions.markdown import (
    Page,
    code,
    fmt,
    function_reference,
    header,
    image,
    worked_example,
)
from monitoring.docgen_conditions.plot import (
    CONTEXT_COLOUR,
    RECOVER_COLOUR,
    Band,
    FigureSpec,
    Level,
    Line,
    Marks,
    Panel,
    Spans,
)
from monitoring.dsl import ir
from monitoring.dsl.compiler import CompiledRule
from monitoring.engine.memory import MemorySource
from monitoring.stdlib.registry import Category

HYSTERESIS_DSL = """
group "hosts" every 1m {
  alert HighCpu {
    when         avg_over_time(cpu_usage_ratio[5m]) > 90%
    recover_when avg_over_time(cpu_usage_ratio[5m]) <= 70%
    for          3m
    severity     warning
    summary      "CPU of {{ $labels.instance }} above 90% for 3 minutes"
  }
}
"""

HYSTERESIS_YAML = """
- name: HighCpu
  group: hosts
  interval: 1m
  condition:
    type: threshold
    metric: cpu_usage_ratio
    window: 5m
    aggregation: avg
    operator: ">"
    value: "90%"
    recovery_value: "70%"     # resolves once the average is <= 70%
  for: 3m
  severity: warning
  summary: "CPU of {{ $labels.instance }} above 90% for 3 minutes"
"""

RANGES = ("outside(temperature_celsius, 18, 27)", "between(battery_charge_ratio, 10%, 20%)")

PERCENT_RULES = """
metric error_rate { type gauge unit percent }

group "units" {
  alert A { when errors_ratio > 5%                           summary "s" }
  alert B { when errors_percent > 5%                         summary "s" }
  alert C { when error_rate > 5%                             summary "s" }
  alert D { when avg_over_time(cpu_usage_ratio[5m]) > 90%    summary "s" }
  alert E { when quantile(95%, latency_seconds) > 0.5        summary "s" }
}
"""
PERCENT_WHY = {
    "A": "the name ends in `_ratio`",
    "B": "the name ends in `_percent`",
    "C": "declared: `metric error_rate { unit percent }`",
    "D": "`avg_over_time` keeps its input's unit",
    "E": "inside `quantile()` a percentage is always a ratio",
    "F": "the YAML threshold says `unit: percent`",
}
PERCENT_YAML = """
- name: F
  condition: {type: threshold, metric: errors, operator: ">", value: "5%", unit: percent}
  summary: s
"""


def page() -> Page:
    """Build the page (compiles and runs its examples)."""
    rule = ex.compile_pair(HYSTERESIS_DSL, HYSTERESIS_YAML)[0]
    hysteresis, text = _hysteresis(rule)
    ranges = _ranges()
    out = header(
        "Threshold conditions",
        "A threshold compares a value with a fixed level: `>`, `<`, `>=`, `<=`, `==`, `!=`, "
        "or a range with `between` and `outside`. Comparisons filter: the condition holds "
        "for the series the comparison keeps, at the steps where it keeps them. Levels may "
        "be written as percentages, resolved by the unit of what they are compared with, "
        "and an alert can resolve at another level than the one it fires at "
        "(`recover_when`, hysteresis), so that a value hovering around the threshold does "
        "not make the alert flap.",
        "the evaluator and the alert state machine",
    )
    out += [*worked_example("Worked example: busy CPU, with hysteresis", HYSTERESIS_DSL,
                            HYSTERESIS_YAML, [rule], "; `recovery_value` becomes the recovery "
                            "condition `<= 70%` (the negation of the comparison, at the "
                            "recovery level)"),
            *text, *image(hysteresis, "CPU threshold with and without a recovery level")]
    out += _ranges_text(ranges)
    out += _percent_table()
    out += ["## Functions and operators", "",
            "Comparison operators `==`, `!=`, `>`, `<`, `>=`, `<=` filter a vector (with "
            "`bool`, they return 0 or 1 instead); see [the language](../language.md#operators). "
            "The range functions:", "",
            *function_reference(Category.CONDITION),
            "Alert fields that shape when a threshold alert fires and resolves "
            "(`for`, `keep_firing_for`, `recover_when`) are described in "
            "[alerts.md](../alerts.md).", ""]
    return Page.of("thresholds.md", out, [hysteresis, ranges])


# ------------------------------------------------------------------ hysteresis


def _cpu(timeline: ex.Timeline) -> MemorySource:
    """A host that gets busy for two hours, its 5m average hovering around 90%."""
    h = timeline.sample_hours()
    r = ex.rng(1)
    base = 0.5 + 0.03 * r.standard_normal(len(h))
    busy = np.clip((h - 1.2) / 0.4, 0, 1) * np.clip((4.4 - h) / 0.4, 0, 1)
    wave = 0.9 + 0.045 * np.sin(2 * np.pi * h / 0.45) + 0.02 * r.standard_normal(len(h))
    values = np.clip(base * (1 - busy) + wave * busy, 0, 1)
    return MemorySource([ex.series("cpu_usage_ratio", {"instance": "web-1", "job": "node"},
                                      timeline.sample_times(), values)])


def _hysteresis(rule: CompiledRule) -> tuple[FigureSpec, list[str]]:
    assert rule.recover is not None and isinstance(rule.condition, ir.Binary)
    timeline = ex.Timeline(hours=6, warmup_ms=5 * ex.MINUTE_MS)
    source = _cpu(timeline)
    x = timeline.x(timeline.steps())
    step_h = timeline.step_ms / ex.HOUR_MS
    value = ex.run(rule.condition.lhs, source, timeline).row(instance="web-1")
    holds = ex.run(rule.condition, source, timeline).present[0]
    raw = Line("cpu_usage_ratio (samples)", timeline.sample_hours(),
               source.all_series()[0].values, colour=CONTEXT_COLOUR, width=0.5)
    avg = Line("avg_over_time(cpu_usage_ratio[5m])", x, value, width=1.4)
    marks = Marks("condition holds", x[holds], value[holds])
    fire = Level("fire: > 90%", 0.9)
    panels = []
    counts = []
    for title, compiled, levels in (
        ("without recover_when: resolves as soon as the average is back under 90%",
         replace(rule, recover=None), [fire]),
        ("with recover_when <= 70%: stays firing until the average is at or below 70%",
         rule, [fire, Level("recover: <= 70%", 0.7, colour=RECOVER_COLOUR)]),
    ):
        _, states = ex.alert_states(compiled, source, timeline)
        spans = ex.intervals(ex.firing(states), x, step_h)
        counts.append(len(spans))
        panels.append(Panel(title, [raw, avg, *levels, marks, Spans("alert firing", spans)],
                            ylabel="CPU", percent=True, ylim=(0.3, 1.02)))
    spec = FigureSpec("thresholds-hysteresis", panels, xticks=range(7))
    text = [f"Over the same six hours of data, the alert fires **{_times(counts[0])}** "
            f"without the recovery condition and **{_times(counts[1])}** with it. Red dots "
            "are the steps where `when` holds; shaded spans are the firing intervals computed "
            "by the alert state machine (`for 3m` delays each start by three minutes).", ""]
    return spec, text


def _times(n: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(n, f"{n} times")


# ------------------------------------------------------------------ ranges


def _ranges() -> FigureSpec:
    temp_line = ex.Timeline(hours=24, scrape_ms=ex.MINUTE_MS, step_ms=5 * ex.MINUTE_MS)
    h = temp_line.sample_hours()
    r = ex.rng(2)
    temp = 22 + 2.0 * np.sin(2 * np.pi * (h - 9) / 24) + 0.3 * r.standard_normal(len(h))
    temp += 8.0 * np.exp(-(((h - 15) / 0.8) ** 2))   # cooling failure in the afternoon
    temp -= 6.0 * np.exp(-(((h - 5) / 0.6) ** 2))    # a door left open at night
    battery_line = ex.Timeline(hours=24, scrape_ms=ex.MINUTE_MS, step_ms=5 * ex.MINUTE_MS)
    charge = np.clip(np.interp(h, [0, 6, 14, 20, 24], [1.0, 1.0, 0.04, 0.85, 1.0]), 0, 1)
    charge = np.clip(charge + 0.003 * r.standard_normal(len(h)), 0, 1)
    source = MemorySource([
        ex.series("temperature_celsius", {"room": "server-room"}, temp_line.sample_times(),
                  temp),
        ex.series("battery_charge_ratio", {"ups": "ups-1"}, battery_line.sample_times(),
                  charge),
    ])
    x = temp_line.x(temp_line.steps())
    panels = []
    for text, metric, band, percent, unit in (
        (RANGES[0], "temperature_celsius", (18.0, 27.0), False, "°C"),
        (RANGES[1], "battery_charge_ratio", (0.1, 0.2), True, "charge"),
    ):
        node = ex.expression(text)
        value = ex.run(ex.expression(metric), source, temp_line).values[0]
        held = ex.run(node, source, temp_line)
        holds = held.present[0]
        lo, hi = band
        shown = f"{fmt(lo * 100)}% .. {fmt(hi * 100)}%" if percent else f"{fmt(lo)} .. {fmt(hi)}"
        panels.append(Panel(text, [
            Line(metric, x, value),
            Band(f"range {shown}", lo, hi),
            Marks("condition holds", x[holds], value[holds]),
        ], ylabel=unit, percent=percent))
    return FigureSpec("thresholds-ranges", panels, xticks=range(0, 25, 3))


def _ranges_text(spec: FigureSpec) -> list[str]:
    return ["## Ranges: `between` and `outside`", "",
            "`between(v, min, max)` keeps the samples with min ≤ value ≤ max and "
            "`outside(v, min, max)` those below min or above max. Both keep the metric "
            "name, like a comparison. A server room should stay between 18 and 27 °C; a "
            "UPS battery between 10% and 20% deserves a warning (below 10%, a page):", "",
            *code("\n".join(f"when {e}" for e in RANGES)),
            "The seed's YAML has no range operator; write these with `type: expr`:", "",
            *code("\n".join([
                "- name: ServerRoomTemperature",
                "  condition:",
                "    type: expr",
                f'    expr: "{RANGES[0]}"',
                "  severity: warning",
            ]), "yaml"),
            *image(spec, "between and outside over a day of data")]


# ------------------------------------------------------------------ percentages


def _percent_table() -> list[str]:
    rules = ex.compile_rules("units.rules", PERCENT_RULES)
    rules += ex.compile_rules("alert_rules.yaml", PERCENT_YAML)
    out = ["## Percentages", "",
           "`5%` means 0.05 next to a ratio and 5 next to a percentage. The unit comes from "
           "a metric declaration, the naming convention (`_ratio`, `_percent`) or a YAML "
           "threshold's `unit:`, and follows the value through functions that keep it. "
           "When it cannot be known, `monitoring lint` reports "
           "[`unit/ambiguous-percent`](../checks.md#unitambiguous-percent) instead of "
           "guessing. What the compiler makes of these conditions:", "",
           "| condition | compiles to | because |", "| --- | --- | --- |"]
    for rule in rules:
        node = rule.rule
        written = node.expr.span.text() if node.expr is not None and node.expr.span else ""
        out.append(f"| `{written}` | `{ir.describe(rule.condition)}` | "
                   f"{PERCENT_WHY[rule.name]} |")
    return [*out, ""]
