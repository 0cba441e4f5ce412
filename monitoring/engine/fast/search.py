"""One ``searchsorted`` for many series at once.

The per-series loops of window and instant lookups (one NumPy call per series)
dominate single-step evaluation, where each call does almost no work: here all
series are searched together in their concatenated samples.
"""

from __future__ import annotations

import numpy as np

from monitoring.engine.fast.values import IndexArray
from monitoring.engine.model import TimeArray

SEARCH_KEY_LIMIT = 1 << 62
"""Largest key of :func:`search_all`'s combined (series, time) keys (int64 headroom)."""


FLAT_MAX_STEPS = 64
"""Searches of more steps than this use the per-series loop: each of its searches then
covers many steps, so its Python overhead is small, while the combined keys would be
built for every (series, step) pair (a week at a 1-minute step ran 10-15 % slower)."""


def search_all(ts: TimeArray, first: IndexArray, lens: IndexArray, times: TimeArray,
               side: str = "right") -> IndexArray | None:
    """``searchsorted`` of ``times`` in every series at once: ``[series × times]``.

    ``ts`` holds the ascending sample times of all series one after the other
    (series ``i`` from ``first[i]``, ``lens[i]`` samples). Each sample becomes the
    key ``i * span + (t - t0)``, with ``span`` wider than every time involved, so
    the keys of all series ascend together and one search finds every series'
    position, already offset into ``ts``; a time outside the samples' range is
    clamped to just outside it, which finds the same position. ``None`` when the
    keys would not fit in an int64 (the caller searches series by series).
    """
    n = len(first)
    if n == 0 or not len(ts):
        return np.repeat(first, len(times)).reshape(n, len(times)) if n else \
            np.zeros((0, len(times)), dtype=np.int64)
    t0 = int(ts.min())
    top = int(ts.max()) - t0 + 1  # times above every sample: clamped to ``top``
    span = top + 2
    if n * span >= SEARCH_KEY_LIMIT:
        return None
    base = np.arange(n, dtype=np.int64) * span
    keys = np.repeat(base, lens)
    keys += ts
    keys -= t0
    rel = times - t0
    np.maximum(rel, -1, out=rel)
    np.minimum(rel, top, out=rel)
    queries = base[:, None] + rel[None, :]
    out: IndexArray = np.searchsorted(keys, queries, side=side)  # type: ignore[call-overload]
    return out
