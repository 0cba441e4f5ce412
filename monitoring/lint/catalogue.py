"""Every diagnostic code the tool can emit, with a one-line description.

Lint checks describe themselves in :mod:`monitoring.lint.registry`; the codes of
the compiler phases (syntax, YAML, schema, types, names, limits) are listed
here. SARIF output and ``docs/checks.md`` read this catalogue, and a test fails
when the source emits a code that is not in it.
"""

from __future__ import annotations

from monitoring.lint import alerts, promql, references, templates  # noqa: F401  (registers checks)
from monitoring.lint.registry import CHECKS

COMPILER_CODES: dict[str, str] = {
    # syntax: the text does not follow the grammar
    "syntax/unexpected-token": "A token that the grammar does not allow at this point.",
    "syntax/unexpected-character": "A character that starts no token of the language.",
    "syntax/unexpected-eof": "The input ends in the middle of a construct.",
    "syntax/unterminated-string": "A string literal is not closed on its line.",
    "syntax/invalid-string": "A string literal contains an invalid escape sequence.",
    "syntax/invalid-duration": "A duration is malformed, out of order or not positive.",
    "syntax/invalid-label-name": "A label name that is not a valid identifier.",
    "syntax/invalid-metric-name": "A metric or recording rule name that is not valid.",
    "syntax/duplicate-metric-name": "A selector sets the metric name twice.",
    "syntax/empty-selector": "A selector without any non-empty matcher would select everything.",
    "syntax/range-on-non-selector": "A range [d] applied to something other than a selector.",
    "syntax/modifier-before-range": "offset or @ written before a range instead of after it.",
    "syntax/misplaced-modifier": "offset or @ applied to something other than a selector or "
                                 "subquery.",
    "syntax/duplicate-modifier": "offset or @ given twice.",
    "syntax/invalid-at": "An @ modifier with an invalid time.",
    "syntax/duplicate-argument": "A keyword argument given twice.",
    "syntax/positional-after-keyword": "A positional argument after a keyword argument.",
    "syntax/wrong-argument-count": "An aggregation with the wrong number of arguments.",
    "syntax/duplicate-field": "A field of a rule, group or declaration given twice.",
    "syntax/missing-field": "A required field (such as an alert's `when`) is missing.",
    "syntax/invalid-value": "A field value outside the allowed set.",
    # types and names
    "type/mismatch": "An argument or operand of the wrong value type.",
    "type/wrong-argument-count": "A function called with the wrong number of arguments.",
    "type/invalid-choice": "A string argument outside the values a function accepts.",
    "type/duplicate-argument": "An argument given both by position and by name.",
    "type/bool-required": "A comparison between scalars without the bool modifier.",
    "type/bool-not-allowed": "The bool modifier on an operator that is not a comparison.",
    "type/invalid-matching": "Vector matching that is not allowed for the operation.",
    "type/invalid-rule-type": "A rule whose expression is not an instant vector or a scalar.",
    "name/unknown-function": "A call to a function that does not exist.",
    "name/unknown-argument": "A keyword argument that the function does not have.",
    "name/conflicting-metric": "A metric declared twice with different properties.",
    "promql/extension": "A function of this engine's extensions used in a Prometheus rule file.",
    "promql/experimental": "An experimental PromQL feature that Prometheus enables by flag.",
    # limits and files
    "limit/too-large": "A file or expression beyond the size limit.",
    "limit/too-deep": "Nesting beyond the depth limit.",
    "limit/yaml-aliases": "YAML aliases that expand beyond the node limit.",
    "lint/bad-suppression": "A suppression comment that names an unknown check or no rule.",
}


def descriptions() -> dict[str, str]:
    """Code -> one-line description, for every known code."""
    out = dict(COMPILER_CODES)
    for code, info in CHECKS.items():
        out[code] = info.summary
    return out
