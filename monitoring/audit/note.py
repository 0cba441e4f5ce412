"""C2SP signed notes and tlog checkpoints: the text a ledger signs and everyone else checks.

The formats follow c2sp.org/signed-note, c2sp.org/tlog-checkpoint and c2sp.org/tlog-cosignature
(and the parsing rules of golang.org/x/mod/sumdb/note) exactly, so a checkpoint of this ledger
can be checked by Go or Rust transparency-log tooling and by a tlog witness:

* a note is a body ending in a newline, a blank line, then one or more signature lines
  ``— <key name> <base64(4-byte key id ‖ signature)>``; UTF-8 with no control character other
  than newline; at most :data:`MAX_SIGNATURES` signatures and :data:`MAX_NOTE_BYTES` bytes;
* signatures from unknown keys (name and key id not both known) are ignored; a known key whose
  signature fails rejects the whole note; a note without one verified known signature is
  rejected;
* a checkpoint body is exactly three lines here: origin, decimal size, base64 root hash.

Everything malformed raises :class:`~monitoring.audit.errors.NoteError` saying what is wrong,
because these texts come from files and from the network, where anybody can craft them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from monitoring.audit.errors import NoteError

ALG_ED25519 = 0x01
"""Signature type of plain Ed25519 note signatures (signed-note)."""
ALG_COSIGNATURE_V1 = 0x04
"""Signature type of timestamped Ed25519 witness cosignatures (tlog-cosignature/v1)."""

MAX_SIGNATURES = 100
"""Signature lines a note may carry (the limit of golang.org/x/mod/sumdb/note; spec: >= 16)."""
MAX_NOTE_BYTES = 256 * 1024
"""Largest note accepted: 16 post-quantum signatures of ~5 kB fit several times over."""
MAX_SIGNATURE_BYTES = 8 * 1024
"""Largest decoded signature (key id included): ML-DSA signatures are under 5 kB."""
MAX_SIZE = 2**63 - 1
"""Largest tree size a checkpoint may state (sizes are uint64 in Go, signed int64 in DuckDB)."""

SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SIZE = re.compile(r"0|[1-9][0-9]{0,18}")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


class Verifier(Protocol):
    """What :func:`open_note` needs of a known key: its name, key id and a check."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def verify(self, msg: bytes, sig: bytes) -> bool: ...


V = TypeVar("V", bound=Verifier)


def valid_key_name(name: str) -> bool:
    """A key name is non-empty, with no Unicode space, no control character and no ``+``."""
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" for ch in name)
    )


def _check_name(name: str, what: str = "key name") -> None:
    if not valid_key_name(name):
        raise NoteError(f"invalid {what} {name!r}: it must be non-empty, without spaces, "
                        "control characters or '+'")


def key_id_for(name: str, alg: int, public: bytes) -> bytes:
    """The signed-note key id: the first 4 bytes of SHA-256(name ‖ newline ‖ alg ‖ public key)."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([alg]) + public).digest()[:4]


def b64decode_strict(text: str, what: str, size: int | None = None) -> bytes:
    """Standard base64 in its canonical form only (padding, no stray bits, no whitespace)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(f"{what}: not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what}: not canonical base64")
    if size is not None and len(raw) != size:
        raise NoteError(f"{what}: expected {size} bytes, got {len(raw)}")
    return raw


def b64encode(data: bytes) -> str:
    """Standard base64 text of ``data``."""
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------- keys


class _NamedKey:
    """A key name, a public key and the key id they give for this class's signature type."""

    alg = ALG_ED25519

    def __init__(self, name: str, public_key: Ed25519PublicKey) -> None:
        _check_name(name)
        self.name = name
        self.public_key = public_key
        self.public_raw = public_key.public_bytes_raw()
        self.key_id = key_id_for(name, self.alg, self.public_raw)

    @property
    def key_hex(self) -> str:
        """``name+hex(key id)``: how messages name this key."""
        return f"{self.name}+{self.key_id.hex()}"


class NoteSigner(_NamedKey):
    """Signs note bodies with an Ed25519 key under a key name (signature type 0x01)."""

    def __init__(self, name: str, private: Ed25519PrivateKey) -> None:
        super().__init__(name, private.public_key())
        self.private = private

    def sign(self, msg: bytes) -> bytes:
        """The signature of ``msg`` (without the key id)."""
        return self.private.sign(msg)


class NoteVerifier(_NamedKey):
    """A known Ed25519 note key: checks signatures and prints itself as a vkey."""

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` is this key's signature of ``msg``."""
        try:
            self.public_key.verify(sig, msg)
        except InvalidSignature:
            return False
        return True

    def vkey(self) -> str:
        """The verifier key text ``name+hex(key id)+base64(alg ‖ public key)``."""
        return f"{self.name}+{self.key_id.hex()}+{b64encode(bytes([self.alg]) + self.public_raw)}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Self:
        """The verifier of a vkey of this class's signature type; NoteError if malformed."""
        name, public = _parse_vkey(vkey, cls.alg)
        return cls(name, Ed25519PublicKey.from_public_bytes(public))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NoteVerifier):
            return NotImplemented
        return (self.alg, self.name, self.public_raw) == (other.alg, other.name, other.public_raw)

    def __hash__(self) -> int:
        return hash((self.alg, self.name, self.public_raw))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key_hex!r})"


def _parse_vkey(vkey: str, alg: int) -> tuple[str, bytes]:
    parts = vkey.strip().split("+", 2)  # base64 key data may contain "+"
    if len(parts) != 3:
        raise NoteError(f"malformed verifier key {vkey!r}: expected NAME+KEYID+KEYDATA")
    name, hex_id, data = parts
    _check_name(name)
    if not re.fullmatch(r"[0-9a-fA-F]{8}", hex_id):
        raise NoteError(f"malformed verifier key {vkey!r}: key id must be 8 hex digits")
    raw = b64decode_strict(data, f"verifier key {name}: key data")
    if len(raw) != 33:
        raise NoteError(f"verifier key {name}: key data must be 1 type byte and a 32-byte "
                        f"Ed25519 public key, got {len(raw)} bytes")
    if raw[0] != alg:
        raise NoteError(f"verifier key {name}: signature type 0x{raw[0]:02x}, expected "
                        f"0x{alg:02x}")
    if key_id_for(name, raw[0], raw[1:]).hex() != hex_id.lower():
        raise NoteError(f"verifier key {name}: key id {hex_id} does not match its public key")
    return name, raw[1:]


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a note, not yet verified."""

    name: str
    key_id: bytes
    signature: bytes
    line: str


@dataclass(frozen=True)
class ParsedNote:
    """A note split into its body (signed text) and its signature lines, nothing verified."""

    body: str
    signatures: tuple[NoteSignature, ...]


def _as_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        if len(text) > MAX_NOTE_BYTES:
            raise NoteError(f"note is too large ({len(text)} bytes, limit {MAX_NOTE_BYTES})")
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NoteError(f"note is not valid UTF-8 (byte {exc.start})") from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise NoteError(f"note is not valid UTF-8 (character {exc.start})") from None
    if size > MAX_NOTE_BYTES:
        raise NoteError(f"note is too large ({size} bytes, limit {MAX_NOTE_BYTES})")
    return text


def _check_controls(text: str, what: str) -> None:
    bad = _CONTROL.search(text)
    if bad:
        raise NoteError(f"{what} contains the control character U+{ord(bad.group()):04X} at "
                        f"character {bad.start()}")


def parse_note(text: str | bytes) -> ParsedNote:
    """Split a signed note into body and signature lines, checking the syntax only."""
    text = _as_text(text)
    _check_controls(text, "note")
    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise NoteError("note has no signature lines after its last blank line")
    if not block.endswith("\n"):
        raise NoteError("note does not end with a newline after its last signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"note has {len(lines)} signature lines, limit {MAX_SIGNATURES}")
    return ParsedNote(body, tuple(_parse_signature(line, n) for n, line in enumerate(lines, 1)))


def _parse_signature(line: str, n: int) -> NoteSignature:
    where = f"signature line {n}"
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(f"{where}: expected '\u2014 <key name> <base64 signature>', got "
                        f"{line[:60]!r}")
    name, sep, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not b64:
        raise NoteError(f"{where}: missing the signature after the key name")
    if not valid_key_name(name):
        raise NoteError(f"{where}: invalid key name {name!r}")
    if len(b64) > (MAX_SIGNATURE_BYTES + 2) // 3 * 4:
        raise NoteError(f"{where}: signature is too large (limit {MAX_SIGNATURE_BYTES} bytes)")
    raw = b64decode_strict(b64, where)
    if len(raw) < 5:
        raise NoteError(f"{where}: signature is shorter than a key id and one byte")
    return NoteSignature(name, raw[:4], raw[4:], line)


def open_note(text: str | bytes, verifiers: Sequence[V]) -> tuple[str, list[V]]:
    """The body of a signed note and the known verifiers whose signature verified.

    Unknown keys are ignored (also when only the name or only the key id matches a known
    key); a known key whose signature fails rejects the note, as does a note that no known
    key signed.
    """
    parsed = parse_note(text)
    known: dict[tuple[str, bytes], V] = {}
    for v in verifiers:
        k = (v.name, v.key_id)
        if k in known and known[k] is not v:
            raise NoteError(f"ambiguous verifier list: two keys named {v.name}+{v.key_id.hex()}")
        known[k] = v
    msg = parsed.body.encode("utf-8")
    verified: list[V] = []
    seen: set[tuple[str, bytes]] = set()
    unknown: list[str] = []
    for sig in parsed.signatures:
        k = (sig.name, sig.key_id)
        found = known.get(k)
        if found is None:
            unknown.append(f"{sig.name}+{sig.key_id.hex()}")
            continue
        # Every line of a known key is verified, repeated ones too (the spec's MUST; Go's
        # note package skips repeats): one bad line of a known key rejects the note.
        if not found.verify(msg, sig.signature):
            raise NoteError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if k not in seen:
            seen.add(k)
            verified.append(found)
    if not verified:
        others = ", ".join(dict.fromkeys(unknown))
        raise NoteError(f"note has no valid signature from a known key (signed by: {others})")
    return parsed.body, verified


class Signer(Protocol):
    """What :func:`sign_note` needs of a key: its name, key id and a signing function."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> bytes: ...

    def sign(self, msg: bytes) -> bytes: ...


def signature_line(body: str, signer: Signer) -> str:
    """One signature line (newline included) of ``signer`` over ``body``."""
    _check_name(signer.name)
    sig = signer.key_id + signer.sign(body.encode("utf-8"))
    return f"{SIGNATURE_PREFIX}{signer.name} {b64encode(sig)}\n"


def _check_body(body: str) -> None:
    if not body.endswith("\n"):
        raise NoteError("note body must end with a newline")
    _check_controls(body, "note body")


def sign_note(body: str, signers: Sequence[Signer]) -> str:
    """The full note text: ``body``, a blank line and one signature line per signer."""
    _check_body(body)
    if not signers:
        raise NoteError("a note needs at least one signer")
    return body + "\n" + "".join(signature_line(body, s) for s in signers)


def add_signatures(note: str, signers: Sequence[Signer]) -> str:
    """``note`` with more signature lines (a signer that already signed is replaced)."""
    parsed = parse_note(note)
    replaced = {(s.name, s.key_id) for s in signers}
    kept = [s.line + "\n" for s in parsed.signatures if (s.name, s.key_id) not in replaced]
    if len(kept) + len(signers) > MAX_SIGNATURES:
        raise NoteError(f"a note carries at most {MAX_SIGNATURES} signatures")
    return parsed.body + "\n" + "".join(kept) + "".join(
        signature_line(parsed.body, s) for s in signers)


# --------------------------------------------------------------------------- checkpoints


@dataclass(frozen=True)
class Checkpoint:
    """A tlog checkpoint: the log's origin, its tree size and the root hash at that size."""

    origin: str
    size: int
    root: bytes

    def __post_init__(self) -> None:
        _check_name(self.origin, "checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int) \
                or not 0 <= self.size <= MAX_SIZE:
            raise NoteError(f"checkpoint size must be an integer in 0..2^63-1, got {self.size!r}")
        if not isinstance(self.root, bytes) or len(self.root) != 32:
            raise NoteError("checkpoint root must be a 32-byte SHA-256 hash")

    def body(self) -> str:
        """The note body: origin, size and base64 root, each on its own line."""
        return f"{self.origin}\n{self.size}\n{b64encode(self.root)}\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """The checkpoint of a note body of exactly three lines; NoteError says what is wrong."""
        if not body.endswith("\n"):
            raise NoteError("checkpoint body must end with a newline")
        lines = body[:-1].split("\n")
        if len(lines) != 3:
            raise NoteError(f"checkpoint body must have exactly 3 lines (origin, size, root), "
                            f"got {len(lines)}")
        origin, size, root = lines
        if not origin:
            raise NoteError("checkpoint line 1: empty origin")
        if not valid_key_name(origin):
            raise NoteError(f"checkpoint line 1: invalid origin {origin!r} (spaces, control "
                            "characters and '+' are not allowed)")
        if not _SIZE.fullmatch(size) or int(size) > MAX_SIZE:
            raise NoteError(f"checkpoint line 2: size must be a decimal number without leading "
                            f"zeros below 2^63, got {size[:40]!r}")
        raw = b64decode_strict(root, "checkpoint line 3 (root hash)", 32)
        return cls(origin, int(size), raw)


def sign_checkpoint(cp: Checkpoint, signer: Signer) -> str:
    """The signed note of ``cp`` (the key name should equal the origin)."""
    return sign_note(cp.body(), [signer])


def open_checkpoint(text: str | bytes, verifiers: Sequence[V],
                    origin: str | None = None) -> tuple[Checkpoint, list[V]]:
    """A verified checkpoint and the verifiers that signed it.

    At least one verified signature must come from a key named like the checkpoint's origin
    (the log's own key; a cosignature alone does not make a checkpoint). With ``origin``,
    a checkpoint of any other log is rejected (a switched ledger identity).
    """
    body, verified = open_note(text, verifiers)
    cp = Checkpoint.parse(body)
    if origin is not None and cp.origin != origin:
        raise NoteError(f"checkpoint is for origin {cp.origin!r}, expected {origin!r}")
    if not any(v.name == cp.origin for v in verified):
        names = ", ".join(v.name for v in verified)
        raise NoteError(f"checkpoint of {cp.origin!r} has no valid signature by the log's "
                        f"own key (verified only: {names})")
    return cp, verified


# --------------------------------------------------------------------------- cosignatures

COSIGNATURE_HEADER = "cosignature/v1\n"


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a tlog-cosignature/v1 signs: header line, time line, then the note body."""
    return f"{COSIGNATURE_HEADER}time {timestamp}\n{body}".encode()


class CosignatureSigner(_NamedKey):
    """A witness key: timestamped Ed25519 cosignatures (type 0x04); use a key of its own."""

    alg = ALG_COSIGNATURE_V1

    def __init__(self, name: str, private: Ed25519PrivateKey,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, private.public_key())
        self.private = private
        self.clock = clock
        self.timestamp: int | None = None
        """If set, the time every cosignature states (tests); else the clock's."""

    def sign(self, msg: bytes) -> bytes:
        """``timestamp (u64 big-endian) ‖ Ed25519 signature`` over the cosigned message."""
        ts = self.timestamp if self.timestamp is not None else int(self.clock())
        if not 0 <= ts <= MAX_SIZE:
            raise NoteError(f"cosignature timestamp out of range: {ts}")
        signed = cosigned_message(msg.decode("utf-8"), ts)
        return ts.to_bytes(8, "big") + self.private.sign(signed)


class CosignatureVerifier(NoteVerifier):
    """A known witness key (type 0x04); :meth:`verify` also checks the signed timestamp."""

    alg = ALG_COSIGNATURE_V1

    def verify(self, msg: bytes, sig: bytes) -> bool:
        """Whether ``sig`` (timestamp ‖ signature) cosigns ``msg``."""
        if len(sig) != 8 + 64:
            return False
        ts = int.from_bytes(sig[:8], "big")
        if ts > MAX_SIZE:
            return False
        try:
            signed = cosigned_message(msg.decode("utf-8"), ts)
        except UnicodeDecodeError:
            return False
        return super().verify(signed, sig[8:])


def cosign(note: str, signer: CosignatureSigner, timestamp: int | None = None) -> str:
    """``note`` with the witness cosignature of ``signer`` added (or replaced)."""
    if timestamp is not None:
        old, signer.timestamp = signer.timestamp, timestamp
        try:
            return add_signatures(note, [signer])
        finally:
            signer.timestamp = old
    return add_signatures(note, [signer])


def cosignature_time(note: str, cosigner: CosignatureVerifier) -> int:
    """The timestamp of ``cosigner``'s signature on ``note``; NoteError if it is absent."""
    parsed = parse_note(note)
    for sig in parsed.signatures:
        if (sig.name, sig.key_id) == (cosigner.name, cosigner.key_id):
            if not cosigner.verify(parsed.body.encode("utf-8"), sig.signature):
                raise NoteError(f"invalid cosignature for key {cosigner.key_hex}")
            return int.from_bytes(sig.signature[:8], "big")
    raise NoteError(f"note carries no cosignature by {cosigner.key_hex}")


def verify_cosignature(note: str, log: Sequence[NoteVerifier], cosigner: CosignatureVerifier,
                       origin: str | None = None) -> tuple[Checkpoint, int]:
    """The checkpoint signed by the log and cosigned by ``cosigner``, and the cosigning time."""
    cp, _ = open_checkpoint(note, [*log, cosigner], origin)
    return cp, cosignature_time(note, cosigner)

