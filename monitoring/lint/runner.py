"""The lint job: load every file, compile, run the checks, apply suppressions.

This is what ``monitoring lint`` and the library's ``lint_paths`` run. It never
raises on bad input: every problem is a diagnostic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from monitoring.dsl import ast
from monitoring.dsl.compiler import DEFAULT_INTERVAL_MS, CompileState, compile_rule_files
from monitoring.dsl.diagnostics import DEFAULT_ERROR_LIMIT, Diagnostic, DiagnosticBag, Severity
from monitoring.dsl.loader import Workspace, load_paths
from monitoring.dsl.source import SourceFile, Span
from monitoring.gcpause import paused_gc
from monitoring.lint import alerts, promql, references, templates  # noqa: F401  (registers checks)
from monitoring.lint.registry import RULE_CHECKS, RUN_CHECKS, LintContext
from monitoring.lint.suppress import apply, parse_directives, rule_spans, yaml_comments


@dataclass(slots=True)
class LintReport:
    """The outcome of a lint run."""

    diagnostics: list[Diagnostic]
    files: int
    rules: int
    dropped: int = 0

    @property
    def errors(self) -> int:
        """Number of error-level findings."""
        return sum(1 for d in self.diagnostics if d.severity is Severity.ERROR)

    @property
    def warnings(self) -> int:
        """Number of warnings."""
        return sum(1 for d in self.diagnostics if d.severity is Severity.WARNING)


def compile_workspace(ws: Workspace, stop_after: str | None = None) -> CompileState:
    """Compile the rule files of a loaded workspace against its configuration."""
    config = ws.config
    return compile_rule_files(
        [rf for _, rf in ws.rule_files],
        channels=[c.name for c in config.channels],
        policies=[p.name for p in config.policies],
        channels_known=ws.has_notification_config,
        policies_known=ws.has_escalation_policies,
        known_errors=ws.diagnostics,
        stop_after=stop_after,
    )


def lint_paths(paths: Sequence[str | Path], limit: int = DEFAULT_ERROR_LIMIT) -> LintReport:
    """Lint files and folders; the report holds sorted, de-duplicated findings."""
    with paused_gc():
        return _lint(paths, limit)


def _lint(paths: Sequence[str | Path], limit: int) -> LintReport:
    ws = load_paths(paths)
    # Lowering to IR finds no problems of its own, so linting stops after checking.
    state = compile_workspace(ws, stop_after="check")
    ctx = LintContext([rf for _, rf in ws.rule_files], state.env, ws.config)
    for rc in ctx.rules(DEFAULT_INTERVAL_MS):
        if id(rc.rule) in state.failed_rules:
            continue  # a rule with a syntax or type error gets no style advice
        for check in RULE_CHECKS:
            check(ctx, rc)
    for run in RUN_CHECKS:
        run(ctx)
    findings = _suppress(ctx.findings, ws)
    bag = DiagnosticBag(limit)
    bag.extend(ws.diagnostics)
    bag.extend(state.diagnostics)
    bag.extend(findings)
    rules = sum(len(g.rules) for _, rf in ws.rule_files for g in rf.groups)
    return LintReport(bag.sorted(), len(ws.sources), rules, bag.dropped)


def _suppress(findings: list[Diagnostic], ws: Workspace) -> list[Diagnostic]:
    by_file: dict[int, list[Diagnostic]] = {}
    loose: list[Diagnostic] = []
    for d in findings:
        if d.span is None:
            loose.append(d)
        else:
            by_file.setdefault(id(d.span.source), []).append(d)
    rule_files = {id(src): rf for src, rf in ws.rule_files}
    out = list(loose)
    for source in ws.sources:
        comments = _comments(ws, source)
        directives, problems = parse_directives(comments)
        out.extend(problems)
        mine = by_file.pop(id(source), [])
        if not directives:
            out.extend(mine)
            continue
        rf = rule_files.get(id(source))
        spans = rule_spans(rf) if rf is not None else []
        kept, attach_problems = apply(mine, source, directives, spans)
        out.extend(kept)
        out.extend(attach_problems)
    for rest in by_file.values():
        out.extend(rest)
    return out


def _comments(ws: Workspace, source: SourceFile) -> list[tuple[str, Span]]:
    dsl = ws.comments.get(source.name)
    if dsl is not None:
        return [(c.text, c.span) for c in dsl]
    if source.name.endswith((".yaml", ".yml")):
        return list(yaml_comments(source))
    return []


def count_rules(rule_files: Sequence[ast.RuleFile]) -> int:
    """Number of rules in some files."""
    return sum(len(g.rules) for rf in rule_files for g in rf.groups)
