"""The compiler driver: loaded rule files -> checked, lowered evaluation graph.

Compilation runs as named passes in a fixed order (as OPA's compiler and
sqlglot's optimizer do); each pass is a function of the state so far, and the
driver can stop after any of them. All diagnostics of all passes are kept: a
rule with an error is not lowered, but the others still are.

    resolve  collect declarations (metrics, recording rules, channels, policies)
    check    type-check every rule expression
    lower    lower expressions to IR, sharing identical sub-expressions
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from monitoring.dsl import ast, ir
from monitoring.dsl.checker import Checker
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.env import Environment, build_environment
from monitoring.dsl.lower import Interner, Lowerer

DEFAULT_INTERVAL_MS = 60_000
"""Prometheus's default ``evaluation_interval``: groups without ``interval`` use it."""


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """One rule ready to evaluate."""

    file: str
    group: str
    name: str
    kind: str  # "alert" | "record"
    interval_ms: int
    condition: ir.Node
    recover: ir.Node | None
    rule: ast.AlertRule | ast.RecordingRule = field(compare=False, repr=False)
    group_ast: ast.Group = field(compare=False, repr=False)

    @property
    def roots(self) -> list[ir.Node]:
        """The expressions the rule evaluates: its condition, and its recovery condition."""
        return [self.condition] + ([self.recover] if self.recover is not None else [])

    @property
    def qualified_name(self) -> str:
        """``group/name``, unique enough to show to users."""
        return f"{self.group}/{self.name}"


@dataclass(slots=True)
class Program:
    """The evaluation graph of a rule set."""

    rules: list[CompiledRule] = field(default_factory=list)
    nodes: list[ir.Node] = field(default_factory=list)  # topological: inputs first

    def users(self) -> dict[ir.Node, list[str]]:
        """For every node, the rules whose expressions contain it."""
        out: dict[ir.Node, list[str]] = {}
        for rule in self.rules:
            seen: set[int] = set()
            stack = list(rule.roots)
            while stack:
                node = stack.pop()
                if id(node) in seen:
                    continue
                seen.add(id(node))
                out.setdefault(node, []).append(rule.qualified_name)
                stack.extend(node.children())
        return out


@dataclass(slots=True)
class CompileState:
    """What the passes share."""

    rule_files: Sequence[ast.RuleFile]
    channels: Sequence[ast.Name] = ()
    policies: Sequence[ast.Name] = ()
    channels_known: bool = False
    policies_known: bool = False
    env: Environment = field(default_factory=Environment)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    failed_rules: set[int] = field(default_factory=set)  # id() of rules with errors
    known_errors: Sequence[Diagnostic] = ()  # from loading: rules holding them are skipped
    program: Program = field(default_factory=Program)


def _resolve(state: CompileState) -> None:
    env, diags = build_environment(state.rule_files, state.channels, state.policies,
                                   state.channels_known, state.policies_known)
    state.env = env
    state.diagnostics.extend(diags)


def _check(state: CompileState) -> None:
    _mark_rules_with_errors(state)
    for rf in state.rule_files:
        checker_diags: list[Diagnostic] = []
        compat = rf.kind is ast.FileKind.PROMETHEUS
        checker = Checker(checker_diags.append, prometheus_compat=compat)
        for group in rf.groups:
            for rule in group.rules:
                if id(rule) in state.failed_rules:
                    continue  # its syntax error is reported; its types would only echo it
                before = len(checker_diags)
                what = "an alert condition" if isinstance(rule, ast.AlertRule) else \
                    "a recorded expression"
                if rule.expr is not None:
                    checker.check_root(rule.expr, what)
                else:
                    state.failed_rules.add(id(rule))
                if isinstance(rule, ast.AlertRule) and rule.recover_expr is not None:
                    checker.check_root(rule.recover_expr, "a recovery condition")
                if any(d.severity is Severity.ERROR for d in checker_diags[before:]):
                    state.failed_rules.add(id(rule))
        state.diagnostics.extend(checker_diags)


def _mark_rules_with_errors(state: CompileState) -> None:
    """Rules holding an error found before compilation (a bad string, a bad duration)."""
    errors = [d.span for d in state.known_errors if d.severity is Severity.ERROR and d.span]
    if not errors:
        return
    for rf in state.rule_files:
        for group in rf.groups:
            for rule in group.rules:
                span = rule.span
                if span is not None and any(
                    e.source is span.source and span.start <= e.start < span.end for e in errors
                ):
                    state.failed_rules.add(id(rule))


def _lower(state: CompileState) -> None:
    intern = Interner()
    program = state.program
    for rf in state.rule_files:
        file = rf.span.source.name if rf.span is not None else ""
        for group in rf.groups:
            interval = group.interval.ms if group.interval is not None else DEFAULT_INTERVAL_MS
            for rule in group.rules:
                if id(rule) in state.failed_rules or rule.expr is None:
                    continue
                unit = rule.unit if isinstance(rule, ast.AlertRule) else None
                lowerer = Lowerer(state.env, intern, unit)
                condition = lowerer.lower_root(rule.expr)
                recover = None
                if isinstance(rule, ast.AlertRule) and rule.recover_expr is not None:
                    recover = lowerer.lower_root(rule.recover_expr)
                program.rules.append(CompiledRule(
                    file, group.name.value, rule.name.value,
                    "alert" if isinstance(rule, ast.AlertRule) else "record",
                    interval, condition, recover, rule, group,
                ))
    # Interning is bottom-up, so the table is in topological order already. Constants
    # folded away may linger in it; they are never listed on their own.
    program.nodes = list(intern)


PASSES: tuple[tuple[str, Callable[[CompileState], None]], ...] = (
    ("resolve", _resolve),
    ("check", _check),
    ("lower", _lower),
)


def compile_rule_files(
    rule_files: Sequence[ast.RuleFile],
    *,
    channels: Sequence[ast.Name] = (),
    policies: Sequence[ast.Name] = (),
    channels_known: bool = False,
    policies_known: bool = False,
    known_errors: Sequence[Diagnostic] = (),
    stop_after: str | None = None,
) -> CompileState:
    """Run the passes over loaded rule files; stop after ``stop_after`` if given."""
    names = [n for n, _ in PASSES]
    if stop_after is not None and stop_after not in names:
        raise ValueError(f"unknown pass {stop_after!r}; passes: {', '.join(names)}")
    state = CompileState(rule_files, channels, policies, channels_known, policies_known,
                         known_errors=known_errors)
    for name, run in PASSES:
        run(state)
        if name == stop_after:
            break
    return state


def compile_expression(
    text: str, env: Environment | None = None
) -> tuple[ir.Node | None, list[Diagnostic]]:
    """Parse, check and lower one expression (``monitoring query``, tests, the API)."""
    from monitoring.dsl.parser import parse_expression

    result = parse_expression(text)
    diagnostics = list(result.diagnostics)
    if result.node is None or not result.ok:
        return None, diagnostics
    Checker(diagnostics.append).check(result.node)  # any type: `x[5m]` is a valid query
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None, diagnostics
    lowerer = Lowerer(env if env is not None else Environment(), Interner())
    return lowerer.lower_root(result.node), diagnostics


def compile_query(
    text: str, env: Environment | None = None
) -> tuple[ir.Node | None, list[Diagnostic], dict[ir.Node, tuple[int, int]]]:
    """Like :func:`compile_expression`, plus where each IR node came from.

    The table maps every lowered node to the 1-based (line, column) of the first
    sub-expression it was lowered from: query annotations end in that position,
    as Prometheus's do (``... (1:7)``).
    """
    from monitoring.dsl.parser import parse_expression

    positions: dict[ir.Node, tuple[int, int]] = {}
    result = parse_expression(text)
    diagnostics = list(result.diagnostics)
    if result.node is None or not result.ok:
        return None, diagnostics, positions
    Checker(diagnostics.append).check(result.node)
    if any(d.severity is Severity.ERROR for d in diagnostics):
        return None, diagnostics, positions
    lowerer = Lowerer(env if env is not None else Environment(), Interner(), positions=positions)
    return lowerer.lower_root(result.node), diagnostics, positions
