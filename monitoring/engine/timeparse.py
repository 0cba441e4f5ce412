"""Times and durations typed by users on the command line and in the API.

Accepted times: RFC 3339 (``2026-11-26T12:00:00Z``), Unix seconds (``1764158400``
or with a fraction), ``now``, and ``now`` minus a duration (``now-1h``). Durations
use the rule language's syntax (``5m``, ``1h30m``) or plain seconds (``60``).
"""

from __future__ import annotations

import datetime as dt
import re
import time

from monitoring.dsl.lexical import LexicalError, parse_duration

_RELATIVE = re.compile(r"now\s*-\s*(\S+)\Z")


class TimeFormatError(ValueError):
    """A time or duration that cannot be read; the message says what is accepted."""


def parse_time_ms(text: str, now_ms: int | None = None) -> int:
    """Epoch milliseconds for a user-typed time."""
    text = text.strip()
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - parse_duration_ms(m.group(1))
    try:
        return round(float(text) * 1000)
    except ValueError:
        pass
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TimeFormatError(
            f"invalid time {text!r}: expected RFC 3339 (2026-01-02T15:04:05Z), Unix seconds, "
            "'now' or 'now-1h'") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return round(stamp.timestamp() * 1000)


def parse_duration_ms(text: str) -> int:
    """Milliseconds for a duration (``5m``) or a number of seconds (``300``)."""
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            return parse_duration(text).ms
        except LexicalError:
            raise TimeFormatError(
                f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m or seconds") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise TimeFormatError(f"invalid duration {text!r}: not a finite number of seconds")
    return round(seconds * 1000)


def format_time(ms: int) -> str:
    """RFC 3339 in UTC, with milliseconds only when there are some."""
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    text = stamp.isoformat(timespec="milliseconds" if ms % 1000 else "seconds")
    return text.replace("+00:00", "Z")
