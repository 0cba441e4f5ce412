"""A plain per-step mirror of Prometheus's ``AlertingRule.Eval`` plus our additions.

Written to be obviously right rather than fast: one evaluation at a time, dicts
keyed by alert identity, following rules/alerting.go line by line. The
vectorised machine is checked against it (tests/unit/test_alerts_mirror.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.alerts import RESOLVED_RETENTION_MS, AlertRuleSpec, AlertState
from monitoring.engine.alerts.identity import NODATA_SERIES, LabelMaker
from monitoring.engine.model import Labels

DUPLICATE = "vector contains metrics with the same labelset after applying alert labels"
INACTIVE, PENDING, FIRING, NODATA = (AlertState.INACTIVE, AlertState.PENDING,
                                     AlertState.FIRING, AlertState.NODATA)


@dataclass
class MirrorAlert:
    state: AlertState
    active_at: int
    value: float
    fired_at: int | None = None
    resolved_at: int | None = None
    keep_since: int | None = None


@dataclass
class Mirror:
    spec: AlertRuleSpec
    active: dict[Labels, MirrorAlert] = field(default_factory=dict)
    hyst: dict[Labels, bool] = field(default_factory=dict)
    shown: dict[Labels, AlertState] = field(default_factory=dict)
    changes: dict[Labels, list[bool]] = field(default_factory=dict)
    last_time: int | None = None
    nodata_since: int = 0

    def step(self, t: int, series: list[Labels], fire: list[bool], hold: list[bool] | None,
             value: list[float], no_data: bool) -> tuple[dict[Labels, AlertState],
                                                         dict[Labels, bool], str | None]:
        """One evaluation; returns shown states, flapping flags and an error message."""
        maker = LabelMaker(self.spec)
        policy = self.spec.no_data
        self.last_time = t
        error = None
        skip = no_data and policy in (NoDataPolicy.KEEP_LAST, NoDataPolicy.NODATA)
        if no_data and policy in (NoDataPolicy.RESOLVE, NoDataPolicy.FIRE):
            fire = [False] * len(fire)
            hold = None if hold is None else [False] * len(hold)
        nodata_id = maker.identity(NODATA_SERIES)
        if not skip:
            in_fire: dict[Labels, float] = {}
            in_hold: dict[Labels, float] = {}
            for i, s in enumerate(series):
                ident = maker.identity(s, value[i])
                if fire[i]:
                    if ident in in_fire:
                        error = DUPLICATE
                    in_fire[ident] = value[i]
                elif hold is not None and hold[i]:
                    in_hold.setdefault(ident, value[i])
            if policy is NoDataPolicy.FIRE and no_data:
                in_fire[nodata_id] = math.nan
            if error is None:
                result: dict[Labels, float] = dict(in_fire)
                if hold is not None:
                    for ident, v in in_hold.items():
                        if self.hyst.get(ident, False) and ident not in result:
                            result[ident] = v
                    self.hyst = {k: True for k in result}
                else:
                    self.hyst = {k: True for k in result}
                self._eval(t, result)
        shown = {k: a.state for k, a in self.active.items()}
        if policy is NoDataPolicy.NODATA and no_data:
            on = {k for k, s in shown.items() if s in (PENDING, FIRING)}
            shown = {k: (NODATA if k in on else INACTIVE) for k in shown}
            if not on:
                shown[nodata_id] = NODATA
                if self.shown.get(nodata_id) != NODATA:
                    self.nodata_since = t
        flapping = {}
        for k in set(shown) | set(self.shown) | set(self.changes):
            new, old = shown.get(k, INACTIVE), self.shown.get(k, INACTIVE)
            hist = self.changes.setdefault(k, [])
            hist.append(new != old)
            flapping[k] = sum(hist[-self.spec.flap_window:]) >= self.spec.flap_changes
        self.shown = {k: s for k, s in shown.items() if s != INACTIVE}
        return shown, flapping, error

    def _eval(self, ts: int, result: dict[Labels, float]) -> None:
        """rules/alerting.go, AlertingRule.Eval, after the query."""
        for h, v in result.items():
            alert = self.active.get(h)
            if alert is not None and alert.state != INACTIVE:
                alert.value = v
                continue
            self.active[h] = MirrorAlert(PENDING, ts, v)
        for fp, a in list(self.active.items()):
            if fp not in result:
                keep_firing = False
                if a.state == FIRING and self.spec.keep_firing_for_ms > 0:
                    if a.keep_since is None:
                        a.keep_since = ts
                    if ts - a.keep_since < self.spec.keep_firing_for_ms:
                        keep_firing = True
                if a.state == PENDING or (a.resolved_at is not None
                                          and ts - a.resolved_at > RESOLVED_RETENTION_MS):
                    del self.active[fp]
                if a.state != INACTIVE and not keep_firing:
                    a.state = INACTIVE
                    a.resolved_at = ts
                if not keep_firing:
                    continue
            else:
                a.keep_since = None
            if a.state == PENDING and ts - a.active_at >= self.spec.for_ms:
                a.state = FIRING
                a.fired_at = ts

    def alerts(self) -> dict[Labels, MirrorAlert]:
        """What ``AlertMachine.alerts`` should list (state as shown)."""
        assert self.last_time is not None
        out = {}
        for k, a in self.active.items():
            if a.state == INACTIVE and (a.resolved_at is None
                                        or self.last_time - a.resolved_at > RESOLVED_RETENTION_MS):
                continue
            out[k] = a
        for k, state in self.shown.items():
            if state == NODATA and k not in self.active:
                out[k] = MirrorAlert(NODATA, self.nodata_since, math.nan)
        return out
