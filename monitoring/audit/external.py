"""Compare the store with the checkpoints kept outside it: the sidecar file and the anchors.

The store alone can be rolled back, truncated and continued, or replaced by anyone who can
write its file; only a signed checkpoint held elsewhere exposes that. Each foreign checkpoint
(a sidecar line, an anchor's newest note) is first verified (signature under a key of the
ledger's key history, valid for its size, origin pinned), then compared with the store:

* larger than the store's newest checkpoint: the store lost entries -> ROLLBACK;
* same size as a stored checkpoint (or a size the store's tree covers) but another root:
  two versions of the log exist -> FORK (the evidence holds both notes, like sumdb does);
* a sidecar line that is neither a valid signed record nor a cut-short write of the store's
  next checkpoint -> SIDECAR_CORRUPT.

The startup check (recovery.py) and the verifiers (verify.py) share these rules; the startup
check looks at the sidecar's newest line, full verification at every line. A checkpoint an
operator acknowledged (recovery.acknowledge: its size and root are in a signed
``ledger.alarm_acknowledged`` event) no longer raises an alarm.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.errors import AuditError
from monitoring.audit.keys import KeyHistory
from monitoring.audit.note import Checkpoint, open_checkpoint
from monitoring.audit.sidecar import Sidecar, SidecarError, SidecarScan
from monitoring.audit.storage import StoredCheckpoint

if TYPE_CHECKING:
    from monitoring.audit.anchors import Anchor


def b64(data: bytes) -> str:
    """Standard base64 text (how checkpoints show roots)."""
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class StoreView:
    """What the comparisons need to know about the store.

    ``root_of(size)`` is the root of the store's first ``size`` entries (from its stored tree
    at startup, recomputed from the envelopes by full verification); it raises
    :class:`AuditError` when the store cannot tell. ``sizes``, when given, lists every
    stored checkpoint size, so that every sidecar line can be matched against the store.
    """

    origin: str
    history: KeyHistory
    latest: StoredCheckpoint | None
    checkpoint_at: Callable[[int], StoredCheckpoint | None]
    checkpoint_after: Callable[[int], StoredCheckpoint | None]
    root_of: Callable[[int], bytes]
    acknowledged: frozenset[tuple[int, bytes]] = frozenset()
    sizes: Sequence[int] | None = None


def open_signed(view: StoreView, note: str) -> Checkpoint:
    """The checkpoint of ``note`` after checking origin, signature and key window.

    Raises :class:`AuditError` (NoteError or VerifyFailure) saying what failed.
    """
    cp, signers = open_checkpoint(note, view.history.verifiers, view.origin)
    view.history.check_any(signers, cp.size)
    return cp


def sidecar_line(size: int, root: bytes, note: str) -> bytes:
    """The exact bytes :meth:`Sidecar.append` writes for a checkpoint (newline included).

    Needed to tell a torn final line (a prefix of the line being written when the writer
    died) from a damaged one; a test checks that it matches the sidecar's own writer.
    """
    line = json.dumps({"size": size, "root": b64(root), "note": note}, separators=(",", ":"),
                      ensure_ascii=False)
    return (line + "\n").encode("utf-8")


def compare_foreign(view: StoreView, cp: Checkpoint, note: str, source: str) -> Alarm | None:
    """ROLLBACK or FORK when a verified foreign checkpoint disagrees with the store."""
    if (cp.size, cp.root) in view.acknowledged:
        return None
    latest = view.latest
    store_size = latest.size if latest else 0
    evidence = {"source": source, "foreign_size": str(cp.size), "foreign_root": b64(cp.root),
                "foreign_note": note, "store_size": str(store_size),
                "store_note": latest.note if latest else ""}
    if cp.size > store_size:
        return Alarm(AlarmKind.ROLLBACK,
                     f"{source} holds a signed checkpoint of size {cp.size}, but the store's "
                     f"newest is size {store_size}: the store lost entries {store_size}.."
                     f"{cp.size - 1} (rolled back, truncated or restored from an older copy)",
                     evidence)
    stored = view.checkpoint_at(cp.size)
    if stored is not None:
        root, what = stored.root, "the store's checkpoint"
        evidence["store_checkpoint_note"] = stored.note
    else:
        try:
            root = view.root_of(cp.size)
        except AuditError as exc:
            return Alarm(AlarmKind.TAMPERED,
                         f"{source} holds a checkpoint of size {cp.size} and the store cannot "
                         f"compute its root at that size: {exc}", evidence)
        what = "the root of the store's tree"
    evidence["store_root"] = b64(root)
    if root != cp.root:
        return Alarm(AlarmKind.FORK,
                     f"{source} holds a signed checkpoint of size {cp.size} with root "
                     f"{b64(cp.root)}, but {what} at that size is {b64(root)}: two versions "
                     "of this log exist (truncated and continued, or rewritten)", evidence)
    return None


def check_sidecar(view: StoreView, scan: SidecarScan, path: Path, *,
                  every: bool = False) -> list[Alarm]:
    """Alarms about the sidecar: its newest line (or ``every`` line) against the store."""
    alarms = [Alarm(AlarmKind.SIDECAR_CORRUPT, f"sidecar line is not a checkpoint record: {e}",
                    {"sidecar": str(path)}) for e in scan.errors]
    records = scan.records
    previous = 0
    for rec in records:
        if rec.size <= previous:
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT,
                                f"{path}:{rec.line}: size {rec.size} does not grow past the "
                                f"previous line's size {previous}", {"sidecar": str(path)}))
        previous = max(previous, rec.size)
    for rec in records if every else records[-1:]:
        where = f"the sidecar ({path}:{rec.line})"
        try:
            cp = open_signed(view, rec.note)
        except AuditError as exc:
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT,
                                f"{where}: its checkpoint does not verify under the store's key "
                                f"history ({exc}): the sidecar was altered, or the store was "
                                "replaced or re-signed", {"sidecar_note": rec.note}))
            continue
        if cp.size != rec.size or cp.root != rec.root:
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT,
                                f"{where}: its size or root field disagrees with its signed "
                                "note", {"sidecar_note": rec.note}))
            continue
        alarm = compare_foreign(view, cp, rec.note, where)
        if alarm is not None:
            alarms.append(alarm)
        elif every and view.checkpoint_at(cp.size) is None:
            alarms.append(Alarm(AlarmKind.TAMPERED,
                                f"{where} holds the signed checkpoint of size {cp.size}, which "
                                "the store lacks (its row was deleted)",
                                {"sidecar_note": rec.note}))
    if every and view.sizes is not None:
        held = {rec.size for rec in records}
        last = records[-1].size if records else 0
        lost = [s for s in view.sizes if s <= last and s not in held]
        if lost:
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT,
                                f"{path}: lacks the store's checkpoints of size "
                                f"{_some(lost)} (lines were removed)", {"sidecar": str(path)}))
    if scan.torn is not None:
        last = records[-1].size if records else 0
        nxt = view.checkpoint_after(last)
        torn = scan.torn.encode("utf-8")
        if nxt is None or not sidecar_line(nxt.size, nxt.root, nxt.note).startswith(torn):
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT,
                                f"{path}: the final line (no newline) is neither a record nor "
                                "a cut-short write of the store's next checkpoint",
                                {"sidecar": str(path), "torn_line": scan.torn[:200]}))
    return alarms


def anchor_latest(anchor: Anchor, origin: str) -> str | None:
    """The newest note ``anchor`` holds for ``origin``.

    Anchors that hold several logs take the origin as an argument; the protocol's
    ``latest()`` takes none.
    """
    latest: Callable[..., str | None] = anchor.latest
    try:
        takes_origin = "origin" in inspect.signature(latest).parameters
    except (TypeError, ValueError):
        takes_origin = False
    return latest(origin=origin) if takes_origin else latest()


def check_anchors(view: StoreView, anchors: Sequence[Anchor]) -> tuple[list[Alarm], list[str]]:
    """Alarms about each anchor's newest checkpoint, and warnings (unreachable anchors)."""
    alarms: list[Alarm] = []
    warnings: list[str] = []
    for anchor in anchors:
        name = f"anchor {getattr(anchor, 'name', type(anchor).__name__)}"
        try:
            note = anchor_latest(anchor, view.origin)
        except AuditError as exc:
            warnings.append(f"{name}: cannot read its newest checkpoint: {exc}")
            continue
        if note is None:
            warnings.append(f"{name}: holds no checkpoint of {view.origin} (or is unreachable)")
            continue
        try:
            cp = open_signed(view, note)
        except AuditError as exc:
            alarm = _unverified(view, note, name, exc)
            if alarm is not None:
                alarms.append(alarm)
            continue
        alarm = compare_foreign(view, cp, note, name)
        if alarm is not None:
            alarms.append(alarm)
    return alarms, warnings


def _unverified(view: StoreView, note: str, source: str, error: AuditError) -> Alarm | None:
    """FORK for a foreign checkpoint of this origin that no key of the store's history signed.

    Either the holder was given a forged note, or the store's key history was replaced (a
    re-created ledger under the same origin): two incompatible versions of the log exist.
    Silenced like any other once an operator acknowledged its size and root.
    """
    evidence = {"source": source, "foreign_note": note}
    with contextlib.suppress(AuditError):
        cp = Checkpoint.parse(note[:note.find("\n\n") + 1])
        if (cp.size, cp.root) in view.acknowledged:
            return None
        evidence |= {"foreign_size": str(cp.size), "foreign_root": b64(cp.root)}
    return Alarm(AlarmKind.FORK, f"{source} holds a checkpoint for this origin that does not "
                 f"verify under the store's key history ({error}): the store was re-created "
                 "or re-signed, or the holder was given a forged note", evidence)


@dataclass
class _Found:
    origins: list[str] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)


def missing_log_alarms(scan: SidecarScan, path: Path, anchors: Sequence[Anchor]) -> list[Alarm]:
    """MISSING_LOG when the store holds no ledger but the sidecar or an anchor holds one.

    With no store there is no origin to ask about, so an anchor is asked which logs it holds
    (``origins()``; an anchor without it is asked for its only log's newest note).
    """
    found = _Found()
    if scan.records:
        note = scan.records[-1].note
        found.origins.append(note.split("\n", 1)[0])
        found.evidence["sidecar_note"] = note
    for anchor in anchors:
        name = f"anchor {getattr(anchor, 'name', type(anchor).__name__)}"
        origins = getattr(anchor, "origins", None)
        try:
            if origins is not None:
                held: list[str] = list(origins())
            else:
                newest = anchor.latest()
                held = [newest.split("\n", 1)[0]] if newest else []
        except AuditError:
            continue
        if held:
            found.origins.extend(held)
            found.evidence[name] = ", ".join(held)
    if not found.origins:
        return []
    logs = ", ".join(dict.fromkeys(found.origins))
    where = ["the sidecar " + str(path)] if scan.records else []
    where += [k for k in found.evidence if k.startswith("anchor ")]
    return [Alarm(AlarmKind.MISSING_LOG,
                  f"the store holds no audit ledger, but {' and '.join(where)} hold checkpoints "
                  f"of {logs}: the ledger's store was deleted or replaced", found.evidence)]


class FixedAnchor:
    """An anchor's newest note, read once (an :class:`Anchor` that only answers ``latest``)."""

    def __init__(self, name: str, note: str | None, error: AuditError | None) -> None:
        self.name = name
        self.note = note
        self.error = error

    def latest(self) -> str | None:
        if self.error is not None:
            raise self.error
        return self.note

    def publish(self, note: str, cp: Checkpoint, proof_from: Callable[[int], list[bytes]]
                ) -> None:
        raise AuditError("a verifier does not publish checkpoints")


@dataclass
class Outside:
    """The checkpoints kept outside the store, read *before* the store's snapshot.

    The writer commits to the store before it appends to the sidecar, and anchors get a
    checkpoint only after that, so whatever was read first is in a snapshot taken after it;
    read the other way round, a live ledger would look rolled back.
    """

    scan: SidecarScan
    sidecar: Path | None
    anchors: list[FixedAnchor]
    alarms: list[Alarm]
    """An unreadable sidecar file."""


def read_outside(sidecar: Sidecar | None, anchors: Sequence[Anchor], origin: str) -> Outside:
    """The sidecar's lines and every anchor's newest note for ``origin``."""
    scan, alarms = SidecarScan(), []
    if sidecar is not None:
        try:
            scan = sidecar.scan()
        except SidecarError as exc:
            alarms.append(Alarm(AlarmKind.SIDECAR_CORRUPT, str(exc)))
    fixed: list[FixedAnchor] = []
    for anchor in anchors:
        name = f"{getattr(anchor, 'name', type(anchor).__name__)}"
        try:
            fixed.append(FixedAnchor(name, anchor_latest(anchor, origin), None))
        except AuditError as exc:
            fixed.append(FixedAnchor(name, None, exc))
    return Outside(scan, sidecar.path if sidecar is not None else None, fixed, alarms)


def _some(sizes: Sequence[int], limit: int = 5) -> str:
    shown = ", ".join(str(s) for s in sizes[:limit])
    return shown + (f" and {len(sizes) - limit} more" if len(sizes) > limit else "")


def describe(alarm: Alarm) -> dict[str, Any]:
    """An alarm as plain JSON-able data."""
    return {"kind": str(alarm.kind), "message": alarm.message, "evidence": dict(alarm.evidence)}
