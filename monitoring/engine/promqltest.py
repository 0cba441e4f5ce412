"""Prometheus's PromQL ``.test`` scripts: read them, and run them against an evaluator.

Prometheus checks its engine with small scripts (``promql/promqltest/testdata``):
``load`` synthetic samples, ``clear`` the store, ``eval`` a query and compare
with the expected result. This module reads that format and runs it the way
Prometheus's own harness (``promql/promqltest/test.go``) does, so a script that
passes here would pass there:

* every ``eval instant`` is also re-run with ``@ <eval time>`` pinned on every
  selector and subquery at other evaluation times (the result must not
  change), and as a range query from t-1m to t+1m at a 1m step (the point at t
  must equal the instant result);
* floats agree within a relative tolerance of 1e-6, NaN equals NaN, a
  staleness marker equals only a staleness marker;
* annotations are matched as the ``expect warn/info`` lines say.

A block is *unsupported*, not failed, when it needs what this project does not
have: native histogram samples, or Prometheus's experimental functions. A
query our compiler rejects although Prometheus accepts it is reported as
unsupported with the compiler's diagnostic, so the gap stays visible.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib
import itertools
import math
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import re2

from monitoring.dsl import ir
from monitoring.dsl.compiler import compile_query
from monitoring.dsl.diagnostics import Severity
from monitoring.dsl.lexical import LexicalError, parse_duration, unquote
from monitoring.engine.memory import MemorySource, matches
from monitoring.engine.model import (
    STALE_NAN,
    EvalError,
    Labels,
    QueryResult,
    Series,
    format_labels,
    is_stale,
    labels_of,
)
from monitoring.engine.query import QueryOptions

if TYPE_CHECKING:
    from monitoring.engine.query import Evaluator

EPSILON = 1e-6
"""Relative tolerance of float comparisons (``defaultEpsilon`` upstream)."""

LOOKBACK_MS = 5 * 60_000
DEFAULT_SUBQUERY_STEP_MS = 60_000
MIN_NORMAL = sys.float_info.min

EXPERIMENTAL_FUNCTIONS = frozenset({
    "limitk", "limit_ratio", "sort_by_label", "sort_by_label_desc",
    "double_exponential_smoothing", "ts_of_min_over_time", "ts_of_max_over_time",
    "ts_of_first_over_time", "ts_of_last_over_time", "min_of", "max_of",
    "start", "end", "range", "step", "info",
})
"""Functions and aggregations Prometheus ships behind its experimental flag.

``mad_over_time`` is experimental upstream too, but this project implements it.
"""

AT_UNSAFE_FUNCTIONS = frozenset({
    "time", "timestamp", "minute", "hour", "day_of_week", "day_of_month", "day_of_year",
    "days_in_month", "month", "year", "predict_linear", "start", "end", "range", "step",
})
"""Functions whose result depends on the evaluation time even with pinned arguments:
the ``@`` re-runs are skipped for expressions calling them."""

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is reported as a file:line error, not on stderr


@functools.lru_cache(maxsize=512)
def _compile_search(pattern: str) -> Any:
    """An unanchored RE2 pattern, as Go's ``regexp.MatchString`` searches."""
    return re2.compile(pattern, _RE2_OPTIONS)


def re2_search(pattern: str, text: str) -> bool:
    """Whether ``pattern`` occurs in ``text`` (RE2 syntax, unanchored)."""
    return _compile_search(pattern).search(text) is not None


_QUERY_CONTEXT = re.compile(r"(start|end|range|step)\(\)")

# The command patterns of test.go, verbatim.
_SPACE = re.compile(r"[\t ]+")
_LOAD = re.compile(r"^load(?:_(with_nhcb))?\s+(.+?)$")
_EVAL_INSTANT = re.compile(
    r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$")
_EVAL_RANGE = re.compile(
    r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$")
_EXPECT = re.compile(
    r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$")
_EXPECT_RANGE = re.compile(r"^expect range vector\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
_RANGE_VECTOR_PREFIX = "expect range vector"
_STRING_PREFIX = "expect string"


# ------------------------------------------------------------------ the script model


class TestFormatError(Exception):
    """A malformed script: ``file:line: message``."""

    __test__ = False  # not a pytest class

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


class NativeHistogram:
    """A native histogram sample (``{{...}}``); kept only as a marker, never evaluated."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


SeqValue = float | NativeHistogram | None
"""One position of a value sequence: a float, a histogram, or None for ``_`` (no sample)."""


@dataclass(slots=True)
class SeriesLine:
    """``labels values...`` of a ``load`` block or an expected result."""

    line: int
    labels: Labels
    values: list[SeqValue]

    @property
    def has_histograms(self) -> bool:
        """Whether any value is a native histogram."""
        return any(isinstance(v, NativeHistogram) for v in self.values)


@dataclass(slots=True)
class LoadCmd:
    """``load <interval>``: samples at 0, interval, 2 x interval, ..."""

    line: int
    interval_ms: int
    series: list[SeriesLine] = field(default_factory=list)
    with_nhcb: bool = False


@dataclass(slots=True)
class ClearCmd:
    """``clear``: forget every sample."""

    line: int


@dataclass(slots=True)
class Expect:
    """One ``expect`` line: a level plus an exact message or a pattern (None: any)."""

    kind: str  # ordered | fail | warn | no_warn | info | no_info
    message: str | None = None
    pattern: str | None = None

    def matches(self, text: str) -> bool:
        """Whether ``text`` satisfies this expectation (a pattern is searched, unanchored)."""
        if self.pattern is not None:
            return re2_search(self.pattern, text)
        if self.message is not None:
            return text == self.message
        return True

    def describe(self) -> str:
        """``message "..."`` or ``pattern "..."``."""
        if self.pattern is not None:
            return f"pattern {self.pattern!r}"
        return f"message {self.message!r}"


@dataclass(slots=True)
class Expected:
    """An expected series: its position among the result lines and its values."""

    pos: int
    labels: Labels
    values: list[SeqValue]


@dataclass(slots=True)
class EvalCmd:
    """``eval instant at T expr`` or ``eval range from A to B step S expr``, and expectations."""

    line: int
    expr: str
    is_range: bool
    start_ms: int
    end_ms: int = 0
    step_ms: int = 0
    eval_ms: int = 0
    fail: bool = False
    warn: bool = False
    info: bool = False
    ordered: bool = False
    fail_message: str | None = None
    fail_regexp: str | None = None
    expects: dict[str, list[Expect]] = field(default_factory=dict)
    expected: dict[Labels, Expected] = field(default_factory=dict)
    expect_scalar: bool = False
    scalar: SeqValue = None
    expected_string: str | None = None
    range_vector: bool = False
    exclude_from_range: bool = False
    has_histograms: bool = False

    def is_ordered(self) -> bool:
        """``eval_ordered`` or ``expect ordered``."""
        return self.ordered or bool(self.expects.get("ordered"))

    def is_fail(self) -> bool:
        """``eval_fail`` or ``expect fail``."""
        return self.fail or bool(self.expects.get("fail"))


Command = LoadCmd | ClearCmd | EvalCmd


@dataclass(slots=True)
class TestScript:
    """A parsed ``.test`` file."""

    __test__ = False

    name: str
    commands: list[Command]

    @property
    def evals(self) -> list[EvalCmd]:
        """The ``eval`` commands, in file order."""
        return [c for c in self.commands if isinstance(c, EvalCmd)]


# ------------------------------------------------------------------ parsing


def load_test_file(path: str | Path) -> TestScript:
    """Read and parse a ``.test`` file (OSError and UnicodeDecodeError propagate)."""
    p = Path(path)
    return parse_test(p.read_text(encoding="utf-8"), str(path))


def parse_test(text: str, name: str = "<test>") -> TestScript:
    """Parse a script; a malformed one raises :class:`TestFormatError` with its line."""
    return _ScriptParser(text, name).parse()


def parse_duration_ms(text: str) -> int:
    """A Prometheus duration (``1m30s``, ``0``) in ms; a bare number means seconds."""
    text = text.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return round(float(text) * 1000)
    try:
        return parse_duration(text).ms
    except LexicalError:
        raise ValueError(f"invalid duration {text!r}") from None


_NUMBER = (r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
           r"|[iI][nN][fF](?:[iI][nN][iI][tT][yY])?|[nN][aA][nN])")
"""A number in a value sequence: no hex, since ``0x59`` there means 0 repeated 59 more times."""
_ITEM = re.compile(
    rf"(?P<a>[+-]?{_NUMBER})(?:(?P<op>[+-])(?P<b>{_NUMBER})x(?P<n>\d+)|x(?P<r>\d+))?")
_BLANK = re.compile(r"_(?:x(?P<n>\d+))?")
_HIST_ITEM = re.compile(
    r"(?P<h>\{\{[^{}]*\}\})(?:x(?P<r>\d+)|[+-]\{\{[^{}]*\}\}x(?P<n>\d+))?")


def parse_float(text: str) -> float:
    """A number of a value sequence: decimal or scientific, Inf and NaN in any case, signed."""
    low = text.lower()
    sign = -1.0 if low.startswith("-") else 1.0
    body = low.lstrip("+-")
    if body in ("inf", "infinity"):
        return sign * math.inf
    if body == "nan":
        return math.nan
    return sign * float(body)


def parse_values(text: str) -> list[SeqValue]:
    """Expand a value sequence: ``1 _ 3 stale 0+10x5 _x2 1x3 {{...}}``."""
    out: list[SeqValue] = []
    i = 0
    n = len(text)
    while i < n:
        if text[i] in " \t":
            i += 1
            continue
        if text.startswith("{{", i):
            m = _HIST_ITEM.match(text, i)
            if m is None:
                raise ValueError(f"unterminated native histogram at {text[i:i + 20]!r}")
            repeat = m.group("r") or m.group("n")
            count = int(repeat) + 1 if repeat is not None else 1
            out.extend(NativeHistogram(m.group("h")) for _ in range(count))
            i = m.end()
            continue
        j = i
        while j < n and text[j] not in " \t":
            j += 1
        out.extend(_expand(text[i:j]))
        i = j
    return out


def _expand(token: str) -> list[SeqValue]:
    if token == "stale":
        return [STALE_NAN]
    m = _BLANK.fullmatch(token)
    if m is not None:
        return [None] * (int(m.group("n")) if m.group("n") else 1)
    m = _ITEM.fullmatch(token)
    if m is None:
        raise ValueError(f"invalid value {token!r}: expected a number, _, stale, a+bxn or axn")
    a = parse_float(m.group("a"))
    if m.group("r") is not None:
        return [a] * (int(m.group("r")) + 1)
    if m.group("n") is None:
        return [a]
    b = parse_float(m.group("b"))
    if m.group("op") == "-":
        b = -b
    values: list[SeqValue] = []
    for _ in range(int(m.group("n")) + 1):  # incremental, as Prometheus's parser adds
        values.append(a)
        a += b
    return values


def parse_series_line(text: str) -> tuple[Labels, list[SeqValue]]:
    """``name{a="b"} values`` -> (labels, values); raises ValueError with what is wrong."""
    i = 0
    n = len(text)
    pairs: dict[str, str] = {}
    m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text)
    if m is not None:
        pairs["__name__"] = m.group(0)
        i = m.end()
    if i < n and text[i] == "{":
        i = _parse_label_block(text, i + 1, pairs)
    elif m is None:
        raise ValueError("expected a metric name or a label set {...}")
    if i < n and text[i] not in " \t":
        raise ValueError(f"unexpected {text[i]!r} after the series labels")
    values = parse_values(text[i:])
    if not values:
        raise ValueError("expected values after the series labels")
    return labels_of(pairs), values


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def _parse_label_block(text: str, i: int, pairs: dict[str, str]) -> int:
    """Labels up to the closing brace; returns the offset just past it."""
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == "}":
            return i + 1
        name_m = _NAME.match(text, i) or _STRING.match(text, i)
        if name_m is None:
            raise ValueError(f"expected a label name at column {i + 1}")
        name = name_m.group(0)
        if name[0] in "\"'`":
            name = _unquote(name)
        i = name_m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in ",}" and name_m.re is _STRING:
            pairs["__name__"] = name  # a quoted metric name inside the braces
        else:
            if not text.startswith("=", i) or text.startswith("=~", i):
                raise ValueError(f"expected '=' after label {name!r}")
            i += 1
            while i < n and text[i] in " \t":
                i += 1
            value_m = _STRING.match(text, i)
            if value_m is None:
                raise ValueError(f"expected a quoted value for label {name!r}")
            pairs[name] = _unquote(value_m.group(0))
            i = value_m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ",":
            i += 1
            continue
        if i < n and text[i] == "}":
            return i + 1
        raise ValueError("expected ',' or '}' in the label set")


def _unquote(token: str) -> str:
    try:
        return unquote(token)
    except LexicalError as e:
        raise ValueError(f"invalid string {token}: {e.message}") from None


def _go_number(text: str) -> float | None:
    """``strconv.ParseInt(s, 0, 64)`` then ``ParseFloat``: a line that is only a number."""
    if re.fullmatch(r"[+-]?(?:0[xX][0-9a-fA-F]+|0[oO]?[0-7]+|0[bB][01]+|\d+)", text):
        body = text.lstrip("+-")
        sign = -1 if text.startswith("-") else 1
        try:
            if re.fullmatch(r"0[0-7]+", body):
                return float(sign * int(body, 8))
            return float(sign * int(body, 0))
        except ValueError:
            return float(text)  # "08": not an integer in Go's syntax, but a float
    if re.fullmatch(r"[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:inf(?:inity)?|nan))",
                    text):
        return float(text)
    return None


class _ScriptParser:
    """Line-oriented, as test.go: trimmed lines, comments become blank, blank ends a block."""

    def __init__(self, text: str, name: str) -> None:
        self.name = name
        self.lines = ["" if (s := raw.strip()).startswith("#") else s
                      for raw in text.split("\n")]

    def error(self, index: int, message: str) -> TestFormatError:
        return TestFormatError(self.name, index + 1, message)

    def parse(self) -> TestScript:
        commands: list[Command] = []
        i = 0
        while i < len(self.lines):
            line = self.lines[i]
            if line == "":
                i += 1
                continue
            word = _SPACE.split(line, maxsplit=1)[0].lower()
            cmd: Command
            if word == "clear":
                cmd = ClearCmd(i + 1)
            elif word.startswith("load"):
                i, cmd = self.load(i)
            elif word.startswith("eval"):
                i, cmd = self.eval(i)
            else:
                raise self.error(i, f"invalid command {line!r}: expected load, clear or eval")
            commands.append(cmd)
            i += 1
        return TestScript(self.name, commands)

    def load(self, i: int) -> tuple[int, LoadCmd]:
        m = _LOAD.match(self.lines[i])
        if m is None:
            raise self.error(i, "invalid load command: expected 'load <interval>'")
        try:
            interval = parse_duration_ms(m.group(2))
        except ValueError as e:
            raise self.error(i, f"invalid step definition {m.group(2)!r}: {e}") from None
        cmd = LoadCmd(i + 1, interval, with_nhcb=m.group(1) is not None)
        while i + 1 < len(self.lines) and self.lines[i + 1] != "":
            i += 1
            line = self.lines[i]
            head = _SPACE.split(line, maxsplit=1)[0]
            if head.endswith("@st"):
                raise self.error(i, "start-timestamp (@st) lines are not supported")
            try:
                labels, values = parse_series_line(line)
            except ValueError as e:
                raise self.error(i, f"invalid series description: {e}") from None
            cmd.series.append(SeriesLine(i + 1, labels, values))
        return i, cmd

    def eval(self, i: int) -> tuple[int, EvalCmd]:
        line = self.lines[i]
        inst = _EVAL_INSTANT.match(line)
        rng = _EVAL_RANGE.match(line)
        if inst is None and rng is None:
            raise self.error(i, "invalid evaluation command: expected 'eval[_fail|_warn|_info|"
                             "_ordered] instant at <time> <query>' or 'eval[_fail|_warn|_info] "
                             "range from <start> to <end> step <step> <query>'")
        if inst is not None:
            mod, expr = inst.group(1), inst.group(3)
            at = inst.group(2) or ""
            try:
                t = parse_duration_ms(at)
            except ValueError:
                raise self.error(i, f"invalid timestamp definition {at!r}") from None
            cmd = EvalCmd(i + 1, expr, False, t, eval_ms=t)
        else:
            assert rng is not None
            mod, expr = rng.group(1), rng.group(5)
            start, end, step = self.durations(i, rng.group(2), rng.group(3), rng.group(4))
            cmd = EvalCmd(i + 1, expr, True, start, end, step, eval_ms=start)
        if mod == "ordered":
            cmd.ordered = True
        elif mod == "fail":
            cmd.fail = True
        elif mod == "warn":
            cmd.warn = True
        elif mod == "info":
            cmd.info = True
        pos = 1
        while i + 1 < len(self.lines) and self.lines[i + 1] != "":
            i += 1
            line = self.lines[i]
            if cmd.fail and line.startswith("expected_fail_message"):
                cmd.fail_message = line.removeprefix("expected_fail_message").strip()
                break
            if cmd.fail and line.startswith("expected_fail_regexp"):
                pattern = line.removeprefix("expected_fail_regexp").strip()
                self.check_regex(i, pattern, "expected_fail_regexp")
                cmd.fail_regexp = pattern
                break
            if line.startswith(_RANGE_VECTOR_PREFIX):
                m = _EXPECT_RANGE.match(line)
                if m is None:
                    raise self.error(i, f"invalid range vector definition {line!r}: expected "
                                     "'expect range vector from <t> to <t> step <d>'")
                start, end, step = self.durations(i, m.group(1), m.group(2), m.group(3))
                cmd.range_vector = True
                cmd.start_ms, cmd.end_ms, cmd.step_ms, cmd.eval_ms = start, end, step, end
                cmd.exclude_from_range = True
                continue
            if line.startswith(_STRING_PREFIX):
                cmd.expected_string = self.string_literal(i, line)
                cmd.exclude_from_range = True
                continue
            if line.split(" ")[0] == "expect":
                self.expect(i, line, cmd)
                continue
            number = _go_number(line)
            if number is not None:
                cmd.expect_scalar = True
                cmd.scalar = number
                break
            try:
                labels, values = parse_series_line(line)
            except ValueError as e:
                raise self.error(i, f"invalid expected series: {e}") from None
            if len(values) > 1 and not cmd.is_range and not cmd.range_vector:
                raise self.error(i, "expecting multiple values in instant evaluation not "
                                 "allowed; use 'expect range vector' for a range vector result")
            if any(isinstance(v, NativeHistogram) for v in values):
                cmd.has_histograms = True
            cmd.expect_scalar = False
            cmd.expected[labels] = Expected(pos, labels, values)
            pos += 1
        return i, cmd

    def durations(self, i: int, start: str, end: str, step: str) -> tuple[int, int, int]:
        values = []
        for what, text in (("start timestamp", start), ("end timestamp", end),
                           ("step", step)):
            try:
                values.append(parse_duration_ms(text))
            except ValueError:
                raise self.error(i, f"invalid {what} definition {text!r}") from None
        if values[1] < values[0]:
            raise self.error(i, f"end timestamp ({end}) is before start timestamp ({start})")
        if values[2] <= 0:
            raise self.error(i, f"invalid step definition {step!r}: must be positive")
        return values[0], values[1], values[2]

    def string_literal(self, i: int, line: str) -> str:
        text = line.removeprefix(_STRING_PREFIX + " ").strip() if line != _STRING_PREFIX else ""
        if len(text) < 2 or text[0] not in "\"`" or text[-1] != text[0]:
            raise self.error(i, "expected string literal not valid: a quoted string literal "
                             "is required")
        try:
            return unquote(text)
        except LexicalError as e:
            raise self.error(i, f"expected string literal not valid: {e.message}") from None

    def check_regex(self, i: int, pattern: str, what: str) -> None:
        try:
            _compile_search(pattern)
        except re2.error as e:
            detail = e.args[0] if e.args else ""
            if isinstance(detail, bytes):
                detail = detail.decode("utf-8", "replace")
            raise self.error(i, f"invalid regex {pattern!r} for {what}: {detail}") from None

    def expect(self, i: int, line: str, cmd: EvalCmd) -> None:
        m = _EXPECT.match(line.strip())
        if m is None:
            raise self.error(i, "invalid expect statement: expected 'expect <fail|warn|no_warn|"
                             "info|no_info|ordered> [msg|regex: <text>]'")
        kind, how, text = m.group(1), m.group(2), m.group(3)
        exp = Expect(kind)
        if how == "msg":
            exp.message = text.strip()
        elif how == "regex":
            exp.pattern = text.strip()
            self.check_regex(i, exp.pattern, kind)
        cmd.expects.setdefault(kind, []).append(exp)
        if cmd.expects.get("info") and cmd.expects.get("no_info"):
            raise self.error(i, "invalid expect lines: info and no_info cannot be used together")
        if cmd.expects.get("warn") and cmd.expects.get("no_warn"):
            raise self.error(i, "invalid expect lines: warn and no_warn cannot be used together")
        if len(cmd.expects.get("fail", [])) > 1:
            raise self.error(i, "invalid expect lines: only one 'expect fail' line is allowed")


# ------------------------------------------------------------------ results


class Outcome(enum.Enum):
    """What happened to one eval block."""

    PASSED = "passed"
    FAILED = "failed"
    UNSUPPORTED = "unsupported"


@dataclass(slots=True)
class BlockResult:
    """One eval block's outcome; ``reason`` says why it failed or is unsupported."""

    line: int
    expr: str
    outcome: Outcome
    reason: str = ""


@dataclass(slots=True)
class FileReport:
    """Every block of one script."""

    name: str
    blocks: list[BlockResult] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many blocks had ``outcome``."""
        return sum(1 for b in self.blocks if b.outcome is outcome)

    @property
    def passed(self) -> int:
        return self.count(Outcome.PASSED)

    @property
    def failed(self) -> int:
        return self.count(Outcome.FAILED)

    @property
    def unsupported(self) -> int:
        return self.count(Outcome.UNSUPPORTED)

    def summary(self) -> str:
        """``N passed, N failed, N unsupported``."""
        return f"{self.passed} passed, {self.failed} failed, {self.unsupported} unsupported"


def almost_equal(a: float, b: float, epsilon: float = EPSILON) -> bool:
    """Prometheus's ``almost.Equal``: relative tolerance, NaN == NaN, stale only == stale."""
    if is_stale(a) or is_stale(b):
        return is_stale(a) and is_stale(b)
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    if math.isinf(a) or math.isinf(b) or math.isnan(a) or math.isnan(b):
        return False
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < MIN_NORMAL:
        return diff < epsilon * MIN_NORMAL
    return diff / min(abs_sum, sys.float_info.max) < epsilon


def format_value(v: SeqValue) -> str:
    """A value as the script would write it."""
    if v is None:
        return "_"
    if isinstance(v, NativeHistogram):
        return v.text
    if is_stale(v):
        return "stale"
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(int(v)) if v == int(v) and abs(v) < 1e15 else repr(v)


def _series_text(labels: Labels) -> str:
    return format_labels(labels) if labels else "{}"


def _points_text(ts: Sequence[int], vs: Sequence[float]) -> str:
    return "[" + ", ".join(f"{format_value(float(v))} @{int(t)}" for t, v in zip(ts, vs,
                                                                             strict=True)) + "]"


class _Fail(Exception):
    """A check that did not hold; the message is the reason shown to users."""


# ------------------------------------------------------------------ running


@dataclass(slots=True)
class _Store:
    """The data loaded since the last ``clear``."""

    source: MemorySource = field(default_factory=MemorySource)
    histogram_series: set[Labels] = field(default_factory=set)

    def load(self, cmd: LoadCmd) -> None:
        # Within one load block a later line for the same series replaces the earlier.
        last: dict[Labels, SeriesLine] = {}
        for s in cmd.series:
            last[s.labels] = s
        for labels, s in last.items():
            samples = [(k * cmd.interval_ms, v) for k, v in enumerate(s.values)
                       if isinstance(v, float)]
            if s.has_histograms or (cmd.with_nhcb and _classic_histogram_part(labels)):
                self.histogram_series.add(labels)
            if samples:
                ts = np.array([t for t, _ in samples], dtype=np.int64)
                vs = np.array([v for _, v in samples], dtype=np.float64)
                self.source.add(Series(labels, ts, vs))

    def clear(self) -> None:
        self.source.clear()
        self.histogram_series.clear()


def _classic_histogram_part(labels: Labels) -> bool:
    name = dict(labels).get("__name__", "")
    return name.endswith(("_bucket", "_sum", "_count"))


def run_script(script: TestScript, evaluate: Evaluator, *,
               experimental: bool = False) -> FileReport:
    """Run every command of ``script`` in order against one in-memory store.

    With ``experimental``, blocks that use Prometheus's experimental functions
    are run too (both evaluators implement them) instead of counted unsupported.
    """
    report = FileReport(script.name)
    store = _Store()
    for cmd in script.commands:
        if isinstance(cmd, ClearCmd):
            store.clear()
        elif isinstance(cmd, LoadCmd):
            store.load(cmd)
        else:
            report.blocks.append(_BlockRunner(cmd, store, evaluate, experimental).run())
    return report


def run_file(path: str | Path, evaluate: Evaluator, *, experimental: bool = False) -> FileReport:
    """Parse and run one ``.test`` file."""
    return run_script(load_test_file(path), evaluate, experimental=experimental)


def walk(node: ir.Node) -> Iterator[ir.Node]:
    """Every node of an IR tree, parents first."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children()))


def experimental_in(node: ir.Node) -> list[str]:
    """The experimental functions and aggregations an IR tree uses."""
    found: list[str] = []
    for n in walk(node):
        name = n.func if isinstance(n, ir.Call) else n.op if isinstance(n, ir.Aggregate) else None
        if name in EXPERIMENTAL_FUNCTIONS and name not in found:
            found.append(name)
    return found


def experimental_in_text(expr: str) -> list[str]:
    """Experimental functions called in query text (for queries our compiler rejects)."""
    found: list[str] = []
    for m in re.finditer(r"\b([a-z_]+)\s*\(", expr):
        before = expr[:m.start()].rstrip()
        if before.endswith("@"):
            continue  # `@ start()` is a modifier, not the experimental function
        name = m.group(1)
        if name in EXPERIMENTAL_FUNCTIONS and name not in found:
            found.append(name)
    return found


def _selector_matchers(sel: ir.Selector) -> list[tuple[str, str, str]]:
    ms = list(sel.matchers)
    if sel.metric is not None:
        ms.append(("__name__", "=", sel.metric))
    return ms


def histogram_series_selected(node: ir.Node, histogram_series: set[Labels]) -> list[Labels]:
    """The stored native-histogram series that a selector of ``node`` matches."""
    hit: list[Labels] = []
    if not histogram_series:
        return hit
    for n in walk(node):
        if isinstance(n, ir.Selector):
            for labels in sorted(histogram_series):
                try:
                    ok = matches(labels, _selector_matchers(n))
                except ValueError:
                    ok = False
                if ok and labels not in hit:
                    hit.append(labels)
    return hit


def pin_at(node: ir.Node, ts_ms: int,
           positions: dict[ir.Node, tuple[int, int]]) -> tuple[ir.Node, bool]:
    """The harness's ``@`` rewrite: pin every selector and subquery without ``@`` to ``ts_ms``.

    Subqueries are pinned and not entered (their insides stay relative to the
    subquery's own steps). Returns the new tree and whether it calls a function
    that depends on the evaluation time (then the ``@`` re-runs are skipped).
    New nodes inherit the position of the node they replace.
    """
    unsafe = False
    pin = ir.At("timestamp", ts_ms)

    def needs(at: ir.At | None) -> bool:
        return at is None or at.kind != "timestamp"

    def go(n: ir.Node) -> ir.Node:
        nonlocal unsafe
        out: ir.Node
        if isinstance(n, ir.Selector | ir.Subquery):
            out = dataclasses.replace(n, at=pin) if needs(n.at) else n
        else:
            if isinstance(n, ir.Call) and n.func in AT_UNSAFE_FUNCTIONS:
                unsafe = True
            changes: dict[str, Any] = {}
            for f in dataclasses.fields(n):  # type: ignore[arg-type]
                value = getattr(n, f.name)
                if isinstance(value, ir.Node):
                    changes[f.name] = go(value)
                elif isinstance(value, tuple) and value and all(
                        isinstance(v, ir.Node) for v in value):
                    changes[f.name] = tuple(go(v) for v in value)
            out = dataclasses.replace(n, **changes) if changes else n  # type: ignore[type-var]
        if out is not n and n in positions:
            positions.setdefault(out, positions[n])
        return out

    return go(node), unsafe


@dataclass(slots=True)
class _Answer:
    """An evaluation: a result or an error message (``crashed``: not a query error)."""

    result: QueryResult | None = None
    error: str | None = None
    crashed: bool = False


class _BlockRunner:
    """Runs one eval block as test.go's ``execEval`` does."""

    def __init__(self, cmd: EvalCmd, store: _Store, evaluate: Evaluator,
                 experimental: bool = False) -> None:
        self.cmd = cmd
        self.experimental = experimental
        self.store = store
        self.evaluate = evaluate
        self.positions: dict[ir.Node, tuple[int, int]] = {}

    def result(self, outcome: Outcome, reason: str = "") -> BlockResult:
        return BlockResult(self.cmd.line, self.cmd.expr, outcome, reason)

    def run(self) -> BlockResult:
        cmd = self.cmd
        node, diagnostics, self.positions = compile_query(cmd.expr)
        if node is None:
            experimental = experimental_in_text(cmd.expr)
            if experimental and not self.experimental:
                return self.result(Outcome.UNSUPPORTED,
                                   f"experimental function {', '.join(experimental)}")
            errors = [d.message for d in diagnostics if d.severity is Severity.ERROR]
            message = errors[0] if errors else "the expression does not compile"
            if cmd.is_fail() and self.expected_failure(message) is None:
                return self.result(Outcome.PASSED)  # a failure at query creation counts
            return self.result(Outcome.UNSUPPORTED, f"rejected by the compiler: {message}")
        experimental = experimental_in(node)
        if experimental and not self.experimental:
            return self.result(Outcome.UNSUPPORTED,
                               f"experimental function {', '.join(experimental)}")
        if cmd.has_histograms:
            return self.result(Outcome.UNSUPPORTED, "native histograms in the expected result")
        hist = histogram_series_selected(node, self.store.histogram_series)
        if hist:
            more = f" and {len(hist) - 1} more" if len(hist) > 1 else ""
            return self.result(Outcome.UNSUPPORTED, "native histograms in the loaded data "
                               f"({_series_text(hist[0])}{more})")
        try:
            if cmd.is_range:
                self.range_eval(node)
            else:
                self.instant_eval(node)
        except _Fail as e:
            return self.result(Outcome.FAILED, str(e))
        return self.result(Outcome.PASSED)

    # -- evaluation

    def ask(self, node: ir.Node, start: int, end: int, step: int, instant: bool,
            positions: dict[ir.Node, tuple[int, int]]) -> _Answer:
        options = QueryOptions(lookback_ms=LOOKBACK_MS,
                               default_subquery_step_ms=DEFAULT_SUBQUERY_STEP_MS,
                               positions=positions)
        try:
            return _Answer(self.evaluate(node, self.store.source, start, end, step, options,
                                         instant=instant))
        except EvalError as e:
            return _Answer(error=str(e))
        except Exception as e:  # an evaluator bug fails the block, with a readable reason
            return _Answer(error=f"{type(e).__name__}: {e}", crashed=True)

    def range_eval(self, node: ir.Node) -> None:
        cmd = self.cmd
        answer = self.ask(node, cmd.start_ms, cmd.end_ms, cmd.step_ms, False, self.positions)
        if self.settle_failure(answer, ""):
            return
        assert answer.result is not None
        self.check_annotations(answer.result, "")
        self.compare(answer.result, "")

    def instant_eval(self, node: ir.Node) -> None:
        cmd = self.cmd
        queries: list[tuple[ir.Node, int, dict[ir.Node, tuple[int, int]], str]] = [
            (node, cmd.eval_ms, self.positions, "")]
        ts = cmd.eval_ms
        positions = dict(self.positions)
        pinned, unsafe = pin_at(node, ts, positions)
        if not unsafe:
            times = [-10 * ts, 0, ts // 5, ts, 10 * ts] if ts != 0 else [-1000, 0, 1000]
            for et in times:
                queries.append((pinned, et, positions,
                                f"step invariance (@ {_secs(ts)} evaluated at {_secs(et)}): "))
        for q, et, pos, label in queries:
            original = q is node
            self.instant_query(q, et, pos, label, cmd.expr if original else ir.describe(q))

    def instant_query(self, node: ir.Node, et: int, positions: dict[ir.Node, tuple[int, int]],
                      label: str, text: str) -> None:
        cmd = self.cmd
        answer = self.ask(node, et, et, 1, True, positions)
        if self.settle_failure(answer, label):
            return
        assert answer.result is not None
        self.check_annotations(answer.result, label)
        self.compare(answer.result, label)
        if cmd.exclude_from_range or _QUERY_CONTEXT.search(text):
            return
        mode = f"{label}range mode ({_secs(et - 60_000)} to {_secs(et + 60_000)} step 1m): "
        ranged = self.ask(node, et - 60_000, et + 60_000, 60_000, False, positions)
        if ranged.error is not None:
            what = "evaluator crashed" if ranged.crashed else "error"
            raise _Fail(f"{mode}{what}: {ranged.error}")
        if cmd.is_ordered():
            return  # a range query always sorts by labels
        assert ranged.result is not None
        res = ranged.result
        if res.kind != "matrix":
            raise _Fail(f"{mode}a range query returned a {res.kind}, not a matrix")
        self.assert_sorted(res.series, mode)
        points: list[tuple[Labels, float]] = []
        for s in res.series:
            hit = np.nonzero(s.ts == et)[0]
            if len(hit):
                points.append((s.labels, float(s.values[hit[0]])))
        if answer.result.kind == "scalar":
            if not points:
                raise _Fail(f"{mode}no value at {_secs(et)}")
            self.compare_scalar(points[0][1], mode)
        else:
            self.compare_vector(points, mode, ordered=False)

    def settle_failure(self, answer: _Answer, label: str) -> bool:
        """Handle errors and ``expect fail``; True when the query's part is done."""
        cmd = self.cmd
        if answer.crashed:
            raise _Fail(f"{label}evaluator crashed: {answer.error}")
        if answer.error is not None:
            if not cmd.is_fail():
                raise _Fail(f"{label}error: {answer.error}")
            problem = self.expected_failure(answer.error)
            if problem is not None:
                raise _Fail(label + problem)
            return True
        if cmd.is_fail():
            raise _Fail(f"{label}expected an error, got none")
        return False

    def expected_failure(self, message: str) -> str | None:
        """None if ``message`` is an acceptable error, else why not."""
        cmd = self.cmd
        if cmd.fail_message is not None and cmd.fail_message != message:
            return f"expected error {cmd.fail_message!r}, got {message!r}"
        if cmd.fail_regexp is not None and not re2_search(cmd.fail_regexp, message):
            return f"expected an error matching {cmd.fail_regexp!r}, got {message!r}"
        fails = cmd.expects.get("fail", [])
        if fails and not fails[0].matches(message):
            return f"expected an error matching {fails[0].describe()}, got {message!r}"
        return None

    # -- annotations

    def check_annotations(self, res: QueryResult, label: str) -> None:
        cmd = self.cmd
        if cmd.warn and not res.warnings:
            raise _Fail(f"{label}expected warnings, got none")
        if cmd.info and not res.infos:
            raise _Fail(f"{label}expected info annotations, got none")
        for kind, actual in (("warn", res.warnings), ("info", res.infos)):
            wanted = cmd.expects.get(kind, [])
            if not wanted:
                continue
            if not actual:
                raise _Fail(f"{label}expected {kind} annotations, got none")
            for e in wanted:
                if not any(e.matches(a) for a in actual):
                    raise _Fail(f"{label}expected a {kind} annotation matching {e.describe()}, "
                                f"got {_annotations(res)}")
            for a in actual:
                if not any(e.matches(a) for e in wanted):
                    raise _Fail(f"{label}unexpected {kind} annotation {a!r}")
        if cmd.expects.get("no_warn") and res.warnings:
            raise _Fail(f"{label}unexpected warnings: {_annotations(res)}")
        if cmd.expects.get("no_info") and res.infos:
            raise _Fail(f"{label}unexpected info annotations: {_annotations(res)}")

    # -- results

    def compare(self, res: QueryResult, label: str) -> None:
        cmd = self.cmd
        if res.kind == "string":
            if cmd.expected_string is None:
                raise _Fail(f"{label}expected a {self.expected_kind()}, got string "
                            f"{res.string!r}")
            if res.string != cmd.expected_string:
                raise _Fail(f"{label}expected string {cmd.expected_string!r}, got "
                            f"{res.string!r}")
            return
        if cmd.expected_string is not None:
            raise _Fail(f"{label}expected string {cmd.expected_string!r}, got a {res.kind}")
        if res.kind == "scalar":
            if not cmd.expect_scalar:
                value = float(res.series[0].values[0]) if res.series else math.nan
                raise _Fail(f"{label}expected a {self.expected_kind()}, got scalar "
                            f"{format_value(value)}")
            if not res.series or not len(res.series[0].values):
                raise _Fail(f"{label}scalar result without a value")
            self.compare_scalar(float(res.series[0].values[0]), label)
        elif res.kind == "vector" and not cmd.is_range:
            points = [(s.labels, float(s.values[0])) for s in res.series if len(s.values)]
            self.compare_vector(points, label, ordered=cmd.is_ordered())
        elif res.kind in ("matrix", "vector"):
            self.compare_matrix(res.series, label)
        else:
            raise _Fail(f"{label}unknown result kind {res.kind!r}")

    def expected_kind(self) -> str:
        cmd = self.cmd
        if cmd.expected_string is not None:
            return "string"
        if cmd.expect_scalar:
            return "scalar"
        return "matrix" if cmd.is_range or cmd.range_vector else "vector"

    def compare_scalar(self, got: float, label: str) -> None:
        want = self.cmd.scalar
        if not isinstance(want, float):
            raise _Fail(f"{label}expected {format_value(want)}, got scalar {format_value(got)}")
        if not almost_equal(want, got):
            raise _Fail(f"{label}expected scalar {format_value(want)}, got {format_value(got)}")

    def compare_vector(self, points: list[tuple[Labels, float]], label: str,
                       ordered: bool) -> None:
        cmd = self.cmd
        if cmd.expect_scalar:
            shown = ", ".join(f"{_series_text(lb)} {format_value(v)}" for lb, v in points)
            raise _Fail(f"{label}expected scalar {format_value(cmd.scalar)}, got vector "
                        f"[{shown}]")
        seen: set[Labels] = set()
        for pos, (labels, value) in enumerate(points, start=1):
            exp = cmd.expected.get(labels)
            if exp is None:
                raise _Fail(f"{label}unexpected series {_series_text(labels)} "
                            f"{format_value(value)} in the result{self.expected_list()}")
            if labels in seen:
                raise _Fail(f"{label}series {_series_text(labels)} appears twice")
            if ordered and exp.pos != pos:
                raise _Fail(f"{label}expected {_series_text(labels)} at position {exp.pos}, "
                            f"got it at {pos}")
            want = exp.values[0] if exp.values else None
            if not isinstance(want, float):
                raise _Fail(f"{label}expected {format_value(want)} for {_series_text(labels)}, "
                            f"got {format_value(value)}")
            if not almost_equal(want, value):
                raise _Fail(f"{label}expected {format_value(want)} for {_series_text(labels)}, "
                            f"got {format_value(value)}")
            seen.add(labels)
        for labels, exp in cmd.expected.items():
            if labels not in seen:
                got = ", ".join(_series_text(lb) for lb, _ in points) or "an empty result"
                raise _Fail(f"{label}expected series {_series_text(labels)} "
                            f"{' '.join(format_value(v) for v in exp.values)} not found "
                            f"(got {got})")

    def expected_list(self) -> str:
        if not self.cmd.expected:
            return " (expected an empty result)"
        return ""

    def compare_matrix(self, series: list[Series], label: str) -> None:
        cmd = self.cmd
        if cmd.is_ordered():
            raise _Fail(f"{label}expected an ordered result, but the query returned a matrix")
        if cmd.expect_scalar:
            raise _Fail(f"{label}expected scalar {format_value(cmd.scalar)}, got a matrix")
        self.assert_sorted(series, label)
        seen: set[Labels] = set()
        for s in series:
            exp = cmd.expected.get(s.labels)
            got = _points_text(list(s.ts), list(s.values))
            if exp is None:
                raise _Fail(f"{label}unexpected series {_series_text(s.labels)} in the result, "
                            f"with {got}{self.expected_list()}")
            seen.add(s.labels)
            want_ts: list[int] = []
            want_vs: list[float] = []
            for k, v in enumerate(exp.values):
                t = cmd.start_ms + k * cmd.step_ms
                if t > cmd.end_ms:
                    raise _Fail(f"{label}expected {len(exp.values)} points for "
                                f"{_series_text(s.labels)}, but the query range cannot hold "
                                "that many")
                if isinstance(v, float):
                    want_ts.append(t)
                    want_vs.append(v)
            if len(want_ts) != len(s.ts):
                raise _Fail(f"{label}expected {len(want_ts)} points for "
                            f"{_series_text(s.labels)}: {_points_text(want_ts, want_vs)}, "
                            f"got {got}")
            for k, (t, v) in enumerate(zip(want_ts, want_vs, strict=True)):
                at, av = int(s.ts[k]), float(s.values[k])
                if at != t:
                    raise _Fail(f"{label}expected point {k} of {_series_text(s.labels)} at "
                                f"t={t}, got t={at} (result has {got})")
                if not almost_equal(v, av):
                    raise _Fail(f"{label}expected {format_value(v)} at t={t} for "
                                f"{_series_text(s.labels)}, got {format_value(av)} "
                                f"(result has {got})")
        for labels in cmd.expected:
            if labels not in seen:
                raise _Fail(f"{label}expected series {_series_text(labels)} not found")

    def assert_sorted(self, series: list[Series], label: str) -> None:
        for a, b in itertools.pairwise(series):
            if a.labels > b.labels:
                raise _Fail(f"{label}matrix not sorted by labels: {_series_text(a.labels)} "
                            f"comes before {_series_text(b.labels)}")


def _annotations(res: QueryResult) -> str:
    both = list(res.warnings) + list(res.infos)
    return "[" + "; ".join(both) + "]" if both else "none"


def _secs(ms: int) -> str:
    return f"{ms / 1000:g}s"


def evaluator_by_name(name: str) -> Evaluator:
    """``fast`` (vectorised) or ``reference`` (step by step); ImportError if unavailable."""
    modules = {"fast": "monitoring.engine.evaluator", "reference": "monitoring.engine.reference"}
    if name not in modules:
        raise ValueError(f"unknown engine {name!r}: expected fast or reference")
    evaluate: Evaluator | None = getattr(importlib.import_module(modules[name]), "evaluate", None)
    if evaluate is None:
        raise ImportError(f"{modules[name]} has no evaluate()")
    return evaluate
