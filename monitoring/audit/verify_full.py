"""Full verification: every row, every leaf, every checkpoint, the sidecar and the anchors.

One :class:`FullRun` per verification. DuckDB runs the row checks (verify_rows.py) on a second
cursor over the same snapshot while Python rebuilds the Merkle tree chunk by chunk from the
stored leaf hashes; when any row looks wrong the tree is rebuilt from leaf hashes recomputed
from the envelopes, so a stored leaf never decides a root. Then every stored checkpoint is
checked (signature, key window, root at its size), and the removed payloads, the missing
sealed data, the stored nodes, ``audit_meta``, the sidecar and the anchors.
"""

from __future__ import annotations

import bisect
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.errors import AuditError, VerifyFailure
from monitoring.audit.external import (
    Outside,
    StoreView,
    b64,
    check_anchors,
    check_sidecar,
    open_signed,
)
from monitoring.audit.keys import KeyHistory
from monitoring.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    compact_range,
    node_hash,
    root_at,
)
from monitoring.audit.note import Checkpoint
from monitoring.audit.retention import RemovalCoverage
from monitoring.audit.storage import (
    META_CREATED,
    META_FRONTIER,
    META_ORIGIN,
    META_SCHEMA,
    SCHEMA_VERSION,
    LedgerStorage,
    StoredCheckpoint,
)
from monitoring.audit.verify_keys import acknowledged_in, history_from_events, parsed_envelope
from monitoring.audit.verify_report import Finding, alarm_finding
from monitoring.audit.verify_rows import (
    FLAG_TEXT,
    check_nodes,
    chunk_leaves,
    extent,
    release,
    scan_rows,
)

CHUNK_LEVEL = 16
CHUNK = 1 << CHUNK_LEVEL
"""Leaves read and hashed at a time: one aligned subtree, so memory stays bounded."""

ERASURE = ("security", "gdpr.erasure")
ZERO_LEAF = b"\x00" * 32
"""Stands for a missing row when a tree must still be built (its roots then mismatch)."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: entries verified so far, of ``total``."""


class FullRun:
    """One full verification; each step appends :class:`Finding` s."""

    def __init__(self, storage: LedgerStorage, cur: Any, outside: Outside,
                 history: KeyHistory | None, progress: Progress | None) -> None:
        self.storage = storage
        self.cur = cur
        self.origin = storage.origin
        self.sidecar = outside.sidecar
        self.pinned = history
        self.progress = progress
        self.findings: list[Finding] = []
        self.warnings: list[str] = []
        self.alarms: list[Alarm] = []
        self.checkpoints = storage.checkpoints()
        self.by_size = {cp.size: cp for cp in self.checkpoints}
        self.sizes = [cp.size for cp in self.checkpoints]
        self.roots: dict[int, bytes] = {}
        self.frontier: list[bytes] = []
        self.size = 0
        self.uncovered = 0
        self.pruned = 0
        self.erased = 0
        self.scan = outside.scan
        self.alarms += outside.alarms
        self.anchors = outside.anchors

    def add(self, reason: str, lo: int | None = None, hi: int | None = None,
            rank: int = 0) -> None:
        self.findings.append(Finding(reason, lo, hi, rank))

    def run(self) -> None:
        rows_count, claimed = extent(self.cur)
        # Missing rows become placeholder leaves (and gaps); a seq far beyond the stored rows
        # is a renumbered row, not billions of missing ones.
        self.size = claimed if claimed <= 2 * rows_count + CHUNK else rows_count
        # DuckDB checks the rows on its own threads (a second cursor on the same snapshot)
        # while Python builds the tree from the stored leaves, then checks the stored nodes.
        # When no second cursor sees the same snapshot, the steps run one after the other.
        twin = self._twin((rows_count, claimed))
        if twin is None:
            rows = scan_rows(self.cur, self.origin)
            nodes = check_nodes(self.cur, self.size)
        else:
            try:
                with ThreadPoolExecutor(1) as pool:
                    checks = pool.submit(scan_rows, twin, self.origin)
                    self._tree(self.cur, recompute=False)
                    nodes = check_nodes(self.cur, self.size)
                    rows = checks.result()
            finally:
                release(twin)
        if twin is None or rows.flagged_total > 0:
            self._tree(self.cur, recompute=rows.flagged_total > 0)
        for seq, flags, previous in rows.flagged:
            for flag in flags:
                if flag == "gap" and previous is not None:
                    self.add(f"seqs {previous + 1}..{seq - 1} are missing (rows deleted)",
                             previous + 1, seq)
                else:
                    self.add(_flag_text(flag), seq)
        if rows.flagged_total > len(rows.flagged):
            self.warnings.append(f"{rows.flagged_total - len(rows.flagged)} more rows have "
                                 "problems (only the first ones are listed)")
        events = self._meta_events(rows.meta)
        history = self._history(events)
        self._checkpoints(history)
        self._removed(rows.pruned, events)
        self._erasures(rows.missing_pii, events)
        for seq in rows.orphan_pii:
            self.add("sealed personal data is stored for this seq, which has no entry", seq)
        for node in nodes:
            lo, hi = node.leaves or (None, None)
            self.add(f"stored tree node (level {node.level}, index {node.index}): "
                     f"{node.reason} (the tree tables were altered)", lo, hi, rank=1)
        self._meta(events)
        if history is not None:
            self._external(history, events)

    def _twin(self, counts: tuple[int, int]) -> Any:
        """A second cursor over the same snapshot, or None (a commit came in between)."""
        twin = self.cur.cursor()
        twin.execute("BEGIN TRANSACTION")
        heads = "SELECT coalesce(max(size), 0), count(*) FROM audit_checkpoints"
        if (extent(twin) != counts
                or twin.execute(heads).fetchone() != self.cur.execute(heads).fetchone()):
            release(twin)
            return None
        return twin

    # -- meta-events and the key history

    def _meta_events(self, meta: Sequence[tuple[int, bytes]]) -> list[tuple[int, dict[str, Any]]]:
        events: list[tuple[int, dict[str, Any]]] = []
        for seq, envelope in meta:
            try:
                events.append((seq, parsed_envelope(seq, envelope, None, self.origin)))
            except VerifyFailure as exc:
                self.add(f"meta-event: {exc.reason}", seq)
        return events

    def _history(self, events: Sequence[tuple[int, Mapping[str, Any]]]) -> KeyHistory | None:
        try:
            derived = history_from_events(self.origin, events)
        except VerifyFailure as exc:
            self.add(f"key history: {exc.reason}", exc.seq)
            return self.pinned
        for r in derived.rotations:
            if r + 1 not in self.by_size:
                self.add(f"the key rotation has no checkpoint of size {r + 1} signed by the "
                         "old key (the rotation's own batch)", r)
        if self.pinned is not None:
            # The caller's keys say which keys to trust; the ledger's own key events (which
            # the checkpoints authenticate) say for which sizes each one may sign.
            known = set(self.pinned.verifiers)
            foreign = [v.key_hex for v in derived.history.verifiers if v not in known]
            if foreign:
                self.add("the store's key history holds keys that are not the expected ones: "
                         f"{', '.join(foreign)}", 0)
                return self.pinned
        return derived.history

    # -- the tree

    def _wanted_sizes(self) -> list[int]:
        sizes = set(self.sizes) | {rec.size for rec in self.scan.records}
        for anchor in self.anchors:
            if anchor.note:
                with contextlib.suppress(AuditError):
                    sizes.add(Checkpoint.parse(anchor.note[:anchor.note.find("\n\n") + 1]).size)
        sizes.add(self.size)
        return sorted(s for s in sizes if 0 < s <= self.size)

    def _tree(self, cur: Any, recompute: bool) -> None:
        """Rebuild the tree chunk by chunk: the roots at every wanted size, and the frontier.

        Without ``recompute`` the stored leaf hashes are used: the row checks, which run at
        the same time in DuckDB, compare every one with the hash recomputed from its envelope,
        and the tree is built again with recomputed hashes when any row looked wrong, so a
        stored leaf that was changed together with its envelope never decides a root.
        """
        n = self.size
        wanted = self._wanted_sizes()
        chunks = Frontier()
        roots: dict[int, bytes] = {}
        for start in range(0, n, CHUNK):
            end = min(start + CHUNK, n)
            seqs, fresh, stored = chunk_leaves(cur, start, end, recompute=recompute)
            if fresh == stored and len(seqs) == end - start and (
                    not seqs or (seqs[0] == start and seqs[-1] == end - 1)):
                leaves: list[bytes] = stored  # type: ignore[assignment]
            else:
                leaves = _leaves(start, end, seqs, fresh, stored)
            tree = MemoryTree(leaves)
            lo = bisect.bisect_right(wanted, start)
            hi = bisect.bisect_right(wanted, end)
            for size in wanted[lo:hi]:
                roots[size] = _fold(chunks.hashes, root_at(tree, size - start))
            if end - start == CHUNK:
                chunks.append(tree.node(CHUNK_LEVEL, 0))
            if end == n:
                tail = [] if end - start == CHUNK else compact_range(0, end - start)
                self.frontier = chunks.hashes + [tree.node(lv, ix) for lv, ix in tail]
            if self.progress is not None:
                self.progress(end, n)
        self.roots = roots

    # -- checkpoints

    def _checkpoints(self, history: KeyHistory | None) -> None:
        n = self.size
        good = 0
        for stored in self.checkpoints:
            size = stored.size
            signed = stored.root
            if history is not None:
                view = StoreView(self.origin, history, None, self.by_size.get,
                                 lambda _s: None, self.root_of)
                try:
                    cp = open_signed(view, stored.note)
                except AuditError as exc:
                    self.add(f"the store's checkpoint of size {size} does not verify: {exc}")
                    cp = None
                if cp is not None:
                    signed = cp.root
                    if (cp.size, cp.root) != (size, stored.root):
                        self.add(f"the store's checkpoint row of size {size} disagrees with its "
                                 f"signed note (size {cp.size}, root {b64(cp.root)})")
            if size > n:
                self.add(f"the signed checkpoint of size {size} covers entries {n}.."
                         f"{size - 1}, which the store no longer holds (the tail was cut)",
                         n, size)
                continue
            if self.roots.get(size) != signed:
                self.add(f"the root of the first {size} entries is not the one the checkpoint "
                         f"of size {size} signs: an entry in seqs {good}..{size - 1} was "
                         "changed, removed, inserted or reordered", good, size)
            else:
                good = size
        newest = self.sizes[-1] if self.sizes else 0
        if not self.checkpoints:
            self.add("the store holds no signed checkpoint")
        if n > newest:
            self.uncovered = n - newest
            self.add(f"{n - newest} entries (seqs {newest}..{n - 1}) are not covered by any "
                     "signed checkpoint", newest, n)

    def root_of(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        if size not in self.roots:
            raise AuditError(f"the store holds {self.size} entries, not {size}")
        return self.roots[size]

    # -- removed payloads and sealed data

    def _removed(self, pruned: Sequence[tuple[int, int]],
                 events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        coverage = RemovalCoverage()
        for seq, fields in events:
            coverage.add(seq, fields)
        for start, end in pruned:
            self.pruned += end - start
            first = coverage.first_uncovered(range(start, end))
            if first is not None:
                self.add("the entry's payload was removed, but no signed retention record "
                         "covers it (pruned beyond policy or deleted behind the ledger's back)",
                         first)

    def _erasures(self, missing: Mapping[str, Sequence[int]],
                  events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        erased_at: dict[str, int] = {}
        for seq, fields in events:
            if (fields.get("category"), fields.get("action")) == ERASURE:
                ref = (fields.get("data") or {}).get("subject_ref")
                if isinstance(ref, str):
                    erased_at[ref] = max(seq, erased_at.get(ref, -1))
        for ref, seqs in missing.items():
            last = erased_at.get(ref, -1)
            bad = [s for s in seqs if s >= last]
            self.erased += len(seqs) - len(bad)
            if bad:
                self.add(f"the sealed personal data (subject ref {ref}) is gone, but no later "
                         "signed gdpr.erasure record names that ref", min(bad))

    # -- audit_meta

    def _meta(self, events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        values = dict(self.cur.execute("SELECT key, value FROM audit_meta").fetchall())
        known = {META_ORIGIN, META_SCHEMA, META_CREATED, META_FRONTIER}
        for key in sorted(known - set(values)):
            self.add(f"audit_meta lacks its {key!r} row")
        for key in sorted(set(values) - known):
            self.warnings.append(f"audit_meta holds an unknown row {key!r} (not verified)")
        if values.get(META_SCHEMA, SCHEMA_VERSION) != SCHEMA_VERSION:
            self.add(f"audit_meta schema_version is {values[META_SCHEMA]!r}, expected "
                     f"{SCHEMA_VERSION!r}")
        genesis = dict(events[0][1]) if events and events[0][0] == 0 else None
        created = values.get(META_CREATED)
        if created is not None and genesis is not None and (
                not created.isdigit() or int(created) > int(genesis.get("ts") or 0)):
                self.add(f"audit_meta created_us {created!r} is not a time at or before the "
                         "genesis entry's timestamp", 0)
        text = values.get(META_FRONTIER)
        if text is not None:
            want = {"size": self.size, "hashes": [h.hex() for h in self.frontier]}
            try:
                found = json.loads(text)
            except ValueError:
                found = None
            if found != want:
                self.add(f"audit_meta's frontier does not match the tree of {self.size} "
                         "entries recomputed from the envelopes")

    # -- sidecar and anchors

    def _external(self, history: KeyHistory,
                  events: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        latest = self.checkpoints[-1] if self.checkpoints else None
        acked: set[tuple[int, bytes]] = set()
        for _seq, fields in events:
            acked |= acknowledged_in(fields)
        by_size = self.by_size

        def after(size: int) -> StoredCheckpoint | None:
            i = bisect.bisect_right(self.sizes, size)
            return self.checkpoints[i] if i < len(self.checkpoints) else None

        view = StoreView(self.origin, history, latest, by_size.get, after, self.root_of,
                         frozenset(acked), self.sizes)
        if self.sidecar is None:
            self.warnings.append("no sidecar given: the store was not compared with it")
        elif not self.scan.exists and self.checkpoints:
            self.add(f"the sidecar {self.sidecar} is missing: the store cannot be compared "
                     "with the checkpoints it held")
        else:
            self.alarms += _first_rollback(check_sidecar(view, self.scan, self.sidecar,
                                                         every=True))
        found, warnings = check_anchors(view, self.anchors)
        self.alarms += found
        self.warnings += warnings
        for alarm in self.alarms:
            self.findings.append(alarm_finding(alarm))


def _first_rollback(alarms: list[Alarm]) -> list[Alarm]:
    """Every sidecar line past the store's size is a ROLLBACK; keep the first only."""
    out: list[Alarm] = []
    seen = False
    for alarm in alarms:
        if alarm.kind is AlarmKind.ROLLBACK:
            if seen:
                continue
            seen = True
        out.append(alarm)
    return out


def _flag_text(flag: str) -> str:
    if flag.startswith("col:"):
        column = flag[4:]
        return (f"search column {column} differs from the envelope (the unverified copy was "
                "changed)")
    return FLAG_TEXT.get(flag, flag)


def _leaves(start: int, end: int, seqs: Sequence[int], fresh: Sequence[bytes | None],
            stored: Sequence[bytes | None]) -> list[bytes]:
    """Leaf hashes by position ``seq - start``: recomputed where an envelope exists.

    A pruned entry (no envelope) keeps its stored hash; a missing row gets a placeholder (the
    roots then disagree with the checkpoints, as they should); of a duplicated seq the first
    row counts (the row checks report the duplicate).
    """
    leaves = [ZERO_LEAF] * (end - start)
    placed = [False] * (end - start)
    for seq, new, old in zip(seqs, fresh, stored, strict=True):
        i = seq - start
        if placed[i]:
            continue
        placed[i] = True
        if new is not None:
            leaves[i] = new
        elif old is not None and len(old) == 32:
            leaves[i] = old
    return leaves


def _fold(prefix: Sequence[bytes], tail: bytes) -> bytes:
    """The root of the perfect subtrees ``prefix`` (largest first), then the tree ``tail``.

    ``tail`` covers fewer leaves than the last of ``prefix`` (RFC 6962 folds from the right).
    """
    acc = tail
    for h in reversed(prefix):
        acc = node_hash(h, acc)
    return acc
