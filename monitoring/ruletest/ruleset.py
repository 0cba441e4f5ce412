"""The rule files a test file names, loaded exactly as ``monitoring lint`` loads them.

Paths are relative to the test file's folder and may be globs (promtool's
``resolveAndGlobFilepaths``). Any rule format the project reads works:
Prometheus rule files, our DSL (``*.rules``) and the seed's ``alert_rules.yaml``.
Loading or type errors make the whole test file fail, as promtool fails on
``LoadGroups`` errors.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.dsl.compiler import CompiledRule
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.loader import FileFormat, load_paths
from monitoring.lint.runner import compile_workspace
from monitoring.ruletest.model import TestFile

RULE_FORMATS = (FileFormat.PROMETHEUS, FileFormat.DSL, FileFormat.SEED_RULES, FileFormat.EMPTY)


@dataclass(slots=True)
class RuleGroup:
    """One rule group, its rules in file order."""

    file: str
    name: str
    rules: list[CompiledRule] = field(default_factory=list)

    @property
    def labels(self) -> dict[str, str]:
        """The group's ``labels`` (merged under each rule's own)."""
        if not self.rules:
            return {}
        return {p.key: p.value for p in self.rules[0].group_ast.labels}

    @property
    def limit(self) -> int | None:
        """The group's ``limit`` (series per recording rule, alerts per alerting rule)."""
        return self.rules[0].group_ast.limit if self.rules else None

    @property
    def query_offset_ms(self) -> int:
        """The group's ``query_offset``: rules query this much in the past."""
        off = self.rules[0].group_ast.query_offset if self.rules else None
        return off.ms if off is not None else 0


@dataclass(slots=True)
class RuleSet:
    """Every group of the named rule files, or the problems that stopped loading."""

    files: list[str] = field(default_factory=list)
    groups: list[RuleGroup] = field(default_factory=list)
    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def ordered(self, order: list[str]) -> list[RuleGroup]:
        """Groups in ``group_eval_order``; unlisted groups rank with the first listed one.

        This is promtool's partial order (a missing map key reads as 0), made
        deterministic: ties keep file order.
        """
        rank = {name: i for i, name in enumerate(order)}
        return sorted(self.groups, key=lambda g: rank.get(g.name, 0))


def resolve_rule_files(test: TestFile) -> tuple[list[str], list[str]]:
    """The rule files named by a test file (relative to it, globs expanded), and warnings."""
    base = Path(test.path).parent
    out: list[str] = []
    warnings: list[str] = []
    for name in test.rule_files:
        pattern = name if os.path.isabs(name) else str(base / name)
        found = sorted(glob.glob(pattern))
        if not found:
            warnings.append(f"no file match pattern {pattern}")
        out.extend(found)
    return out, warnings


def load_rule_set(test: TestFile) -> RuleSet:
    """Load and compile the rule files of ``test``."""
    files, warnings = resolve_rule_files(test)
    rs = RuleSet(files, warnings=warnings)
    if not files:
        return rs
    ws = load_paths(files)
    for name, fmt in ws.formats.items():
        if fmt not in RULE_FORMATS:
            rs.errors.append(Diagnostic("ruletest/not-rules", Severity.ERROR,
                                        f"not a rule file ({fmt.value})", None, path=name))
    state = compile_workspace(ws)
    rs.errors += [d for d in [*ws.diagnostics, *state.diagnostics]
                  if d.severity is Severity.ERROR]
    by_key: dict[tuple[str, str], RuleGroup] = {}
    for rule in state.program.rules:
        key = (rule.file, rule.group)
        if key not in by_key:
            by_key[key] = RuleGroup(rule.file, rule.group)
            rs.groups.append(by_key[key])
        by_key[key].rules.append(rule)
    return rs
