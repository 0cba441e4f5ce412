"""Alert statistics over a time range: what ``monitoring alerts stats`` prints.

Computed from the transition history (``live_alert_transitions``), joined
with the acknowledgements (``notify_acks``: fingerprint, acked_ms) and the
delivery log (``notify_deliveries``: person, at_ms, ok). Definitions (also in
docs/live.md, "History and statistics"):

* a *firing* is an alert entering ``firing`` from ``inactive`` or ``pending``
  in the range (a return from ``nodata`` continues the same firing);
* *time to resolve* runs from the firing to the alert's next ``inactive``
  (a firing that began before the range is found in the earlier history);
* *time to acknowledge* runs from the firing to the first acknowledgement of
  that alert (by fingerprint) at or after it and before it resolved;
* *changes per firing* is the rule's state changes divided by its firings; a
  *re-firing* is a firing less than ``refire_window_ms`` (1 h) after the same
  alert resolved. A rule is *flapping* with two re-firings or more, or with
  four or more changes per firing (its alerts keep going pending and back);
* *noisiest* rules have the most firings (then the most state changes);
* a *page* is a notification delivered (``ok``) to a person (an escalation
  stage or an on-call target names one), counted once per message, per UTC
  week starting on Monday; test messages do not count.

A missing acknowledgement or delivery table (nothing was ever acknowledged or
delivered in this database) counts as empty and is named in ``notes``.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb

from monitoring.live.history import TABLE as TRANSITIONS
from monitoring.live.history import TransitionRecord, read_transitions

DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
REFIRE_WINDOW_MS = 3_600_000
FLAP_REFIRES = 2
FLAP_CHANGES_PER_FIRING = 4.0
_STARTS = ("inactive", "pending")


@dataclass(slots=True)
class RuleStats:
    """One rule's figures over the range."""

    rule: str
    firings: int = 0
    changes: int = 0
    resolved: int = 0
    acked: int = 0
    refires: int = 0
    mean_time_to_resolve_ms: float | None = None
    mean_time_to_ack_ms: float | None = None

    @property
    def changes_per_firing(self) -> float | None:
        return self.changes / self.firings if self.firings else None

    @property
    def flapping(self) -> bool:
        per = self.changes_per_firing
        return self.refires >= FLAP_REFIRES or (per is not None and
                                                per >= FLAP_CHANGES_PER_FIRING)

    def to_json(self) -> dict[str, Any]:
        per = self.changes_per_firing
        return {"rule": self.rule, "firings": self.firings, "changes": self.changes,
                "resolved": self.resolved, "acknowledged": self.acked, "refires": self.refires,
                "changes_per_firing": None if per is None else round(per, 3),
                "mean_time_to_resolve_ms": _ms(self.mean_time_to_resolve_ms),
                "mean_time_to_ack_ms": _ms(self.mean_time_to_ack_ms),
                "flapping": self.flapping}


@dataclass(frozen=True, slots=True)
class PersonWeek:
    """Pages delivered to one person in one week (Monday 00:00 UTC onwards)."""

    person: str
    week_start_ms: int
    pages: int

    def to_json(self) -> dict[str, Any]:
        return {"person": self.person, "week_start_ms": self.week_start_ms, "pages": self.pages}


@dataclass(slots=True)
class AlertStats:
    """Everything ``monitoring alerts stats`` shows."""

    since_ms: int
    until_ms: int
    rules: list[RuleStats] = field(default_factory=list)
    pages: list[PersonWeek] = field(default_factory=list)
    mean_time_to_resolve_ms: float | None = None
    mean_time_to_ack_ms: float | None = None
    notes: list[str] = field(default_factory=list)
    top: int = 10

    @property
    def firings(self) -> int:
        return sum(r.firings for r in self.rules)

    @property
    def flapping(self) -> list[RuleStats]:
        """Flapping rules, worst first."""
        found = [r for r in self.rules if r.flapping]
        return sorted(found, key=lambda r: (-r.refires, -(r.changes_per_firing or 0), r.rule))

    @property
    def noisiest(self) -> list[RuleStats]:
        """The rules with the most firings (at most ``top``)."""
        busy = [r for r in self.rules if r.firings or r.changes]
        return sorted(busy, key=lambda r: (-r.firings, -r.changes, r.rule))[:self.top]

    def to_json(self) -> dict[str, Any]:
        return {"since_ms": self.since_ms, "until_ms": self.until_ms, "firings": self.firings,
                "mean_time_to_resolve_ms": _ms(self.mean_time_to_resolve_ms),
                "mean_time_to_ack_ms": _ms(self.mean_time_to_ack_ms),
                "rules": [r.to_json() for r in self.rules],
                "flapping": [r.rule for r in self.flapping],
                "noisiest": [r.rule for r in self.noisiest],
                "pages_per_person_week": [p.to_json() for p in self.pages],
                "notes": list(self.notes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AlertStats:
        """The statistics :meth:`to_json` wrote (the CLI reads a running engine's API)."""
        rules = [RuleStats(r["rule"], r["firings"], r["changes"], r["resolved"],
                           r["acknowledged"], r["refires"], r["mean_time_to_resolve_ms"],
                           r["mean_time_to_ack_ms"]) for r in data["rules"]]
        pages = [PersonWeek(p["person"], p["week_start_ms"], p["pages"])
                 for p in data["pages_per_person_week"]]
        return cls(data["since_ms"], data["until_ms"], rules, pages,
                   data["mean_time_to_resolve_ms"], data["mean_time_to_ack_ms"],
                   list(data["notes"]), len(data["noisiest"]) or 10)


@dataclass(slots=True)
class _Episode:
    fingerprint: str
    rule: str
    start_ms: int
    end_ms: int | None = None


def alert_stats(conn: duckdb.DuckDBPyConnection, since_ms: int, until_ms: int, *,
                top: int = 10, refire_window_ms: int = REFIRE_WINDOW_MS) -> AlertStats:
    """Statistics of the range ``[since_ms, until_ms)``; see the module docstring."""
    out = AlertStats(since_ms, until_ms, top=top)
    if not table_exists(conn, TRANSITIONS):
        out.notes.append("no alert history in this database (the live engine never ran here)")
        return out
    records = read_transitions(conn, since_ms=since_ms, until_ms=until_ms)
    per_rule: dict[str, RuleStats] = {}
    episodes = _episodes(conn, records, since_ms, per_rule, refire_window_ms)
    acks = _acks(conn, {e.fingerprint for e in episodes}, since_ms, until_ms, out.notes)
    resolve_all: list[int] = []
    ack_all: list[int] = []
    by_rule_resolve: dict[str, list[int]] = {}
    by_rule_ack: dict[str, list[int]] = {}
    for e in episodes:
        st = per_rule.setdefault(e.rule, RuleStats(e.rule))
        if e.end_ms is not None:
            st.resolved += 1
            resolve_all.append(e.end_ms - e.start_ms)
            by_rule_resolve.setdefault(e.rule, []).append(e.end_ms - e.start_ms)
        limit = e.end_ms if e.end_ms is not None else until_ms
        first = next((t for t in acks.get(e.fingerprint, []) if e.start_ms <= t < limit), None)
        if first is not None:
            st.acked += 1
            ack_all.append(first - e.start_ms)
            by_rule_ack.setdefault(e.rule, []).append(first - e.start_ms)
    for name, st in per_rule.items():
        st.mean_time_to_resolve_ms = _mean(by_rule_resolve.get(name, []))
        st.mean_time_to_ack_ms = _mean(by_rule_ack.get(name, []))
    out.rules = sorted(per_rule.values(), key=lambda r: r.rule)
    out.mean_time_to_resolve_ms = _mean(resolve_all)
    out.mean_time_to_ack_ms = _mean(ack_all)
    out.pages = _pages(conn, since_ms, until_ms, out.notes)
    return out


def _episodes(conn: duckdb.DuckDBPyConnection, records: Sequence[TransitionRecord],
              since_ms: int, per_rule: dict[str, RuleStats], refire_window_ms: int
              ) -> list[_Episode]:
    """Firing episodes that start or end in the range, counting firings and re-firings."""
    open_: dict[str, _Episode] = {}
    last_end: dict[str, int] = {}
    episodes: list[_Episode] = []
    earlier = _open_before(conn, records, since_ms)
    for t in records:
        st = per_rule.setdefault(t.rule, RuleStats(t.rule))
        st.changes += 1
        fp = t.fingerprint
        if t.to_state == "firing" and t.from_state in _STARTS:
            st.firings += 1
            previous = last_end.get(fp)
            if previous is not None and t.at_ms - previous < refire_window_ms:
                st.refires += 1
            open_[fp] = _Episode(fp, t.rule, t.at_ms)
            episodes.append(open_[fp])
        elif t.to_state == "inactive":
            episode = open_.pop(fp, None)
            if episode is None and fp in earlier:
                episode = _Episode(fp, t.rule, earlier.pop(fp))
                episodes.append(episode)
            if episode is not None:
                episode.end_ms = t.at_ms
                last_end[fp] = t.at_ms
    return episodes


def _open_before(conn: duckdb.DuckDBPyConnection, records: Sequence[TransitionRecord],
                 since_ms: int) -> dict[str, int]:
    """When alerts resolved in the range without a firing in it started firing (earlier)."""
    started = {t.fingerprint for t in records if t.to_state == "firing"
               and t.from_state in _STARTS}
    wanted = sorted({t.fingerprint for t in records if t.to_state == "inactive"} - started)
    if not wanted:
        return {}
    rows = conn.execute(
        f"SELECT fingerprint, max(at_ms) FROM {TRANSITIONS} WHERE at_ms < ? AND "
        "to_state = 'firing' AND from_state IN ('inactive', 'pending') AND "
        "fingerprint IN (SELECT unnest(?::VARCHAR[])) GROUP BY fingerprint",
        [since_ms, wanted]).fetchall()
    return {fp: int(at) for fp, at in rows}


def _acks(conn: duckdb.DuckDBPyConnection, fingerprints: set[str], since_ms: int,
          until_ms: int, notes: list[str]) -> dict[str, list[int]]:
    if not table_exists(conn, "notify_acks"):
        notes.append("no acknowledgements table (notify_acks): time to acknowledge not known")
        return {}
    if not fingerprints:
        return {}
    rows = conn.execute(
        "SELECT fingerprint, acked_ms FROM notify_acks WHERE acked_ms < ? AND "
        "fingerprint IN (SELECT unnest(?::VARCHAR[])) ORDER BY acked_ms",
        [until_ms, sorted(fingerprints)]).fetchall()
    out: dict[str, list[int]] = {}
    for fp, at in rows:
        out.setdefault(fp, []).append(int(at))
    return out


def _pages(conn: duckdb.DuckDBPyConnection, since_ms: int, until_ms: int,
           notes: list[str]) -> list[PersonWeek]:
    if not table_exists(conn, "notify_deliveries"):
        notes.append("no delivery log (notify_deliveries): pages per person not known")
        return []
    rows = conn.execute(
        f"SELECT person, (at_ms // {DAY_MS} - (at_ms // {DAY_MS} + 3) % 7) * {DAY_MS} AS week, "
        "count(DISTINCT message_id) FROM notify_deliveries "
        "WHERE ok AND person IS NOT NULL AND person <> '' AND kind <> 'test' "
        "AND at_ms >= ? AND at_ms < ? GROUP BY person, week ORDER BY week, person",
        [since_ms, until_ms]).fetchall()
    return [PersonWeek(str(p), int(w), int(n)) for p, w, n in rows]


def table_exists(conn: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the database holds a table of that name (in the current schema)."""
    row = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?",
                       [name]).fetchone()
    return bool(row and row[0])


def _mean(values: Sequence[int]) -> float | None:
    return float(statistics.fmean(values)) if values else None


def _ms(value: float | None) -> int | None:
    return None if value is None else round(value)
