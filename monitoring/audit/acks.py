"""Acknowledgement futures: one lock per ledger, one wake-up per committed batch.

Every event a producer submits gets a :class:`concurrent.futures.Future`, so plain code can
block on it, asyncio can ``await`` it (``asyncio.wrap_future``) and ``concurrent.futures.wait``
works on it. A stock ``Future`` carries its own ``threading.Condition``: a dozen objects the
cyclic garbage collector must track for every event in flight, and a lock, a notify and a
wake-up per event when its batch commits. At tens of thousands of events per second that was
a large share of the ledger's cost (bench/ledger.py): the collector's full passes over the
in-flight futures stalled every thread for tens of milliseconds.

:class:`AckFuture` is a ``Future`` whose condition is shared by all the futures of one writer.
:func:`resolve_all` settles a whole batch under one acquisition of that condition and wakes
the waiting threads once. Because a thread waiting on the shared condition may be woken for
another future's batch, :meth:`AckFuture.result` and :meth:`AckFuture.exception` wait in a
loop until their own future is done (the stock methods wait once). Everything else is the
stock ``Future``: callbacks, cancellation, ``wait``/``as_completed`` waiters, ``repr``.

This relies on ``Future``'s documented-by-source internals (``_state``, ``_waiters``,
``_invoke_callbacks``), unchanged since Python 3.8; a test runs the public API against it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from concurrent.futures import CancelledError, Future
from concurrent.futures._base import (
    CANCELLED,
    CANCELLED_AND_NOTIFIED,
    FINISHED,
    PENDING,
)
from typing import Any

_DONE = (CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED)
_CANCELLED = (CANCELLED, CANCELLED_AND_NOTIFIED)


class AckFuture(Future[Any]):
    """A ``Future`` sharing ``condition`` with the other futures of its writer."""

    def __init__(self, condition: threading.Condition) -> None:  # no super(): no own lock
        self._condition = condition
        self._state = PENDING
        self._result: Any = None
        self._exception: BaseException | None = None

    # The stock Future gives every instance two lists; most acknowledgements never get a
    # ``concurrent.futures.wait`` waiter, and many no callback, so they are made on first use:
    # two objects fewer per event in flight for the garbage collector to track. (The class
    # attributes stand in until then; reading ``__dict__`` would make a dict per instance.)

    _waiter_list: list[Any] | None = None
    _callback_list: list[Any] | None = None

    @property
    def _waiters(self) -> list[Any]:
        found = self._waiter_list
        if found is None:
            found = self._waiter_list = []
        return found

    @_waiters.setter
    def _waiters(self, value: list[Any]) -> None:
        self._waiter_list = value

    @property
    def _done_callbacks(self) -> list[Any]:
        found = self._callback_list
        if found is None:
            found = self._callback_list = []
        return found

    def _invoke_callbacks(self) -> None:
        if self._callback_list:
            super()._invoke_callbacks()  # type: ignore[misc]

    def _wait_done(self, timeout: float | None) -> None:
        """Wait (holding the condition) until this future is done; raise as ``result`` does."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._state not in _DONE:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            self._condition.wait(remaining)
        if self._state in _CANCELLED:
            raise CancelledError()

    def result(self, timeout: float | None = None) -> Any:
        """The result, waiting up to ``timeout`` seconds (None: for ever)."""
        with self._condition:
            self._wait_done(timeout)
            error = self._exception
            if error is None:
                return self._result
        try:
            raise error
        finally:
            del error  # no reference cycle through the traceback

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The exception, waiting up to ``timeout`` seconds (None: for ever)."""
        with self._condition:
            self._wait_done(timeout)
            return self._exception


def resolve_all(condition: threading.Condition,
                outcomes: Iterable[tuple[AckFuture, Any, BaseException | None]]) -> None:
    """Settle many futures sharing ``condition``: ``(future, result, error)`` each.

    One acquisition of the condition and one ``notify_all`` for all of them; then their done
    callbacks run, in order, on the calling thread. A future that is already done keeps its
    outcome; one its producer cancelled is marked notified (so ``concurrent.futures.wait``
    returns for it) and gets nothing else.
    """
    settled: list[AckFuture] = []
    with condition:
        for future, result, error in outcomes:
            state = future._state
            if state in (FINISHED, CANCELLED_AND_NOTIFIED):
                continue
            waiters = future._waiter_list or ()
            if state == CANCELLED:
                future._state = CANCELLED_AND_NOTIFIED
                for waiter in waiters:
                    waiter.add_cancelled(future)
                continue
            future._state = FINISHED
            if error is None:
                future._result = result
                for waiter in waiters:
                    waiter.add_result(future)
            else:
                future._exception = error
                for waiter in waiters:
                    waiter.add_exception(future)
            settled.append(future)
        condition.notify_all()
    for future in settled:
        future._invoke_callbacks()


__all__ = ["AckFuture", "resolve_all"]
