"""What every channel is: ``await channel.send(message) -> DeliveryResult``.

A channel never raises for a delivery problem: it returns a result that says
whether a retry can help. Retrying, backoff and the delivery log belong to the
outbox (:mod:`monitoring.notify.delivery`), so every channel gets them the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitoring.notify.model import Clock, DeliveryResult, Message, SystemClock

PlotSource = Callable[[Message], "bytes | None"]
"""Renders a PNG plot of the metric around a message's alerts (None: no plot)."""


class ChannelState(Protocol):
    """A small durable key-value map per channel (a Slack thread's ``ts`` per group)."""

    def get(self, channel: str, key: str) -> str | None: ...

    def put(self, channel: str, key: str, value: str) -> None: ...


class MemoryChannelState:
    """:class:`ChannelState` in memory (tests, and engines without a store)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, str], str] = {}

    def get(self, channel: str, key: str) -> str | None:
        return self._data.get((channel, key))

    def put(self, channel: str, key: str, value: str) -> None:
        self._data[(channel, key)] = value


@dataclass(slots=True)
class ChannelContext:
    """What channels share: the clock, durable state, the plot renderer, the engine's URL."""

    clock: Clock = field(default_factory=SystemClock)
    state: ChannelState = field(default_factory=MemoryChannelState)
    plot: PlotSource | None = None
    external_url: str = "http://127.0.0.1:9464"


class Channel(Protocol):
    """A configured destination. Built by ``channels.registry.build_channel``."""

    name: str
    type: str

    async def send(self, message: Message) -> DeliveryResult: ...

    async def aclose(self) -> None: ...


ChannelFactory = Callable[[str, Mapping[str, Any], ChannelContext], Channel]
"""``factory(name, settings, context)``: settings as configured (``${ENV}`` unresolved)."""
