r"""Import metric history: Prometheus text, OpenMetrics text, CSV and Parquet files.

Parsers yield samples ``(labels, ts_ms, value)`` and :class:`IngestError` values
for bad rows, in file order, and never stop at the first problem: an import
reports every bad row (up to a limit) in one run, with 1-based line numbers
(and columns where a position in the line means something).

:func:`import_files` feeds the samples of several files to a
:class:`~monitoring.engine.store.Store` in one transaction. If any row is bad
the transaction is rolled back and the store is as it was, unless
``skip_bad=True``, which imports the good rows and still reports the bad ones.

Formats
-------
Prometheus text (0.0.4) and OpenMetrics text
    ``# HELP``, ``# TYPE`` (checked against the format's list of types),
    ``# UNIT`` and other comments are read and dropped; sample lines are
    ``name{label="value",...} value [timestamp]`` with the escapes ``\\``,
    ``\"`` and ``\n`` in label values (other backslash sequences are kept, as
    Prometheus does). Values are Go floats, including ``NaN``, ``+Inf`` and
    ``-Inf``. Counters' ``_total`` and histograms' ``_bucket{le=...}``,
    ``_sum`` and ``_count`` are ordinary series. Timestamps are integer
    milliseconds in Prometheus text and float seconds in OpenMetrics (converted
    as Prometheus does: ``int64(seconds * 1000)``). A file is OpenMetrics when
    it ends with ``# EOF``, is named ``*.om`` / ``*.openmetrics``, or the format
    is given; an OpenMetrics file must end with ``# EOF`` and hold nothing after
    it. Exemplars (``# {...} value [ts]`` after a sample, OpenMetrics only) are
    checked and dropped.

    OpenMetrics is read exactly as strictly as Prometheus's parser reads it
    (single spaces, no blank lines, no other comments, ``# UNIT`` a suffix of
    the name, exemplars only on ``_total``/``_bucket``), so that what imports
    here also backfills into Prometheus. Prometheus text is read as
    leniently as Prometheus scrapes it (free blanks, comments, blank lines).

    A sample without a timestamp is rejected, as ``promtool tsdb
    create-blocks-from openmetrics`` rejects it: stamping it with the time of
    the import would make the history depend on when it was loaded. Pass
    ``default_ts_ms`` (``--default-time`` on the command line) to stamp such
    samples explicitly, e.g. for a saved scrape of ``/metrics``.

CSV
    A header row is required. Columns: ``timestamp``, ``metric`` and ``value``
    (required, any order), an optional ``labels`` column in selector syntax
    (``{job="api",instance="a:9100"}``), and any other column is a label of
    that name (an empty cell means the label is absent). Timestamps are epoch
    seconds (integer or decimal), epoch milliseconds (integers whose magnitude
    is at least 1e11), or RFC 3339 with a time zone
    (``2024-05-01T12:00:00.250Z``). Values as in the text formats.

Parquet
    The same columns, read with DuckDB's built-in Parquet reader. Timestamp
    columns may also be Parquet timestamps (without a zone they are taken as
    UTC); ``labels`` may also be a map of strings. The "line" of an error is the
    1-based row number.
"""

from __future__ import annotations

import csv
import io
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Literal

import duckdb
from sqlglot import exp

from monitoring.engine.model import METRIC_NAME, Labels
from monitoring.engine.store import Store

Sample = tuple[Labels, int, float]
"""One sample: labels, epoch milliseconds, value."""

Format = Literal["prometheus", "openmetrics", "csv", "parquet"]
FORMATS: tuple[str, ...] = ("prometheus", "openmetrics", "csv", "parquet")

Progress = Callable[[int], None]
"""Called with the number of bytes read since the previous call."""

MAX_ERRORS = 100
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_MS_THRESHOLD = 10**11
"""Integer epoch timestamps at least this large (in magnitude) are milliseconds."""


@dataclass(frozen=True, slots=True)
class IngestError:
    """A bad row: file, 1-based line (row for Parquet), message, 1-based column if any."""

    file: str
    line: int
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" + (f":{self.column}" if self.column else "")
        return f"{where}: error: {self.message}"


class _Bad(Exception):
    """A problem in one line, at a column (0-based offset) if known."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# ---------------------------------------------------------------- numbers and times


def parse_value(token: str) -> float:
    """A sample value as Prometheus reads it (Go's ParseFloat, no ``_``/hex floats).

    Python's ``float`` accepts a few spellings Go does not (a signed ``NaN``)
    and turns overflow into infinity where Go reports an error: both are
    rejected here, so a file is accepted exactly when Prometheus accepts it.
    """
    if not token.isascii() or "_" in token or "p" in token or "P" in token:
        raise ValueError(f"invalid value {token!r}")
    try:
        value = float(token)
    except ValueError:
        raise ValueError(f"invalid value {token!r}") from None
    if math.isnan(value) and token[0] in "+-":
        raise ValueError(f"invalid value {token!r}")
    if math.isinf(value) and token.lstrip("+-").lower() not in ("inf", "infinity"):
        raise ValueError(f"value out of range: {token!r}")
    return value


_INT = re.compile(r"[+-]?[0-9]+\Z")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_rfc3339(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 time (digits below a millisecond are dropped)."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"invalid time {text!r}: expected RFC 3339 such as "
                         "2024-05-01T12:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    if zone in ("Z", "z"):
        tz = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        when = datetime(year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as e:
        raise ValueError(f"invalid time {text!r}: {e}") from None
    ms = (when - _EPOCH) // timedelta(milliseconds=1)
    return ms + int((frac + "000")[:3])


def seconds_to_ms(text: str) -> int:
    """Exact epoch milliseconds of decimal seconds (sub-millisecond digits dropped)."""
    try:
        ms = Decimal(text) * 1000
    except InvalidOperation:
        raise ValueError(f"invalid time {text!r}") from None
    if not ms.is_finite():
        raise ValueError(f"invalid time {text!r}")
    return _checked_ms(int(ms))


def parse_epoch_or_rfc3339(text: str) -> int:
    """A CSV timestamp: epoch seconds, epoch ms (integers >= 1e11) or RFC 3339."""
    text = text.strip()
    if _INT.match(text):
        n = int(text)
        return _checked_ms(n if abs(n) >= _MS_THRESHOLD else n * 1000)
    if _DECIMAL.match(text):
        return seconds_to_ms(text)
    return parse_rfc3339(text)


def _checked_ms(ms: int) -> int:
    if not INT64_MIN <= ms <= INT64_MAX:
        raise ValueError("timestamp out of range")
    return ms


def _openmetrics_ts(token: str) -> int:
    seconds = parse_value(token)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid timestamp {token!r}")
    ms = seconds * 1000
    if not -9.2e18 < ms < 9.2e18:
        raise ValueError(f"timestamp out of range: {token!r}")
    return math.trunc(ms)  # Prometheus: int64(ts * 1000)


def _prometheus_ts(token: str) -> int:
    if not _INT.match(token):
        raise ValueError(f"invalid timestamp {token!r}: expected integer milliseconds")
    return _checked_ms(int(token))


# ---------------------------------------------------------------- labels


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_VALUE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.DOTALL)
_BLANK = re.compile(r"[ \t]*")
_NO_BLANK = re.compile(r"")
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


def unescape(raw: str) -> str:
    r"""A label value with ``\\``, ``\"`` and ``\n`` decoded (others kept as written)."""
    if "\\" not in raw:
        return raw
    return _UNESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw)


def parse_label_block(text: str, pos: int, strict: bool = False
                      ) -> tuple[list[tuple[str, str]], int]:
    """Labels ``{a="b",...}`` starting at ``text[pos] == "{"``; returns them and the end.

    ``strict`` is OpenMetrics: no blanks anywhere and no comma before ``}``
    (Prometheus text allows both). Raises :class:`_Bad` with the offset of the
    problem.
    """
    pairs: list[tuple[str, str]] = []
    pos += 1
    blank = _NO_BLANK if strict else _BLANK
    first = True
    while True:
        pos = _skip(blank, text, pos)
        if pos < len(text) and text[pos] == "}" and (first or not strict):
            return pairs, pos + 1
        name = _LABEL_NAME.match(text, pos)
        if name is None:
            raise _Bad("expected a label name" + (" or '}'" if first or not strict else ""),
                       pos)
        pos = _skip(blank, text, name.end())
        if pos >= len(text) or text[pos] != "=":
            raise _Bad(f"expected '=' after label name {name.group()!r}", pos)
        pos = _skip(blank, text, pos + 1)
        value = _LABEL_VALUE.match(text, pos)
        if value is None:
            what = "unterminated label value" if text.startswith('"', pos) else (
                "expected a quoted label value")
            raise _Bad(what, pos)
        pairs.append((name.group(), unescape(value.group(1))))
        pos = _skip(blank, text, value.end())
        first = False
        if pos < len(text) and text[pos] == ",":
            pos += 1
        elif pos < len(text) and text[pos] == "}":
            return pairs, pos + 1
        else:
            raise _Bad("expected ',' or '}' after a label value", pos)


def _skip(blank: re.Pattern[str], text: str, pos: int) -> int:
    m = blank.match(text, pos)
    return m.end() if m else pos


def make_labels(name: str | None, pairs: Iterable[tuple[str, str]]) -> Labels:
    """A sorted label set; a repeated label name is an error; empty values are dropped."""
    seen: dict[str, str] = {} if name is None else {METRIC_NAME: name}
    for k, v in pairs:
        if k in seen:
            raise _Bad(f"duplicate label name {k!r}")
        seen[k] = v
    return tuple(sorted((k, v) for k, v in seen.items() if v != ""))


# ---------------------------------------------------------------- reading files


class _CountingReader(io.RawIOBase):
    """A binary file that reports how many bytes were read (for progress bars)."""

    def __init__(self, raw: IO[bytes], progress: Progress | None) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n and self._progress is not None:
            self._progress(n)
        return int(n or 0)


def _lines(path: Path, progress: Progress | None, keep_cr: bool = False
           ) -> Iterator[tuple[int, str | IngestError]]:
    """(line number, text without the line break) for each line; bad UTF-8 is an error.

    A carriage return before the line feed is dropped unless ``keep_cr``
    (OpenMetrics lines end with a line feed alone, so there it is an error).
    """
    with open(path, "rb") as raw:
        reader = io.BufferedReader(_CountingReader(raw, progress), 1 << 20)
        for number, line in enumerate(reader, 1):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                yield number, IngestError(str(path), number, "invalid UTF-8", e.start + 1)
                continue
            text = text.removesuffix("\n")
            yield number, text if keep_cr else text.removesuffix("\r")


# ---------------------------------------------------------------- text exposition formats

_PROMETHEUS_TYPES = frozenset({"counter", "gauge", "histogram", "summary", "untyped"})
_OPENMETRICS_TYPES = frozenset({"counter", "gauge", "histogram", "gaugehistogram", "summary",
                                "info", "stateset", "unknown"})
_FAST_LINE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"{}\\]|"(?:[^"\\]|\\.)*")*\})?)'
    r"[ \t]+([^ \t#]+)(?:[ \t]+([^ \t#]+))?[ \t]*\Z", re.DOTALL)
_FAST_OM_LINE = re.compile(
    r'([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"{}\\ \t]|"(?:[^"\\]|\\.)*")*\})?)'
    r" ([^ \t#]+)(?: ([^ \t#]+))?\Z", re.DOTALL)
_OM_FIELD = re.compile(r" ([^ \t#][^ \t]*)")
_OM_COMMENT = re.compile(r"# (HELP|TYPE|UNIT)")
_OM_COMMENT_BODY = re.compile(r" ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?\Z", re.DOTALL)
_EXEMPLAR_SUFFIXES = ("_total", "_bucket")
_TOKEN = re.compile(r"[^ \t]+")
_SERIES_CACHE_LIMIT = 200_000


class ExpositionParser:
    """Prometheus text / OpenMetrics text, line by line (see the module docstring).

    OpenMetrics is read as strictly as Prometheus's own parser (the one
    ``promtool tsdb create-blocks-from openmetrics`` uses): single spaces
    between fields, no blank lines, only ``# HELP``/``# TYPE``/``# UNIT``/``# EOF``
    comments, exemplars only on ``_total`` and ``_bucket`` series. A file that
    imports here then also backfills into Prometheus, and the other way round.
    Prometheus text is read as leniently as Prometheus scrapes it.
    """

    def __init__(self, file: str, openmetrics: bool, default_ts_ms: int | None = None) -> None:
        self.file = file
        self.openmetrics = openmetrics
        self.default_ts_ms = default_ts_ms
        self.seen_eof = False
        self._series: dict[str, Labels] = {}
        self._types = _OPENMETRICS_TYPES if openmetrics else _PROMETHEUS_TYPES

    def parse(self, lines: Iterable[tuple[int, str | IngestError]]
              ) -> Iterator[Sample | IngestError]:
        """Samples and errors of every line, then an error if ``# EOF`` is missing."""
        last = 0
        for number, text in lines:
            last = number
            if isinstance(text, IngestError):
                yield text
                continue
            item = self.line(text, number)
            if item is not None:
                yield item
        if self.openmetrics and not self.seen_eof:
            yield IngestError(self.file, max(last, 1), "OpenMetrics data must end with '# EOF'")

    def line(self, text: str, number: int) -> Sample | IngestError | None:
        """One line: a sample, an error, or ``None`` (comments, blank lines)."""
        try:
            if self.openmetrics:
                return self._openmetrics_line(text)
            if not text or text.isspace():
                return None
            if text.startswith("#"):
                self._comment(text)
                return None
            return self._sample(text)
        except _Bad as e:
            col = e.offset + 1 if e.offset is not None else None
            return IngestError(self.file, number, e.message, col)

    # ------------------------------------------------------------ OpenMetrics

    def _openmetrics_line(self, text: str) -> Sample | None:
        if self.seen_eof:
            raise _Bad("unexpected content after '# EOF' (it must be the last line)", 0)
        if text.endswith("\r"):
            raise _Bad("carriage return at the end of the line (OpenMetrics lines end with "
                       "a line feed alone)", len(text) - 1)
        if not text:
            raise _Bad("blank line (OpenMetrics does not allow empty lines)")
        if text.startswith("#"):
            self._openmetrics_comment(text)
            return None
        return self._openmetrics_sample(text)

    def _openmetrics_comment(self, text: str) -> None:
        if text == "# EOF":
            self.seen_eof = True
            return
        m = _OM_COMMENT.match(text)
        if m is None:
            raise _Bad("expected '# HELP', '# TYPE', '# UNIT' or '# EOF' (OpenMetrics has no "
                       "other comments)", 0)
        keyword = m.group(1)
        m = _OM_COMMENT_BODY.match(text, m.end())
        if m is None:
            raise _Bad(f"expected one space and a metric name after # {keyword}", 6)
        name, rest = m.group(1), m.group(2)
        if rest is None:
            raise _Bad(f"expected one space and text after # {keyword} {name}", m.end(1))
        if keyword == "TYPE" and rest not in self._types:
            raise _Bad(f"invalid metric type {rest!r} (expected one of "
                       f"{', '.join(sorted(self._types))})", m.start(2))
        if keyword == "UNIT" and rest and not name.endswith("_" + rest):
            raise _Bad(f"unit {rest!r} is not a suffix of metric {name!r} (a metric with "
                       f"unit {rest} is named like {name}_{rest})", m.start(2))

    def _openmetrics_sample(self, text: str) -> Sample:
        m = _FAST_OM_LINE.match(text)
        if m is not None:
            labels = self._labels(m.group(1))
            return labels, self._timestamp(m.group(3), m.start(3)), self._value(m.group(2),
                                                                                m.start(2))
        name = _METRIC_NAME.match(text)
        if name is None:
            raise _Bad("expected a metric name, '# HELP', '# TYPE', '# UNIT' or '# EOF'", 0)
        end = name.end()
        if end < len(text) and text[end] == "{":
            _pairs, end = parse_label_block(text, end, strict=True)
        labels = self._labels(text[:end])
        field = _OM_FIELD.match(text, end)
        if field is None:
            raise _Bad("expected one space and a value after the series", end)
        value, vpos = field.group(1), field.start(1)
        pos = field.end()
        ts_token: str | None = None
        ts_pos = 0
        field = _OM_FIELD.match(text, pos)
        if field is not None:
            ts_token, ts_pos, pos = field.group(1), field.start(1), field.end()
        if pos < len(text):
            if not text.startswith(" # {", pos):
                raise _Bad("expected the end of the line or ' # {' and an exemplar", pos)
            if not name.group().endswith(_EXEMPLAR_SUFFIXES):
                raise _Bad(f"metric {name.group()!r} cannot have exemplars (only _total and "
                           "_bucket series can)", pos + 1)
            self._openmetrics_exemplar(text, pos + 3)
        return labels, self._timestamp(ts_token, ts_pos), self._value(value, vpos)

    def _openmetrics_exemplar(self, text: str, pos: int) -> None:
        """Check an exemplar (labels, value, optional timestamp) starting at ``{``."""
        _pairs, end = parse_label_block(text, pos, strict=True)
        field = _OM_FIELD.match(text, end)
        if field is None:
            raise _Bad("expected one space and a value after the exemplar labels", end)
        self._value(field.group(1), field.start(1))
        pos = field.end()
        field = _OM_FIELD.match(text, pos)
        if field is not None:
            self._timestamp(field.group(1), field.start(1))
            pos = field.end()
        if pos < len(text):
            raise _Bad("unexpected text after the exemplar", pos)

    # ------------------------------------------------------------ Prometheus text

    def _comment(self, text: str) -> None:
        parts = text.split(None, 3)
        if len(parts) < 2 or parts[1] not in ("HELP", "TYPE"):
            return  # an ordinary comment
        if len(parts) < 3 or not _METRIC_NAME.fullmatch(parts[2]):
            raise _Bad(f"expected a metric name after # {parts[1]}", len(parts[0]) + 1)
        if parts[1] == "TYPE":
            kind = parts[3].strip() if len(parts) > 3 else ""
            if kind not in self._types:
                raise _Bad(f"invalid metric type {kind!r} (expected one of "
                           f"{', '.join(sorted(self._types))})",
                           text.rfind(kind) if kind else len(text))

    def _sample(self, text: str) -> Sample:
        m = _FAST_LINE.match(text)
        if m is None:
            return self._slow_sample(text)
        labels = self._labels(m.group(1))
        return labels, self._timestamp(m.group(3), m.start(3)), self._value(m.group(2),
                                                                            m.start(2))

    def _slow_sample(self, text: str) -> Sample:
        """The general path, for exact error positions."""
        name = _METRIC_NAME.match(text)
        if name is None:
            raise _Bad("expected a metric name, a comment or a blank line", 0)
        end = name.end()
        if end < len(text) and text[end] == "{":
            _pairs, end = parse_label_block(text, end)
        labels = self._labels(text[:end])
        if end < len(text) and text[end] not in " \t":
            raise _Bad("expected a space after the series", end)
        tokens = [(t.group(), t.start()) for t in _TOKEN.finditer(text, end)]
        if not tokens:
            raise _Bad("expected a value after the series", end)
        if len(tokens) > 2:
            raise _Bad(f"unexpected {tokens[2][0]!r} after the sample (expected a value and "
                       "an optional timestamp)", tokens[2][1])
        (value, vpos) = tokens[0]
        ts_token, ts_pos = tokens[1] if len(tokens) == 2 else (None, 0)
        return labels, self._timestamp(ts_token, ts_pos), self._value(value, vpos)

    # ------------------------------------------------------------ shared

    def _labels(self, series: str) -> Labels:
        labels = self._series.get(series)
        if labels is None:
            labels = self._parse_series(series)
            if len(self._series) >= _SERIES_CACHE_LIMIT:
                self._series.clear()
            self._series[series] = labels
        return labels

    def _parse_series(self, series: str) -> Labels:
        name = _METRIC_NAME.match(series)
        if name is None:
            raise _Bad("expected a metric name", 0)
        if name.end() == len(series):
            return ((METRIC_NAME, series),)
        pairs, _end = parse_label_block(series, name.end(), strict=self.openmetrics)
        try:
            return make_labels(name.group(), pairs)
        except _Bad as e:
            raise _Bad(e.message, name.end()) from None

    def _value(self, token: str, pos: int) -> float:
        try:
            return parse_value(token)
        except ValueError as e:
            raise _Bad(str(e), pos) from None

    def _timestamp(self, token: str | None, pos: int) -> int:
        if token is None:
            if self.default_ts_ms is None:
                raise _Bad("sample has no timestamp (give --default-time to stamp such samples)")
            return self.default_ts_ms
        try:
            return _openmetrics_ts(token) if self.openmetrics else _prometheus_ts(token)
        except ValueError as e:
            raise _Bad(str(e), pos) from None


def parse_exposition(path: str | Path, openmetrics: bool, default_ts_ms: int | None = None,
                     progress: Progress | None = None) -> Iterator[Sample | IngestError]:
    """Samples and errors of a Prometheus text or OpenMetrics text file."""
    parser = ExpositionParser(str(path), openmetrics, default_ts_ms)
    yield from parser.parse(_lines(Path(path), progress, keep_cr=openmetrics))


# ---------------------------------------------------------------- tables (CSV, Parquet)

_REQUIRED = ("timestamp", "metric", "value")


@dataclass(frozen=True, slots=True)
class TableColumns:
    """Where each column of a CSV header or Parquet schema goes."""

    timestamp: int
    metric: int
    value: int
    labels: int | None
    label_columns: tuple[tuple[int, str], ...]

    @classmethod
    def from_header(cls, header: Sequence[str]) -> TableColumns:
        """Interpret a header; raises :class:`_Bad` (offset = column index)."""
        names = [h.strip() for h in header]
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise _Bad(f"column {n!r} appears twice", i)
        missing = [c for c in _REQUIRED if c not in names]
        if missing:
            raise _Bad("missing column" + ("s " if len(missing) > 1 else " ")
                       + ", ".join(repr(c) for c in missing)
                       + " (the header must name timestamp, metric and value)")
        extra: list[tuple[int, str]] = []
        for i, n in enumerate(names):
            if n in (*_REQUIRED, "labels"):
                continue
            if not _LABEL_NAME.fullmatch(n) or n == METRIC_NAME:
                raise _Bad(f"column {n!r} is not a valid label name", i)
            extra.append((i, n))
        return cls(names.index("timestamp"), names.index("metric"), names.index("value"),
                   names.index("labels") if "labels" in names else None, tuple(extra))


class RowDecoder:
    """One table row -> a sample; cells are strings (CSV) or typed values (Parquet)."""

    def __init__(self, columns: TableColumns, timestamps_in_ms: bool = False) -> None:
        self.columns = columns
        self.timestamps_in_ms = timestamps_in_ms
        self._width = 1 + max(columns.timestamp, columns.metric, columns.value,
                              columns.labels or 0, *(i for i, _ in columns.label_columns))
        self._label_cache: dict[Any, Labels] = {}

    def decode(self, row: Sequence[Any]) -> Sample:
        """Decode one row; raises :class:`_Bad` (offset = column index)."""
        c = self.columns
        if len(row) < self._width:
            raise _Bad(f"expected {self._width} fields, found {len(row)}")
        key = tuple(row[i] for i in (c.metric, *(i for i, _ in c.label_columns)))
        key = (*key, _hashable(row[c.labels]) if c.labels is not None else None)
        labels = self._label_cache.get(key)
        if labels is None:
            labels = self._labels(row)
            if len(self._label_cache) >= _SERIES_CACHE_LIMIT:
                self._label_cache.clear()
            self._label_cache[key] = labels
        return labels, self._timestamp(row[c.timestamp]), self._value(row[c.value])

    def _labels(self, row: Sequence[Any]) -> Labels:
        c = self.columns
        name = row[c.metric]
        if not isinstance(name, str) or not _METRIC_NAME.fullmatch(name):
            raise _Bad(f"invalid metric name {name!r}", c.metric)
        pairs = [(n, _cell_text(row[i])) for i, n in c.label_columns]
        if c.labels is not None:
            pairs.extend(self._label_cell(row[c.labels]))
        try:
            return make_labels(name, pairs)
        except _Bad as e:
            raise _Bad(e.message, c.labels if c.labels is not None else c.metric) from None

    def _label_cell(self, cell: Any) -> list[tuple[str, str]]:
        col = self.columns.labels
        if cell is None or cell == "":
            return []
        if isinstance(cell, Mapping):
            return [(str(k), _cell_text(v)) for k, v in cell.items()]
        text = str(cell).strip()
        if not text.startswith("{"):
            raise _Bad("labels must look like {name=\"value\", ...}", col)
        try:
            pairs, end = parse_label_block(text, 0)
        except _Bad as e:
            raise _Bad(f"{e.message} (at offset {(e.offset or 0) + 1} of the labels cell)",
                       col) from None
        if text[end:].strip():
            raise _Bad("unexpected text after the labels", col)
        for k, _v in pairs:
            if k == METRIC_NAME:
                raise _Bad("__name__ belongs in the metric column", col)
        return pairs

    def _timestamp(self, cell: Any) -> int:
        col = self.columns.timestamp
        try:
            if cell is None or cell == "":
                raise ValueError("missing timestamp")
            if isinstance(cell, bool):
                raise ValueError(f"invalid timestamp {cell!r}")
            if isinstance(cell, int):
                if self.timestamps_in_ms:
                    return _checked_ms(cell)
                return _checked_ms(cell if abs(cell) >= _MS_THRESHOLD else cell * 1000)
            if isinstance(cell, float | Decimal):
                return seconds_to_ms(repr(cell) if isinstance(cell, float) else str(cell))
            return parse_epoch_or_rfc3339(str(cell))
        except ValueError as e:
            raise _Bad(str(e), col) from None

    def _value(self, cell: Any) -> float:
        col = self.columns.value
        if cell is None or cell == "":
            raise _Bad("missing value", col)
        if isinstance(cell, int | float | Decimal) and not isinstance(cell, bool):
            return float(cell)
        try:
            return parse_value(str(cell).strip())
        except ValueError as e:
            raise _Bad(str(e), col) from None


def _hashable(cell: Any) -> Any:
    if isinstance(cell, Mapping):
        return tuple(sorted((str(k), str(v)) for k, v in cell.items()))
    return cell


def _cell_text(cell: Any) -> str:
    return "" if cell is None else str(cell)


def parse_csv(path: str | Path, progress: Progress | None = None
              ) -> Iterator[Sample | IngestError]:
    """Samples and errors of a CSV file (see the module docstring for the columns)."""
    file = str(path)
    with open(path, "rb") as raw:
        binary = io.BufferedReader(_CountingReader(raw, progress), 1 << 20)
        # utf-8-sig: spreadsheets often start a CSV file with a byte-order mark.
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        yield from _csv_rows(file, text)


def _csv_rows(file: str, text: IO[str]) -> Iterator[Sample | IngestError]:
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as e:
        yield IngestError(file, 1, f"cannot read the header: {e}")
        return
    if header is None:
        yield IngestError(file, 1, "empty file: expected a header row")
        return
    try:
        decoder = RowDecoder(TableColumns.from_header(header))
    except _Bad as e:
        yield IngestError(file, 1, e.message, _csv_column(header, e.offset))
        return
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as e:
            yield IngestError(file, start, f"malformed CSV: {e}")
            return  # the reader cannot resynchronise after a broken quote or bad bytes
        line, start = start, reader.line_num + 1
        if not row or row == [""]:
            continue
        try:
            yield decoder.decode(row)
        except _Bad as e:
            yield IngestError(file, line, e.message, _csv_column(row, e.offset))


def _csv_column(row: Sequence[str], index: int | None) -> int | None:
    """The 1-based character column where field ``index`` starts (unquoted fields)."""
    if index is None or index >= len(row):
        return None
    return sum(len(f) + 1 for f in row[:index]) + 1


def parse_parquet(path: str | Path, progress: Progress | None = None,
                  batch_rows: int = 100_000) -> Iterator[Sample | IngestError]:
    """Samples and errors of a Parquet file, read with DuckDB (no extension needed)."""
    file = str(path)
    con = duckdb.connect()
    try:
        try:
            schema = con.execute("SELECT * FROM read_parquet($p) LIMIT 0",
                                 {"p": file}).description
        except duckdb.Error as e:
            yield IngestError(file, 1, f"cannot read Parquet: {_first_line(e)}")
            return
        names = [str(r[0]) for r in schema]
        types = {str(r[0]): str(r[1]) for r in schema}
        try:
            columns = TableColumns.from_header(names)
        except _Bad as e:
            yield IngestError(file, 1, e.message)
            return
        ts_type = types[names[columns.timestamp]]
        in_ms = ts_type.startswith("TIMESTAMP")
        sql = _parquet_select(names, columns, in_ms)
        decoder = RowDecoder(columns, timestamps_in_ms=in_ms)
        yield from _parquet_rows(con, sql, file, decoder, names, batch_rows, progress)
    finally:
        con.close()


def _parquet_select(names: Sequence[str], columns: TableColumns, ts_is_timestamp: bool) -> str:
    """SELECT of the file's columns (quoted identifiers), timestamps as epoch ms."""
    items: list[exp.Expression] = []
    for i, name in enumerate(names):
        col: exp.Expression = exp.column(name, quoted=True)
        if i == columns.timestamp and ts_is_timestamp:
            col = exp.Anonymous(this="epoch_ms", expressions=[col])
        items.append(col)
    query = exp.select(*items).from_(
        exp.Anonymous(this="read_parquet", expressions=[exp.Placeholder(this="p")]))
    return query.sql(dialect="duckdb")


def _parquet_rows(con: duckdb.DuckDBPyConnection, sql: str, file: str, decoder: RowDecoder,
                  names: Sequence[str], batch_rows: int, progress: Progress | None
                  ) -> Iterator[Sample | IngestError]:
    size = Path(file).stat().st_size
    try:
        total = con.execute("SELECT count(*) FROM read_parquet($p)", {"p": file}).fetchone()
        result = con.execute(sql, {"p": file})
    except duckdb.Error as e:
        yield IngestError(file, 1, f"cannot read Parquet: {_first_line(e)}")
        return
    rows_total = int(total[0]) if total else 0
    done = 0
    row_number = 0
    while True:
        try:
            rows = result.fetchmany(batch_rows)
        except duckdb.Error as e:
            yield IngestError(file, row_number + 1, f"cannot read Parquet: {_first_line(e)}")
            return
        if not rows:
            break
        for row in rows:
            row_number += 1
            try:
                yield decoder.decode(row)
            except _Bad as e:
                where = f" (column {names[e.offset]!r})" if e.offset is not None else ""
                yield IngestError(file, row_number, e.message + where)
        if progress is not None and rows_total:
            now = size * row_number // rows_total
            progress(now - done)
            done = now


def _first_line(e: Exception) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# ---------------------------------------------------------------- formats


_EXTENSIONS: dict[str, Format] = {
    ".om": "openmetrics", ".openmetrics": "openmetrics", ".csv": "csv",
    ".parquet": "parquet", ".pq": "parquet",
}


def detect_format(path: str | Path) -> Format:
    """The format of a file: by extension, else by content (see the module docstring)."""
    p = Path(path)
    by_name = _EXTENSIONS.get(p.suffix.lower())
    if by_name is not None:
        return by_name
    with open(p, "rb") as f:
        head = f.read(4)
        size = f.seek(0, 2)
        f.seek(max(0, size - 64))
        tail = f.read()
    if head == b"PAR1":
        return "parquet"
    if tail.rstrip(b"\r\n").endswith(b"# EOF"):
        return "openmetrics"
    return "prometheus"


def parse_file(path: str | Path, fmt: str = "auto", default_ts_ms: int | None = None,
               progress: Progress | None = None) -> Iterator[Sample | IngestError]:
    """Samples and errors of one file in the given (or detected) format."""
    kind = detect_format(path) if fmt == "auto" else fmt
    if kind == "csv":
        return parse_csv(path, progress)
    if kind == "parquet":
        return parse_parquet(path, progress)
    if kind in ("prometheus", "openmetrics"):
        return parse_exposition(path, kind == "openmetrics", default_ts_ms, progress)
    raise ValueError(f"unknown format {fmt!r} (expected auto or one of {', '.join(FORMATS)})")


# ---------------------------------------------------------------- import


@dataclass
class ImportReport:
    """What an import did: counts, the bad rows (up to the limit), whether it was kept."""

    files: int = 0
    series: int = 0
    samples: int = 0
    errors: list[IngestError] = field(default_factory=list)
    error_count: int = 0
    committed: bool = False
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether every row was good."""
        return self.error_count == 0


class _Abort(Exception):
    """Raised inside the import transaction to roll it back."""


def import_files(store: Store, paths: Sequence[str | Path], fmt: str = "auto", *,
                 skip_bad: bool = False, max_errors: int = MAX_ERRORS,
                 default_ts_ms: int | None = None, progress: Progress | None = None
                 ) -> ImportReport:
    """Import files into ``store`` in one transaction (see the module docstring).

    Without ``skip_bad`` any bad row rolls the whole import back; parsing goes on
    (writing nothing) to report up to ``max_errors`` bad rows. With it, good rows
    are kept and bad ones reported.
    """
    report = ImportReport(files=len(paths))
    started = time.perf_counter()
    seen: set[Labels] = set()

    def good_samples() -> Iterator[Sample]:
        for path in paths:
            for item in parse_file(path, fmt, default_ts_ms, progress):
                if isinstance(item, IngestError):
                    _record(report, item, max_errors)
                    if not skip_bad and report.error_count >= max_errors:
                        report.stopped_early = True
                        raise _Abort
                    continue
                if report.error_count and not skip_bad:
                    continue  # the import will be rolled back: only look for errors
                seen.add(item[0])
                yield item
        if report.error_count and not skip_bad:
            raise _Abort

    try:
        report.samples = store.append(good_samples())
        report.series = len(seen)
        report.committed = True
    except _Abort:
        report.samples = report.series = 0
    report.seconds = time.perf_counter() - started
    return report


def _record(report: ImportReport, error: IngestError, limit: int) -> None:
    report.error_count += 1
    if len(report.errors) < limit:
        report.errors.append(error)
