"""The dry-run report as terminal text (rich tables): a summary, then per-rule details."""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from monitoring.dryrun.report import CompareReport, DryRunReport, Interval, RuleReport
from monitoring.dsl.ast import format_duration

SHOWN_INTERVALS = 10
"""Intervals listed per rule in the terminal (JSON and HTML have them all)."""


def iso(ms: int | None) -> str:
    """``2026-01-02 15:04:05`` (UTC), or ``-``."""
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: float | None) -> str:
    """``1h30m`` style, or ``-``."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return "-"
    return format_duration(int(ms)) if ms else "0s"


def _labels(labels: dict[str, str]) -> str:
    shown = [f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname"]
    return "{" + ", ".join(shown) + "}"


def _value(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.6g}"


def _status(r: RuleReport) -> Text:
    if r.status == "ok":
        return Text("ok", style="green")
    if r.status == "no_data":
        return Text("no data", style="yellow")
    return Text("not evaluated", style="red")


def render_report(report: DryRunReport, out: TextIO, colour: bool = False) -> None:
    """Write the summary table and the per-rule details."""
    console = Console(file=out, force_terminal=colour, no_color=not colour, width=160,
                      highlight=False)
    info = report.info
    console.print(f"dry-run of {', '.join(info.paths)} over {info.store}")
    console.print(f"range {iso(info.start_ms)} .. {iso(info.end_ms)} UTC, "
                  f"{len(info.groups)} group(s), {len(report.rules)} rule(s), "
                  f"{info.elapsed_s:.2f} s")
    table = Table(title=None, show_lines=False)
    for name, justify in (("rule", "left"), ("status", "left"), ("firings", "right"),
                          ("time firing", "right"), ("flaps", "right"), ("first", "left"),
                          ("last", "left"), ("median", "right"), ("notifications", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for r in report.alerts:
        table.add_row(r.key, _status(r), str(r.firings), duration(r.firing_ms), str(r.flaps),
                      iso(r.first_firing_ms), iso(r.last_firing_ms),
                      duration(r.median_firing_ms), str(len(r.notifications)))
    console.print(table)
    records = [r for r in report.rules if r.kind == "record"]
    if records:
        console.print(f"recording rules: {len(records)} "
                      f"({sum(1 for r in records if r.status == 'ok')} evaluated, "
                      f"{sum(r.series for r in records)} series recorded)")
    for r in report.rules:
        _details(console, r)
    for w in report.warnings:
        console.print(f"warning: {w}")


def _details(console: Console, r: RuleReport) -> None:
    if r.status != "ok":
        console.print(Text.assemble((f"{r.key}: ", "bold"), _status(r),
                                    f": {r.reason}" if r.reason else ""))
    for w in r.warnings:
        console.print(f"{r.key}: warning: {w}")
    for e in r.errors:
        console.print(f"{r.key}: evaluation error at {e}")
    if not r.intervals:
        return
    console.print(Text(f"{r.key}: {r.firings} firing interval(s)", style="bold"))
    for iv in r.intervals[:SHOWN_INTERVALS]:
        console.print("  " + _interval(iv))
    if len(r.intervals) > SHOWN_INTERVALS:
        console.print(f"  ... and {len(r.intervals) - SHOWN_INTERVALS} more")
    per_channel = Counter((n.channel, n.kind) for n in r.notifications)
    if per_channel:
        parts = [f"{ch}: {per_channel[(ch, 'firing')]} firing, "
                 f"{per_channel[(ch, 'resolved')]} resolved"
                 for ch in dict.fromkeys(ch for ch, _ in per_channel)]
        extra = f" ({r.suppressed} suppressed by cooldown)" if r.suppressed else ""
        console.print("  notifications: " + "; ".join(parts) + extra)


def _interval(iv: Interval) -> str:
    end = iso(iv.end_ms) if iv.end_ms is not None else "still firing"
    return (f"{iso(iv.start_ms)} .. {end} ({duration(iv.duration_ms)}) peak "
            f"{_value(iv.peak)} {_labels(iv.labels)}")


def render_compare(report: CompareReport, out: TextIO, colour: bool = False) -> None:
    """Write what changed per rule between the old and the new rule set."""
    console = Console(file=out, force_terminal=colour, no_color=not colour, width=160,
                      highlight=False)
    info = report.new.info
    console.print(f"compare {', '.join(report.old.info.paths)} (old) with "
                  f"{', '.join(info.paths)} (new) over {info.store}")
    console.print(f"range {iso(info.start_ms)} .. {iso(info.end_ms)} UTC; "
                  f"{report.shared_nodes} expression node(s) evaluated once for both")
    table = Table()
    for name in ("rule", "change", "firings (old -> new)", "time firing (old -> new)",
                 "new", "gone", "changed"):
        table.add_column(name)
    for d in report.rules:
        if (d.old is not None and d.old.kind == "record") or (d.new is not None \
                and d.new.kind == "record"):
            continue
        kinds = Counter(c.kind for c in d.intervals)
        table.add_row(
            d.key, d.change, f"{d.old_firings} -> {d.new_firings}",
            f"{duration(d.old.firing_ms if d.old else 0)} -> "
            f"{duration(d.new.firing_ms if d.new else 0)}",
            str(kinds["new"]), str(kinds["gone"]), str(kinds["changed"]))
    console.print(table)
    for d in report.rules:
        if d.change in ("added", "removed"):
            console.print(f"{d.key}: rule {d.change}")
        elif d.change == "changed":
            old, new = d.old_firings, d.new_firings
            console.print(Text(f"{d.key}: fired {new} time(s) instead of {old}", style="bold"))
            if d.old is not None and d.new is not None and d.old.status != d.new.status:
                console.print(f"  status {d.old.status} -> {d.new.status}"
                              + (f": {d.new.reason}" if d.new.reason else ""))
        for c in d.intervals[:SHOWN_INTERVALS]:
            if c.kind == "changed" and c.old is not None and c.new is not None:
                console.print(f"  changed: {_interval(c.old)}\n        -> {_interval(c.new)}")
            elif c.new is not None:
                console.print(f"  new:     {_interval(c.new)}")
            elif c.old is not None:
                console.print(f"  gone:    {_interval(c.old)}")
        if len(d.intervals) > SHOWN_INTERVALS:
            console.print(f"  ... and {len(d.intervals) - SHOWN_INTERVALS} more")
