"""``MonitoringSystem(prometheus_url=...)``: rules run on an existing Prometheus's data.

A real Prometheus (the Debian package) scrapes itself every second. The engine, on the
system clock, pulls the series its rules read from that server on each collection and
evaluates them like any other: a rule on ``up`` and one on a counter's rate fire with the
values Prometheus holds, and the pulled samples are in the engine's own store.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitoring import MonitoringSystem
from monitoring.engine.store import Store
from tests.support.prometheus import PrometheusServer, peer_binary

RULES = """\
group pulled every 1s {
  alert PrometheusUp {
    when up{job="prometheus"} == 1
    severity info
    notify console
    summary "{{ $labels.instance }} is up"
  }
  alert PrometheusServesHttp {
    when sum(rate(prometheus_http_requests_total{job="prometheus"}[30s])) > 0
    severity info
    notify console
  }
}
"""


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    peer_binary("prometheus")
    storage = tmp_path / "tsdb"
    storage.mkdir()
    with PrometheusServer(storage, self_scrape_s=1) as server:
        deadline = time.monotonic() + 60
        while not server.query('up{job="prometheus"}', time.time())["result"]:
            assert time.monotonic() < deadline, "Prometheus never scraped itself"
            time.sleep(0.5)
        yield server


async def wait_firing(m: MonitoringSystem, names: set[str]) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 120  # hang protection only
    while time.monotonic() < deadline:
        firing = [a for a in m.alerts() if a["state"] == "firing"]
        if names <= {a["rule"] for a in firing}:
            return firing
        await asyncio.sleep(0.5)
    raise AssertionError(f"not firing: {names}; alerts: {m.alerts()}")


def test_rules_run_on_a_prometheus_servers_data(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                prometheus: PrometheusServer) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "pulled.rules").write_text(RULES)
    db = tmp_path / "m.duckdb"

    async def main() -> list[dict[str, Any]]:
        async with MonitoringSystem(config_dir=config, db=db, prometheus_url=prometheus.url,
                                    collect_system=False) as m:
            return await wait_firing(m, {"PrometheusUp", "PrometheusServesHttp"})

    firing = asyncio.run(main())
    up = next(a for a in firing if a["rule"] == "PrometheusUp")
    assert up["labels"]["instance"] == f"127.0.0.1:{prometheus.port}"
    assert up["labels"]["job"] == "prometheus"
    # The pulled samples are the server's own, to the millisecond.
    with Store(db, read_only=True) as store:
        stored = [(int(t), float(v)) for s in store.select(
            [("job", "=", "prometheus"), ("__name__", "=", "up")], 0, 2**62)
            for t, v in zip(s.ts, s.values, strict=True)]
    assert len(stored) >= 2
    last_s = stored[-1][0] / 1000
    held = prometheus.query('up{job="prometheus"}[10m]', last_s)["result"][0]["values"]
    server = {(round(float(t) * 1000), float(v)) for t, v in held}
    assert set(stored) <= server
