"""Comparing expected and actual results, and printing the difference as promtool does.

promtool's failure messages are kept word for word (``expr: "x", time: 1m,``
``exp: ... got: ...``, and the ``exp:[ 0: Labels:... ]`` blocks of alert
tests) so people used to them read ours unchanged; below them we add one line
per differing sample or alert (``- missing``, ``+ unexpected``, ``~ value``),
which is what one actually wants to see in a long result.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass

from monitoring.engine.gocompat import labels_string
from monitoring.engine.model import Labels, labels_of
from monitoring.ruletest.histograms import Histogram
from monitoring.templates.functions import format_float

FloatEq = Callable[[float, float], bool]


def exact_equal(x: float, y: float) -> bool:
    """Promtool's default: ``==`` (so NaN never equals NaN)."""
    return x == y


def fuzzy_equal(x: float, y: float) -> bool:
    """``fuzzy_compare: true``: equal, or one ulp apart."""
    return x == y or math.nextafter(x, -math.inf) == y or math.nextafter(x, math.inf) == y


def format_e(value: float) -> str:
    """``strconv.FormatFloat(v, 'E', -1, 64)``: ``1E+00``, ``3.0000000000000004E+00``."""
    return format_float(value, "E", -1)


def go_quote(text: str) -> str:
    """``%q`` of a Go string (close enough: JSON escaping)."""
    return json.dumps(text, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Sample:
    """An expected or actual sample of a ``promql_expr_test``."""

    labels: Labels
    value: float
    histogram: Histogram | None = None

    def text(self) -> str:
        """Promtool's ``parsedSample.String()``."""
        shown = self.histogram.text() if self.histogram is not None else format_e(self.value)
        return f"{labels_string(self.labels)} {shown}"


def samples_text(samples: list[Sample]) -> str:
    """Promtool's ``parsedSamplesString``."""
    return ", ".join(s.text() for s in samples) if samples else "nil"


def samples_equal(exp: list[Sample], got: list[Sample], eq: FloatEq) -> bool:
    """Whether two sorted sample lists are equal (labels exact, values by ``eq``)."""
    if len(exp) != len(got):
        return False
    for e, g in zip(exp, got, strict=True):
        if e.labels != g.labels or (e.histogram is None) != (g.histogram is None):
            return False
        if e.histogram is not None and g.histogram is not None:
            if not e.histogram.equals(g.histogram, eq):
                return False
        elif not eq(e.value, g.value):
            return False
    return True


def sample_diff(exp: list[Sample], got: list[Sample], eq: FloatEq) -> list[str]:
    """One line per label set that differs."""
    want = {s.labels: s for s in exp}
    have = {s.labels: s for s in got}
    lines = []
    for labels in sorted(set(want) | set(have)):
        e, g = want.get(labels), have.get(labels)
        if g is None and e is not None:
            lines.append(f"- missing:    {e.text()}")
        elif e is None and g is not None:
            lines.append(f"+ unexpected: {g.text()}")
        elif e is not None and g is not None and not samples_equal([e], [g], eq):
            lines.append(f"~ differs:    {labels_string(labels)} expected "
                         f"{_shown(e)}, got {_shown(g)}")
    return lines


def _shown(s: Sample) -> str:
    return s.histogram.text() if s.histogram is not None else format_e(s.value)


@dataclass(frozen=True, slots=True, order=True)
class AlertView:
    """An alert as an ``alert_rule_test`` sees it: labels and annotations."""

    labels: Labels
    annotations: Labels

    def text(self) -> str:
        """``Labels:{...}`` and ``Annotations:{...}`` on two lines."""
        return f"Labels:{labels_string(self.labels)}\nAnnotations:{labels_string(self.annotations)}"


def expected_alert(alertname: str, labels: dict[str, str],
                   annotations: dict[str, str]) -> AlertView:
    """An expected alert, ``alertname`` added as promtool adds it."""
    return AlertView(labels_of({**labels, "alertname": alertname}), labels_of(annotations))


def indent_lines(lines: str, indent: str) -> str:
    """Promtool's ``indentLines``: every line but the first gets ``indent``."""
    parts = lines.split("\n")
    return "\n".join([parts[0]] + [indent + p for p in parts[1:]])


def alerts_text(alerts: list[AlertView]) -> str:
    """Promtool's ``labelsAndAnnotations.String()``."""
    if not alerts:
        return "[]"
    blocks = [f"{i}:" + indent_lines("\n" + a.text(), "  ") for i, a in enumerate(alerts)]
    return "[\n" + ",\n".join(blocks) + "\n]"


def alert_diff(exp: list[AlertView], got: list[AlertView]) -> list[str]:
    """One line per alert present on one side only."""
    lines = []
    rest = list(got)
    for e in exp:
        if e in rest:
            rest.remove(e)
        else:
            lines.append(f"- missing:    {labels_string(e.labels)} "
                         f"annotations {labels_string(e.annotations)}")
    lines += [f"+ unexpected: {labels_string(g.labels)} annotations "
              f"{labels_string(g.annotations)}" for g in rest]
    return lines
