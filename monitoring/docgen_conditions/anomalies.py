"""The anomalies page: every ``anomaly()`` method on one series, and ``outlier_score``."""

from __future__ import annotations

import numpy as np

from monitoring.docgen_conditions import example as ex
from monitoring.docgen_conditions.markdown import (
    Page,
    fmt,
    function_reference,
    header,
    image,
    minutes_text,
    worked_example,
)
from monitoring.docgen_conditions.plot import (
    CONTEXT_COLOUR,
    PALETTE,
    FigureSpec,
    Level,
    Line,
    Marks,
    Panel,
    Spans,
)
from monitoring.engine.anomaly_math import QUANTILE, Z_QUANTILE
from monitoring.engine.memory import MemorySource
from monitoring.stdlib.conditions import ANOMALY_METHODS
from monitoring.stdlib.registry import Category

DSL = """
group "api" every 1m {
  alert LatencyAnomaly {
    when     anomaly(latency_p99_seconds{job="api"}[1h], method="mad") > 3.5
    for      2m
    severity warning
    summary  "p99 latency of {{ $labels.job }} is unusual (score {{ $value }})"
  }
}
"""

YAML = """
- name: LatencyAnomaly
  group: api
  interval: 1m
  condition:
    type: anomaly
    metric: 'latency_p99_seconds{job="api"}'
    window: 1h
    method: mad                # zscore | mad | ewma | seasonal | quantile | ensemble
    threshold: 3.5             # default 3
  for: 2m
  severity: warning
  summary: "p99 latency of {{ $labels.job }} is unusual (score {{ $value }})"
"""

METRIC = 'latency_p99_seconds{job="api"}'
SEASON_WINDOW = "3d"
SEASONAL = ("seasonal", "ensemble")
THRESHOLD = 3.0
SPIKE_H = (10.0, 10.1)
"""The planted spike: 6 minutes, hours after the plot's start."""
SHIFT_H = 18.0
"""The planted level shift: from this hour to the end."""
PLOT_HOURS = 30


def _ordinal(value: float) -> str:
    """``1st``, ``2nd``, ``99th``, ``97.5th``."""
    text = fmt(value)
    last = {"1": "st", "2": "nd", "3": "rd"}.get(text[-1], "th")
    return text + ("th" if text.endswith(("11", "12", "13")) else last)


ROLE = {
    "zscore": "distance from the mean of the window's earlier samples, in standard deviations",
    "mad": "distance from their median in robust standard deviations (1.4826 × MAD), so "
           "outliers earlier in the window hardly widen the band",
    "ewma": "distance from an exponentially weighted mean, in exponentially weighted standard "
            "deviations: recent samples weigh most, so the band follows the level",
    "seasonal": "the change from the sample one season earlier, scored like `mad` against the "
                "window's earlier changes: the same time of day is the baseline",
    "quantile": f"distance from the median, measured against the window's "
                f"{_ordinal(100 * (1 - QUANTILE))} to {_ordinal(100 * QUANTILE)} percentile band "
                f"and scaled so that the band's edge scores {Z_QUANTILE:.2f}, as a z-score would",
    "ensemble": "how far the value and (with a season) its change from a season earlier "
                "break out of the ranges they had in the window (3 at the edge); the higher "
                "of the two, capped at 3 while a record keeps being broken",
}
PEER_EXPR = 'outlier_score(cpu_usage_ratio, "cluster")'
PEERS = tuple(f"web-{i}" for i in range(1, 9))
DRIFTING = "web-4"
DRIFT_H = 2.5
SCORE_TOP = 12.0
"""Scores are drawn up to this; higher ones at this height (the spike scores 20 and more)."""


def call(method: str) -> str:
    """The ``anomaly()`` call of ``method`` on the example series.

    The methods that compare with the same time a season ago get a window of
    three seasons; the others look at the last hour.
    """
    if method in SEASONAL:
        return f'anomaly({METRIC}[{SEASON_WINDOW}], method="{method}", season=1d)'
    return f'anomaly({METRIC}[1h], method="{method}")'


def page() -> Page:
    """Build the page (compiles and runs its examples)."""
    rule = ex.compile_pair(DSL, YAML)[0]
    methods, table = _methods_figure()
    peers, peer_text = _peers_figure()
    out = header(
        "Anomaly conditions",
        "An anomaly condition fires on values that are unusual for *this* series, where "
        "no fixed threshold fits: the level moves with the time of day, differs between "
        "services, or drifts. `anomaly(v[W], method=...)` scores the newest sample against "
        "the window before it, using only past data (so it works the same live and in a "
        "backtest), and the score is comparable across methods: about 3 and above is "
        "unusual. `outlier_score` compares each series with its peers at the same time "
        "instead of with its own past.",
        "the evaluator",
    )
    out += [*worked_example("Worked example: unusual API latency", DSL, YAML, [rule]),
            "## The methods on one series", "",
            "Every method judges the window's newest sample against the window's earlier "
            "samples only, so its threshold adapts as the series moves; all return a score on "
            "one scale:", "",
            *[f"- `{m}`: {ROLE[m]}." for m in ANOMALY_METHODS], "",
            "Below, each method runs on the same series as "
            f"`{call('METHOD').replace('METHOD', '...')}`, and "
            + " and ".join(f"`{m}` as `{call(m)}`" for m in SEASONAL) + ".", "",
            f"The series below is a p99 latency with a daily rhythm and noise, with a "
            f"{minutes_text(round((SPIKE_H[1] - SPIKE_H[0]) * 60))} spike at hour "
            f"{fmt(SPIKE_H[0])} and a lasting level shift at hour {fmt(SHIFT_H)} planted "
            f"in it. Each panel is one method's score (drawn up to {fmt(SCORE_TOP)}); the dots "
            f"are the steps where it is above {fmt(THRESHOLD)}.", "",
            *image(methods, "anomaly scores of every method on one series"),
            *table,
            "## Outliers among peers: `outlier_score`", "",
            f"`{PEER_EXPR} > 3` scores each series against the others of its cluster at the "
            "same step: |x - median| / (1.4826 × MAD) across the group. It needs no history, "
            "so it catches one instance drifting away from identical siblings even when "
            "the whole cluster's load moves.", "",
            *peer_text,
            *image(peers, "outlier_score across six peer instances"),
            "## Functions", "",
            *function_reference(Category.ANOMALY),
            "What each method computes, why its settings are what they are, and how the "
            "methods score on the Numenta Anomaly Benchmark: "
            "[anomaly-methods.md](../anomaly-methods.md).", ""]
    return Page.of("anomalies.md", out, [methods, peers])


# ------------------------------------------------------------------ anomaly()


def _latency(timeline: ex.Timeline, spike: bool = True) -> MemorySource:
    """A daily rhythm plus noise, with a spike (unless not wanted) and a level shift planted."""
    h = timeline.sample_hours()
    r = ex.rng(7)
    clock = h + timeline.warmup_ms / ex.HOUR_MS
    values = 0.20 + 0.05 * np.sin(2 * np.pi * (clock - 9) / 24) \
        + 0.01 * r.standard_normal(len(h))
    values = values + 0.25 * spike * ((h >= SPIKE_H[0]) & (h < SPIKE_H[1]))
    values = values + 0.08 * (h >= SHIFT_H)
    return MemorySource([ex.series("latency_p99_seconds", {"job": "api"},
                                   timeline.sample_times(), values)])


def _methods_figure() -> tuple[FigureSpec, list[str]]:
    timeline = ex.Timeline(hours=PLOT_HOURS, scrape_ms=ex.MINUTE_MS,
                           warmup_ms=3 * 24 * ex.HOUR_MS)
    source = _latency(timeline)
    x = timeline.x(timeline.steps())
    value = ex.run(ex.expression(METRIC), source, timeline).values[0]
    planted = Spans("planted anomaly", [SPIKE_H, (SHIFT_H, float(PLOT_HOURS))],
                    colour=CONTEXT_COLOUR, alpha=0.12)
    panels = [Panel(METRIC, [planted, Line("latency_p99_seconds", x, value)], ylabel="seconds",
                    height=1.6)]
    spike = (x >= SPIKE_H[0]) & (x < SPIKE_H[1] + 1.0)  # the hour after it still counts
    shift = x >= SHIFT_H
    rows = ["| method | window | spike: first step over 3 | shift: first step over 3 "
            "| shift: steps over 3 | steps over 3 elsewhere |",
            "| --- | --- | --- | --- | --- | --- |"]
    missed = {}
    for method in ANOMALY_METHODS:
        score = ex.run(ex.expression(call(method)), source, timeline).values[0]
        over = score > THRESHOLD
        missed[method] = not (over & shift).any()
        panels.append(Panel(method, [
            planted,
            Line("score", x, np.minimum(score, SCORE_TOP), width=0.9),
            Level(f"{fmt(THRESHOLD)}", THRESHOLD),
            Marks("score > 3", x[over], np.minimum(score[over], SCORE_TOP), size=5),
        ], ylabel="score", ylim=(0, SCORE_TOP * 1.05), height=1.25,
            legend=method == ANOMALY_METHODS[0]))
        window = SEASON_WINDOW if method in SEASONAL else "1h"
        rows.append(f"| `{method}` | {window} | {_delay(over, x, SPIKE_H[0], spike)} "
                    f"| {_delay(over, x, SHIFT_H, shift)} | {int((over & shift).sum())} "
                    f"| {int((over & ~spike & ~shift).sum())} |")
    text = [f"The plot has {len(x)} steps, one a minute. \"Elsewhere\" is away from both "
            "planted anomalies (the hour after the spike counts as the spike's). A method "
            "that judges the newest sample against its window adapts to a new level as the "
            "window fills with it, so a lasting shift is news only until then; `seasonal` "
            "compares each sample with the same time a season earlier, so the shift stays "
            "unusual for as long as the window holds days before it.", "", *rows, "",
            *_ensemble_note(missed["ensemble"], timeline, shift)]
    return FigureSpec("anomalies-methods", panels, xticks=range(0, PLOT_HOURS + 1, 3)), text


def _ensemble_note(missed: bool, timeline: ex.Timeline, shift: ex.BoolArray) -> list[str]:
    """Why the ensemble misses the shift, checked on the same data without the spike."""
    if not missed:
        return []
    score = ex.run(ex.expression(call("ensemble")), _latency(timeline, spike=False),
                   timeline).values[0]
    best = float(np.nanmax(score[shift]))
    if best <= THRESHOLD:
        return []
    return ["The `ensemble` scores what breaks the range of its window. The spike earlier in "
            "the window set a range the shift stays inside, so the shift is no news to it: "
            f"on the same data without the spike, its score at the shift reaches {best:.1f}.",
            ""]


def _delay(over: ex.BoolArray, x: ex.FloatArray, at_h: float, window: ex.BoolArray) -> str:
    """Minutes from a planted anomaly to the first step over the threshold in its window."""
    hits = np.flatnonzero(over & window)
    if not len(hits):
        return "not flagged"
    minutes = round((x[hits[0]] - at_h) * 60)
    return "at once" if minutes == 0 else f"after {minutes_text(minutes)}"


# ------------------------------------------------------------------ outlier_score


def _peers_figure() -> tuple[FigureSpec, list[str]]:
    timeline = ex.Timeline(hours=6)
    h = timeline.sample_hours()
    times = timeline.sample_times()
    r = ex.rng(8)
    load = 0.45 + 0.2 * np.sin(2 * np.pi * h / 6)
    series = []
    for inst in PEERS:
        values = load + 0.01 * r.standard_normal(len(h))
        if inst == DRIFTING:
            values = values + 0.05 * np.clip((h - DRIFT_H) / 0.5, 0, 1)
        series.append(ex.series("cpu_usage_ratio", {"instance": inst, "cluster": "eu-1"},
                                times, np.clip(values, 0, 1)))
    source = MemorySource(series)
    x = timeline.x(timeline.steps())
    usage = ex.run(ex.expression("cpu_usage_ratio"), source, timeline)
    scores = ex.run(ex.expression(PEER_EXPR), source, timeline)
    legend = {DRIFTING: f"instance=\"{DRIFTING}\"", PEERS[0]: "the other instances"}
    lines: list[Line | Level | Marks] = [_peer_line(legend.get(inst, "_nolegend_"), inst, x,
                                                    usage.row(instance=inst)) for inst in PEERS]
    score_lines: list[Line | Level | Marks] = [Level("3", 3.0)]
    flagged: dict[str, int] = {}
    for inst in PEERS:
        score = scores.row(instance=inst)
        over = score > 3
        flagged[inst] = int(over.sum())
        score_lines.append(_peer_line("_nolegend_", inst, x, score))
        score_lines.append(Marks("score > 3" if inst == PEERS[0] else "_nolegend_",
                                 x[over], score[over], size=5))
    before = int((scores.row(instance=DRIFTING)[x < DRIFT_H] > 3).sum())
    others = [inst for inst in PEERS if inst != DRIFTING]
    other_steps = sum(flagged[inst] for inst in others)
    longest = max(_longest_run(scores.row(instance=inst) > 3) for inst in others)
    text = [f"Of {len(x)} steps, {DRIFTING}'s score is over 3 at {flagged[DRIFTING]}, "
            f"{before} of them before it starts drifting at hour {fmt(DRIFT_H)}. The "
            f"{len(others)} other instances together are over 3 at {other_steps} steps, "
            f"at most {longest} in a row: with few peers the median and the MAD are "
            "themselves noisy, and `for 5m` on the alert (or a higher threshold) keeps such "
            "short runs from firing.", ""]
    return FigureSpec("anomalies-outlier-score", [
        Panel("cpu_usage_ratio{cluster=\"eu-1\"}", lines, ylabel="CPU", percent=True),
        Panel(f"{PEER_EXPR} (axis cut at {fmt(SCORE_TOP)})", score_lines, ylabel="score",
              ylim=(0, SCORE_TOP)),
    ], xticks=range(7)), text


def _peer_line(label: str, inst: str, x: ex.FloatArray, y: ex.FloatArray) -> Line:
    """The drifting instance in colour, its peers in grey."""
    if inst == DRIFTING:
        return Line(label, x, y, colour=PALETTE[0], width=1.2)
    return Line(label, x, y, colour=CONTEXT_COLOUR, width=0.6)


def _longest_run(mask: ex.BoolArray) -> int:
    """The length of the longest run of True."""
    best = run = 0
    for flag in mask.tolist():
        run = run + 1 if flag else 0
        best = max(best, run)
    return best
