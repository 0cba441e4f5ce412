"""The audit ledger: open (or create) it in a store, append events durably, prove them.

:meth:`Ledger.open` is the one entry point. It takes the writer lock, creates the tables and
the genesis entry (seq 0: ``system``/``ledger.open`` with the origin and the first public
key) on first use, compares the store with the sidecar and the anchors
(:func:`monitoring.audit.recovery.startup_check`: ROLLBACK, FORK, MISSING_LOG, TAMPERED and
SIDECAR_CORRUPT raise :class:`LedgerAlarmError`, nothing gets signed), copies checkpoints a
crash left out of the sidecar back into it, and starts the group-commit writer (writer.py).
Creating a ledger is one transaction (tables, identity, genesis entry and its checkpoint), so
a crash leaves either no ledger or a complete one.

Appending: :meth:`Ledger.append` blocks until the event is durable, :meth:`Ledger.submit`
returns a future, ``await Ledger.log(...)`` / ``await ledger.log_audit_event(**fields)``
suit asyncio code. Durable means: committed to DuckDB with the checkpoint that covers it, and
that checkpoint fsynced in the sidecar.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import duckdb

from monitoring.audit.context import current_correlation_id
from monitoring.audit.envelope import (
    AuditEvent,
    event_from_mapping,
    parse_envelope,
    with_correlation_id,
)
from monitoring.audit.errors import (
    AuditError,
    ErasedError,
    EventError,
    LedgerAlarmError,
    SigningKeyError,
    VerifyFailure,
)
from monitoring.audit.faults import configured_fault
from monitoring.audit.keys import KeyHistory, SigningKey, load_signing_key
from monitoring.audit.lock import WriterLock
from monitoring.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from monitoring.audit.note import open_checkpoint
from monitoring.audit.paths import LedgerPaths, database_path, ledger_paths
from monitoring.audit.policy import AuditPolicy
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import (
    LedgerStorage,
    configure_checkpoints,
    create_schema,
    init_meta,
)
from monitoring.audit.vault import SubjectVault, load_kek, pii_sha256
from monitoring.audit.writer import Appended, CommitListener, Head, Writer

if TYPE_CHECKING:
    from monitoring.audit.alarms import Alarm
    from monitoring.audit.anchors import Anchor, AnchorService

__all__ = ["Appended", "Ledger", "alog_audit_event", "log_audit_event", "new_origin"]

ORIGIN_PREFIX = "monitoring.local/audit/"
FATAL_ALARMS = frozenset({"ROLLBACK", "FORK", "MISSING_LOG", "TAMPERED", "SIDECAR_CORRUPT"})
"""Alarm kinds that stop :meth:`Ledger.open` (an UNANCHORED alarm only warns)."""

EventLike = AuditEvent | Mapping[str, Any]
T = TypeVar("T")


def new_origin() -> str:
    """A fresh ledger origin: ``monitoring.local/audit/<uuid4 hex>``."""
    return ORIGIN_PREFIX + uuid.uuid4().hex


class Ledger:
    """An open, writable audit ledger (one per store and process; see :meth:`open`)."""

    def __init__(self, *, conn: duckdb.DuckDBPyConnection, owns_conn: bool, paths: LedgerPaths,
                 lock: WriterLock, storage: LedgerStorage, writer: Writer, vault: SubjectVault,
                 policy: AuditPolicy, sidecar: Sidecar, anchors: Sequence[Anchor],
                 alarms: Sequence[Alarm], history: KeyHistory | None) -> None:
        self._conn = conn
        self._owns_conn = owns_conn
        self.paths = paths
        self._lock = lock
        self.storage = storage
        self._writer = writer
        self.vault = vault
        self.policy = policy
        self.sidecar = sidecar
        self.anchors = list(anchors)
        self.alarms: list[Alarm] = list(alarms)
        """Alarms the startup check raised that did not stop the open (UNANCHORED, or any
        with ``check=False``)."""
        self.history = history
        self.anchor_service: AnchorService | None = None
        self._closed = False

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(cls, db: str | Path | duckdb.DuckDBPyConnection, *, key_path: Path | None = None,
             kek_path: Path | None = None, key: SigningKey | None = None,
             kek: bytes | None = None, sidecar: Path | None = None,
             vault_dir: Path | None = None, policy: AuditPolicy | None = None,
             anchors: Sequence[Anchor] = (), batch_max: int = 1000, batch_ms: float = 20.0,
             clock: Callable[[], int] = time.time_ns, check: bool = True,
             origin: str | None = None, lock_path: Path | None = None,
             anchor_options: Mapping[str, Any] | None = None) -> Ledger:
        """Open the ledger in ``db``, creating it on first use.

        ``db`` is a DuckDB file path, or a connection to share (the live engine's).
        ``key``/``key_path`` and ``kek``/``kek_path`` override where the signing key and the
        key-encryption key come from (default: the environment, then the user's config
        folder). ``clock`` returns nanoseconds since the epoch. ``origin`` names a *new*
        ledger (default: a random one). With ``anchors``, checkpoints are also published to
        them in the background (an :class:`~monitoring.audit.anchors.AnchorService` built
        with ``anchor_options``). ``check=False`` opens in spite of startup alarms (for the
        operator who acknowledges them); the alarms are then in :attr:`alarms`.
        """
        configured_fault()
        if isinstance(db, duckdb.DuckDBPyConnection):
            base: duckdb.DuckDBPyConnection | None = db
            db_path = database_path(db)
        else:
            base, db_path = None, Path(db)
        paths = ledger_paths(db_path, sidecar=sidecar, vault_dir=vault_dir, lock=lock_path,
                             key=key_path, kek=kek_path)
        lock = WriterLock(paths.lock)
        lock.acquire()
        conn: duckdb.DuckDBPyConnection | None = None
        try:
            conn = base if base is not None else _connect(paths.db)
            ledger = cls._open_locked(
                conn, base is None, paths, lock, key=key, kek=kek, policy=policy,
                anchors=anchors, batch_max=batch_max, batch_ms=batch_ms, clock=clock,
                check=check, origin=origin)
        except BaseException:
            if base is None and conn is not None:
                conn.close()
            lock.release()
            raise
        if anchors:
            ledger._start_anchoring(anchor_options or {})
        return ledger

    @classmethod
    def _open_locked(cls, conn: duckdb.DuckDBPyConnection, owns_conn: bool, paths: LedgerPaths,
                     lock: WriterLock, *, key: SigningKey | None, kek: bytes | None,
                     policy: AuditPolicy | None, anchors: Sequence[Anchor], batch_max: int,
                     batch_ms: float, clock: Callable[[], int], check: bool,
                     origin: str | None) -> Ledger:
        sidecar = Sidecar(paths.sidecar)
        policy = policy or AuditPolicy.default()
        read = conn.cursor()
        exists = LedgerStorage.exists(read)
        storage = LedgerStorage(read) if exists else None
        history = _key_history(storage) if storage is not None else None
        alarms = _startup_check(storage, sidecar, anchors, history)
        fatal = [a for a in alarms if str(a.kind) in FATAL_ALARMS]
        if fatal and check:
            raise LedgerAlarmError(fatal)
        if storage is None:
            origin = origin or new_origin()
            key = _named(key, origin) if key else load_signing_key(origin, paths.key,
                                                                   create=True)
        else:
            origin = storage.origin
            key = _named(key, origin) if key else load_signing_key(origin, paths.key)
            if history is not None and history.current != key.verifier():
                raise SigningKeyError(
                    f"the signing key given ({key.verifier().key_hex}) is not this ledger's "
                    f"current key ({history.current.key_hex}); after a rotation, open the "
                    "ledger with the new key")
        vault = SubjectVault.open(paths.vault, kek if kek is not None else load_kek(
            paths.kek, create=not _has_files(paths.vault)))
        head = _head(storage) if storage is not None else Head(0, EMPTY_ROOT, Frontier(), 0, 0)
        configure_checkpoints(conn)
        wal = paths.db.with_name(paths.db.name + ".wal") if paths.db is not None else None
        writer = Writer(conn.cursor(), origin=origin, key=key, vault=vault, policy=policy,
                        sidecar=sidecar, head=head, clock=clock, batch_max=batch_max,
                        batch_ms=batch_ms, wal=wal)
        if storage is None:
            created_us = clock() // 1000
            writer.commit_now([genesis_event(origin, key)],
                              prelude=lambda cur: _create(cur, origin, created_us))
            storage = LedgerStorage(read)
            history = KeyHistory.genesis(key.verifier())
        else:
            _recover_sidecar(storage, sidecar, history, origin)
        writer.start()
        return cls(conn=conn, owns_conn=owns_conn, paths=paths, lock=lock, storage=storage,
                   writer=writer, vault=vault, policy=policy, sidecar=sidecar, anchors=anchors,
                   alarms=alarms, history=history)

    def _start_anchoring(self, options: Mapping[str, Any]) -> None:
        from monitoring.audit.anchors import AnchorService

        service = AnchorService(self, self.anchors, **options)
        self.anchor_service = service
        self.on_commit(lambda _cp, _note: service.notify())
        service.start()

    # ------------------------------------------------------------------ properties

    @property
    def origin(self) -> str:
        """The ledger's identity (in every envelope and checkpoint)."""
        return self._writer.origin

    @property
    def key(self) -> SigningKey:
        """The key that signs the next checkpoint."""
        return self._writer.key

    @property
    def size(self) -> int:
        """The committed tree size (the newest checkpoint's)."""
        return self._writer.head.size

    @property
    def failed(self) -> AuditError | None:
        """Why the writer stopped (a FORK, a failed sidecar write), or None while it runs."""
        return self._writer.failed

    def on_commit(self, listener: CommitListener) -> None:
        """Call ``listener(checkpoint, note)`` on the committer thread after each durable batch.

        It must return quickly and must not append to this ledger synchronously (the writer
        would wait for itself); its exceptions are kept in ``listener_errors``, not raised.
        """
        self._writer.listeners.append(listener)

    @property
    def listener_errors(self) -> list[BaseException]:
        """Exceptions raised by :meth:`on_commit` listeners."""
        return self._writer.listener_errors

    # ------------------------------------------------------------------ appending

    def submit(self, event: EventLike) -> Future[Appended]:
        """Queue one event; the future resolves once it is durable (or was filtered out).

        A malformed event raises :class:`EventError` here, naming the field; a field the
        compliance presets require but the event lacks fails the future.
        """
        self._check_open()
        return self._writer.submit(self._prepare(event))

    def append(self, event: EventLike) -> Appended:
        """Record one event and wait until it is durable."""
        return self._wait(self.submit(event))

    def append_many(self, events: Sequence[EventLike]) -> list[Appended]:
        """Record events in one batch: all become durable together, or none is recorded."""
        self._check_open()
        prepared = []
        for i, ev in enumerate(events):
            try:
                prepared.append(self._prepare(ev))
            except EventError as exc:
                raise EventError(f"[{i}].{exc.field}" if exc.field else f"[{i}]",
                                 exc.message) from None
        return self._wait(self._writer.submit_many(prepared))

    def _prepare(self, event: EventLike) -> AuditEvent:
        """The event checked, with its subjects' keys made on the caller's thread.

        A missing ``correlation_id`` is filled from the caller's context
        (:func:`~monitoring.audit.context.current_correlation_id`): this runs on the
        producer's thread or task, where a ``with correlation():`` block is in effect, never
        on the writer's. A new data subject's key is a file written and fsynced in the vault;
        doing that here keeps the writer thread (which every producer waits for) from
        stalling on it.
        """
        checked = _event(event)
        if checked.correlation_id is None:
            current = current_correlation_id()
            if current is not None:
                checked = with_correlation_id(checked, current)
        subject, user_id = checked.data_subject, checked.user_id
        if subject is not None:
            self.vault.ref_for(subject)
        if user_id is not None and user_id != subject:
            self.vault.ref_for(user_id)
        return checked

    async def log(self, event: EventLike) -> Appended:
        """Record one event from asyncio code; returns once it is durable."""
        return await asyncio.wrap_future(self.submit(event))

    async def log_audit_event(self, **fields: Any) -> Appended:
        """Record an event given as the seed's keyword arguments (``event_type=...``)."""
        return await self.log(fields)

    def flush(self) -> None:
        """Wait until every event queued so far is durable."""
        self._check_open()
        self._wait(self._writer.flush())

    def exclusive(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn(write_cursor)`` on the thread that owns the write cursor, between batches.

        Everything queued before the call is committed first; producers keep queueing while
        ``fn`` runs and their events are written after it. Returns ``fn``'s result or raises
        its exception (a transaction it left open is rolled back). For maintenance that
        changes the store (retention.py, erasure.py): ``fn`` must not append to this ledger
        or wait for it, since the writer waits for ``fn``.
        """
        self._check_open()
        result: T = self._wait(self._writer.exclusive(fn))
        return result

    def rotate_key(self, new: SigningKey) -> Appended:
        """Switch to a new signing key, recorded as a ``system``/``key.rotate`` event.

        The event is committed alone and its checkpoint (size R) is signed by the old key;
        verifiers accept the old key for sizes <= R and the new one for sizes > R.
        """
        self._check_open()
        new = _named(new, self.origin)
        if new.verifier() == self.key.verifier():
            raise SigningKeyError("rotate_key: the new key is the current key")
        appended = self._wait(self._writer.rotate(new))
        if self.history is not None:
            self.history.rotate(new.verifier(), appended.checkpoint_size)
        return appended

    def _wait(self, future: Future[T]) -> T:
        if threading.current_thread() in self._writer.threads:
            raise AuditError("the audit writer thread cannot wait for its own commits "
                             "(a commit listener must not append synchronously)")
        return future.result()

    def _check_open(self) -> None:
        if self._closed:
            raise AuditError("the ledger is closed")

    # ------------------------------------------------------------------ reading

    def inclusion_proof(self, seq: int, size: int | None = None) -> list[bytes]:
        """The RFC 9162 inclusion proof of entry ``seq`` in the tree of ``size``.

        ``size`` defaults to the newest checkpoint's.
        """
        size = self._checked_size(size)
        if not 0 <= seq < size:
            raise AuditError(f"seq {seq}: not in the tree of size {size}")
        return inclusion_proof(self.storage, seq, size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The RFC 9162 consistency proof from tree size ``size1`` to ``size2``."""
        self._checked_size(size2)
        if not 0 <= size1 <= size2:
            raise AuditError(f"consistency proof: expected 0 <= size1 <= size2, got {size1} "
                             f"and {size2}")
        return consistency_proof(self.storage, size1, size2)

    def _checked_size(self, size: int | None) -> int:
        committed = self.storage.head_size()
        if size is None:
            return committed
        if not 0 < size <= committed:
            raise AuditError(f"tree size {size}: the ledger has checkpoints up to size "
                             f"{committed}")
        return size

    def personal(self, seq: int) -> dict[str, Any] | None:
        """The decrypted ``user_id``, ``source`` and ``details`` of entry ``seq``.

        None when the entry has no personal data or its subject was erased. The sealed data
        is checked against the commitment in the entry's envelope, and the envelope against
        its leaf hash, before it is decrypted.
        """
        sealed = self.storage.pii(seq)
        entry = self.storage.entry(seq)
        if sealed is None or entry is None:
            return None
        if not entry.envelope or leaf_hash(entry.envelope) != entry.leaf:
            raise VerifyFailure(seq, "the envelope does not match its leaf hash")
        commitment = parse_envelope(entry.envelope).get("pii") or {}
        digest = pii_sha256(sealed.nonce, sealed.ciphertext)
        if commitment.get("sha256") != digest or commitment.get("ref") != sealed.ref:
            raise VerifyFailure(seq, "the sealed personal data does not match the envelope's "
                                "commitment")
        try:
            plain = self.vault.open_sealed(sealed.ref, sealed.nonce, sealed.ciphertext,
                                           f"{self.origin}|{seq}".encode())
        except ErasedError:
            return None
        value = json.loads(plain)
        return value if isinstance(value, dict) else None

    # ------------------------------------------------------------------ maintenance

    def erase(self, subject: str, reason: str, *, force: bool = False) -> Appended:
        """Crypto-shred a data subject (see :func:`monitoring.audit.erasure.erase`)."""
        from monitoring.audit.erasure import erase

        self._check_open()
        return erase(self, subject, reason, force=force)

    def close(self) -> None:
        """Commit what is queued, stop the writer and release the store and the lock."""
        if self._closed:
            return
        self._closed = True
        try:
            if self.anchor_service is not None:
                self.anchor_service.stop()
            self._writer.close()
        finally:
            self.sidecar.close()
            self._writer.conn.close()
            self.storage.conn.close()
            if self._owns_conn:
                self._conn.close()
            self._lock.release()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def log_audit_event(ledger: Ledger, **fields: Any) -> Appended:
    """The seed's ``log_audit_event`` for plain code: record and wait until durable."""
    return ledger.append(fields)


async def alog_audit_event(ledger: Ledger, **fields: Any) -> Appended:
    """The seed's ``await log_audit_event(...)`` for asyncio code."""
    return await ledger.log(fields)


def genesis_event(origin: str, key: SigningKey) -> AuditEvent:
    """Entry 0 of every ledger: its origin and first public key, in the clear."""
    return AuditEvent(event_type="system", action="ledger.open", severity="notice",
                      resource="audit-ledger", details={"origin": origin, "vkey": key.vkey()})


# ---------------------------------------------------------------------- helpers


def _event(event: EventLike) -> AuditEvent:
    return event if isinstance(event, AuditEvent) else event_from_mapping(event)


def _named(key: SigningKey, origin: str) -> SigningKey:
    """The key under the ledger's origin as its note name (key names are origins)."""
    return key if key.name == origin else SigningKey(origin, key.private)


def _connect(path: Path | None) -> duckdb.DuckDBPyConnection:
    from monitoring.engine.store import describe_open_error

    assert path is not None
    try:
        return duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise AuditError(describe_open_error(path, str(exc))) from None


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(folder.iterdir())


def _create(cur: duckdb.DuckDBPyConnection, origin: str, created_us: int) -> None:
    """Tables and identity of a new ledger (inside the genesis entry's transaction)."""
    create_schema(cur)
    init_meta(cur, origin, created_us)


def _head(storage: LedgerStorage) -> Head:
    """The committed head the writer extends.

    A store whose frontier, entries and newest checkpoint disagree is refused: appending to it
    would sign a tree nobody can verify.
    """
    frontier: Frontier = storage.frontier()
    latest = storage.latest_checkpoint()
    size, root = (latest.size, latest.root) if latest else (0, EMPTY_ROOT)
    entries = storage.size()
    if frontier.size != size or entries != size or frontier.root() != root:
        raise AuditError(
            f"refusing to append: the store is inconsistent (frontier size {frontier.size}, "
            f"newest checkpoint size {size}, entries up to seq {entries - 1}); run "
            "'monitoring audit verify --full'")
    last_ts = storage.newest_ts_us()
    return Head(size, root, frontier, last_ts, last_ts)


def _recover_sidecar(storage: LedgerStorage, sidecar: Sidecar, history: KeyHistory | None,
                     origin: str) -> None:
    """Copy checkpoints the store has and the sidecar lacks into the sidecar.

    That happens after a crash between the commit and the sidecar append; each checkpoint's
    signature and key window are checked first. A torn final line (a crash during the append)
    is cut off before anything is appended.
    """
    sidecar.truncate_torn()
    records = sidecar.read()
    have = records[-1].size if records else 0
    missing = [cp for cp in storage.checkpoints() if cp.size > have]
    if missing and history is None:
        raise AuditError("cannot restore the sidecar: the ledger's key history is unknown")
    for cp in missing:
        assert history is not None
        try:
            found, signers = open_checkpoint(cp.note, history.verifiers, origin)
            history.check_any(signers, cp.size)
        except AuditError as exc:
            raise VerifyFailure(None, f"the store's checkpoint of size {cp.size} does not "
                                f"verify ({exc}); not copying it to the sidecar") from None
        if found.size != cp.size or found.root != cp.root:
            raise VerifyFailure(None, f"the store's checkpoint of size {cp.size}: its note "
                                "says another size or root than its row")
        sidecar.append(cp.size, cp.root, cp.note)


def _key_history(storage: LedgerStorage) -> KeyHistory | None:
    """The key history of the verified genesis and rotation events, or None.

    None when it cannot be derived (the startup check then says why).
    """
    from monitoring.audit.verify import key_history  # verify imports this package's parts

    try:
        return key_history(storage)
    except AuditError:
        return None


def _startup_check(storage: LedgerStorage | None, sidecar: Sidecar, anchors: Sequence[Anchor],
                   history: KeyHistory | None) -> list[Alarm]:
    from monitoring.audit.recovery import startup_check

    return startup_check(storage, sidecar, anchors, history)
