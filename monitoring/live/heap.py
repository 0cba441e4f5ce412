"""Keeping Python's cyclic garbage collector off the engine's long-lived objects.

A running engine holds hundreds of thousands of objects that live as long as
its rules do: compiled rules, alert machines, label sets of the series they
read, modules. Every full collection of the cyclic garbage collector walks all
of them; on the live benchmark (1,000 rules, 10,000 series) that was a 50-60 ms
pause every cycle, a twentieth of the cycle. Once every group has been
evaluated once, what exists is what stays, so it is frozen (:func:`gc.freeze`):
collections then walk only what was made since. Frozen objects are still
freed by reference counting; only reference cycles among them are never
collected, so after a rule reload the heap is unfrozen, and frozen again once
the new groups have all been evaluated.

Freezing is process-wide, so it is for a process the engine owns
(``monitoring serve``); an application embedding the engine decides for itself
(``MonitoringSystem(freeze_heap=...)``).
"""

from __future__ import annotations

import gc
from collections.abc import Iterable


class HeapFreezer:
    """Freezes the heap once every group of the rules loaded has been evaluated."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.frozen = False
        self._waiting: set[str] = set()

    def loaded(self, groups: Iterable[str]) -> None:
        """New rules: wait for their groups' first evaluations, unfreezing what was frozen."""
        if not self.enabled:
            return
        self._waiting = set(groups)
        if self.frozen:
            gc.unfreeze()  # the old rules' reference cycles can be collected now
            self.frozen = False

    def evaluated(self, group: str) -> None:
        """A group was evaluated: freeze when it was the last one not yet evaluated."""
        if not self.enabled or self.frozen:
            return
        self._waiting.discard(group)
        if not self._waiting:
            gc.collect()  # garbage of the start-up goes now, not frozen with the rest
            gc.freeze()
            self.frozen = True
