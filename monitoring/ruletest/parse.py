"""Reading a test file: YAML -> :class:`~monitoring.ruletest.model.TestFile`.

Strict like promtool's ``yaml.UnmarshalStrict``: an unknown field, a value of
the wrong type, a bad duration, a bad series notation or an unparsable label
set is an error. Unlike promtool, every error is reported (not only the
first) and each names ``file:line:col`` with a caret under the value, because
the YAML loader (:mod:`monitoring.dsl.yaml_source`) remembers where each value
came from.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.source import SourceFile, Span
from monitoring.dsl.yaml_source import YamlDocument, YamlPath, load_yaml
from monitoring.engine.model import Labels
from monitoring.engine.promqltest import parse_series_line
from monitoring.ruletest.durations import parse_model_duration
from monitoring.ruletest.histograms import parse_histogram, parse_input_values
from monitoring.ruletest.model import (
    DEFAULT_EVALUATION_INTERVAL_MS,
    AlertTest,
    ExpAlert,
    ExprTest,
    ExpSample,
    InputSeries,
    TestFile,
    TestGroup,
)

TOP_FIELDS = ("rule_files", "evaluation_interval", "group_eval_order", "tests", "fuzzy_compare")
GROUP_FIELDS = ("interval", "input_series", "alert_rule_test", "promql_expr_test",
                "external_labels", "external_url", "name", "start_timestamp")
SERIES_FIELDS = ("series", "values")
ALERT_FIELDS = ("eval_time", "alertname", "exp_alerts")
EXP_ALERT_FIELDS = ("exp_labels", "exp_annotations")
EXPR_FIELDS = ("expr", "eval_time", "exp_samples")
SAMPLE_FIELDS = ("labels", "value", "histogram")


class TestFileError(Exception):
    """A test file that cannot be run; ``diagnostics`` says where and why."""

    __test__ = False

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        super().__init__("; ".join(f"{d.location()}: {d.message}" for d in diagnostics))
        self.diagnostics = diagnostics


def parse_metric(text: str) -> Labels:
    """``name{a="b"}`` (or ``{a="b"}``, or ``""`` for no labels) -> a label set."""
    if not text.strip():
        return ()
    labels, _ = parse_series_line(text.strip() + " 0")
    return labels


def load_test_file(path: str | Path) -> TestFile:
    """Read and parse a test file; raises :class:`TestFileError` (or OSError)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TestFileError([Diagnostic("ruletest/encoding", Severity.ERROR,
                                        f"file is not valid UTF-8 (line {line})", None,
                                        path=str(path))]) from None
    return parse_test_file(SourceFile(str(path), text.removeprefix("\ufeff")))


def parse_test_file(source: SourceFile) -> TestFile:
    """Parse a test file's text; raises :class:`TestFileError` listing every problem."""
    doc = load_yaml(source)
    reader = _Reader(doc)
    errors = [d for d in doc.diagnostics if d.severity is Severity.ERROR]
    if errors:
        raise TestFileError(errors)
    result = reader.file()
    if reader.errors:
        raise TestFileError(reader.errors)
    return result


class _Reader:
    """Walks the loaded document, converting values and collecting errors."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.errors: list[Diagnostic] = []

    # ------------------------------------------------------------ helpers

    def span(self, path: YamlPath) -> Span:
        return self.doc.value_span(path)

    def error(self, path: YamlPath, message: str, *hints: str, key: bool = False) -> None:
        span = self.doc.key_span(path) if key else self.span(path)
        self.errors.append(Diagnostic("ruletest/invalid", Severity.ERROR, message, span,
                                      tuple(hints)))

    def mapping(self, path: YamlPath, value: Any, fields: tuple[str, ...],
                what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"{what} must be a mapping, not {_kind(value)}")
            return {}
        for key in value:
            if key not in fields:
                hint = did_you_mean(str(key), fields)
                self.error((*path, key), f"field {key} not found in {what}",
                           *((hint,) if hint else ()), f"allowed: {', '.join(fields)}", key=True)
        return value

    def sequence(self, path: YamlPath, value: Any, what: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(path, f"{what} must be a list, not {_kind(value)}")
            return []
        return value

    def text(self, path: YamlPath, value: Any, what: str) -> str | None:
        """A string field; plain numbers are taken as their text, as yaml.v2 does."""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        raw = self.doc.text(path)
        if isinstance(value, int | float) and not isinstance(value, bool) and raw is not None:
            return raw
        self.error(path, f"{what} must be a string, not {_kind(value)}")
        return None

    def duration(self, path: YamlPath, value: Any, what: str, default: int = 0) -> int:
        if value is None:
            return default
        text = self.text(path, value, what)
        if text is None:
            return default
        try:
            return parse_model_duration(text)
        except ValueError as e:
            self.error(path, f"{what}: {e}", "durations look like 0, 30s, 5m, 1h30m, 1d")
            return default

    def string_map(self, path: YamlPath, value: Any, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error(path, f"{what} must be a mapping of strings, not {_kind(value)}")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            text = self.text((*path, k), v, f"{what}.{k}")
            if text is not None:
                out[str(k)] = text
        return out

    def items(self, path: YamlPath, value: Any, what: str,
              read: Callable[[YamlPath, Any], Any]) -> list[Any]:
        out = []
        for i, item in enumerate(self.sequence(path, value, what)):
            got = read((*path, i), item)
            if got is not None:
                out.append(got)
        return out

    # ------------------------------------------------------------ the format

    def file(self) -> TestFile:
        source = self.doc.source
        root = self.doc.data
        if root is None:
            self.errors.append(Diagnostic("ruletest/empty", Severity.ERROR,
                                          "the test file is empty", Span(source, 0, 0),
                                          ("a test file needs at least `tests:`",)))
            return TestFile(source.name, [], [])
        top = self.mapping((), root, TOP_FIELDS, "the test file")
        rule_files: list[str] = []
        spans: list[Span] = []
        for i, item in enumerate(self.sequence(("rule_files",), top.get("rule_files"),
                                               "rule_files")):
            text = self.text(("rule_files", i), item, "a rule file")
            if text:
                rule_files.append(text)
                spans.append(self.span(("rule_files", i)))
        interval = self.duration(("evaluation_interval",), top.get("evaluation_interval"),
                                 "evaluation_interval", DEFAULT_EVALUATION_INTERVAL_MS)
        if interval == 0:
            interval = DEFAULT_EVALUATION_INTERVAL_MS
        order = [t for i, g in enumerate(self.sequence(("group_eval_order",),
                                                       top.get("group_eval_order"),
                                                       "group_eval_order"))
                 if (t := self.text(("group_eval_order", i), g, "a group name")) is not None]
        seen: set[str] = set()
        for i, name in enumerate(order):
            if name in seen:
                self.error(("group_eval_order", i),
                           f"group name repeated in evaluation order: {name}")
            seen.add(name)
        fuzzy = top.get("fuzzy_compare", False)
        if not isinstance(fuzzy, bool):
            self.error(("fuzzy_compare",), "fuzzy_compare must be true or false")
            fuzzy = False
        tf = TestFile(source.name, rule_files, spans, interval, order, fuzzy)
        for i, item in enumerate(self.sequence(("tests",), top.get("tests"), "tests")):
            tf.groups.append(self.group(("tests", i), item, i, interval))
        return tf

    def group(self, path: YamlPath, value: Any, index: int, eval_interval: int) -> TestGroup:
        m = self.mapping(path, value, GROUP_FIELDS, "a test group")
        name = self.text((*path, "name"), m.get("name"), "name") or ""
        interval = self.duration((*path, "interval"), m.get("interval"), "interval")
        group = TestGroup(index, name, interval or eval_interval,
                          self.start((*path, "start_timestamp"), m.get("start_timestamp")),
                          span=self.span(path))
        group.external_labels = self.string_map((*path, "external_labels"),
                                                m.get("external_labels"), "external_labels")
        group.external_url = self.text((*path, "external_url"), m.get("external_url"),
                                       "external_url") or ""
        group.input_series = self.items((*path, "input_series"), m.get("input_series"),
                                        "input_series", self.series)
        group.alert_tests = self.items((*path, "alert_rule_test"), m.get("alert_rule_test"),
                                       "alert_rule_test", self.alert_test)
        group.expr_tests = self.items((*path, "promql_expr_test"), m.get("promql_expr_test"),
                                      "promql_expr_test", self.expr_test)
        return group

    def start(self, path: YamlPath, value: Any) -> int:
        """``start_timestamp``: Unix seconds or RFC 3339 (promtool's ``parseTime``)."""
        if value is None:
            return 0
        text = self.text(path, value, "start_timestamp")
        if text is None:
            return 0
        try:
            seconds = float(text)
            if math.isfinite(seconds):
                return round(seconds * 1000)
        except ValueError:
            pass
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            stamp = None
        if stamp is None or stamp.tzinfo is None:
            self.error(path, f"cannot parse {text!r} to a valid timestamp",
                       "use Unix seconds (1609459200) or RFC 3339 (2024-01-01T00:00:00Z)")
            return 0
        return round(stamp.timestamp() * 1000)

    def series(self, path: YamlPath, value: Any) -> InputSeries | None:
        m = self.mapping(path, value, SERIES_FIELDS, "an input series")
        text = self.text((*path, "series"), m.get("series"), "series")
        values = self.text((*path, "values"), m.get("values"), "values")
        if text is None or values is None:
            return None
        if not text.strip():
            self.error(path, "an input series needs `series:` (a metric name or {labels})")
            return None
        try:
            labels = parse_metric(text)
        except ValueError as e:
            self.error((*path, "series"), f"bad series {text!r}: {e}")
            return None
        try:
            expanded = parse_input_values(values)
        except ValueError as e:
            self.error((*path, "values"), f"bad values {values!r}: {e}",
                       "notation: 1 2 3, 1+1x3, 5x2, 10-2x4, _ (missing), _x3, stale")
            return None
        return InputSeries(labels, expanded, self.span(path))

    def alert_test(self, path: YamlPath, value: Any) -> AlertTest | None:
        m = self.mapping(path, value, ALERT_FIELDS, "an alert_rule_test item")
        eval_time = self.duration((*path, "eval_time"), m.get("eval_time"), "eval_time")
        alertname = self.text((*path, "alertname"), m.get("alertname"), "alertname") or ""
        if not alertname:
            self.error(path, "an item under alert_rule_test misses required attribute alertname")
        exp = []
        for i, item in enumerate(self.sequence((*path, "exp_alerts"), m.get("exp_alerts"),
                                               "exp_alerts")):
            ip = (*path, "exp_alerts", i)
            am = self.mapping(ip, item, EXP_ALERT_FIELDS, "an exp_alerts item")
            exp.append(ExpAlert(self.string_map((*ip, "exp_labels"), am.get("exp_labels"),
                                                "exp_labels"),
                                self.string_map((*ip, "exp_annotations"),
                                                am.get("exp_annotations"), "exp_annotations")))
        return AlertTest(eval_time, alertname, exp, self.span(path))

    def expr_test(self, path: YamlPath, value: Any) -> ExprTest | None:
        m = self.mapping(path, value, EXPR_FIELDS, "a promql_expr_test item")
        expr = self.text((*path, "expr"), m.get("expr"), "expr")
        eval_time = self.duration((*path, "eval_time"), m.get("eval_time"), "eval_time")
        if expr is None:
            return None
        samples = self.items((*path, "exp_samples"), m.get("exp_samples"), "exp_samples",
                             self.sample)
        return ExprTest(expr, eval_time, samples, self.span(path), self.span((*path, "expr")))

    def sample(self, path: YamlPath, value: Any) -> ExpSample | None:
        m = self.mapping(path, value, SAMPLE_FIELDS, "an exp_samples item")
        text = self.text((*path, "labels"), m.get("labels"), "labels")
        raw = m.get("value", 0.0)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            self.error((*path, "value"), f"value must be a number, not {_kind(raw)}")
            raw = 0.0
        histogram = self.text((*path, "histogram"), m.get("histogram"), "histogram") or None
        if text is None:
            return None
        try:
            labels = parse_metric(text)
        except ValueError as e:
            self.error((*path, "labels"), f"bad labels {text!r}: {e}")
            return None
        if histogram is not None:
            try:
                parse_histogram(histogram)
            except ValueError as e:
                self.error((*path, "histogram"), f"bad histogram: {e}")
                return None
        return ExpSample(labels, float(raw), histogram)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__

