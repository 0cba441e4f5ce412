"""``--compare``: what changed between the outcomes of two rule sets on the same history.

Rules are matched by ``group/name``; rules left over on both sides are then
matched by name alone when the name is unique on each side (a rule moved to
another group is the same rule). Within a rule, intervals are compared per
alert identity (labels): an old interval equal to a new one is unchanged; an
old interval overlapping a new one but with other start or end is *changed*;
an old interval overlapping nothing *disappeared* (``gone``); a new interval
overlapping nothing (or left over when an old one was split) is *new*.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from monitoring.dryrun.report import (
    CompareReport,
    DryRunReport,
    Interval,
    IntervalChange,
    RuleDiff,
    RuleReport,
)

OPEN_END = 2**63 - 1


def compare_reports(old: DryRunReport, new: DryRunReport, shared_nodes: int = 0
                    ) -> CompareReport:
    """The per-rule differences between two dry-runs over the same range."""
    pairs = match_rules(old.rules, new.rules)
    diffs: list[RuleDiff] = []
    for o, n in pairs:
        if o is None and n is not None:
            diffs.append(RuleDiff(n.key, "added", None, n))
        elif n is None and o is not None:
            diffs.append(RuleDiff(o.key, "removed", o, None))
        elif o is not None and n is not None:
            changes = diff_intervals(o.intervals, n.intervals)
            same = (not changes and o.firings == n.firings and o.status == n.status
                    and o.firing_ms == n.firing_ms)
            diffs.append(RuleDiff(n.key, "unchanged" if same else "changed", o, n, changes))
    return CompareReport(old, new, diffs, shared_nodes)


def match_rules(old: Sequence[RuleReport], new: Sequence[RuleReport]
                ) -> list[tuple[RuleReport | None, RuleReport | None]]:
    """Pairs (old, new) in the new set's order, then removed rules in the old order."""
    old_by_key: dict[str, list[RuleReport]] = defaultdict(list)
    for r in old:
        old_by_key[r.key].append(r)
    matched: dict[int, RuleReport] = {}  # id(new rule) -> old rule
    for r in new:
        candidates = old_by_key.get(r.key)
        if candidates:
            matched[id(r)] = candidates.pop(0)
    left_old = [r for rs in old_by_key.values() for r in rs]
    left_new = [r for r in new if id(r) not in matched]
    for r in left_new:
        same_old = [o for o in left_old if o.name == r.name]
        same_new = [n for n in left_new if n.name == r.name]
        if len(same_old) == 1 and len(same_new) == 1:
            matched[id(r)] = same_old[0]
            left_old.remove(same_old[0])
    out: list[tuple[RuleReport | None, RuleReport | None]] = [
        (matched.get(id(r)), r) for r in new]
    used = {id(o) for o in matched.values()}
    out.extend((o, None) for o in old if id(o) not in used)
    return out


def _end(iv: Interval) -> int:
    return iv.end_ms if iv.end_ms is not None else OPEN_END


def _overlap(a: Interval, b: Interval) -> bool:
    return a.start_ms < _end(b) and b.start_ms < _end(a)


def diff_intervals(old: Sequence[Interval], new: Sequence[Interval]) -> list[IntervalChange]:
    """New, gone and changed intervals, by alert identity, in time order."""
    by_labels: dict[tuple[tuple[str, str], ...], tuple[list[Interval], list[Interval]]] = {}
    for iv in old:
        by_labels.setdefault(tuple(sorted(iv.labels.items())), ([], []))[0].append(iv)
    for iv in new:
        by_labels.setdefault(tuple(sorted(iv.labels.items())), ([], []))[1].append(iv)
    changes: list[IntervalChange] = []
    for olds, news in by_labels.values():
        free = sorted(news, key=lambda i: i.start_ms)
        for o in sorted(olds, key=lambda i: i.start_ms):
            same = next((n for n in free if n.start_ms == o.start_ms and n.end_ms == o.end_ms),
                        None)
            if same is not None:
                free.remove(same)
                continue
            hit = next((n for n in free if _overlap(o, n)), None)
            if hit is None:
                changes.append(IntervalChange("gone", o.labels, o, None))
            else:
                free.remove(hit)
                changes.append(IntervalChange("changed", o.labels, o, hit))
        changes.extend(IntervalChange("new", n.labels, None, n) for n in free)
    changes.sort(key=lambda c: (_start(c), c.kind, sorted(c.labels.items())))
    return changes


def _start(c: IntervalChange) -> int:
    iv = c.new if c.new is not None else c.old
    return iv.start_ms if iv is not None else 0
