"""LedgerHandler (records -> events, non-blocking) and JSON-lines formatting, with a fake sink."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from monitoring.audit.context import correlation
from monitoring.audit.envelope import AuditEvent
from monitoring.audit.errors import AuditError, EventError
from monitoring.audit.loghandler import (
    CorrelationFilter,
    JsonLinesFormatter,
    LedgerHandler,
    json_lines_handler,
    severity_for,
)


class FakeLedger:
    """Queues events; a test resolves the futures when it wants (the writer's job)."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.futures: list[Future[Any]] = []

    def submit(self, event: AuditEvent) -> Future[Any]:
        future: Future[Any] = Future()
        self.events.append(event)
        self.futures.append(future)
        return future

    def commit_all(self, error: BaseException | None = None) -> None:
        for f in self.futures:
            if not f.done():
                if error is None:
                    f.set_result(len(self.events))
                else:
                    f.set_exception(error)


def _record(name: str, msg: str, **attrs: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, logging.INFO, __file__, 1, msg, None, None)
    record.__dict__.update(attrs)
    return record


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("tests.audit.loghandler")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for h in list(log.handlers):
        log.removeHandler(h)


def test_record_becomes_a_system_event(logger: logging.Logger) -> None:
    sink = FakeLedger()
    logger.addHandler(LedgerHandler(sink))
    logger.warning("disk %s is %d%% full", "/var", 93)
    (event,) = sink.events
    assert event.event_type == "system"
    assert event.action == "tests.audit.loghandler"
    assert event.severity == "warning"
    assert event.details["message"] == "disk /var is 93% full"
    assert event.details["module"] == "test_audit_loghandler"
    assert isinstance(event.details["line"], int) and event.details["function"] == \
        "test_record_becomes_a_system_event"
    assert event.user_id is None and event.correlation_id is None


@pytest.mark.parametrize(("level", "severity"), [
    (logging.DEBUG, "debug"), (5, "debug"), (logging.INFO, "info"), (25, "notice"),
    (logging.WARNING, "warning"), (logging.ERROR, "error"), (logging.CRITICAL, "critical"),
    (60, "critical")])
def test_severity_from_level(level: int, severity: str) -> None:
    assert severity_for(level) == severity


def test_exception_text_and_correlation_id_are_recorded(logger: logging.Logger) -> None:
    sink = FakeLedger()
    logger.addHandler(LedgerHandler(sink))
    with correlation("alert-99"):
        try:
            raise ValueError("bad threshold")
        except ValueError:
            logger.exception("evaluation failed")
    (event,) = sink.events
    assert event.severity == "error"
    assert event.correlation_id == "alert-99"
    assert "ValueError: bad threshold" in event.details["exc"]
    assert "Traceback" in event.details["exc"]


def test_audit_extra_sets_event_fields_and_merges_details(logger: logging.Logger) -> None:
    sink = FakeLedger()
    logger.addHandler(LedgerHandler(sink))
    logger.info("login ok", extra={"audit": {"event_type": "authentication", "user_id": "alice",
                                             "outcome": "success", "details": {"mfa": True}}})
    (event,) = sink.events
    assert (event.event_type, event.user_id, event.outcome) == ("authentication", "alice",
                                                                "success")
    assert event.details["mfa"] is True and event.details["message"] == "login ok"
    assert event.data_subject == "alice"  # so the message is sealed, not in the clear


def test_bad_records_go_to_handle_error_not_the_caller(logger: logging.Logger,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    sink = FakeLedger()
    handler = LedgerHandler(sink)
    logger.addHandler(handler)
    logger.info("x", extra={"audit": {"timestamp": 1}})  # not an event field
    logger.info("y", extra={"audit": {"details": {"ratio": 0.5}}})  # floats are refused
    assert sink.events == []
    err = capsys.readouterr().err
    assert "extra.audit.timestamp" in err and "details.ratio" in err
    with pytest.raises(EventError, match=r"extra\.audit\.timestamp"):
        handler.event_for(_record("app", "x", audit={"timestamp": 1}))


def test_emit_does_not_wait_and_flush_waits_for_durability(logger: logging.Logger) -> None:
    sink = FakeLedger()
    handler = LedgerHandler(sink)
    logger.addHandler(handler)
    for i in range(5):
        logger.info("event %d", i)  # returns at once although nothing is durable yet
    assert handler.pending == 5
    flushed = threading.Event()
    def wait_for_flush() -> None:
        handler.flush()
        flushed.set()

    waiter = threading.Thread(target=wait_for_flush)
    waiter.start()
    assert not flushed.wait(0.2)  # flush is waiting for the writer
    sink.commit_all()
    assert flushed.wait(5)
    waiter.join()
    assert handler.pending == 0 and handler.failures == 0


def test_failed_events_are_counted(logger: logging.Logger) -> None:
    sink = FakeLedger()
    handler = LedgerHandler(sink)
    logger.addHandler(handler)
    logger.error("one")
    sink.commit_all(AuditError("the audit writer stopped"))
    handler.flush()
    assert handler.failures == 1 and isinstance(handler.last_error, AuditError)


def test_the_ledgers_own_loggers_and_reentrant_records_are_skipped() -> None:
    sink = FakeLedger()
    handler = LedgerHandler(sink)
    own = logging.getLogger("monitoring.audit.writer")
    handler.handle(_record(own.name, "x"))
    assert sink.events == []

    class Chatty(FakeLedger):
        def submit(self, event: AuditEvent) -> Future[Any]:
            handler2.handle(_record("app", "from inside"))
            return super().submit(event)

    chatty = Chatty()
    handler2 = LedgerHandler(chatty)
    handler2.handle(_record("app", "outer"))
    assert [e.details["message"] for e in chatty.events] == ["outer"]


def test_unknown_category_is_refused_at_construction() -> None:
    with pytest.raises(EventError, match="event_type"):
        LedgerHandler(FakeLedger(), category="nonsense")


# --------------------------------------------------------------------------- JSON lines


def test_json_lines_are_one_object_per_line_with_correlation(logger: logging.Logger) -> None:
    stream = io.StringIO()
    logger.addHandler(json_lines_handler(stream, static={"service": "monitor"}))
    with correlation("c-1"):
        logger.info("multi\nline \"quoted\" é", extra={"rule": "HighCPU", "ratio": 0.25,
                                                       "bad": float("nan"), "obj": object()})
    logger.warning("outside")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "multi\nline \"quoted\" é"
    assert first["correlation_id"] == "c-1" and second["correlation_id"] is None
    assert first["level"] == "info" and first["logger"] == "tests.audit.loghandler"
    assert first["rule"] == "HighCPU" and first["ratio"] == 0.25 and first["bad"] == "nan"
    assert first["obj"].startswith("<object object")
    assert first["service"] == "monitor"
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2026-01-02T03:04:05.123456Z")


def test_correlation_is_stamped_where_the_record_is_made() -> None:
    """Formatted later on another thread (a QueueHandler), the id still is the caller's."""
    record = _record("app", "queued")
    with correlation("at-source"):
        CorrelationFilter().filter(record)
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(
        json.loads(JsonLinesFormatter().format(record))))
    t.start()
    t.join()
    assert result["correlation_id"] == "at-source"


def test_exceptions_are_in_the_json_line() -> None:
    try:
        raise KeyError("k")
    except KeyError:
        import sys

        record = logging.makeLogRecord({"name": "app", "msg": "oops", "levelno": 40,
                                        "levelname": "ERROR", "exc_info": sys.exc_info()})
    line = json.loads(JsonLinesFormatter().format(record))
    assert "KeyError: 'k'" in line["exc"]
