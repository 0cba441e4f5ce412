"""The errors of the audit ledger: one family, so callers and the CLI catch one base class.

Every message says what went wrong and where (a field, a sequence number, a file), because
these errors reach operators directly: the CLI prints them without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from monitoring.audit.alarms import Alarm


class AuditError(Exception):
    """Base class of every error the audit package raises on purpose."""


class EventError(AuditError):
    """An audit event is malformed: ``field`` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


class ProofError(AuditError):
    """An inclusion or consistency proof does not verify."""


class NoteError(AuditError):
    """A signed note or checkpoint is malformed or carries no valid known signature."""


class SigningKeyError(AuditError):
    """A signing key or key-encryption key cannot be loaded, or is stored unsafely."""


class LedgerLockedError(AuditError):
    """Another process already writes this ledger."""


class ErasedError(AuditError):
    """The personal data asked for was erased (its subject key is destroyed)."""


class AnchorError(AuditError):
    """An external anchor refused or could not store a checkpoint."""


class VerifyFailure(AuditError):
    """Verification found a problem: ``seq`` is the first bad sequence number, if any."""

    def __init__(self, seq: int | None, reason: str) -> None:
        where = f"seq {seq}: " if seq is not None else ""
        super().__init__(where + reason)
        self.seq = seq
        self.reason = reason


class LedgerAlarmError(AuditError):
    """Opening the ledger raised security alarms (ROLLBACK, FORK, ...); nothing is signed."""

    def __init__(self, alarms: Sequence[Alarm]) -> None:
        text = "; ".join(f"{a.kind}: {a.message}" for a in alarms)
        super().__init__(f"audit ledger alarm: {text}")
        self.alarms = list(alarms)
