"""Checks on references across files: notification channels and escalation policies."""

from __future__ import annotations

from monitoring.dsl import ast
from monitoring.dsl.diagnostics import Severity, did_you_mean
from monitoring.lint.registry import LintContext, RuleContext, declare, rule_check, run_check

declare(
    "name/unknown-channel", Severity.ERROR,
    "A rule or escalation stage names a notification channel that is not configured.",
    """Channels are defined in `notification_config.yaml` (the built-in `console` channel
    always exists). A misspelt channel silently drops notifications, so every reference is
    resolved when the configuration is among the linted files; otherwise one note says that
    channel references were not checked.""",
)
declare(
    "name/unknown-policy", Severity.ERROR,
    "A rule names an escalation policy that is not defined.",
    """Escalation policies are defined in `escalation_policies.yaml`. A misspelt policy means
    nobody is escalated to, so every reference is resolved when the policies are among the
    linted files.""",
)
declare(
    "name/unchecked-references", Severity.INFO,
    "Channel or policy references could not be checked.",
    """Reported once per run when rules name channels or escalation policies but no
    `notification_config.yaml` or `escalation_policies.yaml` was among the inputs. Lint the
    whole configuration folder (`monitoring lint rules/`) to check them.""",
)


@rule_check
def channel_and_policy_refs(ctx: LintContext, rc: RuleContext) -> None:
    """Resolve the channels and the escalation policy of an alert."""
    rule = rc.rule
    if not isinstance(rule, ast.AlertRule):
        return
    env = rc.env
    if env.channels_known:
        for ch in rule.channels:
            if ch.value not in env.channels:
                ctx.report("name/unknown-channel", f"unknown notification channel {ch.value!r}",
                           ch.span, did_you_mean(ch.value, env.channels) or
                           "configured channels: " + ", ".join(sorted(env.channels)))
    if env.policies_known and rule.escalation is not None:
        name = rule.escalation.value
        if name not in env.policies:
            ctx.report("name/unknown-policy", f"unknown escalation policy {name!r}",
                       rule.escalation.span, did_you_mean(name, env.policies) or
                       ("defined policies: " + ", ".join(sorted(env.policies))
                        if env.policies else "no escalation policy is defined"))


@run_check
def unchecked(ctx: LintContext) -> None:
    """Say once when references could not be resolved."""
    env = ctx.env
    uses_channels = uses_policies = False
    first: ast.Name | None = None
    for rf in ctx.rule_files:
        for group in rf.groups:
            for rule in group.rules:
                if isinstance(rule, ast.AlertRule):
                    if rule.channels and not env.channels_known:
                        uses_channels = True
                        first = first or rule.channels[0]
                    if rule.escalation is not None and not env.policies_known:
                        uses_policies = True
                        first = first or rule.escalation
    missing = [f for f, used in (("notification_config.yaml", uses_channels),
                                 ("escalation_policies.yaml", uses_policies)) if used]
    if missing and first is not None:
        ctx.report("name/unchecked-references",
                   "channel and policy references were not checked: no "
                   + " or ".join(missing) + " among the inputs", first.span,
                   "lint the configuration folder too, e.g. monitoring lint rules/")
