"""Signing keys of the ledger: where they live, how they are stored, and when each is valid.

The signing key never lives in the database: whoever can edit the store must not be able to
re-sign it. It comes from ``--key FILE``, from ``MONITORING_AUDIT_KEY`` (a base64 32-byte
Ed25519 seed) or ``MONITORING_AUDIT_KEY_FILE``, or from
``$XDG_CONFIG_HOME/monitoring/audit-signing.key`` (generated on first use when asked). Key files
hold the 32-byte seed, raw or base64, or an unencrypted PKCS#8 PEM; a file that its group or
others may read is refused, like ssh does, because a leaked key lets anyone forge checkpoints.

A rotated key stays valid for the checkpoints it signed before the rotation and for nothing
after: :class:`KeyHistory` holds those windows and rejects a checkpoint signed outside its
key's window (the journald CVE-2023-31439 lesson: a newer key must not re-sign old history).
"""

from __future__ import annotations

import base64
import binascii
import os
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitoring.audit.errors import NoteError, SigningKeyError, VerifyFailure
from monitoring.audit.fsutil import write_atomic
from monitoring.audit.note import (
    Checkpoint,
    CosignatureSigner,
    CosignatureVerifier,
    NoteSigner,
    NoteVerifier,
    open_checkpoint,
    valid_key_name,
)

ENV_KEY = "MONITORING_AUDIT_KEY"
ENV_KEY_FILE = "MONITORING_AUDIT_KEY_FILE"
DEFAULT_KEY_NAME = "audit-signing.key"
SEED_BYTES = 32
MAX_SECRET_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 key and the note key name it signs under (the ledger's origin)."""

    name: str
    private: Ed25519PrivateKey = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if not valid_key_name(self.name):
            raise SigningKeyError(f"invalid key name {self.name!r}: it must be non-empty, "
                                  "without spaces, control characters or '+'")

    @classmethod
    def generate(cls, name: str) -> SigningKey:
        """A fresh random key."""
        return cls(name, Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> SigningKey:
        """The key of a 32-byte Ed25519 seed."""
        if len(seed) != SEED_BYTES:
            raise SigningKeyError(f"an Ed25519 seed has {SEED_BYTES} bytes, got {len(seed)}")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        """The 32-byte seed (secret)."""
        return self.private.private_bytes_raw()

    def signer(self) -> NoteSigner:
        """The note signer (signature type 0x01) of this key."""
        return NoteSigner(self.name, self.private)

    def verifier(self) -> NoteVerifier:
        """The public half, as a note verifier."""
        return NoteVerifier(self.name, self.private.public_key())

    def vkey(self) -> str:
        """The verifier key text to give to verifiers (``name+keyid+base64``)."""
        return self.verifier().vkey()

    def cosigner(self) -> CosignatureSigner:
        """The same key as a witness cosigner (type 0x04): give a witness a key of its own."""
        return CosignatureSigner(self.name, self.private)

    def cosignature_verifier(self) -> CosignatureVerifier:
        """The public half of :meth:`cosigner`."""
        return CosignatureVerifier(self.name, self.private.public_key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return self.name == other.name and self.seed() == other.seed()

    def __hash__(self) -> int:
        return hash((self.name, self.verifier().public_raw))


# --------------------------------------------------------------------------- files


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CONFIG_HOME/monitoring``, or ``~/.config/monitoring``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "monitoring"


def default_key_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the signing key lives when nothing else says."""
    return config_dir(env) / DEFAULT_KEY_NAME


def load_secret_file(path: Path) -> bytes:
    """The contents of a key file, refused if group or others may access it."""
    try:
        fd = os.open(path, os.O_RDONLY)  # symlinks allowed: secret mounts use them
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such key file") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot open key file: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SigningKeyError(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise SigningKeyError(
                f"{path}: key file is accessible by group or others (mode {mode:04o}); "
                f"run: chmod 600 {path}")
        if st.st_size > MAX_SECRET_FILE_BYTES:
            raise SigningKeyError(f"{path}: too large for a key file ({st.st_size} bytes)")
        chunks = []
        while chunk := os.read(fd, MAX_SECRET_FILE_BYTES + 1):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def decode_secret32(data: bytes, where: str) -> bytes:
    """32 secret bytes stored raw or as base64 text (surrounding whitespace ignored)."""
    if len(data) == 32:
        return data
    text = data.strip()
    if not text:
        raise SigningKeyError(f"{where}: empty; expected 32 raw bytes or their base64 text")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise SigningKeyError(f"{where}: expected 32 raw bytes or their base64 text, got "
                              f"{len(data)} bytes that are neither") from None
    if len(raw) != 32:
        raise SigningKeyError(f"{where}: base64 decodes to {len(raw)} bytes, expected 32")
    return raw


def write_secret_file(path: Path, data: bytes) -> None:
    """Create ``path`` with mode 0600 holding ``data``; refuses to overwrite a file."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        write_atomic(path, data, mode=0o600, replace=False)
    except FileExistsError:
        raise SigningKeyError(f"{path}: already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise SigningKeyError(f"{path}: cannot create key file: {exc.strerror}") from None


def create_secret_file(path: Path, data: bytes) -> bool:
    """Like :func:`write_secret_file`, but False if another process created ``path`` first.

    For generating a key on first use: two processes starting together must end up with the
    same key, so the loser reads the winner's file instead of failing.
    """
    try:
        write_secret_file(path, data)
    except SigningKeyError:
        if not path.exists():
            raise
        return False
    return True


def write_key_file(path: Path, key: SigningKey) -> None:
    """Store ``key``'s seed as base64 text in a new 0600 file (never overwrites)."""
    write_secret_file(path, base64.b64encode(key.seed()) + b"\n")


def parse_key_data(name: str, data: bytes, where: str) -> SigningKey:
    """The key of a key file's contents: PKCS#8 PEM, or a raw or base64 32-byte seed."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            private = serialization.load_pem_private_key(data, password=None)
        except TypeError:
            raise SigningKeyError(f"{where}: encrypted PEM keys are not supported; store the "
                                  "unencrypted key in a 0600 file instead") from None
        except ValueError as exc:
            raise SigningKeyError(f"{where}: not a readable PEM private key ({exc})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SigningKeyError(f"{where}: the PEM key is not an Ed25519 key")
        return SigningKey(name, private)
    return SigningKey.from_seed(name, decode_secret32(data, where))


def load_signing_key(name: str, path: Path | None = None, *, create: bool = False,
                     env: Mapping[str, str] | None = None) -> SigningKey:
    """The signing key named ``name`` (the ledger origin), from the first place that has one.

    Order: ``path``; ``$MONITORING_AUDIT_KEY`` (base64 seed); ``$MONITORING_AUDIT_KEY_FILE``;
    the default path. With ``create``, a missing key file (at whichever path was chosen) is
    generated with mode 0600.
    """
    env = os.environ if env is None else env
    if path is None:
        inline = env.get(ENV_KEY)
        if inline:
            return SigningKey.from_seed(name, decode_secret32(inline.encode(), f"${ENV_KEY}"))
        from_env = env.get(ENV_KEY_FILE)
        path = Path(from_env) if from_env else default_key_path(env)
    if create and not path.exists():
        key = SigningKey.generate(name)
        if create_secret_file(path, base64.b64encode(key.seed()) + b"\n"):
            return key
    if not path.exists():
        raise SigningKeyError(f"{path}: no signing key; create one with "
                              "'monitoring audit keygen' or set $" + ENV_KEY)
    return parse_key_data(name, load_secret_file(path), str(path))


# --------------------------------------------------------------------------- validity windows


@dataclass(frozen=True)
class KeyWindow:
    """A key and the checkpoint sizes it may sign: ``valid_from <= size <= valid_to``."""

    verifier: NoteVerifier
    valid_from: int
    valid_to: int | None = None

    def contains(self, size: int) -> bool:
        """Whether a checkpoint of ``size`` lies in this window."""
        return self.valid_from <= size and (self.valid_to is None or size <= self.valid_to)

    def describe(self) -> str:
        """The window as ``FROM..TO`` (``FROM..`` while the key is current)."""
        return f"{self.valid_from}..{'' if self.valid_to is None else self.valid_to}"


@dataclass
class KeyHistory:
    """The ledger's keys in order: the genesis key, then one per ``key.rotate`` event."""

    windows: list[KeyWindow] = field(default_factory=list)

    @classmethod
    def genesis(cls, verifier: NoteVerifier) -> KeyHistory:
        """A history with the genesis key, valid from size 1 on."""
        return cls([KeyWindow(verifier, 1, None)])

    def rotate(self, new: NoteVerifier, at_size: int) -> None:
        """Record a rotation committed at checkpoint ``at_size`` (signed by the old key).

        The current key stays valid up to ``at_size``; ``new`` is valid after it.
        """
        if not self.windows:
            raise SigningKeyError("cannot rotate a key history without a genesis key")
        last = self.windows[-1]
        if last.valid_to is not None:
            raise SigningKeyError("key history already ends; cannot rotate again")
        if at_size < last.valid_from:
            raise VerifyFailure(None, f"key rotation at size {at_size} lies before the current "
                                f"key's window {last.describe()}")
        self.windows[-1] = KeyWindow(last.verifier, last.valid_from, at_size)
        self.windows.append(KeyWindow(new, at_size + 1, None))

    @property
    def verifiers(self) -> list[NoteVerifier]:
        """Every key of the history, each once (to open notes with)."""
        return list(dict.fromkeys(w.verifier for w in self.windows))

    @property
    def current(self) -> NoteVerifier:
        """The key that signs new checkpoints."""
        if not self.windows:
            raise SigningKeyError("empty key history")
        return self.windows[-1].verifier

    def check(self, verifier: NoteVerifier, size: int) -> None:
        """Raise :class:`VerifyFailure` unless ``verifier`` may sign a checkpoint of ``size``."""
        own = [w for w in self.windows if w.verifier == verifier]
        if not own:
            raise VerifyFailure(None, f"checkpoint of size {size} is signed by key "
                                f"{verifier.key_hex}, which is not in the ledger's key history")
        if not any(w.contains(size) for w in own):
            spans = ", ".join(w.describe() for w in own)
            raise VerifyFailure(None, f"checkpoint of size {size} is signed by key "
                                f"{verifier.key_hex} outside its validity window (sizes "
                                f"{spans})")

    def open_checkpoint(self, note: str | bytes, origin: str | None = None
                        ) -> tuple[Checkpoint, NoteVerifier]:
        """The checkpoint of ``note`` and the log key that signed it within its window.

        Raises :class:`VerifyFailure`: ``checkpoint: <what is wrong>`` for a malformed note, a
        bad or unknown signature or another origin than ``origin``; the window failure of
        :meth:`check` for a key used outside its window.
        """
        try:
            cp, verified = open_checkpoint(note, self.verifiers, origin)
        except NoteError as exc:
            raise VerifyFailure(None, f"checkpoint: {exc}") from None
        return cp, self.check_any([v for v in verified if v.name == cp.origin], cp.size)

    def check_any(self, verifiers: Sequence[NoteVerifier], size: int) -> NoteVerifier:
        """The first of ``verifiers`` valid for ``size``; else the first one's failure."""
        failure: VerifyFailure | None = None
        for v in verifiers:
            try:
                self.check(v, size)
            except VerifyFailure as exc:
                failure = failure or exc
            else:
                return v
        raise failure or VerifyFailure(None, f"checkpoint of size {size} carries no signature")


def accepted_keys(keys: KeyHistory | NoteVerifier | str | Sequence[str | NoteVerifier]
                  ) -> KeyHistory:
    """The keys a verifier accepts, as a history.

    Takes vkeys (``VKEY`` or ``VKEY@FROM-TO``), verifiers (valid from size 1 on), or a history
    as it is.
    """
    if isinstance(keys, KeyHistory):
        if not keys.windows:
            raise SigningKeyError("no verifier key given (empty key history)")
        return keys
    items = [keys] if isinstance(keys, str | NoteVerifier) else list(keys)
    windows = [KeyWindow(item, 1, None) if isinstance(item, NoteVerifier)
               else parse_vkey_window(item) for item in items]
    if not windows:
        raise SigningKeyError("no verifier key given")
    return KeyHistory(windows)


def parse_vkey_window(text: str) -> KeyWindow:
    """A verifier key with an optional window: ``VKEY`` or ``VKEY@FROM-TO`` / ``VKEY@FROM-``.

    Base64 has no ``@``, so the window follows the last ``@`` of the key data.
    """
    vkey, at, window = text.strip().rpartition("@")
    if not at or "+" in window:
        try:
            return KeyWindow(NoteVerifier.from_vkey(text.strip()), 1, None)
        except NoteError as exc:
            raise SigningKeyError(str(exc)) from None
    lo, dash, hi = window.partition("-")
    if not dash or not lo.isdigit() or (hi and not hi.isdigit()):
        raise SigningKeyError(f"malformed key window {window!r}: expected FROM-TO or FROM-")
    try:
        verifier = NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise SigningKeyError(str(exc)) from None
    start, end = int(lo), (int(hi) if hi else None)
    if end is not None and end < start:
        raise SigningKeyError(f"key window {window!r} ends before it starts")
    return KeyWindow(verifier, start, end)
