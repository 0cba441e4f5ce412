"""The NAB scoring rule, threshold optimisation and the per-category report.

Written from the rule as ``shared/peer/nab/README.md`` states it (no upstream
code): a row is a detection when its score is at least the threshold θ; each
anomaly window earns the scaled-sigmoid value of its **earliest** detection
(``A_TP`` on its first row, falling towards 0 at its last), or ``−A_FN`` when
missed; every detection outside all windows costs ``A_FP`` times a factor that
is nearly 0 just after the previous window and −1 from three window widths on
(or before the file's first window). Probationary rows are not scored.

Threshold optimisation tries every distinct score value as θ, as upstream's
README describes, in ``O(n log n)``: one sort of all scored rows by score, then
each row is an *event* that changes the corpus score by a fixed amount when θ
drops to its score (a false positive adds its cost; a window row adds how much
it raises its window's best value so far), so the score at every θ is a
prefix sum.

A score that is NaN or −inf (the harness's "no output") never detects; +inf
counts as the largest float, so that the threshold ``inf`` means "never detect".
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.nab.corpus import FloatArray, Int64Array, NabError, NabFile, default_root

__all__ = [
    "PROFILE_NAMES",
    "CategoryReport",
    "FileResult",
    "Optimum",
    "Profile",
    "category_report",
    "file_results",
    "load_profiles",
    "normalise",
    "optimise",
    "row_weights",
    "scaled_sigmoid",
    "score_at",
]

PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
"""NAB's three application profiles, in the order of its scoreboard columns."""

Scores = Mapping[str, npt.NDArray[np.float64]]
"""Anomaly score of every row, by file name (relative to ``data/``)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One cost matrix of ``config/profiles.json`` (``tnWeight`` is never used)."""

    name: str
    tp: float
    fp: float
    fn: float


def load_profiles(root: Path | None = None) -> dict[str, Profile]:
    """The profiles of ``config/profiles.json``, by name."""
    path = (root or default_root()) / "config" / "profiles.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: Profile(name, float(p["CostMatrix"]["tpWeight"]),
                              float(p["CostMatrix"]["fpWeight"]),
                              float(p["CostMatrix"]["fnWeight"]))
                for name, p in data.items()}
    except OSError as e:
        raise NabError(f"{path}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise NabError(f"{path}: not a NAB profile file ({e!r})") from None


def scaled_sigmoid(y: npt.ArrayLike) -> FloatArray:
    """NAB's ``A(y) = 2·σ(−5y) − 1`` for ``y ≤ 3``, ``−1`` beyond."""
    arr = np.asarray(y, dtype=np.float64)
    # 2σ(-5y) - 1 == tanh(-5y/2), written so that it cannot overflow.
    out: FloatArray = np.where(arr > 3.0, -1.0, np.tanh(-2.5 * arr))
    return out


A_FIRST = float(scaled_sigmoid(-1.0))
"""``A(−1)``: the value of a window's first row, which earns exactly ``A_TP``."""


@dataclass(frozen=True, slots=True)
class RowWeights:
    """A file's per-row values at unit weights (profile-independent).

    ``window[i]`` is the window row ``i`` lies in (``-1`` outside all); ``tp[i]``
    is ``A(y)/A(−1)`` inside a window (multiply by ``A_TP``), ``fp[i]`` is the
    false-positive factor ``u`` outside (multiply by ``A_FP``; it is negative).
    """

    window: Int64Array
    tp: FloatArray
    fp: FloatArray


@cache
def row_weights(f: NabFile) -> RowWeights:
    """The per-row values of the scoring rule for ``f`` (cached per file object)."""
    rows = np.arange(f.rows, dtype=np.int64)
    window = np.full(f.rows, -1, dtype=np.int64)
    tp = np.zeros(f.rows, dtype=np.float64)
    fp = np.full(f.rows, -1.0, dtype=np.float64)
    lefts, rights = f.windows[:, 0], f.windows[:, 1]
    widths = rights - lefts + 1
    for j, (left, right) in enumerate(f.windows):
        inside = slice(int(left), int(right) + 1)
        window[inside] = j
        y = -(right - rows[inside] + 1) / widths[j]
        tp[inside] = scaled_sigmoid(y) / A_FIRST
        fp[inside] = 0.0
    # The most recent window that ended before each outside row.
    before = np.searchsorted(rights, rows, side="left") - 1
    after = (window < 0) & (before >= 0)
    k = before[after]
    # A one-row window has w' - 1 == 0: any later row is then "far" (A = -1).
    span = np.maximum(widths[k] - 1, 1e-300)
    fp[after] = scaled_sigmoid((rows[after] - rights[k]) / span)
    return RowWeights(window, tp, fp)


def _row_scores(f: NabFile, scores: Scores) -> FloatArray:
    try:
        s = np.asarray(scores[f.name], dtype=np.float64)
    except KeyError:
        raise NabError(f"no scores for {f.name}") from None
    if s.shape != (f.rows,):
        raise NabError(f"{f.name}: {s.shape[0] if s.ndim == 1 else s.shape} scores for "
                       f"{f.rows} rows")
    # +inf is the largest float, so that θ = inf ("never") detects nothing.
    out: FloatArray = np.nan_to_num(s, nan=-np.inf, posinf=np.finfo(np.float64).max,
                                    neginf=-np.inf)
    return out


# ------------------------------------------------------------ threshold optimisation


@dataclass(frozen=True, slots=True)
class Optimum:
    """The best threshold of a detector on some files for one profile.

    ``threshold`` is ``inf`` when no detection at all scores best. ``normalised``
    is ``None`` when the files have no window (NAB's 0-100 scale is then undefined).
    """

    threshold: float
    raw: float
    normalised: float | None


def normalise(raw: float, windows: int, profile: Profile) -> float | None:
    """NAB's 0-100 scale: null detector 0, perfect detector 100 (``None`` without windows)."""
    perfect, null = profile.tp * windows, -profile.fn * windows
    if perfect == null:
        return None
    return 100.0 * (raw - null) / (perfect - null)


def optimise(files: Sequence[NabFile], scores: Scores, profile: Profile) -> Optimum:
    """The θ among the distinct score values (or "never") with the highest corpus raw score."""
    ev_scores, ev_deltas = [], []
    offset = 0
    windows = 0
    for f in files:
        s = _row_scores(f, scores)
        w = row_weights(f)
        live = (np.arange(f.rows) >= f.probation) & (s > -np.inf)
        out = live & (w.window < 0)
        ev_scores.append(s[out])
        ev_deltas.append(profile.fp * w.fp[out])
        inside = live & (w.window >= 0)
        ws, wd = _window_events(s[inside], w.window[inside] + offset, profile.tp * w.tp[inside],
                                -profile.fn)
        ev_scores.append(ws)
        ev_deltas.append(wd)
        offset += len(f.windows)
        windows += len(f.windows)
    base = -profile.fn * windows
    s_all = np.concatenate(ev_scores) if ev_scores else np.empty(0)
    d_all = np.concatenate(ev_deltas) if ev_deltas else np.empty(0)
    best_theta, best_raw = float("inf"), base
    if len(s_all):
        order = np.argsort(-s_all, kind="stable")
        s_sorted = s_all[order]
        totals = base + np.cumsum(d_all[order])
        # The score at θ = s counts every event with score >= s: the last of each run.
        last = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True))
        k = int(np.argmax(totals[last]))
        if totals[last[k]] > best_raw:
            best_theta, best_raw = float(s_sorted[last[k]]), float(totals[last[k]])
    return Optimum(best_theta, best_raw, normalise(best_raw, windows, profile))


def _window_events(s: FloatArray, wid: Int64Array, tp: FloatArray, miss: float
                   ) -> tuple[FloatArray, FloatArray]:
    """Each window row's gain when θ drops to its score: how much it raises its window's best.

    Rows are ordered by window, then score descending; the running maximum of the
    true-positive value within a window (a per-window offset makes one
    ``maximum.accumulate`` serve all windows) is the window's value once θ is at
    or below that row's score.
    """
    if not len(s):
        return s, tp
    order = np.lexsort((-s, wid))
    s, wid, tp = s[order], wid[order], tp[order]
    lift = 4.0 * (wid - wid[0])  # tp lies in (0, 1]; windows never mix
    best = np.maximum.accumulate(tp + lift) - lift
    before = np.empty_like(best)
    before[0] = miss
    before[1:] = best[:-1]
    before[1:][wid[1:] != wid[:-1]] = miss
    return s, best - before


# ------------------------------------------------------------ score at a threshold


@dataclass(slots=True)
class FileResult:
    """One file's outcome at one threshold and profile.

    ``tp_rows``/``fp_rows`` count scored detection rows inside/outside windows
    (the TP/FP columns of upstream's score tables). ``first`` holds each window's
    first detected row (``-1``: missed). ``alerts`` counts runs of consecutive
    detected rows (what a user would see as alerts), ``true_alerts`` those that
    overlap a window.
    """

    name: str
    category: str
    raw: float
    tp_rows: int
    fp_rows: int
    windows: int
    first: Int64Array
    alerts: int
    true_alerts: int
    delays_s: Int64Array = field(default_factory=lambda: np.empty(0, dtype=np.int64))


def file_results(files: Sequence[NabFile], scores: Scores, threshold: float,
                 profile: Profile) -> list[FileResult]:
    """Every file's score, detections and delays at ``threshold``."""
    return [_file_result(f, _row_scores(f, scores), threshold, profile) for f in files]


def score_at(files: Sequence[NabFile], scores: Scores, threshold: float,
             profile: Profile) -> float:
    """The corpus raw score of the files at ``threshold``."""
    return float(sum(r.raw for r in file_results(files, scores, threshold, profile)))


def _file_result(f: NabFile, s: FloatArray, threshold: float, profile: Profile) -> FileResult:
    w = row_weights(f)
    detected = s >= threshold
    detected[: f.probation] = False
    inside = w.window >= 0
    fp_rows = detected & ~inside
    raw = float(profile.fp * w.fp[fp_rows].sum())
    first = np.full(len(f.windows), -1, dtype=np.int64)
    for j, (left, right) in enumerate(f.windows):
        hits = np.flatnonzero(detected[left: right + 1])
        if len(hits):
            first[j] = left + hits[0]
            raw += profile.tp * float(w.tp[first[j]])
        else:
            raw -= profile.fn
    found = first[first >= 0]
    delays = f.timestamps[found] - f.timestamps[f.windows[first >= 0, 0]]
    # Alerts: runs of consecutive detected rows; a run is true if any row is in a window.
    starts = np.flatnonzero(detected & ~np.concatenate(([False], detected[:-1])))
    run_id = np.cumsum(detected & ~np.concatenate(([False], detected[:-1]))) - 1
    true_runs = np.unique(run_id[detected & inside])
    return FileResult(f.name, f.category, raw, int((detected & inside).sum()),
                      int(fp_rows.sum()), len(f.windows), first, len(starts), len(true_runs),
                      delays.astype(np.int64))


# ------------------------------------------------------------ per-category report


@dataclass(frozen=True, slots=True)
class CategoryReport:
    """Precision, recall and detection delay of one category's files at one threshold.

    ``recall`` is detected windows / windows; ``precision`` is true alerts /
    alerts (an alert is a run of consecutive detected rows; it is true when it
    overlaps a window). Delays run from a window's first row to its first
    detection, in rows and in seconds; ``None`` where nothing defines them.
    """

    category: str
    files: int
    windows: int
    detected: int
    alerts: int
    true_alerts: int
    median_delay_rows: float | None
    median_delay_s: float | None

    @property
    def recall(self) -> float | None:
        """Detected windows / windows."""
        return self.detected / self.windows if self.windows else None

    @property
    def precision(self) -> float | None:
        """True alerts / alerts."""
        return self.true_alerts / self.alerts if self.alerts else None


def category_report(files: Sequence[NabFile], results: Sequence[FileResult]
                    ) -> list[CategoryReport]:
    """One row per category (in first-seen order) and a final ``all`` row."""
    by_name = {f.name: f for f in files}
    groups: dict[str, list[FileResult]] = {}
    for r in results:
        groups.setdefault(r.category, []).append(r)
    out = [_category(cat, rs, by_name) for cat, rs in groups.items()]
    out.append(_category("all", list(results), by_name))
    return out


def _category(name: str, rs: Sequence[FileResult], by_name: Mapping[str, NabFile]
              ) -> CategoryReport:
    rows = [r.first[r.first >= 0] - by_name[r.name].windows[r.first >= 0, 0] for r in rs]
    delay_rows = np.concatenate(rows) if rows else np.empty(0)
    delay_s = np.concatenate([r.delays_s for r in rs]) if rs else np.empty(0)
    return CategoryReport(
        name, len(rs), sum(r.windows for r in rs), sum(int((r.first >= 0).sum()) for r in rs),
        sum(r.alerts for r in rs), sum(r.true_alerts for r in rs),
        float(np.median(delay_rows)) if len(delay_rows) else None,
        float(np.median(delay_s)) if len(delay_s) else None)
