"""Durable file operations shared by the ledger's files outside the store.

The sidecar, the anchors' folders, the witness's state, the subject-key vault and the archive
files all promise the same thing: once a call returns, what it wrote survives a power cut,
and a crash in the middle leaves the old content or the new, never a mix. POSIX gives that
only when every step is spelled out: the file's data needs ``fsync`` on the file, and a new,
renamed or removed *name* needs ``fsync`` on the folder that holds it (a file's fsync does
not cover its directory entry). These helpers are the one place that spells the steps out, so
no module forgets the folder fsync.

Temporary files are named ``.tmp-<random>-<name>.part`` in the target's folder: hidden,
unique per call (two writers never share one), never matching a ``*.json`` or ``*.key``
pattern a reader scans, and recognisable by :data:`TMP_PREFIX` for whoever cleans up after
a crash.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TMP_PREFIX = ".tmp-"
"""The prefix of every temporary file these helpers create."""
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def fsync_dir(folder: Path) -> None:
    """Make the entries created, renamed or removed in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def fsync_file(path: Path) -> None:
    """Flush a file someone else wrote (DuckDB's ``COPY``, say) to the disk."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (see the module docstring)."""
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}-{path.name}.part")


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644, replace: bool = True) -> None:
    """Give ``path`` the content ``data`` so that a crash leaves the old file or the new one.

    The data goes to a temporary file (created with ``mode``, never following a symlink),
    is fsynced, and is then moved into place: with ``replace`` by ``rename`` (an existing
    file is replaced), otherwise by ``link``, which raises :class:`FileExistsError` when
    ``path`` exists (for files that must never be overwritten, such as a subject's key, and
    where two processes may race to create the same one). The folder is fsynced last.
    """
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # gone after a rename; still there after a link or error
    fsync_dir(path.parent)


def replace_durably(tmp: Path, path: Path) -> None:
    """Move a finished file ``tmp`` onto ``path``: fsync it, rename it, fsync the folder."""
    fsync_file(tmp)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def append_durably(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Append ``data`` to ``path`` (created with ``mode`` if missing) and fsync it.

    When the call created the file, the folder is fsynced too, so the name survives with it.
    """
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def truncate_durably(path: Path, length: int) -> None:
    """Cut ``path`` to ``length`` bytes and fsync it."""
    fd = os.open(path, os.O_RDWR | _NOFOLLOW | os.O_CLOEXEC)
    try:
        os.ftruncate(fd, length)
        os.fsync(fd)
    finally:
        os.close(fd)


def unlink_durably(*paths: Path) -> list[Path]:
    """Remove the files that exist among ``paths``, then fsync their folders; returns them."""
    gone = []
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        gone.append(path)
    for folder in {p.parent for p in gone}:
        fsync_dir(folder)
    return gone


__all__ = [
    "TMP_PREFIX",
    "append_durably",
    "fsync_dir",
    "fsync_file",
    "replace_durably",
    "temp_path",
    "truncate_durably",
    "unlink_durably",
    "write_all",
    "write_atomic",
]
