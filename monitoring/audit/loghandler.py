"""Python logging into the audit ledger, and structured JSON-lines logs.

:class:`LedgerHandler` is a standard :class:`logging.Handler`: attach it to a logger and every
record becomes a ledger event (category ``system``, action = the logger's name, severity from
the level, the message, module, line and exception text in ``details``). ``emit`` only queues
the event (the ledger's group-commit writer makes it durable in the background), so logging
never waits for a disk; :meth:`LedgerHandler.flush` waits until everything queued so far is
durable. Records from the ledger's own loggers (``monitoring.audit``) are skipped, and a record
logged while the handler is already emitting on the same thread is dropped, so the handler can
never feed on itself.

A record may say more about the event with ``extra={"audit": {...}}``: ``event_type``,
``user_id``, ``resource``, ``outcome``, ``source``, ``subject``, ``retention``, ``severity``
and ``details`` (merged into the record's details). With a user id or subject, the details
(the message included) are sealed as that subject's personal data, as for any event; without
one, the message is stored in the clear, so do not log personal data through a handler without
a subject.

:class:`JsonLinesFormatter` writes one JSON object per record (UTC timestamp, level, logger,
message, source location, correlation id, exception, and the record's extra attributes) for
log shippers; :func:`json_lines_handler` sets up a stream handler with it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import sys
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, wait
from typing import IO, Any, Protocol

from monitoring.audit.context import current_correlation_id
from monitoring.audit.envelope import AuditEvent
from monitoring.audit.errors import EventError

MAX_MESSAGE = 8192
"""Characters of a message (and of exception text) kept in an event; longer ones are cut."""
AUDIT_EXTRA = "audit"
"""The ``extra`` key whose mapping sets event fields for one record."""
EVENT_OVERRIDES = ("event_type", "user_id", "resource", "outcome", "source", "subject",
                   "retention", "severity", "details")
"""Event fields a record's ``extra={"audit": {...}}`` may set."""

_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message", "asctime", "taskName", "correlation_id"}
"""Attributes every LogRecord has; anything else on a record came from ``extra``."""


class EventSink(Protocol):
    """What the handler needs of a ledger: queue an event, get a future for durability."""

    def submit(self, event: AuditEvent) -> Future[Any]: ...


def severity_for(levelno: int) -> str:
    """The audit severity of a logging level (custom levels map to the next standard below)."""
    if levelno >= logging.CRITICAL:
        return "critical"
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warning"
    if levelno > logging.INFO:
        return "notice"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


def record_correlation_id(record: logging.LogRecord) -> str | None:
    """The correlation id stamped on a record (:class:`CorrelationFilter`), else the current one."""
    stamped = getattr(record, "correlation_id", None)
    return stamped if isinstance(stamped, str) else current_correlation_id()


class CorrelationFilter(logging.Filter):
    """Stamps each record with the correlation id in effect where it was logged.

    Needed when records are formatted on another thread (a ``QueueHandler``), where the
    context variable is not visible; harmless otherwise. Never filters anything out.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "correlation_id", None) is None:
            record.correlation_id = current_correlation_id()
        return True


class LedgerHandler(logging.Handler):
    """A logging handler that records each log record as an audit event, without blocking.

    ``failures`` counts events the ledger refused or could not make durable (a record that
    cannot become an event at all goes through :meth:`handleError`, as with any handler);
    ``last_error`` keeps the newest such error.
    """

    def __init__(self, ledger: EventSink, level: int = logging.NOTSET, *,
                 category: str = "system", exclude: Iterable[str] = ("monitoring.audit",),
                 flush_timeout_s: float | None = 60.0) -> None:
        super().__init__(level)
        self.ledger = ledger
        self.category = category
        self.exclude = tuple(exclude)
        self.flush_timeout_s = flush_timeout_s
        self.failures = 0
        self.last_error: BaseException | None = None
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()
        self._local = threading.local()
        AuditEvent(event_type=category, action="check")  # a bad category fails here, not later

    def _excluded(self, name: str) -> bool:
        return any(name == prefix or name.startswith(prefix + ".") for prefix in self.exclude)

    def event_for(self, record: logging.LogRecord) -> AuditEvent:
        """The audit event of one log record (raises EventError if the record cannot be one)."""
        details: dict[str, Any] = {"message": _clip(record.getMessage()),
                                   "module": record.module, "line": record.lineno,
                                   "function": record.funcName}
        if record.exc_info and record.exc_info[0] is not None:
            details["exc"] = _clip(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            details["exc"] = _clip(record.exc_text)
        if record.stack_info:
            details["stack"] = _clip(record.stack_info)
        fields: dict[str, Any] = {"event_type": self.category, "action": record.name,
                                  "severity": severity_for(record.levelno)}
        overrides = getattr(record, AUDIT_EXTRA, None)
        if isinstance(overrides, Mapping):
            unknown = sorted(str(k) for k in overrides if k not in EVENT_OVERRIDES)
            if unknown:
                raise EventError(f"extra.{AUDIT_EXTRA}.{unknown[0]}",
                                 f"not an event field a log record may set (one of "
                                 f"{', '.join(EVENT_OVERRIDES)})")
            extra_details = overrides.get("details")
            fields.update({k: v for k, v in overrides.items() if k != "details"})
            if isinstance(extra_details, Mapping):
                details.update(extra_details)
        return AuditEvent(details=details, correlation_id=record_correlation_id(record),
                          **fields)

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record's event; never blocks on the ledger."""
        if self._excluded(record.name) or getattr(self._local, "busy", False):
            return
        self._local.busy = True
        try:
            future = self.ledger.submit(self.event_for(record))
        except Exception:
            self.handleError(record)
            return
        finally:
            self._local.busy = False
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)
        error = future.exception() if not future.cancelled() else None
        if error is not None or future.cancelled():
            self.failures += 1
            self.last_error = error

    @property
    def pending(self) -> int:
        """Events queued and not yet durable."""
        with self._pending_lock:
            return len(self._pending)

    def flush(self) -> None:
        """Wait until every event queued so far is durable (or failed; see ``failures``)."""
        with self._pending_lock:
            waiting = list(self._pending)
        if waiting:
            wait(waiting, timeout=self.flush_timeout_s)

    def close(self) -> None:
        """Flush, then detach (the ledger itself stays open: its owner closes it)."""
        try:
            self.flush()
        finally:
            super().close()


# --------------------------------------------------------------------------- JSON lines


def _jsonable(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: non-finite floats and unknown objects become strings."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth >= 8:
        return repr(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v, depth + 1) for v in value]
    return str(value)


def iso_utc(created: float) -> str:
    """A record's creation time as RFC 3339 UTC with microseconds."""
    stamp = dt.datetime.fromtimestamp(created, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per record, on one line: for log shippers and ``jq``.

    Keys: ``ts`` (RFC 3339 UTC), ``level``, ``logger``, ``message``, ``module``, ``line``,
    ``function``, ``thread``, ``process``, ``correlation_id`` (null outside a correlation),
    ``exc`` and ``stack`` when present, then the record's ``extra`` attributes (with
    ``static`` fields, such as a service name, added to every line).
    """

    def __init__(self, *, static: Mapping[str, Any] | None = None,
                 extras: bool = True) -> None:
        super().__init__()
        self.static = dict(static or {})
        self.extras = extras

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": iso_utc(record.created), "level": record.levelname.lower(),
            "logger": record.name, "message": record.getMessage(), "module": record.module,
            "line": record.lineno, "function": record.funcName, "thread": record.threadName,
            "process": record.process, "correlation_id": record_correlation_id(record)}
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        for key, value in self.static.items():
            out.setdefault(key, value)
        if self.extras:
            for key, value in vars(record).items():
                if key not in _STANDARD_ATTRS and key not in out:
                    out[key] = value
        return json.dumps(_jsonable(out), ensure_ascii=False, separators=(",", ":"))


def json_lines_handler(stream: IO[str] | None = None, level: int = logging.NOTSET, *,
                       static: Mapping[str, Any] | None = None) -> logging.Handler:
    """A stream handler (default stderr) writing JSON lines, with correlation ids stamped."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(JsonLinesFormatter(static=static))
    handler.addFilter(CorrelationFilter())
    return handler


__all__ = [
    "AUDIT_EXTRA",
    "CorrelationFilter",
    "EventSink",
    "JsonLinesFormatter",
    "LedgerHandler",
    "iso_utc",
    "json_lines_handler",
    "record_correlation_id",
    "severity_for",
]
