"""Loading a rule set for a dry-run, and what the engine needs to know about its rules.

Loading is ``monitoring lint``'s: files and folders, DSL / seed YAML /
Prometheus rule files, compiled against the loaded configuration; any
error-level diagnostic stops the dry-run (:class:`RuleSetError`). The helpers
below answer the engine's questions about a compiled rule: which recording
rules it reads (evaluation order), which selectors it uses (unknown-metric
warnings), and whether it uses something a chunked range evaluation cannot
reproduce (``start()``...), and rewrite ``@ start()``/``@ end()`` (:func:`unpin`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from monitoring.dsl import ir
from monitoring.dsl.compiler import CompiledRule
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.engine.memory import matches
from monitoring.engine.model import METRIC_NAME

QUERY_PROPERTY_FUNCTIONS = frozenset({"start", "end", "range", "step"})
ABSENCE_FUNCTIONS = frozenset({"absent", "absent_over_time"})


class RuleSetError(Exception):
    """The rule files have errors; ``diagnostics`` are the error-level ones."""

    def __init__(self, diagnostics: Sequence[Diagnostic]) -> None:
        super().__init__(f"{len(diagnostics)} error(s) in the rule files")
        self.diagnostics = list(diagnostics)


@dataclass(slots=True)
class RuleSet:
    """A compiled rule set and the notification channels its configuration defines."""

    paths: tuple[str, ...]
    rules: list[CompiledRule] = field(default_factory=list)
    channels: tuple[str, ...] = ()


def load_rule_set(paths: Sequence[str]) -> RuleSet:
    """Load and compile ``paths`` as ``monitoring lint`` does; raise on any error."""
    from monitoring.dsl.loader import load_paths
    from monitoring.lint.runner import compile_workspace

    ws = load_paths(paths)
    state = compile_workspace(ws)
    errors = [d for d in [*ws.diagnostics, *state.diagnostics] if d.severity is Severity.ERROR]
    if errors:
        raise RuleSetError(errors)
    channels = tuple(c.name.value for c in ws.config.channels)
    memo: dict[ir.Node, ir.Node] = {}
    rules = [replace(r, condition=unpin(r.condition, memo),
                     recover=None if r.recover is None else unpin(r.recover, memo))
             for r in state.program.rules]
    return RuleSet(tuple(str(p) for p in paths), rules, channels)


def walk(nodes: Sequence[ir.Node], prune: Callable[[ir.Node], bool] | None = None
         ) -> Iterator[ir.Node]:
    """Every node under ``nodes`` once (pre-order); nothing below a node ``prune`` accepts."""
    seen: set[ir.Node] = set()
    stack = list(nodes)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if prune is not None and prune(node):
            continue
        yield node
        stack.extend(node.children())


def _absence(node: ir.Node) -> bool:
    return isinstance(node, ir.Call) and node.func in ABSENCE_FUNCTIONS


def selectors(rule: CompiledRule, *, skip_absence: bool = False) -> list[ir.Selector]:
    """The selectors of a rule; with ``skip_absence``, not those inside ``absent*()``."""
    found = walk(rule.roots, _absence if skip_absence else None)
    return [n for n in found if isinstance(n, ir.Selector)]


def unsupported(rule: CompiledRule) -> str | None:
    """Why a chunked range evaluation would not give what Prometheus's rule evaluation gives."""
    for node in walk(rule.roots):
        if isinstance(node, ir.Call) and node.func in QUERY_PROPERTY_FUNCTIONS:
            return (f"{node.func}() is the query's own {node.func} in a range evaluation, "
                    "not the evaluation time a rule sees; not supported in a dry-run")
    return None


def unpin(node: ir.Node, memo: dict[ir.Node, ir.Node] | None = None) -> ir.Node:
    """``node`` without ``@ start()`` / ``@ end()``.

    A rule is an instant query at its evaluation time, so there ``start()`` and
    ``end()`` *are* the evaluation time and the pin changes nothing; in a range
    evaluation of a whole chunk they would pin every step to the chunk's edge.
    Dropping them gives every step what the rule sees at that step.
    """
    memo = {} if memo is None else memo
    done = memo.get(node)
    if done is not None:
        return done
    out: ir.Node = node
    match node:
        case ir.Selector(at=at) if at is not None and at.kind in ("start", "end"):
            out = replace(node, at=None)
        case ir.RangeSelector(selector=sel):
            bare = unpin(sel, memo)
            assert isinstance(bare, ir.Selector)
            out = replace(node, selector=bare)
        case ir.Subquery(expr=expr, at=at):
            keep = at if at is None or at.kind not in ("start", "end") else None
            out = replace(node, expr=unpin(expr, memo), at=keep)
        case ir.Call(args=args):
            out = replace(node, args=tuple(unpin(a, memo) for a in args))
        case ir.Aggregate(expr=expr, param=param):
            out = replace(node, expr=unpin(expr, memo),
                          param=None if param is None else unpin(param, memo))
        case ir.Binary(lhs=lhs, rhs=rhs):
            out = replace(node, lhs=unpin(lhs, memo), rhs=unpin(rhs, memo))
        case ir.Neg(expr=expr):
            out = replace(node, expr=unpin(expr, memo))
        case ir.Weighted(terms=terms):
            out = replace(node, terms=tuple(unpin(t, memo) for t in terms))
    out = node if out == node else out  # keep the interned node when nothing changed
    memo[node] = out
    return out


def reads(rule: CompiledRule, name: str) -> bool:
    """Whether a selector of ``rule`` can match series named ``name``."""
    named = ((METRIC_NAME, name),)
    for sel in selectors(rule):
        by_name = [m for m in sel.matchers if m[0] == METRIC_NAME]
        if by_name and matches(named, by_name):
            return True
    return False


def recording_levels(records: Sequence[CompiledRule]
                     ) -> tuple[list[list[CompiledRule]], list[CompiledRule]]:
    """Recording rules in dependency levels (each reads only earlier levels), and a cycle.

    The second list holds rules that depend on each other in a cycle; they
    cannot be evaluated.
    """
    deps: dict[int, set[int]] = {
        i: {j for j, other in enumerate(records) if j != i and reads(r, other.name)}
        for i, r in enumerate(records)
    }
    level: dict[int, int] = {}
    remaining = set(deps)
    current = 0
    levels: list[list[CompiledRule]] = []
    while remaining:
        ready = sorted(i for i in remaining if deps[i] <= set(level))
        if not ready:
            break
        for i in ready:
            level[i] = current
        remaining -= set(ready)
        levels.append([records[i] for i in ready])
        current += 1
    return levels, [records[i] for i in sorted(remaining)]
