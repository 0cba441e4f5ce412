"""The catalogue of lint checks: one entry per diagnostic code.

Every check declares its code, default severity, a one-line summary and a
documentation paragraph; ``docs/checks.md`` is generated from this catalogue
(plus the golden bad example of each check), and a test fails when the page is
stale or when a check has no golden example.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.source import Span

if TYPE_CHECKING:
    from monitoring.dsl.config import Config
    from monitoring.dsl.env import Environment


@dataclass(frozen=True, slots=True)
class CheckInfo:
    """What one check finds and why it matters."""

    code: str
    severity: Severity
    summary: str
    doc: str


@dataclass(slots=True)
class RuleContext:
    """One rule as a check sees it, with what surrounds it."""

    rule: ast.AlertRule | ast.RecordingRule
    group: ast.Group
    file: ast.RuleFile
    env: Environment
    interval_ms: int
    _nodes: list[ast.Expr] | None = None

    def nodes(self) -> list[ast.Expr]:
        """Every expression node of the rule (condition and recovery), walked once."""
        if self._nodes is None:
            rule = self.rule
            roots = [rule.expr] if rule.expr is not None else []
            if isinstance(rule, ast.AlertRule) and rule.recover_expr is not None:
                roots.append(rule.recover_expr)
            self._nodes = [node for root in roots for node in ast.walk(root)]
        return self._nodes


@dataclass(slots=True)
class LintContext:
    """The whole run as a check sees it."""

    rule_files: list[ast.RuleFile]
    env: Environment
    config: Config | None
    findings: list[Diagnostic] = field(default_factory=list)

    def report(self, code: str, message: str, span: Span | None, *hints: str,
               severity: Severity | None = None,
               related: tuple[tuple[str, Span], ...] = ()) -> None:
        """Record a finding of a declared check (its default severity unless overridden)."""
        info = CHECKS[code]
        self.findings.append(Diagnostic(code, severity or info.severity, message, span,
                                        tuple(h for h in hints if h), related=related))

    def rules(self, default_interval_ms: int) -> Iterator[RuleContext]:
        """Every rule of every group."""
        for rf in self.rule_files:
            for group in rf.groups:
                interval = group.interval.ms if group.interval is not None else default_interval_ms
                for rule in group.rules:
                    yield RuleContext(rule, group, rf, self.env, interval)


CHECKS: dict[str, CheckInfo] = {}

RuleCheck = Callable[[LintContext, RuleContext], None]
RunCheck = Callable[[LintContext], None]
RULE_CHECKS: list[RuleCheck] = []
RUN_CHECKS: list[RunCheck] = []


def declare(code: str, severity: Severity, summary: str, doc: str) -> CheckInfo:
    """Add a check to the catalogue (once per code)."""
    if code in CHECKS:
        raise ValueError(f"check {code!r} declared twice")
    info = CheckInfo(code, severity, summary, " ".join(doc.split()))
    CHECKS[code] = info
    return info


def rule_check(fn: RuleCheck) -> RuleCheck:
    """Register a function run once per rule."""
    RULE_CHECKS.append(fn)
    return fn


def run_check(fn: RunCheck) -> RunCheck:
    """Register a function run once per lint run (cross-rule and cross-file checks)."""
    RUN_CHECKS.append(fn)
    return fn
