"""Validating templates fast: the common shapes by one regular expression.

Most alert templates are text with a few actions such as ``{{ $labels.job }}``
or ``{{ $value | humanize }}``. Linting a large rule set parses tens of
thousands of them, so :func:`template_variables` recognises that shape with a
regular expression that accepts only a strict subset of valid templates, and
hands everything else to the full parser. A property test checks that both
paths agree.
"""

from __future__ import annotations

import functools
import re

from monitoring.templates.functions import FUNCTION_NAMES
from monitoring.templates.parser import parse_template

_VARIABLE = r"\$(?:labels|value|externalLabels|externalURL)(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
_FUNCTION = "|".join(sorted((re.escape(f) for f in FUNCTION_NAMES), key=len, reverse=True))
_ACTION = (
    r"\{\{(?:-[ \t]+|[ \t]*)"  # opening delimiter, optional trim marker (needs a space)
    rf"({_VARIABLE})"  # one predeclared variable with optional field path
    rf"(?:[ \t]*\|[ \t]*(?:{_FUNCTION})(?![A-Za-z0-9_]))*"  # piped into argument-less calls
    r"(?:[ \t]+-)?[ \t]*\}\}"  # optional trim marker, closing delimiter
)
_TEXT = r"(?:[^{]|\{(?!\{))*"
_SIMPLE = re.compile(rf"{_TEXT}(?:{_ACTION}{_TEXT})*")
_ACTIONS = re.compile(_ACTION)


@functools.lru_cache(maxsize=65536)
def template_variables(text: str) -> frozenset[str]:
    """The variables a template reads; raises ``TemplateSyntaxError`` if it does not parse."""
    if _SIMPLE.fullmatch(text):
        return frozenset(m.group(1) for m in _ACTIONS.finditer(text))
    return parse_template(text).variables()
