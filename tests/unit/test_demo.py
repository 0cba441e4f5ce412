"""The demo history (monitoring.demo, `monitoring demo-data`): realistic, deterministic, useful.

Useful means: every metric the shipped rules read is there, and the shipped
alert rules that can be evaluated fire sometimes, not constantly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitoring.demo import (
    DAY_MS,
    DEFAULT_END_MS,
    DemoError,
    family_names,
    plan_incidents,
    restarting_cumsum,
    write_demo,
)
from monitoring.dryrun.engine import run_dry_run
from monitoring.dryrun.ruleset import load_rule_set, selectors
from monitoring.dsl.ast import RecordingRule
from monitoring.engine.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _demo(path: Path, days: float, seed: int, only: list[str] | None = None) -> None:
    with Store(path) as store:
        write_demo(store, days, seed, only=only)


def _read(path: Path, metric: str) -> dict[object, tuple[list[int], list[float]]]:
    with Store(path, read_only=True) as store:
        series = store.select([("__name__", "=", metric)], 0, 2**62)
    return {tuple(s.labels): (list(s.ts), list(s.values)) for s in series}


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    only = ["queue_depth", "http_requests_total"]
    _demo(tmp_path / "a.duckdb", 1, 5, only)
    _demo(tmp_path / "b.duckdb", 1, 5, only)
    _demo(tmp_path / "c.duckdb", 1, 6, only)
    for metric in only:
        a = _read(tmp_path / "a.duckdb", metric)
        assert a and a == _read(tmp_path / "b.duckdb", metric)
        assert a != _read(tmp_path / "c.duckdb", metric)


def test_restarting_cumsum() -> None:
    inc = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    resets = np.array([False, False, True, False, True])
    assert restarting_cumsum(inc, resets).tolist() == [1.0, 3.0, 3.0, 7.0, 5.0]
    assert restarting_cumsum(inc, np.zeros(5, dtype=bool)).tolist() == [1, 3, 6, 10, 15]


def test_counters_reset_and_gauges_follow_the_day(tmp_path: Path) -> None:
    db = tmp_path / "d.duckdb"
    _demo(db, 3, 1, ["http_requests_total", "temperature_celsius"])
    drops = 0
    for ts, values in _read(db, "http_requests_total").values():
        v = np.array(values)
        assert np.all(v >= 0) and np.all(np.diff(ts) > 0)
        drops += int(np.sum(np.diff(v) < 0))
    assert drops > 0  # restarts after outages and deploys
    for ts, values in _read(db, "temperature_celsius").values():
        hours = (np.array(ts) % DAY_MS) // 3_600_000
        v = np.array(values)
        # Daily seasonality: warmer in the afternoon than at night (on average).
        assert v[(hours >= 13) & (hours < 17)].mean() > v[(hours >= 1) & (hours < 5)].mean() + 3


def test_incidents_are_planted_inside_the_range() -> None:
    rng = np.random.default_rng(1)
    start = DEFAULT_END_MS - 7 * DAY_MS
    incidents = plan_incidents(rng, start, DEFAULT_END_MS)
    kinds = {i.kind for i in incidents}
    assert len(kinds) >= 8
    assert all(start + 6 * 3_600_000 <= i.start_ms and i.end_ms <= DEFAULT_END_MS
               for i in incidents)


def _metric_names(paths: list[str]) -> set[str]:
    """The metric names the rules' selectors read (recording rules' outputs excluded)."""
    rule_set = load_rule_set(paths)
    recorded = {r.rule.name.value for r in rule_set.rules if isinstance(r.rule, RecordingRule)}
    names = {sel.metric for r in rule_set.rules for sel in selectors(r) if sel.metric}
    return names - recorded


@pytest.fixture(scope="module")
def shipped_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    _demo(db, 4, 1)
    return db


def test_every_metric_the_shipped_rules_read_is_there(shipped_demo: Path) -> None:
    report = run_dry_run([str(ROOT / "rules")], str(shipped_demo))
    with Store(shipped_demo, read_only=True) as store:
        stored = {dict(ls)["__name__"] for ls in store.series_matching([])}
    assert stored == set(family_names())
    assert _metric_names([str(ROOT / "rules")]) <= stored
    assert report.rules
    assert not [r.key for r in report.rules if r.status == "no_data"]


CANNOT_FIRE_IN_A_BACKTEST = {
    # timestamp(up) - time() > 30 for 5m: the newest sample is at most 5m old (the
    # lookback), so the lag exceeds 30 s for 4m30s at most; stored history has no
    # other clock (sample times are the only times a backtest knows).
    "anomalies/ClockSkew",
}


def test_shipped_alerts_fire_sometimes_not_constantly(shipped_demo: Path) -> None:
    report = run_dry_run([str(ROOT / "rules")], str(shipped_demo))
    span = report.info.end_ms - report.info.start_ms
    evaluated = [r for r in report.alerts if r.status == "ok"]
    assert len(evaluated) >= 8
    for r in evaluated:
        if r.key in CANNOT_FIRE_IN_A_BACKTEST:
            assert r.firings == 0
            continue
        assert r.firings >= 1, f"{r.key} never fired"
        assert r.firing_ms < 0.2 * span, f"{r.key} fired {r.firing_ms / span:.0%} of the time"


def test_bad_parameters(tmp_path: Path) -> None:
    with Store(tmp_path / "x.duckdb") as store:
        with pytest.raises(DemoError, match="--days"):
            write_demo(store, 0)
        with pytest.raises(DemoError, match="unknown metric nope"):
            write_demo(store, 1, only=["nope"])


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitoring", "demo-data", *args],
                          capture_output=True, text=True, cwd=ROOT, check=False)


def test_cli(tmp_path: Path) -> None:
    db = tmp_path / "cli.duckdb"
    ok = _cli("--db", str(db), "--days", "0.5", "--series", "up,queue_depth", "--seed", "2")
    assert ok.returncode == 0, ok.stderr
    assert "planted" in ok.stdout and "samples of 8 series (2 metrics)" in ok.stdout
    again = _cli("--db", str(db), "--days", "0.5")
    assert again.returncode == 2 and "already holds data" in again.stderr
    bad = _cli("--db", str(tmp_path / "n.duckdb"), "--days", "-1")
    assert bad.returncode == 2 and "--days must be a positive number" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert not (tmp_path / "n.duckdb").exists()
    unknown = _cli("--db", str(tmp_path / "u.duckdb"), "--series", "nope")
    assert unknown.returncode == 2 and "unknown metric nope" in unknown.stderr
    nodir = _cli("--db", str(tmp_path / "missing" / "x.duckdb"))
    assert nodir.returncode == 2 and "no such directory" in nodir.stderr
