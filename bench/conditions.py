"""Benchmark: the condition functions against ``avg_over_time`` on the evaluator benchmark's data.

The condition library's anomaly, trend and forecast functions read the same
windows as PromQL's ``*_over_time`` functions but do more per window (order
statistics, regressions, smoothing). The target is that every anomaly method
costs at most 3x ``avg_over_time`` over the same window on the same data
(1,000 series x 7 days of 15 s samples, a 60 s step; data from
``bench/eval.py``'s generator and cache). No Prometheus here: these functions
are ours alone.

Each expression runs in a fresh process (as ``bench/eval.py`` measures ours): a
warm-up evaluation, then the median of ``--runs`` timed evaluations, from
reading the store to the result arrays; peak memory is that process's VmHWM.

Usage: python bench/conditions.py [--series N] [--days D] [--window 5m] [--runs R] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.table import Table

from bench.eval import (
    DAY_MS,
    DEFAULT_CACHE,
    START_MS,
    Measure,
    console,
    ensure_store,
    ours,
)
from monitoring.stdlib.conditions import ANOMALY_METHODS

BASELINE = "avg_over_time"
TARGET = 3.0
"""Most an anomaly method may cost, in multiples of the baseline."""


def expressions(window: str) -> list[tuple[str, str]]:
    """(family, expression) pairs; the first is the baseline."""
    out = [("baseline", f"{BASELINE}(m[{window}])")]
    for method in ANOMALY_METHODS:
        # A one-minute season: the seasonal method needs two seasons inside the window.
        season = ", 1m" if method == "seasonal" else ""
        out.append(("anomaly", f'anomaly(m[{window}], "{method}"{season})'))
    out += [("trend", f"trend(m[{window}])"),
            ("trend", f"forecast(m[{window}], 1h)"),
            ("trend", f"forecast_max(m[{window}], 1h)"),
            ("peers", f"outlier_score(avg_over_time(m[{window}]))"),
            ("threshold", "between(m, 0.2, 0.8)")]
    return out


def main() -> int:
    """Measure every expression, print the table with each one's ratio to the baseline."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--window", default="5m")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per expression")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 series x 1 day")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="where the data sets are cached (shared with bench/eval.py)")
    args = parser.parse_args()
    if args.quick:
        args.series, args.days, args.runs = 60, 1.0, 1
    if args.series < 1 or args.days <= 0 or args.runs < 1:
        parser.error("--series, --days and --runs must be positive")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    db = ensure_store(args.cache_dir, args.series, args.days)
    end_ms = START_MS + round(args.days * DAY_MS)
    started = time.perf_counter()
    table = Table(title=f"condition functions, {args.series:,} series x {args.days:g} days, "
                        f"60 s step, median of {args.runs}")
    for col in ("family", "expression", "time", f"x {BASELINE}", "peak MiB", "series"):
        table.add_column(col, justify="left" if col in ("family", "expression") else "right")
    base: float | None = None
    worst = 0.0
    for family, expr in expressions(args.window):
        console.print(f"measuring {expr} ...", style="dim")
        got = ours(db, expr, end_ms, args.runs)
        if not isinstance(got, Measure):
            table.add_row(family, expr, "failed", "", "", "")
            continue
        if base is None:
            base = got.seconds
        ratio = got.seconds / base
        if family == "anomaly":
            worst = max(worst, ratio)
        mark = " (over target)" if family == "anomaly" and ratio > TARGET else ""
        table.add_row(family, expr, f"{got.seconds:.3f} s", f"{ratio:.2f}{mark}",
                      f"{got.mib:,.0f}", f"{got.series:,}")
    console.print(table)
    console.print(f"slowest anomaly method: {worst:.2f}x {BASELINE} (target at most "
                  f"{TARGET:g}x); total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
