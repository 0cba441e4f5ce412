"""Demo history for the shipped rules: realistic series with planted incidents.

Why: ``monitoring dry-run rules/`` needs a store to backtest against, and a
demo is only convincing when the history looks like production: daily
seasonality, noise, counters that restart, scrape jitter, and a few incidents
the shipped alert rules should catch (and quiet stretches where they must not
fire). Everything is computed with vectorised NumPy, one metric family at a
time, and written with :meth:`~monitoring.engine.store.Store.append_arrays`.
The output depends only on the parameters: the same seed gives the same store.

The metric families are exactly the ones the files in ``rules/`` read (see
:data:`FAMILIES`); :func:`plan_incidents` places the incidents at random
(seeded) times, about one of each kind every few days, never overlapping the
first six hours (so rules with long windows have history before them).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitoring.engine.model import Labels
from monitoring.engine.store import Store

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
DEFAULT_END_MS = 1_767_225_600_000
"""2026-01-01T00:00:00Z: the default end of the history (fixed, so a seed gives one store)."""
SCRAPE_MS = 15_000
DISK_SCRAPE_MS = 60_000  # rules/metrics.rules: disk_used_ratio is scraped every minute

API_INSTANCES = ("api-1:8080", "api-2:8080", "api-3:8080")
WEB_INSTANCES = ("web-1:8080", "web-2:8080")
CLUSTERS = ("eu-1", "us-1")
QUEUES = ("orders", "emails", "invoices")
SENSORS = ("rack-a", "rack-b", "rack-c", "rack-d")
DEPLOYMENTS = {"checkout": "payments", "search": "discovery", "auth": "identity",
               "billing": "payments"}
BUCKETS = ("0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf")
METHODS = ("GET", "POST", "OPTIONS")
CODES = ("200", "500", "503")


class DemoError(ValueError):
    """Parameters the generator cannot use (the message names the option)."""


@dataclass(frozen=True, slots=True)
class Incident:
    """One planted incident: what kind, where, from when, for how long."""

    kind: str
    target: str  # an instance, queue, sensor or deployment ("" when it is global)
    start_ms: int
    duration_ms: int

    @property
    def end_ms(self) -> int:
        """The first time after the incident."""
        return self.start_ms + self.duration_ms


FLUSH_SAMPLES = 4_000_000
"""A family writes its pending samples once it holds this many (bounds memory for long ranges)."""


@dataclass(slots=True)
class Family:
    """Samples of one metric family on their way to ``Store.append_arrays``.

    ``sink`` receives the family whenever ``FLUSH_SAMPLES`` samples are pending
    and at :meth:`flush`; it returns how many samples it wrote.
    """

    name: str
    sink: Callable[[Family], int] | None = None
    label_sets: list[Labels] = field(default_factory=list)
    index: list[IntArray] = field(default_factory=list)
    ts: list[IntArray] = field(default_factory=list)
    values: list[FloatArray] = field(default_factory=list)
    pending: int = 0
    written: int = 0
    series: int = 0

    def add(self, labels: dict[str, str], ts: IntArray, values: FloatArray) -> None:
        """Add one series (``ts``/``values`` parallel; NaN values are dropped: no scrape)."""
        keep = ~np.isnan(values)
        pos = len(self.label_sets)
        self.label_sets.append(tuple(sorted({"__name__": self.name, **labels}.items())))
        self.index.append(np.full(int(keep.sum()), pos, dtype=np.int64))
        self.ts.append(ts[keep])
        self.values.append(values[keep])
        self.pending += int(keep.sum())
        self.series += 1
        if self.pending >= FLUSH_SAMPLES:
            self.flush()

    def arrays(self) -> tuple[list[Labels], IntArray, IntArray, FloatArray]:
        """The pending samples as ``append_arrays`` takes them."""
        return (self.label_sets, np.concatenate(self.index), np.concatenate(self.ts),
                np.concatenate(self.values))

    def flush(self) -> None:
        """Hand the pending samples to the sink (without one they stay)."""
        if self.sink is None or not self.label_sets:
            return
        self.written += self.sink(self)
        self.label_sets, self.index, self.ts, self.values = [], [], [], []
        self.pending = 0


# Kinds of incident, how often they happen (per day) and how long they last (min, max).
INCIDENT_KINDS: dict[str, tuple[float, int, int]] = {
    "error_spike": (0.4, 15 * MINUTE_MS, 45 * MINUTE_MS),
    "latency": (0.25, 20 * MINUTE_MS, 60 * MINUTE_MS),
    "instance_down": (0.2, 6 * MINUTE_MS, 20 * MINUTE_MS),
    "scrape_gap": (0.1, 20 * MINUTE_MS, 30 * MINUTE_MS),
    "cpu_saturation": (0.2, 70 * MINUTE_MS, 120 * MINUTE_MS),
    "memory_pressure": (0.15, 15 * MINUTE_MS, 40 * MINUTE_MS),
    "disk_fill": (0.15, 4 * HOUR_MS, 8 * HOUR_MS),
    "queue_backlog": (0.25, 40 * MINUTE_MS, 90 * MINUTE_MS),
    "temperature": (0.15, 10 * MINUTE_MS, 30 * MINUTE_MS),
    "odd_replicas": (0.2, 20 * MINUTE_MS, 60 * MINUTE_MS),
}
_TARGETS: dict[str, Sequence[str]] = {
    "error_spike": API_INSTANCES,
    "latency": API_INSTANCES + WEB_INSTANCES,
    "instance_down": API_INSTANCES,
    "scrape_gap": ("",),
    "cpu_saturation": API_INSTANCES + WEB_INSTANCES,
    "memory_pressure": API_INSTANCES + WEB_INSTANCES,
    "disk_fill": API_INSTANCES + WEB_INSTANCES,
    "queue_backlog": QUEUES,
    "temperature": SENSORS,
    "odd_replicas": tuple(DEPLOYMENTS),
}


def plan_incidents(rng: np.random.Generator, start_ms: int, end_ms: int) -> list[Incident]:
    """The planted incidents: per kind, a Poisson number at random times (at least one).

    Incidents start six hours after the beginning at the earliest and end before
    the end, so every one has quiet history before and after it.
    """
    span = end_ms - start_ms
    lo = start_ms + min(6 * HOUR_MS, span // 4)
    out: list[Incident] = []
    for kind, (per_day, shortest, longest) in INCIDENT_KINDS.items():
        count = max(1, int(rng.poisson(per_day * span / DAY_MS)))
        for _ in range(count):
            duration = int(rng.integers(shortest, longest + 1)) // MINUTE_MS * MINUTE_MS
            hi = end_ms - duration - HOUR_MS
            if hi <= lo:
                continue
            begin = int(rng.integers(lo, hi)) // MINUTE_MS * MINUTE_MS
            target = str(rng.choice(np.array(_TARGETS[kind])))
            out.append(Incident(kind, target, begin, duration))
    return sorted(out, key=lambda i: (i.start_ms, i.kind))


class DemoHistory:
    """Generates the families for one range and seed (see the module docstring)."""

    def __init__(self, start_ms: int, end_ms: int, seed: int,
                 sink: Callable[[Family], int] | None = None) -> None:
        if end_ms - start_ms < HOUR_MS:
            raise DemoError("--days: the history must span at least an hour")
        self.start_ms, self.end_ms, self.seed = start_ms, end_ms, seed
        self.rng = np.random.default_rng(seed)
        self.incidents = plan_incidents(self.rng, start_ms, end_ms)
        self.slots = np.arange(start_ms, end_ms, SCRAPE_MS, dtype=np.int64)
        self.sink = sink

    def family(self, name: str) -> Family:
        """A new family writing to this history's sink."""
        return Family(name, self.sink)

    # -------------------------------------------------------------- helpers

    def times(self, step_ms: int = SCRAPE_MS) -> IntArray:
        """One scrape's sample times: a fixed per-series phase plus a little jitter."""
        slots = self.slots if step_ms == SCRAPE_MS else np.arange(
            self.start_ms, self.end_ms, step_ms, dtype=np.int64)
        phase = int(self.rng.integers(500, step_ms // 3))
        jitter = self.rng.integers(-200, 200, size=len(slots))
        return slots + phase + jitter

    def daily(self, ts: IntArray, peak_hour: float = 14.0) -> FloatArray:
        """Daily seasonality in [0, 1]: 1 at ``peak_hour`` UTC, 0 twelve hours later."""
        hours = (ts % DAY_MS) / HOUR_MS
        return 0.5 + 0.5 * np.cos(2 * np.pi * (hours - peak_hour) / 24.0)

    def wander(self, ts: IntArray, scale: float) -> FloatArray:
        """Slow random variation: a few sinusoids with random periods of 1 to 30 hours."""
        out = np.zeros(len(ts))
        for _ in range(4):
            period = float(self.rng.uniform(1.0, 30.0)) * HOUR_MS
            phase = float(self.rng.uniform(0, 2 * np.pi))
            out += np.sin(2 * np.pi * (ts - self.start_ms) / period + phase)
        return out * (scale / 4.0)

    def noise(self, n: int, scale: float) -> FloatArray:
        """White measurement noise."""
        return self.rng.normal(0.0, scale, size=n)

    def during(self, ts: IntArray, kind: str, target: str | None = None,
               ramp: bool = False) -> FloatArray:
        """1 inside the incidents of ``kind`` (on ``target``, or any), else 0.

        With ``ramp`` the value grows linearly from 0 to 1 across each incident
        (a backlog building up, a disk filling).
        """
        out = np.zeros(len(ts))
        for inc in self.incidents:
            if inc.kind != kind or (target is not None and inc.target not in ("", target)):
                continue
            inside = (ts >= inc.start_ms) & (ts < inc.end_ms)
            if ramp:
                out[inside] = np.maximum(out[inside],
                                         (ts[inside] - inc.start_ms) / inc.duration_ms)
            else:
                out[inside] = 1.0
        return out

    def down(self, ts: IntArray, instance: str) -> npt.NDArray[np.bool_]:
        """Samples when ``instance`` is down (its own series are not scraped then)."""
        return self.during(ts, "instance_down", instance) > 0

    def gap(self, ts: IntArray) -> npt.NDArray[np.bool_]:
        """Samples lost in a scrape gap of the api job (the scraper was away)."""
        return self.during(ts, "scrape_gap") > 0

    def restarts(self, ts: IntArray, instance: str) -> npt.NDArray[np.bool_]:
        """Where the instance's counters restart from zero: after each outage, plus rare deploys."""
        was_down = self.down(ts, instance)
        after_outage = np.zeros(len(ts), dtype=bool)
        after_outage[1:] = was_down[:-1] & ~was_down[1:]
        deploys = self.rng.random(len(ts)) < 1.0 / (2 * DAY_MS / SCRAPE_MS)  # ~ every 2 days
        return after_outage | deploys

    # ------------------------------------------------------------- families

    def families(self) -> Iterator[Family]:
        """Every metric family, one at a time (each is written before the next is built)."""
        yield self.up()
        yield self.error_rate()
        yield from self.http()
        yield from self.nodes()
        yield self.disk()
        yield self.queues()
        yield self.temperature()
        yield from self.kube()

    def up(self) -> Family:
        """``up``: 1, 0 while an instance is down; nothing at all during a scrape gap."""
        fam = self.family("up")
        for job, instances in (("api", API_INSTANCES), ("web", WEB_INSTANCES)):
            for inst in instances:
                ts = self.times()
                values = np.where(self.down(ts, inst), 0.0, 1.0)
                if job == "api":
                    values[self.gap(ts)] = np.nan
                fam.add({"job": job, "instance": inst}, ts, values)
        return fam

    def _scraped(self, ts: IntArray, job: str, instance: str) -> npt.NDArray[np.bool_]:
        """Samples of an instance's own metrics that exist (not down, not in a gap)."""
        missing = self.down(ts, instance)
        if job == "api":
            missing |= self.gap(ts)
        return ~missing

    def error_rate(self) -> Family:
        """``error_rate`` in percent: about 1 %, higher at peak traffic, 6-15 % in a spike."""
        fam = self.family("error_rate")
        for job, instances in (("api", API_INSTANCES), ("web", WEB_INSTANCES)):
            for inst in instances:
                ts = self.times()
                base = 0.6 + 0.8 * self.daily(ts) + self.wander(ts, 0.3)
                spike = self.during(ts, "error_spike", inst) * float(self.rng.uniform(6, 15))
                values = np.clip(base + spike + self.noise(len(ts), 0.25), 0.0, 100.0)
                values[~self._scraped(ts, job, inst)] = np.nan
                fam.add({"job": job, "instance": inst}, ts, values)
        return fam

    def http(self) -> tuple[Family, Family]:
        """``http_requests_total`` and ``http_request_duration_seconds_bucket`` (counters).

        Per instance: requests per second follow the day; the 5xx share rises in
        an error spike, latency in a latency incident; every counter of the
        instance restarts from zero at the same moments.
        """
        requests = self.family("http_requests_total")
        buckets = self.family("http_request_duration_seconds_bucket")
        for job, instances in (("api", API_INSTANCES), ("web", WEB_INSTANCES)):
            for inst in instances:
                ts = self.slots + int(self.rng.integers(500, 5000))
                scraped = self._scraped(ts, job, inst)
                resets = self.restarts(ts, inst)
                rps = (20 + 60 * self.daily(ts) + self.wander(ts, 8)) * scraped
                per_scrape = np.maximum(rps, 0.0) * (SCRAPE_MS / 1000)
                error_share = np.clip(0.01 + 0.2 * self.during(ts, "error_spike", inst), 0, 1)
                for method, share in zip(METHODS, (0.7, 0.25, 0.05), strict=True):
                    for code in CODES:
                        part = error_share / 2 if code != "200" else 1 - error_share
                        rate = per_scrape * share * part
                        inc = self.rng.poisson(rate).astype(np.float64)
                        values = restarting_cumsum(inc, resets)
                        values[~scraped] = np.nan
                        requests.add({"job": job, "instance": inst, "method": method,
                                      "code": code}, ts, values)
                # Latency: log-logistic, median 60 ms, four times slower in a latency incident.
                slow = self.during(ts, "latency", inst)
                median = 0.06 * (1 + 0.3 * self.daily(ts)) * (1 + 3 * slow)
                total = self.rng.poisson(per_scrape).astype(np.float64)
                below_prev = np.zeros(len(ts))
                counts = {}
                for le in BUCKETS:
                    below = (np.ones(len(ts)) if le == "+Inf"
                             else 1.0 / (1.0 + (median / float(le)) ** 3.0))
                    counts[le] = np.maximum(np.floor(total * below), below_prev)
                    below_prev = counts[le]
                for le in BUCKETS:
                    values = restarting_cumsum(counts[le], resets)
                    values[~scraped] = np.nan
                    buckets.add({"job": job, "instance": inst, "le": le}, ts, values)
        return requests, buckets

    def _hosts(self) -> Iterator[tuple[str, str]]:
        for i, inst in enumerate(API_INSTANCES + WEB_INSTANCES):
            yield inst, CLUSTERS[i % len(CLUSTERS)]

    def nodes(self) -> tuple[Family, Family, Family, Family]:
        """CPU and memory ratios per host, ``node_cluster_info`` and ``build_info``."""
        cpu, mem = self.family("cpu_usage_ratio"), self.family("memory_usage_ratio")
        info, build = self.family("node_cluster_info"), self.family("build_info")
        for inst, cluster in self._hosts():
            ts = self.times()
            labels = {"instance": inst, "cluster": cluster}
            busy = self.during(ts, "cpu_saturation", inst)
            base = 0.25 + 0.35 * self.daily(ts) + self.wander(ts, 0.08)
            values = base * (1 - busy) + busy * (0.91 + 0.03 * self.rng.random(len(ts)))
            cpu.add(labels, ts, np.clip(values + self.noise(len(ts), 0.02) * (1 - busy), 0, 1))
            press = self.during(ts, "memory_pressure", inst)
            used = 0.55 + 0.1 * self.daily(ts, 16) + self.wander(ts, 0.05) + 0.4 * press
            mem.add(labels, ts, np.clip(used + self.noise(len(ts), 0.01), 0, 0.99))
            info.add(labels, ts, np.ones(len(ts)))
            version = "1.4.2" if inst.startswith("api") else "1.5.0"
            build.add({**labels, "version": version}, ts, np.ones(len(ts)))
        return cpu, mem, info, build

    def disk(self) -> Family:
        """``disk_used_ratio`` (1-minute scrapes): slow growth, nightly clean-up, rare fills."""
        fam = self.family("disk_used_ratio")
        for inst, cluster in self._hosts():
            ts = self.times(DISK_SCRAPE_MS)
            base = float(self.rng.uniform(0.35, 0.6))
            since_midnight = (ts % DAY_MS) / DAY_MS
            fill = self.during(ts, "disk_fill", inst, ramp=True)
            values = base + 0.08 * since_midnight + (0.97 - base) * fill
            fam.add({"instance": inst, "cluster": cluster, "mountpoint": "/"}, ts,
                    np.clip(values + self.noise(len(ts), 0.002), 0, 1))
        return fam

    def queues(self) -> Family:
        """``queue_depth``: a few hundred messages; a backlog grows past 1,000 in an incident."""
        fam = self.family("queue_depth")
        for queue in QUEUES:
            ts = self.times()
            base = 150 + 250 * self.daily(ts, 11) + self.wander(ts, 60)
            backlog = self.during(ts, "queue_backlog", queue, ramp=True) * 3000
            values = np.maximum(base + backlog + self.noise(len(ts), 20), 0).round()
            fam.add({"queue": queue}, ts, values)
        return fam

    def temperature(self) -> Family:
        """``temperature_celsius`` per rack: 20-27 degrees, a cooling failure pushes it past 35."""
        fam = self.family("temperature_celsius")
        for sensor in SENSORS:
            ts = self.times()
            hot = self.during(ts, "temperature", sensor)
            values = 20 + 5 * self.daily(ts, 15) + self.wander(ts, 1.0) + 16 * hot
            fam.add({"sensor": sensor}, ts, values + self.noise(len(ts), 0.2))
        return fam

    def kube(self) -> tuple[Family, Family]:
        """``kube_pod_info`` (an even number of pods per deployment, one more in an incident).

        And ``kube_deployment_labels`` with each deployment's team.
        """
        pods, labels = self.family("kube_pod_info"), self.family("kube_deployment_labels")
        for deployment, team in DEPLOYMENTS.items():
            ts = self.times()
            extra = self.during(ts, "odd_replicas", deployment) > 0
            for i in range(3):
                values = np.ones(len(ts)) if i < 2 else np.where(extra, 1.0, np.nan)
                pods.add({"namespace": "prod", "deployment": deployment,
                          "pod": f"{deployment}-{i}"}, ts, values)
            labels.add({"deployment": deployment, "team": team}, ts, np.ones(len(ts)))
        return pods, labels


def restarting_cumsum(increments: FloatArray, resets: npt.NDArray[np.bool_]) -> FloatArray:
    """A counter: the running sum of ``increments``, starting again from zero where ``resets``.

    Vectorised: the running sum, minus the running sum just before the
    segment's first sample, per segment between resets.
    """
    total = np.cumsum(increments)
    segment = np.cumsum(resets)
    starts = np.flatnonzero(resets)
    base = np.concatenate(([0.0], total[starts] - increments[starts]))
    return total - base[segment]


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What :func:`write_demo` wrote."""

    series: int
    samples: int
    start_ms: int
    end_ms: int
    incidents: tuple[Incident, ...]
    families: tuple[str, ...]


def family_names() -> tuple[str, ...]:
    """The metric names the generator can write, in order."""
    return ("up", "error_rate", "http_requests_total", "http_request_duration_seconds_bucket",
            "cpu_usage_ratio", "memory_usage_ratio", "node_cluster_info", "build_info",
            "disk_used_ratio", "queue_depth", "temperature_celsius", "kube_pod_info",
            "kube_deployment_labels")


def check_options(days: float, only: Sequence[str] | None) -> None:
    """Raise :class:`DemoError` for a bad number of days or an unknown metric name."""
    if not math.isfinite(days) or days <= 0:
        raise DemoError("--days must be a positive number")
    if days * DAY_MS < HOUR_MS:
        raise DemoError("--days: the history must span at least an hour")
    unknown = sorted(set(only or ()) - set(family_names()))
    if unknown:
        raise DemoError(f"--series: unknown metric {', '.join(unknown)} "
                        f"(known: {', '.join(family_names())})")


def write_demo(store: Store, days: float, seed: int = 1, end_ms: int = DEFAULT_END_MS,
               only: Sequence[str] | None = None,
               progress: Callable[[str], None] | None = None) -> DemoSummary:
    """Generate the demo history ending at ``end_ms`` and append it to ``store``.

    ``only`` restricts the output to these metric names (every name must be one
    of :func:`family_names`). The store is compacted at the end so that reads
    come from its blocks.
    """
    check_options(days, only)
    start_ms = end_ms - round(days * DAY_MS)

    def sink(fam: Family) -> int:
        if only and fam.name not in only:
            return 0
        return store.append_arrays(*fam.arrays())

    # Every family is generated (with ``only`` too), so a family's data does not
    # depend on which others were asked for.
    history = DemoHistory(start_ms, end_ms, seed, sink)
    series = samples = 0
    written: list[str] = []
    for fam in history.families():
        fam.flush()
        if only and fam.name not in only:
            continue
        samples += fam.written
        series += fam.series
        written.append(fam.name)
        if progress is not None:
            progress(fam.name)
    store.compact()
    return DemoSummary(series, samples, start_ms, end_ms, tuple(history.incidents),
                       tuple(written))
