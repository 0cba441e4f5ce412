from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitoring.notify.timeintervals import TimeIntervalError, parse_time_interval


def ms(text: str, zone: str = "UTC") -> int:
    """Epoch ms of a local wall-clock time such as '2026-01-02 17:30'."""
    local = dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo(zone))
    return int(local.timestamp() * 1000)


def interval(*specs: dict[str, Any]) -> Any:
    return parse_time_interval("t", list(specs))


def test_business_hours_weekday_range() -> None:
    ti = interval({"times": [{"start_time": "09:00", "end_time": "17:00"}],
                   "weekdays": ["monday:friday"]})
    assert ti.contains(ms("2026-01-02 09:00"))  # Friday, start included
    assert ti.contains(ms("2026-01-02 16:59"))
    assert not ti.contains(ms("2026-01-02 17:00"))  # end excluded
    assert not ti.contains(ms("2026-01-02 08:59"))
    assert not ti.contains(ms("2026-01-03 12:00"))  # Saturday
    assert ti.contains(ms("2026-01-05 12:00"))  # Monday


def test_single_weekdays_and_sunday_is_day_zero() -> None:
    ti = interval({"weekdays": ["saturday", "sunday"]})
    assert ti.contains(ms("2026-01-03 00:00")) and ti.contains(ms("2026-01-04 23:59"))
    assert not ti.contains(ms("2026-01-05 00:00"))


def test_overnight_range_belongs_to_the_day_it_starts() -> None:
    ti = interval({"times": [{"start_time": "22:00", "end_time": "06:00"}],
                   "weekdays": ["friday"]})
    assert ti.contains(ms("2026-01-02 22:00"))  # Friday night
    assert ti.contains(ms("2026-01-03 05:59"))  # Saturday morning, still Friday's night
    assert not ti.contains(ms("2026-01-03 06:00"))
    assert not ti.contains(ms("2026-01-03 22:30"))  # Saturday night
    assert not ti.contains(ms("2026-01-02 05:00"))  # Friday morning is Thursday's night


def test_end_time_24_00() -> None:
    ti = interval({"times": [{"start_time": "20:00", "end_time": "24:00"}]})
    assert ti.contains(ms("2026-01-02 23:59"))
    assert not ti.contains(ms("2026-01-03 00:00"))


def test_negative_days_of_month() -> None:
    last_three = interval({"days_of_month": ["-3:-1"]})
    assert last_three.contains(ms("2026-02-26 10:00"))  # February 2026 has 28 days
    assert not last_three.contains(ms("2026-02-25 10:00"))
    assert last_three.contains(ms("2026-01-29 10:00"))  # January has 31
    assert not last_three.contains(ms("2026-01-28 10:00"))
    last = interval({"days_of_month": [-1]})
    assert last.contains(ms("2026-04-30 00:00")) and not last.contains(ms("2026-04-29 00:00"))


def test_days_beyond_the_month_are_skipped_or_clamped() -> None:
    thirty_first = interval({"days_of_month": ["31"]})
    assert not thirty_first.contains(ms("2026-04-30 12:00"))  # April has no 31st
    assert thirty_first.contains(ms("2026-05-31 12:00"))
    from_29 = interval({"days_of_month": ["29:31"]})
    assert not from_29.contains(ms("2026-02-28 12:00"))
    assert from_29.contains(ms("2026-03-30 12:00"))


def test_months_and_years() -> None:
    ti = interval({"months": ["december", "1:2"], "years": ["2026:2027"]})
    assert ti.contains(ms("2026-01-15 00:00"))
    assert ti.contains(ms("2026-12-15 00:00"))
    assert not ti.contains(ms("2026-03-01 00:00"))
    assert not ti.contains(ms("2028-01-15 00:00"))


def test_location_reads_fields_in_that_zone() -> None:
    ti = interval({"times": [{"start_time": "09:00", "end_time": "17:00"}],
                   "location": "Asia/Tokyo"})
    assert ti.contains(ms("2026-01-02 09:00", "Asia/Tokyo"))  # 00:00 UTC
    assert not ti.contains(ms("2026-01-02 09:00"))  # 18:00 in Tokyo
    berlin = interval({"times": [{"start_time": "09:00", "end_time": "10:00"}],
                       "location": "Europe/Berlin"})
    assert berlin.contains(ms("2026-07-01 07:30"))  # summer time: UTC+2
    assert berlin.contains(ms("2026-01-01 08:30"))  # winter: UTC+1


def test_any_spec_matches() -> None:
    ti = interval({"weekdays": ["monday"]}, {"days_of_month": ["1"]})
    assert ti.contains(ms("2026-01-01 12:00")) and ti.contains(ms("2026-01-05 12:00"))
    assert not ti.contains(ms("2026-01-06 12:00"))


@pytest.mark.parametrize(("spec", "path", "message"), [
    ({"weekdays": ["friday:monday"]}, (0, "weekdays", 0),
     "range 'friday:monday' starts after it ends; list two ranges instead"),
    ({"weekdays": ["funday"]}, (0, "weekdays", 0),
     "unknown weekday 'funday'; use monday ... sunday"),
    ({"times": [{"start_time": "9:00", "end_time": "25:00"}]}, (0, "times", 0, "end_time"),
     "expected a time HH:MM between 00:00 and 24:00, got '25:00'"),
    ({"times": [{"start_time": "10:00", "end_time": "10:00"}]}, (0, "times", 0, "end_time"),
     "start_time and end_time are equal: the range is empty"),
    ({"days_of_month": ["0"]}, (0, "days_of_month", 0),
     "expected a day of the month 1 ... 31 or -31 ... -1, got '0'"),
    ({"days_of_month": ["-5:3"]}, (0, "days_of_month", 0),
     "range '-5:3' mixes a day from the end with a day from the start"),
    ({"months": ["smarch"]}, (0, "months", 0),
     "unknown month 'smarch'; use january ... december or 1 ... 12"),
    ({"location": "Mars/Olympus"}, (0, "location"),
     "unknown time zone 'Mars/Olympus'; use an IANA name such as Europe/Berlin, UTC or Local"),
    ({"hours": []}, (0, "hours"),
     "unknown field 'hours'; allowed: times, weekdays, days_of_month, months, years, location"),
])
def test_errors_name_the_field(spec: dict[str, Any], path: tuple[Any, ...],
                               message: str) -> None:
    with pytest.raises(TimeIntervalError) as info:
        interval(spec)
    assert info.value.path == path
    assert info.value.message == message
