"""Where a ledger's files live: beside the DuckDB file unless told otherwise.

A ledger is more than its tables: the checkpoint sidecar, the writer lock and the folder of
per-subject keys are files next to the store, so that copying or deleting the store alone
does not silently copy or delete them (the sidecar is what exposes a restored backup). The
signing key and the key-encryption key are *not* here: they default to the user's config
folder (keys.py, vault.py), outside the database directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from monitoring.audit.errors import AuditError

SIDECAR_SUFFIX = ".checkpoints"
LOCK_SUFFIX = ".audit.lock"
VAULT_SUFFIX = ".subject-keys"


@dataclass(frozen=True)
class LedgerPaths:
    """The files of one ledger; ``db`` is None for a store that lives in memory."""

    db: Path | None
    sidecar: Path
    lock: Path
    vault: Path
    key: Path | None = None
    """The signing key file given explicitly (None: the environment or the default)."""
    kek: Path | None = None
    """The key-encryption key file given explicitly (None: the environment or the default)."""


def ledger_paths(db: Path | None, *, sidecar: Path | None = None,
                 vault_dir: Path | None = None, lock: Path | None = None,
                 key: Path | None = None, kek: Path | None = None) -> LedgerPaths:
    """The paths of the ledger in ``db``: the ones given, else ``<db>.checkpoints`` etc.

    A store in memory has no place for defaults: the sidecar must then be given, and the lock
    and vault go beside it.
    """
    if db is None:
        if sidecar is None:
            raise AuditError("a ledger in an in-memory store needs an explicit sidecar path "
                             "(sidecar=...): the checkpoints must outlive the process")
        base = sidecar
    else:
        base = db
        sidecar = sidecar or _beside(db, SIDECAR_SUFFIX)
    return LedgerPaths(
        db=db,
        sidecar=sidecar,
        lock=lock or _beside(base, LOCK_SUFFIX),
        vault=vault_dir or _beside(base, VAULT_SUFFIX),
        key=key,
        kek=kek,
    )


def database_path(conn: duckdb.DuckDBPyConnection) -> Path | None:
    """The file behind a DuckDB connection's current database, None when it is in memory."""
    rows = conn.execute("SELECT path FROM duckdb_databases() "
                        "WHERE database_name = current_database()").fetchall()
    return Path(rows[0][0]) if rows and rows[0][0] else None


def _beside(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)
