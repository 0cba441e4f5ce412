"""Benchmark: a 50-rule dry-run over 30 days, against a real Prometheus's query time alone.

Issue 4's performance target: 50 alerting rules (thresholds on gauges, rates
of counters and histogram quantiles; ``for`` 0 to 10 minutes, some with
``keep_firing_for``) over 1,000 series x 30 days of 15 s samples, evaluated at
a 1-minute interval (43,200 steps per rule), in under 60 s on 2 cores, under
2 GB of peak memory, and at least 5x faster than Prometheus's query time for
the same expressions.

Data: the data set of bench/eval.py (tests/support/datagen.py,
``generate_chunks``: gauges ``m``, counters ``c``, histogram buckets
``h_bucket``, labelled ``job`` and ``instance``), generated and cached by
bench/eval.py's own ``ensure_store``/``ensure_tsdb`` (our store, then our
OpenMetrics export and ``promtool tsdb create-blocks-from openmetrics``) under
``--cache-dir``. The rule set (:func:`rules`) is written next to it.

Measured:

* Ours: a fresh Python process (so its peak memory is the dry-run's own) that
  runs :func:`monitoring.dryrun.engine.run_dry_run` over the whole stored
  range, ``--runs`` times; the median wall time (loading and compiling the
  rules, reading the store, evaluating, the alert state machine, the report
  with its plots), and the process's VmHWM (peak resident memory, imports and
  DuckDB included). "steps x series per second" counts, per rule, its group's
  evaluation steps times the number of series its selectors match.
* Prometheus (Debian's 2.42): one server on the same data, the same 50
  expressions through ``/api/v1/query_range`` at a 60 s step, each split into
  chunks of at most 11,000 steps (Prometheus refuses more). One warm-up query
  per expression, then the median over ``--runs`` of the summed engine time
  (``execTotalTime``) of its chunks; the HTTP time (engine, JSON encoding and
  transfer) is shown too. No state machine, no ``for``: the comparison favours
  Prometheus.

Usage: python bench/dryrun.py [--series N] [--days D] [--runs R] [--quick]
       [--cache-dir DIR] [--skip-prometheus]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rich.table import Table  # noqa: E402

from bench.eval import (  # noqa: E402
    BLOCK_DURATION,
    DAY_MS,
    DEFAULT_CACHE,
    START_MS,
    console,
    ensure_store,
    ensure_tsdb,
    progress,
    seconds,
    vmhwm_mib,
)
from tests.support.prometheus import PrometheusServer  # noqa: E402

STEP_MS = 60_000
MAX_STEPS = 11_000
"""Prometheus's limit on the points per series of one range query."""
RULES = 50

CHILD = r"""
import json, statistics, sys, time
from monitoring.dryrun.engine import run_dry_run
from monitoring.dryrun.ruleset import load_rule_set, selectors
from monitoring.engine.store import Store

rules, db, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
times = []
for _ in range(runs):
    t = time.perf_counter()
    report = run_dry_run([rules], db)
    times.append(time.perf_counter() - t)
from bench.eval import vmhwm_mib
mib = vmhwm_mib("self")  # before the counting below, which reads the store again
steps = {g.name: g.steps for g in report.info.groups}
rule_set = load_rule_set([rules])
work = 0
with Store(db, read_only=True) as store:
    for rule in rule_set.rules:
        matched = {tuple(ls) for sel in selectors(rule)
                   for ls in store.series_matching(list(sel.matchers))}
        work += steps[rule.group] * len(matched)
alerts = report.alerts
print(json.dumps({
    "times": times, "mib": mib, "work": work, "steps": max(steps.values()),
    "rules": len(alerts), "evaluated": sum(r.status == "ok" for r in alerts),
    "problems": [f"{r.key}: {r.reason}" for r in alerts if r.status != "ok"],
    "firings": sum(r.firings for r in alerts),
    "notifications": sum(len(r.notifications) for r in alerts),
}))
"""


def rules() -> list[tuple[str, str, str, str]]:
    """The 50 rules: (name, expression, for, keep_firing_for), deterministic.

    Ten expression shapes on the three metric kinds, each with five
    thresholds; ``for`` cycles through 0 to 10 minutes, every third rule keeps
    firing for 2 to 5 minutes.
    """
    shapes = (
        ("GaugeHigh", "m > {t}", (0.99, 0.992, 0.994, 0.996, 0.998)),
        ("GaugeLow", "m < {t}", (0.002, 0.004, 0.006, 0.008, 0.01)),
        ("GaugeAvg", "avg_over_time(m[5m]) > {t}", (0.95, 0.96, 0.97, 0.98, 0.99)),
        ("GaugeMax", "max_over_time(m[10m]) >= {t}", (0.995, 0.996, 0.997, 0.998, 1)),
        ("JobMax", "max by (job) (m) < {t}", (0.9, 0.92, 0.94, 0.96, 0.98)),
        ("GaugeDeriv", "deriv(m[30m]) > {t}", (3e-4, 3.5e-4, 4e-4, 4.5e-4, 5e-4)),
        ("CounterRate", "rate(c[5m]) > {t}", (0.55, 0.6, 0.65, 0.7, 0.75)),
        ("JobRate", "sum by (job) (rate(c[5m])) > {t}", (12.4, 12.6, 12.8, 13.0, 13.2)),
        ("CounterIncrease", "increase(c[10m]) < {t}", (100, 105, 110, 115, 120)),
        ("LatencyP50", "histogram_quantile(0.5, sum by (le, job) (rate(h_bucket[5m]))) > {t}",
         (0.8, 0.81, 0.82, 0.83, 0.84)),
    )
    out = []
    k = 0
    for name, template, thresholds in shapes:
        for i, t in enumerate(thresholds):
            keep = f"{2 + k % 4}m" if k % 3 == 0 else ""
            out.append((f"{name}{i + 1}", template.format(t=t), f"{k % 11}m", keep))
            k += 1
    assert len(out) == RULES
    return out


def write_rules(path: Path) -> Path:
    """The rule set as one DSL file (one group, every 1m)."""
    lines = ["# bench/dryrun.py: 50 alerting rules over the bench data set", "",
             "group bench every 1m {"]
    for name, expr, for_, keep in rules():
        lines += [f"  alert {name} {{", f"    when {expr}", f"    for {for_}"]
        if keep:
            lines.append(f"    keep_firing_for {keep}")
        lines += ["    severity warning", "    notify console",
                  f'    summary "{name} on {{{{ $labels.instance }}}}"', "  }", ""]
    lines.append("}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Ours:
    """Our figures."""

    seconds: float
    mib: float
    work: int
    steps: int
    evaluated: int
    problems: list[str]
    firings: int
    notifications: int


def ours(rules_file: Path, db: Path, runs: int) -> Ours:
    """Run the dry-run in a fresh process; raise with its error output when it fails."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(rules_file), str(db), str(runs)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"our dry-run failed:\n{out.stderr[-3000:]}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Ours(statistics.median(data["times"]), data["mib"], data["work"],
                data["steps"], data["evaluated"], data["problems"], data["firings"],
                data["notifications"])


def chunks(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """``[start, end]`` at a 60 s step in ranges of at most ``MAX_STEPS`` points each."""
    out = []
    lo = start_ms
    while lo <= end_ms:
        hi = min(end_ms, lo + (MAX_STEPS - 1) * STEP_MS)
        out.append((lo, hi))
        lo = hi + STEP_MS
    return out


def query_chunks(url: str, expr: str, parts: list[tuple[int, int]]) -> tuple[float, float, int]:
    """One expression over all chunks: (engine seconds, HTTP seconds, points returned)."""
    engine = http = 0.0
    points = 0
    for lo, hi in parts:
        params = urllib.parse.urlencode({"query": expr, "start": f"{lo / 1000:.3f}",
                                         "end": f"{hi / 1000:.3f}", "step": "60",
                                         "stats": "all"})
        t = time.perf_counter()
        with urllib.request.urlopen(f"{url}/api/v1/query_range?{params}", timeout=900) as r:
            raw = r.read()
        http += time.perf_counter() - t
        body = json.loads(raw)
        if body.get("status") != "success":
            raise SystemExit(f"Prometheus refused {expr!r}: {body.get('error')}")
        engine += float(body["data"]["stats"]["timings"]["execTotalTime"])
        points += sum(len(item["values"]) for item in body["data"]["result"])
    return engine, http, points


@dataclass
class Theirs:
    """Prometheus's figures, summed over the 50 expressions."""

    engine: float
    http: float
    mib: float
    chunks: int
    points: int


def theirs(tsdb: Path, end_ms: int, runs: int) -> Theirs:
    """Every expression through query_range on one server (a warm-up, then ``runs`` runs)."""
    parts = chunks(START_MS, end_ms)
    server = PrometheusServer(tsdb, flags=(f"--storage.tsdb.max-block-duration={BLOCK_DURATION}",))
    server.start()
    engine_total = http_total = 0.0
    points = 0
    try:
        with progress() as bar:
            task = bar.add_task("Prometheus query_range", total=RULES)
            for _name, expr, _for, _keep in rules():
                query_chunks(server.url, expr, parts)  # warm-up
                measured = [query_chunks(server.url, expr, parts) for _ in range(runs)]
                engine_total += statistics.median(m[0] for m in measured)
                http_total += statistics.median(m[1] for m in measured)
                points += measured[-1][2]
                bar.advance(task)
        assert server.process is not None
        mib = vmhwm_mib(server.process.pid)
    finally:
        server.stop()
    return Theirs(engine_total, http_total, mib, len(parts), points)


def main() -> int:
    """Parse the options, build or reuse the data, measure, print the figures."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--runs", type=int, default=1, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true", help="smoke run: 60 series x 1 day")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help="where the data sets are cached (shared with bench/eval.py)")
    parser.add_argument("--skip-prometheus", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.series, args.days, args.runs = 60, 1.0, 1
    if args.series < 1 or args.days <= 0 or args.runs < 1:
        parser.error("--series, --days and --runs must be positive")
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    db = ensure_store(args.cache_dir, args.series, args.days)
    tsdb = None if args.skip_prometheus else ensure_tsdb(args.cache_dir, db, args.series,
                                                         args.days)
    rules_file = write_rules(args.cache_dir / "dryrun-bench.rules")
    end_ms = START_MS + round(args.days * DAY_MS)

    with progress() as bar:
        bar.add_task(f"our dry-run ({args.runs} run(s))", total=None)
        mine = ours(rules_file, db, args.runs)
    peer = None if tsdb is None else theirs(tsdb, end_ms, args.runs)

    table = Table(title=f"dry-run of {RULES} alerting rules over {args.series:,} series x "
                  f"{args.days:g} days of 15 s samples, every 1m ({mine.steps:,} steps per "
                  f"rule); median of {args.runs} run(s)")
    table.add_column("")
    table.add_column("ours", justify="right")
    table.add_column("Prometheus", justify="right")
    ratio = f"{peer.engine / mine.seconds:.2f}x" if peer else "-"
    table.add_row("wall time", seconds(mine.seconds),
                  f"{seconds(peer.engine)} engine, {seconds(peer.http)} HTTP" if peer else "-")
    table.add_row("steps x series per second", f"{mine.work / mine.seconds:,.0f}",
                  f"{mine.work / peer.engine:,.0f}" if peer else "-")
    table.add_row("peak memory (VmHWM)", f"{mine.mib:,.0f} MiB",
                  f"{peer.mib:,.0f} MiB" if peer else "-")
    table.add_row("ratio (Prometheus engine / ours)", ratio, "")
    table.add_row("what was done", f"{mine.evaluated} of {RULES} rules evaluated with the "
                  f"state machine; {mine.firings:,} firings, {mine.notifications:,} "
                  "notifications",
                  f"{RULES} expressions x {peer.chunks} query_range chunks, "
                  f"{peer.points:,} points" if peer else "-")
    console.print(table)
    console.print(f"steps x series evaluated: {mine.work:,} (per rule: its evaluation steps "
                  "times the series its selectors match). Ours: a fresh process running "
                  "run_dry_run (load, read, evaluate, state machine, report). Prometheus: "
                  "execTotalTime summed over the chunks of at most "
                  f"{MAX_STEPS:,} steps, no state machine.")
    for problem in mine.problems:
        console.print(f"[red]not evaluated[/red] {problem}", markup=True, highlight=False)
    console.print(f"total {time.perf_counter() - started:.0f} s (data cached in {args.cache_dir})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
