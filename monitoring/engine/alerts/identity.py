"""Alert identity and annotations: rule templates expanded the way Prometheus does.

An alert's labels are its series' labels without ``__name__``, then each rule
label template expanded with ``$labels`` (the series' labels), ``$value``,
``$externalLabels`` and ``$externalURL`` (an empty result deletes the label),
then ``alertname``. Templates that fail render as Prometheus renders them:
``<error expanding template: ...>``.
"""

from __future__ import annotations

import math

from monitoring.engine.alerts.model import NODATA_LABEL, AlertRuleSpec
from monitoring.engine.model import METRIC_NAME, Labels, labels_of
from monitoring.templates import (
    Template,
    TemplateContext,
    TemplateRenderError,
    TemplateSyntaxError,
    parse_template,
)

_VALUE_READS = frozenset({"$value"})


class _Text:
    """One label or annotation template, parsed once (plain text is not parsed at all)."""

    __slots__ = ("error", "template", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.template: Template | None = None
        self.error: str | None = None
        if "{{" in text:
            try:
                self.template = parse_template(text)
            except TemplateSyntaxError as exc:
                self.error = str(exc)

    def reads_value(self) -> bool:
        if self.template is None:
            return False
        return any(v.split(".")[0] in _VALUE_READS or v.startswith(".Value")
                   for v in self.template.variables())

    def expand(self, context: TemplateContext) -> str:
        if self.error is not None:
            return f"<error expanding template: {self.error}>"
        if self.template is None:
            return self.text
        try:
            return self.template.render(context)
        except TemplateRenderError as exc:
            return f"<error expanding template: {exc}>"


class LabelMaker:
    """Expands one rule's label and annotation templates for a series and a value."""

    def __init__(self, spec: AlertRuleSpec) -> None:
        self.spec = spec
        self._labels = [(k, _Text(v)) for k, v in spec.labels]
        self._annotations = [(k, _Text(v)) for k, v in spec.annotations]
        self._external = dict(spec.external_labels)
        self.dynamic = any(t.reads_value() for _, t in self._labels)
        """Whether identity depends on ``$value`` (then it may change at every step)."""

    def _context(self, series: Labels, value: float) -> TemplateContext:
        return TemplateContext(dict(series), value, dict(self._external), self.spec.external_url)

    def identity(self, series: Labels, value: float = math.nan) -> Labels:
        """The alert's labels for a result series with ``value``."""
        out = {k: v for k, v in series if k != METRIC_NAME}
        if self._labels:
            context = self._context(series, value)
            for key, text in self._labels:
                out[key] = text.expand(context)
        out["alertname"] = self.spec.name
        return labels_of(out)

    def annotations(self, series: Labels, value: float) -> dict[str, str]:
        """The rendered annotations for a result series with ``value``."""
        if not self._annotations:
            return {}
        context = self._context(series, value)
        return {key: text.expand(context) for key, text in self._annotations}


NODATA_SERIES: Labels = (NODATA_LABEL,)
"""The pseudo series behind the rule-level alert of the ``fire``/``nodata`` policies."""
