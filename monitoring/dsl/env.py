"""Name resolution: what the loaded files declare, as one environment for every pass.

Metric declarations (type, unit, scrape interval), recording rules (a selector
of a recorded name reads that rule's output), notification channels and
escalation policies are collected from all loaded files, so a reference in one
file resolves against a declaration in another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Diagnostic, Severity

BUILTIN_CHANNELS = ("console",)
"""Channels that exist without configuration."""


@dataclass(slots=True)
class MetricInfo:
    """What is known of one metric."""

    name: str
    type: ast.MetricType | None = None
    unit: str | None = None
    scrape_interval_ms: int | None = None
    decl: ast.MetricDecl | None = None


@dataclass(slots=True)
class Environment:
    """Everything a name in a rule may refer to."""

    metrics: dict[str, MetricInfo] = field(default_factory=dict)
    recording_rules: dict[str, list[ast.RecordingRule]] = field(default_factory=dict)
    channels: dict[str, ast.Name] = field(default_factory=dict)
    policies: dict[str, ast.Name] = field(default_factory=dict)
    channels_known: bool = False  # a notification config was loaded
    policies_known: bool = False  # an escalation policy file was loaded
    default_scrape_ms: dict[str, int] = field(default_factory=dict)  # per file name

    def metric(self, name: str | None) -> MetricInfo | None:
        """The declaration of a metric, if any."""
        if name is None:
            return None
        return self.metrics.get(name)

    def scrape_interval_ms(self, name: str | None, file: str) -> int | None:
        """The known scrape interval of a metric read in ``file``, if any."""
        info = self.metric(name)
        if info is not None and info.scrape_interval_ms is not None:
            return info.scrape_interval_ms
        return self.default_scrape_ms.get(file)


def build_environment(
    rule_files: Iterable[ast.RuleFile],
    channels: Iterable[ast.Name] = (),
    policies: Iterable[ast.Name] = (),
    channels_known: bool = False,
    policies_known: bool = False,
) -> tuple[Environment, list[Diagnostic]]:
    """Collect declarations from all rule files; report conflicting ones."""
    env = Environment(channels_known=channels_known, policies_known=policies_known)
    diags: list[Diagnostic] = []
    for name in BUILTIN_CHANNELS:
        env.channels[name] = ast.Name(name)
    for ch in channels:
        env.channels[ch.value] = ch
    for p in policies:
        env.policies[p.value] = p
    for rf in rule_files:
        file = rf.span.source.name if rf.span is not None else ""
        if rf.scrape_interval is not None:
            env.default_scrape_ms[file] = rf.scrape_interval.ms
        for decl in rf.metrics:
            _declare(env, decl, diags)
        for group in rf.groups:
            for rule in group.rules:
                if isinstance(rule, ast.RecordingRule):
                    env.recording_rules.setdefault(rule.name.value, []).append(rule)
    return env, diags


def _declare(env: Environment, decl: ast.MetricDecl, diags: list[Diagnostic]) -> None:
    name = decl.name.value
    info = MetricInfo(
        name,
        decl.type,
        decl.unit,
        decl.scrape_interval.ms if decl.scrape_interval is not None else None,
        decl,
    )
    previous = env.metrics.get(name)
    if previous is not None and previous.decl is not None:
        if (previous.type, previous.unit, previous.scrape_interval_ms) != (
            info.type, info.unit, info.scrape_interval_ms
        ):
            related = (("first declared here", previous.decl.span),) if previous.decl.span else ()
            diags.append(Diagnostic(
                "name/conflicting-metric", Severity.ERROR,
                f"metric {name!r} is declared twice with different properties",
                decl.name.span, related=related,
            ))
        return
    env.metrics[name] = info
