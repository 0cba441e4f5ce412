"""The group-commit writer: queued events become durable, signed batches.

Producers enqueue requests and get a :class:`~concurrent.futures.Future` (acks.py: one shared
condition, one wake-up per batch). The writer thread keeps one batch open and adds to it what
arrives; it signs and hands the batch over as soon as the committer is free, or when the
batch holds ``batch_max`` events, or ``batch_ms`` after its first event (while the committer
is still busy), or when someone waits for it (a flush). So an idle ledger commits each event
at once, and a busy one commits whatever arrived during the previous commit, up to
``batch_max``: no batch ever waits for a window the committer does not need. For each batch:

1. applies the policy (filtered events resolve with ``recorded=False``) and the compliance
   presets' required fields (a missing field fails that event's future only);
2. assigns contiguous seqs and non-decreasing timestamps (a clock that went back more than a
   second is itself recorded as a ``system``/``clock.backwards`` event);
3. seals personal data per subject (AES-256-GCM, AAD ``origin|seq``), builds the canonical
   envelopes and their leaf hashes, extends the Merkle frontier and signs ONE checkpoint;
4. in ONE DuckDB transaction, checks that the stored head is still the one it extends
   (compare-and-swap: anything else is a FORK and the writer stops signing), then writes
   entries, sealed data, tree nodes, the checkpoint and the frontier, and commits;
5. appends the checkpoint to the sidecar and fsyncs it; only then resolves the futures.

Steps 1-3 run on the writer thread (step 3's signature when the batch is handed over), 4-5
on a committer thread that alone owns the write cursor, so the next batch is built while the
previous one commits (the GIL is released during DuckDB's work and the fsyncs). At most one
signed batch waits for the committer. A failure stops both: every batch built on top of a
failed one fails too. Between batches the committer also runs exclusive work
(:meth:`Writer.exclusive`: retention, erasure) and, when the writer has been idle for a
while, a DuckDB CHECKPOINT of a large WAL (storage.WAL_CHECKPOINT_BYTES says why).

A crash at any point leaves the store at the old or the new batch, and no future was resolved
before both the store and the sidecar held the batch (the crash tests kill the process at each
step through :func:`~monitoring.audit.faults.fault_point`). The writer never logs through
:mod:`logging`: a log handler that writes into this ledger would wait for itself.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from monitoring.audit.acks import AckFuture, resolve_all
from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.envelope import AuditEvent, EnvelopeBuilder, personal_payload
from monitoring.audit.errors import AuditError, EventError, LedgerAlarmError
from monitoring.audit.faults import fault_point
from monitoring.audit.keys import SigningKey
from monitoring.audit.merkle import Frontier, leaf_hash
from monitoring.audit.note import Checkpoint, sign_checkpoint
from monitoring.audit.policy import AuditPolicy, Decision
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import (
    IDLE_CHECKPOINT_BYTES,
    IDLE_CHECKPOINT_S,
    BatchRows,
    StoredCheckpoint,
    checkpoint_if_large,
    frontier_json,
    insert_batch,
    stored_head,
)
from monitoring.audit.vault import PiiCommitment, Sealed, SubjectVault

CLOCK_BACKWARDS_US = 1_000_000
"""A clock reading this far (1 s) behind the previous one is recorded as ``clock.backwards``."""

Prelude = Callable[[duckdb.DuckDBPyConnection], None]
"""Statements run at the start of a batch's transaction (creating a new ledger's tables)."""

CommitListener = Callable[[Checkpoint, str], None]
"""Called by the committer thread after each acknowledged batch with its checkpoint and note."""


@dataclass(frozen=True)
class Appended:
    """The outcome of one event.

    ``seq`` is None when the policy filtered the event out; ``checkpoint_size`` is the size of
    the checkpoint that covers it (the tree size after its batch; the current size for a
    filtered event); ``reason`` is the policy's, for a filtered event.
    """

    seq: int | None
    recorded: bool
    checkpoint_size: int
    reason: str = ""


@dataclass
class Head:
    """What the writer extends: the committed tree and the newest timestamps."""

    size: int
    root: bytes
    frontier: Frontier
    last_ts_us: int
    """Timestamp of the newest entry (timestamps never decrease)."""
    last_clock_us: int
    """The previous clock reading (to notice a clock that jumped back)."""


Task = Callable[[duckdb.DuckDBPyConnection], Any]
"""Work run on the committer thread with the write cursor, between two batches."""


@dataclass(eq=False, slots=True)
class _Request:
    """A queued request other than a single event."""

    kind: str  # "many" | "rotate" | "flush" | "exclusive"
    future: AckFuture
    events: Sequence[AuditEvent] = ()
    key: SigningKey | None = None
    task: Task | None = None
    arrived: float = field(default_factory=time.monotonic)

    @property
    def count(self) -> int:
        """Events this request adds to a batch."""
        return len(self.events)


class _EventAck(AckFuture):
    """The future of one submitted event, which is also its place in the queue.

    Single events are nearly all the traffic, so they travel as their own future (the event,
    its arrival time and, once built, its seq ride on it) instead of as a request object
    holding a future: fewer objects per event in flight for the garbage collector to track.
    """

    kind = "event"
    count = 1

    def __init__(self, condition: threading.Condition, event: AuditEvent) -> None:
        super().__init__(condition)
        self.event = event
        self.arrived = time.monotonic()
        self.outcome: Appended | int = 0
        """The seq it was recorded at, or the :class:`Appended` of a filtered event."""

    @property
    def future(self) -> _EventAck:
        """The future to resolve (itself)."""
        return self


_Queued = _Request | _EventAck


@dataclass
class _Batch:
    """The writer's work for one commit, built before anything is written."""

    rows: list[tuple[object, ...]] = field(default_factory=list)
    pii: list[tuple[int, str, bytes, bytes]] = field(default_factory=list)
    nodes: list[tuple[int, int, bytes]] = field(default_factory=list)
    singles: list[_EventAck] = field(default_factory=list)
    """Single events, their ``outcome`` set, to resolve once the batch is durable."""
    results: list[tuple[AckFuture, list[Appended | int], bool]] = field(default_factory=list)
    """Futures to resolve once the batch is durable, their results (the seq of a recorded
    event, the :class:`Appended` of a filtered one), and whether the future takes one result
    (an event, a rotation) rather than the list (``submit_many``)."""


@dataclass
class _Open:
    """The batch the writer is building; more events join it while the committer is busy."""

    base: Head
    """The head it extends (the newest signed batch's)."""
    frontier: Frontier
    last_ts_us: int
    last_clock_us: int
    first: float
    """When its first request arrived (``time.monotonic``): the batch window starts there."""
    batch: _Batch = field(default_factory=_Batch)
    flushes: list[AckFuture] = field(default_factory=list)
    count: int = 0
    """Events taken into it (recorded, filtered or refused), for ``batch_max``."""

    def futures(self) -> list[AckFuture]:
        """Every future it resolves."""
        return [*self.batch.singles, *(f for f, _, _ in self.batch.results), *self.flushes]


@dataclass
class _Prepared:
    """A built and signed batch on its way to the committer thread."""

    rows: BatchRows | None
    """None when there is nothing to write (only filtered events, flushes)."""
    singles: list[_EventAck]
    results: list[tuple[AckFuture, list[Appended | int], bool]]
    flushes: list[AckFuture]
    base: tuple[int, bytes]
    """The committed head (size, root) the batch extends: checked before writing."""
    head: Head
    """The head after the batch."""
    checkpoint: Checkpoint | None = None
    note: str = ""
    prelude: Prelude | None = None
    task: tuple[Task, AckFuture] | None = None
    """Exclusive work (and the future of its result) instead of a batch."""

    def futures(self) -> list[AckFuture]:
        """Every future the batch resolves."""
        extra = [self.task[1]] if self.task is not None else []
        return [*self.singles, *(f for f, _, _ in self.results), *self.flushes, *extra]


class Writer:
    """The writer and committer threads of a ledger (see the module docstring)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, *, origin: str, key: SigningKey,
                 vault: SubjectVault, policy: AuditPolicy, sidecar: Sidecar, head: Head,
                 clock: Callable[[], int], batch_max: int, batch_ms: float,
                 wal: Path | None = None) -> None:
        if batch_max < 1:
            raise AuditError(f"batch_max: expected at least 1, got {batch_max}")
        if batch_ms < 0:
            raise AuditError(f"batch_ms: expected a non-negative number, got {batch_ms}")
        self.conn = conn
        self.origin = origin
        self.key = key
        self._signer = key.signer()
        self.vault = vault
        self.policy = policy
        self._admissions = Admissions()
        self._envelopes = EnvelopeBuilder(origin)
        self.sidecar = sidecar
        self.head = head
        """The committed head (what the store and the sidecar hold)."""
        self._next = head
        """The head after the newest built batch (what the next batch extends)."""
        self.clock = clock
        self.batch_max = batch_max
        self.batch_s = batch_ms / 1000.0
        self.listeners: list[CommitListener] = []
        self.listener_errors: list[BaseException] = []
        """Exceptions raised by commit listeners (kept, never raised into the writer)."""
        self._cond = threading.Condition()
        self._acks = threading.Condition()
        """Shared by every future this writer hands out (acks.py): one wake-up per batch."""
        self._pending: deque[_Queued] = deque()
        self._pending_events = 0
        self._urgent = 0
        """Queued requests someone waits for (rotate, flush, exclusive): no batch window."""
        self._closing = False
        self._failed: AuditError | None = None
        self._handoff: queue.Queue[_Prepared | None] = queue.Queue(maxsize=1)
        self._busy = 0
        """Batches handed to the committer and not yet committed (under ``_cond``)."""
        self._notify_at = 1
        """Queued events that make a producer wake the writer: 1 while it waits for work,
        :data:`CHUNK` while it waits for the committer with a batch open."""
        self._threads: tuple[threading.Thread, ...] = ()
        self._wal = wal
        """The store's write-ahead log, checkpointed when the writer is idle (None: none)."""
        self._dirty = False
        """Whether a batch was committed since the last idle-time checkpoint."""
        self.idle_checkpoint_s = IDLE_CHECKPOINT_S
        self.idle_checkpoint_bytes = IDLE_CHECKPOINT_BYTES
        self.idle_checkpoints = 0
        """Idle-time checkpoints that ran (see storage.WAL_CHECKPOINT_BYTES)."""

    # ------------------------------------------------------------------ producer side

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        """The writer and committer threads (empty before :meth:`start`)."""
        return self._threads

    @property
    def failed(self) -> AuditError | None:
        """The error that stopped the writer (a FORK alarm, a failed sidecar write), if any."""
        return self._failed

    def start(self) -> None:
        """Start the writer and committer threads."""
        self._threads = (
            threading.Thread(target=self._run, name=f"audit-writer {self.origin}", daemon=True),
            threading.Thread(target=self._commit_loop, name=f"audit-commit {self.origin}",
                             daemon=True))
        for thread in self._threads:
            thread.start()

    def submit(self, event: AuditEvent) -> Future[Appended]:
        """Queue one event; the future resolves when it is durable (or filtered)."""
        return self._enqueue(_EventAck(self._acks, event))

    def submit_many(self, events: Sequence[AuditEvent]) -> Future[list[Appended]]:
        """Queue events that are committed in one batch, or all fail together."""
        return self._enqueue(_Request("many", AckFuture(self._acks), tuple(events)))

    def rotate(self, new: SigningKey) -> Future[Appended]:
        """Queue a key rotation: committed alone, signed by the current key."""
        return self._enqueue(_Request("rotate", AckFuture(self._acks), key=new))

    def flush(self) -> Future[None]:
        """A future that resolves once everything queued before it is durable."""
        return self._enqueue(_Request("flush", AckFuture(self._acks)))

    def exclusive(self, task: Task) -> Future[Any]:
        """Run ``task(write_cursor)`` on the committer thread between two batches.

        Everything queued before it is committed first and nothing queued after it is written
        until it returns, so maintenance (prune, archive, erasure, CHECKPOINT) never conflicts
        with a commit. The future holds its result or its exception; an exception does not
        stop the writer (a transaction the task left open is rolled back).
        """
        return self._enqueue(_Request("exclusive", AckFuture(self._acks), task=task))

    def _enqueue(self, request: _Queued) -> Future[Any]:
        with self._cond:
            refused = self._failed
            if refused is None and self._closing:
                refused = AuditError("the ledger is closed")
            if refused is None:
                self._pending.append(request)
                self._pending_events += request.count
                if request.kind in _URGENT:
                    self._urgent += 1
                if self._urgent or self._pending_events >= self._notify_at:
                    self._cond.notify()
                return request.future
        self._fail([request.future], refused)
        return request.future

    def _settle(self, outcomes: Iterable[tuple[AckFuture, Any, BaseException | None]]) -> None:
        """Resolve futures ``(future, result, error)`` with one wake-up (acks.py)."""
        resolve_all(self._acks, outcomes)

    def _fail(self, futures: Iterable[AckFuture], error: BaseException) -> None:
        self._settle((future, None, error) for future in futures)

    def _resolve(self, future: AckFuture, result: Any = None, *,
                 error: BaseException | None = None) -> None:
        self._settle([(future, result, error)])

    def close(self) -> None:
        """Commit what is queued, then stop the threads."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        building: _Open | None = None
        try:
            while True:
                taken = self._take(building)
                if taken is None:
                    return
                requests, seal = taken
                if self._failed is not None:
                    self._fail([*(r.future for r in requests),
                                *(building.futures() if building else [])], self._failed)
                    building = None
                    continue
                try:
                    first = requests[0] if requests else None
                    if isinstance(first, _Request) and first.kind in _ALONE:
                        self._hand_off(self._alone(first))  # never with an open batch
                        continue
                    if requests:
                        if building is None:
                            building = self._open(requests[0].arrived)
                        self._add(building, requests)
                    if seal and building is not None:
                        prepared, building = self._sign(building), None
                        self._hand_off(prepared)
                except BaseException as exc:  # a bug or a DuckDB failure: never hang producers
                    lost = [*(r.future for r in requests),
                            *(building.futures() if building else [])]
                    building = None
                    self._stop(_audit_error(exc), lost)
        finally:
            self._handoff.put(None)

    def _hand_off(self, prepared: _Prepared) -> None:
        """Queue a built batch for the committer (waits while one is already queued)."""
        with self._cond:
            self._busy += 1
        self._handoff.put(prepared)

    def _take(self, building: _Open | None) -> tuple[list[_Queued], bool] | None:
        """Requests to add to the open batch and whether to sign it now; None: stop.

        Without an open batch, waits for the first request. With one, waits until the
        committer is free (then the batch is signed and handed over at once), its window
        (``batch_ms`` from its first request) has passed, or enough requests arrived to be
        worth adding now (:data:`CHUNK`): the batch grows while the previous one commits,
        so building overlaps committing and an idle committer never waits for a window.
        A rotation or exclusive work is taken alone, after the open batch is signed.
        """
        with self._cond:
            pending = self._pending
            while True:
                if pending:
                    if building is not None and pending[0].kind in _ALONE:
                        return [], True
                    if building is None or self._pending_events >= CHUNK or self._urgent:
                        break
                if building is not None:
                    remaining = building.first + self.batch_s - time.monotonic()
                    if not self._busy or self._closing or remaining <= 0:
                        if pending:
                            break
                        return [], True
                    self._notify_at = CHUNK
                    self._cond.wait(remaining)
                    continue
                if self._closing:
                    return None
                self._notify_at = 1
                if self._wal is None:
                    self._cond.wait()
                elif (not self._cond.wait(self.idle_checkpoint_s) and self._dirty
                      and not pending and not self._closing):
                    self._dirty = False
                    return [_Request("exclusive", AckFuture(self._acks),
                                     task=self._idle_checkpoint)], True
            if pending[0].kind in _ALONE:
                request = pending.popleft()
                self._urgent -= 1
                return [request], True
            room = self.batch_max - (building.count if building is not None else 0)
            taken: list[_Queued] = []
            count = 0
            flush = False
            while pending:
                request = pending[0]
                n = request.count
                if request.kind in _ALONE or (count + n > room and (taken or building)):
                    break
                pending.popleft()
                if request.kind in _URGENT:
                    self._urgent -= 1
                    flush = True
                    room = count + n  # a flush ends the batch: seal with what came before
                taken.append(request)
                count += n
            self._pending_events -= count
            total = count + (building.count if building is not None else 0)
            first = building.first if building is not None else (
                taken[0].arrived if taken else time.monotonic())
            seal = (flush or not self._busy or total >= self.batch_max or self._closing
                    or bool(pending) or time.monotonic() >= first + self.batch_s)
            return taken, seal

    def _idle_checkpoint(self, conn: duckdb.DuckDBPyConnection) -> bool:
        """Checkpoint a large WAL while nobody waits (see storage.WAL_CHECKPOINT_BYTES)."""
        assert self._wal is not None
        done = checkpoint_if_large(conn, self._wal, self.idle_checkpoint_bytes)
        self.idle_checkpoints += done
        return done

    def _stop(self, error: AuditError, futures: Sequence[AckFuture]) -> None:
        """Fail these futures and everything queued; refuse further requests."""
        with self._cond:
            if self._failed is None:
                self._failed = error
            rest = [r.future for r in self._pending]
            self._pending.clear()
            self._pending_events = 0
            self._urgent = 0
        self._fail([*futures, *rest], error)

    def _alone(self, request: _Request) -> _Prepared:
        """A rotation, or exclusive work for the committer, with no batch around it."""
        if request.kind == "rotate":
            return self._prepare_rotation(request)
        assert request.task is not None
        base = self._next
        return _Prepared(None, [], [], [], (base.size, base.root), base,
                         task=(request.task, request.future))

    def _open(self, first: float) -> _Open:
        """A new batch extending the newest signed one."""
        head = self._next
        return _Open(head, head.frontier.copy(), head.last_ts_us, head.last_clock_us, first)

    def _add(self, building: _Open, requests: Sequence[_Queued]) -> None:
        """Build these requests' events into the open batch (its frontier grows)."""
        batch = building.batch
        ts = self._timestamp(building)
        size = building.base.size
        decide = self._admissions.admit
        policy = self.policy
        for request in requests:
            building.count += request.count
            if isinstance(request, _EventAck):  # nearly all the traffic
                event = request.event
                try:  # _build changes nothing before it can no longer fail
                    decision = decide(policy, event)
                    request.outcome = (
                        self._build(batch, building.frontier, event, decision.retention, ts)
                        if decision.record else Appended(None, False, size, decision.reason))
                except EventError as exc:
                    self._resolve(request, error=exc)
                    continue
                batch.singles.append(request)
                continue
            if request.kind == "flush":
                building.flushes.append(request.future)
                continue
            accepted = self._admit(request, size)
            if accepted is None:
                continue
            saved = (building.frontier.copy(), len(batch.rows), len(batch.pii),
                     len(batch.nodes))
            try:
                results = [r if r is not None
                           else self._build(batch, building.frontier, e, c, ts)
                           for e, c, r in accepted]
            except EventError as exc:  # this request's events only; the batch goes on
                building.frontier = saved[0]
                del batch.rows[saved[1]:], batch.pii[saved[2]:], batch.nodes[saved[3]:]
                self._resolve(request.future, error=exc)
                continue
            batch.results.append((request.future, results, False))

    def _admit(self, request: _Request, size: int
               ) -> list[tuple[AuditEvent, str, Appended | None]] | None:
        """Policy and required fields for the events of ``append_many``; None if one failed.

        Each accepted event comes with its retention class; a filtered one with the
        :class:`Appended` it resolves to.
        """
        accepted: list[tuple[AuditEvent, str, Appended | None]] = []
        policy = self.policy
        decide = self._admissions.admit
        for i, event in enumerate(request.events):
            try:
                decision = decide(policy, event)
            except EventError as exc:
                self._resolve(request.future, error=EventError(f"[{i}].{exc.field}",
                                                               exc.message))
                return None
            accepted.append((event, decision.retention, None if decision.record else
                             Appended(None, False, size, decision.reason)))
        return accepted

    def _timestamp(self, building: _Open) -> int:
        """The timestamp (µs) of the events being added to the open batch.

        Read from the clock for each group of events added; it never goes below the newest
        entry's, and a clock that went back more than a second is recorded as a
        ``clock.backwards`` event (catalogue T42).
        """
        now = self.clock() // 1000
        previous = building.last_clock_us
        ts = max(now, building.last_ts_us)
        building.last_ts_us, building.last_clock_us = ts, now
        if now < previous - CLOCK_BACKWARDS_US:
            event = AuditEvent(
                event_type="system", action="clock.backwards", severity="warning",
                resource="clock", outcome=None,
                details={"clock_us": now, "previous_clock_us": previous,
                         "behind_us": previous - now, "recorded_ts_us": ts})
            self._build(building.batch, building.frontier, event,
                        self.policy.decide(event).retention, ts)
        return ts

    def _build(self, batch: _Batch, frontier: Frontier, event: AuditEvent, retention: str,
               ts: int) -> int:
        """Seal, canonicalise and hash one event as the next entry, into ``batch``.

        Returns its seq. Everything that can fail (an oversized event) happens before the
        batch or the frontier changes.
        """
        seq = frontier.size
        vault = self.vault
        user_id = event.user_id
        subject = event.data_subject
        pii: PiiCommitment | None = None
        sealed: Sealed | None = None
        if subject is not None:
            payload = personal_payload(event)
            if payload is not None:
                sealed = vault.seal(subject, payload, f"{self.origin}|{seq}".encode())
                pii = sealed.commitment()
        if user_id is None:
            actor = None
        elif sealed is not None and subject == user_id:
            actor = sealed.ref
        else:
            actor = vault.ref_for(user_id)
        envelope = self._envelopes.build(event, seq=seq, ts_us=ts, actor=actor,
                                         retention=retention, pii=pii)
        leaf = leaf_hash(envelope)
        if sealed is not None:
            batch.pii.append((seq, sealed.ref, sealed.nonce, sealed.ciphertext))
        batch.nodes.extend(frontier.append(leaf))
        batch.rows.append((seq, ts, event.event_type, event.action, event.severity,
                           event.resource, event.outcome, actor, event.correlation_id,
                           retention, envelope, leaf))
        return seq

    def _sign(self, building: _Open, prelude: Prelude | None = None) -> _Prepared:
        """Sign the batch's checkpoint; the head after it becomes the one to extend."""
        base, batch, frontier = building.base, building.batch, building.frontier
        if not batch.rows:
            return _Prepared(None, batch.singles, batch.results, building.flushes,
                             (base.size, base.root), base)
        root = frontier.root()
        checkpoint = Checkpoint(self.origin, frontier.size, root)
        note = sign_checkpoint(checkpoint, self._signer)
        stored = StoredCheckpoint(frontier.size, root, note, time.time_ns() // 1000)
        rows = BatchRows(batch.rows, batch.pii, batch.nodes, stored, frontier_json(frontier))
        head = Head(frontier.size, root, frontier, building.last_ts_us, building.last_clock_us)
        self._next = head
        return _Prepared(rows, batch.singles, batch.results, building.flushes,
                         (base.size, base.root), head, checkpoint, note, prelude)

    def _prepare_rotation(self, request: _Request) -> _Prepared:
        """A ``key.rotate`` event alone, signed by the old key; later batches use the new."""
        new = request.key
        assert new is not None
        old = self.key
        event = AuditEvent(
            event_type="system", action="key.rotate", severity="notice", resource="signing-key",
            details={"old_key_id": old.verifier().key_id.hex(), "old_vkey": old.vkey(),
                     "new_vkey": new.vkey()})
        building = self._open(request.arrived)
        ts = self._timestamp(building)
        seq = self._build(building.batch, building.frontier, event,
                          self.policy.decide(event).retention, ts)
        building.batch.results.append((request.future, [seq], True))
        prepared = self._sign(building)
        self.key = new
        self._signer = new.signer()
        return prepared

    # ------------------------------------------------------------------ committer thread

    def _commit_loop(self) -> None:
        while True:
            prepared = self._handoff.get()
            if prepared is None:
                return
            if self._failed is not None:  # built on top of a batch that failed
                self._fail(prepared.futures(), self._failed)
                continue
            try:
                self._commit(prepared)
            except BaseException as exc:
                self._stop(_audit_error(exc), prepared.futures())
            finally:
                with self._cond:
                    self._busy -= 1
                    if not self._busy:
                        self._cond.notify()  # the writer may take its next batch now

    def _commit(self, prepared: _Prepared) -> None:
        """Write in one transaction, append to the sidecar, then acknowledge."""
        if prepared.task is not None:
            self._run_task(*prepared.task)
            return
        rows, checkpoint = prepared.rows, prepared.checkpoint
        if rows is not None and checkpoint is not None:
            self._transaction(rows, prepared.base, prepared.prelude)
            fault_point("after_commit")
            self.head = prepared.head
            self._dirty = True
            self.sidecar.append(checkpoint.size, checkpoint.root, prepared.note)
            fault_point("after_sidecar")
            fault_point("before_ack")
        size = self.head.size
        self._settle([
            *((ack, Appended(ack.outcome, True, size) if type(ack.outcome) is int
               else ack.outcome, None) for ack in prepared.singles),
            *((future, _finish(results, size, single), None)
              for future, results, single in prepared.results),
            *((future, None, None) for future in prepared.flushes)])
        if checkpoint is None:
            return
        for listener in self.listeners:
            try:
                listener(checkpoint, prepared.note)
            except Exception as exc:  # an anchor's problem is not the writer's
                self.listener_errors.append(exc)

    def _run_task(self, task: Task, future: AckFuture) -> None:
        """Exclusive work: its outcome goes to its caller, never into the writer."""
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = task(self.conn)
        except BaseException as exc:
            with contextlib.suppress(duckdb.Error):  # no transaction may stay open
                self.conn.execute("ROLLBACK")
            self._resolve(future, error=exc)
            return
        self._resolve(future, result)

    def _transaction(self, rows: BatchRows, base: tuple[int, bytes],
                     prelude: Prelude | None = None) -> None:
        """Compare-and-swap the head, write the batch and COMMIT (or roll back and raise)."""
        conn = self.conn
        try:
            if prelude is not None:
                conn.execute("BEGIN TRANSACTION")
                prelude(conn)
            if not insert_batch(conn, rows, base, begin=prelude is None):
                conn.execute("ROLLBACK")
                raise _fork(base[0], base[1], stored_head(conn))
            fault_point("before_commit")
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):  # a failed statement ended it already
                conn.execute("ROLLBACK")
            raise

    def commit_now(self, events: Sequence[AuditEvent], prelude: Prelude | None = None
                   ) -> list[Appended]:
        """Commit internal events (the genesis entry) synchronously, before :meth:`start`.

        They bypass the policy: the ledger's own records are never filtered out. ``prelude``
        runs first in the same transaction (it creates the tables of a new ledger, so a crash
        leaves either no ledger or one with its genesis entry).
        """
        if self._threads:
            raise AuditError("commit_now is only for use before the writer threads start")
        building = self._open(time.monotonic())
        ts = self._timestamp(building)
        results: list[Appended | int] = [
            self._build(building.batch, building.frontier, event,
                        self.policy.decide(event).retention, ts)
            for event in events]
        future = AckFuture(self._acks)
        building.batch.results.append((future, results, False))
        self._commit(self._sign(building, prelude))
        done: list[Appended] = future.result()
        return done


CHUNK = 128
"""Queued events worth adding to the open batch before the committer is free (fewer
wake-ups of the writer than one per event, while still building during the commit)."""

_URGENT = frozenset({"rotate", "flush", "exclusive"})
"""Requests that end the batch window at once (someone is waiting for them)."""
_ALONE = frozenset({"rotate", "exclusive"})
"""Requests that are never batched with others."""


class Admissions:
    """:func:`admit` remembered by the event fields an :class:`AuditPolicy` decides on.

    The policy's decision depends only on the category, action, severity, resource and
    requested retention class, and its required-field check only on which of ``user_id``,
    ``outcome``, ``source`` and ``resource`` are missing; a real event stream repeats few
    such combinations, so the writer decides each once. The memory is bounded (cleared when
    full) and used only for :class:`AuditPolicy` itself, never a subclass that might look at
    other fields; a new policy object starts afresh.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._policy: AuditPolicy | None = None
        self._known: dict[tuple[object, ...], Decision | EventError] = {}

    def admit(self, policy: AuditPolicy, event: AuditEvent) -> Decision:
        """:func:`admit` (raises the same :class:`EventError`)."""
        if type(policy) is not AuditPolicy:
            return admit(policy, event)
        if policy is not self._policy:
            self._policy, self._known = policy, {}
        key = (event.event_type, event.action, event.severity, event.resource, event.retention,
               event.user_id is None, event.outcome is None, event.source is None)
        known = self._known.get(key)
        if known is None:
            try:
                known = admit(policy, event)
            except EventError as exc:
                known = exc
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            self._known[key] = known
        if isinstance(known, EventError):
            raise EventError(known.field, known.message)
        return known


def admit(policy: AuditPolicy, event: AuditEvent) -> Decision:
    """The policy's decision on ``event``.

    Raises :class:`EventError` when the event asks for an unknown retention class or lacks a
    field the compliance presets in force require.
    """
    decision = policy.decide(event)
    if decision.record:
        missing = policy.missing_fields(event)
        if missing:
            raise EventError(missing[0], "missing; the compliance presets in force require "
                             + policy.describe_missing(missing))
    return decision


def _finish(results: list[Appended | int], size: int, single: bool) -> Any:
    """The futures' results: recorded seqs become :class:`Appended` covered by ``size``."""
    done = [Appended(r, True, size) if isinstance(r, int) else r for r in results]
    return done[0] if single else done


def _audit_error(exc: BaseException) -> AuditError:
    if isinstance(exc, AuditError):
        return exc
    return AuditError(f"the audit writer stopped: {type(exc).__name__}: {exc}")


def _fork(size: int, root: bytes, stored: tuple[int, bytes]) -> LedgerAlarmError:

    message = (f"the store's newest checkpoint changed behind the writer: it extends size "
               f"{size}, the store now holds size {stored[0]}; refusing to sign")
    if stored[0] == size:
        message = (f"the store's checkpoint of size {size} has a different root than the one "
                   "this writer signed; refusing to sign")
    evidence = {"writer_size": str(size), "writer_root": root.hex(),
                "store_size": str(stored[0]), "store_root": stored[1].hex()}
    return LedgerAlarmError([Alarm(AlarmKind.FORK, message, evidence)])
