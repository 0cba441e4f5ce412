"""Benchmark: our evaluator against a real Prometheus's ``/api/v1/query_range`` on the same data.

Data set (tests/support/datagen.py, ``generate_chunks``): ``--series`` series
(default 1,000) over ``--days`` days (default 7) at a 15 s interval, about 40M
samples: a third gauges ``m`` in [0, 1], a third counters ``c`` with rare resets,
a third classic-histogram buckets ``h_bucket`` (five ``le`` each), every series
labelled ``job`` (ten values) and ``instance``. Sample times are jittered 1-4 s
past each 15 s slot, so no sample sits on a whole minute: no evaluation step or
window edge coincides with a sample, where Prometheus 2.x and 3.x differ.

The same data goes into our DuckDB store (``Store.append_arrays``) and into a
real Prometheus (Debian's 2.42): our OpenMetrics export, then ``promtool tsdb
create-blocks-from openmetrics --max-block-duration=162h`` (blocks as a
long-running server would have compacted them; the server gets the same
``--storage.tsdb.max-block-duration`` so that it does not compact in the
background while it is measured). Both are cached under ``--cache-dir``, keyed
by the parameters, so a rerun starts measuring at once.

Measured, for every expression over the whole data set at a 60 s step:

* Prometheus: a fresh server per expression (``127.0.0.1``, free port, stopped
  by PID), started with ``--query.max-samples=500000000`` and
  ``--query.timeout=10m`` (defaults 50M samples and 2m) so that larger
  ``--series``/``--days`` are not refused; the table shows each query's
  ``peakSamples``, the figure that limit applies to. One warm-up query, then the median of
  ``--runs`` queries of the engine's own ``execTotalTime`` (``stats=all``), and,
  for information, of the whole HTTP request (engine plus JSON encoding and
  transfer). Peak memory is the server's VmHWM from ``/proc/PID/status`` after
  the runs: the peak resident set of the process since it started, mapped
  block files included. ``process_resident_memory_bytes`` is only the current
  RSS, which misses a peak between two scrapes.
* Ours: a fresh Python process per expression that opens the store read-only,
  evaluates once to warm up, then ``--runs`` times (median of
  :func:`monitoring.engine.evaluator.evaluate`, from reading the store to the
  result arrays; no JSON). Peak memory is that process's VmHWM, start-up and
  imports included.

Then how our time grows with the number of series (``--scaling``, default
100, 1,000 and 10,000 series) over ``--scaling-days`` (default 1 day: 10,000
series over 7 days would be 400M samples, more than this benchmark's memory
budget; ``--scaling`` without 10000 skips that size).

Both sides use all the machine's cores as they like (DuckDB's threads, Go's
GOMAXPROCS). ``--quick`` is a smoke run on a small data set (about a minute).

Usage: python bench/eval.py [--series N] [--days D] [--runs R] [--quick]
       [--cache-dir DIR] [--scaling 100,1000,10000] [--scaling-days D] [--skip-prometheus]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn  # noqa: E402
from rich.table import Table  # noqa: E402

from tests.support import datagen  # noqa: E402
from tests.support.prometheus import PrometheusServer, create_blocks  # noqa: E402

EXPRESSIONS = (
    "m > 0.5",
    "avg_over_time(m[5m]) > 0.5",
    "max by (job) (avg_over_time(m[5m]))",
    "deriv(m[30m]) > 0",
    "rate(c[5m])",
    "histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))",
)
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 60_000
DAY_MS = 86_400_000
BLOCK_DURATION = "162h"
"""The longest block promtool writes (2h x 3^4, one of the TSDB's compaction ranges)."""
DATA_VERSION = 2
"""Part of the cache key: bump when the generator or the store's layout changes
(2: the history is compacted into the store's blocks)."""
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) \
    / "monitoring-bench" / "eval"
"""Where generated data sets are cached; bench/dryrun.py and bench/conditions.py share it."""

console = Console(width=None if sys.stdout.isatty() else 200)

CHILD = r"""
import json, sys, time
from monitoring.dsl.compiler import compile_expression
from monitoring.engine.evaluator import evaluate
from monitoring.engine.store import Store

db, expr = sys.argv[1], sys.argv[2]
start, end, step, runs = map(int, sys.argv[3:7])
node, diags = compile_expression(expr)
if node is None:
    sys.exit("; ".join(d.message for d in diags))
times = []
with Store(db, read_only=True) as store:
    result = evaluate(node, store, start, end, step)
    for _ in range(runs):
        t = time.perf_counter()
        result = evaluate(node, store, start, end, step)
        times.append(time.perf_counter() - t)
hwm = 0
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmHWM:"):
            hwm = int(line.split()[1])
print(json.dumps({"times": times, "series": len(result.series),
                  "points": sum(len(s.ts) for s in result.series), "hwm_kib": hwm}))
"""


@dataclass
class Measure:
    """One side's figures for one expression."""

    seconds: float
    mib: float
    series: int
    points: int
    http_seconds: float | None = None
    peak_samples: int | None = None
    """Prometheus's ``peakSamples`` (the figure ``--query.max-samples`` limits)."""


def key(series: int, days: float) -> str:
    """The cache key of a data set."""
    return f"v{DATA_VERSION}-{series}x{days:g}d-15s-seed7"


@contextmanager
def progress() -> Iterator[Progress]:
    """A rich progress display for the long steps (on stderr, so stdout stays the report)."""
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                   "{task.total}"), TimeElapsedColumn(), console=Console(stderr=True),
                   transient=True)
    with bar:
        yield bar


def ensure_store(cache: Path, series: int, days: float) -> Path:
    """The cached store of a data set, generated first if missing."""
    db = cache / f"store-{key(series, days)}.duckdb"
    if db.exists():
        return db
    from monitoring.engine.store import Store

    partial = db.with_name(db.name + ".partial")
    partial.unlink(missing_ok=True)
    layout = datagen.Layout.of(series)
    t = time.perf_counter()
    samples = 0
    with progress() as bar, Store(partial) as store:
        task = bar.add_task(f"generating {series} series x {days:g} d", total=series)
        for chunk in datagen.generate_chunks(series, START_MS, round(days * DAY_MS)):
            samples += store.append_arrays(chunk.label_sets, chunk.index, chunk.ts, chunk.values)
            bar.advance(task, len(chunk.label_sets))
        # All of the history in blocks, the layout reads are fastest from (a
        # long-lived store gets there by itself as its head fills up).
        store.compact()
    partial.rename(db)
    console.print(f"generated {layout.series:,} series ({layout.gauges} m, {layout.counters} c, "
                  f"{layout.histograms} histograms of {len(datagen.BUCKETS)} h_bucket), "
                  f"{samples:,} samples into our store in {time.perf_counter() - t:.1f} s")
    return db


def ensure_tsdb(cache: Path, db: Path, series: int, days: float) -> Path:
    """Prometheus blocks of the same data set: our export, then promtool (cached)."""
    from monitoring.engine.export import export_openmetrics
    from monitoring.engine.store import Store

    tsdb = cache / f"tsdb-{key(series, days)}"
    if (tsdb / "complete").exists():
        return tsdb
    shutil.rmtree(tsdb, ignore_errors=True)
    om = cache / f"export-{key(series, days)}.om"
    t = time.perf_counter()
    with progress() as bar:
        task = bar.add_task("exporting OpenMetrics", total=None)
        with Store(db, read_only=True) as store, om.open("w", encoding="utf-8") as out:
            report = export_openmetrics(store, out)
        exported = time.perf_counter() - t
        bar.update(task, description="promtool tsdb create-blocks-from openmetrics")
        create_blocks(om, tsdb, BLOCK_DURATION)
    size = om.stat().st_size
    om.unlink()
    (tsdb / "complete").write_text("")
    console.print(f"exported {report.samples:,} samples ({size / 2**20:,.0f} MiB of OpenMetrics) "
                  f"in {exported:.1f} s; promtool built the blocks in "
                  f"{time.perf_counter() - t - exported:.1f} s")
    return tsdb


def vmhwm_mib(pid: int | str) -> float:
    """Peak resident memory of a process (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def theirs(tsdb: Path, expr: str, end_ms: int, runs: int) -> Measure:
    """Prometheus's figures for one expression, from a freshly started server."""
    server = PrometheusServer(tsdb, flags=(f"--storage.tsdb.max-block-duration={BLOCK_DURATION}",))
    server.start()
    try:
        params = urllib.parse.urlencode({"query": expr, "start": f"{START_MS / 1000:.3f}",
                                         "end": f"{end_ms / 1000:.3f}", "step": "60",
                                         "stats": "all"})
        url = f"{server.url}/api/v1/query_range?{params}"
        engine, http = [], []
        body: dict[str, Any] = {}
        for i in range(runs + 1):
            t = time.perf_counter()
            with urllib.request.urlopen(url, timeout=900) as r:
                raw = r.read()
            elapsed = time.perf_counter() - t
            body = json.loads(raw)
            if body.get("status") != "success":
                raise SystemExit(f"Prometheus refused {expr!r}: {body.get('error')}")
            if i:  # the first run warms up
                http.append(elapsed)
                engine.append(float(body["data"]["stats"]["timings"]["execTotalTime"]))
        assert server.process is not None
        mib = vmhwm_mib(server.process.pid)
    finally:
        server.stop()
    result = body["data"]["result"]
    return Measure(statistics.median(engine), mib, len(result),
                   sum(len(item["values"]) for item in result), statistics.median(http),
                   int(body["data"]["stats"]["samples"]["peakSamples"]))


def ours(db: Path, expr: str, end_ms: int, runs: int) -> Measure | str:
    """Our figures for one expression, from a fresh process (or why it failed)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(db), expr, str(START_MS),
                          str(end_ms), str(STEP_MS), str(runs)], capture_output=True,
                         text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines() or ["no output"]
        console.print(f"[red]our evaluation of {expr!r} failed[/red]: {lines[-1]}",
                      markup=True, highlight=False)
        return "failed"
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Measure(statistics.median(data["times"]), data["hwm_kib"] / 1024, data["series"],
                   data["points"])


def seconds(s: float) -> str:
    """A duration for the tables."""
    return f"{s:.3f} s" if s < 10 else f"{s:.1f} s"


def compare(args: argparse.Namespace, cache: Path) -> None:
    """The main table: every expression, ours against Prometheus."""
    db = ensure_store(cache, args.series, args.days)
    tsdb = None if args.skip_prometheus else ensure_tsdb(cache, db, args.series, args.days)
    end_ms = START_MS + round(args.days * DAY_MS)
    steps = (end_ms - START_MS) // STEP_MS + 1
    table = Table(title=f"{args.series:,} series x {args.days:g} days, query_range at a 60 s step "
                  f"({steps:,} steps); median of {args.runs} runs after a warm-up")
    for col in ("expression", "ours", "Prometheus engine", "ratio", "Prometheus HTTP",
                "ours peak", "Prometheus peak", "series / points", "Prometheus peakSamples"):
        table.add_column(col, justify="left" if col == "expression" else "right")
    rows = []
    with progress() as bar:
        task = bar.add_task("measuring", total=len(EXPRESSIONS))
        for expr in EXPRESSIONS:
            bar.update(task, description=f"ours: {expr}")
            mine = ours(db, expr, end_ms, args.runs)
            peer = None
            if tsdb is not None:
                bar.update(task, description=f"Prometheus: {expr}")
                peer = theirs(tsdb, expr, end_ms, args.runs)
            rows.append((expr, mine, peer))
            bar.advance(task)
    for expr, mine, peer in rows:
        if isinstance(mine, str):
            shape = f"Prometheus: {peer.series:,} / {peer.points:,}" if peer else "-"
            table.add_row(expr, mine, seconds(peer.seconds) if peer else "-", "-",
                          seconds(peer.http_seconds or 0.0) if peer else "-", "-",
                          f"{peer.mib:,.0f} MiB" if peer else "-", shape,
                          f"{peer.peak_samples:,}" if peer else "-")
            continue
        shape = f"{mine.series:,} / {mine.points:,}"
        if peer is not None and (peer.series, peer.points) != (mine.series, mine.points):
            shape += f" (Prometheus: {peer.series:,} / {peer.points:,})"
        table.add_row(expr, seconds(mine.seconds),
                      seconds(peer.seconds) if peer else "-",
                      f"{peer.seconds / mine.seconds:.2f}x" if peer else "-",
                      seconds(peer.http_seconds or 0.0) if peer else "-",
                      f"{mine.mib:,.0f} MiB", f"{peer.mib:,.0f} MiB" if peer else "-", shape,
                      f"{peer.peak_samples:,}" if peer else "-")
    console.print(table)
    console.print("ratio = Prometheus engine time (execTotalTime) / our time (above 1: we are "
                  "faster). Prometheus HTTP adds JSON encoding and transfer of the result. Peak "
                  "memory: VmHWM of a fresh process per expression (ours: Python, imports and "
                  "DuckDB included; Prometheus: the server, mapped blocks included). Prometheus "
                  "ran with --query.max-samples=500000000 (default 50,000,000: compare "
                  "peakSamples), --query.timeout=10m and "
                  f"--storage.tsdb.max-block-duration={BLOCK_DURATION}.")


def scaling(args: argparse.Namespace, cache: Path) -> None:
    """Our time as the number of series grows."""
    sizes = [int(x) for x in args.scaling.split(",") if x.strip()]
    if not sizes:
        return
    end_ms = START_MS + round(args.scaling_days * DAY_MS)
    table = Table(title=f"our time by number of series ({args.scaling_days:g} day(s), 60 s step, "
                  f"median of {args.runs}; peak memory in brackets)")
    table.add_column("expression")
    for n in sizes:
        table.add_column(f"{n:,} series", justify="right")
    cells: dict[str, list[str]] = {e: [] for e in EXPRESSIONS}
    for n in sizes:
        db = ensure_store(cache, n, args.scaling_days)
        with progress() as bar:
            task = bar.add_task(f"{n} series", total=len(EXPRESSIONS))
            for expr in EXPRESSIONS:
                m = ours(db, expr, end_ms, args.runs)
                cells[expr].append(m if isinstance(m, str)
                                   else f"{seconds(m.seconds)} ({m.mib:,.0f} MiB)")
                bar.advance(task)
    for expr in EXPRESSIONS:
        table.add_row(expr, *cells[expr])
    console.print(table)
    if args.scaling_days < args.days:
        most = max(sizes)
        console.print(f"The scaling runs cover {args.scaling_days:g} day(s), not {args.days:g}: "
                      f"{most:,} series over {args.days:g} days would be "
                      f"{most * round(args.days * DAY_MS) // 15_000:,} samples.")
    if 10000 not in sizes and not args.quick:
        console.print("10,000 series skipped (--scaling without 10000).")


def main() -> int:
    """Parse the options, build or reuse the data, measure, print the tables."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 60 series x 1 day, scaling 20/60/200 series x 6 h")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--scaling", default="100,1000,10000",
                        help="comma-separated series counts for the scaling table ('' skips)")
    parser.add_argument("--scaling-days", type=float, default=1.0)
    parser.add_argument("--skip-prometheus", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.series, args.days, args.runs = 60, 1.0, 1
        args.scaling, args.scaling_days = "20,60,200", 0.25
    if args.series < 1 or args.days <= 0 or args.runs < 1 or args.scaling_days <= 0:
        parser.error("--series, --days, --runs and --scaling-days must be positive")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    compare(args, args.cache_dir)
    scaling(args, args.cache_dir)
    console.print(f"total {time.perf_counter() - started:.0f} s (data cached in {args.cache_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
