"""Alertmanager time intervals: when a route is muted (or active).

A named interval is a list of specs; a time is in the interval when any spec
contains it, and a spec contains it when every field it sets does (an unset field
matches always): ``times`` (``HH:MM`` to ``HH:MM``, end exclusive, ``24:00``
allowed), ``weekdays`` (``monday:friday``, ``saturday``), ``days_of_month``
(``1:5``; negative counts from the month's end, ``-1`` is its last day),
``months`` (``january:march`` or ``1:3``), ``years`` (``2026:2027``), all read in
``location`` (an IANA zone such as ``Europe/Berlin``; default UTC; ``Local`` is
the machine's zone).

One extension over Alertmanager: a ``times`` range whose start is after its end
(``22:00`` to ``06:00``) runs overnight; the hours after midnight belong to the
day the range started, so ``weekdays: [friday]`` with ``22:00``-``06:00`` covers
Friday night up to Saturday 06:00. Alertmanager needs two ranges for that.

:func:`parse_time_interval` reads the plain (YAML) data and raises
:class:`TimeIntervalError` naming the field path, so the config loader can point
at it.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
"""Alertmanager's numbering: sunday is 0."""
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
          "september", "october", "november", "december")
_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)\Z")
FIELDS = ("times", "weekdays", "days_of_month", "months", "years", "location")

Path = tuple[str | int, ...]


class TimeIntervalError(ValueError):
    """A bad time interval field: ``path`` leads from the spec to the offending value."""

    def __init__(self, message: str, path: Path = ()) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """One entry of a time interval (all set fields must match)."""

    times: tuple[tuple[int, int], ...] = ()  # minutes of the day, [start, end)
    weekdays: tuple[tuple[int, int], ...] = ()  # 0 = sunday
    days_of_month: tuple[tuple[int, int], ...] = ()  # may be negative
    months: tuple[tuple[int, int], ...] = ()  # 1..12
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"

    def contains(self, ms: int) -> bool:
        """Whether the instant ``ms`` (epoch milliseconds) is inside this spec."""
        when = dt.datetime.fromtimestamp(ms / 1000, tz=_zone(self.location))
        minute = when.hour * 60 + when.minute
        day = when
        if self.times:
            hit = None
            for start, end in self.times:
                if (start <= minute < end) if start <= end else minute >= start:
                    hit = when
                elif start > end and minute < end:
                    hit = when - dt.timedelta(days=1)  # the night began the day before
                if hit is not None:
                    break
            if hit is None:
                return False
            day = hit
        return self._date_matches(day)

    def _date_matches(self, day: dt.datetime) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: monday is 0
        if self.weekdays and not _in(self.weekdays, weekday):
            return False
        if self.days_of_month:
            length = calendar.monthrange(day.year, day.month)[1]
            if not any(_day_in(lo, hi, day.day, length) for lo, hi in self.days_of_month):
                return False
        if self.months and not _in(self.months, day.month):
            return False
        return not (self.years and not _in(self.years, day.year))


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """A named list of specs; an instant is inside when any spec contains it."""

    name: str
    specs: tuple[TimeSpec, ...]

    def contains(self, ms: int) -> bool:
        """Whether the instant ``ms`` (epoch milliseconds) is inside the interval."""
        return any(spec.contains(ms) for spec in self.specs)


def parse_time_interval(name: str, specs: Any) -> TimeInterval:
    """A :class:`TimeInterval` from its YAML data (a list of spec mappings)."""
    if not isinstance(specs, list):
        raise TimeIntervalError("expected a list of time interval specs")
    return TimeInterval(name, tuple(_with_index(i, spec) for i, spec in enumerate(specs)))


def _with_index(i: int, spec: Any) -> TimeSpec:
    try:
        return parse_spec(spec)
    except TimeIntervalError as e:
        raise TimeIntervalError(e.message, (i, *e.path)) from None


def parse_spec(spec: Any) -> TimeSpec:
    """One spec mapping (``times``, ``weekdays``, ...) as a :class:`TimeSpec`."""
    if spec is None:
        return TimeSpec()
    if not isinstance(spec, Mapping):
        raise TimeIntervalError("expected a mapping with times, weekdays, days_of_month, "
                                "months, years or location")
    for key in spec:
        if key not in FIELDS:
            raise TimeIntervalError(f"unknown field {key!r}; allowed: {', '.join(FIELDS)}",
                                    (key,))
    location = spec.get("location", "UTC")
    if not isinstance(location, str):
        raise TimeIntervalError("expected an IANA time zone name such as Europe/Berlin",
                                ("location",))
    try:
        _zone(location)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimeIntervalError(f"unknown time zone {location!r}; use an IANA name such as "
                                "Europe/Berlin, UTC or Local", ("location",)) from None
    return TimeSpec(
        times=tuple(_time_range(t, ("times", i)) for i, t in enumerate(_list(spec, "times"))),
        weekdays=_ranges(spec, "weekdays", _weekday, wrap_check=True),
        days_of_month=_ranges(spec, "days_of_month", _day_of_month, wrap_check=False),
        months=_ranges(spec, "months", _month, wrap_check=True),
        years=_ranges(spec, "years", _year, wrap_check=True),
        location=location,
    )


def _list(spec: Mapping[str, Any], key: str) -> list[Any]:
    value = spec.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TimeIntervalError(f"expected a list for {key}", (key,))
    return value


def _time_range(item: Any, path: Path) -> tuple[int, int]:
    if not isinstance(item, Mapping) or set(item) != {"start_time", "end_time"}:
        raise TimeIntervalError("expected {start_time: 'HH:MM', end_time: 'HH:MM'}", path)
    start = _minutes(item["start_time"], (*path, "start_time"))
    end = _minutes(item["end_time"], (*path, "end_time"))
    if start == end:
        raise TimeIntervalError("start_time and end_time are equal: the range is empty",
                                (*path, "end_time"))
    if start == 24 * 60:
        raise TimeIntervalError("start_time cannot be 24:00", (*path, "start_time"))
    return start, end


def _minutes(value: Any, path: Path) -> int:
    m = _TIME.match(value) if isinstance(value, str) else None
    if m is None or (m.group(1) == "24" and m.group(2) != "00"):
        raise TimeIntervalError(f"expected a time HH:MM between 00:00 and 24:00, got {value!r}",
                                path)
    return int(m.group(1)) * 60 + int(m.group(2))


def _ranges(spec: Mapping[str, Any], key: str, parse: Any, *,
            wrap_check: bool) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, item in enumerate(_list(spec, key)):
        path: Path = (key, i)
        text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
        if not isinstance(text, str) or not text.strip():
            raise TimeIntervalError(f"expected a {key} entry as text, such as "
                                    f"{_EXAMPLES[key]}", path)
        lo_text, sep, hi_text = text.strip().partition(":")
        lo = parse(lo_text.strip(), path)
        hi = parse(hi_text.strip(), path) if sep else lo
        if wrap_check and lo > hi:
            raise TimeIntervalError(f"range {text!r} starts after it ends; list two ranges "
                                    "instead", path)
        if not wrap_check and (lo > 0) == (hi > 0) and lo > hi:
            raise TimeIntervalError(f"range {text!r} starts after it ends", path)
        if not wrap_check and lo < 0 < hi:
            raise TimeIntervalError(f"range {text!r} mixes a day from the end with a day "
                                    "from the start", path)
        out.append((lo, hi))
    return tuple(out)


_EXAMPLES = {"weekdays": "monday:friday", "days_of_month": "1:7 or -1",
             "months": "january:march", "years": "2026:2027"}


def _weekday(text: str, path: Path) -> int:
    name = text.lower()
    if name not in WEEKDAYS:
        raise TimeIntervalError(f"unknown weekday {text!r}; use monday ... sunday", path)
    return WEEKDAYS.index(name)


def _month(text: str, path: Path) -> int:
    name = text.lower()
    if name in MONTHS:
        return MONTHS.index(name) + 1
    if name.isdigit() and 1 <= int(name) <= 12:
        return int(name)
    raise TimeIntervalError(f"unknown month {text!r}; use january ... december or 1 ... 12",
                            path)


def _day_of_month(text: str, path: Path) -> int:
    try:
        day = int(text)
    except ValueError:
        day = 0
    if day == 0 or not -31 <= day <= 31:
        raise TimeIntervalError(f"expected a day of the month 1 ... 31 or -31 ... -1, got "
                                f"{text!r}", path)
    return day


def _year(text: str, path: Path) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 9999:
        raise TimeIntervalError(f"expected a year such as 2026, got {text!r}", path)
    return int(text)


def _in(ranges: Sequence[tuple[int, int]], value: int) -> bool:
    return any(lo <= value <= hi for lo, hi in ranges)


def _day_in(lo: int, hi: int, day: int, length: int) -> bool:
    """Whether ``day`` is in ``lo:hi`` of a month of ``length`` days, as Alertmanager reads it.

    Negative days count back from the end (-1 is the last day); a range that begins
    after the month's end does not match, and one that ends after it stops there.
    """
    begin = length + lo + 1 if lo < 0 else lo
    end = length + hi + 1 if hi < 0 else hi
    if begin > length:
        return False
    return max(begin, 1) <= day <= min(end, length)


def _zone(location: str) -> dt.tzinfo:
    if location == "Local":
        local = dt.datetime.now().astimezone().tzinfo
        return local if local is not None else dt.UTC
    return ZoneInfo(location)
