"""The demo feed makes the shipped rules fire and resolve within the first simulated hour.

The feed writes a real DuckDB store the way ``monitoring serve --demo`` does
(a six-hour backfill, then a slice per simulated minute), and the shipped
rules in ``rules/`` are dry-run over the first hour after the start: each rule
an incident of :data:`INCIDENT_SCRIPT` is meant for must fire and resolve in
that hour. At the demo's 60x that hour is one real minute.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitoring.demo import HOUR_MS, MINUTE_MS
from monitoring.dryrun.engine import run_dry_run
from monitoring.dryrun.report import DryRunReport
from monitoring.engine.store import Store
from monitoring.live.demo_feed import INCIDENT_SCRIPT, DemoFeed

ROOT = Path(__file__).resolve().parents[2]
START = 1_767_225_600_000 + 10 * HOUR_MS  # 2026-01-01T10:00Z
ESCALATION_STAGE_2_MS = 900_000  # rules/escalation_policies.yaml, critical_alerts


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> DryRunReport:
    db = tmp_path_factory.mktemp("demo_feed") / "feed.duckdb"
    feed = DemoFeed(START)
    with Store(db) as store:
        assert feed.backfill(store, 6) > 0
        now = START
        while now < START + HOUR_MS:
            now += MINUTE_MS
            store.append(feed.samples_until(now))
    return run_dry_run([str(ROOT / "rules")], str(db), START, START + HOUR_MS)


def test_every_scripted_rule_fires_and_resolves_in_the_hour(report: DryRunReport) -> None:
    by_name = {r.name: r for r in report.alerts}
    for incident in INCIDENT_SCRIPT:
        for name in incident.rules:
            rule = by_name[name]
            assert rule.status == "ok", (name, rule.reason)
            assert rule.intervals, f"{name} ({incident.kind}) did not fire"
            for iv in rule.intervals:
                assert START <= iv.start_ms < START + HOUR_MS, name
                assert iv.end_ms is not None and iv.end_ms <= START + HOUR_MS, (
                    f"{name} was still firing at the end of the hour")


def test_the_escalating_error_rate_alert_fires_early_and_long_enough(
        report: DryRunReport) -> None:
    rule = next(r for r in report.alerts if r.name == "HighErrorRate")
    assert [iv.labels["instance"] for iv in rule.intervals] == ["api-1:8080"]
    iv = rule.intervals[0]
    assert iv.start_ms - START <= 8 * MINUTE_MS  # fires within 8 s of real time at 60x
    assert iv.end_ms is not None
    # Firing long enough for stage 2 of critical_alerts (900 s after the start), plus margin.
    assert iv.end_ms - iv.start_ms >= ESCALATION_STAGE_2_MS + MINUTE_MS
    assert iv.end_ms - START <= 35 * MINUTE_MS
    kinds = [(n.channel, n.kind) for n in rule.notifications]
    assert kinds == [("email", "firing"), ("slack", "firing"),
                     ("email", "resolved"), ("slack", "resolved")]


def test_rules_without_an_incident_stay_quiet(report: DryRunReport) -> None:
    scripted = {name for i in INCIDENT_SCRIPT for name in i.rules}
    noisy = [r.name for r in report.alerts if r.intervals and r.name not in scripted]
    assert noisy == []
