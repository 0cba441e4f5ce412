"""A ledger's files plus the tools of an adversary, for the verification and tamper tests.

:class:`Store` builds a ledger through the real writer, then changes the closed store the way
the adversaries of docs/audit.md would: A1 edits the DuckDB file (envelopes, leaves, tree
tables, checkpoints), A2 also the sidecar file; and it runs the verifiers on the result.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from monitoring.audit.alarms import Alarm
from monitoring.audit.anchors import FileAnchor
from monitoring.audit.envelope import canonical_json
from monitoring.audit.ledger import Ledger
from monitoring.audit.merkle import Frontier, MemoryTree, leaf_hash
from monitoring.audit.note import Checkpoint
from monitoring.audit.recovery import startup_check
from monitoring.audit.sidecar import Sidecar
from monitoring.audit.storage import LedgerStorage, frontier_json
from monitoring.audit.verify import Report, verify_full, verify_quick
from tests.support.audit_files import LedgerFiles

LOGIN = {"event_type": "authentication", "action": "login", "severity": "info",
         "resource": "auth", "outcome": "success"}
ENTRY_PLACEHOLDERS = ", ".join("?" * 12)
"""Parameters of one ``audit_entries`` row."""


def event(i: int) -> dict[str, Any]:
    """A mix of events: every third one has a data subject (sealed personal data)."""
    if i % 3 == 0:
        return {**LOGIN, "user_id": f"user{i % 5}", "source": f"10.0.0.{i}",
                "details": {"attempt": i}}
    return {"event_type": "data_access", "action": "read", "resource": f"table/{i}",
            "details": {"rows": i}}


class Store(LedgerFiles):
    """A ledger in ``root`` (see :class:`LedgerFiles`), its folder anchor and its tamperers."""

    @property
    def sidecar(self) -> Path:
        return self.db.with_name(self.db.name + ".checkpoints")

    @property
    def anchor_dir(self) -> Path:
        return self.root / "anchor"

    def open(self, **options: Any) -> Ledger:
        options.setdefault("batch_ms", 0.0)
        return super().open(**options)

    def build(self, singles: int = 12, batch: int = 10) -> Ledger:
        """Genesis, ``singles`` events in batches of their own, then one batch of ``batch``."""
        ledger = self.open()
        for i in range(1, singles + 1):
            ledger.append(event(i))
        if batch:
            ledger.append_many([event(100 + i) for i in range(batch)])
        return ledger

    def build_batches(self, sizes: list[int]) -> None:
        """A ledger whose batches have these sizes (after the genesis batch)."""
        with self.open() as ledger:
            n = 0
            for size in sizes:
                ledger.append_many([event(n + i) for i in range(size)])
                n += size

    def anchor(self) -> FileAnchor:
        return FileAnchor(self.anchor_dir)

    def publish(self, ledger: Ledger) -> int:
        """Publish the newest checkpoint to the folder anchor; its size."""
        newest = ledger.storage.latest_checkpoint()
        assert newest is not None
        cp = Checkpoint(ledger.origin, newest.size, newest.root)
        self.anchor().publish(newest.note, cp,
                              lambda old: ledger.consistency_proof(old, cp.size))
        return cp.size

    # -- reading

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        conn = duckdb.connect(str(self.db), read_only=read_only)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def storage(self) -> Iterator[LedgerStorage]:
        with self.connect(read_only=True) as conn:
            yield LedgerStorage(conn)

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params or []).fetchall()

    def value(self, sql: str, params: list[Any] | None = None) -> Any:
        rows = self.query(sql, params)
        assert rows, sql
        return rows[0][0]

    def verify(self, anchors: bool = False) -> Report:
        with self.storage() as storage:
            return verify_full(storage, Sidecar(self.sidecar),
                               [self.anchor()] if anchors else [])

    def quick(self) -> Report:
        with self.storage() as storage:
            return verify_quick(storage, Sidecar(self.sidecar))

    def alarms(self, anchors: bool = True) -> list[Alarm]:
        with self.storage() as storage:
            return startup_check(storage, Sidecar(self.sidecar),
                                 [self.anchor()] if anchors else [])

    def envelope(self, seq: int) -> dict[str, Any]:
        fields: dict[str, Any] = json.loads(
            bytes(self.value("SELECT envelope FROM audit_entries WHERE seq = ?", [seq])))
        return fields

    def rows(self) -> list[tuple[Any, ...]]:
        return self.query("SELECT * FROM audit_entries ORDER BY seq")

    # -- an adversary with write access to the store (A1) and the sidecar (A2)

    def rewrite(self, seq: int, *, leaf: bool, **changes: Any) -> bytes:
        """Change envelope fields (canonical bytes again); with ``leaf``, its leaf hash too."""
        data = canonical_json({**self.envelope(seq), **changes})
        self.query("UPDATE audit_entries SET envelope = ? WHERE seq = ?", [data, seq])
        if leaf:
            self.query("UPDATE audit_entries SET leaf = ? WHERE seq = ?", [leaf_hash(data), seq])
        return data

    def rebuild_tree(self) -> None:
        """Recompute every stored node and the frontier from the stored leaves (a careful A1)."""
        with self.connect() as conn:
            leaves = [bytes(r[0]) for r in
                      conn.execute("SELECT leaf FROM audit_entries ORDER BY seq").fetchall()]
            tree = MemoryTree(leaves)
            conn.execute("DELETE FROM audit_nodes")
            rows = [(level, i, h) for level in range(1, len(tree.levels))
                    for i, h in enumerate(tree.levels[level])]
            if rows:
                conn.executemany("INSERT INTO audit_nodes VALUES (?, ?, ?)", rows)
            frontier = Frontier.from_reader(tree, len(leaves))
            conn.execute("UPDATE audit_meta SET value = ? WHERE key = 'frontier'",
                         [frontier_json(frontier)])

    def truncate(self, size: int) -> None:
        """Cut the store back to ``size`` entries, consistently (entries, tree, checkpoints)."""
        self.sql(f"DELETE FROM audit_entries WHERE seq >= {size}",
                 f"DELETE FROM audit_pii WHERE seq >= {size}",
                 f"DELETE FROM audit_checkpoints WHERE size > {size}")
        self.rebuild_tree()

    def truncate_sidecar(self, size: int) -> None:
        """Keep only the sidecar lines of checkpoints up to ``size``."""
        lines = self.sidecar.read_bytes().splitlines(keepends=True)
        self.sidecar.write_bytes(b"".join(line for line in lines
                                          if json.loads(line)["size"] <= size))

    def insert_row(self, row: list[Any] | tuple[Any, ...]) -> None:
        self.query(f"INSERT INTO audit_entries VALUES ({ENTRY_PLACEHOLDERS})", list(row))

    def replace_rows(self, rows: list[tuple[Any, ...]]) -> None:
        with self.connect() as conn:
            conn.execute("DELETE FROM audit_entries")
            conn.executemany(f"INSERT INTO audit_entries VALUES ({ENTRY_PLACEHOLDERS})", rows)
