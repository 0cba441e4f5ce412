"""Range vectors (``x[5m]``, subqueries) and the functions that consume them.

A range argument is kept as raw samples per series plus, per evaluation step,
the end of its window ``(end - range, end]``. The range-window kernels of
:mod:`monitoring.engine.fast.kernels` then compute a function over every window
of a batch of series at once; batches bound the memory of the
``[series × steps]`` index matrices on long queries.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from monitoring.dsl import ir
from monitoring.engine.fast import native
from monitoring.engine.fast.anomaly import ANOMALY_KERNELS
from monitoring.engine.fast.context import Context
from monitoring.engine.fast.kernels import KERNELS, Kernel, sample_windows
from monitoring.engine.fast.samples import Samples
from monitoring.engine.fast.search import FLAT_MAX_STEPS
from monitoring.engine.fast.trend import TREND_KERNELS
from monitoring.engine.fast.values import BoolArray, FloatMatrix, Vector
from monitoring.engine.model import METRIC_NAME, Labels, TimeArray, ValueArray

if TYPE_CHECKING:
    from monitoring.dsl.ir import Node

RANGE_KERNELS: dict[str, Kernel] = {**KERNELS, **ANOMALY_KERNELS, **TREND_KERNELS}
"""Every range-window function of the fast evaluator, by :func:`kernel_key`."""


def kernel_key(node: ir.Call) -> str:
    """The kernel that computes a call.

    Its function's name, followed by the value of its string argument when it has
    one: ``anomaly(m[1h], method="mad")`` -> ``anomaly:mad``.
    """
    strings = [a.value for a in node.args if isinstance(a, ir.StringConst)]
    return f"{node.func}:{strings[0]}" if strings else node.func


BATCH_CELLS = 1 << 16
"""Series × steps of one kernel batch (at least one series). Kernels allocate several
temporaries per sample and per window; small batches keep them small, which measured
faster than large ones (7 days at 15 s, 10,080 steps: 6 series per batch)."""

WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Threads that run kernel batches side by side: NumPy releases the interpreter lock
inside its loops, so batches of one range function use every core."""

_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL  # one pool for the process, made on first use
    if _POOL is None:
        _POOL = ThreadPoolExecutor(WORKERS, thread_name_prefix="kernels")
    return _POOL


KEEPS_NAME = frozenset({"last_over_time", "first_over_time"})
"""Range functions whose result keeps the metric name (Prometheus 3)."""

COUNTER_SUFFIXES = ("_total", "_sum", "_count", "_bucket")


@dataclass(slots=True)
class RangeInput:
    """Raw samples of each series of a range argument and the window of every step."""

    labels: list[Labels]
    samples: Samples  # no staleness markers
    drop_name: list[bool]
    ends: TimeArray  # window end per evaluation step (after @ and offset)
    range_ms: int


def compiled_kernel(func: str, params: list[FloatMatrix], steps: int) -> bool:
    """Whether ``func`` runs series by series in the compiled module.

    Over many steps each call does much work; over a few (live evaluation: one
    step) a call per series would cost more than the NumPy kernel's one pass over
    a whole batch.
    """
    return native.AVAILABLE and func in native.EXTRAPOLATED and not params \
        and steps > FLAT_MAX_STEPS


def apply_kernel(func: str, data: RangeInput, step_times: TimeArray,
                 params: list[FloatMatrix]) -> Vector:
    """``func`` over every window of every series; one output row per input series."""
    kernel = RANGE_KERNELS[func]
    steps = len(data.ends)
    n = len(data.labels)
    values = np.zeros((n, steps))
    present = np.zeros((n, steps), dtype=bool)
    per_batch = max(1, BATCH_CELLS // max(steps, 1))

    native_kernel = compiled_kernel(func, params, steps)
    if native_kernel:
        ts_list, vs_list = data.samples.ts_list, data.samples.vs_list

    def run(start: int) -> None:
        # Batches write disjoint rows of the output, so they can run in any order.
        stop = min(n, start + per_batch)
        if native_kernel and all(
                native.extrapolated_rate(func, ts_list[i], vs_list[i], data.ends,
                                         data.range_ms, values[i], present[i])
                for i in range(start, stop)):
            return
        w = sample_windows(data.samples.rows(start, stop), data.ends, data.range_ms,
                           step_times, params)
        with np.errstate(all="ignore"):
            vals, ok = kernel(w)
        np.copyto(values[start:stop], vals, where=ok)  # zero where absent
        present[start:stop] = ok

    starts = range(0, n, per_batch)
    if WORKERS == 1 or len(starts) < 2:
        for start in starts:
            run(start)
    else:
        for _ in _pool().map(run, starts):
            pass
    # As in Prometheus, the flag depends on the function only: a subquery argument's
    # own pending name removal is not carried through.
    flags = np.full(n, func not in KEEPS_NAME, dtype=bool)
    return Vector(list(data.labels), values, present, flags)


def counter_info(func: str, data: RangeInput, out: Vector, ctx: Context,
                 node: Node) -> None:
    """Prometheus's info for ``rate``/``increase`` over a metric not named like a counter."""
    if func not in ("rate", "increase"):
        return
    pinned = _pinned_name(node)
    if pinned is not None:  # every series has that name: no need to look at each
        names: Iterable[str] = [pinned] if out.present.any() else []
    else:
        has_output: BoolArray = np.logical_or.reduce(out.present, axis=1)
        # Each distinct name once, in the order the rows first show it.
        names = dict.fromkeys(_metric_name(data.labels[i])
                              for i in np.flatnonzero(has_output).tolist())
    for name in names:
        if name and not name.endswith(COUNTER_SUFFIXES):
            ctx.info("metric might not be a counter, name does not end in "
                     f'_total/_sum/_count/_bucket: "{name}"', node)


def _pinned_name(node: Node) -> str | None:
    """The metric name a range selector's matchers fix (``c[5m]``, ``{__name__="c"}[5m]``)."""
    if not isinstance(node, ir.RangeSelector):
        return None
    for name, op, value in node.selector.matchers:
        if name == METRIC_NAME and op == "=":
            return value
    return None


def _metric_name(labels: Labels) -> str:
    """The metric name of a label set ('' without one); usually its first label."""
    if labels and labels[0][0] == METRIC_NAME:
        return labels[0][1]
    return dict(labels).get(METRIC_NAME, "")


def absent_over_time(data: RangeInput, labels: Labels) -> Vector:
    """1 with ``labels`` at every step where no series has a sample in the window."""
    steps = len(data.ends)
    seen = np.zeros(steps, dtype=bool)
    starts = data.ends - data.range_ms
    for ts in data.samples.ts_list:
        if not len(ts):
            continue
        lo = np.searchsorted(ts, starts, side="right")
        hi = np.searchsorted(ts, data.ends, side="right")
        seen |= hi > lo
    present = ~seen
    return Vector([labels], np.ones((1, steps)), present[None, :],
                  np.zeros(1, dtype=bool)).compact()


def window_samples(data: RangeInput, index: int) -> list[tuple[Labels, TimeArray, ValueArray]]:
    """The raw samples of the window at one step (an instant query returning a matrix)."""
    end = int(data.ends[index])
    start = end - data.range_ms
    out = []
    for labels, ts, vs in zip(data.labels, data.samples.ts_list, data.samples.vs_list,
                              strict=True):
        lo = int(np.searchsorted(ts, start, side="right"))
        hi = int(np.searchsorted(ts, end, side="right"))
        if hi > lo:
            out.append((labels, ts[lo:hi], vs[lo:hi]))
    return out
