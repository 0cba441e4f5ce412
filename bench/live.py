"""Benchmark: the live engine's evaluation cycle and its notification throughput.

Issue 7's performance targets: one evaluation cycle of 1,000 alerting rules over
10,000 series under 1 s on 2 cores, and at least 1,000 notifications per second
to a loopback webhook.

Evaluation. 10,000 series (tests/support/datagen.py: gauges ``m``, counters
``c``, histogram buckets ``h_bucket``, 10 jobs) of 15 s samples over the last
2.5 hours are written to a temporary DuckDB store as collectors write them (so
they sit in the store's head, not compacted into blocks). 1,000 alerting rules
(:func:`rules`: thresholds on gauges, rates and increases of counters, range
functions, aggregations by job, histogram quantiles; ``for`` 0 to 10 minutes)
in 20 groups of 50, written as one Prometheus rule file that both engines load,
in two layouts (:func:`write_rules`): ``spread`` (the ten threshold variants of
an expression in ten different groups) and ``related`` (side by side in one
group, so one evaluation computes the expression once for all of them).
A *cycle* is every group evaluated once at its own time within one minute,
exactly as :class:`monitoring.live.scheduler.LiveEvaluator` evaluates a group
(store thread, one ``evaluate_many`` per group, the state machines, history and
state written to the database) in ``monitoring serve`` (which freezes the heap
after the first cycle, :mod:`monitoring.live.heap`): one warm-up cycle, then the
median of ``--runs`` cycles (wall time). Groups read through the store thread's read
cache (:mod:`monitoring.live.read_cache`); nothing is written to the store
during the cycles, so it is never emptied, as in a running engine between two
collected batches. ``--no-cache`` empties it before every group (as if a
batch had been collected in between): the cost without sharing reads.
``--collect`` is a running engine: the store is written only up to the
warm-up minute, and before each group (evaluated in the order of their times
in the minute) the samples the data set has up to that group's time are
appended as a collector appends them (:meth:`StoreAccess.append`, which merges
them into the read cache); the cycle is the groups' evaluations, the appends
are reported apart.

Notifications. ``--messages`` firing messages (each its own alert group, so
deliveries run concurrently) are enqueued in the durable outbox
(:class:`monitoring.notify.outbox.Outbox`), then the
:class:`monitoring.notify.delivery.Deliverer` sends them through the
:class:`monitoring.notify.channels.webhook.WebhookChannel` (signed JSON,
Alertmanager webhook v4) to the loopback receiver of tests/support/loopback.py,
which checks each payload and signature; throughput is messages delivered (and
recorded in the delivery log) per second, from the first attempt to the last.
The receiver runs in a thread of the same process, so it competes for the
same cores.

Peer. The same data and the same rule file in a real Prometheus (Debian
package): our store exported to OpenMetrics, ``promtool tsdb
create-blocks-from openmetrics``, the server started with the rule file at a
10 s evaluation interval (the cost of one evaluation does not depend on the
interval); after a few evaluations, each group's ``evaluationTime`` from
``/api/v1/rules``. Prometheus's cycle is the sum over the groups (it runs them
concurrently; we run them one after the other). Skipped, saying why, when
Prometheus or promtool is missing or ``--skip-prometheus`` is given.

Usage: nice python bench/live.py [--series N] [--rules N] [--runs R] [--messages M]
       [--skip-prometheus] [--skip-notify] [--no-cache | --collect] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from monitoring.dryrun.ruleset import load_rule_set  # noqa: E402
from monitoring.engine.model import Labels  # noqa: E402
from monitoring.engine.store import Store  # noqa: E402
from monitoring.live.alert_state import AlertStateStore  # noqa: E402
from monitoring.live.history import AlertHistory  # noqa: E402
from monitoring.live.scheduler import LiveEvaluator  # noqa: E402
from monitoring.live.store_access import StoreAccess  # noqa: E402
from monitoring.notify.model import Alert, FakeClock  # noqa: E402
from tests.support import datagen  # noqa: E402

MIN = 60_000
HOUR = 60 * MIN
HISTORY_MS = 150 * MIN
GROUP_SIZE = 50
EVAL_TARGET_S = 1.0
NOTIFY_TARGET = 1000.0
PEER_INTERVAL_S = 10
PEER_CYCLES = 5


# ------------------------------------------------------------------ rules and data


def rules(count: int, jobs: int) -> list[tuple[str, str, str]]:
    """(name, PromQL expression, for) of ``count`` alerting rules, deterministic.

    Ten shapes, each on one job's series (or aggregated by job over all of
    them), with thresholds that make a small share of the alerts fire.
    """
    shapes = (
        # The gauges are random walks clipped to [0, 1]: bands leave the clipped ones out.
        ("GaugeHigh", 'm{{job="{j}"}} > {t} < 1', 0.97, 0.002),
        ("GaugeLow", 'm{{job="{j}"}} < {t} > 0', 0.01, 0.001),
        ("GaugeAvg", 'avg_over_time(m{{job="{j}"}}[5m]) > {t} < 0.99', 0.96, 0.002),
        ("GaugeMax", 'max_over_time(m{{job="{j}"}}[10m]) >= {t} < 1', 0.98, 0.001),
        ("CounterRate", 'rate(c{{job="{j}"}}[5m]) > {t}', 0.50, 0.005),
        ("CounterIncrease", 'increase(c{{job="{j}"}}[10m]) < {t}', 130.0, 1.0),
        ("JobRate", 'sum by (job) (rate(c{{job="{j}"}}[5m])) > {t}', 113.0, 0.5),
        ("JobAvg", 'avg by (job) (m{{job="{j}"}}) > {t}', 0.55, 0.005),
        ("LatencyP70", 'histogram_quantile(0.7, sum by (le, job) '
                       '(rate(h_bucket{{job="{j}"}}[5m]))) > {t}', 3.3, 0.02),
        ("GaugeDeriv", 'deriv(m{{job="{j}"}}[15m]) > {t}', 1.5e-3, 1e-5),
    )
    out = []
    for k in range(count):
        name, template, base, step = shapes[k % len(shapes)]
        job = f"job{(k // len(shapes)) % jobs}"
        variant = k // (len(shapes) * jobs)
        threshold = round(base + step * variant, 6)
        out.append((f"{name}{k}", template.format(j=job, t=threshold), f"{(k % 6) * 2}m"))
    return out


def write_rules(path: Path, count: int, jobs: int, layout: str = "spread") -> Path:
    """The rules as a Prometheus rule file, ``GROUP_SIZE`` rules per group.

    ``spread``: rule ``k`` in group ``k // 50``, so the threshold variants of one
    expression land in different groups (little for one group's evaluation to
    share). ``related``: the variants of an expression side by side, as warning
    and critical levels of one metric usually are, so a group computes each
    expression once for all of its thresholds.
    """
    listed = rules(count, jobs)
    if layout == "related":
        base = 10 * jobs  # rules k and k + base differ only in their threshold
        listed = [listed[k] for k in sorted(range(count), key=lambda k: (k % base, k))]
    lines = ["groups:"]
    for i, (name, expr, for_) in enumerate(listed):
        if i % GROUP_SIZE == 0:
            lines += [f"  - name: bench{i // GROUP_SIZE:02d}", "    interval: 1m", "    rules:"]
        lines += [f"      - alert: {name}", f"        expr: {json.dumps(expr)}",
                  f"        for: {for_}", "        labels:", "          severity: warning"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class HeldBack:
    """Samples not yet written (``--collect``), in time order, for the cycles to append."""

    labels: list[Labels]
    index: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    done_ms: int  # appended up to here

    def until(self, at_ms: int) -> list[tuple[Labels, int, float]]:
        """The samples in ``(done_ms, at_ms]`` as a collector's batch."""
        a, b = np.searchsorted(self.ts, [self.done_ms, at_ms], "right").tolist()
        self.done_ms = max(self.done_ms, at_ms)
        return [(self.labels[i], t, v) for i, t, v in zip(
            self.index[a:b].tolist(), self.ts[a:b].tolist(), self.values[a:b].tolist(),
            strict=True)]


def write_store(db: Path, series: int, end_ms: int, hold_ms: int | None = None
                ) -> tuple[int, HeldBack | None]:
    """``series`` series over the ``HISTORY_MS`` before ``end_ms`` (into the head).

    With ``hold_ms``, only the samples up to it: the rest is returned.
    """
    samples = 0
    held: list[tuple[list[Labels], np.ndarray, np.ndarray, np.ndarray]] = []
    with Store(db) as store:
        for chunk in datagen.generate_chunks(series, end_ms - HISTORY_MS, HISTORY_MS):
            keep = np.ones(len(chunk.ts), dtype=bool) if hold_ms is None \
                else chunk.ts <= hold_ms
            samples += store.append_arrays(chunk.label_sets, chunk.index[keep],
                                           chunk.ts[keep], chunk.values[keep])
            if not keep.all():
                held.append((chunk.label_sets, chunk.index[~keep], chunk.ts[~keep],
                             chunk.values[~keep]))
    if hold_ms is None:
        return samples, None
    labels: list[Labels] = []
    index = []
    for label_sets, idx, _, _ in held:
        index.append(idx + len(labels))
        labels += label_sets
    ts = np.concatenate([h[2] for h in held])
    order = np.argsort(ts, kind="stable")
    return samples, HeldBack(labels, np.concatenate(index)[order], ts[order],
                             np.concatenate([h[3] for h in held])[order], hold_ms)


# ------------------------------------------------------------------ our evaluation


@dataclass
class Cycle:
    seconds: list[float]
    groups: int
    rules: int
    failed: list[str]
    firing: int
    pending: int
    notified: int
    reads: int  # selections read from the store in the measured cycles
    hits: int  # selections cut from the read cache
    appends: list[float]  # seconds of collection appends per measured cycle (--collect)
    appended: int  # samples appended in the measured cycles


async def cycles(rules_file: Path, db: Path, end_ms: int, runs: int,
                 cache: bool = True, held: HeldBack | None = None) -> Cycle:
    """Warm-up plus ``runs`` cycles: every group once, at its time in the minute.

    With ``held``, the samples up to each group's time are appended before it.
    """
    store = Store(db)
    access = StoreAccess(store)
    import duckdb

    conn = duckdb.connect(str(db))
    received: list[int] = []
    rule_set = load_rule_set([str(rules_file)])
    evaluator = LiveEvaluator(rule_set, access, AlertStateStore(conn), AlertHistory(conn),
                              FakeClock(end_ms), on_alerts=lambda a: received.append(len(a)),
                              freeze_heap=True)  # as ``monitoring serve`` runs it
    groups = evaluator.groups()
    first = end_ms - (runs + 1) * MIN
    times: list[float] = []
    appends: list[float] = []
    reads = hits = appended = 0
    try:
        for run in range(runs + 1):
            minute = first + run * MIN
            if run == 1:
                reads, hits = access.reads.reads, access.reads.hits
            started = time.perf_counter()
            writing = 0.0
            for g in sorted(groups, key=lambda g: g.next_tick(minute)):
                at = g.next_tick(minute)
                if not cache:
                    await access.run(lambda _store: None)  # empties the read cache
                if held is not None:
                    batch = held.until(at)
                    t = time.perf_counter()
                    await access.append(batch)
                    writing += time.perf_counter() - t
                    appended += len(batch) if run else 0
                await evaluator.evaluate_group(g.key, at)
            if run:
                times.append(time.perf_counter() - started - writing)
                appends.append(writing)
        reads, hits = access.reads.reads - reads, access.reads.hits - hits
    finally:
        access.close()
        conn.close()
        store.close()
    statuses = evaluator.rules()
    return Cycle(times, len(groups), len(statuses),
                 [f"{s.name}: {s.last_error}" for s in statuses if s.health != "ok"],
                 sum(s.firing for s in statuses), sum(s.pending for s in statuses),
                 received[-1] if received else 0, reads, hits, appends, appended)


def reset_live_tables(db: Path) -> None:
    """Drop the engine's state and history (the next measurement starts afresh)."""
    import duckdb

    conn = duckdb.connect(str(db))
    for table in ("live_alert_state", "live_alert_transitions"):
        conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.close()


# ------------------------------------------------------------------ notifications


@dataclass
class Throughput:
    messages: int
    delivered: int
    enqueue_s: float
    deliver_s: float
    problems: list[str]
    received: int

    @property
    def per_second(self) -> float:
        return self.delivered / self.deliver_s if self.deliver_s else 0.0


async def notify(tmp: Path, count: int) -> Throughput:
    """Outbox + Deliverer + WebhookChannel to the loopback receiver."""
    import duckdb

    from monitoring.notify.channels.base import ChannelContext
    from monitoring.notify.channels.webhook import WebhookChannel
    from monitoring.notify.delivery import Deliverer
    from monitoring.notify.model import Message, SystemClock, message_id
    from monitoring.notify.outbox import Outbox
    from tests.support.loopback import LoopbackReceiver

    clock = SystemClock()
    conn = duckdb.connect(str(tmp / "notify.duckdb"))
    outbox = Outbox(conn, clock)
    now = clock.now_ms()
    messages = []
    for i in range(count):
        alert = Alert({"alertname": "BenchAlert", "instance": f"i{i}", "severity": "warning"},
                      {"summary": f"bench alert {i}"}, "firing", now, value=0.5 + i / count,
                      rule="BenchAlert", channels=("hook",))
        group = f"{{}}:{{alertname=\"BenchAlert\",instance=\"i{i}\"}}"
        messages.append(Message(message_id("hook", "firing", group, [alert], now), "hook",
                                "firing", group, (alert,), now))
    started = time.perf_counter()
    outbox.enqueue(messages)
    enqueue_s = time.perf_counter() - started
    with LoopbackReceiver(webhook_secret="bench-secret") as receiver:
        channel = WebhookChannel("hook", {"url": receiver.url("/webhook"),
                                          "secret": "bench-secret"}, ChannelContext(clock))
        deliverer = Deliverer(outbox, {"hook": channel}, clock, concurrency=32)
        started = time.perf_counter()
        while outbox.pending():
            if not await deliverer.run_once():
                await asyncio.sleep(0.01)
        deliver_s = time.perf_counter() - started
        await channel.aclose()
        delivered = outbox.counts().get("delivered", 0)
        received = len(receiver.requests("/webhook"))
        problems = receiver.problems[:5]
    conn.close()
    return Throughput(count, delivered, enqueue_s, deliver_s, problems, received)


# ------------------------------------------------------------------ the peer


@dataclass
class Peer:
    cycle_s: float | None
    groups: int
    rules_ok: int
    note: str


def peer(tmp: Path, db: Path, rules_file: Path) -> Peer:
    """The same rules in a real Prometheus over the same data (see the module docstring)."""
    from monitoring.engine.export import export_openmetrics
    from tests.support.prometheus import PeerMissing, PrometheusServer, create_blocks, require

    try:
        require("prometheus")
        require("promtool")
    except PeerMissing as exc:
        return Peer(None, 0, 0, f"skipped: {exc}")
    om = tmp / "export.om"
    # Only samples up to now: Prometheus refuses to write its ALERTS series before the
    # newest block's end ("out of bounds").
    with Store(db, read_only=True) as store, om.open("w", encoding="utf-8") as out:
        export_openmetrics(store, out, maxt_ms=int(time.time() * 1000))
    storage = tmp / "tsdb"
    create_blocks(om, storage)
    om.unlink()
    text = rules_file.read_text(encoding="utf-8").replace("interval: 1m",
                                                          f"interval: {PEER_INTERVAL_S}s")
    (storage / "rules.yml").write_text(text, encoding="utf-8")
    server = PrometheusServer(storage, flags=("--web.enable-lifecycle",))
    server.start()
    try:
        config = storage / "prometheus.yml"
        config.write_text(f"global:\n  evaluation_interval: {PEER_INTERVAL_S}s\n"
                          f"rule_files:\n  - {storage / 'rules.yml'}\n")
        with urllib.request.urlopen(urllib.request.Request(f"{server.url}/-/reload",
                                                           method="POST"), timeout=60):
            pass
        seen: dict[str, list[float]] = {}
        deadline = time.monotonic() + PEER_INTERVAL_S * (PEER_CYCLES + 3) + 60
        counted: set[str] = set()
        healthy = 0
        unhealthy: list[str] = []
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"{server.url}/api/v1/rules", timeout=60) as r:
                data = json.loads(r.read())["data"]["groups"]
            for g in data:
                stamp = g.get("lastEvaluation", "")
                if stamp.startswith("0001"):
                    continue
                runs = seen.setdefault(g["name"], [])
                key = f"{g['name']}@{stamp}"
                if key not in counted:
                    counted.add(key)
                    runs.append(float(g["evaluationTime"]))
            healthy = sum(r.get("health") == "ok" for g in data for r in g["rules"])
            unhealthy = [f"{r['name']}: {r.get('health')} {r.get('lastError', '')}".strip()
                         for g in data for r in g["rules"] if r.get("health") != "ok"]
            if data and all(len(seen.get(g["name"], [])) >= PEER_CYCLES for g in data):
                break
            time.sleep(PEER_INTERVAL_S / 2)
        else:
            return Peer(None, len(seen), 0, "Prometheus did not evaluate every group "
                        f"{PEER_CYCLES} times in time")
        # Cycle k: the k-th evaluation of every group (the first is a warm-up).
        per_cycle = [sum(runs[k] for runs in seen.values()) for k in range(1, PEER_CYCLES)]
        note = ("Prometheus evaluates groups concurrently; this is the sum of their "
                "evaluationTime per cycle")
        if unhealthy:
            note += f"; not healthy: {unhealthy[:3]}"
        return Peer(statistics.median(per_cycle), len(seen), healthy, note)
    finally:
        server.stop()


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--rules", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5_000)
    parser.add_argument("--skip-prometheus", action="store_true")
    parser.add_argument("--skip-notify", action="store_true")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--no-cache", action="store_true",
                      help="empty the read cache before every group")
    mode.add_argument("--collect", action="store_true",
                      help="a running engine: append the collected samples before each group")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-live-") as scratch:
        tmp = args.keep or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        # Data up to a little after now, so the peer's evaluations at wall-clock time see it.
        end_ms = (int(time.time() * 1000) // MIN + 20) * MIN
        layout = datagen.Layout.of(args.series)
        t = time.perf_counter()
        at_ms = end_ms - 10 * MIN  # the cycles' end
        hold_ms = at_ms - (args.runs + 1) * MIN if args.collect else None
        samples, held = write_store(tmp / "live.duckdb", args.series, end_ms, hold_ms)
        rules_file = write_rules(tmp / "rules.yml", args.rules, layout.jobs)
        related_file = write_rules(tmp / "related.yml", args.rules, layout.jobs, "related")
        print(f"data: {layout.series:,} series ({layout.gauges:,} m, {layout.counters:,} c, "
              f"{layout.histograms:,} histograms), {samples:,} samples over "
              f"{HISTORY_MS // HOUR}h{HISTORY_MS % HOUR // MIN:02d}m, written in "
              f"{time.perf_counter() - t:.1f} s")
        medians = {}
        for name, path in (("spread", rules_file), ("related", related_file)):
            db = tmp / "live.duckdb"
            if held is not None:  # each layout starts from the store as written
                db = tmp / f"live-{name}.duckdb"
                shutil.copyfile(tmp / "live.duckdb", db)
                held.done_ms = hold_ms or 0
            ours = asyncio.run(cycles(path, db, at_ms, args.runs, not args.no_cache, held))
            median = medians[name] = statistics.median(ours.seconds)
            print(f"evaluation ({name} groups): {ours.rules:,} alerting rules in "
                  f"{ours.groups} groups; one cycle (median of {len(ours.seconds)} after a "
                  f"warm-up): {median:.3f} s (runs: "
                  f"{', '.join(f'{s:.3f}' for s in ours.seconds)}); target < "
                  f"{EVAL_TARGET_S:g} s: {'met' if median < EVAL_TARGET_S else 'NOT met'}")
            print(f"  {ours.firing} alerts firing, {ours.pending} pending after the last "
                  f"cycle; {len(ours.failed)} rule(s) failed"
                  + (f": {ours.failed[:3]}" if ours.failed else ""))
            print(f"  store reads in the measured cycles: {ours.reads:,} selections read, "
                  f"{ours.hits:,} cut from the read cache"
                  + (" (emptied before every group: --no-cache)" if args.no_cache else ""))
            if held is not None:
                print(f"  running engine (--collect): {ours.appended:,} samples appended "
                      f"before the groups of the measured cycles, in "
                      f"{statistics.median(ours.appends):.3f} s per cycle (median; not in "
                      "the cycle time)")
                for f in (db, db.with_name(db.name + ".wal")):
                    f.unlink(missing_ok=True)
            else:
                reset_live_tables(db)
        if held is not None:  # the rest of the data, for the peer
            with Store(tmp / "live.duckdb") as store:
                a = int(np.searchsorted(held.ts, hold_ms or 0, "right"))
                store.append_arrays(held.labels, held.index[a:], held.ts[a:], held.values[a:])
        if args.skip_notify:
            print("notifications: skipped (--skip-notify)")
        else:
            tp = asyncio.run(notify(tmp, args.messages))
            print(f"notifications: {tp.delivered:,} of {tp.messages:,} delivered to the "
                  f"loopback webhook ({tp.received:,} requests received) in "
                  f"{tp.deliver_s:.2f} s: {tp.per_second:,.0f}/s (enqueue: "
                  f"{tp.enqueue_s:.2f} s); target >= {NOTIFY_TARGET:,.0f}/s: "
                  f"{'met' if tp.per_second >= NOTIFY_TARGET else 'NOT met'}")
            if tp.problems:
                print(f"  receiver problems: {tp.problems}")
        if args.skip_prometheus:
            print("prometheus: skipped (--skip-prometheus)")
        else:
            p = peer(tmp, tmp / "live.duckdb", rules_file)
            if p.cycle_s is None:
                print(f"prometheus: {p.note}")
            else:
                ratios = ", ".join(f"{name} {m / p.cycle_s:.2f}" for name, m in medians.items())
                print(f"prometheus ({p.groups} groups of the spread file, {p.rules_ok} rules "
                      f"healthy): one cycle (median of {PEER_CYCLES - 1}): {p.cycle_s:.3f} s "
                      f"({p.note}); ours / theirs: {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
