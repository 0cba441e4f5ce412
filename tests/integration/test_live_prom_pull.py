"""Pulling the series the rules read from a real Prometheus (the Debian package).

The demo history is written to a store, exported as OpenMetrics, turned into
TSDB blocks with ``promtool`` and served by a real ``prometheus`` on
127.0.0.1. The samples :class:`PrometheusPuller` pulls for the selectors of
the shipped rules must be exactly the ones the store holds for those
selectors in the window (times to the millisecond, values bit for bit), and
failures must name the URL, the HTTP status and Prometheus's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitoring.demo import HOUR_MS, MINUTE_MS, write_demo
from monitoring.dryrun.ruleset import load_rule_set
from monitoring.engine.model import Labels, is_stale
from monitoring.engine.store import Store
from monitoring.live.prom_pull import PrometheusPuller, PullError, rule_selectors
from tests.support.prometheus import PrometheusServer, free_port, serving

ROOT = Path(__file__).resolve().parents[2]
END_MS = 1_767_225_600_000  # the demo's default end
START_MS = END_MS - 3 * HOUR_MS

Peer = tuple[PrometheusServer, Store]
Key = tuple[Labels, int, str]


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    root = tmp_path_factory.mktemp("prom_pull")
    store = Store(root / "history.duckdb")
    write_demo(store, 3 / 24, seed=4, end_ms=END_MS)
    try:
        with serving(store, root) as server:
            yield server, store
    finally:
        store.close()


def _keys(samples: list[tuple[dict[str, str], int, float]]) -> list[Key]:
    return sorted((tuple(sorted(labels.items())), ts, float.hex(v)) for labels, ts, v in samples)


def _stored(store: Store, matcher_sets: list[list[tuple[str, str, str]]], since_ms: int,
            until_ms: int) -> list[Key]:
    out: set[Key] = set()
    for matchers in matcher_sets:
        for s in store.select(matchers, since_ms + 1, until_ms):
            for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
                if since_ms < t <= until_ms and not is_stale(v):
                    out.add((s.labels, t, float.hex(v)))
    return sorted(out)


def _pull(url: str, selectors: list[str], since_ms: int, until_ms: int,
          max_window_ms: int = 3_600_000) -> list[tuple[dict[str, str], int, float]]:
    async def go() -> list[tuple[dict[str, str], int, float]]:
        async with PrometheusPuller(url, selectors, max_window_ms=max_window_ms) as puller:
            return await puller.pull(since_ms, until_ms)
    return asyncio.run(go())


def test_pulled_samples_of_the_shipped_rules_equal_the_stored_ones(peer: Peer) -> None:
    server, store = peer
    selectors = rule_selectors(load_rule_set([str(ROOT / "rules")]))
    assert '{__name__="up"}' in selectors and '{__name__="error_rate"}' in selectors
    # Recording rules are evaluated by the engine, not pulled.
    assert not any("job:http_requests:rate5m" in s for s in selectors)
    since, until = START_MS + 20 * MINUTE_MS + 123, START_MS + 150 * MINUTE_MS + 7
    # A 40-minute window limit: the pull is split into four queries per selector.
    got = _pull(server.url, selectors, since, until, max_window_ms=40 * MINUTE_MS)
    matcher_sets = [[("__name__", "=", name)] for name in (
        "build_info", "cpu_usage_ratio", "disk_used_ratio", "error_rate",
        "http_request_duration_seconds_bucket", "http_requests_total",
        "kube_deployment_labels", "memory_usage_ratio", "node_cluster_info", "queue_depth",
        "temperature_celsius", "up")]
    matcher_sets.append([("__name__", "=", "kube_pod_info"), ("namespace", "=", "prod")])
    expected = _stored(store, matcher_sets, since, until)
    assert len(expected) > 50_000
    keys = _keys(got)
    assert len(keys) == len(set(keys))  # no sample twice
    assert keys == expected


def test_window_edges_exclude_since_and_include_until(peer: Peer) -> None:
    server, store = peer
    series = store.select([("__name__", "=", "queue_depth"), ("queue", "=", "orders")],
                          START_MS + HOUR_MS, START_MS + 2 * HOUR_MS)[0]
    times = series.ts.tolist()
    since, until = times[10], times[20]  # both exactly on a sample
    got = _pull(server.url, ['{__name__="queue_depth",queue="orders"}'], since, until)
    assert [t for _, t, _ in got] == times[11:21]
    assert [v for _, _, v in got] == series.values.tolist()[11:21]
    assert got[0][0] == {"__name__": "queue_depth", "queue": "orders"}


def test_a_refused_query_names_url_status_and_prometheus_reason(peer: Peer) -> None:
    server, _ = peer
    with pytest.raises(PullError) as e:
        _pull(server.url, ['{__name__=~".*"}'], START_MS, START_MS + MINUTE_MS)
    text = str(e.value)
    assert f"{server.url}/api/v1/query" in text
    assert "HTTP 400" in text and "bad_data" in text
    assert "vector selector must contain at least one non-empty matcher" in text


def test_a_server_that_is_not_prometheus_is_named(peer: Peer) -> None:
    server, _ = peer
    with pytest.raises(PullError, match=r"/nope/api/v1/query.*HTTP 404, not a Prometheus API"):
        _pull(server.url + "/nope", ['{__name__="up"}'], START_MS, START_MS + MINUTE_MS)


def test_nothing_listening_is_a_pull_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(PullError, match=rf"{url}/api/v1/query: .*ConnectError"):
        _pull(url, ['{__name__="up"}'], START_MS, START_MS + MINUTE_MS)


def test_a_bad_url_is_refused_before_any_request() -> None:
    with pytest.raises(PullError, match="expected an http:// or https:// URL"):
        PrometheusPuller("localhost:9090", ["up"])


def test_empty_window_or_no_selectors_pull_nothing() -> None:
    assert _pull("http://127.0.0.1:1", ['{__name__="up"}'], 10, 10) == []
    assert _pull("http://127.0.0.1:1", [], 0, 10) == []
