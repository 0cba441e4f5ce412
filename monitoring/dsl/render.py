"""Renderers for diagnostics: text with a caret, JSON, and SARIF 2.1.0.

Text looks like a modern compiler's::

    rules/api.rules:12:10: error[type/mismatch]: expected type range vector ...
       |
    12 |     when rate(http_requests_total) > 1
       |               ^^^^^^^^^^^^^^^^^^^
       = hint: add a range: rate(http_requests_total[5m])

Colour is used only when asked (the CLI asks when writing to a terminal and
``NO_COLOR`` is unset). SARIF is what code-scanning UIs read.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitoring.dsl.diagnostics import Diagnostic, Severity

_COLOURS = {
    Severity.ERROR: "\033[1;31m",
    Severity.WARNING: "\033[1;33m",
    Severity.INFO: "\033[1;36m",
}
_BOLD = "\033[1m"
_BLUE = "\033[1;34m"
_RESET = "\033[0m"
_MAX_SNIPPET = 200


@dataclass(frozen=True, slots=True)
class Palette:
    """ANSI codes, or empty strings for plain output."""

    on: bool

    def sev(self, severity: Severity, text: str) -> str:
        """Colour a severity word."""
        return f"{_COLOURS[severity]}{text}{_RESET}" if self.on else text

    def bold(self, text: str) -> str:
        """Bold text."""
        return f"{_BOLD}{text}{_RESET}" if self.on else text

    def gutter(self, text: str) -> str:
        """The line-number gutter."""
        return f"{_BLUE}{text}{_RESET}" if self.on else text


def render_text(diagnostic: Diagnostic, colour: bool = False) -> str:
    """One diagnostic as text, with the source line and a caret under the span."""
    p = Palette(colour)
    head = (f"{p.bold(diagnostic.location())}: "
            f"{p.sev(diagnostic.severity, diagnostic.severity.label)}[{diagnostic.code}]: "
            f"{p.bold(diagnostic.message)}")
    lines = [head]
    span = diagnostic.span
    if span is not None and span.source.text:
        lines.extend(_snippet(span.source, span.start, span.end, p, diagnostic.severity))
    width = len(str(span.line)) if span is not None else 1
    pad = " " * width
    for note, rel in diagnostic.related:
        line, col = rel.source.line_col(rel.start)
        lines.append(f"{pad} {p.gutter('=')} note: {note} at {rel.source.name}:{line}:{col}")
    for hint in diagnostic.hints:
        lines.append(f"{pad} {p.gutter('=')} hint: {hint}")
    return "\n".join(lines)


def _snippet(source: Any, start: int, end: int, p: Palette, severity: Severity) -> list[str]:
    line, col = source.line_col(start)
    end_line, end_col = source.line_col(max(end, start))
    text = source.line_text(line)
    if len(text) > _MAX_SNIPPET:
        # Show a window around the caret on very long lines.
        lo = max(0, col - 1 - _MAX_SNIPPET // 2)
        text = ("..." if lo else "") + text[lo : lo + _MAX_SNIPPET] + "..."
        col = col - lo + (3 if lo else 0)
        if end_line == line:
            end_col = end_col - lo + (3 if lo else 0)
    text = text.replace("\t", " ")
    num = str(line)
    pad = " " * len(num)
    if end_line == line:
        width = max(1, end_col - col)
    else:
        width = max(1, len(text) - col + 1)
    width = min(width, max(1, len(text) - col + 1) if text else 1)
    caret = "^" * width + ("..." if end_line != line else "")
    return [
        f"{pad} {p.gutter('|')}",
        f"{p.gutter(num)} {p.gutter('|')} {text}",
        f"{pad} {p.gutter('|')} {' ' * (col - 1)}{p.sev(severity, caret)}",
    ]


def summarise(diagnostics: Sequence[Diagnostic], files: int, rules: int, dropped: int = 0) -> str:
    """``2 errors, 1 warning in 3 files (12 rules)`` or ``no problems in ...``."""
    counts = Counter(d.severity for d in diagnostics)
    parts = []
    for sev, word in ((Severity.ERROR, "error"), (Severity.WARNING, "warning"),
                      (Severity.INFO, "note")):
        n = counts.get(sev, 0)
        if n:
            parts.append(f"{n} {word}{'s' if n != 1 else ''}")
    where = f"{files} file{'s' if files != 1 else ''} ({rules} rule{'s' if rules != 1 else ''})"
    more = f"; {dropped} more not shown (limit reached)" if dropped else ""
    if not parts:
        return f"no problems in {where}"
    return ", ".join(parts) + f" in {where}{more}"


def to_json(diagnostics: Sequence[Diagnostic]) -> list[dict[str, Any]]:
    """Diagnostics as plain data (1-based lines and columns, end exclusive)."""
    out = []
    for d in diagnostics:
        item: dict[str, Any] = {
            "file": d.file,
            "code": d.code,
            "severity": d.severity.label,
            "message": d.message,
            "hints": list(d.hints),
        }
        if d.span is not None:
            line, col = d.span.source.line_col(d.span.start)
            end_line, end_col = d.span.end_line_col()
            item.update(line=line, column=col, end_line=end_line, end_column=end_col)
        if d.related:
            item["related"] = [
                {"message": note, "file": s.source.name, "line": s.line, "column": s.column}
                for note, s in d.related
            ]
        out.append(item)
    return out


def render_json(diagnostics: Sequence[Diagnostic], summary: Mapping[str, Any]) -> str:
    """The JSON document ``monitoring lint --format json`` prints."""
    return json.dumps({"diagnostics": to_json(diagnostics), "summary": dict(summary)}, indent=2,
                      ensure_ascii=False)


_SARIF_LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}


def render_sarif(
    diagnostics: Sequence[Diagnostic],
    descriptions: Mapping[str, str],
    tool_version: str,
    help_uri: str = "docs/checks.md",
) -> str:
    """SARIF 2.1.0, one run, with a rule entry for every code that occurs."""
    codes = sorted({d.code for d in diagnostics})
    index = {code: i for i, code in enumerate(codes)}
    rules = [
        {
            "id": code,
            "name": code.replace("/", "-"),
            "shortDescription": {"text": descriptions.get(code, code)},
            "helpUri": f"{help_uri}#{code.replace('/', '')}",
        }
        for code in codes
    ]
    results = []
    for d in diagnostics:
        result: dict[str, Any] = {
            "ruleId": d.code,
            "ruleIndex": index[d.code],
            "level": _SARIF_LEVEL[d.severity],
            "message": {"text": d.message + "".join(f"\nhint: {h}" for h in d.hints)},
        }
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(d.file)}}
        if d.span is not None:
            line, col = d.span.source.line_col(d.span.start)
            end_line, end_col = d.span.end_line_col()
            location["region"] = {
                "startLine": line,
                "startColumn": col,
                "endLine": end_line,
                "endColumn": max(end_col, col + 1) if end_line == line else end_col,
            }
        result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    doc = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "monitoring",
                        "version": tool_version,
                        "rules": rules,
                    }
                },
                "columnKind": "unicodeCodePoints",
                "results": results,
            }
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False)


def _uri(path: str) -> str:
    return path.replace("\\", "/") if path else "<input>"
