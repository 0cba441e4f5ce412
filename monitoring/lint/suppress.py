"""Suppression comments: ``# monitoring: disable CODE`` per rule, ``disable-file`` per file.

A ``disable`` comment applies to the rule it is written in, or to the rule that
follows it directly (only blank and comment lines in between). A
``disable-file`` comment applies to the whole file. A code may name one check
(``alert/missing-summary``) or a whole family (``promql`` or ``promql/*``).
Only lint checks can be disabled: syntax and type errors make a rule unusable
and are always reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.source import SourceFile, Span
from monitoring.lint.registry import CHECKS

_DIRECTIVE = re.compile(r"#\s*monitoring:\s*(disable-file|disable)\b(.*)$")
_YAML_COMMENT = re.compile(r"(?:^|[ \t])(#[^\n]*)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Directive:
    """One parsed suppression comment."""

    file_wide: bool
    codes: tuple[str, ...]
    span: Span


def _families() -> set[str]:
    return {code.split("/")[0] for code in CHECKS}


def parse_directives(
    comments: Iterable[tuple[str, Span]],
) -> tuple[list[Directive], list[Diagnostic]]:
    """Read suppression directives from comments; report unknown codes."""
    directives: list[Directive] = []
    diags: list[Diagnostic] = []
    families = _families()
    for text, span in comments:
        m = _DIRECTIVE.search(text)
        if m is None:
            continue
        codes = tuple(c for c in re.split(r"[\s,]+", m.group(2).strip()) if c)
        if not codes:
            diags.append(Diagnostic("lint/bad-suppression", Severity.WARNING,
                                    "suppression comment names no check", span,
                                    ("write: # monitoring: disable alert/missing-summary",)))
            continue
        for code in codes:
            family = code.removesuffix("/*")
            if code in CHECKS or family in families:
                continue
            hint = did_you_mean(code, list(CHECKS)) or ""
            diags.append(Diagnostic("lint/bad-suppression", Severity.WARNING,
                                    f"unknown check {code!r} in suppression comment", span,
                                    (hint,) if hint else ()))
        directives.append(Directive(m.group(1) == "disable-file", codes, span))
    return directives, diags


def yaml_comments(source: SourceFile) -> list[tuple[str, Span]]:
    """The ``#`` comments of a YAML file (a ``#`` at line start or after a blank)."""
    out = []
    for m in _YAML_COMMENT.finditer(source.text):
        if "monitoring:" in m.group(1):
            out.append((m.group(1), Span(source, m.start(1), m.end(1))))
    return out


def _matches(directive_code: str, code: str) -> bool:
    family = directive_code.removesuffix("/*")
    return code == directive_code or code.split("/")[0] == family


def rule_spans(rule_file: ast.RuleFile) -> list[Span]:
    """The spans of every rule of a file, in source order."""
    spans = [r.span for g in rule_file.groups for r in g.rules if r.span is not None]
    return sorted(spans, key=lambda s: s.start)


def apply(
    diagnostics: Sequence[Diagnostic],
    source: SourceFile,
    directives: Sequence[Directive],
    rules: Sequence[Span],
) -> tuple[list[Diagnostic], list[Diagnostic]]:
    """Drop suppressed lint findings of one file; return (kept, problems with directives)."""
    problems: list[Diagnostic] = []
    scopes: list[tuple[int, int, tuple[str, ...]]] = []
    for d in directives:
        if d.file_wide:
            scopes.append((0, len(source.text) + 1, d.codes))
            continue
        target = _target_rule(source, d.span, rules)
        if target is None:
            problems.append(Diagnostic(
                "lint/bad-suppression", Severity.WARNING,
                "suppression comment is not attached to a rule", d.span,
                ("put it directly above the rule or inside it; use disable-file for the whole "
                 "file",)))
            continue
        scopes.append((target.start, target.end, d.codes))
    kept = []
    for diag in diagnostics:
        if diag.code in CHECKS and diag.span is not None and diag.span.source is source and any(
            start <= diag.span.start < end and any(_matches(c, diag.code) for c in codes)
            for start, end, codes in scopes
        ):
            continue
        kept.append(diag)
    return kept, problems


def _target_rule(source: SourceFile, comment: Span, rules: Sequence[Span]) -> Span | None:
    for rule in rules:
        if rule.start <= comment.start < rule.end:
            return rule
    text = source.text
    for rule in rules:
        if rule.start < comment.end:
            continue
        between = text[comment.end : rule.start]
        lines = between.split("\n")[1:]
        if all(not line.strip() or line.strip().startswith("#") or line.strip() == "-"
               for line in lines[:-1]) and lines[-1].strip() in ("", "-"):
            return rule
        return None
    return None
