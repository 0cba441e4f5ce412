from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest

from monitoring.dsl import ast
from monitoring.dsl.config import CHANNEL_TYPES as CONFIG_TYPES
from monitoring.dsl.config import NotificationChannel
from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.console import ConsoleChannel
from monitoring.notify.channels.email import EmailChannel
from monitoring.notify.channels.registry import (
    CHANNEL_TYPES,
    ChannelConfigError,
    build_channel,
    build_channels,
    channel_class,
    close_channels,
)


def configured(name: str, type_: str, **settings: Any) -> NotificationChannel:
    return NotificationChannel(ast.Name(name), type_, settings)


def test_every_configurable_type_has_a_class() -> None:
    assert set(CHANNEL_TYPES) == set(CONFIG_TYPES)
    for type_, target in CHANNEL_TYPES.items():
        cls = channel_class(type_)
        assert f"{cls.__module__}:{cls.__qualname__}" == target


MINIMAL = {"email": {"smtp_server": "mail.example.org"}, "console": {},
           "slack": {"webhook_url": "${SLACK_WEBHOOK_URL}"},
           "pagerduty": {"routing_key": "${PAGERDUTY_KEY}"},
           "webhook": {"url": "http://127.0.0.1:9/hook"},
           "alertmanager": {"url": "http://127.0.0.1:9093"}}


def test_every_type_builds_from_config_without_resolving_secrets() -> None:
    config = [configured(f"my-{t}", t, **settings) for t, settings in MINIMAL.items()]
    channels = build_channels(config, ChannelContext(), console=False)
    assert {n: (c.name, c.type) for n, c in channels.items()} == \
        {f"my-{t}": (f"my-{t}", t) for t in MINIMAL}
    asyncio.run(close_channels(channels))


def test_build_channels_adds_console_once() -> None:
    ctx = ChannelContext()
    channels = build_channels([configured("ops-mail", "email", smtp_server="mail.example.org",
                                          password="${SMTP_PASSWORD}")], ctx)
    assert list(channels) == ["ops-mail", "console"]
    assert isinstance(channels["ops-mail"], EmailChannel)
    assert (channels["ops-mail"].name, channels["ops-mail"].type) == ("ops-mail", "email")
    assert isinstance(channels["console"], ConsoleChannel)
    assert list(build_channels([], ctx, console=False)) == []
    named = build_channels([configured("terminal", "console")], ctx)
    assert list(named) == ["terminal"]


def test_unknown_type_and_missing_setting_name_the_channel() -> None:
    with pytest.raises(ChannelConfigError) as info:
        build_channel("pager", "carrier-pigeon", {}, ChannelContext())
    assert str(info.value) == ("channel 'pager': unknown channel type 'carrier-pigeon': "
                               "expected one of alertmanager, console, email, pagerduty, "
                               "slack, webhook")
    with pytest.raises(ChannelConfigError, match="email channel 'mail': 'smtp_server' is "
                                                 "required"):
        build_channel("mail", "email", {}, ChannelContext())


def test_close_channels_closes_each_even_when_one_fails() -> None:
    closed: list[str] = []

    class Broken(ConsoleChannel):
        async def aclose(self) -> None:
            closed.append(self.name)
            raise RuntimeError("boom")

    channels = {"a": Broken("a", stream=io.StringIO()), "b": Broken("b", stream=io.StringIO())}
    asyncio.run(close_channels(channels))
    assert closed == ["a", "b"]


def test_every_setting_a_channel_reads_is_allowed_by_the_schema() -> None:
    from monitoring.dsl.config import load_notification_config
    from monitoring.dsl.source import SourceFile
    from monitoring.notify.channels.registry import build_channels

    text = """\
slack:
  bot_token: "${SLACK_TOKEN}"
  channel: "#alerts"
  api_url: "http://127.0.0.1:1/api"
  timeout: 5s
pagerduty:
  routing_key: "${PD_KEY}"
  source: checkout
  timeout: 3
alertmanager:
  url: "http://127.0.0.1:9093"
  alert_ttl: 12h
  timeout: 2s
hook:
  type: webhook
  url: "http://127.0.0.1:1/hook"
  secret: "${HOOK_SECRET}"
  retries: 0
"""
    config, problems = load_notification_config(SourceFile("notification_config.yaml", text))
    assert problems == []
    channels = build_channels(config.channels, ChannelContext(), console=False)
    assert sorted(channels) == ["alertmanager", "hook", "pagerduty", "slack"]
    _, problems = load_notification_config(SourceFile(
        "notification_config.yaml", "slack:\n  webhook_url: x\n  api_ur: y\n"))
    assert [p.code for p in problems] == ["schema/unknown-field"]
