"""The engine's :data:`~monitoring.notify.model.AuditSink`: every decision into the ledger.

Components call the sink from the event loop; :meth:`Ledger.submit` queues the event for the
ledger's group-commit writer thread and returns a future, so the loop never waits for an
fsync. Nothing is dropped silently: an event the ledger refuses (a malformed field) or fails to
make durable (a stopped writer) is logged with the reason and counted, and the count is an
alarm on ``/metrics`` (``monitoring_audit_failures_total``) and in ``/api/v1/status``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

from monitoring.audit.errors import AuditError
from monitoring.audit.ledger import Appended, Ledger

log = logging.getLogger("monitoring.live.audit")


class LedgerSink:
    """Submits audit events to a ledger without blocking; counts and logs failures."""

    def __init__(self, ledger: Ledger, *,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.ledger = ledger
        self.submitted = 0
        self.failures = 0
        self.last_error: str | None = None
        self._on_failure = on_failure
        self._lock = threading.Lock()

    def __call__(self, event: Mapping[str, Any]) -> None:
        try:
            future = self.ledger.submit(dict(event))
        except (AuditError, ValueError, TypeError) as exc:
            self._failed(event, f"refused: {exc}")
            return
        self.submitted += 1
        future.add_done_callback(lambda f: self._done(event, f))

    def _done(self, event: Mapping[str, Any], future: Future[Appended]) -> None:
        exc = future.exception()
        if exc is not None:  # on the writer's thread
            self._failed(event, f"not recorded: {exc}")

    def _failed(self, event: Mapping[str, Any], reason: str) -> None:
        with self._lock:
            self.failures += 1
            self.last_error = f"{event.get('event_type')}/{event.get('action')}: {reason}"
        log.error("audit ledger: %s", self.last_error)
        if self._on_failure is not None:
            self._on_failure(self.last_error)

    def flush(self) -> None:
        """Wait until everything submitted so far is durable (engine stop)."""
        self.ledger.flush()
