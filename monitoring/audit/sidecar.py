"""The checkpoint sidecar: every signed checkpoint, appended to a file beside the store.

The sidecar is the ledger's first witness. It lives outside the DuckDB file, so an adversary
who can only change the store (restore a backup, truncate the tables: A1 in docs/audit.md)
leaves a sidecar that is *ahead* of the store, which the startup check reports as ROLLBACK.
Each line is one JSON object ``{"size": N, "root": "<base64>", "note": "<signed note>"}``;
a line is written, then the file is fsynced, before the batch it describes is acknowledged,
so every acknowledged event is covered by a line that reached the disk.

A crash in the middle of a write leaves a final line without its newline. That line was never
fsynced completely, so no event it covers was acknowledged: :meth:`Sidecar.scan` reports it
as ``torn`` (not as corruption) and :meth:`Sidecar.truncate_torn` removes it before the
writer appends again. Any *complete* line that does not parse is corruption and is reported
with its line number.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.audit.errors import AuditError
from monitoring.audit.fsutil import fsync_dir, truncate_durably, write_all


class SidecarError(AuditError):
    """The sidecar file is unreadable or holds a malformed complete line."""


@dataclass(frozen=True)
class SidecarRecord:
    """One checkpoint line: tree ``size``, its ``root`` hash and the signed ``note`` text."""

    size: int
    root: bytes
    note: str
    line: int
    """1-based line number in the file (for messages)."""


@dataclass(frozen=True)
class SidecarScan:
    """What a sidecar file holds: its good records, a torn final line, and bad lines."""

    records: list[SidecarRecord] = field(default_factory=list)
    torn: str | None = None
    """The final line that has no newline (a write cut short), if any."""
    errors: list[str] = field(default_factory=list)
    """``path:line: message`` for every complete line that is not a valid record."""
    exists: bool = False


class Sidecar:
    """An append-only file of checkpoints, fsynced on every append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def exists(self) -> bool:
        """Whether the file exists (a missing sidecar next to an existing store is suspect)."""
        return self.path.exists()

    def scan(self) -> SidecarScan:
        """Read and check every line; never raises for bad content (see :meth:`read`)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return SidecarScan()
        except OSError as exc:
            raise SidecarError(f"{self.path}: cannot read the sidecar: {exc.strerror}") from None
        lines = data.split(b"\n")
        tail = lines.pop()  # b"" when the file ends with a newline
        torn = tail.decode("utf-8", "replace") if tail else None
        records: list[SidecarRecord] = []
        errors: list[str] = []
        for number, raw in enumerate(lines, start=1):
            try:
                records.append(_parse_line(raw, number))
            except ValueError as exc:
                errors.append(f"{self.path}:{number}: {exc}")
        return SidecarScan(records, torn, errors, exists=True)

    def read(self) -> list[SidecarRecord]:
        """The records, in file order; a torn final line is left out.

        Raises :class:`SidecarError` naming the first malformed complete line.
        """
        found = self.scan()
        if found.errors:
            more = f" (and {len(found.errors) - 1} more)" if len(found.errors) > 1 else ""
            raise SidecarError(found.errors[0] + more)
        return found.records

    def latest(self) -> SidecarRecord | None:
        """The newest complete record, or None for an empty or missing sidecar."""
        records = self.read()
        return records[-1] if records else None

    def truncate_torn(self) -> str | None:
        """Cut a torn final line off the file (fsynced); return it, or None if there was none."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return None
        truncate_durably(self.path, end)
        return data[end:].decode("utf-8", "replace")

    def append(self, size: int, root: bytes, note: str) -> None:
        """Append one record and fsync it (and the folder, when the file is new)."""
        line = json.dumps({"size": size, "root": base64.b64encode(root).decode("ascii"),
                           "note": note}, separators=(",", ":"), ensure_ascii=False)
        data = (line + "\n").encode("utf-8")
        fd = self._open()
        try:
            write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            raise SidecarError(f"{self.path}: cannot append a checkpoint: {exc.strerror}") from None

    def close(self) -> None:
        """Close the append handle (appending again reopens it)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SidecarError(f"{self.path}: cannot open the sidecar: {exc.strerror}") from None
        length = os.fstat(fd).st_size
        if length and os.pread(fd, 1, length - 1) != b"\n":
            os.close(fd)
            raise SidecarError(f"{self.path}: the last line is torn (no newline); "
                               "open the ledger to recover it before appending")
        if created:
            fsync_dir(self.path.parent)
        self._fd = fd
        return fd


def _parse_line(raw: bytes, number: int) -> SidecarRecord:
    """One sidecar line as a record; ValueError says what is wrong with it."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a JSON object ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    size, root, note = obj.get("size"), obj.get("root"), obj.get("note")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError("size: expected a non-negative integer")
    if not isinstance(root, str):
        raise ValueError("root: expected a base64 string")
    try:
        digest = base64.b64decode(root, validate=True)
    except binascii.Error:
        raise ValueError("root: not valid base64") from None
    if len(digest) != 32:
        raise ValueError(f"root: expected 32 bytes, found {len(digest)}")
    if not isinstance(note, str) or not note:
        raise ValueError("note: expected the signed checkpoint text")
    return SidecarRecord(size, digest, note, number)

