"""Prometheus's ``model.Duration``: parsing and printing as promtool does.

Test files use it for ``eval_time``, ``interval`` and ``evaluation_interval``;
failure messages print it back (``time: 4m59s``, ``time: 1d``). It differs from
our DSL's durations in two ways: a bare ``0`` is valid, and units must come
largest first, each at most once.
"""

from __future__ import annotations

import re

_UNITS: tuple[tuple[str, int], ...] = (
    ("y", 365 * 86_400_000), ("w", 7 * 86_400_000), ("d", 86_400_000), ("h", 3_600_000),
    ("m", 60_000), ("s", 1_000), ("ms", 1),
)
_PATTERN = re.compile(
    r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?")


def parse_model_duration(text: str) -> int:
    """Milliseconds of ``text`` (``1h30m``, ``0``); ValueError says what is wrong."""
    text = text.strip()
    if text == "0":
        return 0
    m = _PATTERN.fullmatch(text)
    if not text or m is None or not any(m.groups()):
        raise ValueError(f"not a valid duration string: {text!r}")
    return sum(int(g) * unit for g, (_, unit) in zip(m.groups(), _UNITS, strict=True) if g)


def format_model_duration(ms: int) -> str:
    """``model.Duration.String()``: ``0s``, ``5m``, ``1d``, ``2m59s999ms``."""
    if ms == 0:
        return "0s"
    out = []
    for name, unit in _UNITS:
        if ms >= unit:
            out.append(f"{ms // unit}{name}")
            ms %= unit
    return "".join(out)


def format_go_duration(ms: int) -> str:
    """``time.Duration.String()`` of whole ms: ``0s``, ``1m0s``, ``1h0m0s``, ``1.5s``."""
    if ms == 0:
        return "0s"
    sign = "-" if ms < 0 else ""
    ms = abs(ms)
    if ms < 1000:
        return f"{sign}{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest // 1000}" + (f".{rest % 1000:03d}".rstrip("0") if rest % 1000 else "")
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}s"
    if minutes:
        return f"{sign}{minutes}m{seconds}s"
    return f"{sign}{seconds}s"
