"""The step-by-step evaluator: one IR node at one evaluation time.

:class:`Evaluator.eval` answers "what is this node worth at time ``t``?", the
question Prometheus's engine answers for a whole step range at once. Asking it
per step keeps every rule local and obviously right: an instant selector looks
back ``lookback`` from ``t`` for the newest sample, a range selector takes the
window ``(t - range, t]``, a subquery evaluates its expression at the steps of
its own grid inside the window. Results are memoised per (node, time), which
is what makes nested subqueries affordable.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from monitoring.dsl.ir import (
    Aggregate,
    At,
    Binary,
    Call,
    Const,
    Neg,
    Node,
    RangeSelector,
    Selector,
    StringConst,
    Subquery,
    Weighted,
)
from monitoring.engine.model import EvalError, Labels, SeriesSource, stale_mask
from monitoring.engine.query import QueryOptions, info, warning
from monitoring.engine.reference.util import go_div
from monitoring.engine.reference.values import Matrix, RangeSeries, Sample, Value, Vector

_ALL_TIME = (-(2**62), 2**62)

TOO_MANY_SAMPLES = ("query processing would load too many samples into memory in query "
                    "execution")


@dataclass(slots=True)
class _Stored:
    """One series' samples as plain lists (bisect on lists beats NumPy per call)."""

    labels: Labels
    ts: list[int]
    values: list[float]
    stale: list[bool]


class Evaluator:
    """Evaluates IR nodes at single times for one query."""

    start_ms: int
    end_ms: int
    step_ms: int
    """The query's step; 0 for an instant query (what ``step()`` returns)."""

    def __init__(self, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int,
                 options: QueryOptions) -> None:
        self.source = source
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.step_ms = step_ms
        self.options = options
        self.warnings: dict[str, None] = {}
        self.infos: dict[str, None] = {}
        self._series: dict[tuple[tuple[str, str, str], ...], list[_Stored]] = {}
        self._memo: dict[tuple[int, int], Value] = {}
        self.subquery_depth = 0
        """How many multi-step subqueries enclose the evaluation (a range context)."""

    # ------------------------------------------------------------ annotations

    def in_range_context(self) -> bool:
        """Whether Prometheus's evaluator here spans several steps (``start != end``)."""
        return self.start_ms != self.end_ms or self.subquery_depth > 0

    def warn(self, text: str, node: Node | None) -> None:
        """Record a warning annotation (duplicates collapse, as in Prometheus)."""
        self.warnings[warning(text, node, self.options)] = None

    def note(self, text: str, node: Node | None) -> None:
        """Record an info annotation."""
        self.infos[info(text, node, self.options)] = None

    # ------------------------------------------------------------ dispatch

    def eval(self, node: Node, t: int) -> Value:
        """The value of ``node`` at evaluation time ``t`` (ms)."""
        key = (id(node), t)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._eval(node, t)
            self.count_samples(hit)
            self._memo[key] = hit
        return hit

    def count_samples(self, value: Value) -> None:
        """Enforce :attr:`QueryOptions.max_samples` on one value held at one step.

        A simplification of Prometheus's accounting (which sums what every
        node holds across all steps): each vector or range window must fit.
        """
        limit = self.options.max_samples
        if limit is None:
            return
        if isinstance(value, list):
            count = len(value)
        elif isinstance(value, Matrix):
            count = sum(len(s.ts) for s in value.series)
        else:
            return
        if count > limit:
            raise EvalError(TOO_MANY_SAMPLES)

    def scalar(self, node: Node, t: int) -> float:
        """Evaluate a scalar-typed node."""
        value = self.eval(node, t)
        assert isinstance(value, float)
        return value

    def vector(self, node: Node, t: int) -> Vector:
        """Evaluate an instant-vector-typed node."""
        value = self.eval(node, t)
        assert isinstance(value, list)
        return value

    def matrix(self, node: Node, t: int) -> Matrix:
        """Evaluate a range-vector-typed node."""
        value = self.eval(node, t)
        assert isinstance(value, Matrix)
        return value

    def _eval(self, node: Node, t: int) -> Value:
        from monitoring.engine.reference import aggregations, binary, functions

        match node:
            case Const(value=v):
                return float(v)
            case StringConst(value=s):
                return s
            case Selector():
                return [Sample(labels, v) for labels, _, v in self.instant_samples(node, t)]
            case RangeSelector():
                return self.range_window(node, t)
            case Subquery():
                return self.subquery(node, t)
            case Call():
                return functions.call(self, node, t)
            case Aggregate():
                return aggregations.aggregate(self, node, t)
            case Binary():
                return binary.binary(self, node, t)
            case Neg(expr=inner):
                value = self.eval(inner, t)
                if isinstance(value, float):
                    return -value
                assert isinstance(value, list)
                return [Sample(s.labels, -s.value, True) for s in value]
            case Weighted():
                raise EvalError("weighted() is not supported by the reference evaluator")
        raise EvalError(f"cannot evaluate {type(node).__name__}")  # pragma: no cover

    # ------------------------------------------------------------ selectors

    def at_time(self, at: At | None, t: int) -> int:
        """The time an ``@`` modifier pins evaluation to (``t`` without one)."""
        if at is None:
            return t
        if at.kind == "start":
            return self.start_ms
        if at.kind == "end":
            return self.end_ms
        return at.ms

    def stored(self, sel: Selector) -> list[_Stored]:
        """Every matching series with all its samples, read once per query.

        The reference evaluator favours simplicity over I/O: it reads whole
        series and slices windows itself, so each step sees exactly the
        samples Prometheus's iterators would.
        """
        key = sel.matchers
        hit = self._series.get(key)
        if hit is None:
            try:
                found = self.source.select(list(sel.matchers), *_ALL_TIME)
            except ValueError as e:
                raise EvalError(str(e)) from e
            hit = [
                _Stored(s.labels, [int(x) for x in s.ts], [float(x) for x in s.values],
                        [bool(x) for x in stale_mask(s.values)])
                for s in found
            ]
            hit.sort(key=lambda s: s.labels)
            self._series[key] = hit
        return hit

    def instant_samples(self, sel: Selector, t: int, pinned_timestamp: bool = False
                        ) -> list[tuple[Labels, int, float]]:
        """(labels, sample time, value) of each series visible at ``t`` (lookback, staleness).

        ``pinned_timestamp``: for ``timestamp(sel)``, whose selector with an ``@``
        looks as rangeEvalTimestampFunctionOverVectorSelector does: it sets the
        offset to ``t - @``, so it looks back from the ``@`` time itself, through
        only the samples the storage returned for the selector as written,
        ``[@ - offset - lookback, @ - offset]`` (getTimeRangesForSelector).
        """
        ref = self.at_time(sel.at, t) - sel.offset_ms
        floor = ref - self.options.lookback_ms
        if pinned_timestamp and sel.at is not None:
            at = self.at_time(sel.at, t)
            ref, floor = min(at, ref), max(at - self.options.lookback_ms, floor - 1)
        out = []
        for s in self.stored(sel):
            i = bisect_right(s.ts, ref) - 1
            if i < 0 or s.ts[i] <= floor or s.stale[i]:
                continue
            out.append((s.labels, s.ts[i], s.values[i]))
        return out

    def range_window(self, node: RangeSelector, t: int) -> Matrix:
        """The samples of each series in ``(ref - range, ref]``, staleness markers dropped."""
        sel = node.selector
        ref = self.at_time(sel.at, t) - sel.offset_ms
        out = []
        for s in self.stored(sel):
            lo = bisect_right(s.ts, ref - node.range_ms)
            hi = bisect_right(s.ts, ref)
            idx = [i for i in range(lo, hi) if not s.stale[i]]
            if idx:
                out.append(RangeSeries(s.labels, tuple(s.ts[i] for i in idx),
                                       tuple(s.values[i] for i in idx)))
        return Matrix(tuple(out), node.range_ms, ref)

    def subquery(self, node: Subquery, t: int) -> Matrix:
        """Evaluate the inner expression on the subquery's grid inside the window.

        The grid is aligned to multiples of the step (Go's truncating division,
        as engine.go does): the first step is the first multiple after
        ``end - range``, the last one at or before ``end``.
        """
        end = self.at_time(node.at, t) - node.offset_ms
        step = node.step_ms or self.options.default_subquery_step_ms
        lower = end - node.range_ms
        first = step * go_div(lower, step)
        if first <= lower:
            first += step
        points: dict[Labels, tuple[list[int], list[float], bool]] = {}
        grid = range(first, end + 1, step)
        nesting = 1 if len(grid) > 1 else 0  # Prometheus's sub-evaluator has start != end
        self.subquery_depth += nesting
        try:
            values = [(ts, self.eval(node.expr, ts)) for ts in grid]
        finally:
            self.subquery_depth -= nesting
        for ts, value in values:
            if isinstance(value, float):
                samples = [Sample((), value)]
            else:
                assert isinstance(value, list)
                samples = value
            for s in samples:
                entry = points.get(s.labels)
                if entry is None:
                    entry = ([], [], s.drop_name)
                    points[s.labels] = entry
                entry[0].append(ts)
                entry[1].append(s.value)
        series = tuple(RangeSeries(labels, tuple(ts_), tuple(vs), drop)
                       for labels, (ts_, vs, drop) in points.items())
        return Matrix(series, node.range_ms, end)
