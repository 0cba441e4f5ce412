"""Verification of a stored audit ledger: quick (the newest checkpoint) and full (everything).

Full verification trusts nothing in the store but the bytes of the envelopes and the keys of
the ledger's key history. It recomputes every leaf hash from the envelope bytes (a stored leaf
is used only for an entry whose payload a signed retention record removed), rebuilds the whole
Merkle tree, and checks that the root at the size of *every* stored checkpoint equals the root
that checkpoint signs, under a key valid for that size (key windows from the genesis and
``key.rotate`` events: a newer key re-signing old sizes fails, catalogue T25). Consistency
between consecutive checkpoints needs no separate proof here: all roots come from one tree
built from one sequence of leaves, so every checkpoint that verifies is a prefix of every
later one.

Around that, row by row and vectorised in DuckDB (verify_rows.py): each envelope's seq, origin
and timestamp against its row, contiguous seqs from 0, non-decreasing timestamps, the
unverified search columns against the envelope, sealed personal data against its commitment;
the stored tree nodes against their children; ``audit_meta`` (origin, frontier) against the
tree; removed payloads against signed retention records (retention.py's rule) and missing
sealed data against ``gdpr.erasure`` records; and the sidecar and the anchors against the
store (external.py). Entries after the newest checkpoint are reported as not covered.

The report names the first bad seq: the lowest seq that a row check proves bad, or, when only
a root disagrees, the first seq of the smallest range ``[P, S)`` between the last checkpoint
that verified (size P) and the first that did not (size S): the Merkle root cannot say which
entry of a batch changed, so ``bad_range`` says so.

Quick verification checks the newest checkpoint only: its signature and key window, its root
recomputed from the stored tree nodes (O(log n) reads), the frontier, the sidecar's newest
line and every anchor; it is what the startup check runs (recovery.py).

This module holds the entry points; the full run is in verify_full.py, the key history in
verify_keys.py, the report in verify_report.py, the DuckDB queries in verify_rows.py and the
comparisons with the sidecar and the anchors in external.py. The sidecar and the anchors are
always read *before* the store's snapshot is taken (external.Outside), so a live ledger that
commits meanwhile never looks rolled back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.errors import AuditError
from monitoring.audit.external import (
    Outside,
    StoreView,
    b64,
    check_anchors,
    check_sidecar,
    open_signed,
    read_outside,
)
from monitoring.audit.keys import KeyHistory
from monitoring.audit.merkle import root_at
from monitoring.audit.note import Checkpoint
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import LedgerStorage, StoredCheckpoint
from monitoring.audit.verify_full import CHUNK, FullRun, Progress
from monitoring.audit.verify_keys import (
    KeyEvents,
    acknowledged,
    history_from_events,
    key_history,
)
from monitoring.audit.verify_report import Finding, Report, alarm_finding, make_report
from monitoring.audit.verify_rows import release, snapshot

if TYPE_CHECKING:
    from monitoring.audit.anchors import Anchor

__all__ = ["CHUNK", "Finding", "HeadCheck", "KeyEvents", "Progress", "Report",
           "StoreUnavailable", "check_head", "history_from_events", "key_history",
           "open_read_only", "run_verify", "verify_full", "verify_quick"]


# --------------------------------------------------------------------------- quick


@dataclass
class HeadCheck:
    """The store's newest checkpoint checked against its own tree and keys."""

    alarms: list[Alarm] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    history: KeyHistory | None = None


def check_head(storage: LedgerStorage, sidecar: Sidecar | None, anchors: Sequence[Anchor],
               history: KeyHistory | None, outside: Outside | None = None) -> HeadCheck:
    """The quick checks (startup and ``verify`` without ``--full``) as alarms.

    ``outside`` is the sidecar and anchors already read (before a snapshot of a live store);
    by default they are read here.
    """
    out = HeadCheck()
    origin = storage.origin
    if outside is None:
        outside = read_outside(sidecar, anchors, origin)
    if history is None:
        try:
            history = key_history(storage)
        except AuditError as exc:
            out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the ledger's key history cannot be "
                                    f"established: {exc}", {"origin": origin}))
            return out
    out.history = history
    latest = storage.latest_checkpoint()
    view = StoreView(origin, history, latest, storage.checkpoint,
                     lambda s: _after(storage, s), lambda s: root_at(storage, s))
    size = storage.size()
    if latest is None:
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the store holds {size} entries but no "
                                "signed checkpoint"))
        return out
    evidence = {"store_note": latest.note}
    try:
        cp = open_signed(view, latest.note)
    except AuditError as exc:
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the store's newest checkpoint (size "
                                f"{latest.size}) does not verify: {exc}", evidence))
        return out
    if (cp.size, cp.root) != (latest.size, latest.root):
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the store's newest checkpoint row (size "
                                f"{latest.size}) disagrees with its signed note", evidence))
        return out
    out.checkpoint = cp
    try:
        root = root_at(storage, cp.size)
    except AuditError as exc:
        root = b""
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the store's tree cannot give the root at "
                                f"size {cp.size}: {exc}", evidence))
    if root and root != cp.root:
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"the store's tree gives root {b64(root)} "
                                f"at size {cp.size}, its signed checkpoint says {b64(cp.root)}: "
                                "entries or tree nodes were changed", evidence))
    if size != cp.size:
        what = ("are not covered by any signed checkpoint" if size > cp.size
                else "are missing below the newest checkpoint")
        lo, hi = sorted((size, cp.size))
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"entries {lo}..{hi - 1} {what}",
                                evidence))
    try:
        frontier = storage.frontier()
        if frontier.size != cp.size or frontier.root() != cp.root:
            out.alarms.append(Alarm(AlarmKind.TAMPERED, "audit_meta's frontier (size "
                                    f"{frontier.size}) does not give the signed root",
                                    evidence))
    except AuditError as exc:
        out.alarms.append(Alarm(AlarmKind.TAMPERED, f"audit_meta's frontier: {exc}", evidence))
    view = StoreView(origin, history, latest, storage.checkpoint,
                     lambda s: _after(storage, s), lambda s: root_at(storage, s),
                     acknowledged(storage, cp))
    out.alarms += outside.alarms
    if outside.sidecar is not None:
        out.alarms += check_sidecar(view, outside.scan, outside.sidecar)
    anchored, warnings = check_anchors(view, outside.anchors)
    out.alarms += anchored
    out.warnings += warnings
    return out


def _after(storage: LedgerStorage, size: int) -> StoredCheckpoint | None:
    """The stored checkpoint just above ``size`` (only needed for a torn sidecar line)."""
    for cp in storage.checkpoints():
        if cp.size > size:
            return cp
    return None


def verify_quick(storage: LedgerStorage, sidecar: Sidecar | None,
                 anchors: Sequence[Anchor] = (), history: KeyHistory | None = None) -> Report:
    """Check the newest checkpoint, the stored tree under it, the sidecar and the anchors."""
    started = time.perf_counter()
    outside = read_outside(sidecar, anchors, storage.origin)
    cur, snap = snapshot(storage)
    try:
        head = check_head(snap, sidecar, anchors, history, outside)
        size = snap.size()
    finally:
        release(cur)
    findings = [alarm_finding(a) for a in head.alarms]
    newest = head.checkpoint.size if head.checkpoint else 0
    return make_report(findings, uncovered=max(0, size - newest), entries=size,
                       checkpoints=1 if head.checkpoint else 0,
                       seconds=time.perf_counter() - started, mode="quick",
                       warnings=head.warnings, alarms=head.alarms, origin=storage.origin,
                       size=newest)


# --------------------------------------------------------------------------- full


def verify_full(storage: LedgerStorage, sidecar: Sidecar | None,
                anchors: Sequence[Anchor] = (), history: KeyHistory | None = None,
                progress: Progress | None = None) -> Report:
    """Verify everything the store holds (see the module docstring).

    Problems in the data never raise: they all end up in the report.
    """
    started = time.perf_counter()
    outside = read_outside(sidecar, anchors, storage.origin)
    cur, snap = snapshot(storage)
    try:
        run = FullRun(snap, cur, outside, history, progress)
        run.run()
    finally:
        release(cur)
    return make_report(run.findings, uncovered=run.uncovered, entries=run.size,
                       checkpoints=len(run.checkpoints), seconds=time.perf_counter() - started,
                       mode="full", warnings=run.warnings, alarms=run.alarms, pruned=run.pruned,
                       erased=run.erased, origin=snap.origin,
                       size=run.checkpoints[-1].size if run.checkpoints else 0)


# --------------------------------------------------------------------------- a store file


class StoreUnavailable(AuditError):
    """The store cannot be read: missing, open for writing elsewhere, or holding no ledger."""


@contextlib.contextmanager
def open_read_only(db: Path) -> Iterator[LedgerStorage]:
    """The ledger in the DuckDB file ``db``, through a read-only connection.

    Verification needs no key and no writer; DuckDB refuses a second process while the
    engine holds the file open for writing, and the message says so.
    """
    import duckdb

    if not db.exists():
        raise StoreUnavailable(f"{db}: no such store")
    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreUnavailable(f"{db}: the store is open for writing in another process "
                                   "(the engine?); stop it, or verify a copy") from None
        raise StoreUnavailable(f"{db}: cannot open the store: {text}") from None
    try:
        if not LedgerStorage.exists(conn):
            raise StoreUnavailable(f"{db}: this store holds no audit ledger")
        yield LedgerStorage(conn)
    finally:
        conn.close()


def run_verify(db: Path, *, full: bool = False, sidecar: Path | None = None,
               anchors: Sequence[Anchor] = (), history: KeyHistory | None = None,
               progress: Progress | None = None, key_path: Path | None = None,
               kek_path: Path | None = None) -> Report:
    """Verify the ledger in the store file ``db`` (quick, or ``full``) with its sidecar.

    ``key_path`` and ``kek_path`` are accepted so that callers can pass the options they open
    a ledger with; verification needs neither key.
    """
    from monitoring.audit.paths import ledger_paths

    path = ledger_paths(db, sidecar=sidecar).sidecar
    with open_read_only(db) as storage:
        if full:
            return verify_full(storage, Sidecar(path), anchors, history, progress)
        return verify_quick(storage, Sidecar(path), anchors, history)
