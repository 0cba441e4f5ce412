from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitoring.dsl import ast, loader
from monitoring.dsl.diagnostics import Severity
from monitoring.dsl.limits import Limits
from monitoring.dsl.loader import FileFormat, format_by_name, format_by_shape, load_paths

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
PEER = SHARED / "peer" / "promtool"
SEED_FILES = ("alert_rules.yaml", "escalation_policies.yaml", "notification_config.yaml",
              "audit_filters.yaml")
RULES = Path(__file__).resolve().parents[2] / "rules"

ALERT = "- name: a\n  condition: {type: expr, expr: up == 0}\n  channels: [email]\n"
PROM = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up == 0\n"
DSL = "# a comment\ngroup g {\n  alert A { when up == 0 }\n}\n"


def seed_files() -> dict[str, str]:
    """The seed's four YAML files, shipped verbatim in rules/."""
    return {name: (RULES / name).read_text("utf-8") for name in SEED_FILES}


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, "utf-8")


def names(ws: loader.Workspace, root: Path) -> list[str]:
    return [Path(s.name).relative_to(root).as_posix() for s in ws.sources]


def test_seed_files_load_together(tmp_path: Path) -> None:
    write(tmp_path, dict(seed_files()))
    ws = load_paths([tmp_path])
    assert ws.diagnostics == []
    assert sorted(ws.formats.values(), key=lambda f: f.value) == [
        FileFormat.SEED_RULES, FileFormat.AUDIT_FILTERS, FileFormat.ESCALATION_POLICIES,
        FileFormat.NOTIFICATION_CONFIG]
    [(_, rule_file)] = ws.rule_files
    assert rule_file.kind is ast.FileKind.SEED_RULES
    assert [c.name.value for c in ws.config.channels] == ["email", "slack"]
    assert [p.name.value for p in ws.config.policies] == ["critical_alerts"]
    assert [f.category for f in ws.config.audit_filters] == ["authentication", "data_access"]
    assert ws.has_notification_config and ws.has_escalation_policies and ws.has_audit_filters
    policy = ws.config.policy("critical_alerts")
    assert policy is not None
    assert [s.delay.ms for s in policy.stages] == [300_000, 900_000]
    assert policy.stages[0].targets[0].recipients == ("team@example.com",)
    email = ws.config.channel("email")
    assert email is not None and email.settings["smtp_server"] == "smtp.example.com"
    assert "your-password" not in repr(email)


def test_peer_promtool_folder(tmp_path: Path) -> None:
    ws = load_paths([PEER / "rules.yml", PEER / "bad-rules-error.yml"])
    assert ws.diagnostics == []
    assert [rf.kind for _, rf in ws.rule_files] == [ast.FileKind.PROMETHEUS] * 2
    folder = load_paths([PEER])
    assert len(folder.rule_files) == 2
    assert {d.code for d in folder.diagnostics} == {"io/skipped"}
    assert all(d.severity is Severity.INFO for d in folder.diagnostics)


def test_folders_are_searched_recursively(tmp_path: Path) -> None:
    write(tmp_path, {
        "b/deep/x.rules": DSL,
        "a.yml": PROM,
        "b/alert_rules.yaml": ALERT,
        ".hidden/skip.rules": DSL,
        "b/.skip.yaml": PROM,
        "notes.txt": "not loaded",
        "c/README.md": "not loaded",
    })
    ws = load_paths([tmp_path])
    assert names(ws, tmp_path) == ["a.yml", "b/alert_rules.yaml", "b/deep/x.rules"]
    assert ws.diagnostics == []
    assert [rf.kind for _, rf in ws.rule_files] == [
        ast.FileKind.PROMETHEUS, ast.FileKind.SEED_RULES, ast.FileKind.DSL]


def test_explicit_files_are_loaded_even_if_hidden(tmp_path: Path) -> None:
    write(tmp_path, {".x.yaml": PROM})
    ws = load_paths([tmp_path / ".x.yaml", tmp_path / ".x.yaml", tmp_path])
    assert len(ws.sources) == 1 and len(ws.rule_files) == 1


def test_dsl_comments_are_kept(tmp_path: Path) -> None:
    write(tmp_path, {"x.rules": DSL})
    ws = load_paths([tmp_path / "x.rules"])
    [comment] = ws.comments[str(tmp_path / "x.rules")]
    assert comment.text == "# a comment" and comment.span.line == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [("alert_rules.yaml", FileFormat.SEED_RULES), ("ALERT_RULES.YML", FileFormat.SEED_RULES),
     ("x/escalation_policies.yml", FileFormat.ESCALATION_POLICIES),
     ("notification_config.yaml", FileFormat.NOTIFICATION_CONFIG),
     ("audit_filters.yaml", FileFormat.AUDIT_FILTERS), ("rules.yml", None),
     ("alert_rules.json", None), ("my_alert_rules.yaml", None)],
)
def test_format_by_name(name: str, expected: FileFormat | None) -> None:
    assert format_by_name(name) is expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"groups": []}, FileFormat.PROMETHEUS),
        ({"groups": None, "extra": 1}, FileFormat.PROMETHEUS),
        ([{"name": "a", "condition": {}}, "junk"], FileFormat.SEED_RULES),
        ([{"name": "p", "stages": []}], FileFormat.ESCALATION_POLICIES),
        ({"email": {"smtp_server": "x"}, "ops": {"type": "webhook"}},
         FileFormat.NOTIFICATION_CONFIG),
        ({"console": None}, FileFormat.NOTIFICATION_CONFIG),
        ({"security": {"min_severity": "info"}}, FileFormat.AUDIT_FILTERS),
        ({"compliance": ["pci_dss"], "authentication": {}}, FileFormat.AUDIT_FILTERS),
        ({"retention": {"pci_dss": {"hot": "90d"}}}, FileFormat.AUDIT_FILTERS),
        ({"rule_files": ["r.yml"], "tests": []}, FileFormat.PROMTOOL_TESTS),
        (None, FileFormat.EMPTY), ([], FileFormat.EMPTY), ({}, FileFormat.EMPTY),
        ({"apiVersion": "v1"}, FileFormat.UNKNOWN), ([1, 2], FileFormat.UNKNOWN),
        ("text", FileFormat.UNKNOWN),
    ],
)
def test_format_by_shape(data: Any, expected: FileFormat) -> None:
    assert format_by_shape(data) is expected


def test_unknown_format_explains_the_accepted_shapes(tmp_path: Path) -> None:
    write(tmp_path, {"k8s.yaml": "apiVersion: apps/v1\nkind: Deployment\n"})
    ws = load_paths([tmp_path])
    [d] = ws.diagnostics
    assert d.code == "schema/unknown-format" and d.severity is Severity.ERROR
    assert d.span is not None and d.span.line == 1
    assert "'groups'" in d.hints[0] and "'condition'" in d.hints[0] and "'stages'" in d.hints[0]


def test_named_file_is_validated_against_its_schema(tmp_path: Path) -> None:
    write(tmp_path, {"alert_rules.yaml": "groups: []\n"})
    ws = load_paths([tmp_path])
    assert [d.code for d in ws.diagnostics] == ["schema/type"]


def test_empty_yaml_files(tmp_path: Path) -> None:
    write(tmp_path, {"empty.yaml": "", "alert_rules.yaml": "# none yet\n",
                     "notification_config.yaml": ""})
    ws = load_paths([tmp_path])
    assert ws.diagnostics == []
    assert len(ws.sources) == 3
    assert [rf.groups for _, rf in ws.rule_files] == [()]
    assert ws.has_notification_config and ws.config.channels == ()


@pytest.mark.parametrize(
    ("files", "code", "fragment"),
    [
        ({"bad.rules": b"group g {\xff}\n"}, "io/unreadable",
         "not valid UTF-8: byte 0xff on line 1"),
        ({"alert_rules.yaml": b"- name: a\n  x: \xc3\x28\n"}, "io/unreadable",
         "byte 0xc3 on line 2"),
    ],
)
def test_undecodable_files(tmp_path: Path, files: dict[str, str | bytes], code: str,
                           fragment: str) -> None:
    write(tmp_path, files)
    ws = load_paths([tmp_path])
    [d] = ws.diagnostics
    assert d.code == code and fragment in d.message
    assert d.span is None and d.path is not None and d.file.endswith(next(iter(files)))
    assert ws.sources == []


def test_missing_and_unreadable_paths(tmp_path: Path) -> None:
    ws = load_paths([tmp_path / "nope", tmp_path / "nope.yaml"])
    assert [(d.code, Path(d.file).name) for d in ws.diagnostics] == [
        ("io/not-found", "nope"), ("io/not-found", "nope.yaml")]
    source, problem = loader.read_source(tmp_path)  # a folder where a file was expected
    assert source is None and problem is not None and problem.code == "io/unreadable"


def test_broken_symlink_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "link.yaml").symlink_to(tmp_path / "gone.yaml")
    ws = load_paths([tmp_path / "link.yaml"])
    assert [d.code for d in ws.diagnostics] == ["io/not-found"]


def test_file_size_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "LIMITS", Limits(max_file_bytes=10))
    write(tmp_path, {"rules.yml": PROM})
    ws = load_paths([tmp_path])
    assert [d.code for d in ws.diagnostics] == ["limit/too-large"]


def test_byte_order_mark_is_dropped(tmp_path: Path) -> None:
    write(tmp_path, {"rules.yml": "\ufeff" + PROM})
    ws = load_paths([tmp_path])
    assert ws.diagnostics == [] and not ws.sources[0].text.startswith("\ufeff")


def test_configs_merge_across_files(tmp_path: Path) -> None:
    write(tmp_path, {
        "a/notification_config.yaml": "email:\n  smtp_server: a\n",
        "b/notification_config.yaml": "email:\n  smtp_server: b\nops:\n  type: console\n",
        "a/escalation_policies.yaml": "- name: p\n  stages: [{delay: 1, channels: [email]}]\n",
        "b/escalation_policies.yaml": "- name: p\n  stages: [{delay: 2, channels: [ops]}]\n",
        "a/audit_filters.yaml": "system: {min_severity: error}\n",
        "b/audit_filters.yaml": "system: {min_severity: info}\n",
    })
    ws = load_paths([tmp_path])
    assert sorted(d.code for d in ws.diagnostics) == [
        "config/duplicate-audit-category", "config/duplicate-channel",
        "config/duplicate-policy"]
    channel = next(d for d in ws.diagnostics if d.code == "config/duplicate-channel")
    assert channel.span is not None and "b/notification" in channel.span.source.name
    assert channel.related[0][1].source.name.endswith("a/notification_config.yaml")
    assert [c.name.value for c in ws.config.channels] == ["email", "ops"]
    email = ws.config.channel("email")
    assert email is not None and email.settings["smtp_server"] == "a"
    audit = ws.config.audit_filter("system")
    assert audit is not None and audit.min_severity == "error"


def test_every_diagnostic_of_every_file(tmp_path: Path) -> None:
    write(tmp_path, {
        "alert_rules.yaml": "- name: a\n  condition: {type: expr, expr: 'up =='}\n  sevrity: x\n",
        "rules.yml": "groups:\n  - name: g\n    rules:\n      - record: r\n        alert: A\n"
                     "        expr: up\n",
        "bad.rules": "group g {\n  alert A { when up == }\n}\n",
        "broken.yaml": "a: [\n",
        "escalation_policies.yaml": "- name: p\n  stages: [{delay: 10, channels: [email]},"
                                    " {delay: 5, channels: [email]}]\n",
    })
    ws = load_paths([tmp_path])
    found = sorted((Path(d.file).name, d.code) for d in ws.diagnostics)
    assert found == [
        ("alert_rules.yaml", "schema/unknown-field"),
        ("alert_rules.yaml", "syntax/unexpected-eof"),
        ("bad.rules", "syntax/unexpected-token"),
        ("broken.yaml", "yaml/syntax"),
        ("escalation_policies.yaml", "config/stage-order"),
        ("rules.yml", "rule/alert-and-record"),
    ]
