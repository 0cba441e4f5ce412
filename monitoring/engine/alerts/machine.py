"""``AlertMachine``: one rule's alerts, advanced over any number of evaluation steps per call.

The machine keeps, per alert identity, only what Prometheus keeps between
evaluations (state, ActiveAt, KeepFiringSince, FiredAt, ResolvedAt, last value)
plus our additions (hysteresis flag, the last few state changes for flapping),
as NumPy arrays. ``advance`` maps result series to identities, applies the
no-data policy, then hands whole column blocks to :mod:`.core`; one column
per call (live evaluation, promtool tests) and 40,000 columns per call
(dry-run) go through the same code, and chunked calls equal one big call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from monitoring.dsl.ast import NoDataPolicy
from monitoring.engine.alerts import core
from monitoring.engine.alerts.identity import NODATA_SERIES, LabelMaker
from monitoring.engine.alerts.model import (
    NO_TIME,
    RESOLVED_RETENTION_MS,
    Advance,
    Alert,
    AlertRuleSpec,
    AlertState,
    RuleOutput,
    Transition,
)
from monitoring.engine.alerts.series_rows import SeriesRows
from monitoring.engine.model import Labels

DUPLICATE_LABELSET = "vector contains metrics with the same labelset after applying alert labels"
CELLS_PER_BLOCK = 2_000_000
"""Rows x columns handled at once; bounds memory for very long calls."""

_INT = np.int64
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
States = npt.NDArray[np.int8]
_FIRING = np.int8(AlertState.FIRING)
_NODATA = np.int8(AlertState.NODATA)


@dataclass(slots=True)
class _Carry:
    """Per-row state between evaluations (one entry per alert identity)."""

    state: npt.NDArray[np.int8]        # underlying state (never NODATA)
    shown: npt.NDArray[np.int8]        # state as reported (NODATA overlay applied)
    active_at: npt.NDArray[np.int64]
    keep_since: npt.NDArray[np.int64]
    fired_at: npt.NDArray[np.int64]
    resolved_at: npt.NDArray[np.int64]
    last_value: npt.NDArray[np.float64]
    hyst: npt.NDArray[np.bool_]
    flap_hist: npt.NDArray[np.bool_]   # [A, flap_window - 1] last state changes
    flapping: npt.NDArray[np.bool_]

    @classmethod
    def empty(cls, rows: int, window: int) -> _Carry:
        return cls(np.zeros(rows, np.int8), np.zeros(rows, np.int8),
                   np.full(rows, NO_TIME, _INT), np.full(rows, NO_TIME, _INT),
                   np.full(rows, NO_TIME, _INT), np.full(rows, NO_TIME, _INT),
                   np.full(rows, math.nan), np.zeros(rows, np.bool_),
                   np.zeros((rows, window - 1), np.bool_), np.zeros(rows, np.bool_))

    def grow(self, rows: int, window: int) -> _Carry:
        if rows == len(self.state):
            return self
        extra = _Carry.empty(rows - len(self.state), window)
        return _Carry(*(np.concatenate([getattr(self, f), getattr(extra, f)])
                        for f in _Carry.__slots__))

    def take(self, keep: npt.NDArray[np.int64]) -> _Carry:
        return _Carry(*(getattr(self, f)[keep] for f in _Carry.__slots__))

    def put(self, rows: npt.NDArray[np.int64], other: _Carry) -> None:
        for f in _Carry.__slots__:
            getattr(self, f)[rows] = getattr(other, f)


@dataclass(slots=True)
class _Positions:
    """Where result cells land: series ``s``, column ``t`` -> alert row ``r`` (slow path)."""

    s: npt.NDArray[np.int64]
    t: npt.NDArray[np.int64]
    r: npt.NDArray[np.int64]


_STATES = tuple(AlertState)
"""State by its number (faster than calling the enum per transition)."""


class AlertMachine:
    """The alerts of one alerting rule, as Prometheus's ``AlertingRule`` tracks them."""

    def __init__(self, spec: AlertRuleSpec, *, record_transitions: bool = True) -> None:
        """``record_transitions=False`` leaves :attr:`Advance.transitions` empty.

        A long dry-run reads the state matrices and needs no Python object per
        state change (millions, on noisy data).
        """
        self.spec = spec
        self._record_transitions = record_transitions
        self._maker = LabelMaker(spec)
        self._rows: dict[Labels, int] = {}
        self._labels: list[Labels] = []
        self._source: list[Labels] = []
        self._carry = _Carry.empty(0, spec.flap_window)
        self._last_time: int = int(NO_TIME)
        self._identity_cache: dict[Labels, Labels] = {}
        self._index = SeriesRows()  # static identities: series -> rows, vectorised

    # ------------------------------------------------------------------ rows

    def _row(self, identity: Labels, source: Labels) -> int:
        row = self._rows.get(identity)
        if row is None:
            row = len(self._labels)
            self._rows[identity] = row
            self._labels.append(identity)
            self._source.append(source)
            self._index.stale = True
        else:
            old = self._source[row]
            if old is not source and old != source:
                self._index.stale = True
            self._source[row] = source
        return row

    def _static_identity(self, series: Labels) -> Labels:
        found = self._identity_cache.get(series)
        if found is None:
            if len(self._identity_cache) > 200_000:
                self._identity_cache.clear()
            found = self._maker.identity(series)
            self._identity_cache[series] = found
        return found

    def _map_series(self, out: RuleOutput, idle_rows: bool = True
                    ) -> npt.NDArray[np.int64] | _Positions:
        """Rows of the result series: one per series, or per cell when labels read $value.

        Without ``idle_rows``, a series that neither fires nor holds and whose
        identity has no row gets -1 (no row) instead of a row forgotten again
        at the end of the call.
        """
        if not self._maker.dynamic:
            busy: Bools | None = None
            if not idle_rows:
                busy = np.asarray((out.fire if out.hold is None else out.fire | out.hold
                                   ).any(axis=1), dtype=np.bool_)
            return self._map_static(out.labels, busy)
        mask = out.fire if out.hold is None else out.fire | out.hold
        ss, ts = np.nonzero(mask)
        rows = [self._row(self._maker.identity(out.labels[s], float(out.value[s, t])),
                          out.labels[s]) for s, t in zip(ss.tolist(), ts.tolist(), strict=True)]
        return _Positions(ss.astype(_INT), ts.astype(_INT), np.array(rows, dtype=_INT))

    def _map_static(self, labels: list[Labels], busy: Bools | None) -> npt.NDArray[np.int64]:
        """Rows of result series whose identities do not read ``$value`` (see _map_series)."""
        index = self._index
        sids = index.numbers(labels, self._static_identity)
        index.refresh(self._rows, self._source)
        mapped, moved = index.rows(sids)
        mapped = mapped.copy()
        missing = mapped < 0
        if busy is not None:
            missing &= busy  # idle series without a row stay without one (-1)
        work = np.union1d(np.flatnonzero(missing), moved).tolist()
        for i in work:  # new rows and changed sources, in result order
            mapped[i] = self._row(index.identities[int(index.sid_iid[sids[i]])], labels[i])
        shared = False
        if work and busy is not None:  # an idle series of an identity given a row now?
            index.refresh(self._rows, self._source)
            shared = bool((index.rows(sids)[0][mapped < 0] >= 0).any())
        placed = mapped[mapped >= 0]
        if shared or len(np.unique(placed)) != len(placed):
            # Series sharing an identity: the last one in result order is the source.
            idle = [False] * len(labels) if busy is None else (~busy).tolist()
            mapped = np.array([self._static_row(s, idle[i]) for i, s in enumerate(labels)],
                              dtype=_INT).reshape(len(labels))
        return mapped

    def _static_row(self, series: Labels, idle: bool) -> int:
        """The row of ``series`` (created if needed), or -1 for an idle one without a row."""
        identity = self._static_identity(series)
        if idle and identity not in self._rows:
            return -1
        return self._row(identity, series)

    # ---------------------------------------------------------------- advance

    @property
    def idle(self) -> bool:
        """Whether a step where no series fires or holds changes nothing but the time.

        So when no alert is remembered and the no-data policy raises no
        rule-level alert (see :meth:`advance_idle`).
        """
        return not self._labels and self.spec.no_data in (NoDataPolicy.KEEP_LAST,
                                                          NoDataPolicy.RESOLVE)

    def has_alert_for(self, series: Labels) -> bool:
        """Whether a result series belongs to an alert this machine remembers.

        Always true when alert labels read ``$value`` (the identity is not known
        before the value).
        """
        if not self._rows:
            return False
        if self._maker.dynamic:
            return True
        return self._static_identity(series) in self._rows

    def advance_idle(self, times_ms: npt.NDArray[np.int64]) -> Advance:
        """:meth:`advance` (``idle_rows=False``) of an :attr:`idle` machine where nothing fires.

        No series fires or holds at ``times_ms``: no rows, no transitions. Live
        evaluation of a quiet rule: mapping its result series (most of a
        cycle's series) to alerts that do not exist would be all of its work.
        """
        if not self.idle:
            raise ValueError("advance_idle on a machine with alerts")
        self._check_after(times_ms)
        steps = len(times_ms)
        if steps:
            self._last_time = int(times_ms[-1])
        return Advance([], np.zeros((0, steps), np.int8), np.zeros((0, steps)),
                       np.zeros((0, steps), np.bool_))

    def advance(self, out: RuleOutput, *, idle_rows: bool = True) -> Advance:
        """Evaluate the rule at every time of ``out`` (after all earlier calls' times).

        ``Advance.values`` may be ``out.value`` itself (not a copy) when every row
        is one result series in order. ``idle_rows=False`` leaves out of the
        :class:`Advance` the rows of series that neither fire nor hold at any
        of these times and have no alert (they change nothing, and would be
        forgotten at the end of the call): live evaluation, one step per call,
        reads only transitions and alerts, and a row per idle series of every
        rule is most of its work.
        """
        times = out.times_ms
        self._check_after(times)
        mapping = self._map_series(out, idle_rows)
        if isinstance(mapping, np.ndarray) and bool((mapping < 0).any()):
            keep = np.flatnonzero(mapping >= 0)
            out = RuleOutput(out.times_ms, [out.labels[i] for i in keep.tolist()],
                             out.fire[keep], out.value[keep],
                             None if out.hold is None else out.hold[keep], out.no_data)
            mapping = mapping[keep]
        nodata_row = -1
        if self.spec.no_data in (NoDataPolicy.FIRE, NoDataPolicy.NODATA):
            ident = self._maker.identity(NODATA_SERIES)
            if ident in self._rows or (out.no_data is not None and bool(out.no_data.any())):
                nodata_row = self._row(ident, NODATA_SERIES)
        rows, steps = len(self._labels), len(times)
        self._carry = self._carry.grow(rows, self.spec.flap_window)
        aliased = (isinstance(mapping, np.ndarray) and len(mapping) == rows
                   and bool(np.array_equal(mapping, np.arange(rows))))
        result = Advance(list(self._labels), np.zeros((rows, steps), np.int8),
                         out.value if aliased else np.full((rows, steps), math.nan),
                         np.zeros((rows, steps), np.bool_))
        block = max(1, CELLS_PER_BLOCK // max(rows, 1))
        for start in range(0, steps, block):
            self._block(out, mapping, nodata_row, start, min(start + block, steps), result,
                        aliased)
        if steps:
            self._last_time = int(times[-1])
        self._prune()
        return result

    def _check_after(self, times: npt.NDArray[np.int64]) -> None:
        if len(times) and self._last_time != NO_TIME and int(times[0]) <= self._last_time:
            raise ValueError(f"evaluation time {int(times[0])} is not after the previous "
                             f"evaluation at {self._last_time}")

    def _scatter(self, out: RuleOutput, mapping: npt.NDArray[np.int64] | _Positions,
                 start: int, stop: int) -> tuple[Bools, Bools | None, Floats, Bools]:
        """Per-row fire, hold and value for columns ``[start, stop)``, and duplicate columns.

        When rows are exactly the result series, these are views of ``out``.
        """
        rows, cols = len(self._labels), stop - start
        o_fire = out.fire[:, start:stop]
        o_value = out.value[:, start:stop]
        o_hold = None if out.hold is None else out.hold[:, start:stop]
        dup = np.zeros(cols, np.bool_)
        if isinstance(mapping, np.ndarray) and len(np.unique(mapping)) == len(mapping):
            if len(mapping) == rows and bool(np.array_equal(mapping, np.arange(rows))):
                return o_fire, o_hold, o_value, dup
            fire = np.zeros((rows, cols), np.bool_)
            value = np.full((rows, cols), math.nan)
            fire[mapping] = o_fire
            value[mapping] = o_value
            hold = None
            if o_hold is not None:
                hold = np.zeros((rows, cols), np.bool_)
                hold[mapping] = o_hold
            return fire, hold, value, dup
        if isinstance(mapping, np.ndarray):
            ss, ts = np.nonzero(o_fire if o_hold is None else o_fire | o_hold)
            rs = mapping[ss]
        else:
            sel = (mapping.t >= start) & (mapping.t < stop)
            ss, ts, rs = mapping.s[sel], mapping.t[sel] - start, mapping.r[sel]
        f = o_fire[ss, ts]
        counts = np.zeros((rows, cols), np.int32)
        np.add.at(counts, (rs[f], ts[f]), 1)
        fire = counts > 0
        dup = np.asarray((counts > 1).any(axis=0), dtype=np.bool_)
        hold = None
        if o_hold is not None:
            hold = np.zeros((rows, cols), np.bool_)
            h = o_hold[ss, ts] | f
            hold[rs[h], ts[h]] = True
        value = np.full((rows, cols), math.nan)
        v = o_value[ss, ts]
        # A firing series' value wins, else the first holding series' value.
        for part in (~f, f):
            _, first = np.unique(rs[part] * cols + ts[part], return_index=True)
            value[rs[part][first], ts[part][first]] = v[part][first]
        return fire, hold, value, dup

    def _block(self, out: RuleOutput, mapping: npt.NDArray[np.int64] | _Positions,
               nodata_row: int, start: int, stop: int, result: Advance, aliased: bool) -> None:
        """Advance over columns ``[start, stop)``, writing into ``result``."""
        spec, c = self.spec, self._carry
        times = out.times_ms[start:stop].astype(_INT)
        fire, hold, value, dup = self._scatter(out, mapping, start, stop)
        if not aliased:
            result.values[:, start:stop] = value
        nd = (np.zeros(stop - start, np.bool_) if out.no_data is None
              else np.asarray(out.no_data[start:stop], dtype=np.bool_))
        any_nd = bool(nd.any())
        dup = dup & ~nd  # no data: the query returned nothing, so nothing is duplicated
        skip = dup
        if spec.no_data in (NoDataPolicy.RESOLVE, NoDataPolicy.FIRE):
            if any_nd:
                fire = fire & ~nd
                hold = None if hold is None else hold & ~nd
                if nodata_row >= 0:
                    fire[nodata_row] = nd
        else:
            skip = dup | nd
        result.errors.extend((int(times[i]), DUPLICATE_LABELSET) for i in np.flatnonzero(dup))
        # Only rows with something going on are worked on; the others stay inactive.
        live = fire.any(axis=1) | (c.state != 0) | (c.shown != 0) | c.hyst
        live |= c.flap_hist.any(axis=1)
        if hold is not None:
            live |= hold.any(axis=1)
        if nodata_row >= 0 and any_nd:
            live[nodata_row] = True
        picked = np.flatnonzero(live)
        c.flapping[~live] = False  # no change in the window: not flapping any more
        if len(picked) == 0:
            return
        if len(picked) == len(live):
            shown, flapping = self._run(c, picked, fire, hold, value, nd, skip, times,
                                        nodata_row, result.transitions)
            result.states[:, start:stop] = shown
            result.flapping[:, start:stop] = flapping
            return
        sub = c.take(picked)
        where = np.flatnonzero(picked == nodata_row)
        shown, flapping = self._run(sub, picked, fire[picked],
                                    None if hold is None else hold[picked], value[picked], nd,
                                    skip, times, int(where[0]) if len(where) else -1,
                                    result.transitions)
        c.put(picked, sub)
        result.states[picked, start:stop] = shown
        result.flapping[picked, start:stop] = flapping

    def _run(self, c: _Carry, picked: npt.NDArray[np.int64], fire: Bools, hold: Bools | None,
             value: Floats, nd: Bools, skip: Bools, times: npt.NDArray[np.int64],
             nodata_row: int, transitions: list[Transition]) -> tuple[States, Bools]:
        """The state machine on the rows ``picked`` (``c`` is their carry, updated here)."""
        spec = self.spec
        done = ~skip
        pcols = np.flatnonzero(done)
        all_done = len(pcols) == len(done)
        under: States = np.repeat(c.state[:, None], len(done), axis=1)
        keep_since = c.keep_since
        in_result = fire if all_done and hold is None else np.zeros_like(fire)
        if len(pcols):
            cond = fire if all_done else fire[:, pcols]
            if hold is not None:
                cond = core.hysteresis(cond, hold if all_done else hold[:, pcols], c.hyst)
            res = core.run(cond, times if all_done else times[pcols], c.state, c.active_at,
                           c.keep_since, spec.for_ms, spec.keep_firing_for_ms)
            if all_done:
                under, in_result = res.states, cond
            else:
                in_result[:, pcols] = cond
                pos = np.cumsum(done) - 1
                seen = pos >= 0
                under[:, seen] = res.states[:, pos[seen]]
            keep_since = res.keep_since
            c.hyst = cond[:, -1].copy()
        shown = under
        if spec.no_data is NoDataPolicy.NODATA and bool(nd.any()):
            shown = under.copy()
            real_on = shown[:, nd] > 0
            shown[:, nd] = np.where(real_on, _NODATA, np.int8(0))
            if nodata_row >= 0:
                shown[nodata_row, nd] = np.where(real_on.any(axis=0), np.int8(0), _NODATA)

        before = np.concatenate([c.shown[:, None], shown[:, :-1]], axis=1)
        changed = before != shown
        rs, ts = np.nonzero(changed)
        order = np.lexsort((rs, ts))
        rs, ts = rs[order], ts[order]
        # Alert.Value changes where the series is in the (effective) result, as in Prometheus.
        cols = len(done)
        if cols == 1:  # live evaluation: the value now, else the one carried
            now = np.where(in_result[:, 0] & ~np.isnan(value[:, 0]), value[:, 0], c.last_value)
        else:
            valid = np.flatnonzero(in_result & ~np.isnan(value))
        if self._record_transitions:
            values = now[rs] if cols == 1 else _last_valid(value, valid, cols, rs, ts,
                                                           c.last_value)
            labels = self._labels
            transitions.extend(
                Transition(labels[int(picked[r])], int(times[t]), _STATES[b], _STATES[a], v)
                for r, t, b, a, v in zip(rs.tolist(), ts.tolist(), before[rs, ts].tolist(),
                                         shown[rs, ts].tolist(), values.tolist(), strict=True))
        flapping = self._flapping(c, changed)
        if shown is not under:
            rs, ts = np.nonzero(np.concatenate([c.state[:, None], under[:, :-1]], axis=1) != under)
        self._update(c, under, times, keep_since, rs, ts)
        if nodata_row >= 0:  # the rule-level no-data alert is active since its NODATA began
            began = np.flatnonzero(changed[nodata_row] & (shown[nodata_row] == _NODATA))
            if len(began):
                c.active_at[nodata_row] = times[began[-1]]
        c.shown = shown[:, -1].copy()
        if cols == 1:
            c.last_value = now
        else:
            rows = np.arange(len(picked))
            c.last_value = _last_valid(value, valid, cols, rows, np.full(len(rows), cols - 1),
                                       c.last_value)
        return shown, flapping

    def _flapping(self, c: _Carry, changed: Bools) -> Bools:
        """N changes among the last M evaluations, counting this one's change."""
        window = self.spec.flap_window
        changes = np.concatenate([c.flap_hist, changed], axis=1)
        sums = np.zeros((changes.shape[0], changes.shape[1] + 1), np.int32)
        np.cumsum(changes, axis=1, out=sums[:, 1:])
        cols = changed.shape[1]
        counts = sums[:, window:window + cols] - sums[:, :cols]
        flapping: Bools = counts >= self.spec.flap_changes
        c.flap_hist = changes[:, changes.shape[1] - (window - 1):].copy()
        c.flapping = flapping[:, -1].copy()
        return flapping

    @staticmethod
    def _update(c: _Carry, under: States, times: npt.NDArray[np.int64],
                keep_since: npt.NDArray[np.int64], rs: npt.NDArray[np.intp],
                ts: npt.NDArray[np.intp]) -> None:
        """ActiveAt, FiredAt and ResolvedAt from the underlying state changes ``(rs, ts)``."""
        if under.shape[1] == 1:
            AlertMachine._update_one(c, under[:, 0], int(times[0]), keep_since)
            return
        old = np.where(ts > 0, under[rs, np.maximum(ts - 1, 0)], c.state[rs])
        new = under[rs, ts]
        rows = len(c.state)

        def last(mask: Bools) -> npt.NDArray[np.int64]:
            found = np.full(rows, -1, np.int64)
            np.maximum.at(found, rs[mask], ts[mask])
            return found

        started = last((old == 0) & (new > 0))
        fired = last((old != _FIRING) & (new == _FIRING))
        resolved = last((old == _FIRING) & (new == 0))
        t_of = np.concatenate([times, [NO_TIME]])  # index -1 -> NO_TIME
        c.active_at = np.where(started >= 0, t_of[started], c.active_at)
        c.fired_at = np.where((fired >= 0) & (fired >= started), t_of[fired],
                              np.where(started >= 0, NO_TIME, c.fired_at))
        c.resolved_at = np.where(resolved > started, t_of[resolved],
                                 np.where(started >= 0, NO_TIME, c.resolved_at))
        c.state = under[:, -1].copy()
        c.keep_since = np.where(c.state == _FIRING, keep_since, NO_TIME)

    @staticmethod
    def _update_one(c: _Carry, new: States, t: int, keep_since: npt.NDArray[np.int64]) -> None:
        """:meth:`_update` for one column: every row compared with its state before."""
        old = c.state
        started = (old == 0) & (new > 0)
        fired = (old != _FIRING) & (new == _FIRING)
        resolved = (old == _FIRING) & (new == 0)
        c.active_at = np.where(started, t, c.active_at)
        c.fired_at = np.where(fired, t, np.where(started, NO_TIME, c.fired_at))
        c.resolved_at = np.where(resolved, t, np.where(started, NO_TIME, c.resolved_at))
        c.state = new.copy()
        c.keep_since = np.where(new == _FIRING, keep_since, NO_TIME)

    def _prune(self) -> None:
        """Forget identities with nothing left to remember (as Prometheus deletes them)."""
        c = self._carry
        recent = (c.resolved_at != NO_TIME) & (self._last_time - c.resolved_at
                                               <= RESOLVED_RETENTION_MS)
        keep = np.flatnonzero((c.state != 0) | (c.shown != 0) | c.hyst
                              | c.flap_hist.any(axis=1) | recent)
        if len(keep) == len(self._labels):
            return
        self._carry = c.take(keep)
        self._index.stale = True
        self._labels = [self._labels[i] for i in keep.tolist()]
        self._source = [self._source[i] for i in keep.tolist()]
        self._rows = {lab: i for i, lab in enumerate(self._labels)}

    # ---------------------------------------------------------------- queries

    def render_annotations(self, alert_labels: Labels, value: float,
                           time_ms: int | None = None) -> dict[str, str]:
        """Annotations of a known alert for ``value`` (``time_ms`` is for future ``query``)."""
        row = self._rows.get(alert_labels)
        source = self._source[row] if row is not None else alert_labels
        return self._maker.annotations(source, value)

    def alerts(self) -> list[Alert]:
        """Pending, firing and no-data alerts, and resolved ones for 15 minutes after."""
        c = self._carry
        out: list[Alert] = []
        for i, labels in enumerate(self._labels):
            shown = AlertState(int(c.shown[i]))
            resolved = int(c.resolved_at[i])
            if shown is AlertState.INACTIVE and (
                    resolved == NO_TIME or self._last_time - resolved > RESOLVED_RETENTION_MS):
                continue
            value = float(c.last_value[i])
            out.append(Alert(
                labels, self._maker.annotations(self._source[i], value), shown,
                int(c.active_at[i]), _opt(c.fired_at[i]),
                _opt(c.resolved_at[i]) if shown is AlertState.INACTIVE else None,
                value, bool(c.flapping[i])))
        return out

    def firing(self) -> list[Alert]:
        """The alerts firing now."""
        return [a for a in self.alerts() if a.state is AlertState.FIRING]

    # ------------------------------------------------------------- snapshots

    def state_key(self) -> tuple[object, ...]:
        """What :meth:`snapshot` holds, less the values and the time: cheap to compare.

        A snapshot also holds each alert's last value and the last evaluation
        time, which change at every evaluation of a rule with an active alert.
        Saving the state for those alone would rewrite every such rule at every
        evaluation; a restart evaluates again before the values matter. Equal
        keys: the saved snapshot still restores the same alerts.
        """
        c = self._carry
        return (tuple(self._labels), tuple(self._source), c.state.tobytes(),
                c.shown.tobytes(), c.active_at.tobytes(), c.keep_since.tobytes(),
                c.fired_at.tobytes(), c.resolved_at.tobytes(), c.hyst.tobytes(),
                c.flap_hist.tobytes(), c.flapping.tobytes())

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as JSON-able data.

        Label sets stay tuples (JSON writes them as arrays); each column is
        converted to Python values at once, not cell by cell.
        """
        c = self._carry
        labels, sources = self._labels, self._source
        order = sorted(range(len(labels)), key=labels.__getitem__)
        cols = [a[order].tolist() for a in (c.state, c.shown, c.active_at, c.keep_since,
                                            c.fired_at, c.resolved_at, c.last_value, c.hyst,
                                            c.flap_hist.astype(np.int8), c.flapping)]
        none = int(NO_TIME)
        rows = [{
            "labels": labels[i], "source": sources[i], "state": state, "shown": shown,
            "active_at": None if active == none else active,
            "keep_since": None if keep == none else keep,
            "fired_at": None if fired == none else fired,
            "resolved_at": None if resolved == none else resolved,
            "last_value": None if math.isnan(value) else value,
            "hysteresis": hyst, "changes": changes, "flapping": flapping,
        } for i, state, shown, active, keep, fired, resolved, value, hyst, changes, flapping
            in zip(order, *cols, strict=True)]
        return {"version": 1, "rule": self.spec.name,
                "last_time": _opt(self._last_time), "alerts": rows}

    @classmethod
    def restore(cls, spec: AlertRuleSpec, snapshot: dict[str, Any], *,
                record_transitions: bool = True) -> AlertMachine:
        """A machine that continues where the one that made ``snapshot`` stopped."""
        if snapshot.get("version") != 1:
            raise ValueError(f"unknown alert snapshot version {snapshot.get('version')!r}")
        machine = cls(spec, record_transitions=record_transitions)
        rows = snapshot["alerts"]
        c = _Carry.empty(len(rows), spec.flap_window)
        window = spec.flap_window - 1
        for i, row in enumerate(rows):
            labels = tuple((str(k), str(v)) for k, v in row["labels"])
            machine._row(labels, tuple((str(k), str(v)) for k, v in row["source"]))
            c.state[i], c.shown[i] = int(row["state"]), int(row["shown"])
            for name in ("active_at", "keep_since", "fired_at", "resolved_at"):
                getattr(c, name)[i] = NO_TIME if row[name] is None else int(row[name])
            c.last_value[i] = math.nan if row["last_value"] is None else float(row["last_value"])
            c.hyst[i] = bool(row["hysteresis"])
            changes = [bool(x) for x in row["changes"]][-window:] if window else []
            if changes:
                c.flap_hist[i, window - len(changes):] = changes
            c.flapping[i] = bool(row["flapping"])
        machine._carry = c
        last = snapshot.get("last_time")
        machine._last_time = int(NO_TIME) if last is None else int(last)
        return machine


def _last_valid(value: Floats, valid: npt.NDArray[np.intp], cols: int,
                rs: npt.NDArray[np.intp], ts: npt.NDArray[np.intp],
                carried: Floats) -> Floats:
    """The value at the last valid cell at or before ``(rs, ts)`` in each row, else ``carried``.

    ``valid`` are flat indices (row-major, ``cols`` per row) of the valid cells.
    """
    keys = rs.astype(np.int64) * cols + ts
    pos = np.searchsorted(valid, keys, side="right") - 1
    cell = valid[np.maximum(pos, 0)] if len(valid) else np.zeros(len(keys), np.int64)
    ok = (pos >= 0) & (cell // cols == rs)
    cell = np.where(ok, cell, 0)
    picked = value[cell // cols, cell % cols] if value.size else np.full(len(keys), math.nan)
    found: Floats = np.where(ok, picked, carried[rs])
    return found


def _opt(value: Any) -> int | None:
    v = int(value)
    return None if v == NO_TIME else v
