from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from monitoring.dsl.diagnostics import Diagnostic
from monitoring.dsl.schema import schema, schema_json, schema_names, validate
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import load_yaml

RULES = Path(__file__).resolve().parents[2] / "rules"
SEED_FILES = {"alert_rules.yaml": "alert_rules",
              "escalation_policies.yaml": "escalation_policies",
              "notification_config.yaml": "notification_config",
              "audit_filters.yaml": "audit_filters"}


def seed_files() -> dict[str, str]:
    """The four YAML files of the owner's seed document, shipped verbatim in rules/."""
    return {name: (RULES / name).read_text("utf-8") for name in SEED_FILES}


def check(name: str, text: str) -> list[Diagnostic]:
    doc = load_yaml(SourceFile("t.yaml", text))
    assert doc.ok, doc.diagnostics
    return validate(doc, name)


def brief(diags: list[Diagnostic]) -> list[tuple[str, int, int, str]]:
    out = []
    for d in diags:
        assert d.span is not None
        out.append((d.code, d.span.line, d.span.column, d.span.text()))
    return out


# ---------------------------------------------------------------- the schemas


def test_names_and_text() -> None:
    assert schema_names() == ["alert_rules", "audit_filters", "escalation_policies",
                              "notification_config", "oncall", "prometheus_rules", "routing"]
    for name in schema_names():
        loaded = json.loads(schema_json(name))
        assert loaded == schema(name)
        assert loaded["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        Draft202012Validator.check_schema(loaded)


def test_unknown_schema_name() -> None:
    with pytest.raises(ValueError, match="did you mean 'alert_rules'"):
        schema_json("alert_rule")


def properties(node: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for name, sub in node.get("properties", {}).items():
            yield f"{where}.{name}", sub
        for key, sub in node.items():
            yield from properties(sub, f"{where}/{key}")
    elif isinstance(node, list):
        for i, sub in enumerate(node):
            yield from properties(sub, f"{where}[{i}]")


@pytest.mark.parametrize("name", schema_names())
def test_every_property_has_title_and_description(name: str) -> None:
    found = list(properties(schema(name)))
    assert found
    for where, sub in found:
        assert sub.get("title") and sub.get("description"), where


@pytest.mark.parametrize("name", ["alert_rules", "escalation_policies", "notification_config",
                                  "audit_filters"])
def test_objects_reject_unknown_fields(name: str) -> None:
    def objects(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "properties" in node and "type" in node:
                yield node
            for sub in node.values():
                yield from objects(sub)
        elif isinstance(node, list):
            for sub in node:
                yield from objects(sub)

    for obj in objects(schema(name)):
        assert "additionalProperties" in obj, obj.get("title")


@pytest.mark.parametrize(("file", "name"), sorted(SEED_FILES.items()))
def test_seed_files_validate(file: str, name: str) -> None:
    assert check(name, seed_files()[file]) == []


def test_peer_prometheus_rules_validate() -> None:
    peer = Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "promtool"
    for file in ("rules.yml", "bad-rules-error.yml"):
        assert check("prometheus_rules", (peer / file).read_text()) == []


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("name", "text", "expected", "fragment", "hint"),
    [
        ("alert_rules", "- name: a\n  condition: {type: expr, expr: up}\n  severty: x\n",
         [("schema/unknown-field", 3, 3, "severty")], "unknown field 'severty' in alert rule 'a'",
         "did you mean 'severity'?"),
        ("alert_rules", "- name: a\n", [("schema/missing-field", 1, 3, "name: a")],
         "missing required field 'condition'", ""),
        ("alert_rules", "- name: a\n  condition:\n    metric: x\n",
         [("schema/missing-field", 2, 3, "condition")], "missing required field 'type'",
         "type is one of: 'threshold', 'trend', 'anomaly', 'composite', 'expr'"),
        ("alert_rules", "- name: a\n  condition: {type: thresold}\n",
         [("schema/invalid-value", 2, 21, "thresold")], "invalid value 'thresold' for 'type'",
         "did you mean 'threshold'?"),
        ("alert_rules",
         "- name: a\n  condition: {type: threshold, metric: x, operator: '=>', value: 1}\n",
         [("schema/invalid-value", 2, 53, "'=>'")], "allowed: '>', '<', '>=', '<=', '==', '!='",
         ""),
        ("alert_rules",
         "- name: a\n  condition: {type: threshold, metric: x, operator: '>', value: abc}\n",
         [("schema/invalid-value", 2, 65, "abc")], "invalid value 'abc' for 'value'",
         "'value' may also be a number"),
        ("alert_rules", "- name: a\n  condition: {type: expr, expr: up}\n  cooldown: [1]\n",
         [("schema/type", 3, 13, "[1]")], "'cooldown' must be an integer or a string, not a list",
         ""),
        ("alert_rules", "- name: a\n  condition: {type: expr, expr: up}\n  cooldown: -5\n",
         [("schema/out-of-range", 3, 13, "-5")], "'cooldown' is -5; it must be at least 0", ""),
        ("alert_rules",
         "- name: a\n  condition: {type: threshold, metric: x, operator: '>', value: 1, "
         "aggregation: max}\n",
         [("schema/missing-field", 2, 68, "aggregation")], "'aggregation' needs 'window'", ""),
        ("alert_rules",
         "- name: a\n  condition: {type: composite, conditions: [{type: expr, expr: up}]}\n",
         [("schema/missing-field", 2, 3, "condition")], "needs 'operator' or 'weights'", ""),
        ("alert_rules",
         "- name: a\n  condition: {type: trend, metric: x, direction: up, window: 1h, "
         "confidence: 2}\n",
         [("schema/invalid-value", 2, 50, "up"), ("schema/out-of-range", 2, 78, "2")],
         "invalid value 'up' for 'direction'", ""),
        ("alert_rules", "- name: a\n  condition: {type: expr, expr: up}\n  channels: [a, a]\n",
         [("schema/invalid-value", 3, 13, "[a, a]")], "must not list the same item twice", ""),
        ("alert_rules", "name: a\n", [("schema/type", 1, 1, "name: a")],
         "the document must be a list, not a mapping", ""),
        ("audit_filters", "authentcation:\n  min_severity: info\n",
         [("schema/unknown-field", 1, 1, "authentcation")],
         "unknown field 'authentcation' in audit filters", "did you mean 'authentication'?"),
        ("audit_filters", "system:\n  min_severity: warn\n",
         [("schema/invalid-value", 2, 17, "warn")], "invalid value 'warn' for 'min_severity'",
         "did you mean 'warning'?"),
        ("notification_config", "emial:\n  smtp_server: x\n",
         [("schema/missing-field", 1, 1, "emial")], "missing required field 'type'",
         "or is 'emial' misspelt? did you mean 'email'?"),
        ("notification_config", "slack:\n  channel: '#x'\n",
         [("schema/missing-field", 1, 1, "slack")], "needs 'webhook_url' or 'bot_token'", ""),
        ("notification_config", "email:\n  smtp_server: s\n  use_tls: yes\n",
         [("schema/invalid-value", 3, 12, "yes")], "invalid value 'yes' for 'use_tls'",
         "'use_tls' may also be a boolean (true or false)"),
        ("notification_config", "pager:\n  type: pagerduty\n  routing_key: k\n  smtp_port: 1\n",
         [("schema/unknown-field", 4, 3, "smtp_port")], "in PagerDuty channel", ""),
        ("notification_config", "ops:\n  type: sms\n", [("schema/invalid-value", 2, 9, "sms")],
         "invalid value 'sms' for 'type'", ""),
        ("escalation_policies", "- name: p\n  stages:\n    - channels: []\n",
         [("schema/missing-field", 3, 7, "channels: []"),
          ("schema/invalid-value", 3, 17, "[]")], "missing required field 'delay' in stage", ""),
        ("escalation_policies",
         "- name: p\n  stages: [{delay: 1, channels: [email, {type: sms}]}]\n",
         [("schema/invalid-value", 2, 48, "sms")], "invalid value 'sms' for 'type'", ""),
        ("prometheus_rules", "groups:\n  - name: g\n    rules:\n      - alert: A\n"
         "        expr: up\n        fro: 5m\n",
         [("schema/unknown-field", 6, 9, "fro")], "unknown field 'fro' in rule",
         "did you mean 'for'?"),
        ("prometheus_rules", "groups:\n  - rules: []\n",
         [("schema/missing-field", 2, 5, "rules: []")],
         "missing required field 'name' in rule group", ""),
    ],
)
def test_errors(name: str, text: str, expected: list[tuple[str, int, int, str]], fragment: str,
                hint: str) -> None:
    diags = check(name, text)
    assert brief(diags) == expected
    assert fragment in diags[0].message
    if hint:
        assert hint in diags[0].hints


def test_known_condition_type_reports_only_its_branch() -> None:
    diags = check("alert_rules", (
        "- name: a\n"
        "  condition:\n"
        "    type: anomaly\n"
        "    metric: x\n"
        "    window: 1h\n"
        "    method: madd\n"
        "    direction: up\n"
    ))
    assert [d.code for d in diags] == ["schema/invalid-value", "schema/unknown-field"]
    assert "'madd'" in diags[0].message and "did you mean 'mad'?" in diags[0].hints
    assert "in anomaly condition" in diags[1].message
    text = " ".join(d.message for d in diags)
    assert "operator" not in text and "threshold" not in text.replace("'threshold'", "")


def test_nested_composites_are_checked() -> None:
    diags = check("alert_rules", (
        "- name: a\n"
        "  condition:\n"
        "    type: composite\n"
        "    operator: AND\n"
        "    conditions:\n"
        "      - type: composite\n"
        "        operator: OR\n"
        "        conditions:\n"
        "          - {type: threshold, metric: x, operator: '>', value: 1, windw: 5m}\n"
    ))
    assert brief(diags) == [("schema/unknown-field", 9, 67, "windw")]


def test_every_error_is_reported() -> None:
    diags = check("alert_rules", (
        "- name: a\n"
        "  condition: {type: expr, expr: up}\n"
        "  severty: x\n"
        "  no_data: never\n"
        "- condition: {type: expr}\n"
    ))
    assert [d.code for d in diags] == ["schema/unknown-field", "schema/invalid-value",
                                       "schema/missing-field", "schema/missing-field"]


def test_empty_and_broken_documents_are_not_validated() -> None:
    assert validate(load_yaml(SourceFile("t.yaml", "")), "alert_rules") == []
    assert validate(load_yaml(SourceFile("t.yaml", "a: [")), "alert_rules") == []


# ---------------------------------------------------------------- fast path agreement

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False)
    | st.sampled_from(["", "x", "5m", "email", "slack", "${X}", "threshold", "AND", ">", "info"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["type", "name", "condition", "metric", "operator", "value", "window",
                         "aggregation", "stages", "delay", "channels", "smtp_server", "url",
                         "min_severity", "actions", "groups", "rules", "expr", "alert", "record",
                         "emial", "weights", "conditions", "threshold"]),
        inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from([*sorted(SEED_FILES.values()), "prometheus_rules"]), data=_VALUES)
def test_fast_check_agrees_with_jsonschema(name: str, data: object) -> None:
    import fastjsonschema

    from monitoring.dsl.schema import _fast_check, _validator

    try:
        _fast_check(name)(data)
        fast_ok = True
    except fastjsonschema.JsonSchemaException:
        fast_ok = False
    assert fast_ok == (not list(_validator(name).iter_errors(data)))
