"""Fault injection for the crash tests: the writer kills its own process at a named point.

The crash tests (catalogue T40) need a writer that dies at an exact step of the commit path,
the way a power cut or ``kill -9`` would, without any cleanup code running. Setting
``MONITORING_AUDIT_FAULT`` to one of :data:`FAULT_POINTS` makes :func:`fault_point` send
SIGKILL to the current process when the writer reaches that step. Unset, it costs one
dictionary lookup per batch.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from monitoring.audit.errors import AuditError

FAULT_ENV = "MONITORING_AUDIT_FAULT"

FAULT_POINTS = ("before_commit", "after_commit", "after_sidecar", "before_ack")
"""The steps of the commit path, in order: the batch is written but not committed; committed
to DuckDB but its checkpoint not in the sidecar; in the sidecar but not acknowledged; about to
resolve the producers' futures."""


def configured_fault(env: Mapping[str, str] = os.environ) -> str | None:
    """The fault point the environment asks for, checked, or None."""
    name = env.get(FAULT_ENV) or None
    if name is not None and name not in FAULT_POINTS:
        raise AuditError(f"{FAULT_ENV}={name!r}: expected one of {', '.join(FAULT_POINTS)}")
    return name


def fault_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) if ``MONITORING_AUDIT_FAULT`` names this point."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
