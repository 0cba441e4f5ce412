"""The routing tree: which routes (and so which receivers and timings) an alert takes.

As in Alertmanager, an alert enters at the root and descends into the first child
whose matchers match; with ``continue: true`` on that child it goes on to the
next matching siblings too. The deepest matching routes are the result; a route
none of whose children match is itself the result. The root matches everything.

Routes are built with their settings already inherited from their parents (the
loader does it), so the grouping stage reads every setting from the route alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from monitoring.notify.matchers import Matcher, format_matchers, matches_all

GROUP_BY_ALL = "..."
"""``group_by: ['...']``: every label is a grouping label (one group per alert)."""


@dataclass(frozen=True, slots=True)
class GroupSettings:
    """The timing and grouping settings a route passes on to its children."""

    receivers: tuple[str, ...] = ()
    group_by: tuple[str, ...] | None = None  # None: inherit; () = one group for the route
    group_wait_ms: int = 30_000
    group_interval_ms: int = 300_000
    repeat_interval_ms: int = 4 * 3600_000
    repeat_backoff: float | None = None
    max_repeat_interval_ms: int = 24 * 3600_000
    send_resolved: bool = True

    def repeat_after_ms(self, repeats: int) -> int:
        """The repeat interval after ``repeats`` repeats (exponential when backoff is set)."""
        base = self.repeat_interval_ms
        if not self.repeat_backoff or repeats <= 0:
            return base
        cap = max(self.max_repeat_interval_ms, base)
        value = float(base)
        for _ in range(repeats):
            value *= self.repeat_backoff
            if value >= cap:
                return cap
        return int(value)


@dataclass(frozen=True, slots=True)
class Route:
    """One node of the routing tree with its effective (inherited) settings.

    ``key`` names the route in group keys (``{}`` for the root, ``{}/0/1`` for the
    second child of the first child, ``rule`` for a rule's own channels).
    """

    key: str
    settings: GroupSettings
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    routes: tuple[Route, ...] = field(default=())

    @property
    def receivers(self) -> tuple[str, ...]:
        return self.settings.receivers

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The leaf routes an alert with ``labels`` takes (``[]``: this route does not match)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name the alert's group on this route."""
        by = self.settings.group_by or ()
        if GROUP_BY_ALL in by:
            return dict(labels)
        return {name: labels[name] for name in by if name in labels}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The aggregation group's key: route key and grouping labels (Alertmanager's shape)."""
        group = self.group_labels(labels)
        return self.key + format_matchers(Matcher(k, "=", group[k]) for k in sorted(group))

    def walk(self) -> list[Route]:
        """Every route of the subtree, this one first, depth first."""
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out

    def with_receivers(self, key: str, receivers: tuple[str, ...]) -> Route:
        """A childless copy with other receivers: a rule's own channels on the root's settings."""
        return replace(self, key=key, settings=replace(self.settings, receivers=receivers),
                       matchers=(), continue_=False, routes=())
