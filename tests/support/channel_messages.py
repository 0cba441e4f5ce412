"""Alerts and messages for the HTTP channel tests (Slack, PagerDuty, webhook, Alertmanager)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from monitoring.notify.channels.base import (
    Channel,
    ChannelContext,
    ChannelState,
    MemoryChannelState,
)
from monitoring.notify.model import Alert, DeliveryResult, FakeClock, Message, message_id

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EXTERNAL_URL = "http://monitor.example.org:9464"
GROUP = '{}:{alertname="HighCPU"}'


def cpu_alert(instance: str = "web-1", *, resolved: bool = False,
              severity: str = "critical") -> Alert:
    """A HighCPU alert with a runbook, a label that needs escaping and a value."""
    alert = Alert({"alertname": "HighCPU", "severity": severity, "instance": instance,
                   "team": "<ops & infra>"},
                  {"summary": f"CPU above 90% on {instance}",
                   "description": "5m average over the threshold",
                   "runbook_url": "https://runbooks.example.org/cpu"},
                  "firing", T0, None, 0.9734, "HighCPU",
                  generator_url="https://git.example.org/rules/cpu.yaml#L3")
    return alert.resolved(T0 + 600_000) if resolved else alert


def message(*alerts: Alert, channel: str = "test", kind: str = "firing",
            group_key: str = GROUP, created_ms: int = T0 + 60_000,
            target: dict[str, str] | None = None, stage: int | None = None,
            policy: str | None = None, person: str | None = None) -> Message:
    """A message of ``alerts`` (default: one firing HighCPU alert) with a real message id."""
    alerts = alerts or (cpu_alert(),)
    mid = message_id(channel, kind, group_key, alerts, created_ms)
    return Message(mid, channel, kind, group_key, alerts, created_ms, (), target or {},
                   stage, policy, person)


def context(clock: FakeClock | None = None, state: ChannelState | None = None
            ) -> ChannelContext:
    """A channel context on a fake clock at T0 + 1 min."""
    return ChannelContext(clock=clock or FakeClock(T0 + 60_000),
                          state=state if state is not None else MemoryChannelState(),
                          external_url=EXTERNAL_URL)


def send_all(channel: Channel, messages: Sequence[Message], *, concurrent: bool = False
             ) -> list[DeliveryResult]:
    """Send ``messages`` through ``channel`` in a fresh event loop, then close the channel."""
    async def go() -> list[DeliveryResult]:
        try:
            if concurrent:
                return list(await asyncio.gather(*(channel.send(m) for m in messages)))
            return [await channel.send(m) for m in messages]
        finally:
            await channel.aclose()
    return asyncio.run(go())
