"""Rule coverage: which rules of the loaded rule files the tests exercised.

An alerting rule is *covered* when an ``alert_rule_test`` names it or a
``promql_expr_test`` selects its ``ALERTS``/``ALERTS_FOR_STATE`` series with an
``alertname`` matcher (as promtool's ``--coverage`` counts); we also say
whether any alert test saw it firing, since asserting "never fires" only is a
weaker test. A recording rule is covered when a ``promql_expr_test`` selects
its output, or when another rule reads it (its output then feeds something a
test may check; reported separately as ``read by rule``). Only the test groups
selected by ``--run`` count.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from monitoring.dsl import ir
from monitoring.dsl.compiler import CompiledRule, compile_query
from monitoring.engine.memory import matches
from monitoring.engine.model import Matcher
from monitoring.engine.promqltest import walk
from monitoring.ruletest.runner import FileResult


@dataclass(slots=True)
class RuleCoverage:
    """One rule and how the tests touched it."""

    file: str
    group: str
    name: str
    kind: str  # alert | record
    asserted_by: list[str] = field(default_factory=list)  # "alert_rule_test" / "promql_expr_test"
    read_by_rules: list[str] = field(default_factory=list)
    seen_firing: bool = False

    @property
    def covered(self) -> bool:
        """Whether a test exercised the rule."""
        return bool(self.asserted_by or self.read_by_rules)


def _selectors(node: ir.Node | None) -> list[list[Matcher]]:
    if node is None:
        return []
    out = []
    for n in walk(node):
        if isinstance(n, ir.Selector):
            ms = list(n.matchers)
            if n.metric is not None:
                ms.append(("__name__", "=", n.metric))
            out.append(ms)
    return out


def _name_matches(matchers: list[Matcher], name: str) -> bool:
    named = [m for m in matchers if m[0] == "__name__"]
    if not named:
        return False  # a wildcard selector cannot be attributed to a rule
    try:
        return matches((("__name__", name),), named)
    except ValueError:
        return False


def _labels_compatible(rule: CompiledRule, matchers: list[Matcher]) -> bool:
    static = {p.key: p.value for p in rule.group_ast.labels}
    static.update({p.key: p.value for p in rule.rule.labels})
    for name, op, value in matchers:
        if name in ("__name__", "alertname") or name not in static:
            continue
        try:
            if not matches(((name, static[name]),), [(name, op, value)]):
                return False
        except ValueError:
            return False
    return True


def _covers_alert(rule: CompiledRule, matchers: list[Matcher]) -> bool:
    if not (_name_matches(matchers, "ALERTS") or _name_matches(matchers, "ALERTS_FOR_STATE")):
        return False
    named = [m for m in matchers if m[0] == "alertname"]
    if not named:
        return False
    try:
        if not matches((("alertname", rule.name),), named):
            return False
    except ValueError:
        return False
    return _labels_compatible(rule, matchers)


def compute(results: Sequence[FileResult]) -> list[RuleCoverage]:
    """Coverage of every rule loaded by any of the test files."""
    table: dict[tuple[str, str, str, str], RuleCoverage] = {}
    for r in results:
        if r.test is None or r.rules is None:
            continue
        ran = {g.name for g in r.groups}
        groups = [g for g in r.test.groups if g.display_name in ran]
        alert_names = {a.alertname for g in groups for a in g.alert_tests}
        firing = {n for g in r.groups for n in g.alerts_seen_firing}
        expr_selectors: list[list[Matcher]] = []
        for g in groups:
            for t in g.expr_tests:
                node, _, _ = compile_query(t.expr)
                expr_selectors += _selectors(node)
        rules = [rule for grp in r.rules.groups for rule in grp.rules]
        for rule in rules:
            key = (str(Path(rule.file).resolve()), rule.group, rule.name, rule.kind)
            cov = table.setdefault(key, RuleCoverage(_shown_path(rule.file), rule.group,
                                                     rule.name, rule.kind))
            if rule.kind == "alert":
                if rule.name in alert_names and "alert_rule_test" not in cov.asserted_by:
                    cov.asserted_by.append("alert_rule_test")
                if any(_covers_alert(rule, m) for m in expr_selectors) and \
                        "promql_expr_test" not in cov.asserted_by:
                    cov.asserted_by.append("promql_expr_test")
                cov.seen_firing = cov.seen_firing or rule.name in firing
                continue
            if any(_name_matches(m, rule.name) and _labels_compatible(rule, m)
                   for m in expr_selectors) and "promql_expr_test" not in cov.asserted_by:
                cov.asserted_by.append("promql_expr_test")
            if not groups:
                continue
            for other in rules:
                if other is rule:
                    continue
                sels = _selectors(other.condition) + _selectors(other.recover)
                if any(_name_matches(m, rule.name) for m in sels) and \
                        other.name not in cov.read_by_rules:
                    cov.read_by_rules.append(other.name)
    return list(table.values())


def _shown_path(path: str) -> str:
    """A rule file's path, normalised and relative to the working folder when inside it."""
    normal = os.path.normpath(path)
    try:
        rel = os.path.relpath(normal)
    except ValueError:
        return normal
    return normal if rel.startswith("..") else rel


def percentage(rows: Sequence[RuleCoverage]) -> float:
    """Covered rules as a percentage (100 for no rules)."""
    if not rows:
        return 100.0
    return 100.0 * sum(1 for r in rows if r.covered) / len(rows)


def to_json(rows: Sequence[RuleCoverage]) -> dict[str, Any]:
    """The coverage as a JSON-able document."""
    return {
        "rules": [{"file": r.file, "group": r.group, "name": r.name, "kind": r.kind,
                   "covered": r.covered, "asserted_by": r.asserted_by,
                   "read_by_rules": r.read_by_rules,
                   **({"seen_firing": r.seen_firing} if r.kind == "alert" else {})}
                  for r in rows],
        "summary": {"rules": len(rows), "covered": sum(1 for r in rows if r.covered),
                    "percent": round(percentage(rows), 1)},
    }


def write_json(rows: Sequence[RuleCoverage], out: TextIO) -> None:
    """``--coverage-format json``."""
    out.write(json.dumps(to_json(rows), indent=2) + "\n")


def write_table(rows: Sequence[RuleCoverage], out: TextIO, colour: bool) -> None:
    """The coverage as a rich table plus a summary line."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, force_terminal=colour, no_color=not colour, width=160,
                      highlight=False)
    table = Table(title="Rule coverage", title_justify="left")
    for col in ("file", "group", "rule", "kind", "covered by", "note"):
        table.add_column(col)
    for r in rows:
        by = ", ".join(r.asserted_by + [f"rule {n}" for n in r.read_by_rules])
        note = ""
        if r.kind == "alert" and r.asserted_by:
            note = "seen firing" if r.seen_firing else "never seen firing"
        mark = f"[green]{by}[/green]" if by else "[red]not tested[/red]"
        table.add_row(r.file, r.group, r.name, r.kind, mark, note)
    console.print(table)
    covered = sum(1 for r in rows if r.covered)
    console.print(f"Rule coverage: {covered}/{len(rows)} rules ({percentage(rows):.1f}%)")
