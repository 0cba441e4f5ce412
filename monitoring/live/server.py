"""The engine's HTTP side (aiohttp.web): ``/metrics`` and a JSON API on 127.0.0.1.

Endpoints (all JSON except /metrics)::

    GET    /metrics                          Prometheus text format (the engine's own metrics)
    GET    /api/v1/status                    engine, outbox and ledger summary
    GET    /api/v1/alerts                    ?state=firing|pending ?rule=R ?label=k=v (repeatable)
    GET    /api/v1/alerts/{fingerprint}
    POST   /api/v1/alerts/{fingerprint}/ack  {"by": "...", "comment": "..."}
    GET    /api/v1/rules
    POST   /api/v1/rules                     seed rule fields, or {"dsl": "..."}
    DELETE /api/v1/rules/{name}
    GET    /api/v1/silences                  ?expired=true
    POST   /api/v1/silences                  {"matchers": [...], "duration": "2h" | "ends_at": T,
                                              "starts_at": T, "created_by": "...", "comment": "..."}
    DELETE /api/v1/silences/{id}
    GET    /api/v1/notifications             ?status= ?channel= ?limit= (outbox + delivery log)

A bad request is answered 400 with ``{"error": "...", "field": "..."}`` naming the field;
an unknown id 404; an unexpected failure 500 with a one-line message, never a traceback.
The request parsing is shared with the CLI's offline fallback (``parse_silence``).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from monitoring.engine.timeparse import TimeFormatError, parse_duration_ms, parse_time_ms
from monitoring.live.rules_api import ApiRule, RuleError, dsl_rule, seed_rule
from monitoring.live.runtime import Runtime

log = logging.getLogger("monitoring.live.server")

FINGERPRINT = re.compile(r"[0-9a-f]{16}\Z")
MAX_BODY = 1 << 20
ALERT_STATES = ("firing", "pending")
DAY_MS = 86_400_000
MAX_LIMIT = 10_000


class BadRequest(ValueError):
    """A request field is missing or malformed; answered 400 naming ``field``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def error(status: int, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status)


@web.middleware
async def errors_middleware(request: web.Request,
                            handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Every failure as JSON: 400 for bad input, 404/405 as such, 500 without a traceback."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return error(400, exc.message, exc.field)
    except RuleError as exc:
        return error(400, str(exc), exc.field or "rule")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.reason)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- request parsing


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object; 400 when it is not one."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest("body", f"the body is larger than {MAX_BODY} bytes")
    raw = await request.read()
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("body", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("body", f"expected a JSON object, got {type(data).__name__}")
    return data


def text_field(data: Mapping[str, Any], name: str, *, required: bool = False,
               default: str = "") -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise BadRequest(name, f"{name}: required")
        return default
    if not isinstance(value, str):
        raise BadRequest(name, f"{name}: expected a string, got {type(value).__name__}")
    if required and not value.strip():
        raise BadRequest(name, f"{name}: must not be empty")
    return value


@dataclass(frozen=True, slots=True)
class SilenceRequest:
    """A checked silence to create."""

    matchers: list[str]
    starts_ms: int | None
    ends_ms: int
    created_by: str
    comment: str


def parse_silence(data: Mapping[str, Any], now_ms: int) -> SilenceRequest:
    """Check a silence request (API body or CLI options); raises :class:`BadRequest`."""
    from monitoring.notify.matchers import MatcherError, parse_matchers

    raw = data.get("matchers")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw or not all(isinstance(m, str) for m in raw):
        raise BadRequest("matchers", 'matchers: expected a non-empty list of matchers such as '
                         '["alertname=\\"HighErrorRate\\"", "instance=~\\"api-.*\\""]')
    try:
        if not parse_matchers(raw):
            raise BadRequest("matchers", "matchers: no matcher given")
    except MatcherError as exc:
        raise BadRequest("matchers", f"matchers: {exc}") from None
    starts = _time(data, "starts_at", now_ms)
    ends = _time(data, "ends_at", now_ms)
    duration = data.get("duration")
    if ends is None and duration is None:
        raise BadRequest("duration", "duration: give a duration (e.g. \"2h\") or ends_at")
    if ends is not None and duration is not None:
        raise BadRequest("duration", "duration: give either duration or ends_at, not both")
    if duration is not None:
        if not isinstance(duration, str | int) or isinstance(duration, bool):
            raise BadRequest("duration", "duration: expected e.g. \"2h\" or seconds")
        try:
            length = parse_duration_ms(str(duration))
        except TimeFormatError as exc:
            raise BadRequest("duration", f"duration: {exc}") from None
        if length <= 0:
            raise BadRequest("duration", "duration: must be positive")
        ends = (starts if starts is not None else now_ms) + length
    assert ends is not None
    if ends <= (starts if starts is not None else now_ms):
        raise BadRequest("ends_at", "ends_at: must be after the start (and in the future)")
    return SilenceRequest([str(m) for m in raw], starts, ends,
                          text_field(data, "created_by", required=True),
                          text_field(data, "comment", required=True))


def _time(data: Mapping[str, Any], name: str, now_ms: int) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise BadRequest(name, f"{name}: expected an RFC 3339 time or Unix seconds")
    try:
        return parse_time_ms(str(value), now_ms)
    except TimeFormatError as exc:
        raise BadRequest(name, f"{name}: {exc}") from None


def parse_rule(data: Mapping[str, Any]) -> ApiRule:
    """A rule from a POST body: ``{"dsl": TEXT, "name"?}`` or the seed rule fields."""
    if "dsl" in data:
        name = data.get("name")
        if name is not None and not isinstance(name, str):
            raise BadRequest("name", "name: expected a string")
        return dsl_rule(data["dsl"], name)
    for key in ("name", "condition"):
        if key not in data:
            raise BadRequest(key, f"{key}: required (or give the rule as DSL text in 'dsl')")
    known = {"name", "condition", "severity", "channels", "description", "tags", "cooldown",
             "for", "labels", "escalation", "escalation_policy"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadRequest(unknown[0], f"{unknown[0]}: unknown field; expected one of "
                         + ", ".join(sorted(known)) + " or dsl")
    return seed_rule(data["name"], data["condition"], data.get("severity"),
                     data.get("channels") or (), description=str(data.get("description", "")),
                     tags=data.get("tags") or (), cooldown=data.get("cooldown"),
                     for_=data.get("for"), labels=data.get("labels"),
                     escalation=data.get("escalation") or data.get("escalation_policy"))


def fingerprint_of(request: web.Request) -> str:
    fp = request.match_info["fingerprint"]
    if not FINGERPRINT.match(fp):
        raise BadRequest("fingerprint", f"fingerprint: expected 16 lowercase hex digits, "
                         f"got {fp!r}")
    return fp


def _limit(request: web.Request, default: int, name: str = "limit") -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(name, f"{name}: expected a whole number from 1 to {MAX_LIMIT}, "
                         f"got {raw!r}")
    return int(raw)


def _range(request: web.Request, now_ms: int, default_span_ms: int) -> tuple[int, int]:
    """``since_ms`` and ``until_ms`` (epoch milliseconds; default: the last span until now)."""
    out: dict[str, int] = {}
    for name in ("since_ms", "until_ms"):
        raw = request.query.get(name)
        if raw is not None:
            if not raw.lstrip("-").isdigit():
                raise BadRequest(name, f"{name}: expected epoch milliseconds, got {raw!r}")
            out[name] = int(raw)
    until = out.get("until_ms", now_ms)
    since = out.get("since_ms", until - default_span_ms)
    if since > until:
        raise BadRequest("since_ms", "since_ms: after until_ms")
    return since, until


def _choice(request: web.Request, name: str, allowed: Sequence[str]) -> str | None:
    """A query parameter that must be one of ``allowed`` (None when absent)."""
    value = request.query.get(name)
    if value is not None and value not in allowed:
        raise BadRequest(name, f"{name}: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _label_filters(request: web.Request) -> dict[str, str]:
    out = {}
    for item in request.query.getall("label", []):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise BadRequest("label", f"label: expected NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def silence_error(exc: ValueError) -> BadRequest:
    """A silence the store refused (``InvalidSilence``), naming the field it is about."""
    text = str(exc)
    field = ("created_by" if "created_by" in text else
             "ends_at" if "end" in text else "matchers")
    return BadRequest(field, text)


# ---------------------------------------------------------------- handlers


class Api:
    """The handlers, bound to one runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime

    async def metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.rt.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.rt.status())

    async def alerts(self, request: web.Request) -> web.Response:
        state = _choice(request, "state", ALERT_STATES)
        rule = request.query.get("rule")
        labels = _label_filters(request)
        views = [v for v in self.rt.alert_views()
                 if (state is None or v["state"] == state)
                 and (rule is None or rule in (v["rule"], v["labels"].get("alertname")))
                 and all(v["labels"].get(k) == val for k, val in labels.items())]
        return web.json_response({"alerts": views})

    async def alert(self, request: web.Request) -> web.Response:
        fp = fingerprint_of(request)
        for view in self.rt.alert_views():
            if view["fingerprint"] == fp:
                return web.json_response(view)
        return error(404, f"no active alert with fingerprint {fp}", "fingerprint")

    async def ack(self, request: web.Request) -> web.Response:
        fp = fingerprint_of(request)
        data = await json_body(request)
        by = text_field(data, "by", required=True)
        comment = text_field(data, "comment")
        try:
            messages = await self.rt.acknowledge(fp, by=by, comment=comment)
        except KeyError:
            return error(404, f"no active alert with fingerprint {fp}", "fingerprint")
        return web.json_response({"fingerprint": fp, "acknowledged_by": by,
                                  "messages": messages})

    async def rules(self, request: web.Request) -> web.Response:
        return web.json_response({
            "rules": self.rt.rule_views(),
            "api_rules": [{"name": r.name, "kind": r.kind, "file": r.source_name,
                           "created_ms": r.created_ms, "updated_ms": r.updated_ms,
                           "created_by": r.created_by} for r in self.rt.api_rules.all()],
            "broken_api_rules": self.rt.broken_rules})

    async def add_rule(self, request: web.Request) -> web.Response:
        data = await json_body(request)
        by = text_field(data, "created_by", default="api")
        rule = parse_rule({k: v for k, v in data.items() if k != "created_by"})
        info = self.rt.add_rule(rule, by=by)
        return web.json_response(info.to_json(), status=201)

    async def delete_rule(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not self.rt.delete_rule(name, by=request.query.get("by", "api")):
            return error(404, f"no API rule named {name!r} (rules from files are changed in "
                         "their files)", "name")
        return web.json_response({"deleted": name})

    async def silences(self, request: web.Request) -> web.Response:
        expired = _choice(request, "expired", ("true", "false"))
        found = self.rt.silences.list(include_expired=expired == "true")
        now = self.rt.clock.now_ms()
        return web.json_response({"silences": [s.to_json(now) for s in found]})

    async def add_silence(self, request: web.Request) -> web.Response:
        from monitoring.notify.silences import InvalidSilence

        req = parse_silence(await json_body(request), self.rt.clock.now_ms())
        try:
            silence = self.rt.silence(req.matchers, ends_ms=req.ends_ms, starts_ms=req.starts_ms,
                                      created_by=req.created_by, comment=req.comment)
        except InvalidSilence as exc:
            raise silence_error(exc) from None
        return web.json_response(silence.to_json(self.rt.clock.now_ms()), status=201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        sid = request.match_info["id"]
        try:
            silence = self.rt.expire_silence(sid, request.query.get("by", "api"))
        except KeyError as exc:
            return error(404, str(exc), "id")
        return web.json_response(silence.to_json(self.rt.clock.now_ms()))

    async def history(self, request: web.Request) -> web.Response:
        """Stored state changes (``monitoring alerts history`` while the engine holds the DB)."""
        from monitoring.live.history import read_transitions

        since, until = _range(request, self.rt.clock.now_ms(), DAY_MS)
        records = read_transitions(self.rt.history.conn, since_ms=since, until_ms=until,
                                   rule=request.query.get("rule"),
                                   fingerprint=request.query.get("fingerprint"),
                                   limit=_limit(request, MAX_LIMIT))
        return web.json_response({"since_ms": since, "until_ms": until,
                                  "transitions": [r.to_json() for r in records]})

    async def stats(self, request: web.Request) -> web.Response:
        """Alert statistics (``monitoring alerts stats`` while the engine holds the DB)."""
        from monitoring.live.stats import alert_stats

        since, until = _range(request, self.rt.clock.now_ms(), 7 * DAY_MS)
        top = _limit(request, 10, name="top")
        return web.json_response(alert_stats(self.rt.history.conn, since, until,
                                             top=top).to_json())

    async def notifications(self, request: web.Request) -> web.Response:
        from monitoring.notify.outbox import OUTBOX_STATUSES

        status = _choice(request, "status", OUTBOX_STATUSES)
        channel = request.query.get("channel")
        limit = _limit(request, 100)
        outbox = self.rt.outbox.entries(status=status, channel=channel, limit=limit)
        deliveries = self.rt.outbox.deliveries(channel=channel, limit=limit)
        return web.json_response({"outbox": [e.to_json() for e in outbox],
                                  "deliveries": [d.to_json() for d in deliveries],
                                  "counts": self.rt.outbox.counts()})


def build_app(runtime: Runtime) -> web.Application:
    """The aiohttp application of one runtime."""
    api = Api(runtime)
    app = web.Application(middlewares=[errors_middleware], client_max_size=MAX_BODY)
    app.add_routes([
        web.get("/metrics", api.metrics),
        web.get("/api/v1/status", api.status),
        web.get("/api/v1/alerts", api.alerts),
        web.get("/api/v1/alerts/{fingerprint}", api.alert),
        web.post("/api/v1/alerts/{fingerprint}/ack", api.ack),
        web.get("/api/v1/rules", api.rules),
        web.post("/api/v1/rules", api.add_rule),
        web.delete("/api/v1/rules/{name}", api.delete_rule),
        web.get("/api/v1/silences", api.silences),
        web.post("/api/v1/silences", api.add_silence),
        web.delete("/api/v1/silences/{id}", api.expire_silence),
        web.get("/api/v1/notifications", api.notifications),
        web.get("/api/v1/history", api.history),
        web.get("/api/v1/stats", api.stats),
    ])
    return app


class HttpServer:
    """The API served on ``host:port`` (port 0: a free one; :attr:`port` tells which)."""

    def __init__(self, runtime: Runtime, host: str = "127.0.0.1", port: int = 9464) -> None:
        self.host = host
        self.port = port
        self._runner = web.AppRunner(build_app(runtime), access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
