"""A small transparency-log witness (c2sp.org/tlog-witness), to run in another trust domain.

Why
---
A ledger's own checkpoints live on the ledger's host. A witness on another host (or run by
another team) remembers, per log, the newest checkpoint it cosigned and cosigns a new one only
when a consistency proof shows it extends that one. A host that rolls its log back or forks it
(truncate and continue) can then no longer get cosignatures, and the witness holds the proof:
its stored checkpoint and, for an equivocation, both signed notes.

Protocol (exactly tlog-witness): ``POST /add-checkpoint`` with the body ``old <size>``, up to 63
base64 consistency-proof lines, an empty line and the signed checkpoint note. Answers: 200 with
one tlog-cosignature/v1 line; 409 ``text/x.tlog.size`` with the size it holds when ``old`` is
not that size, or for the same size with another root; 404 unknown origin; 403 no signature by
a key it trusts for the origin; 422 a consistency proof that does not verify; 400 a malformed
request (the body says what and where); 413 a body over :data:`MAX_REQUEST_BYTES`. The new
state is written durably (fsync, atomic rename) *before* the answer, and the check and the
write happen under one lock, so two racing requests cannot roll the state back.

Two read endpoints are an extension of this project (tlog-witness has no read API yet):
``GET /checkpoint/<origin>`` (the newest cosigned note) and ``GET /logs`` (JSON list of
origins and sizes), used by :class:`~monitoring.audit.anchors.WitnessAnchor` for the startup
ROLLBACK/FORK/MISSING_LOG checks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from monitoring.audit.anchors import MAX_PROOF_LINES, origin_file_stem
from monitoring.audit.errors import AuditError, NoteError, ProofError
from monitoring.audit.fsutil import append_durably, write_atomic
from monitoring.audit.keys import SigningKey, load_signing_key
from monitoring.audit.merkle import EMPTY_ROOT, verify_consistency
from monitoring.audit.note import (
    MAX_NOTE_BYTES,
    MAX_SIZE,
    Checkpoint,
    CosignatureSigner,
    NoteVerifier,
    add_signatures,
    b64decode_strict,
    b64encode,
    open_note,
    parse_note,
    signature_line,
)

MAX_REQUEST_BYTES = MAX_NOTE_BYTES + 4096
"""Largest add-checkpoint body: a note of the largest size plus the old line and 63 hashes."""

SIZE_CONTENT_TYPE = "text/x.tlog.size"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
DEFAULT_NAME = "monitoring.local/witness"
KEY_FILE = "witness.key"
EVIDENCE_FILE = "evidence.jsonl"

_OLD_LINE = re.compile(r"old (0|[1-9][0-9]*)")
_log = logging.getLogger("monitoring.audit.witness")


class WitnessConfigError(AuditError):
    """The witness's list of logs or its state cannot be read."""


@dataclass(frozen=True)
class Reply:
    """An HTTP answer of the witness (status, body, content type)."""

    status: int
    body: bytes
    content_type: str = TEXT_CONTENT_TYPE

    @classmethod
    def text(cls, status: int, message: str) -> Reply:
        """A plain-text answer: the message and a newline."""
        return cls(status, (message.rstrip("\n") + "\n").encode("utf-8"))


class Refusal(Exception):
    """A request the witness refuses (400, 403, 404, 413, 422); ``reply`` is the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.reply = Reply.text(status, message)


@dataclass(frozen=True)
class AddCheckpoint:
    """A parsed add-checkpoint request: old size, consistency proof, checkpoint note text."""

    old: int
    proof: tuple[bytes, ...]
    note: str


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Split an add-checkpoint body strictly; :class:`Refusal` (400) names the line at fault."""
    if len(body) > MAX_REQUEST_BYTES:
        raise Refusal(413, f"request body of {len(body)} bytes is over the limit of "
                              f"{MAX_REQUEST_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(400, f"request body is not UTF-8 (byte {exc.start})") from None
    pos, number = 0, 0
    proof: list[bytes] = []
    old: int | None = None
    while True:
        end = text.find("\n", pos)
        number += 1
        if end < 0:
            what = "the old size line" if old is None else "the empty line before the checkpoint"
            raise Refusal(400, f"line {number}: missing {what} (every line must end with a "
                                  "newline)")
        line, pos = text[pos:end], end + 1
        if old is None:
            match = _OLD_LINE.fullmatch(line)
            if not match or int(match[1]) > MAX_SIZE:
                raise Refusal(400, f"line 1: expected 'old <tree size>' (decimal, no leading "
                                      f"zeros), got {line[:60]!r}")
            old = int(match[1])
            continue
        if not line:
            break
        if len(proof) == MAX_PROOF_LINES:
            raise Refusal(400, f"line {number}: more than {MAX_PROOF_LINES} consistency "
                                  "proof lines")
        try:
            proof.append(b64decode_strict(line, f"line {number}: consistency proof hash", 32))
        except NoteError as exc:
            raise Refusal(400, str(exc)) from None
    return AddCheckpoint(old, tuple(proof), text[pos:])


@dataclass(frozen=True)
class HeldCheckpoint:
    """What the witness holds for one log: the newest checkpoint it cosigned."""

    origin: str
    size: int
    root: bytes
    note: str
    """The submitted note with this witness's cosignature added."""
    time: int

    def to_json(self) -> bytes:
        """The state file's contents."""
        return json.dumps({"origin": self.origin, "size": self.size,
                           "root": b64encode(self.root), "note": self.note,
                           "time": self.time}, sort_keys=True, ensure_ascii=False).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, where: str) -> HeldCheckpoint:
        """Parse a state file; WitnessConfigError names the file and the field."""
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise WitnessConfigError(f"{where}: not JSON: {exc}") from None
        if not isinstance(raw, dict):
            raise WitnessConfigError(f"{where}: expected a JSON object")
        fields = {"origin": str, "size": int, "root": str, "note": str, "time": int}
        for name, kind in fields.items():
            if not isinstance(raw.get(name), kind) or isinstance(raw.get(name), bool):
                raise WitnessConfigError(f"{where}: {name}: expected {kind.__name__}")
        try:
            root = b64decode_strict(raw["root"], f"{where}: root", 32)
        except NoteError as exc:
            raise WitnessConfigError(str(exc)) from None
        return cls(raw["origin"], raw["size"], root, raw["note"], raw["time"])


def parse_log_spec(spec: str, where: str) -> tuple[str, NoteVerifier]:
    """``ORIGIN=VKEY``, ``ORIGIN VKEY`` or a bare ``VKEY`` (the origin is then the key's name)."""
    text = spec.strip()
    try:
        bare = NoteVerifier.from_vkey(text)
    except NoteError:
        pass
    else:
        return bare.name, bare
    parts = text.split(None, 1) if any(c.isspace() for c in text) else text.split("=", 1)
    if len(parts) != 2 or not parts[0]:
        raise WitnessConfigError(f"{where}: expected ORIGIN=VKEY, 'ORIGIN VKEY' or a VKEY")
    try:
        return parts[0], NoteVerifier.from_vkey(parts[1].strip())
    except NoteError as exc:
        raise WitnessConfigError(f"{where}: {exc}") from None


def read_logs_file(path: Path) -> list[tuple[str, NoteVerifier]]:
    """A logs file: one ``ORIGIN VKEY`` (or ``ORIGIN=VKEY``, or ``VKEY``) a line, ``#`` comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WitnessConfigError(f"{path}: cannot read the logs file: {exc}") from None
    logs = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if line:
            logs.append(parse_log_spec(line, f"{path}:{number}"))
    return logs


class Witness:
    """The witness's logic, without HTTP: checks, cosigns and durably stores checkpoints.

    ``logs`` maps each known origin to the log keys trusted for it; ``state_dir`` holds one
    file per origin (``logs/<origin stem>.json``) and ``evidence.jsonl``, where every signed
    checkpoint that contradicts the stored one (same size, another root; or no valid
    consistency proof) is kept as proof of the log's misbehaviour.
    """

    def __init__(self, key: SigningKey, logs: Iterable[tuple[str, NoteVerifier]],
                 state_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.signer = CosignatureSigner(key.name, key.private, clock)
        self.clock = clock
        self.logs: dict[str, list[NoteVerifier]] = {}
        for origin, verifier in logs:
            self.logs.setdefault(origin, []).append(verifier)
        self.state_dir = state_dir
        self.folder = state_dir / "logs"
        self._lock = threading.Lock()
        self._held: dict[str, HeldCheckpoint] = {}
        self._load()

    @property
    def vkey(self) -> str:
        """The cosigner key of this witness (signature type 0x04), to give to the logs."""
        return self.key.cosignature_verifier().vkey()

    def _load(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WitnessConfigError(f"{self.folder}: cannot create the state folder: "
                                     f"{exc.strerror}") from None
        for path in sorted(self.folder.glob("*.json")):
            try:
                record = HeldCheckpoint.from_json(path.read_bytes(), str(path))
            except OSError as exc:
                raise WitnessConfigError(f"{path}: cannot read: {exc.strerror}") from None
            if path != self._path(record.origin):
                raise WitnessConfigError(f"{path}: holds origin {record.origin!r}, which "
                                         "belongs in another file")
            self._held[record.origin] = record

    def _path(self, origin: str) -> Path:
        return self.folder / (origin_file_stem(origin) + ".json")

    def held(self, origin: str) -> HeldCheckpoint | None:
        """The newest checkpoint cosigned for ``origin``."""
        with self._lock:
            return self._held.get(origin)

    def held_logs(self) -> list[dict[str, object]]:
        """``[{"origin", "size"}]`` of every log this witness holds a checkpoint for."""
        with self._lock:
            return [{"origin": c.origin, "size": c.size}
                    for c in sorted(self._held.values(), key=lambda c: c.origin)]

    def add_checkpoint(self, body: bytes) -> Reply:
        """Answer one add-checkpoint request body (the whole protocol but HTTP)."""
        try:
            return self._add(parse_add_checkpoint(body))
        except Refusal as exc:
            return exc.reply

    def _add(self, req: AddCheckpoint) -> Reply:
        try:
            parsed = parse_note(req.note)
        except NoteError as exc:
            raise Refusal(400, f"checkpoint note: {exc}") from None
        lines = parsed.body[:-1].split("\n")  # extension lines after the third are cosigned
        if len(lines) < 3:
            raise Refusal(400, f"checkpoint: expected origin, size and root hash lines, got "
                               f"{len(lines)} line(s)")
        try:
            cp = Checkpoint.parse("\n".join(lines[:3]) + "\n")
        except NoteError as exc:
            raise Refusal(400, f"checkpoint: {exc}") from None
        verifiers = self.logs.get(cp.origin)
        if not verifiers:
            raise Refusal(404, f"unknown log origin {cp.origin!r}")
        try:
            open_note(req.note, verifiers)
        except NoteError as exc:
            raise Refusal(403, f"no valid signature by a key trusted for {cp.origin}: "
                                  f"{exc}") from None
        if req.old > cp.size:
            raise Refusal(400, f"old size {req.old} is larger than the checkpoint's size "
                                  f"{cp.size}")
        with self._lock:
            return self._check_and_store(req, cp, parsed.body)

    def _check_and_store(self, req: AddCheckpoint, cp: Checkpoint, body: str) -> Reply:
        held = self._held.get(cp.origin)
        held_size = held.size if held else 0
        if held is not None and held.size == cp.size and held.root != cp.root:
            self._evidence("equivocation", held, req, "same size, different root")
        if req.old != held_size:
            return Reply(409, f"{held_size}\n".encode(), SIZE_CONTENT_TYPE)
        if held is not None and req.old == cp.size and held.root != cp.root:
            return Reply(409, f"{held_size}\n".encode(), SIZE_CONTENT_TYPE)
        try:
            verify_consistency(req.old, cp.size, held.root if held else EMPTY_ROOT, cp.root,
                               req.proof)
        except ProofError as exc:
            if held is not None:
                self._evidence("inconsistent", held, req, str(exc))
            raise Refusal(422, f"consistency proof from size {req.old} to {cp.size} does "
                                  f"not verify: {exc}") from None
        now = int(self.clock())
        self.signer.timestamp = now  # one time for the answer and the stored note
        try:
            line = signature_line(body, self.signer)
            note = add_signatures(req.note, [self.signer])
        except NoteError as exc:
            raise Refusal(400, f"checkpoint note: {exc}") from None
        finally:
            self.signer.timestamp = None
        record = HeldCheckpoint(cp.origin, cp.size, cp.root, note, now)
        try:
            write_atomic(self._path(cp.origin), record.to_json())
        except OSError as exc:
            _log.error("cannot store the checkpoint of %s: %s", cp.origin, exc)
            return Reply.text(500, f"cannot store the checkpoint: {exc.strerror}")
        self._held[cp.origin] = record
        return Reply(200, line.encode("utf-8"))

    def _evidence(self, kind: str, held: HeldCheckpoint, req: AddCheckpoint, reason: str) -> None:
        """Append proof of misbehaviour: the stored note and the contradicting signed note."""
        record = {"time": int(self.clock()), "kind": kind, "reason": reason,
                  "held_note": held.note, "presented_note": req.note, "old": req.old,
                  "proof": [b64encode(h) for h in req.proof]}
        _log.warning("log misbehaviour (%s) for %s: %s", kind, held.origin, reason)
        path = self.state_dir / EVIDENCE_FILE
        try:
            append_durably(path, json.dumps(record, sort_keys=True, ensure_ascii=False).encode()
                           + b"\n")
        except OSError as exc:
            _log.error("cannot record evidence in %s: %s", path, exc)


# -- HTTP ------------------------------------------------------------------------------------


class WitnessHandler(BaseHTTPRequestHandler):
    """One HTTP connection to the witness; every failure becomes an answer, never a crash."""

    server: WitnessServer
    protocol_version = "HTTP/1.1"  # keep-alive, as tlog-witness recommends
    timeout = 30  # seconds a client may stall between bytes
    server_version = "monitoring-witness/1"

    def do_POST(self) -> None:
        """``/add-checkpoint``."""
        self._answer(self._post)

    def do_GET(self) -> None:
        """``/checkpoint/<origin>`` and ``/logs``."""
        self._answer(self._get)

    def _answer(self, route: Callable[[], Reply]) -> None:
        try:
            reply = route()
        except Refusal as exc:
            reply = exc.reply
            self.close_connection = True  # the body may be unread
        except Exception:  # a bug must not take the witness down
            _log.exception("internal error answering %s %s", self.command, self.path)
            reply = Reply.text(500, "internal error")
            self.close_connection = True
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(reply.body)

    def _post(self) -> Reply:
        path = urllib.parse.urlsplit(self.path).path
        if path != self.server.prefix + "/add-checkpoint":
            raise Refusal(404, f"no such endpoint: POST {path}")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise Refusal(400, "chunked request bodies are not supported; send "
                                  "Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise Refusal(400, "missing or invalid Content-Length")
        if int(length) > MAX_REQUEST_BYTES:
            raise Refusal(413, f"request body of {length} bytes is over the limit of "
                                  f"{MAX_REQUEST_BYTES}")
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            raise Refusal(400, f"request body cut short ({len(body)} of {length} bytes)")
        return self.server.witness.add_checkpoint(body)

    def _get(self) -> Reply:
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        prefix = self.server.prefix
        if path == prefix + "/logs":
            return Reply(200, json.dumps(self.server.witness.held_logs()).encode() + b"\n",
                         "application/json")
        if path.startswith(prefix + "/checkpoint/"):
            origin = path[len(prefix + "/checkpoint/"):]
            held = self.server.witness.held(origin)
            if held is None:
                raise Refusal(404, f"no checkpoint of {origin!r}")
            return Reply(200, held.note.encode("utf-8"))
        raise Refusal(404, f"no such endpoint: GET {path}")

    def log_message(self, format: str, *args: object) -> None:
        """Request log lines go to the ``monitoring.audit.witness`` logger."""
        _log.info("%s %s", self.address_string(), format % args)


class WitnessServer(ThreadingHTTPServer):
    """The witness on a socket; one thread per connection (daemon threads)."""

    daemon_threads = True

    def __init__(self, witness: Witness, host: str = "127.0.0.1", port: int = 0,
                 prefix: str = "") -> None:
        self.witness = witness
        self.prefix = prefix.rstrip("/")
        super().__init__((host, port), WitnessHandler)

    @property
    def url(self) -> str:
        """The submission prefix URL of this server."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}{self.prefix}"


def open_witness(state_dir: Path, logs: Sequence[tuple[str, NoteVerifier]], *,
                 name: str = DEFAULT_NAME, key_path: Path | None = None,
                 clock: Callable[[], float] = time.time) -> Witness:
    """A witness whose key is ``key_path`` (default ``STATE/witness.key``, created 0600)."""
    key = load_signing_key(name, key_path or state_dir / KEY_FILE, create=True, env={})
    return Witness(key, logs, state_dir, clock)


def log_verifiers(specs: Sequence[str], files: Sequence[Path]) -> list[tuple[str, NoteVerifier]]:
    """The logs of ``--log ORIGIN=VKEY`` options and ``--logs FILE`` files, checked."""
    logs = [parse_log_spec(spec, f"--log {spec[:40]}") for spec in specs]
    for path in files:
        logs.extend(read_logs_file(path))
    return logs
