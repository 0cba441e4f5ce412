"""On-call schedules: rotations across hand-offs and DST, layers, overrides, shifts, and
``oncall.yaml`` diagnostics; a property: one person per instant per non-empty rotation."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import load_yaml
from monitoring.notify.oncall import OnCallConfig, Rotation, Schedule, Shift, UnknownScheduleError
from monitoring.notify.oncall_config import OnCallConfigError, load_oncall, parse_oncall

BERLIN = ZoneInfo("Europe/Berlin")
H = 3_600_000

EXAMPLE = """\
people:
  alice: {email: alice@example.com, slack: "@alice"}
  bob: {email: bob@example.com}
  carol: {email: carol@example.com, phone: "+49 30 1234"}
  dave: {email: dave@example.com}
schedules:
  - name: primary
    timezone: Europe/Berlin
    rotations:
      - name: weekly
        members: [alice, bob]
        length: weekly
        handoff: "2026-01-05T09:00"
      - name: holiday cover
        members: [dave]
        length: 1d
        handoff: "2026-01-01T00:00"
        start: "2026-02-01T00:00"
        end: "2026-02-03T00:00"
    overrides:
      - {member: carol, start: "2026-01-07T18:00", end: "2026-01-08T09:00"}
      - {member: dave, start: "2026-01-08T06:00", end: "2026-01-08T07:00", reason: swap}
"""


def berlin(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=BERLIN).timestamp() * 1000)


def parse(text: str, name: str = "oncall.yaml") -> tuple[OnCallConfig | None, list[str]]:
    config, diags = parse_oncall(load_yaml(SourceFile(name, text)))
    return config, [f"{d.location()} {d.code}: {d.message}" + "".join(f" | {h}" for h in d.hints)
                    for d in diags]


@pytest.fixture(scope="module")
def config() -> OnCallConfig:
    loaded, problems = parse(EXAMPLE)
    assert problems == []
    assert loaded is not None
    return loaded


def name_at(config: OnCallConfig, when: str) -> str | None:
    person = config.current("primary", berlin(when))
    return person.name if person else None


def test_weekly_rotation_hands_off_at_nine_local(config: OnCallConfig) -> None:
    assert name_at(config, "2026-01-05T08:59") == "bob"  # the week before hand-off 0
    assert name_at(config, "2026-01-05T09:00") == "alice"
    assert name_at(config, "2026-01-12T08:59:59") == "alice"
    assert name_at(config, "2026-01-12T09:00") == "bob"
    assert name_at(config, "2026-01-19T09:00") == "alice"
    # weeks after the spring DST change: still 09:00 Berlin time
    assert name_at(config, "2026-03-30T08:59") == "bob"
    assert name_at(config, "2026-03-30T09:00") == "alice"
    person = config.current("primary", berlin("2026-01-06T12:00"))
    assert person is not None and person.contact("email") == "alice@example.com"
    assert person.contact("slack") == "@alice" and person.contact("phone") is None


def test_overrides_win_and_the_last_listed_wins(config: OnCallConfig) -> None:
    assert name_at(config, "2026-01-07T17:59") == "alice"
    assert name_at(config, "2026-01-07T18:00") == "carol"
    assert name_at(config, "2026-01-08T06:30") == "dave"  # overlaps carol's, listed later
    assert name_at(config, "2026-01-08T07:00") == "carol"
    assert name_at(config, "2026-01-08T09:00") == "alice"


def test_a_later_rotation_layer_wins_inside_its_period(config: OnCallConfig) -> None:
    assert name_at(config, "2026-01-31T23:59") == "bob"
    assert name_at(config, "2026-02-01T00:00") == "dave"
    assert name_at(config, "2026-02-02T23:59") == "dave"
    assert name_at(config, "2026-02-03T00:00") == "alice"  # her week began 2 Feb 09:00


def test_shifts_list_who_and_why(config: OnCallConfig) -> None:
    shifts = config.shifts("primary", berlin("2026-01-07T00:00"), berlin("2026-01-13T00:00"))
    assert [(s.person, s.source, s.start_ms, s.end_ms) for s in shifts] == [
        ("alice", "rotation weekly", berlin("2026-01-07T00:00"), berlin("2026-01-07T18:00")),
        ("carol", "override", berlin("2026-01-07T18:00"), berlin("2026-01-08T06:00")),
        ("dave", "override", berlin("2026-01-08T06:00"), berlin("2026-01-08T07:00")),
        ("carol", "override", berlin("2026-01-08T07:00"), berlin("2026-01-08T09:00")),
        ("alice", "rotation weekly", berlin("2026-01-08T09:00"), berlin("2026-01-12T09:00")),
        ("bob", "rotation weekly", berlin("2026-01-12T09:00"), berlin("2026-01-13T00:00")),
    ]
    assert all(s.schedule == "primary" for s in shifts)


def test_daily_rotation_across_both_dst_changes() -> None:
    rotation = Rotation("daily", ("alice", "bob", "carol"), datetime(2026, 3, 27, 9),
                        timedelta(days=1), BERLIN)
    schedule = Schedule("s", BERLIN, (rotation,))
    shifts = schedule.shifts(berlin("2026-03-28T09:00"), berlin("2026-03-31T09:00"))
    assert [(s.person, (s.end_ms - s.start_ms) // H) for s in shifts] == \
        [("bob", 23), ("carol", 24), ("alice", 24)]  # 29 Mar is 23 hours long
    autumn = Schedule("s", BERLIN, (Rotation("d", ("alice", "bob"), datetime(2026, 10, 20, 9),
                                             timedelta(days=1), BERLIN),))
    shifts = autumn.shifts(berlin("2026-10-24T09:00"), berlin("2026-10-26T09:00"))
    assert [(s.person, (s.end_ms - s.start_ms) // H) for s in shifts] == \
        [("alice", 25), ("bob", 24)]  # 25 Oct is 25 hours long
    # a 12-hour rotation keeps its 09:00 / 21:00 hand-offs after the change
    twelve = Rotation("t", ("x", "y"), datetime(2026, 3, 28, 9), timedelta(hours=12), BERLIN)
    assert [twelve.handoff_ms(k) for k in range(4)] == [
        berlin("2026-03-28T09:00"), berlin("2026-03-28T21:00"), berlin("2026-03-29T09:00"),
        berlin("2026-03-29T21:00")]


def test_gaps_and_unknown_schedules() -> None:
    rotation = Rotation("r", ("alice",), datetime(2026, 1, 1), timedelta(days=1), BERLIN,
                        start_ms=berlin("2026-01-10T00:00"))
    config = OnCallConfig({}, {"s": Schedule("s", BERLIN, (rotation,))})
    assert config.current("s", berlin("2026-01-09T23:59")) is None
    person = config.current("s", berlin("2026-01-10T00:00"))
    assert person is not None and person.name == "alice" and person.contacts == {}
    assert [(s.start_ms, s.person) for s in config.shifts(
        "s", berlin("2026-01-09T00:00"), berlin("2026-01-10T12:00"))] == \
        [(berlin("2026-01-10T00:00"), "alice")]
    with pytest.raises(UnknownScheduleError, match=r"unknown on-call schedule 'x'.*schedules: s"):
        config.current("x", 0)


# ---------------------------------------------------------------- diagnostics


BAD = """\
people:
  alice: {email: alice@example.com}
  bob: {email: bob@example.com, pager: "1"}
schedules:
  - name: primary
    timezone: Europe/Berln
    rotations:
      - members: [alice, bobb]
        length: weekly
        handoff: "2026-01-05T09:00"
  - name: secondary
    rotations:
      - members: [alice, zed]
        length: 30m
        handoff: "5 January"
    overrides:
      - {member: alice, start: "2026-01-08T09:00", end: "2026-01-07T09:00"}
  - name: primary
"""


def test_diagnostics_point_at_the_problem() -> None:
    config, problems = parse(BAD)
    assert config is None
    assert problems == [
        "oncall.yaml:3:33 schema/unknown-field: unknown field 'pager' in person"
        " | did you mean 'pagerduty'?",
        "oncall.yaml:6:15 oncall/unknown-timezone: unknown time zone 'Europe/Berln'"
        " | did you mean 'Europe/Berlin'?",
        "oncall.yaml:8:26 oncall/unknown-person: unknown person 'bobb' | did you mean 'bob'?",
        "oncall.yaml:13:26 oncall/unknown-person: unknown person 'zed' | people: alice, bob",
        "oncall.yaml:14:17 oncall/rotation-length: a shift of 30m is too short"
        " | shifts last at least 1h; use daily, weekly or a duration such as 12h or 2w",
        "oncall.yaml:15:18 oncall/invalid-time: invalid time '5 January' | write a date and"
        " time such as 2026-01-05T09:00 (read in the schedule's time zone) or with an"
        " offset, 2026-01-05T09:00+01:00",
        "oncall.yaml:17:57 oncall/end-before-start: 'end' is not later than 'start'"
        " | start is 2026-01-08T09:00",
        "oncall.yaml:18:11 oncall/duplicate-schedule: schedule 'primary' is defined twice"
        " | keep one definition",
    ]


def test_schema_errors_and_empty_documents() -> None:
    config, problems = parse("schedules:\n  - timezone: UTC\n    rotations: {}\n")
    assert config is None
    assert problems == [
        "oncall.yaml:2:5 schema/missing-field: missing required field 'name' in schedule",
        "oncall.yaml:3:16 schema/type: 'rotations' must be a list, not a mapping",
    ]
    empty, problems = parse("")
    assert empty == OnCallConfig() and problems == []
    config, problems = parse("people: [\n")
    assert config is None and problems == []  # the YAML error is the loader's to report


def test_load_oncall_raises_with_every_location(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text(BAD)
    with pytest.raises(OnCallConfigError) as info:
        load_oncall(path)
    text = str(info.value)
    assert f"{path}:8:26: unknown person 'bobb' (did you mean 'bob'?)" in text
    assert len(info.value.diagnostics) == 8
    path.write_text(EXAMPLE)
    assert sorted(load_oncall(path).people) == ["alice", "bob", "carol", "dave"]
    with pytest.raises(OnCallConfigError, match="cannot read file"):
        load_oncall(tmp_path / "missing.yaml")


def test_times_with_offsets_and_seconds_lengths() -> None:
    config, problems = parse("""\
people: {a: {}, b: ~}
schedules:
  - name: s
    timezone: America/New_York
    rotations:
      - members: [a, b]
        length: 43200
        handoff: "2026-01-05T14:00:00Z"
""")
    assert problems == [] and config is not None
    [rotation] = config.schedule("s").rotations
    assert rotation.handoff == datetime(2026, 1, 5, 9, 0)  # 14:00Z is 09:00 in New York
    assert rotation.length == timedelta(hours=12)
    person = config.current("s", berlin("2026-01-05T15:00"))  # 14:00Z
    assert person is not None and person.name == "a"


# ---------------------------------------------------------------- the property


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
START = datetime(2025, 1, 1)


@st.composite
def rotations(draw: st.DrawFn) -> Rotation:
    zone = ZoneInfo(draw(st.sampled_from(ZONES)))
    members = tuple(draw(st.lists(st.sampled_from(["ann", "ben", "cat", "dan"]), min_size=1,
                                  max_size=5)))
    length = timedelta(minutes=draw(st.integers(60, 21 * 24 * 60)))
    handoff = START + timedelta(minutes=draw(st.integers(0, 2 * 365 * 24 * 60)))
    return Rotation("r", members, handoff, length, zone)


@settings(max_examples=300, deadline=None)
@given(rotations(), st.integers(1_735_689_600_000, 1_798_761_600_000),
       st.integers(1, 40 * 24 * 60))
def test_exactly_one_person_on_call_per_rotation(rotation: Rotation, at: int,
                                                 window_min: int) -> None:
    member = rotation.member_at(at)
    assert member in rotation.members
    k = rotation.shift_index(at)
    assert rotation.handoff_ms(k) <= at < rotation.handoff_ms(k + 1)
    # the shifts of a window tile it exactly, and the one covering `at` is that member's
    schedule = Schedule("s", rotation.zone, (rotation,))
    start, end = at - window_min * 30_000, at + window_min * 30_000
    shifts = schedule.shifts(start, end)
    assert shifts[0].start_ms == start and shifts[-1].end_ms == end
    for before, after in itertools.pairwise(shifts):
        assert before.end_ms == after.start_ms
    covering = [s for s in shifts if s.start_ms <= at < s.end_ms]
    assert len(covering) == 1 and covering[0].person == member
    assert all(isinstance(s, Shift) and s.person in rotation.members for s in shifts)


def test_schema_documents_every_property() -> None:

    from jsonschema import Draft202012Validator

    from monitoring.dsl.schema import schema

    loaded = schema("oncall")
    Draft202012Validator.check_schema(loaded)
    assert loaded["$id"] == "urn:monitoring-system:schema:oncall"

    def walk(node: object, where: str = "") -> list[str]:
        missing: list[str] = []
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if not (sub.get("title") and sub.get("description")):
                    missing.append(f"{where}.{name}")
            for key, sub in node.items():
                missing += walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                missing += walk(sub, f"{where}[{i}]")
        return missing

    assert walk(loaded) == []


def test_the_documented_examples_load() -> None:
    import re

    from monitoring.dsl.config import load_escalation_policies

    text = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    section = text[text.index("## Escalation and on-call"):]
    section = section[:section.index("\n## ", 1)]
    policies_yaml, oncall_yaml = re.findall(r"```yaml\n(.*?)```", section, re.S)
    config, problems = load_escalation_policies(SourceFile("escalation_policies.yaml",
                                                           policies_yaml))
    assert problems == [] and [p.name.value for p in config.policies] == ["critical_alerts"]
    oncall, diags = parse(oncall_yaml)
    assert diags == [] and oncall is not None
    assert name_at(oncall, "2026-01-07T19:00") == "carol"
    assert name_at(oncall, "2026-12-24T10:00") == "carol"  # the holiday layer
    assert name_at(oncall, "2026-12-25T10:00") == "dave"
    assert name_at(oncall, "2027-01-02T10:00") in ("alice", "bob")
