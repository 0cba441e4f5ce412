"""Export the store as OpenMetrics text that ``promtool tsdb create-blocks-from openmetrics`` reads.

That is the supported way to backfill a Prometheus server, so an export is
what lets a real Prometheus answer the same queries as our evaluator (the
tests compare the two). What promtool needs, and what this module does:

* The text ends with ``# EOF``.
* Timestamps are float seconds. Prometheus converts them back with
  ``int64(seconds * 1000)``, which truncates: for some millisecond times
  (``1001`` is one; they are common below about 10^6 ms) the nearest double
  of ``t / 1000`` times 1000 lands just below ``t``. For those the next
  double away from zero is written instead, so every
  millisecond survives the round trip exactly (for times within about
  ±2^49 ms, some 17,800 years either side of 1970; beyond that a double of
  seconds cannot hold every millisecond).
* Samples are grouped by series and in time order within a series (promtool
  fails on out-of-order samples); series come in store order.
* Values are Go floats: ``NaN``, ``+Inf``, ``-Inf``, or Python's shortest
  round-trip repr, which Go parses to the same double.

What cannot be written:

* Staleness markers: OpenMetrics has no way to say "stale" (a ``NaN`` there is
  an ordinary NaN sample, which would change query results), so they are left
  out and counted in :attr:`ExportReport.stale_dropped`. Prometheus marks
  series stale by itself after the lookback window.
* Series without ``__name__`` or with a name or label name that the text
  format cannot carry: left out and counted in :attr:`ExportReport.skipped_series`.

No ``# TYPE`` lines are written: the store does not keep metric types, and
an untyped family is valid OpenMetrics (promtool stores the samples the same).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from monitoring.engine.model import (
    METRIC_NAME,
    Labels,
    Matcher,
    Series,
    TimeArray,
    ValueArray,
    stale_mask,
)
from monitoring.engine.store import Store

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_SPECIAL = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}


@dataclass
class ExportReport:
    """What an export wrote and what it had to leave out."""

    series: int = 0
    samples: int = 0
    stale_dropped: int = 0
    skipped_series: int = 0


def export_openmetrics(store: Store, out: TextIO,
                       selectors: Sequence[Sequence[Matcher]] = ((),),
                       mint_ms: int | None = None, maxt_ms: int | None = None) -> ExportReport:
    """Write the series matching any selector (all by default) as OpenMetrics to ``out``.

    ``selectors`` is a list of matcher lists; the time bounds are inclusive
    epoch ms, ``None`` for unbounded.
    """
    return write_series(store.iter_series(selectors, mint_ms, maxt_ms), out)


def export_to_file(store: Store, path: str | Path,
                   selectors: Sequence[Sequence[Matcher]] = ((),),
                   mint_ms: int | None = None, maxt_ms: int | None = None) -> ExportReport:
    """:func:`export_openmetrics` into a file (written whole or, on error, not kept)."""
    target = Path(path)
    partial = target.with_name(target.name + ".partial")
    try:
        with open(partial, "w", encoding="utf-8", newline="\n") as out:
            report = export_openmetrics(store, out, selectors, mint_ms, maxt_ms)
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    return report


def write_series(series: Iterable[Series], out: TextIO) -> ExportReport:
    """Series as OpenMetrics sample lines, then ``# EOF``."""
    report = ExportReport()
    for s in series:
        head = series_text(s.labels)
        if head is None:
            report.skipped_series += 1
            continue
        stale = stale_mask(s.values)
        kept = ~stale
        report.stale_dropped += int(stale.sum())
        count = int(kept.sum())
        if not count:
            continue
        report.series += 1
        report.samples += count
        out.write(sample_lines(head, s.ts[kept], s.values[kept]))
    out.write("# EOF\n")
    return report


def series_text(labels: Labels) -> str | None:
    """``name{a="b",...}``, or ``None`` when the text format cannot carry the label set."""
    name = None
    parts = []
    for key, value in labels:
        if key == METRIC_NAME:
            name = value
        elif _LABEL_NAME.match(key):
            parts.append(f'{key}="{escape(value)}"')
        else:
            return None
    if name is None or not _METRIC_NAME.match(name):
        return None
    return name + ("{" + ",".join(parts) + "}" if parts else "")


def escape(value: str) -> str:
    """A label value escaped for the text formats."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def sample_lines(head: str, ts: TimeArray, values: ValueArray) -> str:
    """The lines of one series' samples."""
    times = seconds_text(ts)
    vals = [_SPECIAL.get(v, v) for v in map(repr, values.tolist())]
    return "".join([f"{head} {v} {t}\n" for v, t in zip(vals, times, strict=True)])


def seconds_text(ts: TimeArray) -> list[str]:
    """Times in ms as seconds that Prometheus reads back to the same ms (see above)."""
    seconds = ts / 1000.0
    wrong = np.trunc(seconds * 1000.0) != ts
    if wrong.any():
        away = np.where(ts >= 0, np.inf, -np.inf)
        seconds = np.where(wrong, np.nextafter(seconds, away), seconds)
    return [repr(x) for x in seconds.tolist()]
