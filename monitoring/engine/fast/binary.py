"""Binary operators on whole-query values: every step of every series at once.

Prometheus matches the two sides of a vector operation at each evaluation step
separately. Here the matching is done once per pair of series (label work in
Python, per series), and the per-step part (which pairs meet at which step,
the arithmetic, the uniqueness checks behind Prometheus's matching errors) is
NumPy over ``[pairs × steps]`` matrices.

Delayed name removal follows Prometheus 3: vector/scalar arithmetic and
``bool`` comparisons only flag rows (``drop_name``); vector/vector arithmetic
drops the metric name from the result labels at once, and its result rows
carry the flag only for ``bool`` comparisons.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from monitoring.dsl.ast import Card
from monitoring.dsl.ir import Matching
from monitoring.engine.fast.labels import (
    METADATA_LABELS,
    get_label,
    group_ids,
    labels_string,
    set_label,
    sig_ignoring,
    sig_on,
)
from monitoring.engine.fast.values import BoolArray, FloatMatrix, Vector, merge_same_labels
from monitoring.engine.model import EvalError, Labels

COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "^", "atan2"})
SET_OPS = frozenset({"and", "or", "unless"})


def _cmp(op: str, a: FloatMatrix, b: FloatMatrix) -> BoolArray:
    with np.errstate(invalid="ignore"):
        if op == "==":
            out: BoolArray = a == b
        elif op == "!=":
            out = a != b
        elif op == ">":
            out = a > b
        elif op == "<":
            out = a < b
        elif op == ">=":
            out = a >= b
        else:
            out = a <= b
    return out


def arith(op: str, a: FloatMatrix, b: FloatMatrix) -> FloatMatrix:
    """``a op b`` with Go's float semantics (``%`` is ``math.Mod``, ``^`` is ``math.Pow``)."""
    with np.errstate(all="ignore"):
        if op == "+":
            out: FloatMatrix = np.add(a, b)
        elif op == "-":
            out = np.subtract(a, b)
        elif op == "*":
            out = np.multiply(a, b)
        elif op == "/":
            out = np.true_divide(a, b)
        elif op == "%":
            out = np.fmod(a, b)
        elif op == "^":
            out = np.power(np.asarray(a, dtype=np.float64), b)
        elif op == "atan2":
            out = np.arctan2(a, b)
        else:
            raise EvalError(f"operator {op!r} not allowed for operations between vectors")
    return out


def scalar_scalar(op: str, a: FloatMatrix, b: FloatMatrix) -> FloatMatrix:
    """Two scalars: arithmetic, or a comparison giving 0/1 (``bool`` is mandatory there)."""
    if op in COMPARISONS:
        out: FloatMatrix = _cmp(op, a, b).astype(np.float64)
        return out
    return arith(op, a, b)


def vector_scalar(op: str, vec: Vector, scalar: FloatMatrix, swap: bool,
                  return_bool: bool) -> Vector:
    """``vector op scalar`` (or ``scalar op vector`` when ``swap``), per Prometheus."""
    s = scalar[None, :]
    lhs, rhs = (s, vec.values) if swap else (vec.values, s)
    if op in COMPARISONS:
        keep = _cmp(op, lhs, rhs)
        if return_bool:
            return Vector(vec.labels, keep.astype(np.float64), vec.present,
                          np.ones(len(vec), dtype=bool))
        return Vector(vec.labels, vec.values, vec.present & keep, vec.drop_name).compact()
    values = arith(op, lhs, rhs)
    return Vector(vec.labels, np.broadcast_to(values, vec.values.shape).copy(), vec.present,
                  np.ones(len(vec), dtype=bool))


def signature_fn(matching: Matching | None) -> Callable[[Labels], Labels]:
    """The labels two series are matched on (``on``, ``ignoring``, or all but the name)."""
    if matching is not None and matching.on:
        names = frozenset(matching.labels)
        return lambda labels: sig_on(labels, names)
    ignored = frozenset(matching.labels) if matching is not None else frozenset()
    return lambda labels: sig_ignoring(labels, ignored)


def _presence_by_sig(ids: np.ndarray, present: BoolArray, groups: int) -> BoolArray:
    out = np.zeros((groups, present.shape[1]), dtype=bool)
    if len(ids):
        np.logical_or.at(out, ids, present)
    return out


def set_operation(op: str, lhs: Vector, rhs: Vector, matching: Matching | None) -> Vector:
    """``and``, ``or``, ``unless``: per step, filter by the other side's signatures."""
    sig = signature_fn(matching)
    lsig = [sig(lab) for lab in lhs.labels]
    rsig = [sig(lab) for lab in rhs.labels]
    ids, keys = group_ids(lsig + rsig)
    lids, rids = ids[:len(lsig)], ids[len(lsig):]
    if op == "or":
        left = _presence_by_sig(lids, lhs.present, len(keys))
        masked: BoolArray = rhs.present & ~left[rids] if len(rids) else rhs.present
        out = Vector(lhs.labels + rhs.labels, np.concatenate([lhs.values, rhs.values]),
                     np.concatenate([lhs.present, masked]),
                     np.concatenate([lhs.drop_name, rhs.drop_name]))
        return merge_same_labels(out.compact())
    right = _presence_by_sig(rids, rhs.present, len(keys))
    hit = right[lids] if len(lids) else np.zeros_like(lhs.present)
    present = lhs.present & hit if op == "and" else lhs.present & ~hit
    return Vector(lhs.labels, lhs.values, present, lhs.drop_name).compact()


def _result_labels(many: Labels, one: Labels, op: str, matching: Matching | None,
                   card: Card) -> Labels:
    """Prometheus's ``resultMetric``: the labels of one output series."""
    out = many
    if op not in COMPARISONS:
        out = tuple(p for p in out if p[0] not in METADATA_LABELS)
    if card is Card.ONE_TO_ONE and matching is not None:
        names = set(matching.labels)
        if matching.on:
            out = tuple(p for p in out if p[0] in names)
        else:
            out = tuple(p for p in out if p[0] not in names)
    if matching is not None:
        for name in matching.include:
            out = set_label(out, name, get_label(one, name))
    return out


def _match_labels(labels: Labels, matching: Matching | None) -> Labels:
    if matching is not None and matching.on:
        return sig_on(labels, frozenset(matching.labels))
    return sig_ignoring(labels, frozenset(matching.labels) if matching else frozenset())


def _one_side_duplicate(one: Vector, groups: dict[Labels, list[int]], active: BoolArray,
                        matching: Matching | None, side: str) -> tuple[int, str] | None:
    """The first step where two 'one'-side series share a signature, and Prometheus's error.

    Prometheus walks the series in order at each step and fails at the first one whose
    signature it has already seen; the message names that series, then the earlier one.
    """
    best: tuple[int, int, int] | None = None  # (step, later row, earlier row)
    for rows in groups.values():
        if len(rows) < 2:
            continue
        pres = one.present[rows] & active[None, :]
        bad = np.flatnonzero(pres.sum(axis=0) > 1)
        if not len(bad):
            continue
        step = int(bad[0])
        hits = [r for k, r in enumerate(rows) if pres[k, step]]
        candidate = (step, hits[1], hits[0])
        if best is None or candidate < best:
            best = candidate
    if best is None:
        return None
    step, later, earlier = best
    matched = _match_labels(one.labels[later], matching)
    return step, (
        f"found duplicate series for the match group {labels_string(matched)} on the "
        f"{side} hand-side of the operation: [{labels_string(one.labels[later])}, "
        f"{labels_string(one.labels[earlier])}];many-to-many matching not allowed: "
        "matching labels must be unique on one side")


def _first_overlap(keys: list[object], mask: BoolArray) -> int | None:
    """The first step where two rows with the same key are both set, if any."""
    if len(keys) < 2:
        return None
    ids, distinct = group_ids(keys)  # type: ignore[arg-type]
    if len(distinct) == len(keys):
        return None
    counts = np.zeros((len(distinct), mask.shape[1]), dtype=np.int64)
    np.add.at(counts, ids, mask.astype(np.int64))
    bad = np.flatnonzero((counts > 1).any(axis=0))
    return int(bad[0]) if len(bad) else None


def vector_vector(op: str, lhs: Vector, rhs: Vector, matching: Matching | None,
                  return_bool: bool) -> Vector:
    """Arithmetic or comparison between two vectors with one-to-one or group matching."""
    card = matching.card if matching is not None else Card.ONE_TO_ONE
    if card is Card.MANY_TO_MANY:
        raise EvalError("many-to-many only allowed for set operators")
    steps = lhs.steps
    if not len(lhs) or not len(rhs):
        return Vector.empty(steps)
    swapped = card is Card.ONE_TO_MANY
    many, one = (rhs, lhs) if swapped else (lhs, rhs)
    sig = signature_fn(matching)
    one_groups: dict[Labels, list[int]] = {}
    for j, lab in enumerate(one.labels):
        one_groups.setdefault(sig(lab), []).append(j)
    many_sigs = [sig(lab) for lab in many.labels]
    active: BoolArray = (np.logical_or.reduce(many.present, axis=0)
                         & np.logical_or.reduce(one.present, axis=0))
    duplicate = _one_side_duplicate(one, one_groups, active, matching,
                                    "left" if swapped else "right")
    pi: list[int] = []
    pj: list[int] = []
    for i, s in enumerate(many_sigs):
        for j in one_groups.get(s, ()):
            pi.append(i)
            pj.append(j)
    if not pi:
        if duplicate is not None:
            raise EvalError(duplicate[1])
        return Vector.empty(steps)
    ia = np.asarray(pi, dtype=np.int64)
    ja = np.asarray(pj, dtype=np.int64)
    mask = many.present[ia] & one.present[ja]
    labels = [_result_labels(many.labels[i], one.labels[j], op, matching, card)
              for i, j in zip(pi, pj, strict=True)]
    if card is Card.ONE_TO_ONE:
        clash = _first_overlap([many_sigs[i] for i in pi], mask)
        message = ("multiple matches for labels: many-to-one matching must be explicit "
                   "(group_left/group_right)")
    else:
        clash = _first_overlap([(many_sigs[i], lab) for i, lab in zip(pi, labels, strict=True)],
                               mask)
        message = "multiple matches for labels: grouping labels must ensure unique matches"
    # Prometheus stops at the first failing step; at one step the 'one' side is checked first.
    if duplicate is not None and (clash is None or duplicate[0] <= clash):
        raise EvalError(duplicate[1])
    if clash is not None:
        raise EvalError(message)
    fl, fr = many.values[ia], one.values[ja]
    if swapped:
        fl, fr = fr, fl
    if op in COMPARISONS:
        keep = _cmp(op, fl, fr)
        if return_bool:
            values = keep.astype(np.float64)
            present = mask
        else:
            values = fl
            present = mask & keep
    else:
        values = arith(op, fl, fr)
        present = mask
    flags = np.full(len(labels), return_bool, dtype=bool)
    return merge_same_labels(Vector(labels, values, present, flags).compact())
