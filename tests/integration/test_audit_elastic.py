"""Elasticsearch shipping and reconciliation, with the official client.

No Elasticsearch server can be installed here: the official ``elasticsearch`` client talks to
``tests/support/fake_elasticsearch.py``, a loopback HTTP stand-in for the bulk, search,
document and index APIs it uses, running in a thread on a free 127.0.0.1 port. The ledger is
a real DuckDB file.
"""

from __future__ import annotations

import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from monitoring.audit.anchors import AnchorConflict
from monitoring.audit.elastic import (
    DEFAULT_CHECKPOINTS_INDEX,
    DEFAULT_EVENTS_INDEX,
    ElasticAnchor,
    ElasticShipper,
    ElasticUnavailable,
    Retry,
    connect,
    doc_id,
    document_leaf,
    reconcile,
)
from monitoring.audit.ledger import Ledger
from monitoring.audit.note import Checkpoint, open_checkpoint
from monitoring.audit.recovery import AlarmKind
from tests.support.audit_files import LedgerFiles
from tests.support.fake_elasticsearch import FakeElasticsearch

EMAIL = "alice@example.com"
IP = "198.51.100.23"


def fill(ledger: Ledger, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        if i % 2:
            ledger.append({"event_type": "authentication", "action": "login",
                           "user_id": EMAIL, "source": IP, "details": {"n": i}})
        else:
            ledger.append({"event_type": "configuration_change", "action": "rule.edit",
                           "resource": f"rule{i}", "details": {"n": i}})


@pytest.fixture
def fake() -> Iterator[FakeElasticsearch]:
    with FakeElasticsearch() as server:
        yield server


@pytest.fixture
def es(fake: FakeElasticsearch) -> Iterator[Elasticsearch]:
    client = connect(fake.url)
    yield client
    client.close()


@pytest.fixture
def env(tmp_path: Path) -> LedgerFiles:
    return LedgerFiles(tmp_path)


@pytest.fixture
def ledger(env: LedgerFiles) -> Iterator[Ledger]:
    with env.open() as opened:
        fill(opened, 20)
        yield opened


def no_sleep() -> Retry:
    """A retry policy that records its waits instead of sleeping."""
    waits: list[float] = []
    retry = Retry(sleep=waits.append)
    retry.waits = waits  # type: ignore[attr-defined]
    return retry


def test_loopback_stand_in_speaks_the_official_clients_protocol(
        es: Elasticsearch, fake: FakeElasticsearch) -> None:
    """The stand-in answers what the client checks and sends (so the tests below mean it)."""
    import urllib.request

    with urllib.request.urlopen(fake.url + "/") as answer:
        assert answer.headers["X-Elastic-Product"] == "Elasticsearch"
    assert es.info()["version"]["number"].startswith("9.")
    es.indices.create(index="t", mappings={"properties": {"seq": {"type": "long"}}})
    ops: list[dict[str, Any]] = []
    for seq in range(5):
        ops += [{"create": {"_index": "t", "_id": f"o:{seq}"}}, {"origin": "o", "seq": seq}]
    ops += [{"create": {"_index": "t", "_id": "o:1"}}, {"origin": "o", "seq": 99}]
    answer = es.bulk(operations=ops, refresh=True)
    assert answer["errors"] is True
    assert [item["create"]["status"] for item in answer["items"]] == [201] * 5 + [409]
    assert es.get(index="t", id="o:1")["_source"]["seq"] == 1
    es.indices.refresh(index="t")
    page = es.search(index="t", query={"bool": {"filter": [
        {"term": {"origin": "o"}}, {"range": {"seq": {"gte": 1, "lt": 4}}}]}},
        sort=[{"seq": {"order": "desc"}}], size=2, search_after=[3])
    assert [hit["_id"] for hit in page["hits"]["hits"]] == ["o:2", "o:1"]
    fake.fail_next(1, 429)
    from elasticsearch import ApiError

    with pytest.raises(ApiError) as refused:
        es.search(index="t")
    assert refused.value.meta.status == 429


# --------------------------------------------------------------------------- shipping


def test_ships_every_entry_and_checkpoint_as_verifiable_documents(
        ledger: Ledger, es: Elasticsearch, fake: FakeElasticsearch) -> None:
    report = ElasticShipper(es, batch=7, retry=no_sleep()).ship(ledger)
    size = ledger.size
    assert report.ok and report.shipped == size and (report.start, report.end) == (0, size)
    docs = fake.documents(DEFAULT_EVENTS_INDEX)
    assert sorted(docs) == sorted(doc_id(ledger.origin, s) for s in range(size))
    for seq in range(size):
        doc = docs[doc_id(ledger.origin, seq)]
        entry = ledger.storage.entry(seq)
        assert entry is not None
        # a document carries its envelope's fields exactly: it hashes to the ledger's leaf
        assert document_leaf(doc) == entry.leaf == bytes.fromhex(doc["leaf"])
        assert doc["seq"] == seq and 0 < doc["checkpoint_size"] <= size
        assert doc["checkpoint_size"] > seq
    checkpoints = fake.documents(DEFAULT_CHECKPOINTS_INDEX)
    assert report.checkpoints == len(ledger.storage.checkpoints()) == len(checkpoints)
    newest = checkpoints[doc_id(ledger.origin, size)]
    cp, _ = open_checkpoint(newest["note"], [ledger.key.verifier()], ledger.origin)
    assert cp.size == size and cp.root.hex() == newest["root"]
    # only bulk create operations were used to write
    writes = [(m, p) for m, p in fake.requests if m in ("PUT", "POST")
              and not p.endswith("_search")]
    assert {p for _, p in writes} <= {"/_bulk", f"/{DEFAULT_EVENTS_INDEX}",
                                     f"/{DEFAULT_CHECKPOINTS_INDEX}"}


def test_resumes_after_the_highest_shipped_seq(ledger: Ledger, es: Elasticsearch,
                                               fake: FakeElasticsearch) -> None:
    shipper = ElasticShipper(es, retry=no_sleep())
    first = shipper.ship(ledger)
    fill(ledger, 5, start=100)
    second = shipper.ship(ledger)
    assert second.start == first.end and second.shipped == ledger.size - first.end
    assert second.already == 0 and second.checkpoints == 5
    assert shipper.ship(ledger).shipped == 0
    assert len(fake.documents(DEFAULT_EVENTS_INDEX)) == ledger.size


def test_retries_overload_and_outages_with_jittered_backoff(ledger: Ledger, es: Elasticsearch,
                                                            fake: FakeElasticsearch) -> None:
    retry = no_sleep()
    fake.fail_next(2, 429)  # whole requests refused (index check)
    fake.fail_items_next(3, 503)  # then three bulk items refused
    report = ElasticShipper(es, batch=10, retry=retry).ship(ledger)
    assert report.ok and report.shipped == ledger.size
    waits: list[float] = retry.waits  # type: ignore[attr-defined]
    assert len(waits) == 3 and retry.retries == 3
    assert 0 <= waits[0] <= 0.2 and 0 <= waits[1] <= 0.4  # full jitter under the caps
    assert len(fake.documents(DEFAULT_EVENTS_INDEX)) == ledger.size


def test_gives_up_after_the_attempts(ledger: Ledger, es: Elasticsearch,
                                     fake: FakeElasticsearch) -> None:
    fake.fail_next(50, 503)
    retry = Retry(attempts=3, sleep=lambda _s: None)
    with pytest.raises(ElasticUnavailable, match="still failing after 3 attempts: HTTP 503"):
        ElasticShipper(es, retry=retry).ship(ledger)


def test_an_unreachable_cluster_is_unavailable(ledger: Ledger) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens
    client = connect(f"http://127.0.0.1:{port}", timeout_s=2)
    try:
        with pytest.raises(ElasticUnavailable, match="ConnectionError"):
            ElasticShipper(client, retry=Retry(attempts=2, sleep=lambda _s: None)).ship(ledger)
    finally:
        client.close()


def test_t34_create_never_overwrites_and_a_conflict_is_reported(
        ledger: Ledger, es: Elasticsearch, fake: FakeElasticsearch) -> None:
    planted = {"seq": 5, "origin": ledger.origin, "severity": "debug", "note": "forged"}
    fake.put_document(DEFAULT_EVENTS_INDEX, doc_id(ledger.origin, 5), planted)
    size = ledger.size
    report = ElasticShipper(es, retry=no_sleep()).ship(ledger, start=0)
    assert not report.ok
    assert [c.doc_id for c in report.conflicts] == [doc_id(ledger.origin, 5)]
    assert {"severity", "note", "leaf"} <= set(report.conflicts[0].fields)
    assert fake.documents(DEFAULT_EVENTS_INDEX)[doc_id(ledger.origin, 5)] == planted
    assert report.shipped == size - 1
    # the conflict is itself recorded in the ledger
    entry = ledger.storage.entry(ledger.size - 1)
    assert entry is not None and b'"elasticsearch.conflict"' in entry.envelope
    # resending identical documents (a lost answer) is not a conflict
    again = ElasticShipper(es, retry=no_sleep()).ship(ledger, start=0)
    assert again.already >= size - 1 and [c.doc_id for c in again.conflicts] == [
        doc_id(ledger.origin, 5)]


def test_t39_no_plaintext_personal_data_reaches_elasticsearch(
        ledger: Ledger, es: Elasticsearch, fake: FakeElasticsearch) -> None:
    ElasticShipper(es, retry=no_sleep()).ship(ledger)
    everything = json.dumps([fake.documents(DEFAULT_EVENTS_INDEX),
                             fake.documents(DEFAULT_CHECKPOINTS_INDEX)])
    assert EMAIL not in everything and IP not in everything
    assert "alice" not in everything
    logins = [d for d in fake.documents(DEFAULT_EVENTS_INDEX).values()
              if d["action"] == "login"]
    assert logins and all(d["data"] is None and d["pii"]["ref"].startswith("s-")
                          for d in logins)


def test_a_tampered_store_is_not_shipped(env: LedgerFiles, es: Elasticsearch,
                                         fake: FakeElasticsearch) -> None:
    import duckdb

    from monitoring.audit.errors import VerifyFailure
    from monitoring.audit.storage import LedgerStorage

    with env.open() as ledger:
        fill(ledger, 10)
        history = ledger.history
    conn = duckdb.connect(str(env.db))
    conn.execute("UPDATE audit_entries SET envelope = replace(envelope::VARCHAR, "
                 "'rule4', 'rule9')::BLOB WHERE seq = 5")
    conn.close()
    conn = duckdb.connect(str(env.db), read_only=True)
    try:
        with pytest.raises(VerifyFailure, match=r"seq 5: .*not shipping"):
            ElasticShipper(es, retry=no_sleep()).ship(LedgerStorage(conn), keys=history)
    finally:
        conn.close()
    assert fake.documents(DEFAULT_EVENTS_INDEX) == {}


# --------------------------------------------------------------------------- reconciliation


def test_reconcile_agrees_after_shipping(ledger: Ledger, es: Elasticsearch) -> None:
    ElasticShipper(es, retry=no_sleep()).ship(ledger)
    report = reconcile(ledger, es, retry=no_sleep())
    assert report.ok and report.documents == ledger.size
    assert report.checkpoints == len(ledger.storage.checkpoints()) and report.not_shipped == 0
    fill(ledger, 3, start=50)
    later = reconcile(ledger, es, retry=no_sleep())
    assert later.ok and later.not_shipped == 3


def test_t32_reconcile_flags_altered_missing_and_extra_documents(
        ledger: Ledger, es: Elasticsearch, fake: FakeElasticsearch) -> None:
    ElasticShipper(es, retry=no_sleep()).ship(ledger)
    origin = ledger.origin
    docs = fake.documents(DEFAULT_EVENTS_INDEX)
    altered = dict(docs[doc_id(origin, 4)], severity="debug")
    fake.put_document(DEFAULT_EVENTS_INDEX, doc_id(origin, 4), altered)  # hide from filters
    fake.delete_document(DEFAULT_EVENTS_INDEX, doc_id(origin, 9))  # hide entirely
    fake.put_document(DEFAULT_EVENTS_INDEX, doc_id(origin, 999),
                      dict(docs[doc_id(origin, 3)], seq=999))  # invent one
    size = ledger.size
    report = reconcile(ledger, es, retry=no_sleep())
    assert report.counts == {"altered": 1, "missing": 1, "extra": 1}
    found = {(d.kind, d.doc_id): d.detail for d in report.discrepancies}
    assert found[("altered", doc_id(origin, 4))] == "fields severity differ from the ledger's entry"
    assert found[("missing", doc_id(origin, 9))] == "the ledger has this entry, the index does not"
    assert found[("extra", doc_id(origin, 999))] == \
        f"the ledger has no seq 999 (newest checkpoint size {size})"
    alarms = report.alarms()
    assert {a.kind for a in alarms} == {AlarmKind.TAMPERED}
    assert all(a.evidence["where"] == "elasticsearch" for a in alarms)
    recorded = ledger.storage.entry(ledger.size - 1)
    assert recorded is not None and b'"elasticsearch.mismatch"' in recorded.envelope


def test_reconcile_flags_forged_and_rollback_checkpoints(env: LedgerFiles, es: Elasticsearch,
                                                         fake: FakeElasticsearch) -> None:
    with env.open() as ledger:
        fill(ledger, 6)
    backup = env.root / "backup.duckdb"
    shutil.copy(env.db, backup)
    with env.open() as ledger:
        fill(ledger, 6, start=10)
        ElasticShipper(es, retry=no_sleep()).ship(ledger)
        newest = ledger.size
        origin = ledger.origin
    # forge: a checkpoint document whose note was edited
    cps = fake.documents(DEFAULT_CHECKPOINTS_INDEX)
    victim = dict(cps[doc_id(origin, 3)])
    victim["note"] = victim["note"].replace(f"\n{3}\n", "\n4\n", 1)
    fake.put_document(DEFAULT_CHECKPOINTS_INDEX, doc_id(origin, 3), victim)
    # roll the store back to the backup (A1 restores an old copy; sidecar left alone)
    shutil.copy(backup, env.db)
    with env.open(check=False) as old:
        report = reconcile(old, es, retry=no_sleep())
    kinds = {d.kind for d in report.discrepancies}
    assert "forged" in kinds and "rollback" in kinds
    rollback = [d for d in report.discrepancies if d.kind == "rollback"]
    assert any(f"size {newest}" in d.detail for d in rollback)
    assert AlarmKind.ROLLBACK in {a.kind for a in report.alarms()}


# --------------------------------------------------------------------------- anchor


def test_checkpoint_index_as_an_anchor(ledger: Ledger, es: Elasticsearch) -> None:
    anchor = ElasticAnchor(es, origin=ledger.origin, retry=no_sleep(), url="loopback")
    assert anchor.latest() is None
    checkpoints = ledger.storage.checkpoints()
    small, big = checkpoints[3], checkpoints[-1]
    cp_small = Checkpoint(ledger.origin, small.size, small.root)
    cp_big = Checkpoint(ledger.origin, big.size, big.root)
    anchor.publish(small.note, cp_small, lambda old: [])
    anchor.publish(big.note, cp_big, lambda old: ledger.consistency_proof(old, big.size))
    assert anchor.latest() == big.note
    anchor.publish(big.note, cp_big, lambda old: [])  # the same again: nothing to do
    with pytest.raises(AnchorConflict, match="ROLLBACK") as rolled:
        anchor.publish(small.note, cp_small, lambda old: [])
    assert rolled.value.anchored_size == big.size
    forged = Checkpoint(ledger.origin, big.size + 1, b"\x00" * 32)
    with pytest.raises(AnchorConflict, match="FORK"):
        anchor.publish("forged note", forged, lambda old: ledger.consistency_proof(old, old))


# --------------------------------------------------------------------------- command line


def test_cli_ship_and_reconcile(env: LedgerFiles, fake: FakeElasticsearch) -> None:
    with env.open() as ledger:
        fill(ledger, 8)
        origin = ledger.origin
    shipped = env.cli("ship", "--es", fake.url)
    assert shipped.returncode == 0, shipped.stderr
    assert shipped.stdout.startswith("shipped 9 entries (seq 0..8) and ")
    ok = env.cli("reconcile", "--es", fake.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: 9 documents")
    doc = fake.documents(DEFAULT_EVENTS_INDEX)[doc_id(origin, 2)]
    fake.put_document(DEFAULT_EVENTS_INDEX, doc_id(origin, 2), dict(doc, outcome="success"))
    bad = env.cli("reconcile", "--es", fake.url, "--format", "json")
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["counts"] == {"altered": 1}
    assert report["discrepancies"][0]["doc_id"] == doc_id(origin, 2)


def test_cli_unreachable_cluster_exits_2(env: LedgerFiles) -> None:
    with env.open() as ledger:
        fill(ledger, 1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    done = env.cli("ship", "--es", f"http://127.0.0.1:{port}", "--attempts", "1",
                   "--timeout", "2")
    assert done.returncode == 2
    assert "monitoring audit: error: Elasticsearch:" in done.stderr
    assert "Traceback" not in done.stderr
