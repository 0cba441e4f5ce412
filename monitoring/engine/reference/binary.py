"""Binary operators at one step, as engine.go evaluates them.

``scalarBinop``, ``VectorscalarBinop``, ``VectorBinop`` and the set operators,
with their matching rules and error messages.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from monitoring.dsl.ast import Card
from monitoring.dsl.ir import Binary, Matching
from monitoring.engine.model import EvalError, Labels
from monitoring.engine.reference.values import (
    METADATA_LABELS,
    Sample,
    Value,
    Vector,
    labels_string,
)

if TYPE_CHECKING:
    from monitoring.engine.reference.core import Evaluator

_ARITHMETIC = frozenset({"+", "-", "*", "/", "^", "%", "atan2"})
_COMPARISON = frozenset({"==", "!=", ">", "<", ">=", "<="})


def arithmetic(op: str, a: float, b: float) -> float:
    """One float operation with IEEE results (Go never raises on division by zero)."""
    x, y = np.float64(a), np.float64(b)
    with np.errstate(all="ignore"):
        if op == "+":
            return float(x + y)
        if op == "-":
            return float(x - y)
        if op == "*":
            return float(x * y)
        if op == "/":
            return float(x / y)
        if op == "^":
            return float(np.power(x, y))
        if op == "%":
            return float(np.fmod(x, y))
        if op == "atan2":
            return math.atan2(a, b)
    raise EvalError(f"operator {op!r} not allowed for Scalar operations")


def compare(op: str, a: float, b: float) -> bool:
    """A comparison operator."""
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == ">":
        return a > b
    if op == "<":
        return a < b
    if op == ">=":
        return a >= b
    return a <= b


def _elem(op: str, a: float, b: float) -> tuple[float, bool]:
    """``vectorElemBinop`` for floats: (value, keep)."""
    if op in _COMPARISON:
        return a, compare(op, a, b)
    return arithmetic(op, a, b), True


def binary(ev: Evaluator, node: Binary, t: int) -> Value:
    """Evaluate a binary operation at ``t``."""
    lhs = ev.eval(node.lhs, t)
    rhs = ev.eval(node.rhs, t)
    op = node.op
    if isinstance(lhs, float) and isinstance(rhs, float):
        if op in _COMPARISON:
            return 1.0 if compare(op, lhs, rhs) else 0.0
        return arithmetic(op, lhs, rhs)
    if isinstance(lhs, list) and isinstance(rhs, float):
        return _vector_scalar(node, lhs, rhs, swap=False)
    if isinstance(lhs, float) and isinstance(rhs, list):
        return _vector_scalar(node, rhs, lhs, swap=True)
    assert isinstance(lhs, list) and isinstance(rhs, list)
    matching = node.matching or Matching(False, (), Card.ONE_TO_ONE, ())
    if op in ("and", "or", "unless"):
        return _set_op(op, lhs, rhs, matching)
    return _vector_vector(node, lhs, rhs, matching)


def _vector_scalar(node: Binary, vec: Vector, scalar: float, swap: bool) -> Vector:
    op = node.op
    out = []
    for s in vec:
        a, b = (scalar, s.value) if swap else (s.value, scalar)
        value, keep = _elem(op, a, b)
        if op in _COMPARISON and swap:
            value = b
        if node.return_bool:
            value = 1.0 if keep else 0.0
            keep = True
        if keep:
            drop = s.drop_name or op in _ARITHMETIC or node.return_bool
            out.append(Sample(s.labels, value, drop))
    return out


def signature(labels: Labels, matching: Matching) -> Labels:
    """The join key: only the ``on`` labels, or all but the ``ignoring`` ones and the name."""
    if matching.on:
        return tuple(p for p in labels if p[0] in matching.labels)
    return tuple(p for p in labels if p[0] not in matching.labels and p[0] != "__name__")


def _set_op(op: str, lhs: Vector, rhs: Vector, matching: Matching) -> Vector:
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {signature(s.labels, matching) for s in rhs}
        return [s for s in lhs if signature(s.labels, matching) in right]
    if op == "or":
        if not lhs or not rhs:
            return list(lhs) + list(rhs)
        left = {signature(s.labels, matching) for s in lhs}
        return list(lhs) + [s for s in rhs if signature(s.labels, matching) not in left]
    if not lhs or not rhs:
        return list(lhs)
    right = {signature(s.labels, matching) for s in rhs}
    return [s for s in lhs if signature(s.labels, matching) not in right]


def _result_labels(op: str, many: Labels, one: Labels, matching: Matching) -> Labels:
    """``resultMetric``: the label set of one output sample."""
    out = dict(many)
    if op in _ARITHMETIC:
        for name in METADATA_LABELS:
            out.pop(name, None)
    if matching.card is Card.ONE_TO_ONE:
        if matching.on:
            out = {k: v for k, v in out.items() if k in matching.labels}
        else:
            for name in matching.labels:
                out.pop(name, None)
    one_map = dict(one)
    for name in matching.include:
        value = one_map.get(name, "")
        if value:
            out[name] = value
        else:
            out.pop(name, None)
    return tuple(sorted(out.items()))


def _vector_vector(node: Binary, lhs: Vector, rhs: Vector, matching: Matching) -> Vector:
    if not lhs or not rhs:
        return []
    op = node.op
    one_to_many = matching.card is Card.ONE_TO_MANY
    many, one = (rhs, lhs) if one_to_many else (lhs, rhs)
    right: dict[Labels, Sample] = {}
    for s in one:
        sig = signature(s.labels, matching)
        dup = right.get(sig)
        if dup is not None:
            side = "left" if one_to_many else "right"
            matched = _match_labels(s.labels, matching)
            raise EvalError(
                f"found duplicate series for the match group {labels_string(matched)} on the "
                f"{side} hand-side of the operation: [{labels_string(s.labels)}, "
                f"{labels_string(dup.labels)}];many-to-many matching not allowed: matching "
                "labels must be unique on one side")
        right[sig] = s
    matched_sigs: dict[Labels, set[Labels] | None] = {}
    out: Vector = []
    for ls in many:
        sig = signature(ls.labels, matching)
        rs = right.get(sig)
        if rs is None:
            continue
        fl, fr = (rs.value, ls.value) if one_to_many else (ls.value, rs.value)
        value, keep = _elem(op, fl, fr)
        if node.return_bool:
            value = 1.0 if keep else 0.0
        labels = _result_labels(op, ls.labels, rs.labels, matching)
        if matching.card is Card.ONE_TO_ONE:
            if sig in matched_sigs:
                raise EvalError("multiple matches for labels: many-to-one matching must be "
                                "explicit (group_left/group_right)")
            matched_sigs[sig] = None
        else:
            inserted = matched_sigs.get(sig)
            if inserted is None:
                inserted = set()
                matched_sigs[sig] = inserted
            elif labels in inserted:
                raise EvalError("multiple matches for labels: grouping labels must ensure "
                                "unique matches")
            inserted.add(labels)
        if not keep and not node.return_bool:
            continue
        out.append(Sample(labels, value, node.return_bool))
    return out


def _match_labels(labels: Labels, matching: Matching) -> Labels:
    """``Labels.MatchLabels``: the ``on`` labels, or all but ``ignoring`` ones and the name."""
    return signature(labels, matching)
