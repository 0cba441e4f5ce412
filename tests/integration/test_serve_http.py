"""The HTTP API of a running engine: every endpoint, good and bad requests.

A MonitoringSystem serves on a free 127.0.0.1 port, on a 60x scaled clock so that its 1-minute
rule group is evaluated every second. A rule created through ``POST /api/v1/rules`` fires on a
value given to ``record()``; the test then reads, acknowledges and silences it, and checks
that every malformed request is answered 400 with JSON naming the field (never a traceback),
unknown ids 404.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitoring import MonitoringSystem
from monitoring.notify.model import ScaledClock
from tests.support.serve_process import ledger_events

SEED_RULE = {"name": "api_hot", "severity": "critical", "channels": ["console"],
             "condition": {"type": "threshold", "metric": "temp_c", "operator": ">",
                           "value": 80}, "description": "too hot"}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "config").mkdir()
    return tmp_path


async def firing(client: httpx.AsyncClient, m: MonitoringSystem) -> dict[str, Any]:
    """Record hot values until the rule's alert fires (hang protection: 120 s)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m.record("temp_c", 85.0, {"room": "lab"})
        r = await client.get("/api/v1/alerts", params={"state": "firing"})
        alerts: list[dict[str, Any]] = r.json()["alerts"]
        if alerts:
            return alerts[0]
        await asyncio.sleep(0.2)
    raise AssertionError("the alert never fired")


def bad(r: httpx.Response, field: str) -> str:
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == field, body
    assert "Traceback" not in r.text
    message: str = body["error"]
    return message


async def exercise(home: Path) -> None:
    m = MonitoringSystem(config_dir=home / "config", db=home / "m.duckdb",
                         clock=ScaledClock(60), console=True, http_port=0,
                         collect_system=False)
    async with m:
        assert m.url is not None
        async with httpx.AsyncClient(base_url=m.url, timeout=30) as c:
            # rules
            r = await c.post("/api/v1/rules", json=SEED_RULE)
            assert r.status_code == 201, r.text
            assert r.json()["file"] == "api/api_hot.yaml"
            msg = bad(await c.post("/api/v1/rules", json={**SEED_RULE, "name": "x",
                                                           "condition": {"type": "threshold",
                                                                         "metric": "temp_c",
                                                                         "operator": "=>",
                                                                         "value": 1}}), "rule")
            assert msg.startswith("api/x.yaml:") and "'=>'" in msg
            bad(await c.post("/api/v1/rules", json={"name": "y"}), "condition")
            bad(await c.post("/api/v1/rules", json={**SEED_RULE, "colour": "red"}), "colour")
            bad(await c.post("/api/v1/rules", content=b"{not json"), "body")
            bad(await c.post("/api/v1/rules", json=[1, 2]), "body")
            bad(await c.post("/api/v1/rules", json={"dsl": ""}), "dsl")
            r = await c.post("/api/v1/rules", json={"dsl": "alert Cold {\n  when temp_c < -40\n"
                                                    "  severity warning\n  notify console\n}\n"})
            assert r.status_code == 201 and r.json()["rules"] == ["Cold"]
            r = await c.get("/api/v1/rules")
            assert {x["name"] for x in r.json()["rules"]} == {"api_hot", "Cold"}
            assert {x["name"] for x in r.json()["api_rules"]} == {"api_hot", "Cold"}
            assert (await c.delete("/api/v1/rules/Cold")).status_code == 200
            assert (await c.delete("/api/v1/rules/Cold")).status_code == 404

            # alerts
            alert = await firing(c, m)
            fp = alert["fingerprint"]
            assert (alert["rule"], alert["labels"]["room"], alert["state"]) == \
                ("api_hot", "lab", "firing")
            r = await c.get(f"/api/v1/alerts/{fp}")
            assert r.status_code == 200 and r.json()["labels"]["alertname"] == "api_hot"
            assert "notification" in r.json()
            bad(await c.get("/api/v1/alerts/NOT-A-FP"), "fingerprint")
            assert (await c.get("/api/v1/alerts/0000000000000000")).status_code == 404
            bad(await c.get("/api/v1/alerts", params={"state": "burning"}), "state")
            bad(await c.get("/api/v1/alerts", params={"label": "room"}), "label")
            r = await c.get("/api/v1/alerts", params={"label": "room=lab", "rule": "api_hot"})
            assert [a["fingerprint"] for a in r.json()["alerts"]] == [fp]
            r = await c.get("/api/v1/alerts", params={"label": "room=attic"})
            assert r.json()["alerts"] == []

            # acknowledgement
            bad(await c.post(f"/api/v1/alerts/{fp}/ack", json={}), "by")
            bad(await c.post(f"/api/v1/alerts/{fp}/ack", json={"by": 7}), "by")
            bad(await c.post("/api/v1/alerts/xyz/ack", json={"by": "ann"}), "fingerprint")
            r = await c.post(f"/api/v1/alerts/{fp}/ack", json={"by": "ann", "comment": "on it"})
            assert r.status_code == 200 and r.json()["acknowledged_by"] == "ann"

            # silences
            bad(await c.post("/api/v1/silences", json={"duration": "1h", "created_by": "ann",
                                                       "comment": "c"}), "matchers")
            bad(await c.post("/api/v1/silences", json={"matchers": ['room=~"(']}), "matchers")
            bad(await c.post("/api/v1/silences", json={"matchers": ['room="lab"'],
                                                       "created_by": "ann", "comment": "c"}),
                "duration")
            bad(await c.post("/api/v1/silences", json={"matchers": ['room="lab"'],
                                                       "duration": "soon", "created_by": "ann",
                                                       "comment": "c"}), "duration")
            bad(await c.post("/api/v1/silences", json={"matchers": ['room="lab"'],
                                                       "duration": "1h", "comment": "c"}),
                "created_by")
            bad(await c.post("/api/v1/silences", json={"matchers": ['room="lab"'],
                                                       "ends_at": "yesterday",
                                                       "created_by": "ann", "comment": "c"}),
                "ends_at")
            r = await c.post("/api/v1/silences", json={"matchers": ['room="lab"'],
                                                       "duration": "2h", "created_by": "ann",
                                                       "comment": "maintenance"})
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            assert r.json()["matchers"] == ['room="lab"'] and r.json()["state"] == "active"
            r = await c.get("/api/v1/silences")
            assert [s["id"] for s in r.json()["silences"]] == [sid]
            bad(await c.get("/api/v1/silences", params={"expired": "maybe"}), "expired")
            assert (await c.delete("/api/v1/silences/nope")).status_code == 404
            r = await c.delete(f"/api/v1/silences/{sid}", params={"by": "ann"})
            assert r.status_code == 200 and r.json()["state"] == "expired"
            assert (await c.get("/api/v1/silences")).json()["silences"] == []

            # history and statistics (what `monitoring alerts history/stats` asks)
            r = await c.get("/api/v1/history", params={"rule": "api_hot"})
            changes = [(t["from"], t["to"]) for t in r.json()["transitions"]]
            assert changes == [("inactive", "firing")]  # no `for`: straight to firing
            assert all(t["fingerprint"] == fp for t in r.json()["transitions"])
            bad(await c.get("/api/v1/history", params={"since_ms": "yesterday"}), "since_ms")
            bad(await c.get("/api/v1/history", params={"since_ms": "20", "until_ms": "10"}),
                "since_ms")
            r = await c.get("/api/v1/stats")
            rules = {x["rule"]: x for x in r.json()["rules"]}
            assert rules["api_hot"]["firings"] == 1 and rules["api_hot"]["acknowledged"] == 1
            bad(await c.get("/api/v1/stats", params={"top": "-1"}), "top")

            # notifications, metrics, status, unknown paths
            r = await c.get("/api/v1/notifications", params={"channel": "console"})
            assert r.status_code == 200 and {"outbox", "deliveries", "counts"} <= set(r.json())
            bad(await c.get("/api/v1/notifications", params={"status": "lost"}), "status")
            bad(await c.get("/api/v1/notifications", params={"limit": "0"}), "limit")
            r = await c.get("/metrics")
            assert r.status_code == 200 and "monitoring_outbox" in r.text
            r = await c.get("/api/v1/status")
            assert r.json()["running"] is True and r.json()["ledger"]["size"] > 1
            r = await c.get("/api/v1/nothing-here")
            assert r.status_code == 404 and "error" in r.json()
            r = await c.put("/api/v1/rules")
            assert r.status_code == 405 and "error" in r.json()

    events = ledger_events(home / "m.duckdb")
    assert ("acknowledgement", "acknowledge") in {(e["category"], e["action"]) for e in events}
    silence_actions = [e["action"] for e in events if e["category"] == "silence"]
    assert silence_actions == ["create", "expire"]


def test_every_endpoint_with_good_and_bad_requests(home: Path) -> None:
    asyncio.run(exercise(home))
