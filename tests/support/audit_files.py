"""A ledger's files for integration tests: a store, a 0600 signing key and KEK, a fake clock.

Tamper tests change the closed store with :meth:`LedgerFiles.sql` (adversary A1: write access
to the database file, no key); :meth:`LedgerFiles.cli` runs ``monitoring audit ...`` on it in
a subprocess, as an operator would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from monitoring.audit.keys import SigningKey, write_key_file
from monitoring.audit.ledger import Ledger

REPO = Path(__file__).resolve().parents[2]
T0_MS = 1_700_000_000_000
"""Where the fake clock starts (ms since the epoch)."""


@dataclass
class LedgerFiles:
    """``store.duckdb`` and its secrets under ``root``; ``now_ms`` is the ledger's clock."""

    root: Path
    now_ms: int = T0_MS

    def __post_init__(self) -> None:
        self.db = self.root / "store.duckdb"
        secrets = self.root / "secrets"
        secrets.mkdir(mode=0o700)
        self.key = secrets / "signing.key"
        write_key_file(self.key, SigningKey.generate("test.local/audit"))
        self.kek = secrets / "kek"
        self.kek.write_bytes(os.urandom(32))
        self.kek.chmod(0o600)

    def clock(self) -> int:
        return self.now_ms * 1_000_000

    def open(self, **options: Any) -> Ledger:
        """Open (or create) the ledger with a 1 ms batch window and the fake clock."""
        options.setdefault("batch_ms", 1.0)
        return Ledger.open(self.db, key_path=self.key, kek_path=self.kek, clock=self.clock,
                           **options)

    def sql(self, *statements: str) -> None:
        """Run SQL on the closed store, behind the ledger's back."""
        conn = duckdb.connect(str(self.db))
        try:
            for statement in statements:
                conn.execute(statement)
        finally:
            conn.close()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``monitoring audit ARGS --db ... --key ... --kek ...`` in a subprocess."""
        return subprocess.run(
            [sys.executable, "-m", "monitoring", "audit", *args, "--db", str(self.db),
             "--key", str(self.key), "--kek", str(self.kek)],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, "PYTHONPATH": str(REPO)})
