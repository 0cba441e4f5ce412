"""The dry-run report model: what a backtest found, independent of how it is shown.

The engine (:mod:`monitoring.dryrun.engine`) fills these dataclasses; the
terminal table, the JSON output and the HTML page (:mod:`monitoring.dryrun.html`)
only read them. Times are UTC epoch milliseconds, durations milliseconds, so the
model has no time-zone or float-rounding questions of its own. ``to_json``
gives the documented JSON shape (docs/dryrun.md, schema in
:mod:`monitoring.dryrun.schema`); its keys are stable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

LabelDict = dict[str, str]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """One rule group as evaluated: its grid of evaluation times."""

    name: str
    file: str
    interval_ms: int
    phase_ms: int  # evaluation times are phase_ms + k * interval_ms (Prometheus's group offset)
    query_offset_ms: int  # queries look this far in the past (``query_offset``)
    steps: int  # evaluation times inside the range
    first_eval_ms: int | None  # the first and last evaluation time (None: no step in range)
    last_eval_ms: int | None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What was evaluated: files, store, range; for a report header."""

    paths: tuple[str, ...]
    store: str
    start_ms: int  # the requested range, inclusive
    end_ms: int
    groups: tuple[GroupInfo, ...] = ()
    elapsed_s: float = 0.0
    chunk_steps: int = 0  # evaluation steps per chunk (memory bound)


@dataclass(frozen=True, slots=True)
class Interval:
    """One firing interval of one alert.

    ``active_ms`` is when the alert became pending (``ActiveAt``): the span
    ``[active_ms, start_ms)`` was pending (empty with ``for 0``). ``start_ms`` is
    the first evaluation at which it was firing, ``end_ms`` the evaluation at
    which it was resolved (None: still firing when the range ends; then
    ``duration_ms`` counts to the last evaluation). ``peak`` is the value
    furthest past the threshold while firing (the largest for ``>``/``>=`` and
    for conditions without a threshold, the smallest for ``<``/``<=``);
    ``start_value`` the value when it started firing (what the firing
    notification carries).
    """

    labels: LabelDict
    active_ms: int
    start_ms: int
    end_ms: int | None
    duration_ms: int
    peak: float
    start_value: float = math.nan  # $value at the first firing evaluation


@dataclass(frozen=True, slots=True)
class Notification:
    """A notification that would have gone out on one channel."""

    time_ms: int
    channel: str
    kind: str  # "firing" | "resolved"
    labels: LabelDict  # the alert's identity
    value: float  # $value at that evaluation (NaN when the alert had no value, e.g. resolved)
    summary: str = ""  # the rendered summary annotation, if the rule has one


@dataclass(frozen=True, slots=True)
class PlotSeries:
    """One series of the plotted value; ``values`` align with :attr:`RulePlot.times_ms`."""

    labels: LabelDict
    values: tuple[float, ...]  # NaN where the series had no value
    fired: bool  # an alert of this series fired in the range


@dataclass(frozen=True, slots=True)
class RulePlot:
    """The evaluated value of a rule over time, downsampled for plotting.

    ``expr`` is the plotted expression: the left side of a top-level comparison
    against a constant (then ``threshold``/``op`` are that constant and
    operator), else the condition itself (``threshold`` and ``op`` None).
    Downsampling keeps, per bucket of steps, the value furthest in the
    direction of the alert (max for ``>``, min for ``<``), so spikes survive.
    ``series`` holds every series that fired plus a few others; ``total_series``
    says how many there were.
    """

    expr: str
    times_ms: tuple[int, ...]
    series: tuple[PlotSeries, ...]
    threshold: float | None
    op: str | None
    total_series: int
    bucket_ms: int  # the time one point stands for (the interval when not downsampled)


@dataclass(slots=True)
class RuleReport:
    """Everything the dry-run found for one rule.

    ``status`` is ``"ok"``, ``"not_evaluated"`` (``reason`` says why: an
    unimplemented function, an evaluation error) or ``"no_data"`` (an unknown
    metric, or the compared side of a threshold had no series in the range;
    ``reason`` says which). Recording rules have no
    intervals or notifications; ``series`` counts the series they produced.
    ``flaps`` counts the times an alert entered the flapping state (N state
    changes within M evaluations, see docs/alerts.md).
    """

    name: str
    group: str
    file: str
    kind: str  # "alert" | "record"
    expr: str
    interval_ms: int
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    severity: str | None = None
    channels: tuple[str, ...] = ()
    cooldown_ms: int = 0
    status: str = "ok"
    reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    series: int = 0  # result series seen over the range
    firings: int = 0
    firing_ms: int = 0
    flaps: int = 0
    first_firing_ms: int | None = None
    last_firing_ms: int | None = None
    median_firing_ms: float | None = None
    intervals: list[Interval] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    suppressed: int = 0  # firing notifications the cooldown suppressed
    errors: list[str] = field(default_factory=list)  # evaluation errors at some steps
    plot: RulePlot | None = None

    @property
    def key(self) -> str:
        """``group/name``: how the rule is named in tables and comparisons."""
        return f"{self.group}/{self.name}"


@dataclass(slots=True)
class DryRunReport:
    """The outcome of one dry-run: run information, one report per rule, warnings."""

    info: RunInfo
    rules: list[RuleReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def alerts(self) -> list[RuleReport]:
        """The alerting rules."""
        return [r for r in self.rules if r.kind == "alert"]

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (``monitoring dry-run --format json``)."""
        return {
            "kind": "dry-run",
            "info": _info_json(self.info),
            "warnings": list(self.warnings),
            "rules": [_rule_json(r) for r in self.rules],
        }


@dataclass(frozen=True, slots=True)
class IntervalChange:
    """An interval that differs between the old and the new rule set."""

    kind: str  # "new" | "gone" | "changed"
    labels: LabelDict
    old: Interval | None
    new: Interval | None


@dataclass(slots=True)
class RuleDiff:
    """How one rule's outcome changed between two rule sets.

    ``change`` is ``"added"``, ``"removed"``, ``"changed"`` or ``"unchanged"``;
    ``old``/``new`` are the two reports (None for an added/removed rule).
    """

    key: str
    change: str
    old: RuleReport | None
    new: RuleReport | None
    intervals: list[IntervalChange] = field(default_factory=list)

    @property
    def old_firings(self) -> int:
        """Firings under the old rule set (0 when the rule was added)."""
        return self.old.firings if self.old is not None else 0

    @property
    def new_firings(self) -> int:
        """Firings under the new rule set (0 when the rule was removed)."""
        return self.new.firings if self.new is not None else 0


@dataclass(slots=True)
class CompareReport:
    """``monitoring dry-run --compare``: both reports and the per-rule differences."""

    old: DryRunReport
    new: DryRunReport
    rules: list[RuleDiff] = field(default_factory=list)
    shared_nodes: int = 0  # expression nodes evaluated once for both rule sets

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (``--compare ... --format json``)."""
        return {
            "kind": "dry-run-compare",
            "old": self.old.to_json(),
            "new": self.new.to_json(),
            "shared_nodes": self.shared_nodes,
            "rules": [_diff_json(d) for d in self.rules],
        }


# ------------------------------------------------------------------ JSON


def json_float(value: float | None) -> float | str | None:
    """A float for JSON: NaN and infinities as Prometheus writes them (strings)."""
    if value is None:
        return None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return value


def _info_json(info: RunInfo) -> dict[str, Any]:
    return {
        "paths": list(info.paths),
        "store": info.store,
        "start_ms": info.start_ms,
        "end_ms": info.end_ms,
        "elapsed_s": round(info.elapsed_s, 3),
        "chunk_steps": info.chunk_steps,
        "groups": [
            {"name": g.name, "file": g.file, "interval_ms": g.interval_ms, "phase_ms": g.phase_ms,
             "query_offset_ms": g.query_offset_ms, "steps": g.steps,
             "first_eval_ms": g.first_eval_ms, "last_eval_ms": g.last_eval_ms}
            for g in info.groups
        ],
    }


def interval_json(iv: Interval) -> dict[str, Any]:
    """One interval as JSON."""
    return {"labels": dict(iv.labels), "active_ms": iv.active_ms, "start_ms": iv.start_ms,
            "end_ms": iv.end_ms, "duration_ms": iv.duration_ms, "peak": json_float(iv.peak),
            "start_value": json_float(iv.start_value)}


def _rule_json(r: RuleReport) -> dict[str, Any]:
    return {
        "name": r.name,
        "group": r.group,
        "file": r.file,
        "kind": r.kind,
        "expr": r.expr,
        "interval_ms": r.interval_ms,
        "for_ms": r.for_ms,
        "keep_firing_for_ms": r.keep_firing_for_ms,
        "severity": r.severity,
        "channels": list(r.channels),
        "cooldown_ms": r.cooldown_ms,
        "status": r.status,
        "reason": r.reason,
        "warnings": list(r.warnings),
        "errors": list(r.errors),
        "series": r.series,
        "firings": r.firings,
        "firing_ms": r.firing_ms,
        "flaps": r.flaps,
        "first_firing_ms": r.first_firing_ms,
        "last_firing_ms": r.last_firing_ms,
        "median_firing_ms": r.median_firing_ms,
        "intervals": [interval_json(iv) for iv in r.intervals],
        "notifications": [
            {"time_ms": n.time_ms, "channel": n.channel, "kind": n.kind, "labels": dict(n.labels),
             "value": json_float(n.value), "summary": n.summary}
            for n in r.notifications
        ],
        "suppressed": r.suppressed,
        "plot": None if r.plot is None else {
            "expr": r.plot.expr,
            "threshold": json_float(r.plot.threshold),
            "op": r.plot.op,
            "total_series": r.plot.total_series,
            "bucket_ms": r.plot.bucket_ms,
            "times_ms": list(r.plot.times_ms),
            "series": [{"labels": dict(s.labels), "fired": s.fired,
                        "values": [None if math.isnan(v) else json_float(v) for v in s.values]}
                       for s in r.plot.series],
        },
    }


def _diff_json(d: RuleDiff) -> dict[str, Any]:
    return {
        "rule": d.key,
        "change": d.change,
        "old_firings": d.old_firings,
        "new_firings": d.new_firings,
        "old_firing_ms": d.old.firing_ms if d.old is not None else 0,
        "new_firing_ms": d.new.firing_ms if d.new is not None else 0,
        "old_status": d.old.status if d.old is not None else None,
        "new_status": d.new.status if d.new is not None else None,
        "intervals": [
            {"kind": c.kind, "labels": dict(c.labels),
             "old": interval_json(c.old) if c.old is not None else None,
             "new": interval_json(c.new) if c.new is not None else None}
            for c in d.intervals
        ],
    }
