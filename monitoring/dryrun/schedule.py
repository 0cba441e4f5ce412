"""When each rule group is evaluated: Prometheus's slotted evaluation times, in chunks.

Prometheus does not evaluate every group on the minute: a group runs at
``base + offset`` where ``offset = hash(group) % interval`` and the hash is
``labels.Labels{name=<group>, file=<file>}.Hash()`` (rules/group.go,
``Group.hash`` and ``EvalTimestamp``), so groups spread over the interval. The
offset is computed in nanoseconds; rule queries use millisecond timestamps, so
evaluation times in ms are ``k * interval + offset_ns // 1e6``. A dry-run uses
the same times, so a ``for 2m`` that a live Prometheus would have seen become
firing at 12:02:17 fires at 12:02:17 here too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from monitoring.engine.gocompat import labels_hash
from monitoring.engine.model import TimeArray

NS_PER_MS = 1_000_000


def group_phase_ms(name: str, file: str, interval_ms: int) -> int:
    """The group's offset within its interval, in ms (Prometheus's ``EvalTimestamp``)."""
    if interval_ms <= 0:
        return 0
    h = labels_hash((("file", file), ("name", name)))
    return (h % (interval_ms * NS_PER_MS)) // NS_PER_MS


@dataclass(frozen=True, slots=True)
class Schedule:
    """A group's evaluation times: ``phase + k * interval`` inside ``[start, end]``.

    ``query_offset_ms`` shifts the time each query looks at (Prometheus's
    ``query_offset``): the rule is evaluated *at* ``t`` (alert timers, reported
    times) over data *as of* ``t - query_offset``.
    """

    interval_ms: int
    phase_ms: int
    query_offset_ms: int
    first_ms: int  # the first evaluation time >= start (may be > last_ms: no steps)
    count: int

    @classmethod
    def within(cls, start_ms: int, end_ms: int, interval_ms: int, phase_ms: int,
               query_offset_ms: int = 0) -> Schedule:
        """The evaluation times inside ``[start_ms, end_ms]``."""
        k = -((phase_ms - start_ms) // interval_ms)  # ceil((start - phase) / interval)
        first = phase_ms + k * interval_ms
        count = 0 if first > end_ms else (end_ms - first) // interval_ms + 1
        return cls(interval_ms, phase_ms, query_offset_ms, first, count)

    @property
    def last_ms(self) -> int | None:
        """The last evaluation time, or None when there is none."""
        return self.first_ms + (self.count - 1) * self.interval_ms if self.count else None

    def times(self, lo: int = 0, hi: int | None = None) -> TimeArray:
        """Evaluation times of steps ``lo .. hi-1``."""
        hi = self.count if hi is None else hi
        out: TimeArray = self.first_ms + self.interval_ms * np.arange(lo, hi, dtype=np.int64)
        return out

    def chunks(self, chunk_steps: int) -> Iterator[tuple[int, int]]:
        """Step index ranges ``[lo, hi)`` of at most ``chunk_steps`` steps, in order."""
        size = max(1, chunk_steps)
        for lo in range(0, self.count, size):
            yield lo, min(self.count, lo + size)
