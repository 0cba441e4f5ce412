"""Checks on expressions: counters, windows, regular expressions, percentages, composites."""

from __future__ import annotations

from monitoring.dsl import ast
from monitoring.dsl.ast import format_duration
from monitoring.dsl.checker import COMPARISONS
from monitoring.dsl.diagnostics import Severity
from monitoring.dsl.regex import is_literal, literal_alternatives
from monitoring.dsl.units import PERCENT_UNITS, percent_contexts
from monitoring.lint.registry import LintContext, RuleContext, declare, rule_check
from monitoring.stdlib import REGISTRY

COUNTER_SUFFIXES = ("_total", "_count", "_sum", "_bucket")

declare(
    "promql/rate-non-counter", Severity.WARNING,
    "rate(), irate(), increase() or resets() applied to a metric that is not a counter.",
    """These functions assume a counter: a value that only goes up and resets to zero. On a
    gauge they read every decrease as a reset and report nonsense. A metric counts as a
    counter when it is declared `type counter` or its name ends in `_total`, `_count`,
    `_sum` or `_bucket`. Use `deriv()` or `delta()` for gauges. A metric declared as a gauge
    is an error; an undeclared name without a counter suffix is a warning.""",
)
declare(
    "promql/range-too-short", Severity.WARNING,
    "Range window shorter than twice the scrape interval.",
    """A window must hold at least two samples for rates and derivatives, and a single missed
    scrape must not empty it. When the scrape interval is known (`scrape_interval` in a DSL
    file or on a metric declaration), windows shorter than twice that interval are
    reported.""",
)
declare(
    "promql/invalid-regex", Severity.ERROR,
    "A regular expression in a label matcher does not compile.",
    """Label matchers use RE2 syntax (as Prometheus does) and are anchored at both ends.
    RE2 has no look-around and no back-references.""",
)
declare(
    "promql/needless-regex", Severity.INFO,
    "A regex matcher that needs no regular expression.",
    """`job=~"api"` has no regex metacharacters and is the same as `job="api"`, which is
    cheaper; `=~".*"` matches everything and can be dropped; anchors `^` and `$` are
    redundant because matchers are always anchored.""",
)
declare(
    "unit/ambiguous-percent", Severity.ERROR,
    "A percentage is compared with a value whose unit is unknown.",
    """`5%` means 0.05 when compared with a ratio and 5 when compared with a percentage, so
    the unit of the other side must be known: declare it (`metric error_rate { unit ratio }`
    or `unit percent`, or `unit:` next to a YAML threshold), or follow the naming
    convention (`_ratio`, `_percent`). Comparing a percentage with a value in another unit
    (seconds, bytes) is an error too.""",
)
declare(
    "composite/negative-weight", Severity.ERROR,
    "A weighted composite has a negative weight.",
    """A weight says how much a condition counts towards the composite score; a negative weight
    makes a condition lower the score when it holds, which is almost always a mistake.
    Use `unless` to express "not".""",
)
declare(
    "composite/unreachable-threshold", Severity.ERROR,
    "A weighted composite's threshold is higher than the sum of its weights.",
    """The score of `weighted(w1: c1, ...)` is at most the sum of the positive weights; a
    threshold above it can never be reached, so the alert never fires.""",
)

_COUNTER_FUNCS = frozenset(name for name, d in REGISTRY.functions.items() if d.counter_input)


@rule_check
def counters(ctx: LintContext, rc: RuleContext) -> None:
    """rate() and friends on non-counters."""
    for node in rc.nodes():
        if not (isinstance(node, ast.Call) and node.func in _COUNTER_FUNCS and node.args):
            continue
        arg = ast.unparen(node.args[0])
        if not isinstance(arg, ast.MatrixSelector) or arg.vector.name is None:
            continue
        name = arg.vector.name
        info = rc.env.metric(name)
        if info is not None and info.type is not None:
            if info.type is not ast.MetricType.COUNTER and info.type is not \
                    ast.MetricType.UNKNOWN:
                ctx.report("promql/rate-non-counter",
                           f"{node.func}() on {name!r}, which is declared as a "
                           f"{info.type.value}", arg.span,
                           "use deriv() or delta() for gauges", severity=Severity.ERROR)
            continue
        if name.endswith(COUNTER_SUFFIXES) or name in rc.env.recording_rules:
            continue
        ctx.report("promql/rate-non-counter",
                   f"{node.func}() on {name!r}, which does not look like a counter "
                   "(no _total, _count, _sum or _bucket suffix, no declaration)", arg.span,
                   f"declare it: metric {name} {{ type counter }}, or use deriv() for a gauge")


@rule_check
def windows(ctx: LintContext, rc: RuleContext) -> None:
    """Range windows shorter than twice the scrape interval."""
    file = rc.file.span.source.name if rc.file.span is not None else ""
    for node in rc.nodes():
        if not isinstance(node, ast.MatrixSelector):
            continue
        scrape = rc.env.scrape_interval_ms(node.vector.name, file)
        if scrape is None or node.range.ms >= 2 * scrape:
            continue
        ctx.report("promql/range-too-short",
                   f"range [{node.range}] is shorter than twice the scrape interval "
                   f"({format_duration(scrape)}) of {node.vector.name or 'this selector'}",
                   node.range.span or node.span,
                   f"use [{format_duration(2 * scrape)}] or more; "
                   f"[{format_duration(4 * scrape)}] tolerates a missed scrape")


@rule_check
def regexes(ctx: LintContext, rc: RuleContext) -> None:
    """Regex matchers that need no regex."""
    for node in rc.nodes():  # reaches the selectors inside range selectors too
        if isinstance(node, ast.VectorSelector):
            for m in node.matchers:
                if m.op is ast.MatchOp.RE or m.op is ast.MatchOp.NRE:
                    _needless(ctx, m)


def _needless(ctx: LintContext, m: ast.LabelMatcher) -> None:
    eq = "=" if m.op is ast.MatchOp.RE else "!="
    span = m.value_span or m.span
    if is_literal(m.value):
        ctx.report("promql/needless-regex",
                   f"{m.name}{m.op.value}{m.value!r} has no regex metacharacters",
                   span, f'use {m.name}{eq}"{m.value}"')
    elif m.value in (".*", "(.*)") and m.op is ast.MatchOp.RE:
        ctx.report("promql/needless-regex", f'{m.name}=~".*" matches every value', span,
                   "drop the matcher")
    elif (m.value.startswith("^") or (m.value.endswith("$") and not m.value.endswith("\\$"))) \
            and literal_alternatives(m.value.strip("^$")) is None:
        ctx.report("promql/needless-regex",
                   f"anchors in {m.value!r} are redundant: matchers are always anchored", span,
                   f'use {m.name}{m.op.value}"{m.value.lstrip("^").rstrip("$")}"')


@rule_check
def percentages(ctx: LintContext, rc: RuleContext) -> None:
    """Percentages need a known unit on the other side."""
    unit_override = rc.rule.unit if isinstance(rc.rule, ast.AlertRule) else None
    for expr in _exprs(rc.rule):
        for lit, unit, partner in percent_contexts(expr, rc.env, unit_override):
            if unit in PERCENT_UNITS:
                continue
            what = _describe(partner)
            if unit is None:
                ctx.report("unit/ambiguous-percent",
                           f"{lit.text or str(lit.number) + '%'} is compared with {what}, whose "
                           "unit is unknown: it could mean "
                           f"{lit.number / 100:g} (ratio) or {lit.number:g} (percent)",
                           lit.span, _unit_hint(partner))
            else:
                ctx.report("unit/ambiguous-percent",
                           f"{lit.text} is compared with {what}, whose unit is {unit!r}, not "
                           "a ratio or a percentage", lit.span,
                           "write the threshold as a plain number in that unit")


def _describe(expr: ast.Expr | None) -> str:
    if expr is None:
        return "nothing"
    if expr.span is not None:
        text = expr.span.text()
        return repr(text if len(text) <= 40 else text[:37] + "...")
    return "an expression"


def _unit_hint(partner: ast.Expr | None) -> str:
    name = None
    if partner is not None:
        for node in ast.walk(partner):
            if isinstance(node, ast.VectorSelector) and node.name:
                name = node.name
                break
            if isinstance(node, ast.MatrixSelector) and node.vector.name:
                name = node.vector.name
                break
    if name is None:
        return "write the threshold as a plain number"
    return f"declare the unit: metric {name} {{ unit ratio }} (0-1) or {{ unit percent }} (0-100)"


@rule_check
def weighted(ctx: LintContext, rc: RuleContext) -> None:
    """Weights must be positive and the threshold reachable."""
    for node in rc.nodes():
        if isinstance(node, ast.WeightedExpr):
            for term in node.terms:
                if term.weight < 0:
                    ctx.report("composite/negative-weight",
                               f"weight {term.weight:g} is negative", term.span,
                               "use `unless` for conditions that must not hold")
        if isinstance(node, ast.BinaryExpr) and node.op in COMPARISONS:
            _reachable(ctx, node)


def _reachable(ctx: LintContext, b: ast.BinaryExpr) -> None:
    lhs, rhs = ast.unparen(b.lhs), ast.unparen(b.rhs)
    if not isinstance(lhs, ast.WeightedExpr) or not isinstance(rhs, ast.NumberLiteral):
        return
    total = sum(t.weight for t in lhs.terms if t.weight > 0)
    threshold = rhs.value
    unreachable = (b.op in (">=", "==") and threshold > total + 1e-12) or (
        b.op == ">" and threshold >= total - 1e-12)
    if unreachable:
        ctx.report("composite/unreachable-threshold",
                   f"the score can reach at most {total:g}, so {b.op} {threshold:g} never holds",
                   b.rhs.span or b.span,
                   f"lower the threshold to at most {total:g} or raise the weights")


def _exprs(rule: ast.AlertRule | ast.RecordingRule) -> list[ast.Expr]:
    out = [rule.expr] if rule.expr is not None else []
    if isinstance(rule, ast.AlertRule) and rule.recover_expr is not None:
        out.append(rule.recover_expr)
    return out
