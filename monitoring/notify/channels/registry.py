"""From configured channels to channel objects.

Each channel type of ``notification_config.yaml`` maps to a class named as
``"module:Class"`` and imported only when a channel of that type is built, so a
configuration with only email never imports the HTTP client, and adding a type is
one line here. Settings are passed as written (``${NAME}`` unresolved): channels
resolve secrets when they send (:mod:`monitoring.notify.channels.secrets`).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from monitoring.dsl.config import NotificationChannel
from monitoring.notify.channels.base import Channel, ChannelContext, ChannelFactory

CHANNEL_TYPES: dict[str, str] = {
    "email": "monitoring.notify.channels.email:EmailChannel",
    "console": "monitoring.notify.channels.console:ConsoleChannel",
    "slack": "monitoring.notify.channels.slack:SlackChannel",
    "pagerduty": "monitoring.notify.channels.pagerduty:PagerDutyChannel",
    "webhook": "monitoring.notify.channels.webhook:WebhookChannel",
    "alertmanager": "monitoring.notify.channels.alertmanager:AlertmanagerChannel",
}
"""Channel type -> ``"module:Class"``; every type of :data:`monitoring.dsl.config.CHANNEL_TYPES`."""
CONSOLE = "console"

log = logging.getLogger(__name__)


class ChannelConfigError(ValueError):
    """A channel cannot be built: unknown type, or a required setting missing or malformed."""


def channel_class(type_: str) -> ChannelFactory:
    """The class implementing channel type ``type_`` (imported now)."""
    target = CHANNEL_TYPES.get(type_)
    if target is None:
        raise ChannelConfigError(f"unknown channel type {type_!r}: expected one of "
                                 f"{', '.join(sorted(CHANNEL_TYPES))}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    factory: ChannelFactory = getattr(module, class_name)
    return factory


def build_channel(name: str, type_: str, settings: Mapping[str, Any],
                  context: ChannelContext) -> Channel:
    """One channel: ``Class(name, settings, context)`` of its type."""
    try:
        return channel_class(type_)(name, dict(settings), context)
    except ChannelConfigError as exc:
        raise ChannelConfigError(f"channel {name!r}: {exc}") from None


def build_channels(config: Iterable[NotificationChannel], context: ChannelContext, *,
                   console: bool = True) -> dict[str, Channel]:
    """Every configured channel by name, plus a ``console`` channel when asked and not configured.

    Raises :class:`ChannelConfigError` naming the channel when one cannot be built.
    """
    channels: dict[str, Channel] = {}
    for channel in config:
        channels[channel.name.value] = build_channel(channel.name.value, channel.type,
                                                     channel.settings, context)
    if console and CONSOLE not in channels and \
            all(c.type != CONSOLE for c in channels.values()):
        channels[CONSOLE] = build_channel(CONSOLE, CONSOLE, {}, context)
    return channels


async def close_channels(channels: Mapping[str, Channel]) -> None:
    """Close every channel (each one's errors are its own: one failing does not stop the rest)."""
    for channel in channels.values():
        try:
            await channel.aclose()
        except Exception:  # closing is best effort at shutdown
            log.warning("closing channel %r failed", channel.name, exc_info=True)
