"""Prometheus alert templates: Go ``text/template`` parsing, validation and rendering.

``parse_template`` accepts exactly what Prometheus accepts for alert labels and
annotations (and reports what it rejects, at a character offset, in Go's
words); ``Template.render`` expands it as Prometheus's rule evaluator would.
"""

from __future__ import annotations

from monitoring.templates.functions import (
    FUNCTION_NAMES,
    TemplateContext,
    TemplateRenderError,
)
from monitoring.templates.parser import (
    MAX_NESTING_DEPTH,
    MAX_TEMPLATE_LENGTH,
    Template,
    TemplateSyntaxError,
    parse_template,
)

__all__ = [
    "FUNCTION_NAMES",
    "MAX_NESTING_DEPTH",
    "MAX_TEMPLATE_LENGTH",
    "Template",
    "TemplateContext",
    "TemplateRenderError",
    "TemplateSyntaxError",
    "parse_template",
]
