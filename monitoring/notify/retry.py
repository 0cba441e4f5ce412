"""When to try a failed notification again: exponential backoff with jitter, and expiry.

A receiver that is down must not be hammered (backoff), many messages that failed together
must not retry together (jitter), and a notification that could not be delivered for a
day is no longer news (expiry). The policy is a pure value so the outbox, the tests and
the docs all compute the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff ``initial_ms * factor**(attempt-1)``, capped at ``max_ms``, minus jitter.

    Jitter is taken off the capped delay (a uniform fraction of up to ``jitter``), so a
    delay is always within ``[base * (1 - jitter), base]`` and never above ``max_ms``.
    ``expire_ms`` is how long after enqueueing a message is still worth sending (when the
    enqueue gave no explicit expiry).
    """

    initial_ms: int = 1000
    factor: float = 2.0
    max_ms: int = 300_000
    jitter: float = 0.2
    expire_ms: int = 86_400_000

    def __post_init__(self) -> None:
        if self.initial_ms < 1:
            raise ValueError(f"initial_ms must be at least 1, got {self.initial_ms}")
        if not self.factor >= 1.0:
            raise ValueError(f"factor must be at least 1.0, got {self.factor}")
        if self.max_ms < self.initial_ms:
            raise ValueError(f"max_ms ({self.max_ms}) must be at least initial_ms "
                             f"({self.initial_ms})")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.expire_ms < 1:
            raise ValueError(f"expire_ms must be at least 1, got {self.expire_ms}")

    def base_ms(self, attempt: int) -> int:
        """The delay after failed attempt number ``attempt`` (1-based) before jitter."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        # Stop multiplying once past the cap: factor**attempt overflows a float eventually.
        delay = float(self.initial_ms)
        for _ in range(attempt - 1):
            delay *= self.factor
            if delay >= self.max_ms:
                return self.max_ms
        return min(self.max_ms, int(delay))

    def delay_ms(self, attempt: int, rng: random.Random) -> int:
        """The wait after failed attempt ``attempt`` (1-based), jittered with ``rng``."""
        base = self.base_ms(attempt)
        return max(1, int(base * (1.0 - self.jitter * rng.random())))

    def bounds_ms(self, attempt: int) -> tuple[int, int]:
        """The smallest and largest value :meth:`delay_ms` can return for ``attempt``."""
        base = self.base_ms(attempt)
        return max(1, int(base * (1.0 - self.jitter))), base
