"""On-call schedules: who is on call for a schedule at a given instant, and their shifts.

A schedule is a stack of rotations (layers) plus overrides, all in one IANA time zone:

* a **rotation** hands off from one member to the next every ``length``, counted from a
  reference hand-off in the schedule's *wall-clock* time, so a daily 09:00 hand-off in
  Europe/Berlin stays at 09:00 across a daylight-saving change (the shift around the change
  is 23 or 25 hours long). A rotation may be limited to ``[start, end)``;
* rotations are **layered**: where several are active, the one listed last wins (the way
  PagerDuty draws layers, bottom to top), so a business-hours rotation limited to a period
  can sit on top of a 24/7 one;
* an **override** puts one person on call from ``start`` to ``end`` and beats every
  rotation; of overlapping overrides the one listed last wins.

Everything is computed from the configuration alone (no state), so the answer for any
instant, past or future, is the same on every engine and after every restart.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

CONTACT_KINDS = ("email", "slack", "pagerduty", "phone", "webhook")
"""Contact fields a person may have; a stage targeting a schedule uses the one named like
its channel type (``email`` for an email stage, ``slack`` for a Slack stage)."""


class UnknownScheduleError(KeyError):
    """A schedule name that the on-call configuration does not define."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        listed = ", ".join(self.known) if self.known else "none configured"
        return f"unknown on-call schedule {self.name!r} (schedules: {listed})"


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who can be on call, with how each kind of channel reaches them."""

    name: str
    contacts: Mapping[str, str] = field(default_factory=dict)

    def contact(self, channel_type: str) -> str | None:
        """The address for a channel type (``email`` -> ``alice@example.com``), if any."""
        return self.contacts.get(channel_type)


@dataclass(frozen=True, slots=True)
class Rotation:
    """Members taking turns: member ``k mod n`` is on call from hand-off ``k`` to ``k+1``.

    ``handoff`` is one hand-off as naive wall-clock time in ``zone`` (hand-off 0);
    hand-off ``k`` is ``handoff + k * length`` on the wall clock. ``start_ms``/``end_ms``
    limit when the rotation takes part (None: always).
    """

    name: str
    members: tuple[str, ...]
    handoff: datetime
    length: timedelta
    zone: ZoneInfo
    start_ms: int | None = None
    end_ms: int | None = None

    def handoff_ms(self, k: int) -> int:
        """The instant of hand-off ``k`` (wall-clock arithmetic in the rotation's zone)."""
        return _to_ms(self.handoff + k * self.length, self.zone)

    def shift_index(self, at_ms: int) -> int:
        """The number ``k`` of the shift running at ``at_ms`` (negative before hand-off 0)."""
        local = datetime.fromtimestamp(at_ms / 1000, self.zone).replace(tzinfo=None)
        k = (local - self.handoff) // self.length
        while self.handoff_ms(k + 1) <= at_ms:
            k += 1
        while self.handoff_ms(k) > at_ms:
            k -= 1
        return k

    def active(self, at_ms: int) -> bool:
        """Whether the rotation takes part at ``at_ms`` (inside its start/end)."""
        return bool(self.members) and (self.start_ms is None or at_ms >= self.start_ms) and \
            (self.end_ms is None or at_ms < self.end_ms)

    def member_at(self, at_ms: int) -> str | None:
        """The member on call at ``at_ms``, None when the rotation is not active then."""
        if not self.active(at_ms):
            return None
        return self.members[self.shift_index(at_ms) % len(self.members)]

    def boundaries(self, start_ms: int, end_ms: int) -> Iterator[int]:
        """Instants in ``(start_ms, end_ms)`` at which this rotation's answer may change."""
        for limit in (self.start_ms, self.end_ms):
            if limit is not None and start_ms < limit < end_ms:
                yield limit
        if not self.members:
            return
        k = self.shift_index(start_ms) + 1
        while (at := self.handoff_ms(k)) < end_ms:
            if at > start_ms:
                yield at
            k += 1


@dataclass(frozen=True, slots=True)
class Override:
    """``member`` is on call from ``start_ms`` to ``end_ms``, whatever the rotations say."""

    member: str
    start_ms: int
    end_ms: int

    def covers(self, at_ms: int) -> bool:
        """Whether the override holds at ``at_ms``."""
        return self.start_ms <= at_ms < self.end_ms


@dataclass(frozen=True, slots=True)
class Shift:
    """A stretch of time in which one person is on call for a schedule."""

    schedule: str
    person: str
    start_ms: int
    end_ms: int
    source: str
    """What put them there: ``rotation <name>`` or ``override``."""


@dataclass(frozen=True, slots=True)
class Schedule:
    """A named stack of rotations and overrides in one time zone."""

    name: str
    zone: ZoneInfo
    rotations: tuple[Rotation, ...] = ()
    overrides: tuple[Override, ...] = ()

    def who(self, at_ms: int) -> tuple[str | None, str]:
        """The member on call at ``at_ms`` and what put them there (``""`` when nobody)."""
        for override in reversed(self.overrides):
            if override.covers(at_ms):
                return override.member, "override"
        for rotation in reversed(self.rotations):
            member = rotation.member_at(at_ms)
            if member is not None:
                return member, f"rotation {rotation.name}"
        return None, ""

    def boundaries(self, start_ms: int, end_ms: int) -> list[int]:
        """Sorted instants in ``(start_ms, end_ms)`` where the answer of :meth:`who` may change."""
        found: set[int] = set()
        for rotation in self.rotations:
            found.update(rotation.boundaries(start_ms, end_ms))
        for override in self.overrides:
            found.update(t for t in (override.start_ms, override.end_ms)
                         if start_ms < t < end_ms)
        return sorted(found)

    def shifts(self, start_ms: int, end_ms: int) -> list[Shift]:
        """Who is on call over ``[start_ms, end_ms)``: consecutive shifts, gaps left out.

        Adjacent stretches of the same person from the same source are merged; a stretch
        in which nobody is on call produces no shift.
        """
        out: list[Shift] = []
        edges = [start_ms, *self.boundaries(start_ms, end_ms), end_ms]
        for begin, finish in itertools.pairwise(edges):
            if finish <= begin:
                continue
            member, source = self.who(begin)
            if member is None:
                continue
            last = out[-1] if out else None
            if last is not None and last.end_ms == begin and last.person == member and \
                    last.source == source:
                out[-1] = Shift(self.name, member, last.start_ms, finish, source)
            else:
                out.append(Shift(self.name, member, begin, finish, source))
        return out


@dataclass(frozen=True, slots=True)
class OnCallConfig:
    """People and schedules as ``oncall.yaml`` defines them."""

    people: Mapping[str, Person] = field(default_factory=dict)
    schedules: Mapping[str, Schedule] = field(default_factory=dict)

    def schedule(self, name: str) -> Schedule:
        """The schedule called ``name``; :class:`UnknownScheduleError` when there is none."""
        found = self.schedules.get(name)
        if found is None:
            raise UnknownScheduleError(name, sorted(self.schedules))
        return found

    def current(self, schedule: str, at_ms: int) -> Person | None:
        """The person on call for ``schedule`` at ``at_ms`` (None: nobody covers it)."""
        member, _ = self.schedule(schedule).who(at_ms)
        if member is None:
            return None
        return self.people.get(member, Person(member))

    def shifts(self, schedule: str, start_ms: int, end_ms: int) -> list[Shift]:
        """The shifts of ``schedule`` over ``[start_ms, end_ms)`` (see :meth:`Schedule.shifts`)."""
        return self.schedule(schedule).shifts(start_ms, end_ms)


def _to_ms(local: datetime, zone: ZoneInfo) -> int:
    """Milliseconds since the epoch of a naive wall-clock time in ``zone``.

    Times that do not exist (inside a spring-forward gap) are read with the offset before
    the change (02:30 on the day clocks jump from 02:00 to 03:00 is 03:30); times that occur
    twice (autumn) are their first occurrence.
    """
    return (local.replace(tzinfo=zone, fold=0) - _EPOCH) // _MS
