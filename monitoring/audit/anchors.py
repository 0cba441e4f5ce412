"""External anchors: copies of the newest signed checkpoint kept out of the host's reach.

Why
---
The store and its sidecar sit on one host. An attacker who can rewrite both (A2 in
``docs/audit.md``) can cut the tail of the log and the local checkpoints together, and the
remaining ledger still verifies. An anchor keeps the newest checkpoint somewhere that attacker
cannot rewrite, so the cut shows: at startup ``recovery.startup_check`` compares the store with
every anchor's :meth:`Anchor.latest` (a larger anchored size is a ROLLBACK, a different root
at the same size or a failed consistency proof a FORK).

Two anchors are built in:

* :class:`FileAnchor`: a folder (meant to be on another volume or host mount) holding one
  append-only file of checkpoint records per log, fsynced on every write. Before appending it
  checks that the new checkpoint extends the one it holds (a consistency proof), so a
  truncated-and-continued log is refused there and then.
* :class:`WitnessAnchor`: a client of the C2SP tlog-witness protocol
  (c2sp.org/tlog-witness): the witness cosigns a checkpoint only when it is consistent with
  the one it cosigned before, so it refuses a rolled-back or forked log with ``409`` or ``422``.

Publishing is off the acknowledgement path: :class:`AnchorService` does it in the background,
and raises the UNANCHORED alarm when the newest checkpoint waits too long. A refusal that means
the log itself is wrong raises :class:`AnchorConflict` whose ``kind`` is ``ROLLBACK`` or
``FORK``; an anchor that cannot be reached raises a plain
:class:`~monitoring.audit.errors.AnchorError` (retried later).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.errors import AnchorError, AuditError, NoteError, ProofError
from monitoring.audit.fsutil import fsync_dir, write_atomic
from monitoring.audit.merkle import verify_consistency
from monitoring.audit.note import (
    Checkpoint,
    CosignatureVerifier,
    b64decode_strict,
    b64encode,
    cosignature_time,
)
from monitoring.audit.sidecar import Sidecar, SidecarError, SidecarRecord
from monitoring.audit.sidecar import _parse_line as parse_sidecar_line

ProofFrom = Callable[[int], list[bytes]]
"""``proof_from(old_size)``: the consistency proof from ``old_size`` to the checkpoint published."""

MAX_PROOF_LINES = 63
"""The most consistency-proof lines an add-checkpoint request may carry (tlog-witness)."""

MAX_RESPONSE_BYTES = 64 * 1024
"""A witness answer larger than this is refused unread (a cosignature line is ~110 bytes)."""

MAX_CLOCK_SKEW_S = 300
"""A cosignature dated further in the future than this is refused."""

_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_log = logging.getLogger("monitoring.audit.anchors")


@runtime_checkable
class Anchor(Protocol):
    """Somewhere outside the host that keeps the newest checkpoint of a log."""

    name: str

    def publish(self, note: str, cp: Checkpoint, proof_from: ProofFrom) -> None:
        """Store ``note`` (the signed checkpoint ``cp``); raise AnchorError if refused."""
        ...

    def latest(self) -> str | None:
        """The newest note this anchor holds; None if it holds none or cannot be reached."""
        ...


class CheckpointRecord(Protocol):
    """A signed checkpoint as stored (a sidecar line, an anchor's record, a store row)."""

    @property
    def size(self) -> int: ...
    @property
    def root(self) -> bytes: ...
    @property
    def note(self) -> str: ...


class AnchorConflict(AnchorError):
    """An anchor holds a checkpoint the published one does not extend: the log was cut or forked.

    ``kind`` is ``"ROLLBACK"`` (the anchor holds a larger tree) or ``"FORK"`` (same size with
    another root, or no valid consistency proof from the anchored tree); the message starts
    with it. ``anchored_size`` is the size the anchor holds.
    """

    def __init__(self, kind: str, anchor: str, anchored_size: int, message: str,
                 evidence: dict[str, str] | None = None) -> None:
        super().__init__(f"{kind}: {anchor}: {message}")
        self.kind = kind
        self.anchor = anchor
        self.anchored_size = anchored_size
        self.evidence = dict(evidence or {})


def origin_file_stem(origin: str) -> str:
    """A file name stem for ``origin``: readable, safe on every file system, collision-free.

    The readable part keeps letters, digits, ``.``, ``_`` and ``-`` (other runs become ``_``);
    a hash of the exact origin follows, so two origins never share a file.
    """
    readable = _SAFE.sub("_", origin).strip("._")[:80] or "log"
    digest = hashlib.sha256(origin.encode("utf-8")).hexdigest()[:16]
    return f"{readable}-{digest}"


def rollback(anchor: str, held_size: int, cp: Checkpoint,
             evidence: dict[str, str] | None = None) -> AnchorConflict:
    """The ROLLBACK conflict of an anchor holding ``held_size`` when offered the smaller ``cp``."""
    return AnchorConflict(
        "ROLLBACK", anchor, held_size,
        f"holds size {held_size}, larger than the log's newest checkpoint (size {cp.size}): "
        "the log lost entries",
        evidence or {"anchored_size": str(held_size), "size": str(cp.size),
                     "root": b64encode(cp.root)})


def check_extends(anchor: str, held: CheckpointRecord | None, cp: Checkpoint,
                  proof_from: ProofFrom) -> bool:
    """Check that ``cp`` extends ``held``; False when it is the same checkpoint.

    Raises :class:`AnchorConflict` (``ROLLBACK`` when ``held`` is larger, ``FORK`` when the
    roots differ at one size or the consistency proof fails).
    """
    if held is None:
        return True
    evidence = {"anchored_size": str(held.size), "anchored_note": held.note,
                "size": str(cp.size), "root": b64encode(cp.root)}
    if held.size > cp.size:
        raise rollback(anchor, held.size, cp, evidence)
    if held.size == cp.size:
        if held.root != cp.root:
            raise AnchorConflict("FORK", anchor, held.size,
                                 f"holds another root for size {cp.size} "
                                 f"({b64encode(held.root)} != {b64encode(cp.root)})", evidence)
        return False
    proof = proof_from(held.size) if held.size > 0 else []
    try:
        verify_consistency(held.size, cp.size, held.root, cp.root, proof)
    except ProofError as exc:
        raise AnchorConflict("FORK", anchor, held.size,
                             f"the checkpoint of size {cp.size} is not consistent with the "
                             f"anchored checkpoint of size {held.size}: {exc}",
                             evidence) from None
    return True


# -- the folder anchor -----------------------------------------------------------------------


class FileAnchor:
    """A folder of append-only checkpoint files, one per log (origin), fsynced on every write.

    Each file has the sidecar's format (:class:`~monitoring.audit.sidecar.Sidecar`, JSON lines
    ``{"size", "root", "note"}``); a final line without its newline is a torn write (never
    acknowledged): it is ignored when reading and cut off before the next append. Only the
    file's last line is read, so publishing stays cheap however long the file grows.
    ``origin`` names the log :meth:`latest` reports on when called without one (else the
    folder's only log).
    """

    SUFFIX = ".checkpoints"

    def __init__(self, folder: str | Path, origin: str | None = None,
                 name: str | None = None) -> None:
        self.folder = Path(folder)
        self.origin = origin
        self.name = name or f"folder {self.folder}"

    def path_for(self, origin: str) -> Path:
        """The file that holds the checkpoints of ``origin``."""
        return self.folder / (origin_file_stem(origin) + self.SUFFIX)

    def publish(self, note: str, cp: Checkpoint, proof_from: ProofFrom) -> None:
        """Append ``note`` unless this folder already holds it; refuse a cut or forked log."""
        if not note.startswith(cp.body() + "\n"):
            raise AnchorError(f"{self.name}: the note is not signed over the checkpoint of "
                              f"size {cp.size}")
        path = self.path_for(cp.origin)
        if not check_extends(self.name, self.held(cp.origin), cp, proof_from):
            return
        sidecar = Sidecar(path)
        try:
            if not self.folder.exists():
                self.folder.mkdir(parents=True)
                fsync_dir(self.folder.parent)
            sidecar.truncate_torn()
            sidecar.append(cp.size, cp.root, note)
        except (OSError, SidecarError) as exc:
            raise AnchorError(f"{self.name}: cannot write {path}: {exc}") from None
        finally:
            sidecar.close()

    def held(self, origin: str) -> SidecarRecord | None:
        """The newest complete record for ``origin``; None if this folder holds none."""
        return _last_record(self.path_for(origin))

    def latest(self, origin: str | None = None) -> str | None:
        """The newest note held for ``origin`` (default: this anchor's, else the only one)."""
        origin = origin or self.origin
        if origin is None:
            held = self.origins()
            if not held:
                return None
            if len(held) > 1:
                raise AnchorError(f"{self.name}: holds checkpoints of {len(held)} logs "
                                  f"({', '.join(held)}); name the origin")
            origin = held[0]
        record = self.held(origin)
        return record.note if record else None

    def origins(self) -> list[str]:
        """The origins this folder holds checkpoints for, sorted (read from the notes)."""
        if not self.folder.is_dir():
            return []
        found = []
        for path in self.folder.glob("*" + self.SUFFIX):
            record = _last_record(path)
            if record is not None:
                found.append(record.note.split("\n", 1)[0])
        return sorted(found)


def _last_record(path: Path) -> SidecarRecord | None:
    """The last complete record of a checkpoint file, read from its end."""
    try:
        with open(path, "rb") as f:
            found = _last_complete_line(f.fileno())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AnchorError(f"{path}: cannot read: {exc.strerror}") from None
    if found is None:
        return None
    raw, number = found
    try:
        return parse_sidecar_line(raw, number or 0)
    except ValueError as exc:
        where = f"{path}:{number}" if number else f"{path}: last line"
        raise AnchorError(f"{where}: {exc}") from None


def _torn_tail(fd: int) -> int:
    """How many bytes at the end of the file follow its last newline (a torn final line)."""
    size = os.fstat(fd).st_size
    pos, torn = size, 0
    while pos > 0:
        step = min(4096, pos)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return torn + (step - cut - 1)
        torn += step
        pos -= step
    return torn


def _last_complete_line(fd: int) -> tuple[bytes, int | None] | None:
    """The last newline-terminated line of a file (None if it has none), read from its end.

    The line number comes along when the file is small enough to count its lines cheaply.
    """
    size = os.fstat(fd).st_size
    end = size - _torn_tail(fd)  # just after the last newline
    if end <= 0:
        return None
    start, pos = 0, end - 1
    while pos > 0:
        step = min(65536, pos)
        cut = os.pread(fd, step, pos - step).rfind(b"\n")
        if cut >= 0:
            start = pos - step + cut + 1
            break
        pos -= step
    number = os.pread(fd, start, 0).count(b"\n") + 1 if size <= 1 << 20 else None
    return os.pread(fd, end - 1 - start, start), number


# -- the witness anchor ----------------------------------------------------------------------


@dataclass(frozen=True)
class Cosigned:
    """A witness's answer to one add-checkpoint: the cosigned size and its cosignature lines."""

    size: int
    root: bytes
    lines: tuple[str, ...]
    timestamp: int
    previous_size: int
    """The size the witness had cosigned before this request."""


def format_add_checkpoint(old: int, proof: Sequence[bytes], note: str) -> bytes:
    """The body of a tlog-witness ``add-checkpoint`` request."""
    if len(proof) > MAX_PROOF_LINES:
        raise AnchorError(f"a consistency proof of {len(proof)} hashes is longer than the "
                          f"{MAX_PROOF_LINES} lines a witness accepts")
    lines = [f"old {old}\n", *(b64encode(h) + "\n" for h in proof), "\n", note]
    return "".join(lines).encode("utf-8")


class WitnessAnchor:
    """A witness (c2sp.org/tlog-witness) that cosigns each checkpoint consistent with the last.

    The size the witness last cosigned is kept in memory and, when ``state`` is given, in that
    small JSON file (see :func:`default_state_path`), so the next request carries the right
    consistency proof. Without it the first request says ``old 0``; a witness that knows the
    log answers ``409`` with its size and the anchor retries once from there.
    """

    def __init__(self, url: str, witness_vkey: str, timeout: float = 10.0, *,
                 state: Path | None = None, origin: str | None = None,
                 name: str | None = None, clock: Callable[[], float] = time.time) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise AnchorError(f"witness URL {url!r}: expected http://HOST:PORT[/prefix]")
        try:
            self.verifier = CosignatureVerifier.from_vkey(witness_vkey)
        except NoteError as exc:
            raise AnchorError(f"witness key {witness_vkey!r}: {exc}") from None
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.state = state
        self.origin = origin
        self.name = name or f"witness {self.url}"
        self.clock = clock
        self._cosigned: dict[str, tuple[int, bytes]] = {}
        if state is not None:
            self._cosigned = _read_state(state)

    def cosigned_size(self, origin: str) -> int:
        """The size this client knows the witness cosigned last for ``origin`` (0 if none)."""
        return self._cosigned.get(origin, (0, b""))[0]

    def publish(self, note: str, cp: Checkpoint, proof_from: ProofFrom) -> None:
        """Have the witness cosign ``note``; AnchorConflict if it holds a larger or other tree."""
        self.submit(note, cp, proof_from)

    def submit(self, note: str, cp: Checkpoint, proof_from: ProofFrom) -> Cosigned:
        """:meth:`publish`, returning the verified cosignature."""
        old = self.cosigned_size(cp.origin)
        if old > cp.size:
            raise rollback(self.name, old, cp)
        for _attempt in range(2):
            status, body = self._add(old, cp, note, proof_from)
            if status != 409:
                break
            witness_size = self._conflict_size(body, cp)  # ROLLBACK when larger than ours
            if witness_size == old:
                if old == cp.size:
                    raise AnchorConflict("FORK", self.name, old,
                                         f"refused the checkpoint of size {cp.size}: it holds "
                                         f"another root for size {old}",
                                         {"anchored_size": str(old), "size": str(cp.size),
                                          "root": b64encode(cp.root)})
                raise AnchorError(f"{self.name}: answered 409 with the old size sent ({old}), "
                                  "which tlog-witness does not allow")
            old = witness_size  # retry once from the size the witness holds
        else:
            raise AnchorError(f"{self.name}: its size changed while publishing (now {old}); "
                              "will retry")
        if status == 422:
            raise AnchorConflict("FORK", self.name, old,
                                 f"the checkpoint of size {cp.size} is not consistent with the "
                                 f"checkpoint of size {old} it cosigned (422: {_text(body)})",
                                 {"anchored_size": str(old), "size": str(cp.size),
                                  "root": b64encode(cp.root)})
        if status != 200:
            raise AnchorError(f"{self.name}: refused the checkpoint of size {cp.size}: "
                              f"{status} {_STATUS_MEANING.get(status, '')}: {_text(body)}")
        result = self._verify_answer(body, cp, old)
        self._remember(cp.origin, cp.size, cp.root)
        return result

    def _add(self, old: int, cp: Checkpoint, note: str,
             proof_from: ProofFrom) -> tuple[int, bytes]:
        proof = proof_from(old) if 0 < old < cp.size else []
        request = urllib.request.Request(
            self.url + "/add-checkpoint", data=format_add_checkpoint(old, proof, note),
            method="POST", headers={"Content-Type": "text/plain; charset=utf-8"})
        return self._exchange(request)

    def _exchange(self, request: urllib.request.Request) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return int(response.status), _read_limited(response)
        except urllib.error.HTTPError as exc:
            with exc:
                return int(exc.code), _read_limited(exc)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise AnchorError(f"{self.name}: unreachable: {reason}") from None

    def _conflict_size(self, body: bytes, cp: Checkpoint) -> int:
        text = body.decode("ascii", "replace")
        if not re.fullmatch(r"(0|[1-9][0-9]{0,19})\n", text):
            raise AnchorError(f"{self.name}: a 409 answer must be a tree size line, got "
                              f"{text[:60]!r}")
        size = int(text)
        if size > cp.size:
            raise rollback(self.name, size, cp)
        return size

    def _verify_answer(self, body: bytes, cp: Checkpoint, old: int) -> Cosigned:
        """Check the 200 answer: note signature lines, one a valid cosignature by our witness."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise AnchorError(f"{self.name}: the cosignature answer is not UTF-8") from None
        lines = text.splitlines(keepends=True)
        if not lines or any(not ln.endswith("\n") or not ln.startswith("\u2014 ")
                            for ln in lines):
            raise AnchorError(f"{self.name}: expected note signature lines, got {text[:80]!r}")
        try:
            timestamp = cosignature_time(cp.body() + "\n" + text, self.verifier)
        except NoteError as exc:
            raise AnchorError(f"{self.name}: no valid cosignature of the checkpoint of size "
                              f"{cp.size}: {exc}") from None
        if timestamp > self.clock() + MAX_CLOCK_SKEW_S:
            raise AnchorError(f"{self.name}: the cosignature's time {timestamp} is in the "
                              "future")
        return Cosigned(cp.size, cp.root, tuple(lines), timestamp, old)

    def _remember(self, origin: str, size: int, root: bytes) -> None:
        self._cosigned[origin] = (size, root)
        if self.state is not None:
            record = {o: {"size": s, "root": b64encode(r)} for o, (s, r) in self._cosigned.items()}
            try:
                write_atomic(self.state, json.dumps(record, sort_keys=True).encode() + b"\n")
            except OSError as exc:
                raise AnchorError(f"{self.state}: cannot save the witness state: {exc}") from None

    def latest(self, origin: str | None = None) -> str | None:
        """The newest checkpoint the witness cosigned for ``origin``, with its cosignature.

        Read from the witness's ``GET /checkpoint/<origin>`` (an extension of this project's
        witness: tlog-witness has no read API yet); None if unreachable or unknown.
        """
        origin = origin or self.origin
        if origin is None:
            known = self.origins()
            if len(known) != 1:
                return None
            origin = known[0]
        request = urllib.request.Request(
            self.url + "/checkpoint/" + urllib.parse.quote(origin, safe="/"))
        try:
            status, body = self._exchange(request)
        except AnchorError:
            return None
        return body.decode("utf-8", "replace") if status == 200 else None

    def origins(self) -> list[str]:
        """The origins the witness holds a cosigned checkpoint for (``GET /logs``); [] if down."""
        try:
            status, body = self._exchange(urllib.request.Request(self.url + "/logs"))
            if status != 200:
                return []
            data = json.loads(body)
        except (AnchorError, ValueError):
            return []
        if not isinstance(data, list):
            return []
        return sorted(str(item["origin"]) for item in data
                      if isinstance(item, dict) and "origin" in item)


_STATUS_MEANING = {
    400: "malformed request",
    403: "no signature the witness trusts",
    404: "the witness does not know this log",
    413: "request too large",
}


def default_state_path(sidecar: Path, url: str) -> Path:
    """Where a :class:`WitnessAnchor` keeps its state: beside the sidecar, one file per URL."""
    stem = origin_file_stem(urllib.parse.urlsplit(url).netloc + urllib.parse.urlsplit(url).path)
    return sidecar.with_name(f"{sidecar.name}.witness-{stem}.json")


def _read_state(path: Path) -> dict[str, tuple[int, bytes]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AnchorError(f"{path}: unreadable witness state: {exc}") from None
    if not isinstance(raw, dict):
        raise AnchorError(f"{path}: expected a JSON object of origin -> {{size, root}}")
    state = {}
    for origin, item in raw.items():
        size = item.get("size") if isinstance(item, dict) else None
        root = item.get("root") if isinstance(item, dict) else None
        if not isinstance(size, int) or size < 0 or not isinstance(root, str):
            raise AnchorError(f"{path}: {origin}: expected {{\"size\": N, \"root\": base64}}")
        try:
            state[str(origin)] = (size, b64decode_strict(root, f"{path}: {origin}: root", 32))
        except NoteError as exc:
            raise AnchorError(str(exc)) from None
    return state


class _Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


def _read_limited(response: _Readable) -> bytes:
    data = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise AnchorError(f"witness answer larger than {MAX_RESPONSE_BYTES} bytes")
    return data


def _text(body: bytes) -> str:
    return body.decode("utf-8", "replace").strip()[:200]


# -- background publishing and the unanchored-age alarm ---------------------------------------


class CheckpointSource(Protocol):
    """The read side of a ledger: its newest checkpoint."""

    def latest_checkpoint(self) -> CheckpointRecord | None: ...


class AnchoredLedger(Protocol):
    """What :class:`AnchorService` needs of a ledger (``monitoring.audit.ledger.Ledger``)."""

    @property
    def origin(self) -> str: ...
    @property
    def storage(self) -> CheckpointSource: ...
    def consistency_proof(self, size1: int, size2: int) -> list[bytes]: ...
    def append(self, event: Mapping[str, Any]) -> object: ...


@dataclass
class AnchorStatus:
    """What the service knows of one anchor; times are on the service's clock (seconds)."""

    anchor: str
    anchored_size: int = 0
    """The largest size this anchor accepted from this service (0: none yet)."""
    pending_since: float | None = None
    """When a checkpoint newer than ``anchored_size`` was first seen; None when caught up."""
    last_success: float | None = None
    last_error: str = ""
    failures: int = 0
    """Failed attempts since the last success (drives the back-off)."""
    next_attempt: float = 0.0
    conflict: str = ""
    """The kind of the last AnchorConflict (``ROLLBACK``/``FORK``) already alarmed on."""


class AnchorService:
    """Publish the ledger's newest checkpoint to every anchor in the background, and alarm.

    Each :meth:`tick` (every ``interval_s`` on a thread started by :meth:`start`, or called
    directly by tests with a fake ``clock``) reads the newest checkpoint and offers it to every
    anchor that is behind and due; a failure backs that anchor off (``interval_s`` doubling up
    to ``max_backoff_s``). The unanchored age of an anchor is how long a checkpoint newer than
    the one it holds has been waiting; when the largest age exceeds ``max_unanchored_age_s``
    (PCI DSS v4.0 10.7.2: failures of critical security controls are detected and alerted),
    ``on_alarm`` gets one UNANCHORED alarm and the ledger one ``security``/``anchor.stale``
    event for the episode; once every anchor has caught up the episode ends with an
    ``anchor.resumed`` event. An anchor that answers ROLLBACK or FORK raises that alarm (once
    per anchor and kind): anchoring cannot resume without an operator.
    """

    def __init__(self, ledger: AnchoredLedger, anchors: Sequence[Anchor], *,
                 interval_s: float = 5.0, max_unanchored_age_s: float = 300.0,
                 max_backoff_s: float = 300.0, clock: Callable[[], float] = time.monotonic,
                 on_alarm: Callable[[Alarm], None] | None = None,
                 record_events: bool = True) -> None:
        if interval_s <= 0 or max_unanchored_age_s <= 0:
            raise AnchorError("interval_s and max_unanchored_age_s must be positive")
        self.ledger = ledger
        self.anchors = list(anchors)
        self.interval_s = interval_s
        self.max_unanchored_age_s = max_unanchored_age_s
        self.max_backoff_s = max(max_backoff_s, interval_s)
        self.clock = clock
        self.on_alarm = on_alarm
        self.record_events = record_events
        self.status = {a.name: AnchorStatus(a.name) for a in self.anchors}
        self.alarm_active = False
        self.alarms: list[Alarm] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._newest_size = 0

    # the thread

    def start(self) -> AnchorService:
        """Run :meth:`tick` on a daemon thread until :meth:`stop`."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="audit-anchors", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after its current attempt) and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def notify(self) -> None:
        """Ask for a tick now (the ledger calls this after a commit; never blocks)."""
        self._wake.set()

    def __enter__(self) -> AnchorService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before the tick: a notify() during it is not lost
            self.run_once()
            self._wake.wait(self._sleep_s())

    def run_once(self) -> None:
        """:meth:`tick`, but a failure (the store unreadable, a bug) counts as not anchoring.

        Nothing was published then: every anchor is behind from now on, so the age alarm
        fires if this goes on. The thread runs this; it never raises.
        """
        try:
            self.tick()
        except Exception as exc:  # the thread must outlive any failure
            _log.exception("audit anchoring failed")
            now = self.clock()
            for st in self.status.values():
                st.last_error = f"anchoring failed: {exc!r}"
                if st.pending_since is None:
                    st.pending_since = now
            self._check_age(now, self._newest_size)

    def _sleep_s(self) -> float:
        now = self.clock()
        due = [s.next_attempt - now for s in self.status.values() if s.pending_since is not None]
        return max(0.05, min([self.interval_s, *due]))

    # one pass

    def tick(self) -> None:
        """Publish the newest checkpoint where due, then raise or clear the UNANCHORED alarm."""
        with self._lock:
            newest = self.ledger.storage.latest_checkpoint()
            now = self.clock()
            self._newest_size = newest.size if newest else 0
            if newest is not None:
                cp = Checkpoint(self.ledger.origin, newest.size, newest.root)
                for anchor in self.anchors:
                    self._offer(anchor, newest.note, cp, now)
            self._check_age(self.clock(), newest.size if newest else 0)

    def _offer(self, anchor: Anchor, note: str, cp: Checkpoint, now: float) -> None:
        st = self.status[anchor.name]
        if cp.size <= st.anchored_size:
            return
        if st.pending_since is None:
            st.pending_since = now
        if now < st.next_attempt:
            return
        try:
            anchor.publish(note, cp, self._proof_from(cp.size))
        except AnchorError as exc:
            st.failures += 1
            st.last_error = str(exc)
            backoff = min(self.interval_s * 2 ** (st.failures - 1), self.max_backoff_s)
            st.next_attempt = now + backoff
            if isinstance(exc, AnchorConflict) and exc.kind != st.conflict:
                st.conflict = exc.kind
                self._record_alarm(exc.kind, str(exc),
                                   {"anchor": anchor.name, **exc.evidence})
            return
        st.anchored_size = cp.size
        st.pending_since = None
        st.last_success = now
        st.last_error, st.failures, st.next_attempt, st.conflict = "", 0, now, ""

    def _proof_from(self, size: int) -> ProofFrom:
        def proof_from(old: int) -> list[bytes]:
            return self.ledger.consistency_proof(old, size) if 0 < old < size else []
        return proof_from

    def unanchored_age_s(self) -> float:
        """How long the oldest unanchored checkpoint has waited (0 when all anchors are current)."""
        now = self.clock()
        ages = [now - s.pending_since for s in self.status.values() if s.pending_since is not None]
        return max(ages, default=0.0)

    def _check_age(self, now: float, newest_size: int) -> None:
        stale = [s for s in self.status.values()
                 if s.pending_since is not None
                 and now - s.pending_since > self.max_unanchored_age_s]
        age = max((now - s.pending_since for s in stale if s.pending_since is not None),
                  default=0.0)
        if stale and not self.alarm_active:
            self.alarm_active = True
            names = ", ".join(s.anchor for s in stale)
            evidence = {"anchors": names, "unanchored_age_s": str(int(age)),
                        "max_unanchored_age_s": str(int(self.max_unanchored_age_s)),
                        "newest_size": str(newest_size)}
            self._record_alarm(
                "UNANCHORED",
                f"the newest checkpoint (size {newest_size}) has not been anchored to {names} "
                f"for {int(age)} s (limit {int(self.max_unanchored_age_s)} s): "
                + "; ".join(f"{s.anchor}: {s.last_error or 'not yet tried'}" for s in stale),
                evidence)
            self._event("anchor.stale", "warning", "failure", names, {
                "anchors": [{"anchor": s.anchor, "anchored_size": s.anchored_size,
                             "error": s.last_error[:500]} for s in stale],
                "unanchored_age_s": int(age), "newest_size": newest_size,
                "max_unanchored_age_s": int(self.max_unanchored_age_s)})
        elif self.alarm_active and all(s.pending_since is None for s in self.status.values()):
            self.alarm_active = False
            self._event("anchor.resumed", "info", "success",
                        ", ".join(self.status), {"anchored_size": newest_size})

    def _record_alarm(self, kind: str, message: str, evidence: Mapping[str, str]) -> None:
        alarm = Alarm(AlarmKind[kind], message, dict(evidence))
        self.alarms.append(alarm)
        _log.warning("%s", alarm)
        if self.on_alarm is not None:
            try:
                self.on_alarm(alarm)
            except Exception:  # the caller's handler must not stop the anchoring
                _log.exception("the on_alarm handler failed")

    def _event(self, action: str, severity: str, outcome: str, resource: str,
               details: dict[str, Any]) -> None:
        if not self.record_events:
            return
        try:
            self.ledger.append({"event_type": "security", "action": action,
                                "severity": severity, "outcome": outcome,
                                "resource": resource, "details": details})
        except AuditError as exc:
            self._record_alarm("UNANCHORED",
                               f"could not record {action} in the ledger: {exc}", {})
