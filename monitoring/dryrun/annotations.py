"""The summary line a firing notification would carry, rendered once per interval.

Annotations are Go templates; rendering them at every step of a long dry-run
would cost more than the evaluation, so only the ``summary`` annotation is
rendered, once per firing interval, with the value at which the alert started
firing (once per alert when the template does not read the value). ``$labels``
are the alert's labels without ``alertname`` (Prometheus renders with the
series' own labels; rule labels that a series also carries may differ, a
documented approximation).
"""

from __future__ import annotations

from collections.abc import Callable

from monitoring.dryrun.report import Interval
from monitoring.dsl.ast import AlertRule
from monitoring.dsl.compiler import CompiledRule
from monitoring.templates import (
    TemplateContext,
    TemplateRenderError,
    TemplateSyntaxError,
    parse_template,
)


def summary_renderer(rule: CompiledRule) -> Callable[[Interval], str] | None:
    """A function rendering the rule's ``summary`` for an interval, or None without one."""
    node = rule.rule
    if not isinstance(node, AlertRule):
        return None
    text = next((p.value for p in node.annotations if p.key == "summary"), None)
    if text is None:
        return None
    try:
        template = parse_template(text)
    except TemplateSyntaxError as exc:
        message = f"(summary template error: {exc})"
        return lambda _iv: message

    def render(iv: Interval) -> str:
        labels = {k: v for k, v in iv.labels.items() if k != "alertname"}
        try:
            return template.render(TemplateContext(labels, iv.start_value))
        except TemplateRenderError as exc:
            return f"(summary template error: {exc})"

    if template.reads_value():
        return render
    # The text depends on the labels alone: render once per alert, not once per interval.
    by_labels: dict[tuple[tuple[str, str], ...], str] = {}

    def render_once(iv: Interval) -> str:
        key = tuple(iv.labels.items())
        text = by_labels.get(key)
        if text is None:
            text = by_labels[key] = render(iv)
        return text

    return render_once
