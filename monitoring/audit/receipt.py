"""Receipts: one ledger entry with everything needed to check it offline (C2SP tlog-proof).

A receipt is a c2sp.org/tlog-proof@v1 text::

    c2sp.org/tlog-proof@v1
    extra <base64 of the envelope bytes [+ consistency material]>
    index <seq>
    <base64 inclusion proof hash>            (zero or more lines, leaf's sibling first)

    <the signed checkpoint note, verbatim>

The extra data is the entry's canonical envelope, so the receipt is self-contained: the leaf
hash is recomputed from it, never taken on trust. When the exporter was asked to prove that its
checkpoint extends one the verifier already saw, the envelope is followed by a newline and one
``consistency <old size> <base64 hash> ...`` line (a canonical envelope never contains a raw
newline, so the split is unambiguous). The extra data is unauthenticated by the format itself;
the offline verifier authenticates all of it (leaf hash, consistency proof).

Parsing is strict: only the canonical text that :func:`build_receipt` writes is accepted, so
lines added before, inside or after a receipt are rejected (sumdb's
``TestRejectUnauthenticatedLines``; catalogue T23).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from monitoring.audit.errors import NoteError
from monitoring.audit.note import (
    MAX_SIZE,
    Checkpoint,
    b64decode_strict,
    b64encode,
    parse_note,
)

HEADER = "c2sp.org/tlog-proof@v1"
MAX_RECEIPT_BYTES = 1024 * 1024
"""Largest receipt accepted (an envelope is at most a few tens of kB)."""
MAX_PROOF_HASHES = 64
"""An inclusion or consistency proof in a tree below 2^63 leaves has at most 63 hashes."""
_NUMBER = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class Consistency:
    """A consistency proof from an older tree size to the receipt's checkpoint."""

    size: int
    proof: tuple[bytes, ...]


@dataclass(frozen=True)
class Receipt:
    """A parsed receipt; nothing in it is verified yet (see the offline verifier)."""

    envelope: bytes
    index: int
    proof: tuple[bytes, ...]
    note: str
    checkpoint: Checkpoint
    """The note's body as a checkpoint, before any signature is checked."""
    consistency: Consistency | None = None

    def text(self) -> str:
        """The receipt's canonical text."""
        return build_receipt(self.envelope, self.index, self.proof, self.note,
                             consistency=self.consistency)


def _number(text: str, what: str) -> int:
    if not _NUMBER.fullmatch(text) or int(text) > MAX_SIZE:
        raise NoteError(f"{what}: expected a decimal number without leading zeros, got "
                        f"{text[:40]!r}")
    return int(text)


def _hash(text: str, what: str) -> bytes:
    return b64decode_strict(text, what, 32)


def build_receipt(envelope: bytes, index: int, proof: Sequence[bytes], note: str, *,
                  consistency: Consistency | tuple[int, Sequence[bytes]] | None = None) -> str:
    """The receipt text of entry ``index`` (its ``envelope``) under the signed ``note``."""
    if not envelope or b"\n" in envelope:
        raise NoteError("a receipt's envelope must be non-empty canonical JSON (no newline)")
    if isinstance(index, bool) or not 0 <= index <= MAX_SIZE:
        raise NoteError(f"receipt index out of range: {index!r}")
    extra = envelope
    if consistency is not None:
        size, hashes = consistency if isinstance(consistency, tuple) else (
            consistency.size, consistency.proof)
        extra += ("\nconsistency " + " ".join([str(size), *map(b64encode, hashes)])).encode()
    lines = [HEADER, "extra " + b64encode(extra), f"index {index}", *map(b64encode, proof)]
    return "\n".join(lines) + "\n\n" + note


def parse_receipt(text: str | bytes) -> Receipt:
    """The parts of a receipt; :class:`NoteError` names the first thing that is wrong."""
    if isinstance(text, bytes):
        if len(text) > MAX_RECEIPT_BYTES:
            raise NoteError(f"receipt is too large ({len(text)} bytes, limit "
                            f"{MAX_RECEIPT_BYTES})")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"receipt is not valid UTF-8 (byte {exc.start})") from None
    if len(text) > MAX_RECEIPT_BYTES:
        raise NoteError(f"receipt is too large (limit {MAX_RECEIPT_BYTES} bytes)")
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise NoteError("receipt has no blank line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != HEADER:
        raise NoteError(f"receipt line 1: expected {HEADER!r}, got {lines[0][:60]!r}")
    if len(lines) < 3 or not lines[1].startswith("extra "):
        raise NoteError("receipt line 2: expected 'extra <base64 envelope>' (a receipt carries "
                        "its entry)")
    extra = b64decode_strict(lines[1][len("extra "):], "receipt line 2 (extra data)")
    if not lines[2].startswith("index "):
        raise NoteError(f"receipt line 3: expected 'index <number>', got {lines[2][:60]!r}")
    index = _number(lines[2][len("index "):], "receipt line 3 (index)")
    if len(lines) - 3 > MAX_PROOF_HASHES:
        raise NoteError(f"receipt has {len(lines) - 3} inclusion proof lines, limit "
                        f"{MAX_PROOF_HASHES}")
    proof = tuple(_hash(line, f"receipt line {n} (inclusion proof hash)")
                  for n, line in enumerate(lines[3:], 4))
    envelope, consistency = _split_extra(extra)
    parsed = parse_note(note)
    checkpoint = Checkpoint.parse(parsed.body)
    receipt = Receipt(envelope, index, proof, note, checkpoint, consistency)
    if receipt.text() != text:  # anything the checks above let through but we never write
        raise NoteError("receipt is not in canonical form")
    return receipt


def _split_extra(extra: bytes) -> tuple[bytes, Consistency | None]:
    envelope, nl, rest = extra.partition(b"\n")
    if not envelope:
        raise NoteError("receipt extra data: empty envelope")
    if not nl:
        return envelope, None
    try:
        line = rest.decode("ascii")
    except UnicodeDecodeError:
        raise NoteError("receipt extra data: consistency line is not ASCII") from None
    words = line.split(" ")
    if words[0] != "consistency" or len(words) < 2:
        raise NoteError("receipt extra data: after the envelope only a 'consistency SIZE "
                        "HASH...' line may follow")
    if len(words) - 2 > MAX_PROOF_HASHES:
        raise NoteError(f"receipt extra data: consistency proof longer than "
                        f"{MAX_PROOF_HASHES} hashes")
    size = _number(words[1], "receipt consistency size")
    hashes = tuple(_hash(w, f"receipt consistency hash {i}") for i, w in enumerate(words[2:]))
    return envelope, Consistency(size, hashes)
