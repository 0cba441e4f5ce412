"""The trends page: ``trend()``'s direction test, linear and seasonal forecasts."""

from __future__ import annotations

import numpy as np

from monitoring.docgen_conditions import example as ex
from monitoring.docgen_conditions.markdown import (
    Page,
    code,
    fmt,
    function_reference,
    header,
    image,
    minutes_text,
    worked_example,
)
from monitoring.docgen_conditions.plot import (
    BAND_COLOUR,
    CONTEXT_COLOUR,
    FLAG_COLOUR,
    FigureSpec,
    Level,
    Line,
    Marks,
    Panel,
)
from monitoring.engine.memory import MemorySource
from monitoring.stdlib.registry import Category

DSL = """
group "storage" every 5m {
  alert DiskFillingUp {
    when     trend(disk_used_ratio[6h], confidence=0.99, min_change=5%) == increasing
    for      30m
    severity info
    summary  "{{ $labels.device }} keeps filling up"
  }
}
"""

YAML = """
- name: DiskFillingUp
  group: storage
  interval: 5m
  condition:
    type: trend
    metric: disk_used_ratio
    direction: increasing      # or decreasing, flat
    window: 6h
    confidence: 0.99
    min_change: 0.05           # of the fitted line over the window (5 points of a ratio)
  for: 30m
  severity: info
  summary: "{{ $labels.device }} keeps filling up"
"""

TREND = "trend(disk_used_ratio[6h], confidence=0.99, min_change=5%)"
LINEAR = "forecast(disk_used_ratio[6h], 4h)"
SEASONAL_WINDOW = "http_requests_per_second[3d]"
SEASONAL_MAX = f"forecast_max({SEASONAL_WINDOW}, 12h, season=1d)"
CAPACITY = 900.0
DEVICES = ("sda", "sdb", "sdc")
DIRECTIONS = (("increasing", 1.0, FLAG_COLOUR), ("flat", 0.0, CONTEXT_COLOUR),
              ("decreasing", -1.0, BAND_COLOUR))


def page() -> Page:
    """Build the page (compiles and runs its examples)."""
    rule = ex.compile_pair(DSL, YAML)[0]
    directions, counts = _direction_figure()
    linear, lead = _linear_figure()
    seasonal, early = _seasonal_figure()
    out = header(
        "Trend conditions and forecasts",
        "A trend condition asks where a series is going rather than where it is: "
        "`trend()` says whether it rises, falls or stays flat over a window, with a "
        "significance test so that noise is not called a trend; `forecast()` extrapolates "
        "it (a straight line, or Holt-Winters with a daily or weekly season) and "
        "`forecast_max()` / `forecast_min()` ask whether it will cross a level within a "
        "horizon, so that an alert can fire before a disk is full or before the daily "
        "peak exceeds capacity.",
        "the evaluator",
    )
    out += [*worked_example("Worked example: a disk that keeps filling up", DSL, YAML, [rule]),
            "`increasing`, `decreasing` and `flat` are names for 1, -1 and 0 where they are "
            "compared with `trend()`. `trend()` fits a least-squares line to the window's "
            "samples and calls it increasing or decreasing only when a t-test finds the slope "
            "different from zero at the given confidence *and* the fitted line moves by at "
            "least `min_change` over the window (`min_relative_change` compares the move with "
            "the line's value at the window's start instead). Below, three disks over a day: "
            "one fills steadily, one grows by about 1 point in 6 hours, one fills and is then "
            "cleaned up.", "",
            *image(directions, "trend() over three disks"),
            f"Of the {counts['steps']} steps plotted, `{TREND}` says increasing at "
            + ", ".join(f"{counts[d]} for {d}" for d in DEVICES) + ". Without `min_change`, "
            f"the slow growth of sdb is significant at {counts['sdb_plain']} steps: the "
            "t-test alone finds any steady growth, however small; `min_change` says how much "
            "matters.", "",
            "## Linear forecasts: full in 4 hours?", "",
            f"`{LINEAR} > 95%` extrapolates the least-squares line of the last 6 hours by "
            "4 hours (what `predict_linear` does) and holds when the line is above 95% by "
            "then. The dashed line is the forecast made at the first step where the "
            "condition holds; the dots mark every step where it holds.", "",
            *image(linear, "linear forecast of a filling disk"),
            f"Here the condition first holds {lead} before the disk actually reaches 95%.", "",
            "## Seasonal forecasts: will the daily peak exceed capacity?", "",
            "With `season=1d` the forecast is additive Holt-Winters over the window "
            "resampled into 48 bins a day, so it predicts the shape of the coming day, not "
            "a straight line. `forecast` gives the value at t + horizon only; "
            "`forecast_max` gives the highest forecast anywhere in (t, t + horizon], which "
            "is what \"will cross X within H\" means when the peak comes before the horizon:",
            "", *code(f"{SEASONAL_MAX} > {fmt(CAPACITY)}"),
            *image(seasonal, "seasonal forecast of daily traffic"),
            *early,
            "## Functions", "",
            *function_reference(Category.TREND),
            "`predict_linear(v range-vector, t scalar)` is Prometheus's linear forecast; "
            "`forecast(v, t)` without a season gives the same value. How each function "
            "computes its result (the t-test, the Holt-Winters settings, edge cases) is in "
            "[trend-methods.md](../trend-methods.md).", ""]
    return Page.of("trends.md", out, [directions, linear, seasonal])


# ------------------------------------------------------------------ trend()


def _disks(timeline: ex.Timeline) -> MemorySource:
    """A disk filling steadily, one nearly flat, one filling and then cleaned up."""
    h = timeline.sample_hours()
    times = timeline.sample_times()
    r = ex.rng(4)
    noise = [0.006 * r.standard_normal(len(h)) for _ in DEVICES]
    values = {
        "sda": 0.35 + 0.015 * (h + 6),
        "sdb": 0.52 + 0.002 * (h + 6),
        "sdc": np.where(h < 14, 0.5 + 0.012 * (h + 6),
                        0.45 + 0.25 * np.exp(-np.clip(h - 14, 0, None) / 0.3) * (h < 14.5)),
    }
    return MemorySource([
        ex.series("disk_used_ratio", {"device": d, "instance": "db-1"}, times,
                  np.clip(values[d] + n, 0, 1))
        for d, n in zip(DEVICES, noise, strict=True)])


def _direction_figure() -> tuple[FigureSpec, dict[str, int]]:
    timeline = ex.Timeline(hours=24, scrape_ms=ex.MINUTE_MS, step_ms=5 * ex.MINUTE_MS,
                           warmup_ms=6 * ex.HOUR_MS)
    source = _disks(timeline)
    x = timeline.x(timeline.steps())
    usage = ex.run(ex.expression("disk_used_ratio"), source, timeline)
    lines = [Line(f"device=\"{d}\"", x, usage.row(device=d)) for d in DEVICES]
    trend = ex.run(ex.expression(TREND), source, timeline)
    plain = ex.run(ex.expression("trend(disk_used_ratio[6h], confidence=0.99)"), source,
                   timeline)
    marks: list[Marks] = []
    counts = {"steps": len(x), "sdb_plain": int((plain.row(device="sdb") == 1.0).sum())}
    rows = list(range(len(DEVICES)))[::-1]
    for d, y in zip(DEVICES, rows, strict=True):
        value = trend.row(device=d)
        counts[d] = int((value == 1.0).sum())
        for name, code_value, colour in DIRECTIONS:
            at = value == code_value
            marks.append(Marks(name if d == DEVICES[0] else "_nolegend_", x[at],
                               np.full(int(at.sum()), float(y)), colour=colour, size=6))
    return FigureSpec("trends-direction", [
        Panel("disk_used_ratio", lines, ylabel="used", percent=True, height=2.2),
        Panel(TREND, marks, ylabel="", ylim=(-0.7, len(DEVICES) - 0.3), yticks=rows,
              yticklabels=list(DEVICES), height=1.5),
    ], xticks=range(0, 25, 3)), counts


# ------------------------------------------------------------------ linear forecast


def _linear_figure() -> tuple[FigureSpec, str]:
    timeline = ex.Timeline(hours=18, scrape_ms=ex.MINUTE_MS, step_ms=5 * ex.MINUTE_MS,
                           warmup_ms=6 * ex.HOUR_MS)
    h = timeline.sample_hours()
    r = ex.rng(5)
    used = 0.55 + 0.004 * (h + 6) + 0.025 * np.clip(h - 4, 0, None)
    used = np.clip(used + 0.004 * r.standard_normal(len(h)), 0, 1)
    source = MemorySource([ex.series("disk_used_ratio", {"device": "sdb", "instance": "db-2"},
                                     timeline.sample_times(), used)])
    steps = timeline.steps()
    x = timeline.x(steps)
    usage = ex.run(ex.expression("disk_used_ratio"), source, timeline).values[0]
    forecast = ex.run(ex.expression(LINEAR), source, timeline).values[0]
    holds = ex.run(ex.expression(f"{LINEAR} > 95%"), source, timeline).present[0]
    first = int(np.argmax(holds))
    crossed = int(np.argmax(usage > 0.95))
    ahead_h = np.arange(0, 4.01, 0.25)
    path = [ex.instant(ex.expression(f"forecast(disk_used_ratio[6h], {int(a * 3600)})"),
                       source, int(steps[first])) for a in ahead_h]
    lead_min = int(steps[crossed] - steps[first]) // ex.MINUTE_MS
    return FigureSpec("trends-linear-forecast", [Panel(f"{LINEAR} > 95%", [
        Line("disk_used_ratio", x, usage),
        Line(f"{LINEAR} (at each step)", x, forecast, width=1.0),
        Line(f"forecast made at {minutes_text(round(x[first] * 60))}", x[first] + ahead_h,
             np.array(path), colour=FLAG_COLOUR, style="--", width=1.8),
        Level("95%", 0.95),
        Marks("condition holds", x[holds], forecast[holds]),
    ], ylabel="used", percent=True, height=2.8)], xticks=range(0, 19, 2)), minutes_text(lead_min)


# ------------------------------------------------------------------ seasonal forecast


def _traffic(timeline: ex.Timeline) -> MemorySource:
    """Requests per second with a daily peak growing 6% a day."""
    h = timeline.sample_hours() + timeline.warmup_ms / ex.HOUR_MS
    r = ex.rng(6)
    day = np.clip(np.sin(2 * np.pi * (h - 8) / 24), 0, None) ** 1.5
    values = (300 + 450 * day) * (1.06 ** (h / 24)) + 15 * r.standard_normal(len(h))
    return MemorySource([ex.series("http_requests_per_second", {"job": "shop"},
                                   timeline.sample_times(), values)])


def _seasonal_figure() -> tuple[FigureSpec, list[str]]:
    timeline = ex.Timeline(hours=72, scrape_ms=5 * ex.MINUTE_MS, step_ms=15 * ex.MINUTE_MS,
                           warmup_ms=72 * ex.HOUR_MS)
    source = _traffic(timeline)
    steps = timeline.steps()
    x = timeline.x(steps)
    traffic = ex.run(ex.expression("http_requests_per_second"), source, timeline).values[0]
    at = int(np.searchsorted(x, 24.0))
    ahead_h = np.arange(0.5, 24.01, 0.5)
    paths = {}
    for name, season in (("seasonal", ", season=1d"), ("linear", "")):
        paths[name] = np.array([
            ex.instant(ex.expression(f"forecast({SEASONAL_WINDOW}, {int(a * 3600)}{season})"),
                       source, int(steps[at])) for a in ahead_h])
    peak = ex.run(ex.expression(SEASONAL_MAX), source, timeline).values[0]
    holds = ex.run(ex.expression(f"{SEASONAL_MAX} > {fmt(CAPACITY)}"), source,
                   timeline).present[0]
    capacity = Level(f"capacity {fmt(CAPACITY)}", CAPACITY)
    early = [f"The traffic goes over {fmt(CAPACITY)} "
             + "; ".join(_foreseen(traffic > CAPACITY, holds, x)) + ". A linear forecast "
             "over the same window cannot see a peak coming: it extends the average slope "
             "of three days.", ""]
    return FigureSpec("trends-seasonal-forecast", [
        Panel(f"forecasts made at {x[at]:g} h from {SEASONAL_WINDOW}", [
            Line("http_requests_per_second", x, traffic, colour=CONTEXT_COLOUR, width=0.8),
            Line("forecast(..., season=1d)", x[at] + ahead_h, paths["seasonal"],
                 colour=FLAG_COLOUR, style="--"),
            Line("forecast(...) (linear)", x[at] + ahead_h, paths["linear"],
                 colour=BAND_COLOUR, style="--"),
            capacity,
        ], ylabel="requests/s", height=2.4),
        Panel(f"{SEASONAL_MAX} > {fmt(CAPACITY)}", [
            Line("http_requests_per_second", x, traffic, colour=CONTEXT_COLOUR, width=0.8),
            Line(SEASONAL_MAX.split("(")[0], x, peak),
            capacity,
            Marks("condition holds", x[holds], peak[holds]),
        ], ylabel="requests/s", height=2.4),
    ], xticks=range(0, 73, 12)), early


def _foreseen(over: ex.BoolArray, holds: ex.BoolArray, x: ex.FloatArray) -> list[str]:
    """For each time a series goes over a level: since when the forecast condition held."""
    out = []
    starts = np.flatnonzero(over & ~np.concatenate([[False], over[:-1]]))
    for start in starts:
        if not holds[start]:
            out.append(f"at hour {x[start]:g}, which the condition did not foresee")
            continue
        k = int(start)
        while k > 0 and holds[k - 1]:
            k -= 1
        out.append(f"at hour {x[start]:g}, and the condition holds from hour {x[k]:g} on, "
                   f"{minutes_text(round((x[start] - x[k]) * 60))} before")
    return out
