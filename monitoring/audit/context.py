"""Correlation ids carried by :mod:`contextvars`, so nobody has to pass them by hand.

One id is shared by an alert, the notifications it caused and the audit events around it.

A ``ContextVar`` follows the flow of control: every asyncio task starts with a copy of the
context of the code that created it, so ids set before ``create_task``/``gather`` reach the task,
and a task that opens its own ``with correlation(...)`` does not disturb its siblings. Plain
threads do not inherit the context (Python 3.11): start them through :func:`propagate` (or
``contextvars.copy_context().run``) so the id goes with the work.

The ledger fills an event's missing ``correlation_id`` from :func:`current_correlation_id` when
the event is submitted, in the producer's context (not the writer thread's). Ids are random
(uuid4 hex by default) and must never be derived from personal data: they are stored in the
clear in every envelope.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

from monitoring.audit.errors import EventError

MAX_ID_LENGTH = 128
"""Longest correlation id accepted (ids from other systems, e.g. a W3C trace id, fit easily)."""

correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "monitoring_audit_correlation_id", default=None)
"""The correlation id of the code running now (None outside any :func:`correlation` block)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def new_correlation_id() -> str:
    """A fresh random id: 32 lowercase hex digits (uuid4)."""
    return uuid.uuid4().hex


def check_correlation_id(value: object, field: str = "correlation_id") -> str:
    """``value`` if it is a usable id: a non-empty string of printable characters, not too long.

    Raises :class:`EventError` naming ``field`` otherwise: the id is copied into every envelope
    and every JSON log line, so control characters and unbounded sizes are refused here.
    """
    if not isinstance(value, str):
        raise EventError(field, f"expected a string, got {type(value).__name__}")
    if not value:
        raise EventError(field, "must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise EventError(field, f"is {len(value)} characters long, at most {MAX_ID_LENGTH} "
                                "are allowed")
    if not value.isprintable():
        raise EventError(field, "must not contain control characters")
    return value


def current_correlation_id() -> str | None:
    """The id of the innermost :func:`correlation` block around the running code, if any."""
    return correlation_id.get()


@contextmanager
def correlation(id: str | None = None) -> Iterator[str]:
    """Run a block under correlation id ``id`` (a new random id when None); yields the id.

    Blocks nest: the inner id applies inside the inner block and the outer one is restored on
    leaving it, also when the block raises.
    """
    value = new_correlation_id() if id is None else check_correlation_id(id)
    token = correlation_id.set(value)
    try:
        yield value
    finally:
        correlation_id.reset(token)


@contextmanager
def ensure_correlation() -> Iterator[str]:
    """Join the correlation already in effect, or start a new one when there is none.

    For code that may run on its own or as part of a larger flow (a notification sent for an
    alert keeps the alert's id; one sent from the CLI gets its own).
    """
    with correlation(current_correlation_id()) as value:
        yield value


def propagate(func: Callable[_P, _R]) -> Callable[_P, _R]:
    """``func`` bound to a copy of the current context, for threads and executors.

    ``threading.Thread(target=propagate(work))`` or ``pool.submit(propagate(work), ...)`` runs
    ``work`` with the caller's correlation id (and any other context variables) as they were
    when ``propagate`` was called; changes ``work`` makes stay in its own copy.
    """
    ctx = contextvars.copy_context()

    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        # A fresh copy per call: one Context cannot be entered by two threads at once, and a
        # pool may run the same wrapped function concurrently.
        return ctx.copy().run(func, *args, **kwargs)

    return run


__all__ = [
    "MAX_ID_LENGTH",
    "check_correlation_id",
    "correlation",
    "correlation_id",
    "current_correlation_id",
    "ensure_correlation",
    "new_correlation_id",
    "propagate",
]
