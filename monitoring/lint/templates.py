"""Checks on label and annotation templates (Prometheus's Go template dialect)."""

from __future__ import annotations

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Severity
from monitoring.dsl.source import OffsetMap, Span
from monitoring.lint.registry import LintContext, RuleContext, declare, rule_check
from monitoring.templates import TemplateSyntaxError
from monitoring.templates.quick import template_variables

declare(
    "template/invalid", Severity.ERROR,
    "A label or annotation template does not parse.",
    """Alert labels and annotations are templates in Prometheus's dialect of Go templates
    (`{{ $labels.instance }}`, `{{ $value | humanize }}`). A template that does not parse
    would fail at notification time, when it is too late; it is reported at the exact
    character.""",
)
declare(
    "alert/value-in-labels", Severity.ERROR,
    "An alert label uses the query value, so the alert's identity changes at every evaluation.",
    """An alert is identified by its labels. A label that contains `$value` (or `.Value`)
    changes whenever the value does, so each evaluation creates a new alert and resolves the
    previous one: notifications flood and `for` never completes. Put the value in an
    annotation instead.""",
)

_VALUE_VARIABLES = frozenset({"$value", ".Value", "$.Value"})


@rule_check
def templates(ctx: LintContext, rc: RuleContext) -> None:
    """Parse every alert label and annotation as a template."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule):
        return
    for pair, is_label in [(p, True) for p in rule.labels] + [(p, False) for p in rule.annotations]:
        try:
            variables = template_variables(pair.value)
        except TemplateSyntaxError as e:
            ctx.report("template/invalid",
                       f"invalid template in {'label' if is_label else 'annotation'} "
                       f"{pair.key!r}: {e.message}", _inner_span(pair, e.offset, e.end),
                       "templates use Go template syntax: {{ $labels.name }}, "
                       "{{ $value | humanize }}")
            continue
        if is_label and variables & _VALUE_VARIABLES:
            ctx.report("alert/value-in-labels",
                       f"label {pair.key!r} uses the query value; the alert's identity would "
                       "change at every evaluation", pair.value_span or pair.span,
                       "move it to an annotation")


def _inner_span(pair: ast.LabelPair, start: int, end: int) -> Span | None:
    """Map an offset inside a template value to the file, through quotes and escapes."""
    span = pair.value_span
    if span is None:
        return pair.span
    text = span.source.text
    mapping = OffsetMap.align(pair.value, text, span.start, span.end)
    s = mapping(start)
    e = mapping(max(end - 1, start)) + 1
    return Span(span.source, s, max(e, s + 1))
