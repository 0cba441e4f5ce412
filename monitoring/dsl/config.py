"""Typed configuration: notification channels, escalation policies and audit filters.

The seed's three configuration files (``notification_config.yaml``,
``escalation_policies.yaml``, ``audit_filters.yaml``) are validated against
their JSON Schemas and read into frozen dataclasses; every name keeps its span
so the linter can point at a channel or a policy that rules refer to. Several
files may be loaded (one per folder, say): :meth:`Config.merge` combines them
and reports names defined twice.

Secrets stay as written: a ``${SMTP_PASSWORD}`` reference is resolved by the
notifier when it sends, and settings never appear in a ``repr``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.schema import validate
from monitoring.dsl.source import SourceFile, Span
from monitoring.dsl.yaml_rules import YamlAstBuilder
from monitoring.dsl.yaml_source import YamlDocument, YamlPath, load_yaml

CHANNEL_TYPES = ("email", "slack", "pagerduty", "webhook", "alertmanager", "console")
AUDIT_SEVERITIES = ("debug", "info", "notice", "warning", "error", "critical")
AUDIT_CATEGORIES = ("authentication", "data_access", "configuration_change", "system",
                    "security", "rule_change", "alert", "notification", "silence",
                    "acknowledgement")
AUDIT_PRESETS = ("pci_dss", "hipaa", "sox", "gdpr")
"""Compliance presets ``audit_filters.yaml`` may list under ``compliance:`` (audit/presets.py)."""
AUDIT_META_CLASS = "meta"
"""The retention class of the ledger's own records: kept forever, not configurable."""
AUDIT_BUILTIN_CLASSES = (AUDIT_META_CLASS, "standard", "pci_dss", "hipaa", "sox")
"""Retention classes that exist without configuration (their figures: audit/presets.py)."""
AUDIT_FILTER_KEYS = ("compliance", "retention")
"""Top-level keys of ``audit_filters.yaml`` besides the categories."""
_CLASS_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
"""``${NAME}`` inside a setting: the value comes from the environment variable NAME."""


@dataclass(frozen=True, slots=True)
class NotificationChannel:
    """A configured channel: its name, its type and its settings as written."""

    name: ast.Name
    type: str
    settings: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    span: Span | None = field(default=None, compare=False, repr=False)

    def env_vars(self) -> tuple[str, ...]:
        """Names of the environment variables the settings refer to, in order."""
        found: list[str] = []
        for value in _strings_in(self.settings):
            found.extend(m.group(1) for m in ENV_REFERENCE.finditer(value))
        return tuple(dict.fromkeys(found))


@dataclass(frozen=True, slots=True)
class ChannelTarget:
    """Where an escalation stage notifies: a configured channel, or a type with settings.

    ``channel`` names a channel of the notification config (the string form
    ``- email`` or an explicit ``name:``); ``type`` is set by the object form.
    """

    type: str | None
    channel: ast.Name | None = None
    recipients: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict, hash=False, repr=False)
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class EscalationStage:
    """One stage: after ``delay`` without acknowledgement, notify ``targets``."""

    delay: ast.Duration
    targets: tuple[ChannelTarget, ...]
    repeat: int = 0
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class EscalationPolicy:
    """A named sequence of escalation stages."""

    name: ast.Name
    stages: tuple[EscalationStage, ...]
    description: str = ""
    repeat: int = 0
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which events of one category the audit ledger records (empty lists: all)."""

    category: str
    min_severity: str = "info"
    actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    span: Span | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class RetentionSetting:
    """A retention class as ``audit_filters.yaml`` sets it (unset parts keep the built-in's).

    ``forever`` is ``retain: forever`` (never pruned); ``hold`` is a legal hold (GDPR
    Art. 17(3)(b)/(e)): nothing of the class is pruned or erased while it is set.
    """

    name: ast.Name
    retain: ast.Duration | None = None
    forever: bool = False
    hot: ast.Duration | None = None
    hold: bool | None = None
    span: Span | None = field(default=None, compare=False, repr=False)


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything the configuration files define."""

    channels: tuple[NotificationChannel, ...] = ()
    policies: tuple[EscalationPolicy, ...] = ()
    audit_filters: tuple[AuditFilter, ...] = ()
    compliance: tuple[ast.Name, ...] = ()
    """Compliance presets named in ``audit_filters.yaml`` (``compliance: [pci_dss]``)."""
    retention: tuple[RetentionSetting, ...] = ()
    """Retention classes set in ``audit_filters.yaml`` (``retention: {pci_dss: {...}}``)."""

    def channel(self, name: str) -> NotificationChannel | None:
        """The channel called ``name``, if configured."""
        return next((c for c in self.channels if c.name.value == name), None)

    def policy(self, name: str) -> EscalationPolicy | None:
        """The escalation policy called ``name``, if configured."""
        return next((p for p in self.policies if p.name.value == name), None)

    def audit_filter(self, category: str) -> AuditFilter | None:
        """The filter of an audit category, if configured."""
        return next((f for f in self.audit_filters if f.category == category), None)

    def merge(self, other: Config) -> tuple[Config, list[Diagnostic]]:
        """Both configurations in one; a name defined in both is reported, the first kept."""
        diags: list[Diagnostic] = []
        channels = _merge(self.channels, other.channels, lambda c: c.name.value,
                          lambda c: c.name.span, "config/duplicate-channel",
                          "notification channel", diags)
        policies = _merge(self.policies, other.policies, lambda p: p.name.value,
                          lambda p: p.name.span, "config/duplicate-policy",
                          "escalation policy", diags)
        filters = _merge(self.audit_filters, other.audit_filters, lambda f: f.category,
                         lambda f: f.span, "config/duplicate-audit-category",
                         "audit category", diags)
        seen = {n.value for n in self.compliance}
        compliance = (*self.compliance,
                      *(n for n in other.compliance if n.value not in seen))
        retention = _merge(self.retention, other.retention, lambda r: r.name.value,
                           lambda r: r.name.span, "config/duplicate-retention-class",
                           "retention class", diags)
        return Config(channels, policies, filters, compliance, retention), diags


def _merge(first: Sequence[T], second: Sequence[T], key: Callable[[T], str],
           span: Callable[[T], Span | None], code: str, what: str,
           diags: list[Diagnostic]) -> tuple[T, ...]:
    """Concatenate two sequences of named items, reporting names defined twice."""
    seen: dict[str, T] = {}
    out: list[T] = []
    for item in (*first, *second):
        name = key(item)
        earlier = seen.get(name)
        if earlier is None:
            seen[name] = item
            out.append(item)
            continue
        where = span(earlier)
        diags.append(Diagnostic(code, Severity.ERROR, f"{what} {name!r} is defined twice",
                                span(item), ("keep one definition",),
                                related=(("first defined here", where),) if where else ()))
    return tuple(out)


def _strings_in(value: Any) -> Iterable[str]:
    """Every string inside nested settings."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings_in(v)


class _ConfigBuilder(YamlAstBuilder):
    """Reads the validated configuration documents into dataclasses."""

    def channels(self) -> tuple[NotificationChannel, ...]:
        """``name: settings`` entries; the type is ``type:`` or the name itself."""
        data = self.doc.data
        out: list[NotificationChannel] = []
        for name, settings in (data.items() if isinstance(data, dict) else ()):
            path: YamlPath = (name,)
            body = settings if isinstance(settings, dict) else {}
            explicit = body.get("type")
            kind = explicit if isinstance(explicit, str) else name
            if kind not in CHANNEL_TYPES or (settings is not None and not isinstance(
                    settings, dict)):
                continue  # the schema reported it
            out.append(NotificationChannel(
                ast.Name(name, self.doc.key_span(path)), kind,
                {k: v for k, v in body.items() if k != "type"}, self.doc.entry_span(path)))
        return tuple(out)

    def policies(self) -> tuple[EscalationPolicy, ...]:
        """The list of policies; duplicate names within the file are reported."""
        data = self.doc.data
        out: list[EscalationPolicy] = []
        for i, item in enumerate(data if isinstance(data, list) else []):
            policy = self._policy((i,), item) if isinstance(item, dict) else None
            if policy is not None:
                out.append(policy)
        merged, diags = Config(policies=()).merge(Config(policies=tuple(out)))
        self.diagnostics.extend(diags)
        return merged.policies

    def _policy(self, path: YamlPath, item: dict[str, Any]) -> EscalationPolicy | None:
        name = self.name((*path, "name"))
        stages_data = item.get("stages")
        stages = tuple(
            stage for j, s in enumerate(stages_data if isinstance(stages_data, list) else [])
            if isinstance(s, dict) and (stage := self._stage((*path, "stages", j), s)) is not None
        )
        self._check_order(stages)
        if name is None or not name.value:
            return None
        description = item.get("description")
        return EscalationPolicy(name, stages,
                                description if isinstance(description, str) else "",
                                _count(item.get("repeat")), self.full_span(path))

    def _stage(self, path: YamlPath, item: dict[str, Any]) -> EscalationStage | None:
        delay = self.seconds_or_duration((*path, "delay"))
        targets_data = item.get("channels")
        targets = tuple(
            target for k, t in enumerate(targets_data if isinstance(targets_data, list) else [])
            if (target := self._target((*path, "channels", k), t)) is not None
        )
        if delay is None:
            return None
        return EscalationStage(delay, targets, _count(item.get("repeat")), self.full_span(path))

    def _target(self, path: YamlPath, item: Any) -> ChannelTarget | None:
        span = self.full_span(path)
        if isinstance(item, str):
            return ChannelTarget(None, ast.Name(item, self.span(path)), span=span)
        if not isinstance(item, dict) or item.get("type") not in CHANNEL_TYPES:
            return None
        recipients = item.get("recipients")
        listed = (recipients,) if isinstance(recipients, str) else tuple(
            r for r in recipients if isinstance(r, str)) if isinstance(recipients, list) else ()
        settings = {k: v for k, v in item.items() if k not in ("type", "name", "recipients")}
        return ChannelTarget(str(item["type"]), self.name((*path, "name")), listed, settings,
                             span)

    def _check_order(self, stages: Sequence[EscalationStage]) -> None:
        """Stage delays count from the alert's start, so they must grow."""
        for before, after in itertools.pairwise(stages):
            if after.delay.ms <= before.delay.ms and after.delay.span is not None:
                self.warning("config/stage-order",
                             f"this stage's delay {after.delay} is not later than the previous "
                             f"stage's {before.delay}",
                             after.delay.span, "delays count from when the alert started "
                             "firing; list stages in increasing order of delay")

    def audit_filters(self) -> tuple[AuditFilter, ...]:
        """One filter per category."""
        data = self.doc.data
        out: list[AuditFilter] = []
        for category, body in (data.items() if isinstance(data, dict) else ()):
            if category not in AUDIT_CATEGORIES or not isinstance(body, dict | None):
                continue
            settings = body or {}
            severity = settings.get("min_severity", "info")
            out.append(AuditFilter(
                category, severity if severity in AUDIT_SEVERITIES else "info",
                _texts(settings.get("actions")), _texts(settings.get("resources")),
                self.doc.entry_span((category,))))
        return tuple(out)


    def compliance(self) -> tuple[ast.Name, ...]:
        """The presets of ``compliance:``; unknown names were reported by the schema."""
        values = self.get(("compliance",))
        out: list[ast.Name] = []
        for i, value in enumerate(values if isinstance(values, list) else []):
            if value in AUDIT_PRESETS and value not in {n.value for n in out}:
                out.append(ast.Name(value, self.span(("compliance", i))))
        return tuple(out)

    def retention(self) -> tuple[RetentionSetting, ...]:
        """The classes of ``retention:``, with their durations checked and located."""
        data = self.get(("retention",))
        out: list[RetentionSetting] = []
        for name, body in (data.items() if isinstance(data, dict) else ()):
            if isinstance(body, dict) and (setting := self._retention_class(name, body)):
                out.append(setting)
        return tuple(out)

    def _retention_class(self, name: str, body: dict[str, Any]) -> RetentionSetting | None:
        path: YamlPath = ("retention", name)
        key = self.doc.key_span(path)
        if name == AUDIT_META_CLASS:
            self.error("config/retention-meta", "the meta retention class cannot be changed",
                       key, "it holds the ledger's own records (genesis, key rotations, "
                       "prunes, erasures), which are needed to verify the rest and are kept "
                       "forever")
            return None
        if not _CLASS_NAME.match(name):
            self.error("config/retention-class-name", f"invalid retention class name {name!r}",
                       key, "use lowercase letters, digits and '_', starting with a letter")
            return None
        retain_text = body.get("retain")
        forever = retain_text == "forever"
        retain = None if forever or not isinstance(retain_text, str) else \
            self.duration_text((*path, "retain"), retain_text)
        hot_text = body.get("hot")
        hot = self.duration_text((*path, "hot"), hot_text) if isinstance(hot_text, str) \
            else None
        hold = body.get("hold") if isinstance(body.get("hold"), bool) else None
        if name not in AUDIT_BUILTIN_CLASSES and (hint := did_you_mean(
                name, AUDIT_BUILTIN_CLASSES[1:])):
            self.warning("config/retention-new-class", f"{name!r} is not a built-in retention "
                         "class, so this defines a new one", key, hint)
        if name not in AUDIT_BUILTIN_CLASSES and retain is None and not forever:
            if "retain" not in body:
                self.error("config/retention-retain", f"the new retention class {name!r} "
                           "needs 'retain'", key, "e.g. retain: 400d (or forever); the "
                           f"built-in classes are {', '.join(AUDIT_BUILTIN_CLASSES[1:])}")
            return None
        for what, duration in (("retain", retain), ("hot", hot)):
            if duration is not None and duration.ms <= 0 and duration.span is not None:
                self.error("config/retention-duration", f"'{what}' must be longer than 0",
                           duration.span)
                return None
        if retain is not None and hot is not None and hot.ms > retain.ms and \
                hot.span is not None:
            self.error("config/retention-hot", f"'hot' ({hot}) is longer than 'retain' "
                       f"({retain})", hot.span, "entries cannot stay hot longer than they "
                       "are kept")
            return None
        return RetentionSetting(ast.Name(name, key), retain, forever, hot, hold,
                                self.full_span(path))


def _count(value: Any) -> int:
    """A non-negative count field (``repeat``), 0 when absent or invalid."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _texts(values: Any) -> tuple[str, ...]:
    """The strings of a list field."""
    return tuple(v for v in values if isinstance(v, str)) if isinstance(values, list) else ()


# ---------------------------------------------------------------- loaders


def config_from_yaml(doc: YamlDocument, schema_name: str) -> tuple[Config, list[Diagnostic]]:
    """Validate a loaded configuration document against its schema and read it.

    ``schema_name`` is ``notification_config``, ``escalation_policies`` or
    ``audit_filters``. The document's own (YAML) diagnostics are not repeated.
    """
    if doc.root is None:
        return Config(), []
    diagnostics = validate(doc, schema_name)
    builder = _ConfigBuilder(doc)
    if schema_name == "notification_config":
        config = Config(channels=builder.channels())
    elif schema_name == "escalation_policies":
        config = Config(policies=builder.policies())
    elif schema_name == "audit_filters":
        config = Config(audit_filters=builder.audit_filters(),
                        compliance=builder.compliance(), retention=builder.retention())
    else:
        raise ValueError(f"not a configuration schema: {schema_name!r}")
    diagnostics.extend(builder.diagnostics)
    return config, diagnostics


def _load(source: SourceFile, schema_name: str) -> tuple[Config, list[Diagnostic]]:
    """Load, validate and read one configuration file; every problem is a diagnostic."""
    doc = load_yaml(source)
    config, diagnostics = config_from_yaml(doc, schema_name)
    return config, [*doc.diagnostics, *diagnostics]


def load_notification_config(source: SourceFile) -> tuple[Config, list[Diagnostic]]:
    """Load ``notification_config.yaml``: its channels."""
    return _load(source, "notification_config")


def load_escalation_policies(source: SourceFile) -> tuple[Config, list[Diagnostic]]:
    """Load ``escalation_policies.yaml``: its policies."""
    return _load(source, "escalation_policies")


def load_audit_filters(source: SourceFile) -> tuple[Config, list[Diagnostic]]:
    """Load ``audit_filters.yaml``: its filters, compliance presets and retention classes."""
    return _load(source, "audit_filters")
