"""What the HTTP channels share: one ``aiohttp.ClientSession`` each, and one reading of replies.

Slack, PagerDuty, the generic webhook and Alertmanager all POST JSON and must turn
what comes back into a :class:`DeliveryResult` the same way, because the outbox's
retry decision rests on it: 2xx is delivered; 5xx, 408, 429, timeouts and connection
errors may succeed later (retryable); any other 4xx will not (the payload or the
credentials are wrong). A ``Retry-After`` header (seconds or an HTTP date) is kept in
the result's detail as ``[retry_after_ms=N]`` so the outbox can wait that long
(:func:`retry_after_ms`).

Settings are resolved when a message is sent (``${NAME}`` through
:mod:`~monitoring.notify.channels.secrets`), and every text that leaves a channel
(a delivery detail) passes through ``secrets.redact``: a Slack webhook URL or a
PagerDuty routing key never reaches the delivery log.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from monitoring import __version__
from monitoring.dsl.lexical import LexicalError, parse_duration
from monitoring.notify.channels import secrets
from monitoring.notify.channels.base import ChannelContext, ChannelState
from monitoring.notify.channels.registry import ChannelConfigError
from monitoring.notify.model import DeliveryResult, Message

USER_AGENT = f"monitoring-system/{__version__}"
log = logging.getLogger(__name__)
DEFAULT_TIMEOUT_S = 10.0
SNIPPET_CHARS = 300
"""How much of an error reply's body a delivery detail quotes."""
INLINE_RETRY_MAX_WAIT_MS = 30_000
"""A channel that retries inside one attempt (``retries``) waits at most this long for a
``Retry-After``; a longer wait is left to the outbox."""
INLINE_RETRY_BASE_MS = 500
_RETRY_MARK = re.compile(r"\[retry_after_ms=(\d+)\]")
RETRYABLE_4XX = frozenset({408, 429})
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
"""What Alertmanager writes as ``endsAt`` of an alert that has not ended."""


class SettingError(ChannelConfigError):
    """A channel setting that is missing or malformed; the message names the setting.

    Raised by constructors (the registry adds the channel's name) and, for settings read
    when sending, turned into a final delivery failure.
    """


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP reply, read whole: status, body text, and the Retry-After it asked for."""

    status: int
    reason: str
    text: str
    retry_after_ms: int | None = None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body decoded as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.text)
        except ValueError:
            return None


def status_result(reply: Reply, detail: str = "") -> DeliveryResult:
    """The delivery outcome an HTTP status means (see the module docstring)."""
    if reply.ok:
        return DeliveryResult(True, False, detail or f"HTTP {reply.status}")
    retryable = reply.status >= 500 or reply.status in RETRYABLE_4XX
    text = detail or f"HTTP {reply.status} {reply.reason}".rstrip()
    snippet = " ".join(reply.text.split())[:SNIPPET_CHARS]
    if snippet and not detail:
        text += f": {snippet}"
    return DeliveryResult(False, retryable, with_retry_after(text, reply.retry_after_ms))


def with_retry_after(detail: str, ms: int | None) -> str:
    """``detail`` with the machine-readable ``[retry_after_ms=N]`` mark when ``ms`` is set."""
    if ms is None:
        return detail
    return f"{detail} (retry after {ms / 1000:g}s) [retry_after_ms={ms}]"


def retry_after_ms(result: DeliveryResult) -> int | None:
    """The wait a receiver asked for (HTTP ``Retry-After``), from a result's detail."""
    if result.retry_after_ms is not None:
        return result.retry_after_ms
    m = _RETRY_MARK.search(result.detail)
    return int(m.group(1)) if m else None


def parse_retry_after(value: str | None, now_ms: int) -> int | None:
    """A ``Retry-After`` header in milliseconds from ``now_ms`` (delta seconds or HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value) * 1000
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int(when.timestamp() * 1000) - now_ms)


def exception_result(exc: Exception, timeout_s: float) -> DeliveryResult:
    """The outcome of a request that got no reply: timeouts and network errors may pass later."""
    if isinstance(exc, TimeoutError):
        return DeliveryResult(False, True, f"timed out after {timeout_s:g}s")
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return DeliveryResult(False, False, f"bad URL: {exc}")
    reason = str(exc) or type(exc).__name__
    return DeliveryResult(False, True, f"connection error: {reason}")


class Conversations:
    """Which conversation on the remote side a message continues: a Slack thread, an incident.

    Kept in the durable channel state under ``group:<scope><group key>`` for each group and
    ``alert:<scope><fingerprint>`` for each alert a conversation carried. A message
    continues its own group's conversation; a message of a group never seen before whose
    alerts all sit in one conversation continues that one. So an escalation stage (its
    group is the escalation episode, not the routing group) lands in the thread or incident
    where its alert was first announced, and the episode's acknowledgement and resolution
    follow it there.
    """

    def __init__(self, state: ChannelState, channel: str, scope: str = "") -> None:
        self.state = state
        self.channel = channel
        self.scope = scope

    def _keys(self, message: Message) -> list[str]:
        return [f"group:{self.scope}{message.group_key}",
                *(f"alert:{self.scope}{a.fingerprint}" for a in message.alerts)]

    def find(self, message: Message) -> str | None:
        """The conversation ``message`` continues, or None for a new one."""
        own, *alerts = (self.state.get(self.channel, k) or None for k in self._keys(message))
        if own is not None:
            return own
        found = set(alerts)
        return found.pop() if len(found) == 1 else None

    def remember(self, message: Message, value: str) -> None:
        """``message``'s group and alerts now belong to conversation ``value``."""
        for key in self._keys(message):
            self.state.put(self.channel, key, value)

    def close(self, message: Message) -> None:
        """Forget ``message``'s group and alerts (resolved: the next episode starts afresh)."""
        for key in self._keys(message):
            self.state.put(self.channel, key, "")


def timeout_seconds(value: Any, default_s: float = DEFAULT_TIMEOUT_S) -> float:
    """A ``timeout`` setting (seconds, or a duration such as ``10s``/``1m30s``) in seconds."""
    return duration_seconds(value, "timeout", default_s)


def duration_seconds(value: Any, name: str, default_s: float) -> float:
    """A positive duration setting: seconds (``30``) or a duration (``30s``, ``1h30m``)."""
    if value is None:
        return default_s
    if isinstance(value, str):
        text = secrets.resolve(value).strip()
        try:
            seconds = float(text) if text.replace(".", "", 1).isdigit() \
                else parse_duration(text).ms / 1000
        except LexicalError as exc:
            raise SettingError(f"{name!r}: {exc.message}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise SettingError(f"{name!r}: expected seconds or a duration such as 10s, "
                           f"got {value!r}")
    if not seconds > 0:
        raise SettingError(f"{name!r}: must be positive, got {value!r}")
    return seconds


def count_setting(value: Any, name: str, default: int) -> int:
    """A non-negative whole number setting (``retries``); ``${NAME}`` references allowed."""
    if value is None:
        return default
    if isinstance(value, str):
        value = secrets.resolve(value).strip()
        if not value.isdigit():
            raise SettingError(f"{name!r}: expected a whole number >= 0, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SettingError(f"{name!r}: expected a whole number >= 0, got {value!r}")
    return value


class HttpChannel:
    """The base of the HTTP channels: settings, one client, POST with reply mapping.

    Subclasses implement :meth:`deliver`; :meth:`send` wraps it so that a missing
    secret, a bad setting or a network failure becomes a :class:`DeliveryResult`
    (never an exception) whose detail has every secret masked.
    """

    type = "http"
    default_retries = 0
    """Quick retries inside one delivery attempt (setting ``retries``); the webhook's is 3."""

    def __init__(self, name: str, settings: Mapping[str, Any], context: ChannelContext) -> None:
        self.name = name
        self.settings: dict[str, Any] = dict(settings)
        self.context = context
        self.timeout_s = timeout_seconds(self.settings.get("timeout"))
        self.retries = count_setting(self.settings.get("retries"), "retries",
                                     self.default_retries)
        self._client: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ settings

    def setting(self, key: str) -> str | None:
        """A string setting with ``${NAME}`` resolved now (raises SecretError), or None."""
        value = self.settings.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise SettingError(f"{key!r} must be a string, "
                               f"got {type(value).__name__}")
        return secrets.resolve(value)

    def required(self, key: str) -> str:
        """Like :meth:`setting`, but the setting must be there and not empty."""
        value = self.setting(key)
        if not value:
            raise SettingError(f"{key!r} is required")
        return value

    def redact(self, text: str) -> str:
        """``text`` with every secret of this channel's settings masked."""
        return secrets.redact(text, self.settings)

    # ------------------------------------------------------------------ sending

    @property
    def client(self) -> aiohttp.ClientSession:
        """The channel's client (created on first use, in the event loop that sends).

        aiohttp rather than httpx here: delivering to one receiver with 16 requests in
        flight, httpx's connection pool managed a few hundred requests a second on two
        cores and aiohttp several thousand (docs/dependencies.md).
        """
        if self._client is None:
            self._client = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                headers={"User-Agent": USER_AGENT})
        return self._client

    async def send(self, message: Message) -> DeliveryResult:
        """Deliver ``message``; every failure is a result, with secrets masked in its detail."""
        try:
            result = await self.deliver(message)
        except (secrets.SecretError, SettingError) as exc:
            result = DeliveryResult(False, False, str(exc))
        except Exception as exc:  # a channel never raises: an unexpected problem is retried
            log.warning("channel %r: unexpected %s while sending %s: %s", self.name,
                        type(exc).__name__, message.id, self.redact(str(exc)))
            log.debug("traceback", exc_info=True)  # may hold a secret: debug level only
            result = DeliveryResult(False, True,
                                    f"unexpected error: {type(exc).__name__}: {exc}")
        wait = retry_after_ms(result)
        detail = self.redact(_RETRY_MARK.sub("", result.detail).rstrip())
        if detail == result.detail and wait == result.retry_after_ms:
            return result
        return DeliveryResult(result.ok, result.retryable, detail, result.remote_id, wait)

    async def deliver(self, message: Message) -> DeliveryResult:
        """Send one message (subclasses)."""
        raise NotImplementedError

    async def post(self, url: str, body: bytes,
                   headers: Mapping[str, str] | None = None) -> Reply | DeliveryResult:
        """POST ``body``; the reply, or a result when no reply came.

        With ``retries`` > 0, a connection error, a 5xx, a 408 or a 429 is tried again
        at once after a short back-off on the engine clock (honouring a Retry-After of up
        to 30 s); a timeout is not (the receiver may have acted on the request, and a
        stalled receiver would hold the delivery slot for ``retries`` timeouts).
        """
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        attempt = 0
        while True:
            wait: int | None = None
            try:
                async with self.client.post(url, data=body, headers=all_headers,
                                            allow_redirects=False) as response:
                    text = await response.text(errors="replace")
                    status, reason = response.status, response.reason or ""
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError as exc:
                return exception_result(exc, self.timeout_s)
            except (aiohttp.ClientError, ValueError) as exc:
                failure = exception_result(exc, self.timeout_s)
                outcome: Reply | DeliveryResult = failure
                again = failure.retryable
            else:
                outcome = Reply(status, reason, text,
                                parse_retry_after(retry_after, self.context.clock.now_ms()))
                again = status >= 500 or status in RETRYABLE_4XX
                wait = outcome.retry_after_ms
            if not again or attempt >= self.retries:
                return outcome
            wait = INLINE_RETRY_BASE_MS * 2 ** attempt if wait is None else wait
            if wait > INLINE_RETRY_MAX_WAIT_MS:
                return outcome
            attempt += 1
            await self.context.clock.sleep_ms(wait)

    async def post_json(self, url: str, payload: Any,
                        headers: Mapping[str, str] | None = None) -> Reply | DeliveryResult:
        """POST ``payload`` as compact UTF-8 JSON."""
        return await self.post(url, dumps(payload), headers)

    async def post_for_result(self, url: str, body: bytes,
                              headers: Mapping[str, str] | None = None) -> DeliveryResult:
        """POST and read the outcome from the status alone (receivers with no reply body)."""
        outcome = await self.post(url, body, headers)
        return status_result(outcome) if isinstance(outcome, Reply) else outcome

    async def aclose(self) -> None:
        """Close the client (and its connections)."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def dumps(payload: Any) -> bytes:
    """The exact bytes channels send (and sign): compact UTF-8 JSON."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
