"""The durable file helpers: what each writes, and that every new or removed name is fsynced.

Whether bytes reach the disk cannot be observed without pulling the plug, so the tests record
the ``fsync`` calls made on folders (the step that is easiest to forget) and check the file
contents, modes and leftovers.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from monitoring.audit import fsutil
from monitoring.audit.fsutil import (
    TMP_PREFIX,
    append_durably,
    replace_durably,
    temp_path,
    truncate_durably,
    unlink_durably,
    write_atomic,
)


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The folders fsync_dir was called on, in order (the real fsync still runs)."""
    calls: list[Path] = []
    real = fsutil.fsync_dir

    def record(folder: Path) -> None:
        calls.append(Path(folder))
        real(folder)

    monkeypatch.setattr(fsutil, "fsync_dir", record)
    return calls


def test_write_atomic_replaces_and_syncs_the_folder(tmp_path: Path, synced: list[Path]) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"one\n")
    write_atomic(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert synced == [tmp_path, tmp_path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_without_replace_never_overwrites(tmp_path: Path,
                                                       synced: list[Path]) -> None:
    target = tmp_path / "subject.key"
    write_atomic(target, b"first", mode=0o600, replace=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, b"second", mode=0o600, replace=False)
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["subject.key"]  # no temporary left
    assert synced == [tmp_path]


def test_write_atomic_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "public", b"x", mode=0o644)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_temporary_names_are_hidden_unique_and_match_no_reader_pattern(tmp_path: Path) -> None:
    target = tmp_path / "log.json"
    names = {temp_path(target).name for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith(TMP_PREFIX) and name.endswith(".part")
        assert not name.endswith((".json", ".key", ".checkpoints"))


def test_replace_durably_moves_a_finished_file(tmp_path: Path, synced: list[Path]) -> None:
    tmp = temp_path(tmp_path / "a.parquet")
    tmp.write_bytes(b"PAR1")
    replace_durably(tmp, tmp_path / "a.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == b"PAR1" and not tmp.exists()
    assert synced == [tmp_path]


def test_append_durably_syncs_the_folder_only_when_it_creates_the_file(
        tmp_path: Path, synced: list[Path]) -> None:
    path = tmp_path / "evidence.jsonl"
    append_durably(path, b"a\n", mode=0o600)
    append_durably(path, b"b\n", mode=0o600)
    assert path.read_bytes() == b"a\nb\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert synced == [tmp_path]


def test_truncate_durably_cuts_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sidecar"
    path.write_bytes(b"line\ntorn")
    truncate_durably(path, 5)
    assert path.read_bytes() == b"line\n"


def test_unlink_durably_returns_what_it_removed_and_syncs_each_folder_once(
        tmp_path: Path, synced: list[Path]) -> None:
    (tmp_path / "sub").mkdir()
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "sub" / "c"
    for path in (a, b, c):
        path.write_bytes(b"x")
    gone = unlink_durably(a, b, c, tmp_path / "missing")
    assert gone == [a, b, c]
    assert sorted(synced) == sorted([tmp_path, tmp_path / "sub"])
    assert unlink_durably(tmp_path / "missing") == []


def test_symlinked_target_is_not_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_bytes(b"keep")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(OSError):
        truncate_durably(tmp_path / "link", 0)
    assert real.read_bytes() == b"keep"
