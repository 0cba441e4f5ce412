"""Loopback HTTP receivers that stand in for Slack, PagerDuty, webhooks and Alertmanager.

One :class:`LoopbackReceiver` is an aiohttp server on a free 127.0.0.1 port, run in a
thread of its own (so a test's event loop, or a benchmark's, drives the channel while the
receiver answers). Each endpoint checks the payload against the service's documented
format and answers as the service does when it is wrong; every problem found is also kept
in :attr:`LoopbackReceiver.problems` so a test can assert there were none:

- ``/slack/webhook``: an incoming webhook (Block Kit structure and limits; ``ok`` or 400
  ``invalid_blocks``);
- ``/slack/api/chat.postMessage``: the Web API (Bearer token, ``channel``, Block Kit,
  ``thread_ts`` must name a message this receiver posted in that channel; HTTP 200 with
  ``{"ok": false, "error": ...}`` on failure, as Slack does);
- ``/pagerduty/v2/enqueue``: Events API v2 (routing key, action and severity enums,
  summary <= 1024 characters, dedup_key for acknowledge/resolve; 202 or 400
  ``invalid event``);
- ``/webhook``: our webhook (Alertmanager webhook v4 plus ``message_id``; the HMAC-SHA256
  signature of the exact body verified with :attr:`webhook_secret`, Idempotency-Key and
  timestamp headers);
- ``/alertmanager-webhook``: what a real Alertmanager's webhook receiver gets (v4);
- ``/api/v2/alerts``: Alertmanager's alert API (``postableAlert`` list).

:meth:`fail` and :meth:`stall` script the next answers of a path (an HTTP error with
an optional Retry-After, or a delay) to exercise retries and timeouts.

Sources of the formats: Slack "Block Kit reference: blocks" and "chat.postMessage"
(limits: 50 blocks, header 150, section text 3000, 10 fields of 2000, 25 action
elements, button text 75, url 3000, action_id 255); PagerDuty "Events API v2
Overview" (send an alert event); Alertmanager docs "Configuration: webhook_config"
and its OpenAPI ``api/v2/openapi.yaml`` (postableAlert).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import itertools
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.processes import Service

SLACK_BLOCK_LIMITS = {"blocks": 50, "header": 150, "section_text": 3000, "fields": 10,
                      "field": 2000, "context_elements": 10, "action_elements": 25,
                      "button_text": 75, "url": 3000, "action_id": 255, "block_id": 255,
                      "text": 40000}
SLACK_TOP_KEYS = {"text", "blocks", "attachments", "channel", "username", "icon_emoji",
                  "icon_url", "thread_ts", "reply_broadcast", "unfurl_links", "unfurl_media",
                  "mrkdwn", "link_names", "parse", "metadata"}
PAGERDUTY_ACTIONS = ("trigger", "acknowledge", "resolve")
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_TOP_KEYS = {"routing_key", "event_action", "dedup_key", "payload", "images",
                      "links", "client", "client_url"}
PAGERDUTY_PAYLOAD_KEYS = {"summary", "source", "severity", "timestamp", "component", "group",
                          "class", "custom_details"}
WEBHOOK_V4_KEYS = {"version", "groupKey", "truncatedAlerts", "status", "receiver",
                   "groupLabels", "commonLabels", "commonAnnotations", "externalURL", "alerts"}
WEBHOOK_EXTENSIONS = {"message_id", "kind", "stage", "policy", "person", "recipients"}
WEBHOOK_ALERT_KEYS = {"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL",
                      "fingerprint"}
POSTABLE_ALERT_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)\Z")


# ---------------------------------------------------------------- validators


def _text_object(obj: Any, where: str, limit: int, problems: list[str], *,
                 plain_only: bool = False) -> None:
    if not isinstance(obj, dict):
        problems.append(f"{where}: expected a text object")
        return
    kind = obj.get("type")
    if kind not in (("plain_text",) if plain_only else ("plain_text", "mrkdwn")):
        problems.append(f"{where}.type: {kind!r} not allowed here")
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        problems.append(f"{where}.text: must be a non-empty string")
    elif len(text) > limit:
        problems.append(f"{where}.text: {len(text)} characters, limit {limit}")
    if "emoji" in obj and kind != "plain_text":
        problems.append(f"{where}.emoji: only plain_text has emoji")
    extra = set(obj) - {"type", "text", "emoji", "verbatim"}
    if extra:
        problems.append(f"{where}: unknown fields {sorted(extra)}")


def slack_block_problems(blocks: Any) -> list[str]:
    """What is wrong with a Block Kit ``blocks`` array (empty: nothing)."""
    lim = SLACK_BLOCK_LIMITS
    problems: list[str] = []
    if not isinstance(blocks, list) or not blocks:
        return ["blocks: must be a non-empty array"]
    if len(blocks) > lim["blocks"]:
        problems.append(f"blocks: {len(blocks)} blocks, limit {lim['blocks']}")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict):
            problems.append(f"{where}: expected an object")
            continue
        kind = block.get("type")
        _unique_id(block.get("block_id"), f"{where}.block_id", lim["block_id"], block_ids,
                   problems)
        if kind == "header":
            _text_object(block.get("text"), f"{where}.text", lim["header"], problems,
                         plain_only=True)
            extra = set(block) - {"type", "text", "block_id"}
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: a section needs text or fields")
            if "text" in block:
                _text_object(block["text"], f"{where}.text", lim["section_text"], problems)
            if "fields" in block:
                fields = block["fields"]
                if not isinstance(fields, list) or not fields or len(fields) > lim["fields"]:
                    problems.append(f"{where}.fields: 1 to {lim['fields']} text objects")
                else:
                    for j, f in enumerate(fields):
                        _text_object(f, f"{where}.fields[{j}]", lim["field"], problems)
            extra = set(block) - {"type", "text", "fields", "block_id", "accessory"}
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements \
                    or len(elements) > lim["context_elements"]:
                problems.append(f"{where}.elements: 1 to {lim['context_elements']} elements")
            else:
                for j, e in enumerate(elements):
                    _text_object(e, f"{where}.elements[{j}]", lim["section_text"], problems)
            extra = set(block) - {"type", "elements", "block_id"}
        elif kind == "actions":
            elements = block.get("elements")
            if not isinstance(elements, list) or not elements \
                    or len(elements) > lim["action_elements"]:
                problems.append(f"{where}.elements: 1 to {lim['action_elements']} elements")
                elements = []
            for j, e in enumerate(elements):
                _button(e, f"{where}.elements[{j}]", action_ids, problems)
            extra = set(block) - {"type", "elements", "block_id"}
        elif kind == "divider":
            extra = set(block) - {"type", "block_id"}
        else:
            problems.append(f"{where}.type: unsupported block type {kind!r}")
            extra = set()
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
    return problems


def _unique_id(value: Any, where: str, limit: int, seen: set[str],
               problems: list[str]) -> None:
    """A ``block_id``/``action_id``: optional, a string of at most ``limit``, unique."""
    if value is None:
        return
    if not isinstance(value, str) or len(value) > limit or value in seen:
        problems.append(f"{where}: must be unique, at most {limit} characters")
    seen.add(str(value))


def _button(e: Any, where: str, action_ids: set[str], problems: list[str]) -> None:
    lim = SLACK_BLOCK_LIMITS
    if not isinstance(e, dict) or e.get("type") != "button":
        problems.append(f"{where}: expected a button")
        return
    _text_object(e.get("text"), f"{where}.text", lim["button_text"], problems, plain_only=True)
    _unique_id(e.get("action_id"), f"{where}.action_id", lim["action_id"], action_ids,
               problems)
    url = e.get("url")
    if url is not None and (not isinstance(url, str) or len(url) > lim["url"]
                            or not url.startswith(("http://", "https://"))):
        problems.append(f"{where}.url: an http(s) URL of at most {lim['url']} characters")
    if "style" in e and e["style"] not in ("primary", "danger"):
        problems.append(f"{where}.style: primary or danger")
    extra = set(e) - {"type", "text", "action_id", "url", "value", "style", "confirm",
                      "accessibility_label"}
    if extra:
        problems.append(f"{where}: unknown fields {sorted(extra)}")


def slack_message_problems(payload: Any, *, api: bool) -> list[str]:
    """What is wrong with an incoming-webhook (``api`` False) or chat.postMessage body."""
    if not isinstance(payload, dict):
        return ["body: expected a JSON object"]
    problems: list[str] = []
    extra = set(payload) - SLACK_TOP_KEYS
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    if api and not (isinstance(payload.get("channel"), str) and payload["channel"]):
        problems.append("channel: required")
    text = payload.get("text")
    if text is None and "blocks" not in payload:
        problems.append("text or blocks: one is required")
    if text is not None and (not isinstance(text, str) or len(text)
                             > SLACK_BLOCK_LIMITS["text"]):
        problems.append("text: a string of at most 40000 characters")
    if "blocks" in payload:
        problems.extend(slack_block_problems(payload["blocks"]))
    ts = payload.get("thread_ts")
    if ts is not None and not (isinstance(ts, str) and re.fullmatch(r"\d+\.\d+", ts)):
        problems.append(f"thread_ts: {ts!r} is not a message ts")
    return problems


def pagerduty_problems(event: Any) -> list[str]:
    """What is wrong with an Events API v2 event."""
    if not isinstance(event, dict):
        return ["body: expected a JSON object"]
    problems: list[str] = []
    extra = set(event) - PAGERDUTY_TOP_KEYS
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    key = event.get("routing_key")
    if not (isinstance(key, str) and len(key) == 32):
        problems.append("routing_key: must be a 32-character integration key")
    action = event.get("event_action")
    if action not in PAGERDUTY_ACTIONS:
        problems.append(f"event_action: {action!r} is not one of {PAGERDUTY_ACTIONS}")
    dedup = event.get("dedup_key")
    if dedup is not None and not (isinstance(dedup, str) and 0 < len(dedup) <= 255):
        problems.append("dedup_key: 1 to 255 characters")
    if action in ("acknowledge", "resolve") and dedup is None:
        problems.append(f"dedup_key: required for {action}")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            problems.append("payload: required for trigger")
        else:
            problems.extend(_pagerduty_payload(payload))
    for i, link in enumerate(event.get("links", [])):
        if not isinstance(link, dict) or not isinstance(link.get("href"), str) \
                or set(link) - {"href", "text"}:
            problems.append(f"links[{i}]: expected {{href, text}}")
    return problems


def _pagerduty_payload(payload: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    extra = set(payload) - PAGERDUTY_PAYLOAD_KEYS
    if extra:
        problems.append(f"payload: unknown fields {sorted(extra)}")
    summary = payload.get("summary")
    if not (isinstance(summary, str) and 0 < len(summary) <= 1024):
        problems.append("payload.summary: 1 to 1024 characters")
    if not (isinstance(payload.get("source"), str) and payload["source"]):
        problems.append("payload.source: required")
    if payload.get("severity") not in PAGERDUTY_SEVERITIES:
        problems.append(f"payload.severity: {payload.get('severity')!r} is not one of "
                        f"{PAGERDUTY_SEVERITIES}")
    stamp = payload.get("timestamp")
    if stamp is not None and not (isinstance(stamp, str) and RFC3339.match(stamp)):
        problems.append(f"payload.timestamp: {stamp!r} is not ISO 8601")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("payload.custom_details: expected an object")
    return problems


def _string_map(value: Any, where: str, problems: list[str]) -> None:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        problems.append(f"{where}: expected an object of strings")


def _time(value: Any, where: str, problems: list[str]) -> None:
    if not (isinstance(value, str) and RFC3339.match(value)):
        problems.append(f"{where}: {value!r} is not an RFC 3339 time")


def webhook_v4_problems(payload: Any, *, extensions: bool) -> list[str]:
    """What is wrong with an Alertmanager webhook (v4) body; ``extensions``: ours allowed."""
    if not isinstance(payload, dict):
        return ["body: expected a JSON object"]
    problems: list[str] = []
    missing = WEBHOOK_V4_KEYS - set(payload)
    if missing:
        problems.append(f"missing fields {sorted(missing)}")
    extra = set(payload) - WEBHOOK_V4_KEYS - (WEBHOOK_EXTENSIONS if extensions else set())
    if extra:
        problems.append(f"unknown fields {sorted(extra)}")
    if payload.get("version") != "4":
        problems.append(f"version: {payload.get('version')!r}, expected '4'")
    if payload.get("status") not in ("firing", "resolved"):
        problems.append(f"status: {payload.get('status')!r}")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        _string_map(payload.get(key), key, problems)
    if not isinstance(payload.get("truncatedAlerts"), int):
        problems.append("truncatedAlerts: expected an integer")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        return [*problems, "alerts: expected a non-empty array"]
    for i, a in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(a, dict) or set(a) != WEBHOOK_ALERT_KEYS:
            problems.append(f"{where}: expected exactly {sorted(WEBHOOK_ALERT_KEYS)}")
            continue
        if a["status"] not in ("firing", "resolved"):
            problems.append(f"{where}.status: {a['status']!r}")
        _string_map(a["labels"], f"{where}.labels", problems)
        _string_map(a["annotations"], f"{where}.annotations", problems)
        _time(a["startsAt"], f"{where}.startsAt", problems)
        _time(a["endsAt"], f"{where}.endsAt", problems)
    if extensions and not isinstance(payload.get("message_id"), str):
        problems.append("message_id: required")
    return problems


def postable_alerts_problems(payload: Any) -> list[str]:
    """What is wrong with a ``POST /api/v2/alerts`` body (Alertmanager's postableAlerts)."""
    if not isinstance(payload, list):
        return ["body: expected an array of alerts"]
    problems: list[str] = []
    for i, a in enumerate(payload):
        where = f"[{i}]"
        if not isinstance(a, dict):
            problems.append(f"{where}: expected an object")
            continue
        extra = set(a) - POSTABLE_ALERT_KEYS
        if extra:
            problems.append(f"{where}: unknown fields {sorted(extra)}")
        _string_map(a.get("labels"), f"{where}.labels", problems)
        if not a.get("labels"):
            problems.append(f"{where}.labels: required, non-empty")
        if "annotations" in a:
            _string_map(a["annotations"], f"{where}.annotations", problems)
        for key in ("startsAt", "endsAt"):
            if key in a:
                _time(a[key], f"{where}.{key}", problems)
        url = a.get("generatorURL")
        if url is not None and not (isinstance(url, str) and re.match(r"https?://", url)):
            problems.append(f"{where}.generatorURL: expected a URL")
    return problems


# ---------------------------------------------------------------- the server


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    problems: tuple[str, ...]
    status: int
    """The status the receiver answered with."""

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Script:
    status: int | None
    body: str | None = None
    retry_after: str | None = None
    stall_s: float = 0.0


@dataclass
class LoopbackReceiver(Service):
    """The receivers of the module docstring on one free 127.0.0.1 port (context manager)."""

    slack_token: str = "xoxb-loopback-token"
    webhook_secret: str | None = None
    port: int = 0
    _received: list[Received] = field(default_factory=list)
    _scripts: dict[str, collections.deque[_Script]] = field(
        default_factory=lambda: collections.defaultdict(collections.deque))
    _threads: dict[str, list[str]] = field(default_factory=lambda: collections.defaultdict(list))
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _ts: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _release: asyncio.Event | None = None
    _runner: web.AppRunner | None = None

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """The full URL of ``path`` (``/webhook``, ``/slack/webhook``...)."""
        return self.base_url + path

    def start(self) -> None:
        """Start serving in a background thread; returns once the port accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(sock))
            except BaseException as exc:  # pragma: no cover - reported to start()
                failure.append(exc)
                sock.close()
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._thread = threading.Thread(target=serve, name=f"loopback-{self.port}", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            raise RuntimeError(f"loopback receiver did not start: {failure[0]}")

    async def _serve(self, sock: socket.socket) -> None:
        self._release = asyncio.Event()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/slack/webhook", self._slack_webhook)
        app.router.add_post("/slack/api/chat.postMessage", self._slack_post_message)
        app.router.add_post("/pagerduty/v2/enqueue", self._pagerduty)
        app.router.add_post("/webhook", self._webhook)
        app.router.add_post("/alertmanager-webhook", self._alertmanager_webhook)
        app.router.add_post("/api/v2/alerts", self._postable_alerts)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def _shutdown(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        """Stop the server (stalled requests are released first) and join its thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        self._loop = self._thread = None

    # ------------------------------------------------------------ scripting

    def fail(self, path: str, status: int, *, times: int = 1, retry_after: str | None = None,
             body: str | None = None) -> None:
        """Answer the next ``times`` requests to ``path`` with ``status`` (after recording)."""
        with self._cond:
            for _ in range(times):
                self._scripts[path].append(_Script(status, body, retry_after))

    def stall(self, path: str, seconds: float, *, times: int = 1) -> None:
        """Hold the next ``times`` requests to ``path`` for ``seconds`` before answering."""
        with self._cond:
            for _ in range(times):
                self._scripts[path].append(_Script(None, stall_s=seconds))

    # ------------------------------------------------------------ inspection

    def requests(self, path: str | None = None) -> list[Received]:
        """Every request received (at ``path``), in order."""
        with self._cond:
            return [r for r in self._received if path is None or r.path == path]

    @property
    def problems(self) -> list[str]:
        """Every format problem found, as ``path: problem``."""
        return [f"{r.path}: {p}" for r in self.requests() for p in r.problems]

    def wait_for(self, path: str, count: int = 1, timeout: float = 60.0,
                 where: Callable[[Received], bool] | None = None) -> list[Received]:
        """Block until ``count`` requests (matching ``where``) reached ``path``; hang guard only."""
        deadline = time.monotonic() + timeout

        def matching() -> list[Received]:
            return [r for r in self._received
                    if r.path == path and (where is None or where(r))]

        with self._cond:
            while len(found := matching()) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} requests to {path} arrived "
                                       f"within {timeout:g}s")
                self._cond.wait(left)
            return found

    # ------------------------------------------------------------ handling

    async def _answer(self, request: web.Request, body: bytes, problems: list[str],
                      status: int, reply: str, content_type: str = "application/json",
                      ) -> web.Response:
        """Record the request (at once, so a stalled one is visible), then answer."""
        with self._cond:
            queue = self._scripts[request.path]
            script = queue.popleft() if queue else None
        headers: dict[str, str] = {}
        if script is not None and script.status is not None:
            status = script.status
            reply = script.body if script.body is not None else json.dumps(
                {"error": f"scripted failure {status}"})
            if script.retry_after is not None:
                headers["Retry-After"] = script.retry_after
        with self._cond:
            self._received.append(Received(request.path, dict(request.headers), body,
                                           tuple(problems), status))
            self._cond.notify_all()
        if script is not None and script.stall_s and self._release is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._release.wait(), script.stall_s)
        return web.Response(status=status, text=reply, content_type=content_type,
                            headers=headers)

    @staticmethod
    async def _read(request: web.Request, check: Callable[[Any], list[str]]
                    ) -> tuple[bytes, Any, list[str]]:
        """The body, its JSON (None if it is not JSON) and the problems ``check`` finds."""
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError as exc:
            return body, None, [f"body is not JSON: {exc}"]
        return body, payload, check(payload)

    async def _slack_webhook(self, request: web.Request) -> web.Response:
        body, _, problems = await self._read(
            request, lambda p: slack_message_problems(p, api=False))
        if problems:
            return await self._answer(request, body, problems, 400, "invalid_blocks",
                                      "text/plain")
        return await self._answer(request, body, problems, 200, "ok", "text/plain")

    async def _slack_post_message(self, request: web.Request) -> web.Response:
        body, payload, problems = await self._read(
            request, lambda p: slack_message_problems(p, api=True))
        if request.headers.get("Authorization") != f"Bearer {self.slack_token}":
            return await self._answer(request, body, [], 200,
                                      json.dumps({"ok": False, "error": "invalid_auth"}))
        if problems:
            return await self._answer(request, body, problems, 200, json.dumps(
                {"ok": False, "error": "invalid_blocks",
                 "response_metadata": {"messages": problems}}))
        channel = payload["channel"]
        thread = payload.get("thread_ts")
        with self._cond:
            known = thread is None or thread in self._threads[channel]
            ts = f"1767225600.{next(self._ts):06d}"
            if thread is None:
                self._threads[channel].append(ts)
        if not known:
            return await self._answer(request, body, [f"thread_ts {thread} unknown"], 200,
                                      json.dumps({"ok": False, "error": "thread_not_found"}))
        return await self._answer(request, body, [], 200, json.dumps(
            {"ok": True, "channel": "C0LOOPBACK", "ts": ts,
             "message": {"text": payload.get("text", ""), "ts": ts}}))

    async def _pagerduty(self, request: web.Request) -> web.Response:
        body, event, problems = await self._read(request, pagerduty_problems)
        if problems:
            return await self._answer(request, body, problems, 400, json.dumps(
                {"status": "invalid event", "message": "Event object is invalid",
                 "errors": problems}))
        key = event.get("dedup_key") or hashlib.sha256(body).hexdigest()[:32]
        return await self._answer(request, body, [], 202, json.dumps(
            {"status": "success", "message": "Event processed", "dedup_key": key}))

    async def _webhook(self, request: web.Request) -> web.Response:
        body, payload, problems = await self._read(
            request, lambda p: webhook_v4_problems(p, extensions=True))
        if self.webhook_secret is not None:
            expected = "sha256=" + hmac.new(self.webhook_secret.encode(), body,
                                            hashlib.sha256).hexdigest()
            given = request.headers.get("X-Monitoring-Signature", "")
            if not hmac.compare_digest(expected, given):
                return await self._answer(request, body, ["bad signature"], 401,
                                          json.dumps({"error": "bad signature"}))
        if isinstance(payload, dict) and \
                request.headers.get("Idempotency-Key") != payload.get("message_id"):
            problems.append("Idempotency-Key header differs from message_id")
        if not request.headers.get("X-Monitoring-Timestamp", "").isdigit():
            problems.append("X-Monitoring-Timestamp: missing or not Unix seconds")
        status = 400 if problems else 200
        return await self._answer(request, body, problems, status,
                                  json.dumps({"problems": problems}))

    async def _alertmanager_webhook(self, request: web.Request) -> web.Response:
        body, _, problems = await self._read(
            request, lambda p: webhook_v4_problems(p, extensions=False))
        return await self._answer(request, body, problems, 400 if problems else 200, "{}")

    async def _postable_alerts(self, request: web.Request) -> web.Response:
        body, _, problems = await self._read(request, postable_alerts_problems)
        if problems:
            return await self._answer(request, body, problems, 400,
                                      json.dumps("; ".join(problems)))
        return await self._answer(request, body, [], 200, "")
