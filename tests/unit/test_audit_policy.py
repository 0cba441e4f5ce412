"""The audit policy: the seed's filters, compliance presets, retention classes, and their config."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from monitoring.audit import cli as audit_cli
from monitoring.audit.envelope import AuditEvent
from monitoring.audit.errors import AuditError, EventError
from monitoring.audit.policy import AuditPolicy
from monitoring.audit.presets import (
    BUILTIN_CLASSES,
    META_CLASS,
    PRESETS,
    STANDARD_CLASS,
    is_meta_event,
)
from monitoring.dsl.config import (
    AUDIT_BUILTIN_CLASSES,
    AUDIT_CATEGORIES,
    AUDIT_PRESETS,
    Config,
    load_audit_filters,
)
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.schema import schema
from monitoring.dsl.source import SourceFile

ROOT = Path(__file__).resolve().parents[2]
SEED = (ROOT / "rules" / "audit_filters.yaml").read_text("utf-8")
DAY = 86_400_000


def load(text: str) -> tuple[Config, list[Diagnostic]]:
    return load_audit_filters(SourceFile("audit_filters.yaml", text))


def policy(text: str) -> AuditPolicy:
    config, diags = load(text)
    assert [d for d in diags if d.severity is Severity.ERROR] == []
    return AuditPolicy.from_config(config)


def ev(category: str, action: str, **fields: Any) -> AuditEvent:
    return AuditEvent(category, action, **fields)


def brief(diags: list[Diagnostic]) -> list[tuple[str, int, int, str]]:
    assert all(d.span is not None for d in diags)
    return [(d.code, d.span.line, d.span.column, d.span.text()) for d in diags if d.span]


# ------------------------------------------------------------------ the seed's filters


def test_seed_file_semantics() -> None:
    p = policy(SEED)
    assert p.presets == ()
    d = p.decide(ev("authentication", "login", resource="auth"))
    assert (d.record, d.retention, d.reason) == (True, STANDARD_CLASS,
                                                 "passes the authentication filter")
    d = p.decide(ev("authentication", "password_change", resource="auth"))
    assert not d.record
    assert d.reason == ("action 'password_change' is not among the actions of the "
                        "authentication filter")
    d = p.decide(ev("authentication", "login", resource="db"))
    assert not d.record and d.reason == ("resource 'db' is not among the resources of the "
                                         "authentication filter")
    d = p.decide(ev("data_access", "read"))
    assert not d.record and d.reason.startswith("no resource is not among")
    d = p.decide(ev("data_access", "read", resource="data", severity="debug"))
    assert not d.record
    assert d.reason == "severity debug is below min_severity info of the data_access filter"
    d = p.decide(ev("alert", "firing", severity="debug"))
    assert d.record and d.reason == "no filter for category alert"


def test_severity_order() -> None:
    p = policy("security: {min_severity: warning}\n")
    recorded = [s for s in ("debug", "info", "notice", "warning", "error", "critical")
                if p.decide(ev("security", "x", severity=s)).record]
    assert recorded == ["warning", "error", "critical"]


def test_default_policy_records_everything() -> None:
    p = AuditPolicy.default()
    for category in AUDIT_CATEGORIES:
        d = p.decide(ev(category, "x", severity="debug"))
        assert d.record and d.retention == STANDARD_CLASS
    assert p.missing_fields(ev("authentication", "login")) == []


def test_ledger_records_are_always_kept_in_meta() -> None:
    p = policy("system: {min_severity: critical, actions: [boot]}\n"
               "security: {min_severity: critical}\n")
    for category, action in [("system", "ledger.open"), ("system", "key.rotate"),
                             ("system", "retention.prune"), ("system", "retention.archive"),
                             ("security", "gdpr.erasure"),
                             ("security", "ledger.alarm_acknowledged"),
                             ("system", "clock.backwards")]:
        d = p.decide(ev(category, action, severity="info"))
        assert (d.record, d.retention) == (True, META_CLASS), (category, action)
        assert p.missing_fields(ev(category, action)) == []
    assert not p.decide(ev("system", "rule.evaluated")).record
    assert not is_meta_event("alert", "ledger.open")
    assert not is_meta_event("system", "ledgerx")


# ------------------------------------------------------------------ presets


def test_presets_keep_what_a_filter_would_drop() -> None:
    text = SEED + "compliance: [pci_dss]\n"
    p = policy(text)
    d = p.decide(ev("authentication", "password_change", resource="auth"))
    assert d.record
    assert d.reason == ("required by pci_dss 10.2.1.4/10.2.1.5, although action "
                        "'password_change' is not among the actions of the authentication "
                        "filter")
    d = p.decide(ev("data_access", "read", resource="data", severity="debug"))
    assert d.record and d.reason.startswith("required by pci_dss 10.2.1.1/10.2.1.3, although "
                                            "severity debug")
    # Without the preset the same events are dropped.
    assert not policy(SEED).decide(ev("authentication", "password_change",
                                      resource="auth")).record


def test_preset_requirements_by_action() -> None:
    p = policy("data_access: {min_severity: critical}\ncompliance: [sox]\n")
    assert p.decide(ev("data_access", "delete")).reason.startswith("required by sox")
    assert not p.decide(ev("data_access", "read")).record
    g = policy("security: {min_severity: critical}\ncompliance: [gdpr]\n")
    assert g.decide(ev("security", "login_blocked")).reason.startswith("required by gdpr Art. 33")
    assert not g.decide(ev("alert", "x")).reason.startswith("required")


def test_required_fields_pci_10_2_2() -> None:
    p = policy("compliance: [pci_dss]\n")
    assert p.missing_fields(ev("authentication", "login")) == [
        "user_id", "outcome", "source", "resource"]
    complete = ev("authentication", "login", user_id="u", source="10.0.0.1", resource="auth",
                  details={"success": True})
    assert p.missing_fields(complete) == []
    assert p.missing_fields(ev("system", "rule.evaluated")) == []  # no user to identify
    assert p.missing_fields(ev("alert", "firing")) == []
    assert p.describe_missing(["source"]) == "source (origination)"
    both = policy("compliance: [hipaa, sox]\n")
    assert both.missing_fields(ev("rule_change", "edit", user_id="u")) == ["outcome",
                                                                          "resource"]
    assert policy("compliance: [gdpr]\n").missing_fields(ev("authentication", "login")) == []


def test_preset_table_is_consistent() -> None:
    assert tuple(PRESETS) == AUDIT_PRESETS
    assert tuple(BUILTIN_CLASSES) == AUDIT_BUILTIN_CLASSES
    enum = schema("audit_filters")["properties"]["compliance"]["items"]["enum"]
    assert tuple(enum) == AUDIT_PRESETS
    for preset in PRESETS.values():
        refs = {c.ref for c in preset.clauses}
        for req in preset.requires:
            assert req.category in AUDIT_CATEGORIES
            assert all(part in refs for part in req.clause.split("/")), (preset.name, req)
        assert set(preset.covers) <= set(AUDIT_CATEGORIES)
        assert set(preset.field_categories) <= set(AUDIT_CATEGORIES)
        assert BUILTIN_CLASSES[preset.retention.name] == preset.retention


def test_retention_figures() -> None:
    c = BUILTIN_CLASSES
    assert c["pci_dss"].retain_ms == 366 * DAY and c["pci_dss"].hot_ms == 92 * DAY
    assert c["hipaa"].retain_ms == (6 * 365 + 2) * DAY
    assert c["sox"].retain_ms == (7 * 365 + 2) * DAY
    assert c["standard"].retain_ms == 397 * DAY
    assert c[META_CLASS].retain_ms is None


# ------------------------------------------------------------------ retention


def test_longest_applicable_class_wins() -> None:
    p = policy("compliance: [pci_dss, hipaa, sox]\n")
    assert p.decide(ev("alert", "firing")).retention == STANDARD_CLASS  # 397 d > pci 366 d
    assert p.decide(ev("data_access", "read")).retention == "sox"       # 7 y > 6 y
    hipaa = policy("compliance: [hipaa]\n")
    assert hipaa.decide(ev("data_access", "read")).retention == "hipaa"
    assert hipaa.decide(ev("alert", "firing")).retention == STANDARD_CLASS
    short = policy("compliance: [pci_dss]\nretention: {standard: {retain: 30d}}\n")
    assert short.decide(ev("alert", "firing")).retention == "pci_dss"


def test_events_may_ask_for_a_longer_class_only() -> None:
    p = policy("retention:\n  finance: {retain: 10y}\n  brief: {retain: 7d}\n"
               "compliance: [hipaa]\n")
    assert p.decide(ev("alert", "x", retention="finance")).retention == "finance"
    assert p.decide(ev("alert", "x", retention="brief")).retention == STANDARD_CLASS
    assert p.decide(ev("data_access", "x", retention="brief")).retention == "hipaa"
    with pytest.raises(EventError, match=r"^retention: unknown retention class 'finanse'; "
                                         r"did you mean 'finance'"):
        p.decide(ev("alert", "x", retention="finanse"))
    with pytest.raises(EventError, match="reserved for the ledger's own records"):
        p.decide(ev("alert", "x", retention=META_CLASS))


def test_configured_classes() -> None:
    p = policy("retention:\n"
               "  pci_dss: {hot: 366d}\n"
               "  keep: {retain: forever, hold: true}\n"
               "  tiny: {retain: 10d}\n"
               "  standard: {hold: true}\n")
    rc = p.retention_classes
    assert rc["pci_dss"].retain_ms == 366 * DAY and rc["pci_dss"].hot_ms == 366 * DAY
    assert rc["keep"].retain_ms is None and rc["keep"].hold
    assert rc["tiny"].hot_ms == 10 * DAY  # the default 92 d hot, capped by retain
    assert rc["standard"].hold and rc["standard"].retain_ms == 397 * DAY
    assert rc[META_CLASS] == BUILTIN_CLASSES[META_CLASS]
    assert p.warnings == ()


def test_weakening_a_preset_class_is_a_warning() -> None:
    p = policy("compliance: [pci_dss]\nretention: {pci_dss: {retain: 180d}}\n")
    assert p.warnings == ("retention class 'pci_dss' keeps events 180 days, shorter than "
                          "the 366 days of PCI DSS 10.5.1 (pci_dss)",)
    p = policy("retention: {pci_dss: {hot: 400d}}\n")
    assert p.warnings == ("retention class 'pci_dss': hot (400 days) is longer than retain "
                          "(366 days); using 366 days",)
    assert p.retention_classes["pci_dss"].hot_ms == 366 * DAY


# ------------------------------------------------------------------ configuration file


def test_seed_file_loads_unchanged() -> None:
    config, diags = load(SEED)
    assert diags == []
    assert [f.category for f in config.audit_filters] == ["authentication", "data_access"]
    assert config.compliance == () and config.retention == ()


def test_compliance_and_retention_are_read() -> None:
    config, diags = load(SEED + "compliance: [pci_dss, gdpr]\n"
                         "retention:\n  finance: {retain: 7y, hot: 30d, hold: false}\n")
    assert diags == []
    assert [n.value for n in config.compliance] == ["pci_dss", "gdpr"]
    [setting] = config.retention
    assert setting.name.value == "finance" and setting.retain is not None
    assert setting.retain.ms == 7 * 365 * DAY and setting.hot is not None
    assert setting.hot.ms == 30 * DAY and setting.hold is False
    assert [f.category for f in config.audit_filters] == ["authentication", "data_access"]


@pytest.mark.parametrize(("text", "expected", "fragment", "hint"), [
    ("compliance: [pci_dss, hipa]\n", [("schema/invalid-value", 1, 23, "hipa")],
     "invalid value 'hipa' for 'compliance' (item 2)", "did you mean 'hipaa'?"),
    ("complience: [pci_dss]\n", [("schema/unknown-field", 1, 1, "complience")],
     "unknown field 'complience'", "did you mean 'compliance'?"),
    ("compliance: [sox, sox]\n", [("schema/invalid-value", 1, 13, "[sox, sox]")],
     "must not list the same item twice", ""),
    ("retention:\n  meta: {retain: 1d}\n", [("config/retention-meta", 2, 3, "meta")],
     "the meta retention class cannot be changed", "needed to verify the rest"),
    ("retention:\n  extra: {hot: 1d}\n", [("config/retention-retain", 2, 3, "extra")],
     "the new retention class 'extra' needs 'retain'", "retain: 400d"),
    ("retention:\n  Big: {retain: 1d}\n", [("config/retention-class-name", 2, 3, "Big")],
     "invalid retention class name 'Big'", "lowercase letters"),
    ("retention:\n  x: {retain: 10q}\n", [("syntax/invalid-duration", 2, 15, "1")],
     "invalid duration", ""),
    ("retention:\n  x: {retain: 0s}\n", [("config/retention-duration", 2, 15, "0s")],
     "'retain' must be longer than 0", ""),
    ("retention:\n  x: {retain: 10d, hot: 20d}\n", [("config/retention-hot", 2, 25, "20d")],
     "'hot' (20d) is longer than 'retain' (10d)", ""),
    ("retention:\n  x: {retain: 10d, keep: 1}\n", [("schema/unknown-field", 2, 20, "keep")],
     "unknown field 'keep' in retention class", ""),
    ("retention:\n  x: {retain: 10d, hold: yes}\n", [("schema/type", 2, 26, "yes")],
     "'hold' must be a boolean", ""),
    ("retention:\n  pcidss: {retain: 1y}\n", [("config/retention-new-class", 2, 3, "pcidss")],
     "'pcidss' is not a built-in retention class", "did you mean 'pci_dss'?"),
])
def test_config_errors_are_located(text: str, expected: list[tuple[str, int, int, str]],
                                   fragment: str, hint: str) -> None:
    _, diags = load(text)
    assert brief(diags) == expected
    assert fragment in diags[0].message
    if hint:
        assert any(hint in h for h in diags[0].hints)


def test_retention_classes_defined_twice_across_files() -> None:
    a, _ = load("retention: {finance: {retain: 7y}}\ncompliance: [sox]\n")
    b, _ = load("retention: {finance: {retain: 1y}}\ncompliance: [sox, gdpr]\n")
    merged, diags = a.merge(b)
    assert [d.code for d in diags] == ["config/duplicate-retention-class"]
    assert [r.retain.ms for r in merged.retention if r.retain] == [7 * 365 * DAY]
    assert [n.value for n in merged.compliance] == ["sox", "gdpr"]


def test_from_config_refuses_unknown_preset_names() -> None:
    from monitoring.dsl import ast

    config = Config(compliance=(ast.Name("hipa"),))
    with pytest.raises(AuditError, match="unknown compliance preset 'hipa'; did you mean "
                                         "'hipaa'"):
        AuditPolicy.from_config(config)


def test_cli_config_folder(tmp_path: Path) -> None:
    (tmp_path / "audit_filters.yaml").write_text(SEED + "compliance: [hipaa]\n", "utf-8")
    p = audit_cli.load_policy(str(tmp_path))
    assert isinstance(p, AuditPolicy) and [x.name for x in p.presets] == ["hipaa"]
    (tmp_path / "audit_filters.yaml").write_text("compliance: [hipa]\n", "utf-8")
    with pytest.raises(AuditError, match=r"(?s)audit_filters.yaml:1:14: .*did you mean 'hipaa'"):
        audit_cli.load_policy(str(tmp_path))


# ------------------------------------------------------------------ the documentation


def test_compliance_doc_covers_every_clause_and_class() -> None:
    text = (ROOT / "docs" / "compliance.md").read_text("utf-8")
    for preset in PRESETS.values():
        assert f"(`{preset.name}`)" in text
        for clause in preset.clauses:
            assert f"| {clause.ref.replace('-', '–')} |" in text or f"| {clause.ref} |" in text
        if set(preset.covers) != set(AUDIT_CATEGORIES):
            row = next(line for line in text.splitlines() if line.startswith(
                f"| `{preset.retention.name}` |"))
            assert all(f"`{category}`" in row for category in preset.covers)
    for name, rc in BUILTIN_CLASSES.items():
        assert f"| `{name}` |" in text
        if rc.retain_ms is not None:
            assert f"{rc.retain_ms // DAY:,} days" in text or f"{rc.retain_ms // DAY} days" in text
    lowered = text.lower()
    assert "supports controls" in lowered or "*support controls*" in lowered
    assert "tamper-evident" in lowered
    assert not re.search(r"compliant|tamper-proof", lowered)
