"""Checks on alerting rules: conditions that always fire, timing, identity, metadata."""

from __future__ import annotations

from monitoring.dsl import ast
from monitoring.dsl.ast import format_duration
from monitoring.dsl.checker import COMPARISONS
from monitoring.dsl.diagnostics import Severity
from monitoring.lint.registry import LintContext, RuleContext, declare, rule_check, run_check
from monitoring.stdlib import REGISTRY

declare(
    "alert/always-fires", Severity.WARNING,
    "Alert condition has no comparison or filter, so it fires whenever the series exist.",
    """An alerting rule fires for every series its condition returns. A condition such as
    `rate(errors_total[5m])` returns every series all the time, so the alert is always
    firing. Compare the value with a threshold (`> 0.1`), or use a filtering function such as
    `absent()`, `between()` or `anomaly(...) > 3`. Write `1` or `vector(1)` knowingly for a
    heartbeat alert and disable the check on that rule.""",
)
declare(
    "alert/for-shorter-than-interval", Severity.WARNING,
    "`for` is shorter than the group's evaluation interval.",
    """A pending alert is only re-evaluated once per group interval, so a `for` shorter than
    the interval behaves as if it were one interval long. Set `for` to at least the interval,
    or evaluate the group more often.""",
)
declare(
    "alert/cooldown-shorter-than-interval", Severity.WARNING,
    "`cooldown` is shorter than the group's evaluation interval.",
    """Notifications can only be sent when the rule is evaluated, so a cooldown shorter than the
    evaluation interval has no effect. Lengthen the cooldown or shorten the interval.""",
)
declare(
    "alert/absent-without-for", Severity.WARNING,
    "`absent()` alert without `for`.",
    """Right after a restart of the collector, or during a single missed scrape, a series is
    briefly absent. An `absent()` alert without `for` pages for every such blip. Add a `for`
    of at least two scrape intervals (a few minutes is typical).""",
)
declare(
    "alert/missing-severity", Severity.WARNING,
    "Alert has no severity.",
    """Routing, escalation and on-call filtering all key on severity. Give every alert a
    `severity` (a field in the DSL and the seed's YAML, a `severity` label in Prometheus
    rule files).""",
)
declare(
    "alert/missing-summary", Severity.WARNING,
    "Alert has neither a summary nor a description.",
    """The person who is paged reads the notification first. Give every alert a `summary`
    (or the seed's `description`) that says what is wrong, ideally with `{{ $labels }}` and
    `{{ $value }}`.""",
)
declare(
    "rule/duplicate-name", Severity.WARNING,
    "Two rules in one group share a name.",
    """Alerts are identified by their name and labels. Two alerting rules of one group with
    the same name and the same labels produce alerts that cannot be told apart (an error);
    with different labels (say a warning and a critical threshold) it works but is easy to
    confuse (a warning). Recording rules with one name in one group are reported too.""",
)


@rule_check
def always_fires(ctx: LintContext, rc: RuleContext) -> None:
    """Flag alert conditions that do not filter."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule) or rule.expr is None:
        return
    if not filters(rule.expr):
        ctx.report("alert/always-fires",
                   f"alert {rule.name.value!r} has no comparison or filter and fires whenever "
                   "its series exist", rule.expr.span,
                   "compare with a threshold, e.g. ... > 0.05")


def filters(expr: ast.Expr) -> bool:
    """Whether an expression returns only some of its series (a condition)."""
    match expr:
        case ast.ParenExpr(expr=e) | ast.UnaryExpr(expr=e) | ast.SubqueryExpr(expr=e):
            return filters(e)
        case ast.BinaryExpr(op=op, lhs=lhs, rhs=rhs, return_bool=b):
            if op in COMPARISONS:
                return not b
            if op in ("and", "unless"):
                return True
            if op == "or":
                return filters(lhs) and filters(rhs)
            return filters(lhs) or filters(rhs)
        case ast.AggregateExpr(expr=e):
            return filters(e)
        case ast.Call(func=func, args=args):
            decl = REGISTRY.function(func)
            if decl is not None and decl.filter:
                return True
            if func in ("vector", "scalar", "time"):
                return False
            return any(filters(a) for a in args)
    return False


@rule_check
def for_vs_interval(ctx: LintContext, rc: RuleContext) -> None:
    """``for`` and cooldown shorter than the evaluation interval."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule):
        return
    interval = format_duration(rc.interval_ms)
    if rule.for_ is not None and 0 < rule.for_.ms < rc.interval_ms:
        ctx.report("alert/for-shorter-than-interval",
                   f"for {rule.for_} is shorter than the evaluation interval {interval}; "
                   f"the alert cannot fire before {interval}", rule.for_.span,
                   f"use for {interval} or more")
    if rule.cooldown is not None and 0 < rule.cooldown.ms < rc.interval_ms:
        ctx.report("alert/cooldown-shorter-than-interval",
                   f"cooldown {rule.cooldown} is shorter than the evaluation interval {interval} "
                   "and has no effect", rule.cooldown.span, f"use a cooldown of {interval} or more")


@rule_check
def absent_without_for(ctx: LintContext, rc: RuleContext) -> None:
    """``absent()`` alerts need a ``for``."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule) or rule.expr is None:
        return
    if rule.for_ is not None and rule.for_.ms > 0:
        return
    for node in rc.nodes():
        if isinstance(node, ast.Call) and node.func in ("absent", "absent_over_time"):
            ctx.report("alert/absent-without-for",
                       f"alert {rule.name.value!r} uses {node.func}() without 'for': it will "
                       "fire on every missed scrape and after every restart", node.span,
                       "add: for 5m")
            return


@rule_check
def metadata(ctx: LintContext, rc: RuleContext) -> None:
    """Severity and summary."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule):
        return
    labels = {p.key for p in rule.labels} | {p.key for p in rc.group.labels}
    if rule.severity is None and "severity" not in labels:
        ctx.report("alert/missing-severity", f"alert {rule.name.value!r} has no severity",
                   rule.name.span, _severity_hint(rc.file.kind))
    keys = {a.key for a in rule.annotations}
    if not keys & {"summary", "description"}:
        ctx.report("alert/missing-summary",
                   f"alert {rule.name.value!r} has neither a summary nor a description",
                   rule.name.span, _summary_hint(rc.file.kind))


def _severity_hint(kind: ast.FileKind) -> str:
    if kind is ast.FileKind.PROMETHEUS:
        return "add a label: severity: warning"
    if kind is ast.FileKind.SEED_RULES:
        return 'add: severity: "warning"'
    return "add: severity warning"


def _summary_hint(kind: ast.FileKind) -> str:
    if kind is ast.FileKind.PROMETHEUS:
        return "add an annotation: summary: ..."
    if kind is ast.FileKind.SEED_RULES:
        return 'add: description: "..."'
    return 'add: summary "..."'


@run_check
def duplicate_names(ctx: LintContext) -> None:
    """Rules sharing a name within one group."""
    for rf in ctx.rule_files:
        for group in rf.groups:
            seen: dict[tuple[str, str], ast.AlertRule | ast.RecordingRule] = {}
            for rule in group.rules:
                kind = "alert" if isinstance(rule, ast.AlertRule) else "record"
                key = (kind, rule.name.value)
                first = seen.get(key)
                if first is None:
                    seen[key] = rule
                    continue
                same_labels = _labels(first) == _labels(rule)
                related = (("first defined here", first.name.span),) if first.name.span else ()
                ctx.report(
                    "rule/duplicate-name",
                    f"{'alert' if kind == 'alert' else 'recording rule'} {rule.name.value!r} is "
                    f"defined twice in group {group.name.value!r}"
                    + (" with the same labels: its alerts cannot be told apart"
                       if same_labels and kind == "alert" else ""),
                    rule.name.span,
                    "rename one of them, or give them different labels",
                    severity=Severity.ERROR if same_labels and kind == "alert" else None,
                    related=related,
                )


def _labels(rule: ast.AlertRule | ast.RecordingRule) -> frozenset[tuple[str, str]]:
    pairs = {(p.key, p.value) for p in rule.labels}
    if isinstance(rule, ast.AlertRule) and rule.severity is not None:
        pairs.add(("severity", rule.severity.value))
    return frozenset(pairs)
