"""The composites page: ``and``, ``or``, ``unless`` with label matching, and ``weighted``."""

from __future__ import annotations

import numpy as np

from monitoring.docgen_conditions import example as ex
from monitoring.docgen_conditions.markdown import Page, code, fmt, header, image, worked_example
from monitoring.docgen_conditions.plot import (
    CONTEXT_COLOUR,
    FigureSpec,
    Level,
    Line,
    Marks,
    Panel,
    Spans,
)
from monitoring.engine.memory import MemorySource

DSL = """
group "hosts" every 1m {
  alert CpuAndMemory {
    when     cpu_usage_ratio > 90% and memory_usage_ratio > 80%
    severity warning
    summary  "{{ $labels.instance }} is short of CPU and memory"
  }
  alert HostPressure {
    when     weighted(0.6: cpu_usage_ratio > 90%, 0.4: memory_usage_ratio > 80%) >= 0.5
    severity warning
    summary  "{{ $labels.instance }} is under pressure (score {{ $value }})"
  }
}
"""

YAML = """
- name: CpuAndMemory
  group: hosts
  interval: 1m
  condition:
    type: composite
    operator: AND              # or OR
    conditions:
      - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: "90%"}
      - {type: threshold, metric: memory_usage_ratio, operator: ">", value: "80%"}
  severity: warning
  summary: "{{ $labels.instance }} is short of CPU and memory"

- name: HostPressure
  group: hosts
  condition:
    type: composite            # with weights: weighted(...) >= threshold
    weights: [0.6, 0.4]
    threshold: 0.5
    conditions:
      - {type: threshold, metric: cpu_usage_ratio, operator: ">", value: "90%"}
      - {type: threshold, metric: memory_usage_ratio, operator: ">", value: "80%"}
  severity: warning
  summary: "{{ $labels.instance }} is under pressure (score {{ $value }})"
"""

SET_OPERATORS = (
    ("and", "cpu_usage_ratio > 90% and memory_usage_ratio > 80%"),
    ("or", "cpu_usage_ratio > 90% or memory_usage_ratio > 80%"),
    ("unless", "cpu_usage_ratio > 90% and memory_usage_ratio > 80% "
               "unless on(instance) maintenance_mode == 1"),
)
WEIGHTED = "weighted(0.6: cpu_usage_ratio > 90%, 0.4: memory_usage_ratio > 80%)"
INSTANCES = ("web-1", "web-2")


def page() -> Page:
    """Build the page (compiles and runs its examples)."""
    rules = ex.compile_pair(DSL, YAML)
    timeline = ex.Timeline(hours=6)
    source = _hosts(timeline)
    sets = _set_figure(source, timeline)
    weighted, summary = _weighted_figure(source, timeline)
    out = header(
        "Composite conditions",
        "A composite combines conditions: `and` (both hold), `or` (either holds), "
        "`unless` (the first holds and the second does not), and `weighted(...)`, which "
        "scores a label set by the weights of the conditions that hold for it, so that "
        "several weak signals together can fire an alert that none fires alone. "
        "Composites nest: any condition, composites included, can be a part.",
        "the evaluator",
    )
    out += [*worked_example("Worked examples", DSL, YAML, rules,
                            ": `composite` with `operator: AND|OR`, or with `weights` (one per "
                            "condition, in order) and `threshold` (default 0.5); `operator` is "
                            "ignored when `weights` are given"),
            "## `and`, `or`, `unless` and label matching", "",
            "Set operators match series by their labels without the metric name: "
            "`cpu_usage_ratio{instance=\"web-1\", job=\"node\"}` pairs with "
            "`memory_usage_ratio{instance=\"web-1\", job=\"node\"}`. When the two sides carry "
            "different labels, say which ones identify a pair with `on(...)` (or which to "
            "disregard with `ignoring(...)`). Here `maintenance_mode` comes from an inventory "
            "with the label `source=\"cmdb\"` and no `job`, so it is matched `on(instance)`:",
            "", *code("\n".join(text for _, text in SET_OPERATORS)),
            "`and` and `unless` bind equally tightly and group from the left, so the last "
            "line is `(cpu and memory) unless maintenance`. In the seed's YAML, `and` and "
            "`or` are `composite` conditions; `unless` and `on(...)` need `type: expr`.", "",
            *image(sets, "and, or and unless over two hosts"),
            "## Weighted composites", "",
            f"`{WEIGHTED} >= 0.5` gives each label set the sum of the weights of the "
            "conditions that hold for it: 0.6 for CPU alone (enough), 0.4 for memory "
            "alone (not enough), 1 for both. A label set for which no condition holds has "
            "no value at that step (there is no series left to report a 0 for).", "",
            *summary,
            *image(weighted, "weighted composite score over two hosts"),
            "## Reference", "",
            "- Set operators, precedence and vector matching: "
            "[the language](../language.md#operators).",
            "- `weighted(w1: c1, w2: c2, ...)`: "
            "[the language](../language.md#conditions-our-extensions).",
            "- The seed's `composite` condition: "
            "[the seed's YAML](../language.md#the-seeds-yaml-alert_rulesyaml); "
            "`monitoring schema alert_rules` prints its JSON Schema.", ""]
    return Page.of("composites.md", out, [sets, weighted])


def _hosts(timeline: ex.Timeline) -> MemorySource:
    """Two hosts: CPU and memory busy at overlapping times; web-2 in maintenance for an hour."""
    h = timeline.sample_hours()
    times = timeline.sample_times()
    r = ex.rng(3)

    def bumps(level: float, spans: list[tuple[float, float]]) -> ex.FloatArray:
        out = np.full(len(h), level)
        for lo, hi in spans:
            up = np.clip((h - lo) / 0.15, 0, 1) * np.clip((hi - h) / 0.15, 0, 1)
            out += (0.97 - level) * up
        return out + 0.015 * r.standard_normal(len(h))

    cpu = {"web-1": bumps(0.55, [(0.8, 2.4), (4.0, 5.0)]), "web-2": bumps(0.5, [(2.9, 4.1)])}
    mem = {"web-1": bumps(0.6, [(1.8, 3.0), (4.3, 5.5)]), "web-2": bumps(0.55, [(3.1, 3.9)])}
    series = []
    for inst in INSTANCES:
        node = {"instance": inst, "job": "node"}
        series.append(ex.series("cpu_usage_ratio", node, times, np.clip(cpu[inst], 0, 1)))
        series.append(ex.series("memory_usage_ratio", node, times, np.clip(mem[inst], 0, 1)))
        maintenance = ((h >= 2.8) & (h < 4.2)) if inst == "web-2" else np.zeros(len(h), bool)
        series.append(ex.series("maintenance_mode", {"instance": inst, "source": "cmdb"},
                                times, maintenance.astype(float)))
    return MemorySource(series)


def _set_figure(source: MemorySource, timeline: ex.Timeline) -> FigureSpec:
    x = timeline.x(timeline.steps())
    step_h = timeline.step_ms / ex.HOUR_MS
    panels = []
    for metric, level in (("cpu_usage_ratio", 0.9), ("memory_usage_ratio", 0.8)):
        grid = ex.run(ex.expression(metric), source, timeline)
        lines = [Line(f"{metric}{{instance=\"{i}\"}}", x, grid.row(instance=i))
                 for i in INSTANCES]
        panels.append(Panel(metric, [*lines, Level(f"> {fmt(level * 100)}%", level)],
                            ylabel="usage", percent=True, ylim=(0.3, 1.02), height=1.9))
    maintenance = ex.run(ex.expression("maintenance_mode == 1"), source, timeline)
    rows: list[ex.BoolArray] = []
    labels: list[str] = []
    for op, text in SET_OPERATORS:
        grid = ex.run(ex.expression(text), source, timeline)
        for inst in INSTANCES:
            rows.append(_holds(grid, inst))
            labels.append(f"{op}: {inst}")
    ys = list(range(len(rows)))[::-1]
    marks = [Marks("condition holds" if k == 0 else "_nolegend_", x[held],
                   np.full(int(held.sum()), float(y)), size=6)
             for k, (held, y) in enumerate(zip(rows, ys, strict=True))]
    spans = Spans("web-2 in maintenance",
                  ex.intervals(_holds(maintenance, "web-2"), x, step_h),
                  colour=CONTEXT_COLOUR, alpha=0.15)
    panels.append(Panel("where each composite holds, per instance", [spans, *marks],
                        ylabel="", ylim=(-0.7, len(rows) - 0.3), yticks=ys,
                        yticklabels=labels, height=2.2))
    return FigureSpec("composites-set-operators", panels, xticks=range(7))


def _holds(grid: ex.Grid, instance: str) -> ex.BoolArray:
    """Steps where any result series of ``instance`` is present (``or`` may give several)."""
    rows = [i for i, labels in enumerate(grid.labels) if ("instance", instance) in labels]
    out: ex.BoolArray = np.asarray(grid.present[rows].any(axis=0))
    return out


def _value(grid: ex.Grid, instance: str) -> ex.FloatArray:
    """The value of the one series of ``instance`` (NaN where absent, all NaN if none)."""
    out: ex.FloatArray = np.full(grid.values.shape[1], np.nan)
    for i, labels in enumerate(grid.labels):
        if ("instance", instance) in labels:
            out = np.where(grid.present[i], grid.values[i], out)
    return out


def _weighted_figure(source: MemorySource, timeline: ex.Timeline
                     ) -> tuple[FigureSpec, list[str]]:
    x = timeline.x(timeline.steps())
    score = ex.run(ex.expression(WEIGHTED), source, timeline)
    fires = ex.run(ex.expression(f"{WEIGHTED} >= 0.5"), source, timeline)
    lines: list[Line | Level | Marks] = []
    marks: list[Marks] = []
    minutes = []
    for inst in INSTANCES:
        value = _value(score, inst)
        lines.append(Line(f"instance=\"{inst}\"", x, value, steps=True, width=1.4))
        held = _holds(fires, inst)
        marks.append(Marks("_nolegend_" if marks else "condition holds", x[held], value[held]))
        minutes.append((inst, int(held.sum()) * timeline.step_ms // ex.MINUTE_MS))
    lines += [Level(">= 0.5", 0.5), *marks]
    panel = Panel(WEIGHTED, lines, ylabel="score", ylim=(-0.05, 1.1),
                  yticks=[0, 0.4, 0.5, 0.6, 1.0], height=2.2)
    summary = ["Over these six hours the condition holds for "
               + " and ".join(f"{m} minutes on {inst}" for inst, m in minutes)
               + "; `cpu_usage_ratio > 90% and memory_usage_ratio > 80%` would hold only "
               "where both do (the score is 1).", ""]
    return FigureSpec("composites-weighted", [panel], xticks=range(7)), summary
