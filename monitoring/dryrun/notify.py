"""Which notifications a rule's firing intervals would have sent, per channel.

The simulation (documented in docs/dryrun.md):

* every channel of the rule gets the same notifications; a rule that names no
  channel uses every channel of the loaded notification config (the seed's
  ``notification_config.yaml``), or one channel called ``default`` when no
  config was loaded;
* an alert that starts firing sends a ``firing`` notification, unless the same
  alert (same identity labels) sent a ``firing`` notification less than
  ``cooldown`` ago: then it is suppressed (at most one per alert per cooldown);
* a firing interval that ends sends a ``resolved`` notification if, and only
  if, its ``firing`` notification was sent: a receiver never hears of a
  resolution for an alert it was not told about;
* there are no repeat notifications while an alert keeps firing (the rule
  language has no repeat interval; Alertmanager's ``repeat_interval`` is a
  routing setting, outside a rule set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter

from monitoring.dryrun.report import Interval, Notification

DEFAULT_CHANNEL = "default"


@dataclass(frozen=True, slots=True)
class NotifyOutcome:
    """The notifications of one rule and how many the cooldown suppressed."""

    notifications: list[Notification]
    suppressed: int


def rule_channels(named: Sequence[str], configured: Sequence[str]) -> tuple[str, ...]:
    """The channels a rule notifies (see the module docstring)."""
    if named:
        return tuple(named)
    if configured:
        return tuple(configured)
    return (DEFAULT_CHANNEL,)


def notifications(intervals: Sequence[Interval], channels: Sequence[str], cooldown_ms: int,
                  summary: Callable[[Interval], str] | None = None) -> NotifyOutcome:
    """Notifications for ``intervals`` (any order), in time order, channel order within a time.

    At one time, resolutions come before new firings (a receiver sees the old
    alert resolved before the next one fires).
    """
    last_sent: dict[tuple[tuple[str, str], ...], int] = {}
    # (time, resolved first, channel order, sequence, notification): sorted as plain
    # tuples, the unique sequence number keeps the notifications out of the comparison.
    events: list[tuple[int, int, int, int, Notification]] = []
    suppressed = 0
    for iv in sorted(intervals, key=attrgetter("start_ms")):
        key = tuple(iv.labels.items())
        previous = last_sent.get(key)
        if previous is not None and cooldown_ms > 0 and iv.start_ms - previous < cooldown_ms:
            suppressed += 1
            continue
        last_sent[key] = iv.start_ms
        text = summary(iv) if summary is not None else ""
        for order, channel in enumerate(channels):
            events.append((iv.start_ms, 1, order, len(events), Notification(
                iv.start_ms, channel, "firing", iv.labels, iv.start_value, text)))
            if iv.end_ms is not None:
                events.append((iv.end_ms, 0, order, len(events), Notification(
                    iv.end_ms, channel, "resolved", iv.labels, math.nan, text)))
    events.sort()
    return NotifyOutcome([e[4] for e in events], suppressed)
