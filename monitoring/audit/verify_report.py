"""The report of a verification, and how its first bad seq is chosen.

Every check adds :class:`Finding` s; :func:`make_report` orders them so that the report names
the lowest seq that a check proves bad (a row of the store before a node of the derived tree
tables, anything with a seq before problems that have none) and joins the reasons found for
that seq. A root that disagrees with its checkpoint only bounds the change to the batch
``[P, S)`` between the last checkpoint that verified and the first that did not: the Merkle
root cannot say which entry of a batch changed, and ``bad_range`` says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitoring.audit.alarms import Alarm, AlarmKind
from monitoring.audit.external import describe


@dataclass(frozen=True)
class Finding:
    """One problem: ``lo``..``hi`` (half-open) are the seqs it concerns, if any.

    ``rank`` orders problems of the entries themselves (0) before those of the derived tree
    tables (1), so the first bad seq names an entry rather than a node that covers it.
    """

    reason: str
    lo: int | None = None
    hi: int | None = None
    rank: int = 0

    def text(self) -> str:
        """The problem as one line, with its seq range."""
        if self.lo is None:
            return self.reason
        hi = self.lo + 1 if self.hi is None else self.hi
        where = f"seq {self.lo}" if hi <= self.lo + 1 else f"seqs {self.lo}..{hi - 1}"
        return f"{where}: {self.reason}"


@dataclass
class Report:
    """The outcome of a verification."""

    ok: bool
    first_bad_seq: int | None
    reason: str
    uncovered: int
    """Entries after the newest checkpoint (no signature covers them)."""
    entries: int
    """Entries checked (the tree size the store claims)."""
    checkpoints: int
    """Signed checkpoints checked."""
    seconds: float
    mode: str = "full"
    bad_range: tuple[int, int] | None = None
    """The seqs the first problem concerns (a whole batch when only its root disagrees)."""
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    """ROLLBACK/FORK/... found against the sidecar and the anchors."""
    pruned: int = 0
    """Entries whose payload a signed retention record removed."""
    erased: int = 0
    """Entries whose sealed personal data a signed erasure record removed."""
    origin: str = ""
    size: int = 0
    """The newest checkpoint's size."""

    @property
    def entries_per_second(self) -> float:
        """Throughput of this run."""
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: ``OK ...`` or ``FAILED at seq N: reason``."""
        if not self.ok:
            where = f" at seq {self.first_bad_seq}" if self.first_bad_seq is not None else ""
            return f"FAILED{where}: {self.reason}"
        extra = [f"{self.pruned} pruned"] if self.pruned else []
        extra += [f"{self.erased} erased"] if self.erased else []
        more = f" ({', '.join(extra)})" if extra else ""
        rate = f", {self.entries_per_second:,.0f} entries/s" if self.mode == "full" else ""
        return (f"OK ({self.mode}): {self.entries} entries{more}, {self.checkpoints} signed "
                f"checkpoints, newest size {self.size}, in {self.seconds:.2f} s{rate}")

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-able data (``--json``)."""
        return {
            "ok": self.ok, "mode": self.mode, "origin": self.origin,
            "first_bad_seq": self.first_bad_seq, "reason": self.reason,
            "bad_range": list(self.bad_range) if self.bad_range else None,
            "entries": self.entries, "checkpoints": self.checkpoints, "size": self.size,
            "uncovered": self.uncovered, "pruned": self.pruned, "erased": self.erased,
            "seconds": round(self.seconds, 6),
            "entries_per_second": round(self.entries_per_second),
            "problems": self.problems, "warnings": self.warnings,
            "alarms": [describe(a) for a in self.alarms],
        }


def make_report(findings: Sequence[Finding], **fields: Any) -> Report:
    """The report of ``findings``: the first bad seq and reason come from the first problem."""
    def key(f: Finding) -> tuple[int, int, int]:
        if f.lo is None:
            return (3 + f.rank, 0, 0)
        return (f.rank, f.lo, (f.hi or f.lo + 1) - f.lo)

    ordered = sorted(findings, key=key)
    problems = list(dict.fromkeys(f.text() for f in ordered))
    if not ordered:
        return Report(ok=True, first_bad_seq=None, reason="", problems=[], **fields)
    first = ordered[0]
    same = [f for f in ordered if key(f)[:2] == key(first)[:2]]
    reason = "; ".join(dict.fromkeys(f.reason for f in same))
    hi = first.hi if first.hi is not None else (first.lo + 1 if first.lo is not None else None)
    bad_range = (first.lo, hi) if first.lo is not None and hi is not None else None
    return Report(ok=False, first_bad_seq=first.lo, reason=reason, bad_range=bad_range,
                  problems=problems, **fields)


def alarm_finding(alarm: Alarm) -> Finding:
    """A ROLLBACK starts at the first missing entry; other alarms name no single entry."""
    if alarm.kind is AlarmKind.ROLLBACK:
        lo, hi = int(alarm.evidence["store_size"]), int(alarm.evidence["foreign_size"])
        return Finding(str(alarm), lo, hi)
    return Finding(str(alarm))
