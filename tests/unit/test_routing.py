from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.dsl.loader import FileFormat, format_by_shape, load_paths
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import load_yaml
from monitoring.notify.routing import GroupSettings, Route
from monitoring.notify.routing_config import (
    RoutingConfig,
    RoutingConfigError,
    load_routing_config,
    parse_routing,
)

TREE = """\
route:
  receiver: console
  group_by: [alertname]
  group_wait: 10s
  group_interval: 2m
  repeat_interval: 1h
  routes:
    - matchers: ['severity="critical"']
      receiver: pager
      group_wait: 0s
      continue: true
      routes:
        - matchers: ['team="db"']
          receivers: [dba, pager]
          group_by: ['...']
    - matchers: '{severity=~"critical|warning"}'
      receiver: slack
      repeat_interval: 2h
      send_resolved: false
    - matchers: [team="web"]
      receiver: web
"""
CHANNELS = """\
pager: {type: pagerduty, routing_key: k}
slack: {webhook_url: "https://hooks.example.com/x"}
dba: {type: email, smtp_server: smtp.example.com}
web: {type: webhook, url: "https://example.com/hook"}
"""


def parse(text: str, name: str = "routing.yaml") -> RoutingConfig:
    config, diagnostics = parse_routing(load_yaml(SourceFile(name, text)))
    assert [d.message for d in diagnostics] == []
    assert config is not None
    return config


def keys(routes: list[Route]) -> list[str]:
    return [r.key for r in routes]


def test_match_descends_and_honours_continue() -> None:
    root = parse(TREE).route
    # first child matches and continues; its own child matches too -> deepest wins
    assert keys(root.match({"severity": "critical", "team": "db"})) == ["{}/0/0", "{}/1"]
    assert keys(root.match({"severity": "critical"})) == ["{}/0", "{}/1"]
    # second child has no continue: the third is not tried
    assert keys(root.match({"severity": "warning", "team": "web"})) == ["{}/1"]
    assert keys(root.match({"team": "web"})) == ["{}/2"]
    # nothing matches: the root itself
    assert keys(root.match({"severity": "info"})) == ["{}"]


def test_settings_are_inherited() -> None:
    root = parse(TREE).route
    critical, warning, _ = root.routes
    db = critical.routes[0]
    assert root.settings == GroupSettings(("console",), ("alertname",), 10_000, 120_000,
                                          3_600_000, None, 86_400_000, True)
    assert critical.settings.receivers == ("pager",)
    assert critical.settings.group_wait_ms == 0
    assert critical.settings.group_interval_ms == 120_000  # from the root
    assert db.settings.group_wait_ms == 0  # from its parent
    assert db.settings.group_by == ("...",)
    assert db.receivers == ("dba", "pager")
    assert warning.settings.repeat_interval_ms == 7_200_000
    assert warning.settings.send_resolved is False
    assert warning.settings.group_by == ("alertname",)


def test_group_keys() -> None:
    root = parse(TREE).route
    labels = {"alertname": "Disk", "severity": "critical", "team": "db", "instance": "a"}
    [db, warning] = root.match(labels)
    assert db.group_key(labels) == \
        '{}/0/0{alertname="Disk", instance="a", severity="critical", team="db"}'
    assert warning.group_key(labels) == '{}/1{alertname="Disk"}'
    assert RoutingConfig.default(["console"]).route.group_key(labels) == '{}{alertname="Disk"}'


def test_repeat_backoff_interval() -> None:
    s = GroupSettings(repeat_interval_ms=60_000, repeat_backoff=2.0,
                      max_repeat_interval_ms=300_000)
    assert [s.repeat_after_ms(n) for n in range(5)] == [60_000, 120_000, 240_000, 300_000,
                                                        300_000]
    assert GroupSettings(repeat_interval_ms=60_000).repeat_after_ms(3) == 60_000


def test_default_config() -> None:
    config = RoutingConfig.default(["console"])
    assert config.route.receivers == ("console",)
    assert config.route.settings.group_wait_ms == 30_000
    assert config.route.settings.group_interval_ms == 300_000
    assert config.route.settings.repeat_interval_ms == 14_400_000
    assert config.inhibit_rules == () and dict(config.time_intervals) == {}


def test_inhibit_rules_and_time_intervals_are_read() -> None:
    config = parse(TREE + """\
inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: ['severity=~"warning|info"']
    equal: [cluster, service]
time_intervals:
  - name: weekend
    time_intervals:
      - weekdays: [saturday, sunday]
""")
    [rule] = config.inhibit_rules
    assert [str(m) for m in rule.source_matchers] == ['severity="critical"']
    assert [str(m) for m in rule.target_matchers] == ['severity=~"warning|info"']
    assert rule.equal == ("cluster", "service")
    assert list(config.time_intervals) == ["weekend"]
    assert config.time_intervals["weekend"].contains(1_767_398_400_000)  # Sat 2026-01-03


def diagnostics_of(text: str) -> list[tuple[str, str, str]]:
    _, diagnostics = parse_routing(load_yaml(SourceFile("routing.yaml", text)))
    return [(d.code, d.location(), d.message) for d in diagnostics]


def test_errors_are_located() -> None:
    text = """\
route:
  receiver: console
  routes:
    - matchers: ['severity="critical"', 'team=~"db|(x"']
      receiver: pager
      mute_time_intervals: [nights, weekend]
      group_interval: 0s
    - matchers: 'a="b" c="d"'
      receiver: x
      receivers: [y]
time_intervals:
  - name: nights
    time_intervals:
      - weekdays: [monday, friday:monday]
  - name: nights
    time_intervals: []
"""
    assert diagnostics_of(text) == [
        ("routing/invalid-matcher", "routing.yaml:4:48",
         "invalid regular expression 'db|(x': missing ): db|(x"),
        ("routing/unknown-time-interval", "routing.yaml:6:37",
         "time interval 'weekend' is not defined"),
        ("routing/invalid-value", "routing.yaml:7:23", "group_interval must be longer than 0"),
        ("routing/invalid-matcher", "routing.yaml:8:24", "expected ',' between matchers, "
         "found 'c'"),
        ("routing/conflicting-fields", "routing.yaml:10:7",
         "give either 'receiver' or 'receivers'"),
        ("routing/invalid-time-interval", "routing.yaml:14:28",
         "range 'friday:monday' starts after it ends; list two ranges instead"),
        ("routing/duplicate-time-interval", "routing.yaml:15:11",
         "time interval 'nights' is defined twice"),
    ]


def test_schema_errors_come_first_and_stop() -> None:
    assert diagnostics_of("route:\n  reciever: a\n  group_wait: true\n") == [
        ("schema/unknown-field", "routing.yaml:2:3", "unknown field 'reciever' in route"),
        ("schema/type", "routing.yaml:3:15",
         "'group_wait' must be an integer or a string, not a boolean (true)"),
    ]


def test_load_routing_config_checks_receivers(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(TREE)
    config = load_routing_config(path, ["pager", "slack", "dba", "web"])
    assert config.receivers() == ["console", "pager", "dba", "slack", "web"]
    with pytest.raises(RoutingConfigError) as info:
        load_routing_config(path, ["pagerr", "slack", "dba", "web"])
    assert [(d.code, d.location(), d.hints) for d in info.value.diagnostics] == [
        ("routing/unknown-receiver", f"{path}:9:17", ("did you mean 'pagerr'?",)),
        ("routing/unknown-receiver", f"{path}:14:28", ("did you mean 'pagerr'?",))]
    assert str(info.value) == f"{path}:9:17: unknown receiver 'pager': no such notification " \
        "channel (and 1 more)"


def test_load_routing_config_unreadable(tmp_path: Path) -> None:
    with pytest.raises(RoutingConfigError, match="cannot read file"):
        load_routing_config(tmp_path / "missing.yaml")


# ---------------------------------------------------------------- the loader and lint


def test_shapes() -> None:
    assert format_by_shape({"route": {}, "inhibit_rules": []}) is FileFormat.ROUTING
    assert format_by_shape({"people": {}, "schedules": []}) is FileFormat.ONCALL
    assert format_by_shape({"route": {}, "other": 1}) is FileFormat.UNKNOWN


def test_lint_reports_unknown_receivers_with_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "notification_config.yaml").write_text(CHANNELS)
    (tmp_path / "routing.yaml").write_text(TREE.replace("receiver: slack", "receiver: slak"))
    ws = load_paths([tmp_path])
    assert ws.formats[str(tmp_path / "routing.yaml")] is FileFormat.ROUTING
    assert [(d.code, d.location(), d.hints) for d in ws.diagnostics] == [
        ("routing/unknown-receiver", f"{tmp_path / 'routing.yaml'}:17:17",
         ("did you mean 'slack'?",))]


def test_lint_without_channels_does_not_check_receivers(tmp_path: Path) -> None:
    (tmp_path / "routing.yaml").write_text(TREE)
    ws = load_paths([tmp_path])
    assert ws.diagnostics == []
    [(_, config)] = ws.routing
    assert config.route.receivers == ("console",)


def test_lint_cli_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from monitoring.cli import main

    (tmp_path / "notification_config.yaml").write_text(CHANNELS)
    (tmp_path / "routing.yaml").write_text(TREE)
    assert main(["lint", str(tmp_path)]) == 0
    (tmp_path / "routing.yaml").write_text(TREE.replace('team="db"', 'team=="db"'))
    assert main(["lint", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'routing.yaml'}:13:29: error[routing/invalid-matcher]" in out


def test_oncall_file_is_loaded_by_name(tmp_path: Path) -> None:
    (tmp_path / "oncall.yaml").write_text("people:\n  alice: {email: a@example.com}\n")
    ws = load_paths([tmp_path])
    assert ws.formats[str(tmp_path / "oncall.yaml")] is FileFormat.ONCALL
    assert [d for d in ws.diagnostics if d.severity.label == "error"] == []
