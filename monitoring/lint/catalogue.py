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
    "type/missing-argument": "An argument that another argument's value makes necessary "
                             "(a season for a seasonal method) is missing or 0.",
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
    # YAML and schemas
    "yaml/syntax": "Malformed YAML (a parser error, a bad character, an undefined alias).",
    "yaml/duplicate-key": "A mapping key given twice.",
    "yaml/non-string-key": "A mapping key that is not a string.",
    "yaml/multiple-documents": "More than one YAML document in a file; only the first is read.",
    "yaml/recursive-alias": "An alias used inside its own anchor.",
    "yaml/invalid-merge": "A `<<` merge key that does not refer to a mapping.",
    "schema/unknown-field": "A field the format does not have (often a typo).",
    "schema/missing-field": "A required field is missing.",
    "schema/type": "A value of the wrong type.",
    "schema/invalid-value": "A value outside the allowed set or pattern.",
    "schema/out-of-range": "A number outside its allowed range.",
    "schema/unknown-format": "A YAML file whose shape matches none of the known formats.",
    "rule/alert-and-record": "A Prometheus rule with both `alert` and `record`.",
    "rule/missing-alert-or-record": "A Prometheus rule with neither `alert` nor `record`.",
    "rule/missing-expr": "A rule without an expression.",
    "rule/invalid-record-name": "A recording rule name that is not a valid metric name.",
    "rule/invalid-label-name": "A rule label name that is not valid.",
    "rule/invalid-annotation-name": "An annotation name that is not valid.",
    "rule/invalid-field": "A field that a recording rule cannot have (for, annotations).",
    "rule/duplicate-field": "A field given both directly and in annotations.",
    "rule/duplicate-group": "Two groups with one name in a file.",
    "rule/empty-group-name": "A group without a name.",
    "rule/conflicting-interval": "Seed rules of one group that ask for different intervals.",
    "rule/weights-mismatch": "A weighted composite with a different number of weights and "
                             "conditions.",
    "rule/ignored-field": "A field that has no effect where it is written (warning).",
    "config/duplicate-channel": "A notification channel defined twice.",
    "config/duplicate-policy": "An escalation policy defined twice.",
    "config/duplicate-audit-category": "An audit filter category defined twice.",
    "config/duplicate-retention-class": "An audit retention class defined twice.",
    "config/retention-class-name": "An audit retention class name that is not lowercase "
    "letters, digits and '_'.",
    "config/retention-duration": "A retention duration ('retain' or 'hot') of zero or less.",
    "config/retention-hot": "A retention class whose 'hot' age is longer than its 'retain'.",
    "config/retention-meta": "An attempt to change the 'meta' retention class (the ledger's "
    "own records, kept forever).",
    "config/retention-new-class": "A retention class that is not built in, so it defines a new "
    "one (warning when its name is close to a built-in one).",
    "config/retention-retain": "A new retention class without 'retain'.",
    "config/stage-order": "Escalation stages whose delays do not increase (warning).",
    "config/channel-type": "An escalation stage names a channel and a type that differ.",
    "config/no-channel-of-type": "An escalation stage targets a channel type (type: slack) "
    "that no channel of notification_config.yaml has.",
    "name/unknown-schedule": "An escalation stage targets an on-call schedule that oncall.yaml "
    "does not define (with a did-you-mean).",
    "routing/unknown-receiver": "A routing.yaml receiver that is not a channel of "
    "notification_config.yaml (or the built-in console).",
    "routing/invalid-matcher": "A label matcher in routing.yaml that does not parse "
    "(name=\"v\", name!=\"v\", name=~\"re\", name!~\"re\").",
    "routing/root-matchers": "Matchers on the root route, which every alert enters.",
    "routing/conflicting-fields": "A route with both 'receiver' and 'receivers'.",
    "routing/invalid-group-by": "'...' (group by every label) combined with label names.",
    "routing/invalid-value": "A zero group_interval, repeat_interval or max_repeat_interval.",
    "routing/invalid-time-interval": "A time interval field that is not valid (times, "
    "weekdays, days of month, months, years, time zone).",
    "routing/unknown-time-interval": "A mute or active time interval that is not defined.",
    "routing/duplicate-time-interval": "A time interval name defined twice.",
    "io/not-found": "A path that does not exist.",
    "io/unreadable": "A file that cannot be read or is not UTF-8.",
    "io/skipped": "A file that is recognised but not a rule or configuration file (note).",
    "fmt/cannot-format": "A file the formatter cannot print faithfully; left unchanged.",
    "fmt/internal-error": "The formatted text would not parse back to the same rules; left "
                          "unchanged.",
    "fmt/no-such-file": "A path given to `fmt` that does not exist.",
    "fmt/unreadable": "A file `fmt` cannot read.",
    "fmt/write-failed": "A file `fmt` could not write (the original is kept).",
}


def descriptions() -> dict[str, str]:
    """Code -> one-line description, for every known code."""
    out = dict(COMPILER_CODES)
    for code, info in CHECKS.items():
        out[code] = info.summary
    return out
