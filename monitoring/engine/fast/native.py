"""Walks over sorted sample times in C (``_native``), each with a NumPy twin.

An evaluation over many steps looks up every step time in every series' sample
times. The step times ascend, so one walk through a series' samples finds all
of them, each step moving a few samples on: the compiled module ``_native``
does that walk, about four times faster than a binary search per step (a week
of 15 s samples at a 60 s step), with the interpreter lock released. The same
walk computes ``rate``/``increase``/``delta`` window by window, and one pass
computes the prefix sums of ``sum_over_time``/``avg_over_time`` that the NumPy
kernel builds from a dozen temporary arrays.

Every function is declared here once, with two implementations: the compiled
one and its NumPy twin (the ``numpy_*`` functions), which the tests compare
element for element on generated data. The NumPy twin is used when the module
was not built (no C compiler at install time), when the keys do not ascend, or
with ``MONITORING_NATIVE=0`` in the environment.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from monitoring.engine.fast.values import BoolArray, IndexArray
from monitoring.engine.model import TimeArray, ValueArray


def _load() -> ModuleType | None:
    if os.environ.get("MONITORING_NATIVE", "1") == "0":
        return None
    try:
        from monitoring.engine.fast import _native
    except ImportError:
        return None
    module: ModuleType = _native
    return module


_NATIVE = _load()

AVAILABLE = _NATIVE is not None
"""Whether the compiled walk is in use."""


def _fits(*pairs: tuple[npt.NDArray[Any] | None, type[np.generic]]) -> bool:
    """Whether every array given is C-contiguous and of its dtype (``None`` fits).

    The compiled functions read raw buffers: they know nothing of strides or types.
    """
    return all(a is None or (a.dtype == dtype and bool(a.flags.c_contiguous))
               for a, dtype in pairs)


def search_right(ts: TimeArray, keys: TimeArray) -> IndexArray:
    """``np.searchsorted(ts, keys, side="right")`` of ascending sample times ``ts``."""
    if _NATIVE is not None and _fits((ts, np.int64), (keys, np.int64)):
        out = np.empty(len(keys), dtype=np.int64)
        if _NATIVE.search_right(ts, keys, out):
            return out
    return numpy_search_right(ts, keys)


def numpy_search_right(ts: TimeArray, keys: TimeArray) -> IndexArray:
    """The NumPy twin of :func:`search_right`."""
    out: IndexArray = np.searchsorted(ts, keys, side="right")
    return out


def lookup(ts: TimeArray, values: ValueArray, stale: BoolArray | None, times: TimeArray,
           lookback_ms: int, out_values: ValueArray, out_present: BoolArray,
           out_stamps: IndexArray | None) -> None:
    """The newest sample of one series in ``(t - lookback, t]`` for every time ``t``.

    Fills ``out_values`` and ``out_present`` (and ``out_stamps``, the sample's
    time, unless ``None``). Where nothing is present, the value and stamp are
    those of the newest sample at or before ``t``, else of the first sample:
    the evaluator's matrices hold something defined in every cell. A series
    without samples gets 0.0 and leaves its stamps as they are. ``stale``
    marks staleness markers (never present).
    """
    if _NATIVE is not None \
            and _fits((ts, np.int64), (values, np.float64), (stale, np.bool_),
                      (times, np.int64), (out_values, np.float64), (out_present, np.bool_),
                      (out_stamps, np.int64)) \
            and _NATIVE.lookup(ts, values, stale, times, int(lookback_ms), out_values,
                               out_present, out_stamps):
        return
    numpy_lookup(ts, values, stale, times, lookback_ms, out_values, out_present, out_stamps)


def numpy_lookup(ts: TimeArray, values: ValueArray, stale: BoolArray | None,
                 times: TimeArray, lookback_ms: int, out_values: ValueArray,
                 out_present: BoolArray, out_stamps: IndexArray | None) -> None:
    """The NumPy twin of :func:`lookup`."""
    if len(ts) == 0:
        out_present[:] = False
        out_values[:] = 0.0
        return
    # Samples at or before each time; the newest of them is at ``count - 1``.
    count = np.searchsorted(ts, times, side="right")
    idx = np.subtract(count, 1, out=count)
    found = idx >= 0
    np.maximum(idx, 0, out=idx)
    t = ts[idx]
    np.greater(t, times - lookback_ms, out=out_present)
    out_present &= found
    if stale is not None:
        out_present &= ~stale[idx]
    np.take(values, idx, out=out_values)
    if out_stamps is not None:
        out_stamps[:] = t


EXTRAPOLATED = {"rate": (True, True), "increase": (True, False), "delta": (False, False)}
"""Range functions :func:`extrapolated_rate` computes: (is_counter, is_rate) by name.
Their NumPy twin is :func:`monitoring.engine.fast.kernels.extrapolated_rate`."""


def extrapolated_rate(func: str, ts: TimeArray, values: ValueArray, ends: TimeArray,
                      range_ms: int, out_values: ValueArray, out_present: BoolArray) -> bool:
    """``rate``/``increase``/``delta`` of one series over the window ending at each ``ends``.

    Prometheus's ``extrapolatedRate`` in its own order of operations (counter
    resets added one by one); ``ts``/``values`` hold no staleness markers.
    Fills one output row (0.0 where absent) and returns ``True``, or returns
    ``False`` without touching it when the compiled module cannot (not built,
    ends not ascending): the caller then uses the NumPy kernel.
    """
    if _NATIVE is None or func not in EXTRAPOLATED \
            or not _fits((ts, np.int64), (values, np.float64), (ends, np.int64),
                         (out_values, np.float64), (out_present, np.bool_)):
        return False
    is_counter, is_rate = EXTRAPOLATED[func]
    done: bool = _NATIVE.extrapolated_rate(ts, values, ends, int(range_ms), range_ms / 1000.0,
                                           is_counter, is_rate, out_values, out_present)
    return done


def window_sums(values: ValueArray, lo: IndexArray, hi: IndexArray,
                mean: bool) -> tuple[npt.NDArray[np.float64], BoolArray] | None:
    """Every window's sum (``mean``: mean) from double-double prefix sums, and which to redo.

    ``lo``/``hi`` (any shape, int64) bound the windows ``[lo, hi)`` of the
    concatenated ``values`` of a batch. The second array flags the non-empty
    windows that need Prometheus's exact sequential computation (a non-finite
    value inside, heavy cancellation, a non-finite result). ``None`` when the
    compiled module cannot: the caller uses the NumPy twin,
    :func:`monitoring.engine.fast.kernels.numpy_window_sums`, whose bits these are.
    """
    if _NATIVE is None or lo.shape != hi.shape \
            or not _fits((values, np.float64), (lo, np.int64), (hi, np.int64)):
        return None
    total = np.empty(lo.shape, dtype=np.float64)
    exact = np.empty(lo.shape, dtype=bool)
    _NATIVE.window_sums(values, lo, hi, mean, total, exact)
    return total, exact
