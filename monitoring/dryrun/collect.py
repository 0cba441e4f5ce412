"""Turning the alert state machine's per-chunk output into intervals, flaps and plot data.

The machine (:class:`monitoring.engine.alerts.AlertMachine`) returns, per call,
a state matrix ``[alerts x steps]``; a dry-run calls it once per time chunk.
:class:`AlertCollector` follows each alert identity across chunks and keeps
only what the report needs: the open interval (pending since, firing since,
peak so far), closed intervals, how often the alert entered the flapping state.
Work per chunk is NumPy over the matrix plus Python per *run* of firing, not
per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from monitoring.dryrun.report import Interval
from monitoring.dryrun.values import reduce_buckets
from monitoring.engine.alerts import Advance, AlertState
from monitoring.engine.model import Labels, TimeArray, drop_name

FIRING = int(AlertState.FIRING)
PENDING = int(AlertState.PENDING)


@dataclass(slots=True)
class _Track:
    """What is carried for one alert identity from one chunk to the next."""

    pending_since: int | None = None  # the alert is pending since then (at the chunk's end)
    open: tuple[int, int, float, float] | None = None  # (active, start, start value, peak)
    flapping: bool = False

    @property
    def idle(self) -> bool:
        return self.pending_since is None and self.open is None and not self.flapping


def _edges(mask: npt.NDArray[np.bool_]) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                  npt.NDArray[np.intp]]:
    """Rows, starts and ends (exclusive) of the True runs of each row of a 2-D mask."""
    rows, cols = mask.shape
    padded = np.zeros((rows, cols + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    r_start, start = np.nonzero(step == 1)
    _, end = np.nonzero(step == -1)
    return r_start, start, end


@dataclass(slots=True)
class AlertCollector:
    """Intervals and flaps of one alerting rule, fed chunk by chunk in time order.

    Per chunk, firing runs, their peaks and the pending runs before them are
    found with NumPy over the whole ``[alerts x steps]`` matrix; Python runs
    once per firing interval (to build it) and once per alert carried over.
    """

    low_is_bad: bool = False
    tracks: dict[Labels, _Track] = field(default_factory=dict)
    intervals: list[Interval] = field(default_factory=list)
    flaps: int = 0
    fired: set[Labels] = field(default_factory=set)
    seen: set[Labels] = field(default_factory=set)
    label_dicts: dict[Labels, dict[str, str]] = field(default_factory=dict)

    def add(self, adv: Advance, times: TimeArray) -> None:
        """One chunk's machine output at evaluation ``times``."""
        labels = adv.alert_labels
        self.seen.update(labels)
        if not len(times):
            return
        states = adv.states
        firing = states == FIRING
        pending = states == PENDING
        row_of = {lb: i for i, lb in enumerate(labels)}
        before = self._carried(row_of, times)
        self._count_flaps(adv, before)
        rows, starts, ends = _edges(firing)
        continued: set[int] = set()
        if len(rows):
            peaks = self._peaks(adv.values, firing, rows, starts, ends)
            active = self._pending_starts(pending, rows, starts)
            continued = self._runs(labels, rows.tolist(), starts.tolist(), ends.tolist(),
                                   peaks.tolist(), active.tolist(), adv.values, times, before)
        first = int(times[0])
        for row, track in before.items():  # carried open intervals that did not go on
            if track.open is not None and track.open[1] < first and row not in continued:
                self._close(labels[row], track, first)
        self._carry_pending(labels, pending, times, before)
        for lb in [lb for lb, t in self.tracks.items() if t.idle]:
            del self.tracks[lb]

    def _carried(self, row_of: dict[Labels, int], times: TimeArray) -> dict[int, _Track]:
        """Carried tracks by row; alerts absent from this chunk were inactive all along."""
        out: dict[int, _Track] = {}
        for lb, track in list(self.tracks.items()):
            row = row_of.get(lb)
            if row is None:
                if track.open is not None:
                    self._close(lb, track, int(times[0]))
                track.pending_since = None
                track.flapping = False
            else:
                out[row] = track
        return out

    def _peaks(self, values: npt.NDArray[np.float64], firing: npt.NDArray[np.bool_],
               rows: npt.NDArray[np.intp], starts: npt.NDArray[np.intp],
               ends: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
        """The most alarming value of each firing run (NaN when it had none)."""
        width = values.shape[1] + 1
        fill = np.inf if self.low_is_bad else -np.inf
        flat = np.full((values.shape[0], width), fill)
        flat[:, :-1] = np.where(firing & ~np.isnan(values), values, fill)
        flat_1d = flat.reshape(-1)
        idx = np.empty(2 * len(rows), dtype=np.intp)
        idx[0::2] = rows * width + starts
        idx[1::2] = rows * width + ends
        ufunc = np.minimum if self.low_is_bad else np.maximum
        peaks: npt.NDArray[np.float64] = ufunc.reduceat(flat_1d, idx)[0::2]
        peaks[np.isinf(peaks) & (peaks == fill)] = np.nan
        return peaks

    @staticmethod
    def _pending_starts(pending: npt.NDArray[np.bool_], rows: npt.NDArray[np.intp],
                        starts: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """Column where the pending run right before each firing run began (-1: none).

        0 means the pending run may have begun in an earlier chunk.
        """
        cols = pending.shape[1]
        last_other = np.where(~pending, np.arange(cols), -1)
        np.maximum.accumulate(last_other, axis=1, out=last_other)
        out = np.full(len(rows), -1, dtype=np.intp)
        has = starts > 0
        prev = starts[has] - 1
        pend = pending[rows[has], prev]
        begin = last_other[rows[has], prev] + 1
        out[np.flatnonzero(has)[pend]] = begin[pend]
        return out

    def _runs(self, labels: list[Labels], rows: list[int], starts: list[int], ends: list[int],
              peaks: list[float], active: list[int], values: npt.NDArray[np.float64],
              times: TimeArray, before: dict[int, _Track]) -> set[int]:
        """Open, extend and close intervals; the rows whose carried interval went on."""
        n = len(times)
        t = times.tolist()
        continued: set[int] = set()
        for row, a, b, peak, pend in zip(rows, starts, ends, peaks, active, strict=True):
            lb = labels[row]
            carried = before.get(row)
            if a == 0 and carried is not None and carried.open is not None:
                track = carried
                act, start, first, old = carried.open
                track.open = (act, start, first, self._better(old, peak))
                continued.add(row)
            else:
                track = carried if carried is not None else \
                    before.setdefault(row, self.tracks.setdefault(lb, _Track()))
                if track.open is not None:  # closed at the chunk's first step
                    self._close(lb, track, t[0])
                if pend > 0:
                    act = t[pend]
                elif (pend == 0 or a == 0) and track.pending_since is not None:
                    act = track.pending_since
                elif pend == 0:
                    act = t[0]
                else:
                    act = t[a]
                track.open = (act, t[a], float(values[row, a]), peak)
                self.fired.add(lb)
            track.pending_since = None
            if b < n:
                self._close(lb, track, t[b])
        return continued

    def _carry_pending(self, labels: list[Labels], pending: npt.NDArray[np.bool_],
                       times: TimeArray, before: dict[int, _Track]) -> None:
        """Remember when alerts pending at the chunk's end began pending."""
        last = pending[:, -1]
        for row, track in before.items():
            if not last[row]:
                track.pending_since = None
        ending = np.flatnonzero(last)
        if not len(ending):
            return
        cols = pending.shape[1]
        last_other = np.where(~pending[ending], np.arange(cols), -1).max(axis=1)
        for row, other in zip(ending.tolist(), last_other.tolist(), strict=True):
            carried = before.get(row)
            if other < 0 and carried is not None and carried.pending_since is not None:
                continue  # pending through the whole chunk: it began earlier
            self.tracks.setdefault(labels[row], _Track()).pending_since = int(times[other + 1])

    def _close(self, labels: Labels, track: _Track, end_ms: int | None,
               last_ms: int | None = None) -> None:
        assert track.open is not None
        active, start, start_value, peak = track.open
        stop = end_ms if end_ms is not None else last_ms
        assert stop is not None
        shown = self.label_dicts.get(labels)
        if shown is None:  # one dict per alert, shared by its intervals (and notifications)
            shown = self.label_dicts[labels] = dict(labels)
        self.intervals.append(Interval(shown, active, start, end_ms, stop - start, peak,
                                       start_value))
        track.open = None

    def finish(self, last_ms: int | None) -> list[Interval]:
        """Close intervals still open at the end of the range (``end_ms`` None)."""
        for labels, track in self.tracks.items():
            if track.open is not None:
                self._close(labels, track, None, last_ms if last_ms is not None
                            else track.open[1])
        self.intervals.sort(key=lambda iv: (iv.start_ms, tuple(iv.labels.items())))
        return self.intervals

    def _count_flaps(self, adv: Advance, before: dict[int, _Track]) -> None:
        flapping = adv.flapping
        if flapping.size == 0:
            return
        prev = np.zeros(flapping.shape[0], dtype=bool)
        for row, track in before.items():
            prev[row] = track.flapping
        shifted = np.concatenate([prev[:, None], flapping[:, :-1]], axis=1)
        self.flaps += int((flapping & ~shifted).sum())
        last = flapping[:, -1]
        for row in np.flatnonzero(last | prev).tolist():
            track = before.setdefault(row, self.tracks.setdefault(adv.alert_labels[row],
                                                                  _Track()))
            track.flapping = bool(last[row])

    def _better(self, a: float, b: float) -> float:
        if math.isnan(a):
            return b
        if math.isnan(b):
            return a
        return min(a, b) if self.low_is_bad else max(a, b)


@dataclass(slots=True)
class PlotCollector:
    """The value series of a rule, downsampled chunk by chunk to ``points`` per series.

    Rows are series by their labels without ``__name__`` (a comparison may keep
    the name its left side drops); ``names`` keeps the labels first seen.
    """

    total_steps: int
    points: int
    low_is_bad: bool = False
    rows: dict[Labels, int] = field(default_factory=dict)
    names: list[Labels] = field(default_factory=list)
    data: npt.NDArray[np.float32] = field(
        default_factory=lambda: np.empty((0, 0), dtype=np.float32))
    bucket: int = 1

    def __post_init__(self) -> None:
        self.bucket = max(1, -(-self.total_steps // max(1, self.points)))
        # float32: a plot needs no more, and 1,000 series x 1,000 points x 50 rules add up.
        self.data = np.full((0, -(-self.total_steps // self.bucket)), np.nan, dtype=np.float32)

    def add(self, labels: list[Labels], values: npt.NDArray[np.float64], lo: int) -> None:
        """Values ``[series x steps]`` of the steps ``lo ..`` (one chunk; NaN: no value)."""
        if not labels or not values.shape[1]:
            return
        rows = [self._row(lb) for lb in labels]
        # Buckets are aligned to global step indices: a chunk may begin inside one.
        reduced = reduce_buckets(values, self.bucket, self.low_is_bad, lo % self.bucket)
        first = lo // self.bucket
        width = reduced.shape[1]
        pick = np.fmin if self.low_is_bad else np.fmax
        self.data[rows, first:first + width] = pick(self.data[rows, first:first + width],
                                                    reduced)

    def _row(self, labels: Labels) -> int:
        key = drop_name(labels)
        row = self.rows.get(key)
        if row is None:
            row = len(self.rows)
            self.rows[key] = row
            self.names.append(labels)
            if row >= self.data.shape[0]:
                grown = np.full((max(8, 2 * self.data.shape[0]), self.data.shape[1]), np.nan,
                                dtype=np.float32)
                grown[:self.data.shape[0]] = self.data
                self.data = grown
        return row
