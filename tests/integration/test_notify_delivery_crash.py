"""Crash: SIGKILL a process that is delivering from the outbox; a new Deliverer loses nothing.

The child (tests/support/outbox_worker.py) enqueues N messages into a real DuckDB file and
delivers them over HTTP to a loopback receiver run by this test. After ``HOLD_AFTER``
messages have arrived the receiver stops answering, so the child is certainly mid-way
(sends in flight, outcomes not yet recorded) when the test SIGKILLs it. Then a new
Deliverer over the same file delivers the rest. Proven: every enqueued row survived the
crash; every message id arrived at least once; no message the child had recorded as
delivered was sent again; every message not recorded as delivered was sent after the
restart (the redeliveries are exactly those).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pytest

from monitoring.notify.model import SystemClock
from monitoring.notify.outbox import Outbox
from tests.support.outbox_worker import CHANNEL, PostChannel, deliver_until_empty, make_message
from tests.support.processes import stop_process_group

ROOT = Path(__file__).resolve().parents[2]
N = 600
HOLD_AFTER = 250


class Receiver:
    """A loopback HTTP receiver that logs each message id and can hold requests."""

    def __init__(self, hold_after: int) -> None:
        self.hold_after = hold_after
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.held = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                assert body["message_id"] == self.headers["Idempotency-Key"]
                with receiver.lock:
                    receiver.received.append(body["message_id"])
                    hold = len(receiver.received) > receiver.hold_after
                    receiver.held += hold
                if hold:
                    receiver.release.wait(60)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the sender was killed meanwhile

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(HOLD_AFTER)
    yield r
    r.close()


def _wait_for(predicate: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout  # hang protection only
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_sigkill_mid_delivery_loses_no_message(tmp_path: Path, receiver: Receiver) -> None:
    db = tmp_path / "engine.duckdb"
    errors = tmp_path / "child.stderr"
    with errors.open("wb") as err, subprocess.Popen(
            [sys.executable, "-m", "tests.support.outbox_worker", str(db), receiver.url,
             str(N)], cwd=ROOT, stdout=subprocess.PIPE, stderr=err, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)}) as child:
        try:
            assert child.stdout is not None
            first = child.stdout.readline().decode().strip()
            assert first == f"enqueued {N}", errors.read_text()
            # Mid-way: the receiver holds every request after HOLD_AFTER: some are in flight.
            _wait_for(lambda: receiver.held >= 1, "the child to reach the held requests")
            os.killpg(child.pid, signal.SIGKILL)
            assert child.wait(30) == -signal.SIGKILL
        finally:
            stop_process_group(child)
    with receiver.lock:
        before_kill = list(receiver.received)
    receiver.release.set()

    ids = [make_message(i).id for i in range(N)]
    conn = duckdb.connect(str(db))
    try:
        outbox = Outbox(conn.cursor(), SystemClock())
        counts = outbox.counts()
        assert sum(counts.values()) == N  # the whole enqueue was committed before sending
        assert counts["failed"] == counts["expired"] == 0
        assert 0 < counts["pending"] < N  # killed mid-way
        delivered_at_crash = {e.id for e in outbox.entries(status="delivered", limit=N)}
        assert delivered_at_crash <= set(before_kill)
        # The child sent request HOLD_AFTER + 1 only after >= HOLD_AFTER - 8 answers (8 in
        # flight at most), so it had recorded at least one batch of 128 outcomes.
        assert len(delivered_at_crash) >= 128

        async def restart() -> None:
            channel = PostChannel(CHANNEL, receiver.url)
            try:
                await asyncio.wait_for(deliver_until_empty(outbox, channel), 120)
            finally:
                await channel.aclose()

        asyncio.run(restart())
        assert outbox.counts() == {"pending": 0, "delivered": N, "failed": 0, "expired": 0}
        log = outbox.deliveries(limit=10 * N)
        assert {r.message_id for r in log if r.ok} == set(ids)
    finally:
        conn.close()

    with receiver.lock:
        after_restart = receiver.received[len(before_kill):]
    arrived = Counter(before_kill) + Counter(after_restart)
    assert set(arrived) == set(ids)  # every message arrived at least once
    # Nothing recorded as delivered was sent again; everything else was sent after restart.
    assert set(after_restart) == set(ids) - delivered_at_crash
    assert not delivered_at_crash & set(after_restart)
    assert len(after_restart) == len(set(after_restart))  # the restart sent each once
