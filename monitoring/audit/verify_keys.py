"""The ledger's key history and the operator's acknowledgements, read from its own entries.

Which key may sign which checkpoint sizes is not configuration: the genesis entry names the
first key and every ``key.rotate`` entry hands over to the next one. A key event counts only
when a checkpoint signed by the key it hands over from includes it, so somebody who can write
the store but holds no current key cannot slip a key of their own into the history. The
same holds for ``ledger.alarm_acknowledged`` entries, which silence alarms about the foreign
checkpoints an operator accepted (recovery.acknowledge).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitoring.audit.envelope import parse_envelope
from monitoring.audit.errors import AuditError, NoteError, VerifyFailure
from monitoring.audit.external import StoreView, open_signed
from monitoring.audit.keys import KeyHistory
from monitoring.audit.merkle import inclusion_proof, leaf_hash, root_at, verify_inclusion
from monitoring.audit.note import Checkpoint, NoteVerifier
from monitoring.audit.storage import LedgerStorage

GENESIS = ("system", "ledger.open")
ROTATE = ("system", "key.rotate")
ACKNOWLEDGED = ("security", "ledger.alarm_acknowledged")

@dataclass(frozen=True)
class KeyEvents:
    """The key history an entry sequence declares, before any checkpoint vouches for it."""

    history: KeyHistory
    rotations: list[int]
    """Seqs of the ``key.rotate`` events (the checkpoint of size seq + 1 must be signed by
    the old key and include the event)."""


def history_from_events(origin: str, events: Sequence[tuple[int, Mapping[str, Any]]]
                        ) -> KeyEvents:
    """The key history of parsed envelopes: entry 0 (``ledger.open``) then each rotation.

    Raises :class:`VerifyFailure` naming the seq of the first event that does not fit.
    """
    if not events or events[0][0] != 0:
        raise VerifyFailure(0, "the genesis entry (seq 0) is missing: no key to verify with")
    seq, genesis = events[0]
    if (genesis.get("category"), genesis.get("action")) != GENESIS:
        raise VerifyFailure(0, f"entry 0 is {genesis.get('category')}/{genesis.get('action')},"
                               " not the genesis event system/ledger.open")
    data = genesis.get("data") or {}
    if data.get("origin") != origin:
        raise VerifyFailure(0, f"the genesis entry names origin {data.get('origin')!r}, the "
                               f"ledger's origin is {origin!r}")
    first = _verifier(0, data.get("vkey"), origin, "vkey")
    history = KeyHistory.genesis(first)
    rotations: list[int] = []
    for seq, fields in events[1:]:
        if (fields.get("category"), fields.get("action")) != ROTATE:
            continue
        details = fields.get("data") or {}
        old = _verifier(seq, details.get("old_vkey"), origin, "old_vkey")
        if old != history.current:
            raise VerifyFailure(seq, f"the key rotation names old key {old.key_hex}, but the "
                                f"current key is {history.current.key_hex}")
        history.rotate(_verifier(seq, details.get("new_vkey"), origin, "new_vkey"), seq + 1)
        rotations.append(seq)
    return KeyEvents(history, rotations)


def _verifier(seq: int, vkey: object, origin: str, what: str) -> NoteVerifier:
    if not isinstance(vkey, str):
        raise VerifyFailure(seq, f"data.{what}: expected a verifier key, got {vkey!r:.60}")
    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise VerifyFailure(seq, f"data.{what}: {exc}") from None
    if verifier.name != origin:
        raise VerifyFailure(seq, f"data.{what}: the key is named {verifier.name!r}, not after "
                                 f"the ledger's origin {origin!r}")
    return verifier


def parsed_envelope(seq: int, envelope: bytes, leaf: bytes | None, origin: str) -> dict[str, Any]:
    """A stored envelope's fields, after checking its bytes against the leaf and the row."""
    if leaf is not None and leaf_hash(envelope) != leaf:
        raise VerifyFailure(seq, "the envelope's bytes do not match its leaf hash")
    try:
        fields = parse_envelope(envelope)
    except AuditError as exc:
        raise VerifyFailure(seq, f"the envelope is malformed: {exc}") from None
    if fields.get("seq") != seq or fields.get("origin") != origin:
        raise VerifyFailure(seq, f"the envelope is seq {fields.get('seq')!r} of "
                                 f"{fields.get('origin')!r}")
    return fields


def _included(storage: LedgerStorage, seq: int, envelope: bytes, cp: Checkpoint) -> None:
    """Check that ``envelope`` is entry ``seq`` of the signed checkpoint ``cp``."""
    try:
        proof = inclusion_proof(storage, seq, cp.size)
        verify_inclusion(leaf_hash(envelope), seq, cp.size, proof, cp.root)
    except AuditError as exc:
        raise VerifyFailure(seq, f"the entry is not included in the signed checkpoint of size "
                                 f"{cp.size}: {exc}") from None


def _view_history(storage: LedgerStorage, history: KeyHistory) -> StoreView:
    return StoreView(storage.origin, history, None, storage.checkpoint,
                     lambda _s: None, lambda s: root_at(storage, s))


def key_history(storage: LedgerStorage) -> KeyHistory:
    """The ledger's key history from its genesis and ``key.rotate`` events, authenticated.

    Each key event must be included in a checkpoint signed by the key it hands over from: the
    genesis entry in the first stored checkpoint (signed by the genesis key), each rotation at
    seq r in the checkpoint of size r + 1 (signed by the old key). So a rotation inserted by
    someone without the current key does not enter the history. Raises
    :class:`VerifyFailure` (a seq and a reason) when the events or checkpoints do not fit.
    """
    rows = storage.conn.execute(
        "SELECT seq, envelope, leaf FROM audit_entries WHERE envelope IS NOT NULL AND "
        "(seq = 0 OR action = 'key.rotate') ORDER BY seq").fetchall()
    envelopes = {int(s): bytes(e) for s, e, _ in rows}
    events = [(int(s), parsed_envelope(int(s), bytes(e), bytes(lf), storage.origin))
              for s, e, lf in rows]
    derived = history_from_events(storage.origin, events)
    history = derived.history
    view = _view_history(storage, history)
    first = storage.conn.execute(
        "SELECT min(size) FROM audit_checkpoints").fetchone()
    if not first or first[0] is None:
        raise VerifyFailure(None, "the store holds no signed checkpoint")
    for seq, size in [(0, int(first[0])), *[(r, r + 1) for r in derived.rotations]]:
        stored = storage.checkpoint(size)
        if stored is None:
            raise VerifyFailure(seq, f"no checkpoint of size {size} vouches for this key event")
        try:
            cp = open_signed(view, stored.note)
        except AuditError as exc:
            raise VerifyFailure(seq, f"the checkpoint of size {size} that must vouch for this "
                                     f"key event does not verify: {exc}") from None
        _included(storage, seq, envelopes[seq], cp)
    return history


def acknowledged(storage: LedgerStorage, cp: Checkpoint | None) -> frozenset[tuple[int, bytes]]:
    """The foreign checkpoints (size, root) an operator acknowledged in signed events.

    Only ``ledger.alarm_acknowledged`` events included in the verified checkpoint ``cp``
    count; anything else is ignored (and so still raises its alarm).
    """
    if cp is None:
        return frozenset()
    rows = storage.conn.execute(
        "SELECT seq, envelope, leaf FROM audit_entries WHERE envelope IS NOT NULL AND "
        "action = ? AND seq < ? ORDER BY seq", [ACKNOWLEDGED[1], cp.size]).fetchall()
    found: set[tuple[int, bytes]] = set()
    for seq, envelope, leaf in rows:
        try:
            fields = parsed_envelope(int(seq), bytes(envelope), bytes(leaf), storage.origin)
            _included(storage, int(seq), bytes(envelope), cp)
        except AuditError:
            continue
        found |= acknowledged_in(fields)
    return frozenset(found)


def acknowledged_in(fields: Mapping[str, Any]) -> set[tuple[int, bytes]]:
    """The (size, root) pairs an acknowledgement event's data lists."""
    if (fields.get("category"), fields.get("action")) != ACKNOWLEDGED:
        return set()
    out: set[tuple[int, bytes]] = set()
    for item in (fields.get("data") or {}).get("acknowledged") or []:
        try:
            out.add((int(item["size"]), base64.b64decode(item["root"], validate=True)))
        except (KeyError, TypeError, ValueError):
            continue
    return out
