"""``oncall.yaml``: people and on-call schedules, validated and located like every config file.

The document is checked against ``schemas/oncall.json`` and then read into the types of
:mod:`monitoring.notify.oncall`. Everything the schema cannot say is checked here with a
diagnostic pointing at the offending value (``file:line:col``): time zones that zoneinfo
does not know, times that do not parse, members that the ``people`` section does not list
(with a did-you-mean), overrides that end before they start, schedules defined twice.

Example::

    people:
      alice: {email: alice@example.com, slack: "@alice"}
      bob: {email: bob@example.com}
    schedules:
      - name: primary
        timezone: Europe/Berlin
        rotations:
          - members: [alice, bob]
            length: weekly
            handoff: "2026-01-05T09:00"
        overrides:
          - {member: bob, start: "2026-01-07T18:00", end: "2026-01-08T09:00"}
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from monitoring.dsl.diagnostics import Diagnostic, Severity, did_you_mean
from monitoring.dsl.schema import validate
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_rules import YamlAstBuilder
from monitoring.dsl.yaml_source import YamlDocument, YamlPath, load_yaml
from monitoring.notify.oncall import (
    CONTACT_KINDS,
    OnCallConfig,
    Override,
    Person,
    Rotation,
    Schedule,
)

SCHEMA_NAME = "oncall"
MIN_LENGTH = timedelta(hours=1)
_NAMED_LENGTHS = {"daily": timedelta(days=1), "weekly": timedelta(weeks=1)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TIME_HINT = ("write a date and time such as 2026-01-05T09:00 (read in the schedule's time "
              "zone) or with an offset, 2026-01-05T09:00+01:00")


class ConfigDiagnosticsError(ValueError):
    """A configuration with errors: ``diagnostics`` locates each, the message lists them."""

    what = "configuration"

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        lines = [f"{d.location()}: {d.message}" + "".join(f" ({h})" for h in d.hints)
                 for d in diagnostics if d.severity is Severity.ERROR]
        super().__init__(f"invalid {self.what}:\n  " + "\n  ".join(lines))


class OnCallConfigError(ConfigDiagnosticsError):
    """``oncall.yaml`` has errors; ``diagnostics`` locates each of them."""

    what = "on-call configuration"


def parse_oncall(doc: YamlDocument) -> tuple[OnCallConfig | None, list[Diagnostic]]:
    """Validate and read a loaded ``oncall.yaml``; None when it has errors.

    The document's own YAML diagnostics are not repeated (the loader reports them); an
    empty document is an empty configuration.
    """
    if doc.root is None:
        return (OnCallConfig() if doc.ok else None), []
    diagnostics = _validate(doc)
    builder = _OnCallBuilder(doc)
    config = builder.config()
    diagnostics.extend(builder.diagnostics)
    diagnostics.sort(key=Diagnostic.sort_key)
    failed = any(d.severity is Severity.ERROR for d in diagnostics)
    return (None if failed else config), diagnostics


def load_oncall(path: str | Path) -> OnCallConfig:
    """Read ``oncall.yaml`` from a file; :class:`OnCallConfigError` lists every problem."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8").removeprefix("\ufeff")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise OnCallConfigError([Diagnostic("io/unreadable", Severity.ERROR,
                                            f"cannot read file: {reason}", None,
                                            path=str(p))]) from None
    doc = load_yaml(SourceFile(str(p), text))
    config, diagnostics = parse_oncall(doc)
    problems = [*doc.diagnostics, *diagnostics]
    if config is None or any(d.severity is Severity.ERROR for d in problems):
        raise OnCallConfigError(problems)
    return config


# ---------------------------------------------------------------- validation


def _validate(doc: YamlDocument) -> list[Diagnostic]:
    """Schema diagnostics (``monitoring schema oncall`` prints the schema)."""
    return validate(doc, SCHEMA_NAME)


@functools.cache
def _zone_names() -> tuple[str, ...]:
    return tuple(sorted(available_timezones()))


# ---------------------------------------------------------------- reading


class _OnCallBuilder(YamlAstBuilder):
    """Reads a validated ``oncall.yaml`` into :class:`OnCallConfig`, reporting what is wrong."""

    def config(self) -> OnCallConfig:
        people = self._people()
        schedules: dict[str, Schedule] = {}
        first: dict[str, YamlPath] = {}
        items = self.get(("schedules",))
        for i, item in enumerate(items if isinstance(items, list) else []):
            path: YamlPath = ("schedules", i)
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            name = item["name"]
            if name in first:
                self.error("oncall/duplicate-schedule", f"schedule {name!r} is defined twice",
                           self.span((*path, "name")), "keep one definition",
                           related=(("first defined here", self.span((*first[name], "name"))),))
                continue
            first[name] = path
            schedule = self._schedule(path, item, people)
            if schedule is not None:
                schedules[name] = schedule
        return OnCallConfig(people, schedules)

    def _people(self) -> dict[str, Person]:
        data = self.get(("people",))
        out: dict[str, Person] = {}
        for name, body in (data.items() if isinstance(data, dict) else ()):
            contacts = body if isinstance(body, dict) else {}
            out[name] = Person(name, {k: v for k, v in contacts.items()
                                      if k in CONTACT_KINDS and isinstance(v, str)})
        return out

    def _schedule(self, path: YamlPath, item: dict[str, Any],
                  people: dict[str, Person]) -> Schedule | None:
        given = self._zone((*path, "timezone"), item.get("timezone", "UTC"))
        zone = given or ZoneInfo("UTC")  # still check the rest when the zone is wrong
        rotations: list[Rotation] = []
        data = item.get("rotations")
        for j, body in enumerate(data if isinstance(data, list) else []):
            if isinstance(body, dict):
                rotation = self._rotation((*path, "rotations", j), j, body, zone, people)
                if rotation is not None:
                    rotations.append(rotation)
        overrides: list[Override] = []
        data = item.get("overrides")
        for j, body in enumerate(data if isinstance(data, list) else []):
            if isinstance(body, dict):
                override = self._override((*path, "overrides", j), body, zone, people)
                if override is not None:
                    overrides.append(override)
        if given is None:
            return None
        return Schedule(str(item["name"]), zone, tuple(rotations), tuple(overrides))

    def _zone(self, path: YamlPath, value: Any) -> ZoneInfo | None:
        if not isinstance(value, str):
            return None  # the schema reported it
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            hint = did_you_mean(value, _zone_names())
            self.error("oncall/unknown-timezone", f"unknown time zone {value!r}",
                       self.span(path), hint or "use an IANA name such as Europe/Berlin, "
                       "America/New_York or UTC")
            return None

    def _rotation(self, path: YamlPath, index: int, body: dict[str, Any], zone: ZoneInfo,
                  people: dict[str, Person]) -> Rotation | None:
        before = len(self.diagnostics)
        members = body.get("members")
        listed = tuple(m for m in members if isinstance(m, str)) \
            if isinstance(members, list) else ()
        for k, member in enumerate(listed):
            self._member((*path, "members", k), member, people)
        length = self._length((*path, "length"), body.get("length"))
        handoff = self._time((*path, "handoff"), body.get("handoff"))
        start, end = self._period(path, body, zone)
        if len(self.diagnostics) > before or not listed or length is None or handoff is None:
            return None
        if handoff.tzinfo is not None:  # an instant: its wall-clock time in the zone
            handoff = handoff.astimezone(zone).replace(tzinfo=None)
        name = body.get("name")
        return Rotation(name if isinstance(name, str) else str(index + 1), listed, handoff,
                        length, zone, start, end)

    def _override(self, path: YamlPath, body: dict[str, Any], zone: ZoneInfo,
                  people: dict[str, Person]) -> Override | None:
        before = len(self.diagnostics)
        member = body.get("member")
        if isinstance(member, str):
            self._member((*path, "member"), member, people)
        start, end = self._period(path, body, zone)
        if len(self.diagnostics) > before or not isinstance(member, str) or start is None \
                or end is None:
            return None
        return Override(member, start, end)

    def _period(self, path: YamlPath, body: dict[str, Any],
                zone: ZoneInfo) -> tuple[int | None, int | None]:
        """The optional ``start``/``end`` of an entry in ms; an error when end <= start."""
        start = self._instant((*path, "start"), body.get("start"), zone)
        end = self._instant((*path, "end"), body.get("end"), zone)
        if start is not None and end is not None and end <= start:
            self.error("oncall/end-before-start", "'end' is not later than 'start'",
                       self.span((*path, "end")), f"start is {body.get('start')}")
        return start, end

    def _member(self, path: YamlPath, name: str, people: dict[str, Person]) -> bool:
        if name in people:
            return True
        hint = did_you_mean(name, people)
        listing = ("people: " + ", ".join(sorted(people))) if people else \
            "define people in the 'people' section"
        self.error("oncall/unknown-person", f"unknown person {name!r}", self.span(path),
                   hint or listing)
        return False

    def _length(self, path: YamlPath, value: Any) -> timedelta | None:
        if isinstance(value, str) and value in _NAMED_LENGTHS:
            return _NAMED_LENGTHS[value]
        duration = self.seconds_or_duration(path)
        if duration is None:
            return None
        length = timedelta(milliseconds=duration.ms)
        if length < MIN_LENGTH:
            self.error("oncall/rotation-length", f"a shift of {duration} is too short",
                       self.span(path), "shifts last at least 1h; use daily, weekly or a "
                       "duration such as 12h or 2w")
            return None
        return length

    def _time(self, path: YamlPath, value: Any) -> datetime | None:
        """A wall-clock time (naive, in the schedule's zone) or an instant (with an offset)."""
        if not isinstance(value, str):
            return None  # absent, or reported by the schema
        try:
            return datetime.fromisoformat(value.strip())
        except ValueError:
            self.error("oncall/invalid-time", f"invalid time {value!r}", self.span(path),
                       _TIME_HINT)
            return None

    def _instant(self, path: YamlPath, value: Any, zone: ZoneInfo) -> int | None:
        """Milliseconds since the epoch of an optional time (None: absent or invalid)."""
        parsed = self._time(path, value)
        if parsed is None:
            return None
        aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone, fold=0)
        return (aware - _EPOCH) // timedelta(milliseconds=1)
