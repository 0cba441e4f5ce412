"""The vectorised evaluator: a whole range query (or a whole rule set) in one pass.

Prometheus evaluates a range query step by step. This evaluator computes every
IR node once for all evaluation steps of a query (its *grid*): instant vectors
are ``[series × steps]`` matrices (:mod:`monitoring.engine.fast.values`), range
functions run over all windows at once (:mod:`monitoring.engine.fast.kernels`),
binary operators match series once and compute per step with NumPy
(:mod:`monitoring.engine.fast.binary`).

Work is shared: a first pass over the expressions (:meth:`_Run.plan`) counts
how often each ``(node, grid)`` is used and announces the time range every
selector needs, so each distinct selector is read from the store once and each
shared sub-expression (IR nodes are interned) is computed once and kept only
until its last use. The semantics are Prometheus 3's, with delayed metric-name
removal: names are dropped when the query ends, from the rows flagged for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence

import numpy as np

from monitoring.dsl import ir
from monitoring.engine.fast import binary, ranges
from monitoring.engine.fast.aggregate import aggregate, go_g
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.functions import INSTANT_FUNCTIONS, absent_labels
from monitoring.engine.fast.labels import labels_string
from monitoring.engine.fast.samples import Samples
from monitoring.engine.fast.selectors import RawStore, Selection, instant_lookup
from monitoring.engine.fast.values import (
    BoolArray,
    FloatMatrix,
    Grid,
    Matrix,
    Scalar,
    String,
    Value,
    Vector,
    concat_sorted,
    merge_same_labels,
)
from monitoring.engine.model import (
    METRIC_NAME,
    EvalError,
    GridValues,
    Labels,
    QueryResult,
    Series,
    SeriesSource,
    TimeArray,
    drop_name,
)
from monitoring.engine.query import QueryOptions
from monitoring.stdlib.registry import REGISTRY
from monitoring.stdlib.types import ValueType

__all__ = ["evaluate", "evaluate_many"]

QUERY_FUNCTIONS = frozenset({"start", "end", "range", "step"})
"""Functions whose value is a property of the query itself."""

SORTS = frozenset({"sort", "sort_desc", "sort_by_label", "sort_by_label_desc"})



def _unsupported(node: ir.Call) -> str:
    """Why a call cannot run.

    A declared extension without an implementation yet, or a function this
    evaluator does not know.
    """
    decl = REGISTRY.function(node.func)
    if decl is not None and decl.extension:
        key = ranges.kernel_key(node)
        method = f' with method "{key.split(":", 1)[1]}"' if ":" in key else ""
        return f"{node.func}(){method} is not supported yet"
    return f"function {node.func}() is not supported"


def scalar_params(func: str) -> tuple[int, ...]:
    """Positions of a range function's scalar arguments, from its declaration."""
    decl = REGISTRY.function(func)
    if decl is None:
        return ()
    return tuple(i for i, p in enumerate(decl.params) if p.type is ValueType.SCALAR)

TOO_MANY_SAMPLES = ("query processing would load too many samples into memory in query "
                    "execution")

GridKey = tuple[int, Grid]
"""A node (by its number in the run: see ``_Run.key``) on a grid."""


def evaluate(node: ir.Node, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int,
             options: QueryOptions | None = None, *, instant: bool = False) -> QueryResult:
    """Evaluate one expression as an instant query (at ``start_ms``) or a range query."""
    if instant:
        end_ms = start_ms
    run = _Run(source, start_ms, end_ms, step_ms, options or QueryOptions(), instant)
    return run.run([node])[node]


def evaluate_many(nodes: Iterable[ir.Node], source: SeriesSource, start_ms: int, end_ms: int,
                  step_ms: int, options: QueryOptions | None = None) -> dict[ir.Node, QueryResult]:
    """Range-evaluate many expressions together, sharing data reads and sub-expressions.

    An expression that fails gets a result with no series and the error text as a
    warning, so one broken rule does not hide the others.
    """
    # Rule sets feed state machines, which read the result matrices.
    run = _Run(source, start_ms, end_ms, step_ms, options or QueryOptions(), False,
               keep_grid=True)
    return run.run(list(dict.fromkeys(nodes)), isolate=True)


def _eval_times(grid: Grid, at_ms: int | None, offset_ms: int) -> TimeArray:
    """The time each step looks at: the step (or the ``@`` time) minus the offset."""
    if at_ms is not None:
        return np.full(grid.count, at_ms - offset_ms, dtype=np.int64)
    out: TimeArray = grid.times() - offset_ms
    return out


def _pinned_timestamp_lookup(at_ms: int, offset_ms: int, lookback_ms: int) -> tuple[int, int]:
    """Where ``timestamp(v @ t offset o)`` finds its sample: ``(time, lookback)``.

    Not at ``t - o`` as ``v @ t offset o`` does: engine.go's
    ``rangeEvalTimestampFunctionOverVectorSelector`` (2.x and 3.x alike) replaces the
    selector's offset by ``step - t`` so that every step looks at ``t`` itself, which
    drops the written offset, while the storage was asked only for the selector's own
    samples, ``[t - o - lookback, t - o]`` (``getTimeRangesForSelector``), and returns
    nothing outside. What the lookback from ``t``, ``(t - lookback, t]``, finds there
    is the newest sample in ``(t - lookback, t - o]`` for ``o >= 0`` (none once
    ``o >= lookback``) and in ``[t - o - lookback, t]`` for ``o < 0``.
    """
    if offset_ms >= 0:
        return at_ms - offset_ms, lookback_ms - offset_ms
    return at_ms, lookback_ms + offset_ms + 1


class _Run:
    """One query (or rule set) evaluation: data cache, memo, annotations."""

    def __init__(self, source: SeriesSource, start_ms: int, end_ms: int, step_ms: int,
                 options: QueryOptions, instant: bool, keep_grid: bool = False) -> None:
        if not instant:
            if step_ms <= 0:
                raise EvalError("zero or negative query resolution step widths are not "
                                "accepted. Try a positive integer")
            if end_ms < start_ms:
                raise EvalError("end timestamp must not be before start time")
        self.store = RawStore(source)
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.options = options
        self.instant = instant
        self.step_ms = step_ms
        self.grid = Grid(start_ms, 1, 1) if instant else Grid.between(start_ms, end_ms,
                                                                       step_ms)
        self.node_ids: dict[ir.Node, int] = {}  # equal nodes, one number: hashed once
        self.uses: dict[GridKey, int] = {}
        self.memo: dict[GridKey, Value] = {}
        self.notes: dict[GridKey, tuple[list[str], list[str]]] = {}
        self.warnings: list[str] = []
        self.infos: list[str] = []
        self.keep_grid = keep_grid  # attach GridValues to range results

    # ------------------------------------------------------------ driver

    def run(self, nodes: Sequence[ir.Node], isolate: bool = False) -> dict[ir.Node, QueryResult]:
        for node in nodes:
            self.plan(node, self.grid)
        results: dict[ir.Node, QueryResult] = {}
        for node in nodes:
            self.warnings, self.infos = [], []
            try:
                results[node] = self.result(node)
            except EvalError as exc:
                if not isolate:
                    raise
                results[node] = QueryResult("matrix", self.grid.times(),
                                            warnings=[f"evaluation failed: {exc}"])
        return results

    def ctx(self, grid: Grid) -> Context:
        return Context(grid, self.options, self.warnings, self.infos)

    def at_ms(self, at: ir.At | None) -> int | None:
        if at is None:
            return None
        if at.kind == "start":
            return self.start_ms
        if at.kind == "end":
            return self.end_ms
        return at.ms

    # ------------------------------------------------------------ planning

    def key(self, node: ir.Node, grid: Grid) -> GridKey:
        """``(node, grid)`` for the memo tables.

        A node's hash walks its whole subtree (IR nodes are frozen dataclasses);
        numbering equal nodes once keeps that to one walk per evaluation of a node.
        """
        number = self.node_ids.get(node)
        if number is None:
            number = self.node_ids[node] = len(self.node_ids)
        return number, grid

    def plan(self, node: ir.Node, grid: Grid) -> None:
        """Count uses of ``(node, grid)`` and announce the data every selector needs."""
        key = self.key(node, grid)
        self.uses[key] = self.uses.get(key, 0) + 1
        if self.uses[key] > 1:
            return
        if isinstance(node, ir.Selector):
            times = _eval_times(grid, self.at_ms(node.at), node.offset_ms)
            if len(times):
                # One more millisecond under ``timestamp(v @ t offset -o)``'s closed window.
                low = 0 if node.at is not None and node.offset_ms < 0 else 1
                self.store.want(node.matchers,
                                int(times.min()) - self.options.lookback_ms + low,
                                int(times.max()))
            return
        if isinstance(node, ir.RangeSelector):
            sel = node.selector
            times = _eval_times(grid, self.at_ms(sel.at), sel.offset_ms)
            if len(times):
                self.store.want(sel.matchers, int(times.min()) - node.range_ms + 1,
                                int(times.max()))
            return
        if isinstance(node, ir.Subquery):
            inner = self.subquery_grid(node, grid)
            if inner.count:
                self.plan(node.expr, inner)
            return
        for child in node.children():
            self.plan(child, grid)

    def subquery_grid(self, node: ir.Subquery, grid: Grid) -> Grid:
        """Prometheus's subquery steps: multiples of the step inside the outer windows."""
        step = node.step_ms or self.options.default_subquery_step_ms
        ends = _eval_times(grid, self.at_ms(node.at), node.offset_ms)
        if not len(ends):
            return Grid(0, step, 0)
        low = int(ends.min()) - node.range_ms
        start = (low // step) * step
        if start <= low:
            start += step
        return Grid.between(start, int(ends.max()), step)

    # ------------------------------------------------------------ evaluation

    def eval(self, node: ir.Node, grid: Grid) -> Value:
        """The value of ``node`` on ``grid``, computed once while it has uses left."""
        key = self.key(node, grid)
        hit = self.memo.get(key)
        if hit is None:
            seen_w, seen_i = len(self.warnings), len(self.infos)
            hit = self.compute(node, grid)
            if isinstance(hit, Vector) and self.options.max_samples is not None:
                self.count_samples(int(np.count_nonzero(hit.present)))
            if self.uses.get(key, 1) > 1:
                self.memo[key] = hit
                # Another expression reusing this value must report its annotations too.
                self.notes[key] = (self.warnings[seen_w:], self.infos[seen_i:])
        else:
            warns, infos = self.notes.get(key, ([], []))
            self.warnings.extend(w for w in warns if w not in self.warnings)
            self.infos.extend(i for i in infos if i not in self.infos)
        left = self.uses.get(key, 1) - 1
        self.uses[key] = left
        if left <= 0:
            self.memo.pop(key, None)
            self.notes.pop(key, None)
        return hit

    def count_samples(self, count: int) -> None:
        """Enforce :attr:`QueryOptions.max_samples` on one value held in memory."""
        limit = self.options.max_samples
        if limit is not None and count > limit:
            raise EvalError(TOO_MANY_SAMPLES)

    def compute(self, node: ir.Node, grid: Grid) -> Value:
        if isinstance(node, ir.Const):
            return Scalar(np.full(grid.count, node.value))
        if isinstance(node, ir.StringConst):
            return String(node.value)
        if isinstance(node, ir.Selector):
            return self.selector(node, grid)
        if isinstance(node, ir.Neg):
            inner = self.eval(node.expr, grid)
            if isinstance(inner, Scalar):
                return Scalar(-inner.values)
            vec = self.expect_vector(inner, node)
            return Vector(vec.labels, -vec.values, vec.present, np.ones(len(vec), dtype=bool))
        if isinstance(node, ir.Binary):
            return self.binary(node, grid)
        if isinstance(node, ir.Call):
            return self.call(node, grid)
        if isinstance(node, ir.Aggregate):
            return self.aggregation(node, grid)
        if isinstance(node, ir.Weighted):
            return self.weighted(node, grid)
        if isinstance(node, ir.RangeSelector | ir.Subquery):
            raise EvalError("a range vector cannot be used here")
        raise EvalError(f"cannot evaluate {type(node).__name__}")

    @staticmethod
    def expect_vector(value: Value, node: ir.Node) -> Vector:
        if not isinstance(value, Vector):
            raise EvalError(f"expected an instant vector in {ir.describe(node)}")
        return value

    def selector(self, node: ir.Selector, grid: Grid, want_ts: bool = False) -> Vector:
        """Each series' newest sample per step; ``want_ts``: its time, for ``timestamp()``."""
        at = self.at_ms(node.at)
        times = _eval_times(grid, at, node.offset_ms)
        if not len(times):
            return Vector.empty(grid.count)
        lookback = self.options.lookback_ms
        if want_ts and at is not None:
            ref, lookback = _pinned_timestamp_lookup(at, node.offset_ms, lookback)
            if lookback <= 0:
                return Vector.empty(grid.count)
            times = np.full(grid.count, ref, dtype=np.int64)
        selection = self.store.get(node.matchers, int(times.min()) - lookback + 1,
                                   int(times.max()))
        values, present, stamps = instant_lookup(selection, times, lookback, want_ts)
        if stamps is not None:
            values = stamps / 1000.0
        vec = Vector(selection.labels, values, present, np.zeros(len(selection), dtype=bool))
        return vec.compact()

    # ------------------------------------------------------------ operators

    def binary(self, node: ir.Binary, grid: Grid) -> Value:
        lhs = self.eval(node.lhs, grid)
        rhs = self.eval(node.rhs, grid)
        op = node.op
        if op in binary.SET_OPS:
            return binary.set_operation(op, self.expect_vector(lhs, node),
                                        self.expect_vector(rhs, node), node.matching)
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            return Scalar(binary.scalar_scalar(op, lhs.values, rhs.values))
        if isinstance(rhs, Scalar):
            return binary.vector_scalar(op, self.expect_vector(lhs, node), rhs.values, False,
                                        node.return_bool)
        if isinstance(lhs, Scalar):
            return binary.vector_scalar(op, self.expect_vector(rhs, node), lhs.values, True,
                                        node.return_bool)
        return binary.vector_vector(op, self.expect_vector(lhs, node),
                                    self.expect_vector(rhs, node), node.matching,
                                    node.return_bool)

    def aggregation(self, node: ir.Aggregate, grid: Grid) -> Value:
        param = self.eval(node.param, grid) if node.param is not None else None
        vec = self.expect_vector(self.eval(node.expr, grid), node)
        return aggregate(node, vec, param, self.ctx(grid))

    def weighted(self, node: ir.Weighted, grid: Grid) -> Value:
        """Per label set, the sum of the weights of the conditions that hold.

        A condition holds for a label set (its labels without the metric name) at the
        steps where the condition's result has that series, as a filter comparison
        leaves it. A label set for which no condition holds at a step has no value
        there: there is no label set to report a 0 for once every filter dropped it.
        """
        index: dict[Labels, int] = {}
        rows: list[tuple[int, float, FloatMatrix]] = []
        for weight, term in zip(node.weights, node.terms, strict=True):
            vec = self.expect_vector(self.eval(term, grid), node)
            seen: dict[Labels, int] = {}
            for i, labels in enumerate(vec.labels):
                key = drop_name(labels)
                if key in seen and (vec.present[seen[key]] & vec.present[i]).any():
                    raise EvalError(f"weighted(): condition {ir.describe(term)} gives two "
                                    f"series with the labels {labels_string(key)} at one step")
                seen.setdefault(key, i)
                rows.append((index.setdefault(key, len(index)), weight, vec.present[i]))
        out_labels = list(index)
        values = np.zeros((len(out_labels), grid.count))
        present = np.zeros((len(out_labels), grid.count), dtype=bool)
        for row, weight, mask in rows:
            values[row] += np.where(mask, weight, 0.0)
            present[row] |= mask
        return Vector(out_labels, values, present, np.zeros(len(out_labels), dtype=bool)).compact()

    # ------------------------------------------------------------ functions

    def call(self, node: ir.Call, grid: Grid) -> Value:
        name = node.func
        range_pos = next((i for i, a in enumerate(node.args)
                          if isinstance(a, ir.RangeSelector | ir.Subquery)), None)
        if range_pos is not None:
            return self.range_call(node, grid, range_pos)
        if name == "timestamp":
            return self.timestamp(node, grid)
        if name in QUERY_FUNCTIONS and not node.args:
            return Scalar(np.full(grid.count, self.query_value(name) / 1000.0))
        fn = INSTANT_FUNCTIONS.get(name)
        if fn is None:
            raise EvalError(_unsupported(node))
        if name in SORTS and grid.count > 1:  # Prometheus: the evaluator's start != end
            self.ctx(grid).warn("sort is ineffective for range queries since results are "
                                "always ordered by labels", node)
        args = [self.eval(a, grid) for a in node.args]
        return fn(node, args, self.ctx(grid))

    def query_value(self, name: str) -> int:
        """``start()``, ``end()``, ``range()``, ``step()``: the query's own times, in ms."""
        if name == "start":
            return self.start_ms
        if name == "end":
            return self.end_ms
        if name == "range":
            return self.end_ms - self.start_ms
        return 0 if self.instant else self.step_ms

    def timestamp(self, node: ir.Call, grid: Grid) -> Value:
        arg = node.args[0]
        if isinstance(arg, ir.Selector):
            key = self.key(arg, grid)
            self.uses[key] = self.uses.get(key, 1) - 1
            vec = self.selector(arg, grid, want_ts=True)
        else:
            vec = self.expect_vector(self.eval(arg, grid), node)
            vec = vec.with_values(np.broadcast_to(grid.times() / 1000.0,
                                                  vec.values.shape).copy())
        return Vector(vec.labels, vec.values, vec.present, np.ones(len(vec), dtype=bool))

    def range_input(self, arg: ir.Node, grid: Grid) -> ranges.RangeInput:
        """The raw samples and per-step windows of a range selector or subquery."""
        if isinstance(arg, ir.RangeSelector):
            sel = arg.selector
            ends = _eval_times(grid, self.at_ms(sel.at), sel.offset_ms)
            if not len(ends):
                return _no_range_input(ends, arg.range_ms)
            raw = self.store.get(sel.matchers, int(ends.min()) - arg.range_ms + 1,
                                 int(ends.max()))
            data = _selector_input(raw, ends, arg.range_ms)
            self.count_samples(data.samples.total)
            return data
        assert isinstance(arg, ir.Subquery)
        ends = _eval_times(grid, self.at_ms(arg.at), arg.offset_ms)
        inner = self.subquery_grid(arg, grid)
        if not inner.count:
            return _no_range_input(ends, arg.range_ms)
        value = self.eval(arg.expr, inner)
        if isinstance(value, Scalar):
            value = Vector([()], value.values[None, :], np.ones((1, inner.count), dtype=bool),
                           np.zeros(1, dtype=bool))
        vec = self.expect_vector(value, arg)
        times = inner.times()
        ts_list, vs_list = [], []
        for i in range(len(vec)):
            mask = vec.present[i]
            ts_list.append(times[mask])
            vs_list.append(vec.values[i][mask])
        return ranges.RangeInput(list(vec.labels), Samples.of_lists(ts_list, vs_list),
                                 [bool(x) for x in vec.drop_name], ends, arg.range_ms)

    def range_call(self, node: ir.Call, grid: Grid, pos: int) -> Value:
        name = node.func
        key = ranges.kernel_key(node)
        arg = node.args[pos]
        if key not in ranges.RANGE_KERNELS and name != "absent_over_time":
            raise EvalError(_unsupported(node))
        params: list[FloatMatrix] = []
        for i in scalar_params(name):
            value = self.eval(node.args[i], grid)
            if not isinstance(value, Scalar):
                raise EvalError(f"expected a scalar argument to {name}()")
            params.append(value.values)
        ctx = self.ctx(grid)
        streamed = self.streamed_kernel(node, arg, grid, params, ctx)
        if streamed is not None:
            out = streamed
        else:
            data = self.range_input(arg, grid)
            if name == "absent_over_time":
                return ranges.absent_over_time(data, absent_labels(arg))
            out = ranges.apply_kernel(key, data, grid.times(), params)
            ranges.counter_info(name, data, out, ctx, arg)
        if name == "quantile_over_time" and len(out):
            q = params[0][out.present.any(axis=0)]
            bad = q[(q < 0) | (q > 1) | np.isnan(q)]
            if len(bad):
                ctx.warn(f"quantile value should be between 0 and 1, got {go_g(float(bad[0]))}",
                         node.args[0])
        return out.compact()

    def streamed_kernel(self, node: ir.Call, arg: ir.Node, grid: Grid,
                        params: list[FloatMatrix], ctx: Context) -> Vector | None:
        """A range function over a selector nothing else reads, group by group.

        The store reads the next group of series while the kernel runs on this
        one, and the whole selection is never in memory at once. Each series'
        output row depends on that series alone, so computing by groups changes
        nothing but the row order, which is put back (label order) at the end.
        ``None`` when the input cannot be streamed.
        """
        key = ranges.kernel_key(node)
        if key not in ranges.RANGE_KERNELS or node.func == "absent_over_time" \
                or not isinstance(arg, ir.RangeSelector) \
                or self.uses.get(self.key(arg, grid), 0) != 1:
            return None
        sel = arg.selector
        ends = _eval_times(grid, self.at_ms(sel.at), sel.offset_ms)
        if not len(ends):
            return None
        cheap = ranges.compiled_kernel(key, params, grid.count)
        groups = self.store.stream(sel.matchers, int(ends.min()) - arg.range_ms + 1,
                                   int(ends.max()), cheap)
        if groups is None:
            return None
        parts: list[Vector] = []
        loaded = 0
        with contextlib.closing(groups):
            for raw in groups:
                data = _selector_input(raw, ends, arg.range_ms)
                loaded += data.samples.total
                self.count_samples(loaded)
                out = ranges.apply_kernel(key, data, grid.times(), params)
                ranges.counter_info(node.func, data, out, ctx, arg)
                parts.append(out)
        return concat_sorted(parts, grid.count)

    # ------------------------------------------------------------ results

    def result(self, node: ir.Node) -> QueryResult:
        grid = self.grid
        steps = grid.times()
        if isinstance(node, ir.RangeSelector | ir.Subquery):
            if not self.instant:
                raise EvalError('invalid expression type "range vector" for range query, '
                                "must be Scalar or instant Vector")
            return self.matrix_result(node, steps)
        value = self.eval(node, grid)
        if isinstance(value, String):
            if not self.instant:
                raise EvalError('invalid expression type "string" for range query, '
                                "must be Scalar or instant Vector")
            return self.finish(QueryResult("string", steps, string=value.value))
        if isinstance(value, Scalar):
            series = [Series((), steps.copy(), value.values.copy())]
            return self.finish(QueryResult("scalar" if self.instant else "matrix", steps,
                                           series))
        if isinstance(value, Matrix):
            raise EvalError("unexpected matrix value")
        vec = _drop_names(value)
        if self.instant:
            out = [Series(vec.labels[i], steps.copy(), vec.values[i].copy())
                   for i in range(len(vec)) if vec.present[i, 0]]
            return self.finish(QueryResult("vector", steps, out))
        if self.keep_grid:  # series only if a reader asks: the matrices may be enough
            return self.finish(QueryResult(
                "matrix", steps, grid=GridValues(vec.labels, vec.values, vec.present),
                build=lambda: _matrix_series(vec, steps)))
        return self.finish(QueryResult("matrix", steps, _matrix_series(vec, steps)))

    def matrix_result(self, node: ir.RangeSelector | ir.Subquery,
                      steps: TimeArray) -> QueryResult:
        data = self.range_input(node, self.grid)
        flags = dict(zip(data.labels, data.drop_name, strict=True))
        series: dict[Labels, Series] = {}
        for labels, ts, vs in ranges.window_samples(data, 0):
            out_labels = drop_name(labels) if flags.get(labels) else labels
            have = series.get(out_labels)
            if have is None:
                series[out_labels] = Series(out_labels, ts.copy(), vs.copy())
                continue
            # Series that became one when their names went: one series, unless they clash.
            if np.intersect1d(have.ts, ts).size:
                raise EvalError("vector cannot contain metrics with the same labelset")
            all_ts = np.concatenate([have.ts, ts])
            order = np.argsort(all_ts, kind="stable")
            series[out_labels] = Series(out_labels, all_ts[order],
                                        np.concatenate([have.values, vs])[order])
        return self.finish(QueryResult("matrix", steps, list(series.values())))

    def finish(self, result: QueryResult) -> QueryResult:
        result.warnings = list(self.warnings)
        result.infos = list(self.infos)
        return result


def _matrix_series(vec: Vector, steps: TimeArray) -> list[Series]:
    """A range result's series, in label order, each with its points where present."""
    order = sorted(range(len(vec)), key=lambda i: vec.labels[i])
    full: BoolArray = np.logical_and.reduce(vec.present, axis=1)
    # Series with a point at every step share one read-only copy of the steps,
    # and their values are copied out of the matrix in one block: a copy per
    # series cost more than the evaluation of a cheap expression's last step.
    every_step = steps.copy()
    every_step.flags.writeable = False
    full_rows = [i for i in order if full[i]]
    block = iter(vec.values[full_rows] if full_rows else ())  # in the order of ``order``
    out = []
    for i in order:
        if full[i]:
            out.append(Series(vec.labels[i], every_step, next(block)))
            continue
        mask = vec.present[i]
        out.append(Series(vec.labels[i], steps[mask], vec.values[i][mask]))
    return out


def _selector_input(raw: Selection, ends: TimeArray, range_ms: int) -> ranges.RangeInput:
    """A range function's input from selected series (staleness markers left out)."""
    rows, samples = raw.samples.without_stale()
    labels = raw.labels if len(rows) == len(raw) else [raw.labels[i] for i in rows.tolist()]
    return ranges.RangeInput(labels, samples, [False] * len(labels), ends, range_ms)


def _no_range_input(ends: TimeArray, range_ms: int) -> ranges.RangeInput:
    return ranges.RangeInput([], Samples.of_lists([], []), [], ends, range_ms)


def _drop_names(vec: Vector) -> Vector:
    """Apply delayed name removal, then merge rows that became one series."""
    if not vec.drop_name.any():
        return merge_same_labels(vec)
    if vec.drop_name.all():  # the usual case; the name is nearly always first
        labels = [lab[1:] if lab and lab[0][0] == METRIC_NAME else drop_name(lab)
                  for lab in vec.labels]
    else:
        labels = [drop_name(lab) if flag else lab
                  for lab, flag in zip(vec.labels, vec.drop_name.tolist(), strict=True)]
    return merge_same_labels(Vector(labels, vec.values, vec.present,
                                    np.zeros(len(labels), dtype=bool)))
