"""Which selectors the Prometheus pull asks for (monitoring.live.prom_pull.rule_selectors)."""

from __future__ import annotations

from pathlib import Path

from monitoring.dryrun.ruleset import RuleSet, load_rule_set
from monitoring.live.prom_pull import rule_lookback_ms, rule_selectors, selector_text

RULES = r'''
group g every 1m {
  record r:x = sum(x_total{path="a\"b\\c"})
  alert A {
    when r:x > 1 and on () (max(z{job=~"a|b"} offset 5m) > 0) and on () count(z @ 100) > 2
    severity warning
  }
  alert B {
    when absent(w{job="api"}) or on () max_over_time(v{job!="x"}[5m:1m] @ 200) > 1
    severity info
  }
}
'''


def test_rule_selectors_walk_the_ir(tmp_path: Path) -> None:
    path = tmp_path / "t.rules"
    path.write_text(RULES, encoding="utf-8")
    got = rule_selectors(load_rule_set([str(path)]))
    assert got == [
        '{__name__="v",job!="x"}',  # inside a subquery with an @ pin: the pin is dropped
        '{__name__="w",job="api"}',  # absent() needs to know whether the series exist
        '{__name__="x_total",path="a\\"b\\\\c"}',  # escaped as PromQL reads it back
        '{__name__="z"}',  # z{job=~"a|b"} is inside z: one query; offset and @ dropped
    ]  # r:x is the set's own recording rule: evaluated here, not pulled


def test_selector_text_quotes_values_and_odd_label_names() -> None:
    assert selector_text([("__name__", "=", "up"), ("job", "=~", "a|b")]) == \
        '{__name__="up",job=~"a|b"}'
    assert selector_text([("odd name", "!=", "x\ny")]) == '{"odd name"!="x\\ny"}'


def _rule_set(tmp_path: Path, when: str) -> RuleSet:
    path = tmp_path / "l.rules"
    path.write_text(f"group g every 1m {{\n  alert A {{\n    when {when}\n"
                    "    severity info\n    summary \"s\"\n  }\n}\n", encoding="utf-8")
    return load_rule_set([str(path)])


def test_rule_lookback_covers_ranges_subqueries_offsets_and_lookback(tmp_path: Path) -> None:
    minute = 60_000
    cases = {
        "up == 0": 5 * minute,  # an instant selector's lookback
        "up offset 10m == 0": 15 * minute,
        "rate(x_total[30m]) > 0": 30 * minute,
        "rate(x_total[30m] offset 1h) > 0": 90 * minute,
        "max_over_time(rate(x_total[5m])[1h:1m]) > 0": 65 * minute,
        "max_over_time(rate(x_total[5m])[1h:1m] offset 2h) > 0 or up > 1": 185 * minute,
        "up @ 100 > 0": 5 * minute,  # a fixed pin is not history before now
    }
    for when, expected in cases.items():
        assert rule_lookback_ms(_rule_set(tmp_path, when)) == expected, when
