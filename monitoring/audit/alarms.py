"""The alarms of the audit ledger: what a startup or continuous check can raise.

Kept in a module of their own (re-exported by :mod:`monitoring.audit.recovery`) because the
writer, the anchor service and the checks all raise them, and none of them should have to
import the others to do so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class AlarmKind(StrEnum):
    """What a startup or continuous check found."""

    ROLLBACK = "ROLLBACK"
    """Someone outside the store (sidecar, anchor) holds a bigger checkpoint than the store."""
    FORK = "FORK"
    """Two signed checkpoints of this origin disagree (same size, or not consistent)."""
    MISSING_LOG = "MISSING_LOG"
    """Anchors or the sidecar hold checkpoints of a log whose store is gone."""
    TAMPERED = "TAMPERED"
    """A checkpoint of this origin does not verify (signature, key window, stored tree)."""
    UNANCHORED = "UNANCHORED"
    """The newest checkpoint has gone unanchored longer than the configured age."""
    SIDECAR_CORRUPT = "SIDECAR_CORRUPT"
    """A sidecar line is neither a valid signed record nor a torn final write."""


@dataclass(frozen=True)
class Alarm:
    """One alarm; ``evidence`` holds the conflicting notes, sizes and roots as text."""

    kind: AlarmKind
    message: str
    evidence: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"
