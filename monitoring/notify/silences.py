"""Silences: label matchers that mute matching alerts for a time, kept in DuckDB.

A silence is Alertmanager's: matchers, a start and an end, who created it and
why. It mutes the alerts it matches while ``starts_ms <= now < ends_ms``;
expiring it sets its end to now (the row stays, for the record). Silences are
stored in ``notify_silences`` and cached in memory (the pipeline asks for every
alert on every flush); this store is the only writer while the engine runs, and
``monitoring silence`` writes to the file only when no engine is running.
Creating and expiring are audited (event_type ``silence``).
"""

from __future__ import annotations

import builtins
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import duckdb

from monitoring.notify.matchers import Matcher, MatcherError, format_matchers, parse_matchers
from monitoring.notify.model import AuditSink, Clock

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS notify_silences (id VARCHAR PRIMARY KEY, matchers VARCHAR NOT "
    "NULL, starts_ms BIGINT NOT NULL, ends_ms BIGINT NOT NULL, created_by VARCHAR NOT NULL, "
    "comment VARCHAR NOT NULL, created_ms BIGINT NOT NULL, expired_by VARCHAR)"
)


class SilenceError(KeyError):
    """No such silence, or one that cannot be expired; the message says which."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "silence error"


class InvalidSilence(ValueError):
    """A silence that cannot be created: bad matchers or times (the message says which)."""


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_ms: int
    ends_ms: int
    created_by: str
    comment: str
    created_ms: int

    def active(self, now_ms: int) -> bool:
        """Whether it mutes alerts at ``now_ms``."""
        return self.starts_ms <= now_ms < self.ends_ms

    def state(self, now_ms: int) -> str:
        """``pending`` (starts later), ``active`` or ``expired``."""
        if now_ms < self.starts_ms:
            return "pending"
        return "active" if now_ms < self.ends_ms else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_json(self, now_ms: int | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id, "matchers": [str(m) for m in self.matchers],
            "starts_ms": self.starts_ms, "ends_ms": self.ends_ms,
            "created_by": self.created_by, "comment": self.comment,
            "created_ms": self.created_ms}
        if now_ms is not None:
            out["state"] = self.state(now_ms)
        return out


class SilenceStore:
    """The silences of one database (event-loop thread only)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, clock: Clock,
                 audit: AuditSink | None = None) -> None:
        self.conn = conn
        self.clock = clock
        self.audit = audit
        conn.execute(_SCHEMA)
        self._cache: dict[str, Silence] = {}
        self.reload()

    def reload(self) -> None:
        """Read the silences that have not ended yet from the table."""
        rows = self.conn.execute(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, created_ms "
            "FROM notify_silences WHERE ends_ms > ?", [self.clock.now_ms()]).fetchall()
        self._cache = {row[0]: _from_row(row) for row in rows}

    def create(self, matchers: str | Sequence[Matcher] | Sequence[str], *, ends_ms: int,
               starts_ms: int | None = None, created_by: str, comment: str) -> Silence:
        """Store a new silence; raises :class:`InvalidSilence` for bad input."""
        now = self.clock.now_ms()
        parsed = _matchers(matchers)
        if not parsed:
            raise InvalidSilence("a silence needs at least one matcher")
        if all(m.matches({}) for m in parsed):
            raise InvalidSilence(f"the matchers {format_matchers(parsed)} match every alert; "
                                 "add one that an alert must have, such as alertname=\"X\"")
        start = now if starts_ms is None else starts_ms
        if ends_ms <= start:
            raise InvalidSilence("the silence must end after it starts")
        if ends_ms <= now:
            raise InvalidSilence("the silence must end in the future")
        if not created_by.strip():
            raise InvalidSilence("created_by must name who creates the silence")
        silence = Silence(uuid.uuid4().hex, tuple(parsed), start, ends_ms, created_by,
                          comment, now)
        self.conn.execute(
            "INSERT INTO notify_silences VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
            [silence.id, json.dumps([str(m) for m in parsed]), start, ends_ms, created_by,
             comment, now])
        self._cache[silence.id] = silence
        self._audit("create", silence, created_by)
        return silence

    def expire(self, silence_id: str, by: str) -> Silence:
        """End a silence now; raises :class:`SilenceError` if unknown or already over."""
        silence = self.get(silence_id)
        if silence is None:
            raise SilenceError(f"no silence with id {silence_id!r}")
        now = self.clock.now_ms()
        if silence.ends_ms <= now:
            raise SilenceError(f"silence {silence_id!r} has expired already")
        ended = Silence(silence.id, silence.matchers, min(silence.starts_ms, now), now,
                        silence.created_by, silence.comment, silence.created_ms)
        self.conn.execute("UPDATE notify_silences SET ends_ms = ?, starts_ms = ?, "
                          "expired_by = ? WHERE id = ?", [now, ended.starts_ms, by, silence.id])
        self._cache.pop(silence.id, None)
        self._audit("expire", ended, by)
        return ended

    def get(self, silence_id: str) -> Silence | None:
        """One silence by id, expired ones included."""
        row = self.conn.execute(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, created_ms "
            "FROM notify_silences WHERE id = ?", [silence_id]).fetchone()
        return None if row is None else _from_row(row)

    def list(self, *, include_expired: bool = False) -> list[Silence]:
        """Silences by creation time: pending and active ones (and expired ones if asked)."""
        now = self.clock.now_ms()
        rows = self.conn.execute(
            "SELECT id, matchers, starts_ms, ends_ms, created_by, comment, created_ms "
            "FROM notify_silences WHERE ? OR ends_ms > ? ORDER BY created_ms, id",
            [include_expired, now]).fetchall()
        return [_from_row(row) for row in rows]

    def silencing(self, labels: Mapping[str, str]) -> builtins.list[str]:
        """The ids of the silences active now that match ``labels``."""
        now = self.clock.now_ms()
        return [s.id for s in self._cache.values() if s.active(now) and s.matches(labels)]

    def next_change_ms(self) -> int | None:
        """When the next cached silence starts or ends (the pipeline re-checks then)."""
        now = self.clock.now_ms()
        times = [t for s in self._cache.values() for t in (s.starts_ms, s.ends_ms) if t > now]
        return min(times) if times else None

    def _audit(self, action: str, silence: Silence, by: str) -> None:
        if self.audit is None:
            return
        self.audit({"event_type": "silence", "action": action, "severity": "info",
                    "resource": f"silence/{silence.id}", "user_id": by,
                    "details": {"id": silence.id,
                                "matchers": [str(m) for m in silence.matchers],
                                "starts_ms": silence.starts_ms, "ends_ms": silence.ends_ms,
                                "comment": silence.comment}})


def _matchers(value: str | Sequence[Matcher] | Sequence[str]) -> list[Matcher]:
    if isinstance(value, str):
        items: list[Matcher | str] = [value]
    else:
        items = list(value)
    out: list[Matcher] = []
    for item in items:
        if isinstance(item, Matcher):
            out.append(item)
            continue
        try:
            out.extend(parse_matchers(item))
        except MatcherError as e:
            raise InvalidSilence(f"invalid matcher {item!r}: {e}") from None
    return out


def _from_row(row: Sequence[object]) -> Silence:
    texts = json.loads(str(row[1]))
    matchers = tuple(m for text in texts for m in parse_matchers(text))
    return Silence(str(row[0]), matchers, int(str(row[2])), int(str(row[3])), str(row[4]),
                   str(row[5]), int(str(row[6])))
