"""Loading files and folders into a workspace: every rule file and config file, one AST.

:func:`load_paths` is the front door of ``monitoring lint`` and of the library:
folders are searched recursively for ``*.rules``, ``*.yaml`` and ``*.yml``
(hidden files and folders are skipped), and each file's format is chosen by
its name, then by its shape:

    *.rules                       our DSL
    alert_rules.y(a)ml            the seed's alert rules
    escalation_policies.y(a)ml    escalation policies
    notification_config.y(a)ml    notification channels
    audit_filters.y(a)ml          audit filters
    routing.y(a)ml                the notification routing tree (monitoring.notify.routing_config)
    oncall.y(a)ml                 on-call people and schedules (monitoring.notify.oncall_config)
    other YAML                    by shape: a mapping with ``groups`` is a Prometheus rule
                                  file; a list of mappings with ``condition`` seed rules; a
                                  list with ``stages`` escalation policies; a mapping of
                                  channel types or audit categories the matching config;
                                  a mapping with ``route`` routing, with ``people`` or
                                  ``schedules`` on-call

Routing receivers are checked against the channels of every notification config
loaded with them, once all files are read.

Nothing here raises on bad input: missing and unreadable files, non-UTF-8
text and files of unknown shape are diagnostics (``io/...``, ``schema/...``).
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.dsl import ast
from monitoring.dsl.config import (
    AUDIT_CATEGORIES,
    AUDIT_FILTER_KEYS,
    CHANNEL_TYPES,
    Config,
    config_from_yaml,
)
from monitoring.dsl.diagnostics import Diagnostic, Severity, whole_file
from monitoring.dsl.limits import LIMITS
from monitoring.dsl.parser import Comment, parse_rule_file
from monitoring.dsl.prom_rules import prometheus_rule_file
from monitoring.dsl.schema import validate
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_rules import seed_rule_file
from monitoring.dsl.yaml_source import YamlDocument, load_yaml

if TYPE_CHECKING:
    from monitoring.notify.routing_config import RoutingConfig

RULE_SUFFIXES = (".rules",)
YAML_SUFFIXES = (".yaml", ".yml")


class FileFormat(enum.Enum):
    """What a loaded file holds."""

    DSL = "dsl"
    SEED_RULES = "alert_rules"
    PROMETHEUS = "prometheus_rules"
    ESCALATION_POLICIES = "escalation_policies"
    NOTIFICATION_CONFIG = "notification_config"
    AUDIT_FILTERS = "audit_filters"
    ROUTING = "routing"
    ONCALL = "oncall"
    PROMTOOL_TESTS = "promtool_tests"
    EMPTY = "empty"
    UNKNOWN = "unknown"


_BY_STEM = {
    "alert_rules": FileFormat.SEED_RULES,
    "escalation_policies": FileFormat.ESCALATION_POLICIES,
    "notification_config": FileFormat.NOTIFICATION_CONFIG,
    "audit_filters": FileFormat.AUDIT_FILTERS,
    "routing": FileFormat.ROUTING,
    "oncall": FileFormat.ONCALL,
}
_ROUTING_KEYS = ("route", "inhibit_rules", "time_intervals")
_ONCALL_KEYS = ("people", "schedules")
_CONFIG_FORMATS = (FileFormat.ESCALATION_POLICIES, FileFormat.NOTIFICATION_CONFIG,
                   FileFormat.AUDIT_FILTERS)

ACCEPTED_SHAPES = (
    "a Prometheus rule file (a mapping with 'groups')",
    "alert rules in the seed's format (a list of rules with 'condition')",
    "escalation policies (a list of policies with 'stages')",
    "notification routing (a mapping with 'route')",
    "on-call people and schedules (a mapping with 'people' or 'schedules')",
    "or a file named alert_rules.yaml, escalation_policies.yaml, notification_config.yaml, "
    "audit_filters.yaml, routing.yaml or oncall.yaml",
)


@dataclass(slots=True)
class Workspace:
    """Everything loaded from a set of paths."""

    sources: list[SourceFile] = field(default_factory=list)
    rule_files: list[tuple[SourceFile, ast.RuleFile]] = field(default_factory=list)
    comments: dict[str, list[Comment]] = field(default_factory=dict)  # per DSL file name
    config: Config = field(default_factory=Config)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    formats: dict[str, FileFormat] = field(default_factory=dict)  # per file name
    routing: list[tuple[SourceFile, RoutingConfig]] = field(default_factory=list)  # as read
    oncall: list[tuple[SourceFile, Any]] = field(default_factory=list)  # OnCallConfig each

    @property
    def has_notification_config(self) -> bool:
        """Whether a notification config was loaded (so unknown channels can be reported)."""
        return FileFormat.NOTIFICATION_CONFIG in self.formats.values()

    @property
    def has_escalation_policies(self) -> bool:
        """Whether an escalation policy file was loaded (so unknown policies can be reported)."""
        return FileFormat.ESCALATION_POLICIES in self.formats.values()

    @property
    def has_audit_filters(self) -> bool:
        """Whether an audit filter file was loaded."""
        return FileFormat.AUDIT_FILTERS in self.formats.values()


def load_paths(paths: Sequence[str | Path]) -> Workspace:
    """Load files and folders (recursively) into one workspace; never raises on bad input."""
    ws = Workspace()
    files, problems = expand_paths(paths)
    ws.diagnostics.extend(problems)
    for path in files:
        source, problem = read_source(path)
        if problem is not None:
            ws.diagnostics.append(problem)
        if source is not None:
            load_source(ws, source)
    if ws.routing and ws.has_notification_config:
        from monitoring.notify.routing_config import check_receivers

        names = [c.name.value for c in ws.config.channels]
        for _, routing in ws.routing:
            ws.diagnostics.extend(check_receivers(routing, names))
    if ws.config.policies and ws.has_notification_config:
        # Stage targets: named channels, a configured channel of the type, known schedules.
        from monitoring.notify.escalation import check_policies

        channels = {c.name.value: c for c in ws.config.channels}
        oncall = ws.oncall[0][1] if ws.oncall else None
        ws.diagnostics.extend(check_policies(ws.config.policies, channels, oncall))
    return ws


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[Diagnostic]]:
    """The files named or found under the folders named, each once, in a stable order."""
    out: list[Path] = []
    problems: list[Diagnostic] = []
    seen: set[str] = set()

    def add(path: Path) -> None:
        try:
            key = str(path.resolve())
        except (OSError, RuntimeError):
            key = str(path)
        if key not in seen:
            seen.add(key)
            out.append(path)

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in _walk(path, problems):
                add(found)
        elif path.exists():
            add(path)
        else:
            problems.append(Diagnostic("io/not-found", Severity.ERROR,
                                       "no such file or folder", None, path=str(path)))
    return out, problems


def _walk(top: Path, problems: list[Diagnostic]) -> list[Path]:
    """Rule and YAML files under ``top``, skipping hidden files and folders."""

    def unreadable(error: OSError) -> None:
        problems.append(Diagnostic("io/unreadable", Severity.ERROR,
                                   f"cannot read folder: {error.strerror or error}", None,
                                   path=str(error.filename or top)))

    found: list[Path] = []
    for folder, dirs, names in os.walk(top, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if not name.startswith(".") and name.endswith(RULE_SUFFIXES + YAML_SUFFIXES):
                found.append(Path(folder) / name)
    return found


def read_source(path: Path) -> tuple[SourceFile | None, Diagnostic | None]:
    """Read a file as UTF-8 text (a leading byte-order mark is dropped)."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > LIMITS.max_file_bytes:
            return None, Diagnostic("limit/too-large", Severity.ERROR,
                                    f"file is {size:,} bytes; the limit is "
                                    f"{LIMITS.max_file_bytes:,}", None, path=name)
        data = path.read_bytes()
    except OSError as e:
        return None, Diagnostic("io/unreadable", Severity.ERROR,
                                f"cannot read file: {e.strerror or e}", None, path=name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        return None, Diagnostic("io/unreadable", Severity.ERROR,
                                f"file is not valid UTF-8: byte 0x{data[e.start]:02x} on line "
                                f"{line}", None, ("save the file as UTF-8",), path=name)
    return SourceFile(name, text.removeprefix("\ufeff")), None


def load_source(ws: Workspace, source: SourceFile) -> FileFormat:
    """Load one file's text into the workspace, choosing its format by name, then shape."""
    ws.sources.append(source)
    if source.name.endswith(RULE_SUFFIXES):
        result = parse_rule_file(source)
        rule_file = result.node if isinstance(result.node, ast.RuleFile) else \
            ast.RuleFile(ast.FileKind.DSL)
        ws.rule_files.append((source, rule_file))
        ws.comments[source.name] = list(result.comments)
        ws.diagnostics.extend(result.diagnostics)
        ws.formats[source.name] = FileFormat.DSL
        return FileFormat.DSL
    doc = load_yaml(source)
    ws.diagnostics.extend(doc.diagnostics)
    fmt = format_by_name(source.name)
    if fmt is None:
        fmt = format_by_shape(doc.data) if doc.root is not None else FileFormat.EMPTY
    ws.formats[source.name] = fmt
    _load_yaml_format(ws, doc, fmt)
    return fmt


def format_by_name(name: str) -> FileFormat | None:
    """The format a file's name announces (``alert_rules.yaml`` ...), if any."""
    path = Path(name)
    if path.suffix.lower() not in YAML_SUFFIXES:
        return None
    return _BY_STEM.get(path.stem.lower())


def format_by_shape(data: Any) -> FileFormat:
    """The format of a YAML document of no telling name, from its top-level shape."""
    if data is None or data == [] or data == {}:
        return FileFormat.EMPTY
    if isinstance(data, dict):
        if "groups" in data:
            return FileFormat.PROMETHEUS
        if isinstance(data.get("tests"), list):
            return FileFormat.PROMTOOL_TESTS
        if all(key in AUDIT_CATEGORIES or key in AUDIT_FILTER_KEYS for key in data):
            return FileFormat.AUDIT_FILTERS
        if all(_is_channel(key, value) for key, value in data.items()):
            return FileFormat.NOTIFICATION_CONFIG
        if "route" in data and all(key in _ROUTING_KEYS for key in data):
            return FileFormat.ROUTING
        if all(key in _ONCALL_KEYS for key in data):
            return FileFormat.ONCALL
    if isinstance(data, list):
        items = [x for x in data if isinstance(x, dict)]
        if any("condition" in x for x in items):
            return FileFormat.SEED_RULES
        if any("stages" in x for x in items):
            return FileFormat.ESCALATION_POLICIES
    return FileFormat.UNKNOWN


def _is_channel(key: str, value: Any) -> bool:
    """Whether a top-level entry looks like a notification channel."""
    if not isinstance(value, dict | None):
        return False
    declared = value.get("type") if isinstance(value, dict) else None
    return key in CHANNEL_TYPES or declared in CHANNEL_TYPES


def _load_yaml_format(ws: Workspace, doc: YamlDocument, fmt: FileFormat) -> None:
    """Validate and build a loaded YAML document of a known format."""
    source = doc.source
    if fmt in (FileFormat.SEED_RULES, FileFormat.PROMETHEUS):
        build = seed_rule_file if fmt is FileFormat.SEED_RULES else prometheus_rule_file
        kind = ast.FileKind.SEED_RULES if fmt is FileFormat.SEED_RULES else \
            ast.FileKind.PROMETHEUS
        if doc.root is None:
            rule_file = ast.RuleFile(kind, span=source.span(0, len(source.text)))
            ws.rule_files.append((source, rule_file))
            return
        ws.diagnostics.extend(validate(doc, fmt.value))
        rule_file, diagnostics = build(doc)
        ws.rule_files.append((source, rule_file))
        ws.diagnostics.extend(diagnostics)
    elif fmt in _CONFIG_FORMATS:
        config, diagnostics = config_from_yaml(doc, fmt.value)
        ws.diagnostics.extend(diagnostics)
        ws.config, clashes = ws.config.merge(config)
        ws.diagnostics.extend(clashes)
    elif fmt in (FileFormat.ROUTING, FileFormat.ONCALL):
        _load_notify_config(ws, doc, fmt)
    elif fmt is FileFormat.PROMTOOL_TESTS:
        ws.diagnostics.append(Diagnostic(
            "io/skipped", Severity.INFO, "promtool unit-test file: not a rule file, skipped",
            whole_file(source), ("run it with `monitoring test`",)))
    elif fmt is FileFormat.UNKNOWN:
        ws.diagnostics.append(Diagnostic(
            "schema/unknown-format", Severity.ERROR,
            "cannot tell what this YAML file holds", whole_file(source),
            ("accepted: " + "; ".join(ACCEPTED_SHAPES),)))


def _load_notify_config(ws: Workspace, doc: YamlDocument, fmt: FileFormat) -> None:
    """Read ``routing.yaml`` or ``oncall.yaml`` with the notifier's own parser.

    Imported here: the notifier imports this package, and rule-only runs need neither.
    """
    if fmt is FileFormat.ROUTING:
        from monitoring.notify.routing_config import read_routing

        routing, diagnostics = read_routing(doc)  # receivers are checked once all are read
        ws.diagnostics.extend(diagnostics)
        if routing is not None:
            ws.routing.append((doc.source, routing))
        return
    try:
        from monitoring.notify.oncall_config import parse_oncall
    except ImportError:  # the on-call module is optional while it is being written
        ws.diagnostics.append(Diagnostic(
            "io/skipped", Severity.INFO, "on-call file: not checked (no on-call support)",
            whole_file(doc.source)))
        return
    oncall, diagnostics = parse_oncall(doc)
    ws.diagnostics.extend(diagnostics)
    if oncall is not None:
        ws.oncall.append((doc.source, oncall))
