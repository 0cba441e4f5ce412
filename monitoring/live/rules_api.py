"""Rules added through the API: checked like a rule file, kept in the store, audited.

A rule created with ``MonitoringSystem.create_alert_rule`` (the seed's condition dict, or DSL
text) goes through exactly what ``monitoring lint`` does to a file: it is loaded as a virtual
file (``api/<name>.yaml`` or ``api/<name>.rules``) next to the rule files and the
configuration, compiled, and linted. An error-level finding anywhere in it rejects the rule
with :class:`RuleError`, whose message is the rendered diagnostics (``api/x.yaml:3:14:
error[...]``). An accepted rule is stored as its text in the table ``live_api_rules`` so that it
is compiled again, against the configuration of the day, after a restart.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from monitoring.dryrun.ruleset import RuleSet, unpin
from monitoring.dsl import ir
from monitoring.dsl.compiler import DEFAULT_INTERVAL_MS
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.loader import Workspace, load_paths, load_source
from monitoring.dsl.render import render_text
from monitoring.dsl.source import SourceFile
from monitoring.lint.registry import RULE_CHECKS, RUN_CHECKS, LintContext
from monitoring.lint.runner import compile_workspace
from monitoring.notify.model import AuditSink, Clock

API_PREFIX = "api/"
"""Virtual folder of API rules in diagnostics and in a rule's ``file``."""

SEED = "seed"
DSL = "dsl"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_api_rules (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    text VARCHAR NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    created_by VARCHAR NOT NULL
)
"""
_RULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_:.\-]{0,127}\Z")
_DSL_RULE = re.compile(r"\b(?:alert|record)\s+([A-Za-z_:][A-Za-z0-9_:]*)")
_DSL_GROUP = re.compile(r"^\s*(?:#[^\n]*\n\s*)*group\b")


class RuleError(ValueError):
    """A rule was rejected; ``str()`` is the rendered diagnostics (file:line:col: ...)."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = (),
                 field: str | None = None) -> None:
        super().__init__(message)
        self.diagnostics = list(diagnostics)
        self.field = field


@dataclass(frozen=True, slots=True)
class ApiRule:
    """One stored API rule: its text as given (seed rules as a one-item YAML/JSON list)."""

    name: str
    kind: str
    text: str
    created_ms: int = 0
    updated_ms: int = 0
    created_by: str = "api"

    @property
    def source_name(self) -> str:
        """The virtual file the rule is loaded as."""
        return f"{API_PREFIX}{self.name}{'.yaml' if self.kind == SEED else '.rules'}"


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """What ``create_alert_rule`` returns: the accepted rule as the engine will run it."""

    name: str
    kind: str
    file: str
    groups: tuple[str, ...]
    rules: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    text: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "file": self.file,
                "groups": list(self.groups), "rules": list(self.rules),
                "warnings": list(self.warnings), "text": self.text}


class ApiRuleStore:
    """The table ``live_api_rules``: API rules by name (an upsert replaces a rule)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, clock: Clock,
                 audit: AuditSink | None = None) -> None:
        self._conn = conn
        self._clock = clock
        self._audit = audit
        conn.execute(_SCHEMA)

    def all(self) -> list[ApiRule]:
        rows = self._conn.execute(
            "SELECT name, kind, text, created_ms, updated_ms, created_by FROM live_api_rules "
            "ORDER BY name").fetchall()
        return [ApiRule(*row) for row in rows]

    def get(self, name: str) -> ApiRule | None:
        return next((r for r in self.all() if r.name == name), None)

    def put(self, rule: ApiRule, *, by: str = "api") -> ApiRule:
        """Store (or replace) a rule and audit the change (``rule_change``)."""
        now = self._clock.now_ms()
        old = self.get(rule.name)
        stored = replace(rule, created_ms=old.created_ms if old else now, updated_ms=now,
                         created_by=old.created_by if old else by)
        self._conn.execute(
            "INSERT OR REPLACE INTO live_api_rules VALUES (?, ?, ?, ?, ?, ?)",
            [stored.name, stored.kind, stored.text, stored.created_ms, stored.updated_ms,
             stored.created_by])
        self._record("update" if old else "create", stored, by)
        return stored

    def delete(self, name: str, *, by: str = "api") -> ApiRule | None:
        """Remove a rule; returns it, or None when there was none of that name."""
        old = self.get(name)
        if old is not None:
            self._conn.execute("DELETE FROM live_api_rules WHERE name = ?", [name])
            self._record("delete", old, by)
        return old

    def _record(self, action: str, rule: ApiRule, by: str) -> None:
        if self._audit is not None:
            self._audit({"event_type": "rule_change", "action": f"rule.{action}",
                         "severity": "notice", "resource": rule.source_name,
                         "details": {"name": rule.name, "kind": rule.kind, "by": by,
                                     "text": rule.text}})


# ---------------------------------------------------------------- building rule text


def seed_rule(name: Any, condition: Any, severity: Any, channels: Any, *,
              description: str = "", tags: Iterable[str] = (), cooldown: Any = None,
              for_: Any = None, labels: Mapping[str, str] | None = None,
              escalation: str | None = None) -> ApiRule:
    """The seed's ``create_alert_rule`` arguments as a one-rule ``alert_rules.yaml`` text.

    Shapes that JSON cannot carry are reported here, naming the argument; everything else
    (unknown condition types, bad operators, unknown channels) is the compiler's and the
    linter's to report, with a line and column in the text.
    """
    if not isinstance(name, str) or not _RULE_NAME.match(name):
        raise RuleError("name: expected a rule name (letters, digits, '_', ':', '.', '-'; "
                        f"starting with a letter or '_'), got {name!r}", field="name")
    if not isinstance(condition, Mapping):
        raise RuleError(f"condition: expected a mapping such as {{'type': 'threshold', "
                        f"'metric': ..., 'operator': '>', 'value': ...}}, got "
                        f"{type(condition).__name__}", field="condition")
    if isinstance(channels, str):
        channels = [channels]
    rule: dict[str, Any] = {"name": name, "condition": dict(condition)}
    if severity is not None:
        rule["severity"] = severity
    if channels:
        rule["channels"] = list(channels)
    if description:
        rule["description"] = description
    if tags:
        rule["tags"] = list(tags)
    if cooldown is not None:
        rule["cooldown"] = cooldown
    if for_ is not None:
        rule["for"] = for_
    if labels:
        rule["labels"] = dict(labels)
    if escalation is not None:
        rule["escalation_policy"] = escalation
    try:
        text = json.dumps([rule], indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise RuleError(f"the rule cannot be written as YAML: {exc}", field="condition") \
            from None
    return ApiRule(name, SEED, text + "\n")


def dsl_rule(text: Any, name: str | None = None) -> ApiRule:
    """DSL text as an API rule: a whole file (``group ... { ... }``) or bare rules.

    Bare ``alert``/``record`` blocks are put in a group named after the rule; the group's
    opening is added on the first line so that every other line keeps its number.
    """
    if not isinstance(text, str) or not text.strip():
        raise RuleError("dsl: expected the text of one or more rules", field="dsl")
    if name is None:
        found = _DSL_RULE.search(text)
        if found is None:
            raise RuleError("dsl: no 'alert NAME { ... }' or 'record NAME = ...' in the text",
                            field="dsl")
        name = found.group(1)
    if not _RULE_NAME.match(name):
        raise RuleError(f"name: expected a rule name, got {name!r}", field="name")
    if not _DSL_GROUP.match(text):
        group = re.sub(r"[^A-Za-z0-9_]", "_", name)
        text = f"group {group} {{ {text.rstrip()}\n}}\n"
    return ApiRule(name, DSL, text)


# ---------------------------------------------------------------- checking and compiling


def load_workspace(paths: Sequence[str | Path], rules: Iterable[ApiRule]) -> Workspace:
    """The files of ``paths`` plus the API rules, loaded as ``monitoring lint`` loads them."""
    ws = load_paths(paths)
    for rule in rules:
        load_source(ws, SourceFile(rule.source_name, rule.text))
    return ws


def check_workspace(ws: Workspace) -> list[Diagnostic]:
    """Every diagnostic of the loader, the compiler's checks and the lint checks."""
    state = compile_workspace(ws, stop_after="check")
    ctx = LintContext([rf for _, rf in ws.rule_files], state.env, ws.config)
    for rc in ctx.rules(DEFAULT_INTERVAL_MS):
        if id(rc.rule) not in state.failed_rules:
            for check in RULE_CHECKS:
                check(ctx, rc)
    for run in RUN_CHECKS:
        run(ctx)
    found = [*ws.diagnostics, *state.diagnostics, *ctx.findings]
    return sorted(found, key=Diagnostic.sort_key)


def in_file(diagnostics: Iterable[Diagnostic], name: str) -> list[Diagnostic]:
    """The diagnostics located in file ``name``."""
    return [d for d in diagnostics if d.file == name]


def render(diagnostics: Iterable[Diagnostic]) -> str:
    """Diagnostics as ``monitoring lint`` prints them (no colour)."""
    return "\n".join(render_text(d) for d in diagnostics)


def errors(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return [d for d in diagnostics if d.severity is Severity.ERROR]


def compile_rule_set(ws: Workspace, skip: Iterable[str] = ()) -> RuleSet:
    """The workspace compiled into the rule set the live evaluator runs.

    Files named in ``skip`` (API rules that no longer pass) are left out. Raises
    :class:`RuleError` when the rest has errors (a rule file of ``paths``).
    """
    skipped = set(skip)
    if skipped:
        kept = Workspace()
        for source in ws.sources:
            if source.name not in skipped:
                load_source(kept, source)
        ws = kept
    state = compile_workspace(ws)
    bad = errors([*ws.diagnostics, *state.diagnostics])
    if bad:
        raise RuleError(render(bad), bad)
    memo: dict[ir.Node, ir.Node] = {}
    rules = [replace(r, condition=unpin(r.condition, memo),
                     recover=None if r.recover is None else unpin(r.recover, memo))
             for r in state.program.rules]
    paths = tuple(s.name for s in ws.sources)
    return RuleSet(paths, rules, tuple(c.name.value for c in ws.config.channels))


def load_rule_set(paths: Sequence[str | Path], stored: Sequence[ApiRule]
                  ) -> tuple[RuleSet, dict[str, str]]:
    """The rule files and the stored API rules compiled together (engine start, reload).

    An API rule that no longer passes (the configuration changed under it) is left out and
    returned with its rendered errors, by name; errors in the files raise :class:`RuleError`.
    """
    ws = load_workspace(paths, stored)
    found = errors(check_workspace(ws))
    broken = {r.name: render(in_file(found, r.source_name)) for r in stored
              if in_file(found, r.source_name)}
    skip = [r.source_name for r in stored if r.name in broken]
    return compile_rule_set(ws, skip), broken


def validate(paths: Sequence[str | Path], stored: Iterable[ApiRule], candidate: ApiRule
             ) -> tuple[RuleSet, list[Diagnostic]]:
    """Check ``candidate`` among the files and the other API rules.

    Returns the rule set to run and the candidate's warnings; raises :class:`RuleError`
    with the candidate's error-level diagnostics rendered.
    """
    others = [r for r in stored if r.name != candidate.name]
    ws = load_workspace(paths, [*others, candidate])
    found = check_workspace(ws)
    mine = in_file(found, candidate.source_name)
    bad = errors(mine)
    if bad:
        raise RuleError(render(bad), bad)
    broken = {d.file for d in errors(found)} & {r.source_name for r in others}
    return compile_rule_set(ws, broken), [d for d in mine if d not in bad]


def info(rule: ApiRule, rule_set: RuleSet, warnings: Sequence[Diagnostic] = ()) -> RuleInfo:
    """What the engine made of an accepted API rule."""
    mine = [r for r in rule_set.rules if r.file == rule.source_name]
    return RuleInfo(rule.name, rule.kind, rule.source_name,
                    tuple(dict.fromkeys(r.group for r in mine)), tuple(r.name for r in mine),
                    tuple(render_text(d) for d in warnings), rule.text)
