"""Slack: Block Kit messages by incoming webhook, or threads through ``chat.postMessage``.

Two modes, chosen by the settings:

- ``webhook_url``: an incoming webhook. Each message is one post; Slack answers
  ``ok`` (HTTP 200) or an error word (``invalid_blocks``, ``no_service``...) with a 4xx.
- ``bot_token``: the Web API ``chat.postMessage`` to ``channel`` (a message's
  ``target["channel"]``, set by an escalation stage, overrides it). The first message
  of a group opens a thread: its ``ts`` is kept in the durable channel state under
  the group key and the alerts' fingerprints (:class:`~.http.Conversations`), and
  later messages of the group (updates, repeats, resolution) and of its alerts'
  escalation episodes (stages, acknowledgement, resolution) are posted with
  ``thread_ts``; the resolution closes the thread, so the group's next episode
  starts a new one. Resolution and
  escalation replies are also broadcast to the channel. The Web API answers HTTP 200
  with ``{"ok": false, "error": "..."}`` on failure: that is a failed delivery naming
  the error, retryable only for Slack's transient errors.

The blocks: a header (status and alert names), for each alert (up to ten) a section with
its summary and fields (status, severity, times, value, labels) and buttons linking to
the engine's alert page, the runbook and the rule's source, then a context line (kind,
stage, person, message id). Texts are cut to Block Kit's limits. Other settings:
``username``, ``api_url`` (default ``https://slack.com/api``), ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from monitoring.notify.channels.base import ChannelContext
from monitoring.notify.channels.http import (
    Conversations,
    HttpChannel,
    Reply,
    SettingError,
    status_result,
)
from monitoring.notify.channels.render import (
    alert_fields,
    alert_url,
    render_summary,
    runbook,
)
from monitoring.notify.model import FIRING, RESOLVED, Alert, DeliveryResult, Message

API_URL = "https://slack.com/api"
MAX_BLOCKS = 50
HEADER_MAX = 150
SECTION_TEXT_MAX = 3000
FIELD_MAX = 2000
MAX_FIELDS = 10
CONTEXT_ELEMENTS_MAX = 10
BUTTON_TEXT_MAX = 75
URL_MAX = 3000
FALLBACK_MAX = 3000
MAX_ALERTS_SHOWN = 10
TRANSIENT_ERRORS = frozenset({"ratelimited", "internal_error", "fatal_error",
                              "service_unavailable", "request_timeout"})
"""``chat.postMessage`` errors after which a retry can succeed."""
_EMOJI = {"firing": ":rotating_light:", "resolved": ":white_check_mark:",
          "repeat": ":repeat:", "escalation": ":arrow_double_up:",
          "acknowledged": ":eyes:", "test": ":test_tube:"}


def escape(text: str) -> str:
    """Text safe inside Slack ``mrkdwn`` (``&``, ``<`` and ``>`` are control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def plain(text: str, limit: int) -> dict[str, Any]:
    """A ``plain_text`` object (never empty: Slack rejects empty texts)."""
    return {"type": "plain_text", "text": cut(text or " ", limit), "emoji": True}


def mrkdwn(text: str, limit: int) -> dict[str, Any]:
    """A ``mrkdwn`` text object."""
    return {"type": "mrkdwn", "text": cut(text or " ", limit)}


def alert_section(alert: Alert) -> dict[str, Any]:
    """An alert as a section: name and summary, then up to ten fields."""
    icon = ":red_circle:" if alert.status == FIRING else ":large_green_circle:"
    text = f"{icon} *{escape(alert.name or alert.rule)}*"
    summary = alert.annotations.get("summary", "")
    if summary:
        text += f" - {escape(summary)}"
    description = alert.annotations.get("description", "")
    if description:
        text += f"\n{escape(description)}"
    fields = [mrkdwn(f"*{escape(title)}*\n{escape(value)}", FIELD_MAX)
              for title, value in alert_fields(alert)[:MAX_FIELDS]]
    return {"type": "section", "text": mrkdwn(text, SECTION_TEXT_MAX), "fields": fields}


def alert_buttons(alert: Alert, index: int, external_url: str) -> dict[str, Any]:
    """Link buttons: the engine's alert page, the runbook, the rule's source (if URLs)."""
    links = [("View alert", alert_url(alert, external_url), "view")]
    book = runbook(alert)
    if book.startswith(("http://", "https://")):
        links.append(("Runbook", book, "runbook"))
    if alert.generator_url.startswith(("http://", "https://")):
        links.append(("Source", alert.generator_url, "source"))
    buttons = [{"type": "button", "text": plain(title, BUTTON_TEXT_MAX), "url": url,
                "action_id": f"{kind}-{index}-{alert.fingerprint}"}
               for title, url, kind in links if len(url) <= URL_MAX]
    if buttons and alert.status == FIRING:
        buttons[0]["style"] = "primary"
    return {"type": "actions", "elements": buttons}


def slack_blocks(message: Message, external_url: str) -> list[dict[str, Any]]:
    """The Block Kit blocks of a message (at most :data:`MAX_BLOCKS`)."""
    emoji = _EMOJI.get(message.kind, "")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": plain(f"{emoji} {render_summary(message)}".strip(),
                                         HEADER_MAX)}]
    ordered = (*message.firing, *message.resolved)
    for i, alert in enumerate(ordered[:MAX_ALERTS_SHOWN]):
        blocks.append(alert_section(alert))
        blocks.append(alert_buttons(alert, i, external_url))
    notes: list[str] = []
    if len(ordered) > MAX_ALERTS_SHOWN:
        notes.append(f"and {len(ordered) - MAX_ALERTS_SHOWN} more alert(s)")
    if message.kind == "escalation" and message.stage is not None:
        notes.append(f"escalation stage {message.stage}"
                     + (f" of {escape(message.policy)}" if message.policy else ""))
    if message.person:
        notes.append(f"on call: {escape(message.person)}")
    by = message.target.get("acknowledged_by")
    if message.kind == "acknowledged" and by:
        notes.append(f"acknowledged by {escape(str(by))}")
    notes.append(f"{message.kind} - message `{message.id}`")
    blocks.append({"type": "context",
                   "elements": [mrkdwn(n, SECTION_TEXT_MAX)
                                for n in notes[:CONTEXT_ELEMENTS_MAX]]})
    return blocks[:MAX_BLOCKS]


class SlackChannel(HttpChannel):
    """Posts to Slack (settings and behaviour in the module docstring)."""

    type = "slack"

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        super().__init__(name, settings, context)
        if not self.settings.get("webhook_url") and not self.settings.get("bot_token"):
            raise SettingError("'webhook_url' (incoming webhook) or 'bot_token' "
                               "(chat.postMessage threads) is required")
        self._locks: dict[str, asyncio.Lock] = {}

    def payload(self, message: Message) -> dict[str, Any]:
        """The JSON both modes send (the bot mode adds channel and thread)."""
        payload: dict[str, Any] = {
            "text": cut(render_summary(message), FALLBACK_MAX),
            "blocks": slack_blocks(message, self.context.external_url),
        }
        username = self.setting("username")
        if username:
            payload["username"] = username
        return payload

    async def deliver(self, message: Message) -> DeliveryResult:
        if self.settings.get("bot_token"):
            return await self._post_message(message)
        payload = self.payload(message)
        channel = message.target.get("channel") or self.setting("channel")
        if channel:
            payload["channel"] = str(channel)
        outcome = await self.post_json(self.required("webhook_url"), payload)
        if not isinstance(outcome, Reply):
            return outcome
        if outcome.ok:
            return DeliveryResult(True, False, "posted by incoming webhook")
        return status_result(outcome)

    async def _post_message(self, message: Message) -> DeliveryResult:
        channel = str(message.target.get("channel") or self.setting("channel") or "")
        if not channel:
            raise SettingError("'bot_token' needs a 'channel' (in the settings or the "
                               "message's target)")
        threads = Conversations(self.context.state, self.name, f"{channel}:")
        lock = self._locks.setdefault(f"{channel}:{message.group_key}", asyncio.Lock())
        async with lock:  # one group's first post opens the thread the others join
            return await self._post_in_thread(message, channel, threads)

    async def _post_in_thread(self, message: Message, channel: str, threads: Conversations
                              ) -> DeliveryResult:
        thread = threads.find(message)
        payload = self.payload(message)
        payload.update(channel=channel, unfurl_links=False, unfurl_media=False)
        if thread:
            payload["thread_ts"] = thread
            if message.kind in ("resolved", "escalation"):
                payload["reply_broadcast"] = True
        url = (self.setting("api_url") or API_URL).rstrip("/") + "/chat.postMessage"
        outcome = await self.post_json(
            url, payload, {"Authorization": f"Bearer {self.required('bot_token')}",
                           "Content-Type": "application/json; charset=utf-8"})
        if not isinstance(outcome, Reply):
            return outcome
        if not outcome.ok:
            return status_result(outcome)
        data = outcome.json()
        if not isinstance(data, dict):
            return DeliveryResult(False, True, f"Slack answered HTTP {outcome.status} "
                                               f"with a body that is not JSON")
        if not data.get("ok"):
            error = str(data.get("error") or "unknown error")
            notes = data.get("response_metadata", {}).get("messages") \
                if isinstance(data.get("response_metadata"), dict) else None
            detail = f"Slack error: {error}" + (f" ({'; '.join(map(str, notes))})"
                                                 if notes else "")
            return DeliveryResult(False, error in TRANSIENT_ERRORS, detail)
        ts = str(data.get("ts") or "") or None
        if message.kind == "resolved" and message.status == RESOLVED:
            threads.close(message)  # the group's next episode opens a new thread
        elif thread or ts:
            threads.remember(message, thread or str(ts))
        where = f"in thread {thread}" if thread else "new thread"
        return DeliveryResult(True, False, f"posted to {channel} ({where})", remote_id=ts)
