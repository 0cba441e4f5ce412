"""What the ledger records and for how long: the seed's filters, the presets, retention classes.

``audit_filters.yaml`` keeps the seed's semantics: per category, an event is recorded when its
severity is at least ``min_severity``, its action is among ``actions`` (if listed) and its
resource among ``resources`` (if listed); categories the file does not mention are recorded.
Compliance presets (:mod:`monitoring.audit.presets`) sit above the filters: an event a preset
requires is recorded even when a filter would drop it, and the decision's reason names the
preset and clause, so an auditor can see why. The ledger's own records (``system`` events
such as ``ledger.open``, ``key.rotate``, ``retention.prune``, ``gdpr.erasure``) are always
recorded, in the ``meta`` class that is never pruned.

Each recorded event gets one retention class: the longest of the ``standard`` class, the
classes of the presets covering its category and the class the event asked for. Longest wins
because an event kept too short breaks an obligation, while one kept longer than a single
framework needs is still within the longer one's (the docs spell out the GDPR trade-off).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from monitoring.audit.envelope import AuditEvent
from monitoring.audit.errors import AuditError, EventError
from monitoring.audit.presets import (
    BUILTIN_CLASSES,
    FIELD_NAMES,
    META_CLASS,
    MONTHS_3,
    PRESETS,
    STANDARD_CLASS,
    Preset,
    RetentionClass,
    is_meta_event,
)
from monitoring.dsl.config import AUDIT_SEVERITIES, AuditFilter, Config, RetentionSetting
from monitoring.dsl.diagnostics import did_you_mean

__all__ = ["AuditPolicy", "Decision", "RetentionClass"]

_RANK = {name: i for i, name in enumerate(AUDIT_SEVERITIES)}


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether an event is recorded, in which retention class, and why (for operators)."""

    record: bool
    retention: str
    reason: str


@dataclass(frozen=True)
class AuditPolicy:
    """Filters, presets and retention classes; :meth:`decide` applies them to one event."""

    filters: Mapping[str, AuditFilter] = field(default_factory=dict)
    presets: tuple[Preset, ...] = ()
    retention_classes: Mapping[str, RetentionClass] = field(
        default_factory=lambda: BUILTIN_CLASSES)
    warnings: tuple[str, ...] = ()
    """Settings that weaken a preset (a class shorter than its clause asks), for display."""
    _required: dict[tuple[str, str], str | None] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def default(cls) -> AuditPolicy:
        """Record everything; built-in retention classes; no presets."""
        return cls()

    @classmethod
    def from_config(cls, config: Config) -> AuditPolicy:
        """The policy of a loaded ``audit_filters.yaml`` (filters, compliance, retention)."""
        presets: list[Preset] = []
        for name in config.compliance:
            preset = PRESETS.get(name.value)
            if preset is None:
                hint = did_you_mean(name.value, PRESETS)
                raise AuditError(f"unknown compliance preset {name.value!r}"
                                 + (f"; {hint}" if hint else "")
                                 + f" (presets: {', '.join(PRESETS)})")
            presets.append(preset)
        classes = dict(BUILTIN_CLASSES)
        warnings: list[str] = []
        for setting in config.retention:
            classes[setting.name.value] = _configured(setting, classes.get(setting.name.value),
                                                      warnings)
        for preset in presets:
            configured, basis = classes[preset.retention.name], preset.retention
            if basis.longer_than(configured):
                warnings.append(
                    f"retention class {configured.name!r} keeps events "
                    f"{_days(configured.retain_ms)}, shorter than the "
                    f"{_days(basis.retain_ms)} of {basis.basis} ({preset.name})")
        return cls({f.category: f for f in config.audit_filters}, tuple(presets),
                   MappingProxyType(classes), tuple(warnings))

    # ------------------------------------------------------------------ decisions

    def decide(self, ev: AuditEvent) -> Decision:
        """Record ``ev`` or not, its retention class and the reason.

        Raises :class:`EventError` when the event asks for an unknown retention class.
        """
        category, action = ev.event_type, ev.action
        if is_meta_event(category, action):
            return Decision(True, META_CLASS, "the ledger's own record: always kept")
        retention = self.retention_for(ev)
        dropped = self._filter_drops(ev)
        if dropped is None:
            flt = self.filters.get(category)
            return Decision(True, retention, f"passes the {category} filter" if flt
                            else f"no filter for category {category}")
        required = self.required_by(category, action)
        if required is not None:
            return Decision(True, retention, f"required by {required}, although {dropped}")
        return Decision(False, retention, dropped)

    def required_by(self, category: str, action: str) -> str | None:
        """The preset and clause that require events like this (``pci_dss 10.2.1.4``), if any."""
        key = (category, action)
        if key not in self._required:
            found = None
            for preset in self.presets:
                req = preset.requirement_for(category, action)
                if req is not None:
                    found = f"{preset.name} {req.clause}".rstrip()
                    break
            self._required[key] = found
        return self._required[key]

    def _filter_drops(self, ev: AuditEvent) -> str | None:
        """Why the category's filter drops ``ev``, or None when it records it."""
        flt = self.filters.get(ev.event_type)
        if flt is None:
            return None
        where = f"the {ev.event_type} filter"
        if _RANK[ev.severity] < _RANK.get(flt.min_severity, 0):
            return (f"severity {ev.severity} is below min_severity {flt.min_severity} of "
                    f"{where}")
        if flt.actions and ev.action not in flt.actions:
            return f"action {ev.action!r} is not among the actions of {where}"
        if flt.resources and ev.resource not in flt.resources:
            shown = "no resource" if ev.resource is None else f"resource {ev.resource!r}"
            return f"{shown} is not among the resources of {where}"
        return None

    def retention_for(self, ev: AuditEvent) -> str:
        """The retention class of ``ev``: the longest applicable one."""
        if is_meta_event(ev.event_type, ev.action):
            return META_CLASS
        classes = self.retention_classes
        best = classes[STANDARD_CLASS]
        for preset in self.presets:
            if ev.event_type in preset.covers:
                best = _longest(best, classes[preset.retention.name])
        if ev.retention is not None:
            asked = classes.get(ev.retention)
            if asked is None or asked.name == META_CLASS:
                raise EventError("retention", _unknown_class(ev.retention, classes))
            best = _longest(best, asked)
        return best.name

    def missing_fields(self, ev: AuditEvent) -> list[str]:
        """Fields the presets in force require of ``ev`` that it lacks (PCI DSS 10.2.2)."""
        if is_meta_event(ev.event_type, ev.action):
            return []
        missing: list[str] = []
        for preset in self.presets:
            if ev.event_type not in preset.field_categories:
                continue
            for name in preset.required_fields:
                if getattr(ev, name) is None and name not in missing:
                    missing.append(name)
        return missing

    def describe_missing(self, names: Sequence[str]) -> str:
        """``user_id (user identification), source (origination)``: for error messages."""
        return ", ".join(f"{n} ({FIELD_NAMES.get(n, n)})" for n in names)


def _longest(a: RetentionClass, b: RetentionClass) -> RetentionClass:
    return b if b.longer_than(a) else a


def _unknown_class(name: str, classes: Mapping[str, RetentionClass]) -> str:
    usable = [c for c in classes if c != META_CLASS]
    if name == META_CLASS:
        return "the meta class is reserved for the ledger's own records"
    hint = did_you_mean(name, usable)
    return (f"unknown retention class {name!r}" + (f"; {hint}" if hint else "")
            + f" (classes: {', '.join(usable)})")


def _configured(setting: RetentionSetting, base: RetentionClass | None,
                warnings: list[str]) -> RetentionClass:
    """A retention class from its ``audit_filters.yaml`` setting over the built-in one."""
    name = setting.name.value
    if setting.forever:
        retain: int | None = None
    elif setting.retain is not None:
        retain = setting.retain.ms
    elif base is not None:
        retain = base.retain_ms
    else:  # the loader reports a new class without 'retain'
        raise AuditError(f"retention class {name!r} needs 'retain'")
    if setting.hot is None:
        hot = base.hot_ms if base is not None else MONTHS_3
        if retain is not None:
            hot = min(hot, retain)
    else:
        hot = setting.hot.ms
    if retain is not None and hot > retain:
        warnings.append(f"retention class {name!r}: hot ({_days(hot)}) is longer than retain "
                        f"({_days(retain)}); using {_days(retain)}")
        hot = retain
    hold = setting.hold if setting.hold is not None else (base.hold if base else False)
    return RetentionClass(name, retain, hot, "audit_filters.yaml", hold)


def _days(ms: int | None) -> str:
    return "forever" if ms is None else f"{ms / 86_400_000:g} days"
