"""Startup checks of the audit ledger (rollback, fork, missing log) and their acknowledgement.

A ledger is only as trustworthy as the newest checkpoint someone outside the store still
holds. On every open (:meth:`Ledger.open`) the store's newest signed checkpoint is checked
against its own tree and keys, then compared with the sidecar file and with each external
anchor (§8.5 of the design):

* same size and root: fine; the store ahead of the sidecar: a crash between commit and
  sidecar append (the ledger copies the missing checkpoints into the sidecar);
* the sidecar or an anchor ahead of the store: ROLLBACK; the same size with another root, or
  an anchored root the store's tree does not reproduce: FORK (evidence: both notes);
* no store but a sidecar or an anchor holding checkpoints: MISSING_LOG;
* the store's own newest checkpoint not verifying: TAMPERED; a damaged sidecar line:
  SIDECAR_CORRUPT.

Any of these stops the ledger from signing until an operator looks and runs
:func:`acknowledge` (``monitoring audit acknowledge --reason ...``): the current sidecar is
kept as ``<sidecar>.incarnation-N``, a fresh one is written from the store's checkpoints, and
a signed ``security``/``ledger.alarm_acknowledged`` event records the alarms, the reason and
the foreign checkpoints (size, root) that are accepted as belonging to an abandoned
incarnation, so they raise no alarm again. Nothing is deleted: the old sidecar and the
anchors keep their evidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.errors import AuditError
from monitoring.audit.external import missing_log_alarms
from monitoring.audit.fsutil import fsync_dir
from monitoring.audit.keys import KeyHistory
from monitoring.audit.sidecar import Sidecar, SidecarError
from monitoring.audit.storage import LedgerStorage
from monitoring.audit.verify import check_head, key_history

if TYPE_CHECKING:
    from monitoring.audit.anchors import Anchor
    from monitoring.audit.ledger import Appended, Ledger

__all__ = ["Acknowledgement", "Alarm", "AlarmKind", "acknowledge", "key_history",
           "startup_check"]

ACK_CATEGORY = "security"
ACK_ACTION = "ledger.alarm_acknowledged"
INCARNATION = ".incarnation-"
MAX_MESSAGE = 500
"""Characters of an alarm message kept in the acknowledgement event."""


def startup_check(storage: LedgerStorage | None, sidecar: Sidecar,
                  anchors: Sequence[Anchor] = (),
                  verifiers: KeyHistory | None = None) -> list[Alarm]:
    """The alarms that must stop a ledger from signing (empty when all is well).

    ``storage`` is None when the store holds no ledger tables; ``verifiers`` is the key
    history when the caller already derived it (else it is derived and authenticated here).
    Unreachable anchors raise no alarm here (the anchor service reports UNANCHORED).
    """
    if storage is None:
        try:
            scan = sidecar.scan()
        except SidecarError as exc:
            return [Alarm(AlarmKind.SIDECAR_CORRUPT, str(exc))]
        return missing_log_alarms(scan, sidecar.path, anchors)
    return check_head(storage, sidecar, anchors, verifiers).alarms


@dataclass
class Acknowledgement:
    """What :func:`acknowledge` did."""

    alarms: list[Alarm] = field(default_factory=list)
    """The alarms acknowledged (empty: there was nothing to acknowledge)."""
    incarnation: int = 0
    """The number of the new incarnation (1 for the first acknowledgement)."""
    previous_sidecar: Path | None = None
    """Where the sidecar of the previous incarnation was moved."""
    event: Appended | None = None
    """The ``ledger.alarm_acknowledged`` event."""


def current_alarms(db: Path, sidecar: Path, anchors: Sequence[Anchor] = ()) -> list[Alarm]:
    """The startup alarms of the ledger in ``db``, read without opening it for writing."""
    storage: LedgerStorage | None = None
    conn: duckdb.DuckDBPyConnection | None = None
    try:
        if db.exists():
            try:
                conn = duckdb.connect(str(db), read_only=True)
            except duckdb.Error as exc:
                raise AuditError(f"{db}: cannot open the store read-only: {exc}") from None
            if LedgerStorage.exists(conn):
                storage = LedgerStorage(conn)
        return startup_check(storage, Sidecar(sidecar), anchors)
    finally:
        if conn is not None:
            conn.close()


def next_incarnation(sidecar: Path) -> int:
    """The first N such that ``<sidecar>.incarnation-N`` does not exist yet."""
    pattern = re.compile(re.escape(sidecar.name + INCARNATION) + r"(\d+)")
    taken = [int(m.group(1)) for p in sidecar.parent.glob(sidecar.name + INCARNATION + "*")
             if (m := pattern.fullmatch(p.name))]
    return max(taken, default=0) + 1


def acknowledge(db: Path, sidecar: Path, reason: str, open_ledger: Callable[[], Ledger],
                anchors: Sequence[Anchor] = ()) -> Acknowledgement:
    """Accept the current alarms of the ledger in ``db`` and start a new incarnation.

    ``open_ledger`` opens the ledger for writing with ``check=False`` (the caller knows the
    keys and paths). Raises :class:`AuditError` when the store itself does not verify (a
    TAMPERED store is restored from a backup, not acknowledged) or the policy refuses to
    record the acknowledgement.
    """
    reason = reason.strip()
    if not reason:
        raise AuditError("acknowledge: --reason is required (what the operator found and "
                         "decided)")
    alarms = [a for a in current_alarms(db, sidecar, anchors) if a.kind != AlarmKind.UNANCHORED]
    if not alarms:
        return Acknowledgement()
    tampered = [a for a in alarms if a.kind == AlarmKind.TAMPERED]
    if tampered:
        raise AuditError("acknowledge: the store itself does not verify, so it cannot start a "
                         f"new incarnation ({tampered[0].message}); restore it from a backup "
                         "that verifies")
    incarnation = next_incarnation(sidecar)
    moved: Path | None = None
    if sidecar.exists():
        moved = sidecar.with_name(sidecar.name + INCARNATION + str(incarnation))
        sidecar.rename(moved)
        fsync_dir(sidecar.parent)
    accepted = sorted({(int(a.evidence["foreign_size"]), a.evidence["foreign_root"])
                       for a in alarms if "foreign_size" in a.evidence
                       and "foreign_root" in a.evidence})
    details = {
        "reason": reason, "incarnation": incarnation,
        "previous_sidecar": str(moved) if moved else None,
        "alarms": [{"kind": str(a.kind), "message": a.message[:MAX_MESSAGE]} for a in alarms],
        "acknowledged": [{"size": size, "root": root} for size, root in accepted],
    }
    from monitoring.audit.envelope import AuditEvent

    event = AuditEvent(event_type=ACK_CATEGORY, action=ACK_ACTION, severity="critical",
                       resource="audit-ledger", outcome="success", details=details)
    with open_ledger() as ledger:
        appended = ledger.append(event)
    if not appended.recorded:
        raise AuditError("acknowledge: the audit policy did not record the acknowledgement "
                         f"({appended.reason or 'filtered'}); allow security/{ACK_ACTION}")
    return Acknowledgement(alarms, incarnation, moved, appended)
