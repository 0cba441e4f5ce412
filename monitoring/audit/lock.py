"""The writer lock: one process at a time may append to a ledger.

DuckDB itself refuses a second read-write process on a file, but not a second connection in
the same process, nor a live engine sharing its connection with the ledger; and a ledger kept
in an in-memory store has no file to lock at all. The ledger therefore takes its own
``fcntl.flock`` lock on ``<db>.audit.lock`` (exclusive, non-blocking). ``flock`` locks belong
to the open file, so a second :class:`WriterLock` on the same path is refused even inside the
same process. The holder writes its PID into the file so the refusal can name it. The file is
never deleted: unlinking a lock file lets two processes lock two different inodes.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from monitoring.audit.errors import LedgerLockedError


class WriterLock:
    """An exclusive, non-blocking ``flock`` on ``path`` that names its holder's PID."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or raise :class:`LedgerLockedError` naming the process holding it."""
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise LedgerLockedError(
                f"{self.path}: cannot create the writer lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            mine = " (this process)" if holder == os.getpid() else ""
            raise LedgerLockedError(
                f"{self.path}: the ledger is already open for writing by {who}{mine}; "
                "only one writer may append to a ledger") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (closing the file releases the ``flock``)."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
