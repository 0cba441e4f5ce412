"""Live synthetic metrics for ``monitoring serve --demo``: the shipped rules fire, then resolve.

Why: a new user should see the whole engine at work within a minute: alerts
firing, notifications, an escalation reaching its second stage, resolutions.
The series are the ones :mod:`monitoring.demo` generates for the dry-run demo
(the metric families the files in ``rules/`` read), with the incidents of
:data:`INCIDENT_SCRIPT` planted at fixed offsets from the feed's start instead
of at random: on a ``ScaledClock`` at 60x the simulated hour that holds them
passes in one real minute.

One timeline is generated up front (NumPy, a few hundred thousand samples) and
handed out in slices: :meth:`DemoFeed.backfill` writes the history before the
start (so ``[1h]`` subqueries, ``offset 1h`` and ``[6h]`` windows have data),
:meth:`DemoFeed.samples_until` the samples that became due since its previous
call. Counters are therefore continuous across calls (a rate over two slices
sees one counter). When the timeline runs out the next segment is generated
without incidents, its counters continuing from the previous segment's last
values.

Dry-run of ``rules/`` over the first hour (tests/integration/test_live_demo_feed.py):
every rule named in the script fires and resolves within it. Two shipped rules
stay quiet: ``DiskSeasonalForecast`` needs a week of history (a daily season
twice over, more than a quick backfill), and ``ClockSkew`` sees a skewed
clock only while samples arrive late, which a store written ahead of the
evaluation cannot show. ``DiskWillFill`` depends on the time of day: the demo
data's disk usage drops at 00:00 UTC (nightly clean-up), and a demo started
between about 23:00 and 03:00 UTC sees it fire late, not resolve within the
hour, or not fire (tried: 23:00 fired without resolving, 02:00 did not fire;
00:30, 05:00, 06:30, 08:00, 10:00 fired and resolved).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitoring.demo import (
    HOUR_MS,
    MINUTE_MS,
    DemoError,
    DemoHistory,
    Incident,
    restarting_cumsum,
)
from monitoring.engine.model import Labels
from monitoring.engine.store import Store

Sample = tuple[dict[str, str], int, float]

HISTORY_HOURS = 6.0
"""History before the start that :meth:`DemoFeed.backfill` can write (``DiskWillFill`` reads 6h)."""
SEGMENT_MS = 6 * HOUR_MS
"""Length of each generated stretch of the timeline after the start."""
COUNTERS = frozenset({"http_requests_total", "http_request_duration_seconds_bucket"})
"""Families whose next segment continues from the previous segment's last value."""
SURGE_FACTOR = 3.0
"""A ``traffic_surge`` multiplies the target instance's request rate by this."""
FEED_KINDS = frozenset({"traffic_surge"})
"""Incident kinds this module adds to :mod:`monitoring.demo`'s (applied to the generated series)."""


@dataclass(frozen=True, slots=True)
class ScriptedIncident:
    """One planted incident, in minutes from the feed's start (negative: in the backfill)."""

    kind: str
    target: str
    offset_min: int
    duration_min: int
    rules: tuple[str, ...]  # the shipped rules it is meant to make fire

    def at(self, start_ms: int) -> Incident:
        """The incident at absolute times."""
        return Incident(self.kind, self.target, start_ms + self.offset_min * MINUTE_MS,
                        self.duration_min * MINUTE_MS)


INCIDENT_SCRIPT: tuple[ScriptedIncident, ...] = (
    # HighErrorRate fires about 5 minutes in and stays firing about 21 minutes, so the
    # critical_alerts escalation reaches its 900 s stage before the alert resolves.
    ScriptedIncident("error_spike", "api-1:8080", 0, 17,
                     ("HighErrorRate", "ErrorRatioFromRecording", "high_error_rate")),
    ScriptedIncident("latency", "api-2:8080", 2, 25, ("HighLatencyP99", "LatencyAnomaly")),
    ScriptedIncident("temperature", "rack-a", 3, 15, ("TemperatureOutOfRange",)),
    ScriptedIncident("queue_backlog", "orders", 2, 40, ("QueueGrowing",)),
    ScriptedIncident("memory_pressure", "web-2:8080", 5, 15, ("NodeOverloaded",)),
    ScriptedIncident("odd_replicas", "checkout", 5, 25, ("OddReplicas",)),
    # Started in the backfill so that 45 of the last 60 minutes are saturated early on.
    ScriptedIncident("cpu_saturation", "web-1:8080", -40, 65,
                     ("CpuSaturated", "Degraded", "CpuSaturatedMostOfTheHour")),
    # Two hours of filling: the 6-hour trend and forecast fire, and calm down after the clean-up.
    ScriptedIncident("disk_fill", "api-1:8080", -120, 125, ("DiskWillFill",)),
    ScriptedIncident("traffic_surge", "web-2:8080", 10, 20, ("TrafficOutlier",)),
    ScriptedIncident("instance_down", "api-3:8080", 28, 8, ("InstanceDown",)),
    ScriptedIncident("scrape_gap", "", 38, 18, ("ApiMetricsAbsent",)),
)
"""The incidents of the demo's first simulated hour and the rules each one is for."""


@dataclass(slots=True)
class _Segment:
    """A stretch of the timeline: every sample of every series, sorted by time."""

    label_sets: list[Labels]
    labels: list[dict[str, str]]
    index: np.ndarray
    ts: np.ndarray
    values: np.ndarray
    end_ms: int  # first time after the segment


class DemoFeed:
    """Synthetic metrics from ``start_ms`` on (see the module docstring).

    ``history_hours`` bounds what :meth:`backfill` can write; ``script`` replaces
    :data:`INCIDENT_SCRIPT` (tests).
    """

    def __init__(self, start_ms: int, *, seed: int = 1, history_hours: float = HISTORY_HOURS,
                 script: Sequence[ScriptedIncident] = INCIDENT_SCRIPT) -> None:
        if not history_hours >= 0:
            raise DemoError("history_hours must not be negative")
        self.start_ms = start_ms
        self.seed = seed
        self.history_ms = round(history_hours * HOUR_MS)
        self.incidents = tuple(s.at(start_ms) for s in script)
        self._cursor = start_ms - 1  # samples_until hands out times after this
        self._counter_last: dict[Labels, float] = {}
        self._generated = 0
        self._history_kept = True
        first = start_ms - self.history_ms
        self._segments = [self._generate(first, start_ms + SEGMENT_MS, list(self.incidents))]

    # ------------------------------------------------------------ generation

    def _generate(self, begin_ms: int, end_ms: int, incidents: list[Incident]) -> _Segment:
        history = DemoHistory(begin_ms, end_ms, self.seed + self._generated)
        self._generated += 1
        history.incidents = [i for i in incidents if i.kind not in FEED_KINDS]
        label_sets: list[Labels] = []
        index: list[np.ndarray] = []
        ts: list[np.ndarray] = []
        values: list[np.ndarray] = []
        extra = [i for i in incidents if i.kind in FEED_KINDS]
        for fam in history.families():
            for pos, labels in enumerate(fam.label_sets):
                vals = _feed_incidents(fam.name, dict(labels), fam.ts[pos], fam.values[pos],
                                       extra)
                if fam.name in COUNTERS:
                    vals = vals + self._counter_last.get(labels, 0.0)
                    if len(vals):
                        self._counter_last[labels] = float(vals[-1])
                index.append(np.full(len(vals), len(label_sets), dtype=np.int64))
                label_sets.append(labels)
                ts.append(fam.ts[pos])
                values.append(vals)
        all_ts = np.concatenate(ts)
        order = np.argsort(all_ts, kind="stable")
        return _Segment(label_sets, [dict(ls) for ls in label_sets],
                        np.concatenate(index)[order], all_ts[order],
                        np.concatenate(values)[order], end_ms)

    def _extend(self) -> None:
        last = self._segments[-1]
        self._segments.append(self._generate(last.end_ms, last.end_ms + SEGMENT_MS, []))

    # ------------------------------------------------------------ handing out

    def backfill(self, store: Store, hours: float) -> int:
        """Write the ``hours`` before the start into ``store``; returns the samples written.

        Call it before the live feed starts; at most ``history_hours`` (constructor).
        """
        want = round(hours * HOUR_MS)
        if not 0 <= want <= self.history_ms:
            raise DemoError(f"backfill hours must be between 0 and {self.history_ms / HOUR_MS:g}"
                            f" (got {hours:g})")
        if not self._history_kept:
            raise DemoError("backfill must come before the live feed has moved on")
        first = self._segments[0]
        lo = int(np.searchsorted(first.ts, self.start_ms - want, side="left"))
        hi = int(np.searchsorted(first.ts, self.start_ms, side="left"))
        if hi <= lo:
            return 0
        return store.append_arrays(first.label_sets, first.index[lo:hi], first.ts[lo:hi],
                                   first.values[lo:hi])

    def samples_until(self, now_ms: int) -> list[Sample]:
        """The samples after the previous call's ``now_ms`` (or the start), up to ``now_ms``.

        Calls with a ``now_ms`` not after the previous one return nothing.
        """
        out: list[Sample] = []
        if now_ms <= self._cursor:
            return out
        while self._segments[-1].end_ms <= now_ms:
            self._extend()
        for seg in self._segments:
            if seg.end_ms <= self._cursor + 1:
                continue
            lo = int(np.searchsorted(seg.ts, self._cursor, side="right"))
            hi = int(np.searchsorted(seg.ts, now_ms, side="right"))
            labels = seg.labels
            out.extend((labels[i], t, v) for i, t, v in zip(
                seg.index[lo:hi].tolist(), seg.ts[lo:hi].tolist(), seg.values[lo:hi].tolist(),
                strict=True))
        self._cursor = now_ms
        # Segments wholly handed out are no longer needed (keep the last one).
        while len(self._segments) > 1 and self._segments[0].end_ms <= now_ms:
            self._segments.pop(0)
            self._history_kept = False
        return out

    def metric_names(self) -> list[str]:
        """The metric names the feed writes."""
        return sorted({ls["__name__"] for ls in self._segments[-1].labels})


def _inside(ts: np.ndarray, incidents: Sequence[Incident]) -> np.ndarray:
    out = np.zeros(len(ts), dtype=bool)
    for inc in incidents:
        out |= (ts >= inc.start_ms) & (ts < inc.end_ms)
    return out


def _feed_incidents(name: str, labels: dict[str, str], ts: np.ndarray, values: np.ndarray,
                    incidents: Sequence[Incident]) -> np.ndarray:
    """One series' values with this module's incident kinds applied (:data:`FEED_KINDS`).

    ``traffic_surge``: the request counter of the target grows :data:`SURGE_FACTOR`
    times faster inside the incident (increments scaled, counter resets kept).
    """
    surges = [i for i in incidents
              if i.kind == "traffic_surge" and i.target == labels.get("instance")]
    if name != "http_requests_total" or not surges:
        return values
    inc = np.diff(values, prepend=0.0)
    resets = inc < 0
    inc[resets] = values[resets]
    inc[_inside(ts, surges)] *= SURGE_FACTOR
    return restarting_cumsum(inc, resets)
