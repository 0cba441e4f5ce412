"""Go's heap and sort routines, so that ties and NaNs come out in Prometheus's order.

``topk``/``bottomk``/``limitk`` keep their candidates in a ``container/heap``,
and ``sort``/``sort_desc`` and the final ordering of ``topk`` use
``sort.Sort``. Which of several equal samples survives, and in which order
they are listed, follows from exactly how those routines move elements, and
Prometheus's comparison functions are not even consistent for NaN (NaN is
"less" than everything, itself included). Go's ``sort.Sort`` is an insertion
sort for up to 12 elements; that is what is reproduced here (for longer inputs
Go switches to pattern-defeating quicksort, whose order of ties differs).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from monitoring.engine.reference.values import Sample

Less = Callable[[Sample, Sample], bool]


def value_less(a: Sample, b: Sample) -> bool:
    """``vectorByValueHeap.Less``."""
    return math.isnan(a.value) or a.value < b.value


def reverse_value_less(a: Sample, b: Sample) -> bool:
    """``vectorByReverseValueHeap.Less``."""
    return math.isnan(a.value) or a.value > b.value


def reversed_less(less: Less) -> Less:
    """``sort.Reverse``: ``Less(i, j)`` becomes ``Less(j, i)``."""
    return lambda a, b: less(b, a)


def heap_push(heap: list[Sample], s: Sample, less: Less) -> None:
    """``heap.Push``: append, then sift up."""
    heap.append(s)
    j = len(heap) - 1
    while j > 0:
        i = (j - 1) // 2
        if not less(heap[j], heap[i]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        j = i


def heap_fix_root(heap: list[Sample], less: Less) -> None:
    """``heap.Fix(h, 0)`` after the root was replaced: sift down."""
    i, n = 0, len(heap)
    while True:
        j = 2 * i + 1
        if j >= n:
            break
        if j + 1 < n and less(heap[j + 1], heap[j]):
            j += 1
        if not less(heap[j], heap[i]):
            break
        heap[i], heap[j] = heap[j], heap[i]
        i = j


def go_sort(items: list[Sample], less: Less) -> list[Sample]:
    """``sort.Sort`` as Go runs it on short inputs: an insertion sort."""
    out = list(items)
    for i in range(1, len(out)):
        j = i
        while j > 0 and less(out[j], out[j - 1]):
            out[j], out[j - 1] = out[j - 1], out[j]
            j -= 1
    return out
