"""The offline verifier: checks a receipt against the ledger's public key and nothing else.

Anyone holding a receipt (``monitoring audit receipt SEQ``) and the ledger's verifier key can
check, without the database, without DuckDB and without trusting whoever handed the receipt
over, that the entry in it is entry ``seq`` of the ledger under a checkpoint signed by the
ledger's key::

    python -m monitoring.audit.offline RECEIPT --vkey VKEY [--origin O] [--state FILE]

What is checked, in order: the receipt's syntax (strict, T23); the checkpoint's signature by a
known key (T21, T22) for the pinned origin (T31); the key's validity window when windows are
given (``VKEY@FROM-TO``, T25); that the presented entry is the proven one: the leaf hash is
recomputed from the envelope bytes (T27); the inclusion proof; that the envelope names the
same origin and seq. With ``--state`` (a JSON file of the newest checkpoint seen per origin)
a smaller checkpoint is a rollback (T26), a different root at the same size is equivocation
and both signed notes are printed as proof of misbehaviour (T20), and a larger checkpoint must
come with a consistency proof from the remembered one.

This module must not import DuckDB or anything that does (a test checks ``sys.modules``), so
it can be copied out with :mod:`note`, :mod:`keys`, :mod:`receipt`, :mod:`merkle` and
:mod:`errors` and run on an auditor's machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitoring.audit.errors import (
    AuditError,
    NoteError,
    ProofError,
    VerifyFailure,
)
from monitoring.audit.fsutil import write_atomic
from monitoring.audit.keys import KeyHistory, accepted_keys
from monitoring.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from monitoring.audit.note import NoteVerifier, b64decode_strict, b64encode
from monitoring.audit.receipt import Receipt, parse_receipt

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STATE_VERSION = 1


class MisbehaviourError(VerifyFailure):
    """Two validly signed checkpoints of one origin that cannot both be honest.

    ``kind`` is ``"equivocation"`` (same size, different roots) or ``"fork"`` (the newer one
    does not extend the older one). ``notes`` are both signed notes: together they prove that
    the log's key signed two incompatible histories.
    """

    def __init__(self, kind: str, reason: str, notes: tuple[str, str]) -> None:
        super().__init__(None, f"{kind}: {reason}")
        self.kind = kind
        self.notes = notes

    def evidence(self) -> str:
        """Both notes, ready to be handed to whoever audits the log's operator."""
        return f"--- signed checkpoint 1\n{self.notes[0]}--- signed checkpoint 2\n{self.notes[1]}"


@dataclass(frozen=True)
class VerifiedEntry:
    """A receipt that verified: the entry, its place in the ledger and who signed."""

    origin: str
    seq: int
    size: int
    root: bytes
    envelope: bytes
    event: dict[str, Any]
    signed_by: str
    """``name+keyid`` of the ledger key whose signature verified."""
    state_updated: bool = False


# --------------------------------------------------------------------------- state


@dataclass(frozen=True)
class Remembered:
    """The newest checkpoint a verifier has accepted for one origin."""

    size: int
    root: bytes
    note: str


def load_state(path: Path) -> dict[str, Remembered]:
    """The verifier state file: origin -> newest accepted checkpoint (empty if absent)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise AuditError(f"{path}: cannot read verifier state: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
        if doc.get("v") != STATE_VERSION or not isinstance(doc.get("checkpoints"), dict):
            raise ValueError(f"expected {{'v': {STATE_VERSION}, 'checkpoints': {{...}}}}")
        out: dict[str, Remembered] = {}
        for origin, item in doc["checkpoints"].items():
            size = item["size"]
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise ValueError(f"checkpoints.{origin}.size: expected a non-negative integer")
            root = b64decode_strict(item["root"], f"checkpoints.{origin}.root", 32)
            note = item["note"]
            if not isinstance(note, str):
                raise ValueError(f"checkpoints.{origin}.note: expected a string")
            out[origin] = Remembered(size, root, note)
        return out
    except KeyError as exc:
        raise AuditError(f"{path}: malformed verifier state: missing field {exc}") from None
    except (ValueError, TypeError, AttributeError, NoteError) as exc:
        raise AuditError(f"{path}: malformed verifier state: {exc}") from None


def save_state(path: Path, state: dict[str, Remembered]) -> None:
    """Replace the state file atomically (write, fsync, rename, fsync the folder)."""
    doc = {"v": STATE_VERSION, "checkpoints": {
        origin: {"size": r.size, "root": b64encode(r.root), "note": r.note}
        for origin, r in sorted(state.items())}}
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    write_atomic(path, text.encode("utf-8"), mode=0o600)


def check_against(remembered: Remembered | None, receipt: Receipt) -> bool:
    """Whether the receipt's (verified) checkpoint advances the remembered one.

    Raises :class:`VerifyFailure` on a rollback and :class:`MisbehaviourError` on an
    equivocation or a fork.
    """
    cp = receipt.checkpoint
    if remembered is None:
        return True
    if cp.size < remembered.size:
        raise VerifyFailure(None, f"rollback: checkpoint size {cp.size} is smaller than size "
                            f"{remembered.size}, which this verifier already saw for "
                            f"{cp.origin}")
    if cp.size == remembered.size:
        if cp.root != remembered.root:
            raise MisbehaviourError(
                "equivocation", f"two signed checkpoints of {cp.origin} at size {cp.size} with "
                f"different roots ({remembered.root.hex()[:16]}... and {cp.root.hex()[:16]}...)",
                (remembered.note, receipt.note))
        return False
    c = receipt.consistency
    if c is None or c.size != remembered.size:
        have = "none" if c is None else f"one from size {c.size}"
        raise VerifyFailure(None, f"checkpoint size {cp.size} is newer than size "
                            f"{remembered.size} this verifier remembers, and the receipt "
                            f"carries no consistency proof from {remembered.size} ({have}); "
                            "export it again with consistency from that size")
    try:
        verify_consistency(remembered.size, cp.size, remembered.root, cp.root, c.proof)
    except ProofError as exc:
        raise MisbehaviourError(
            "fork", f"checkpoint size {cp.size} does not extend the remembered size "
            f"{remembered.size} of {cp.origin}: {exc}", (remembered.note, receipt.note)) from None
    return True


# --------------------------------------------------------------------------- verification


def check_envelope(envelope: bytes, seq: int, origin: str) -> dict[str, Any]:
    """The envelope as a JSON object, if it names ``origin`` and ``seq``; else VerifyFailure."""
    try:
        event = json.loads(envelope.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise VerifyFailure(seq, "the envelope is not JSON") from None
    if not isinstance(event, dict):
        raise VerifyFailure(seq, "the envelope is not a JSON object")
    if event.get("origin") != origin:
        raise VerifyFailure(seq, f"the envelope names origin {event.get('origin')!r}, the "
                            f"checkpoint {origin!r}")
    found = event.get("seq")
    if found != seq or isinstance(found, bool):
        raise VerifyFailure(seq, f"the envelope names seq {found!r}, the receipt proves index "
                            f"{seq}")
    return event


def verify_receipt(text: str | bytes,
                   vkey: KeyHistory | NoteVerifier | str | Sequence[str | NoteVerifier],
                   origin: str | None = None, state: Path | None = None, *,
                   envelope: bytes | None = None) -> VerifiedEntry:
    """Verify a receipt; :class:`VerifyFailure` (or :class:`MisbehaviourError`) says why not.

    ``vkey`` is one verifier key or several (``VKEY@FROM-TO`` limits a key to a window of
    checkpoint sizes), verifiers, or a key history; ``origin`` pins the ledger (default: the
    first key's name, which is the origin); ``envelope``, if given, is the entry the caller
    holds and must be the receipt's.
    """
    keys = accepted_keys(vkey)
    try:
        receipt = parse_receipt(text)
    except NoteError as exc:
        raise VerifyFailure(None, f"malformed receipt: {exc}") from None
    pin = origin if origin is not None else keys.windows[0].verifier.name
    cp, signer = keys.open_checkpoint(receipt.note, pin)
    seq = receipt.index
    if envelope is not None and envelope != receipt.envelope:
        raise VerifyFailure(seq, "the receipt is for a different entry than the one presented "
                            f"(leaf {leaf_hash(receipt.envelope).hex()[:16]}..., presented "
                            f"{leaf_hash(envelope).hex()[:16]}...)")
    leaf = leaf_hash(receipt.envelope)
    try:
        verify_inclusion(leaf, seq, cp.size, receipt.proof, cp.root)
    except ProofError as exc:
        raise VerifyFailure(seq, "the envelope is not the entry the receipt proves (its leaf "
                            f"hash {leaf.hex()[:16]}... does not lead to the signed root): "
                            f"{exc}") from None
    event = check_envelope(receipt.envelope, seq, cp.origin)
    updated = False
    if state is not None:
        known = load_state(state)
        if check_against(known.get(cp.origin), receipt):
            known[cp.origin] = Remembered(cp.size, cp.root, receipt.note)
            save_state(state, known)
            updated = True
    return VerifiedEntry(cp.origin, seq, cp.size, cp.root, receipt.envelope, event,
                         signer.key_hex, updated)


def check_notes(note_a: str, note_b: str,
                verifiers: KeyHistory | NoteVerifier | str | Sequence[str | NoteVerifier],
                proof: Sequence[bytes] = ()) -> None:
    """Raise :class:`MisbehaviourError` if two signed checkpoints of one log disagree.

    Same size and different roots is equivocation; different sizes are checked with
    ``proof`` (a consistency proof from the smaller to the larger). Both notes must verify.
    """
    keys = accepted_keys(verifiers)
    a, _ = keys.open_checkpoint(note_a)
    b, _ = keys.open_checkpoint(note_b, a.origin)
    if a.size > b.size:
        a, b, note_a, note_b = b, a, note_b, note_a
    if a.size == b.size:
        if a.root != b.root:
            raise MisbehaviourError("equivocation", f"two signed checkpoints of {a.origin} at "
                                    f"size {a.size} with different roots", (note_a, note_b))
        return
    try:
        verify_consistency(a.size, b.size, a.root, b.root, proof)
    except ProofError as exc:
        raise MisbehaviourError("fork", f"size {b.size} does not extend size {a.size} of "
                                f"{a.origin}: {exc}", (note_a, note_b)) from None


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The verifier's flags (shared with ``monitoring audit verify-receipt``)."""
    parser.add_argument("receipt", metavar="RECEIPT", help="the receipt file ('-': stdin)")
    parser.add_argument("--vkey", action="append", required=True, metavar="VKEY",
                        help="the ledger's verifier key (NAME+KEYID+KEYDATA); repeat for "
                        "rotated keys, limiting each with @FROM-TO (checkpoint sizes)")
    parser.add_argument("--origin", help="the ledger origin to accept (default: the name of "
                        "the first key)")
    parser.add_argument("--state", metavar="FILE", help="JSON file of the newest checkpoint "
                        "seen; rejects rollbacks and forks, updated on success")
    parser.add_argument("--envelope", metavar="FILE",
                        help="the entry you hold; it must be the one the receipt proves")


def run(args: argparse.Namespace) -> int:
    """Verify as the flags say; print OK or the reason. Exit 0 ok, 1 failed, 2 unusable."""
    try:
        text = sys.stdin.buffer.read() if args.receipt == "-" else \
            Path(args.receipt).read_bytes()
        held = Path(args.envelope).read_bytes() if args.envelope else None
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        entry = verify_receipt(text, args.vkey, args.origin,
                               Path(args.state) if args.state else None, envelope=held)
    except MisbehaviourError as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        print("proof of misbehaviour (both checkpoints are validly signed; 1 is the one this "
              "verifier remembered, 2 the one in the receipt):", file=sys.stderr)
        print(exc.evidence(), file=sys.stderr, end="")
        return EXIT_FAILED
    except VerifyFailure as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except AuditError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    state = " state=updated" if entry.state_updated else ""
    print(f"OK seq={entry.seq} origin={entry.origin} size={entry.size} "
          f"key={entry.signed_by}{state}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitoring.audit.offline RECEIPT --vkey VKEY [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m monitoring.audit.offline",
        description="Check an audit ledger receipt offline against the ledger's public key.")
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
