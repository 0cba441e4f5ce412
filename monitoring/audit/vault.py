"""The subject vault: one AES-256 key per data subject, so erasing a person is deleting a key.

Personal fields of an event are sealed with AES-256-GCM under the key (DEK) of the event's
data subject; the ledger keeps the ciphertext in a deletable table and commits only to its
SHA-256 (:class:`PiiCommitment`). Destroying the DEK makes every ciphertext of that subject
unreadable while every leaf, and so every signed checkpoint, stays valid (crypto-shredding,
NIST SP 800-88 "cryptographic erase").

Each subject's DEK lives in its own small file in the vault folder, wrapped (AES-256-GCM) by
the key-encryption key (KEK), which lives outside the database like the signing key. The file
name is an HMAC of the subject under the vault's random index key (kept in ``vault.json``,
wrapped by the KEK, so a KEK rotation keeps the names), so listing the folder reveals neither
who is in it nor which reference belongs to whom. The reference ("s-" + 32 random hex
digits) is random, not derived from the subject: once the file is gone nobody, not even the
KEK's holder, can link the reference in old envelopes back to the person.

Files are created atomically (written, fsynced, hard-linked into place, folder fsynced) and
read refused when group or others may access them. Erasing overwrites the file with zeros,
fsyncs, unlinks it, fsyncs the folder, records the reference in the ``erased`` list and forgets
every cached copy. The overwrite is best effort: journaling and copy-on-write filesystems and
SSDs may keep old blocks, which is why :meth:`SubjectVault.rekey` exists (re-wrap every
remaining key under a new KEK, then destroy the old KEK).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from monitoring.audit.errors import ErasedError, SigningKeyError, VerifyFailure
from monitoring.audit.fsutil import (
    TMP_PREFIX,
    append_durably,
    unlink_durably,
    write_all,
    write_atomic,
)
from monitoring.audit.keys import (
    config_dir,
    decode_secret32,
    load_secret_file,
    write_secret_file,
)

ENV_KEK = "MONITORING_AUDIT_KEK"
ENV_KEK_FILE = "MONITORING_AUDIT_KEK_FILE"
DEFAULT_KEK_NAME = "audit-kek"
KEY_SUFFIX = ".key"
META_FILE = "vault.json"
ERASED_FILE = "erased"
NONCE_BYTES = 12
REF_PREFIX = "s-"
_TMP_PREFIX = TMP_PREFIX
_STALE_TMP_S = 3600.0
_VERSION = 1


@dataclass(frozen=True, slots=True)
class PiiCommitment:
    """What an envelope says about sealed personal data: whose key, and the ciphertext's hash."""

    ref: str
    sha256: str


def pii_sha256(nonce: bytes, ciphertext: bytes) -> str:
    """The hex SHA-256 of ``nonce || ciphertext``, the value an envelope's ``pii`` commits to."""
    return hashlib.sha256(bytes(nonce) + bytes(ciphertext)).hexdigest()


@dataclass(frozen=True, slots=True)
class Sealed:
    """Personal data sealed for a subject: the subject's reference, the nonce, the ciphertext."""

    ref: str
    nonce: bytes
    ciphertext: bytes

    @property
    def sha256(self) -> str:
        """The hash the envelope commits to."""
        return pii_sha256(self.nonce, self.ciphertext)

    def commitment(self) -> PiiCommitment:
        """The envelope's ``pii`` value for this ciphertext."""
        return PiiCommitment(self.ref, self.sha256)


class NoncePool:
    """Random 12-byte AES-GCM nonces, read from the OS in blocks of 4,096.

    Every nonce is still fresh CSPRNG output (never a counter, never reused); reading them in
    bulk only saves a system call per sealed event, which matters on the writer thread: each
    ``os.urandom`` call releases the GIL and then waits to get it back from busy producer
    threads. The pool is refilled in a process that was forked with it, so a child can
    never hand out its parent's nonces.
    """

    BLOCK = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._pos = 0
        self._pid = 0

    def take(self) -> bytes:
        """One fresh nonce."""
        with self._lock:
            pos = self._pos
            if pos + NONCE_BYTES > len(self._pool) or self._pid != os.getpid():
                self._pool = os.urandom(NONCE_BYTES * self.BLOCK)
                self._pid = os.getpid()
                pos = 0
            self._pos = pos + NONCE_BYTES
            return self._pool[pos:pos + NONCE_BYTES]


def _derive(kek: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=b"monitoring-audit vault/v1 " + purpose).derive(kek)


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


class SubjectVault:
    """Per-subject data keys in a folder, wrapped by the KEK. Thread-safe.

    Use :meth:`open`; the folder is created (mode 0700) on first use and bound to its KEK
    (opening it with another KEK is refused before anything is written).
    """

    def __init__(self, folder: Path, kek: bytes, index_key: bytes) -> None:
        self.folder = folder
        self._wrap = AESGCM(_derive(kek, b"wrap"))
        self._index_key = index_key
        self._lock = threading.RLock()
        self._refs: dict[str, str] = {}      # subject -> ref
        self._deks: dict[str, bytes] = {}    # ref -> DEK
        self._ciphers: dict[str, AESGCM] = {}  # ref -> AESGCM(DEK), made once per subject
        self._files: dict[str, str] | None = None  # ref -> file name (after a folder scan)
        self._erased: set[str] | None = None
        self._erasures = 0
        """Erasures so far: a key loaded before one ran is looked up again, not cached."""
        self._nonces = NoncePool()
        self._loading: dict[str, threading.Event] = {}
        """Subjects whose key file a thread is reading or creating right now."""

    @classmethod
    def open(cls, folder: Path, kek: bytes) -> SubjectVault:
        """The vault in ``folder`` (created if missing), checked against ``kek``.

        The folder's random index key (which names the files) is stored wrapped by the KEK in
        ``vault.json``; a KEK that does not unwrap it is refused before anything is written.
        """
        if len(kek) != 32:
            raise SigningKeyError(f"the key-encryption key must be 32 bytes, got {len(kek)}")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = cls(folder, bytes(kek), b"")
        index_key = probe._read_meta()
        if index_key is None and any(probe._key_files()):
            # A new index key would name files differently: an erasure would miss the old ones.
            raise SigningKeyError(f"{folder / META_FILE}: missing, but the folder holds subject "
                                  "keys; restore it from a backup of the vault")
        if index_key is None:
            index_key = os.urandom(32)
            try:
                probe._write_meta(index_key, replace=False)
            except FileExistsError:  # another process created the vault first: use theirs
                index_key = probe._read_meta()
                assert index_key is not None
        vault = cls(folder, bytes(kek), index_key)
        vault._clean_stale()
        return vault

    # ------------------------------------------------------------------ public API

    def ref_for(self, subject: str, create: bool = True) -> str | None:
        """The stable random reference of ``subject`` ("s-..."); a new key when ``create``.

        Reading or creating a key file (two fsyncs for a new subject) happens outside the
        vault's lock, so a new subject never stalls the writer's :meth:`seal` for others.
        One thread at a time loads or creates a given subject's key (others asking for the
        same subject wait for it); two processes creating the same subject end up with the
        one file that was linked into place first.
        """
        return self._subject_key(_nfc(subject), create)[0]

    def _subject_key(self, subject: str, create: bool) -> tuple[str | None, AESGCM | None]:
        """(ref, cipher) of ``subject`` (NFC), from the cache or its file; None if absent."""
        while True:
            with self._lock:
                ref = self._refs.get(subject)
                if ref is not None:
                    return ref, self._ciphers[ref]
                busy = self._loading.get(subject)
                if busy is None:
                    busy = self._loading[subject] = threading.Event()
                    erasures = self._erasures
                    mine = True
                else:
                    mine = False
            if not mine:
                busy.wait()
                continue  # loaded (or failed) by the other thread: look again
            try:
                found = self._read_or_create(subject, create, erasures)
            finally:
                with self._lock:
                    del self._loading[subject]
                busy.set()
            if found is not None:
                return found

    def _read_or_create(self, subject: str, create: bool, erasures: int
                        ) -> tuple[str | None, AESGCM | None] | None:
        """Load or create the key file of ``subject`` and cache it (file I/O, no lock held).

        ``(None, None)`` when there is no file and ``create`` is false; None when an erasure
        ran meanwhile (the caller looks again: the file it read may be gone).
        """
        name = self._file_name(subject)
        loaded = self._load(name)
        if loaded is None:
            if not create:
                return None, None
            loaded = self._create(name)
        with self._lock:
            if self._erasures != erasures:
                return None
            ref, dek = loaded
            cipher = AESGCM(dek)
            self._refs[subject] = ref
            self._deks[ref] = dek
            self._ciphers[ref] = cipher
            if self._files is not None:
                self._files[ref] = name
            return ref, cipher

    def seal(self, subject: str, plaintext: bytes, aad: bytes) -> Sealed:
        """Encrypt ``plaintext`` under ``subject``'s key (created on first use)."""
        ref, cipher = self._subject_key(_nfc(subject), True)
        assert ref is not None and cipher is not None
        nonce = self._nonces.take()
        return Sealed(ref, nonce, cipher.encrypt(nonce, plaintext, aad))

    def open_sealed(self, ref: str, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Decrypt sealed data; :class:`ErasedError` when the subject's key was destroyed."""
        dek = self._dek_for_ref(ref)
        try:
            return AESGCM(dek).decrypt(bytes(nonce), bytes(ciphertext), aad)
        except InvalidTag:
            raise VerifyFailure(None, f"the sealed personal data of subject {ref} does not "
                                      "decrypt: its ciphertext, nonce or context (origin, seq) "
                                      "was changed") from None

    def erase(self, subject: str) -> str | None:
        """Destroy ``subject``'s key; returns its reference (None if it had no key).

        The file is overwritten with zeros, fsynced, unlinked and the folder fsynced; the
        reference joins the ``erased`` list so later reads say "erased", not "missing".
        """
        subject = _nfc(subject)
        with self._lock:
            name = self._file_name(subject)
            path = self.folder / name
            self._erasures += 1
            ref = self._refs.pop(subject, None)
            if ref is None:
                ref = self._read_ref(path)
            if path.exists():
                self._shred(path)
            if ref is None:
                return None
            self._deks.pop(ref, None)
            self._ciphers.pop(ref, None)
            if self._files is not None:
                self._files.pop(ref, None)
            self._record_erased(ref)
            return ref

    def is_erased(self, ref: str) -> bool:
        """Whether ``ref``'s key was destroyed by :meth:`erase`."""
        with self._lock:
            return ref in self._erased_refs()

    def refs(self) -> list[str]:
        """The references of every subject that still has a key (a folder scan)."""
        with self._lock:
            return sorted(self._index())

    def rekey(self, new_kek: bytes) -> SubjectVault:
        """Re-wrap every key (and the index key) under ``new_kek``; returns the new vault.

        Stop the writer first. Each file is replaced atomically and ``vault.json`` last, so an
        interrupted run is finished by running it again with the same two keys (files
        already re-wrapped are recognised). Afterwards destroy the old KEK: copies of erased
        keys that the filesystem may still hold become useless with it.
        """
        if len(new_kek) != 32:
            raise SigningKeyError(f"the new key-encryption key must be 32 bytes, got "
                                  f"{len(new_kek)}")
        with self._lock:
            new = SubjectVault(self.folder, bytes(new_kek), self._index_key)
            self._files = None
            for ref, name in sorted(self._index().items()):
                try:
                    loaded = self._load(name)
                except SigningKeyError:
                    new._unwrap_file(name)  # re-wrapped by an interrupted run (else raises)
                    continue
                assert loaded is not None
                new._write_key_file(name, ref, loaded[1], replace=True)
            new._write_meta(self._index_key, replace=True)
            self._forget()
            return new

    # ------------------------------------------------------------------ files

    def _read_meta(self) -> bytes | None:
        """The folder's index key from ``vault.json`` (None if the vault is new)."""
        meta = self.folder / META_FILE
        if not meta.exists():
            return None
        try:
            data = json.loads(meta.read_text("utf-8"))
            nonce = base64.b64decode(data["nonce"], validate=True)
            wrapped = base64.b64decode(data["index_key"], validate=True)
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SigningKeyError(f"{meta}: unreadable vault description ({exc})") from None
        try:
            return self._wrap.decrypt(nonce, wrapped, b"monitoring-audit index/v1")
        except InvalidTag:
            raise SigningKeyError(
                f"{self.folder}: this subject-key vault was created with another key-"
                f"encryption key; check --kek, ${ENV_KEK} or ${ENV_KEK_FILE}") from None

    def _write_meta(self, index_key: bytes, *, replace: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        wrapped = self._wrap.encrypt(nonce, index_key, b"monitoring-audit index/v1")
        body = json.dumps({"v": _VERSION, "about": "per-subject keys of a monitoring audit "
                           "ledger; the index key names the files",
                           "nonce": base64.b64encode(nonce).decode("ascii"),
                           "index_key": base64.b64encode(wrapped).decode("ascii")}) + "\n"
        self._atomic_write(META_FILE, body.encode("utf-8"), replace=replace)

    def _file_name(self, subject: str) -> str:
        digest = hmac.new(self._index_key, b"subject\0" + subject.encode("utf-8"),
                          hashlib.sha256).hexdigest()
        return digest + KEY_SUFFIX

    def _create(self, name: str) -> tuple[str, bytes]:
        ref = REF_PREFIX + secrets.token_hex(16)
        dek = AESGCM.generate_key(bit_length=256)
        try:
            self._write_key_file(name, ref, dek, replace=False)
        except FileExistsError:  # created meanwhile by another process: use that key
            loaded = self._load(name)
            assert loaded is not None
            return loaded
        return ref, dek

    def _write_key_file(self, name: str, ref: str, dek: bytes, *, replace: bool) -> None:
        nonce = os.urandom(NONCE_BYTES)
        wrapped = self._wrap.encrypt(nonce, dek, self._aad(name, ref))
        body = json.dumps({"v": _VERSION, "ref": ref,
                           "nonce": base64.b64encode(nonce).decode("ascii"),
                           "dek": base64.b64encode(wrapped).decode("ascii")}) + "\n"
        self._atomic_write(name, body.encode("utf-8"), replace=replace)

    def _atomic_write(self, name: str, data: bytes, *, replace: bool) -> None:
        """Write a new 0600 file and move it into place (link: never replaces; rename: does).

        :class:`FileExistsError` when ``replace`` is false and the file exists.
        """
        path = self.folder / name
        try:
            write_atomic(path, data, mode=0o600, replace=replace)
        except FileExistsError:
            raise
        except OSError as exc:
            raise SigningKeyError(f"{path}: cannot write: {exc.strerror}") from None

    @staticmethod
    def _aad(name: str, ref: str) -> bytes:
        return f"monitoring-audit dek/v1|{name}|{ref}".encode()

    def _load(self, name: str) -> tuple[str, bytes] | None:
        """The (ref, DEK) stored in file ``name``, or None if there is no such file."""
        path = self.folder / name
        if not path.exists():
            return None
        ref, nonce, wrapped = self._parse(path)
        try:
            dek = self._wrap.decrypt(nonce, wrapped, self._aad(name, ref))
        except InvalidTag:
            raise SigningKeyError(f"{path}: this subject key does not unwrap with the key-"
                                  "encryption key (wrong KEK, or the file was altered)") \
                from None
        return ref, dek

    def _parse(self, path: Path) -> tuple[str, bytes, bytes]:
        raw = load_secret_file(path)
        try:
            data = json.loads(raw.decode("utf-8"))
            ref, nonce, wrapped = data["ref"], data["nonce"], data["dek"]
            if not (isinstance(ref, str) and ref.startswith(REF_PREFIX)):
                raise ValueError("bad ref")
            return ref, base64.b64decode(nonce, validate=True), base64.b64decode(
                wrapped, validate=True)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise SigningKeyError(f"{path}: not a subject key file ({exc})") from None

    def _read_ref(self, path: Path) -> str | None:
        try:
            return self._parse(path)[0] if path.exists() else None
        except SigningKeyError:
            return None

    def _unwrap_file(self, name: str) -> bytes:
        loaded = self._load(name)
        if loaded is None:
            raise SigningKeyError(f"{self.folder / name}: the subject key file disappeared")
        return loaded[1]

    def _index(self) -> dict[str, str]:
        """The file name of each reference in the folder (scanned once, then kept up to date)."""
        if self._files is None:
            files: dict[str, str] = {}
            for entry in self._key_files():
                ref = self._read_ref(self.folder / entry)
                if ref is not None:
                    files[ref] = entry
            self._files = files
        return self._files

    def _key_files(self) -> Iterator[str]:
        for entry in sorted(os.listdir(self.folder)):
            if entry.endswith(KEY_SUFFIX) and not entry.startswith("."):
                yield entry

    def _dek_for_ref(self, ref: str) -> bytes:
        with self._lock:
            dek = self._deks.get(ref)
            if dek is not None:
                return dek
            name = self._index().get(ref)
            if name is None:
                self._files = None  # another process may have added it: scan again once
                name = self._index().get(ref)
            if name is None:
                if ref in self._erased_refs():
                    raise ErasedError(f"the personal data of subject {ref} was erased (its key "
                                      "was destroyed)")
                raise SigningKeyError(
                    f"{self.folder}: no key for subject {ref}; is this the ledger's vault "
                    "folder (--vault)? Key files must not be removed except by an erasure")
            dek = self._unwrap_file(name)
            self._deks[ref] = dek
            return dek

    def _shred(self, path: Path) -> None:
        """Overwrite with zeros, fsync, unlink, fsync the folder."""
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
        try:
            write_all(fd, b"\0" * os.fstat(fd).st_size)
            os.fsync(fd)
        finally:
            os.close(fd)
        unlink_durably(path)

    def _erased_refs(self) -> set[str]:
        if self._erased is None:
            path = self.folder / ERASED_FILE
            text = path.read_text("utf-8") if path.exists() else ""
            self._erased = {line.strip() for line in text.splitlines() if line.strip()}
        return self._erased

    def _record_erased(self, ref: str) -> None:
        append_durably(self.folder / ERASED_FILE, f"{ref}\n".encode("ascii"), mode=0o600)
        self._erased_refs().add(ref)

    def _clean_stale(self) -> None:
        """Remove temporary files a crash left behind (old enough not to be in use)."""
        now = time.time()
        for entry in os.listdir(self.folder):
            if entry.startswith(_TMP_PREFIX):
                path = self.folder / entry
                try:
                    if now - path.stat().st_mtime > _STALE_TMP_S:
                        path.unlink()
                except FileNotFoundError:
                    pass

    def _forget(self) -> None:
        self._refs.clear()
        self._deks.clear()
        self._ciphers.clear()
        self._files = None


def default_kek_path(env: Mapping[str, str] | None = None) -> Path:
    """Where the key-encryption key lives when nothing else says."""
    return config_dir(env) / DEFAULT_KEK_NAME


def load_kek(path: Path | None = None, *, create: bool = False,
             env: Mapping[str, str] | None = None) -> bytes:
    """The 32-byte key-encryption key, from the first place that has one.

    Order: ``path``; ``$MONITORING_AUDIT_KEK`` (base64); ``$MONITORING_AUDIT_KEK_FILE``;
    ``$XDG_CONFIG_HOME/monitoring/audit-kek``. With ``create``, a missing file at the chosen
    path is generated (mode 0600). Files others may read are refused.
    """
    env = os.environ if env is None else env
    if path is None:
        inline = env.get(ENV_KEK)
        if inline:
            return decode_secret32(inline.encode(), f"${ENV_KEK}")
        from_env = env.get(ENV_KEK_FILE)
        path = Path(from_env) if from_env else default_kek_path(env)
    if create and not path.exists():
        kek = os.urandom(32)
        try:
            write_secret_file(path, base64.b64encode(kek) + b"\n")
        except SigningKeyError:
            if not path.exists():
                raise
        else:
            return kek
    if not path.exists():
        raise SigningKeyError(f"{path}: no key-encryption key; set ${ENV_KEK} (base64 of 32 "
                              f"random bytes) or ${ENV_KEK_FILE}, or let 'monitoring audit "
                              "init' create one")
    return decode_secret32(load_secret_file(path), str(path))
