"""A child process for the outbox crash test, and the small HTTP channel it delivers with.

``python -m tests.support.outbox_worker DB URL N`` enqueues the messages ``make_message(0..N-1)``
into the outbox of the DuckDB file DB, prints ``enqueued <new rows>`` (flushed, after the
commit), then delivers them to URL with :class:`PostChannel` until none is pending and
prints ``done``. The test SIGKILLs it in between and finishes the job with a new
Deliverer over the same file.
"""

from __future__ import annotations

import asyncio
import sys

import duckdb
import httpx

from monitoring.notify.delivery import Deliverer
from monitoring.notify.model import Alert, DeliveryResult, Message, SystemClock, message_id
from monitoring.notify.outbox import Outbox

CHANNEL = "hook"
CREATED_MS = 1_767_225_600_000


def make_message(i: int, channel: str = CHANNEL, *, kind: str = "firing",
                 group: str | None = None, created_ms: int = CREATED_MS,
                 recipients: tuple[str, ...] = (), person: str | None = None) -> Message:
    """Message number ``i``: one firing alert labelled ``i``, its own group unless given."""
    alert = Alert({"alertname": "OutboxTest", "severity": "critical", "i": str(i)},
                  {"summary": f"alert {i}"}, "firing", created_ms - 60_000, value=float(i),
                  rule="outbox_test", channels=(channel,))
    group_key = f"g{i}" if group is None else group
    mid = message_id(channel, kind, group_key, [alert], created_ms, extra=str(i))
    return Message(mid, channel, kind, group_key, (alert,), created_ms, recipients,
                   person=person)


class PostChannel:
    """POSTs ``{"message_id", "kind", "channel"}`` to a URL; 2xx ok, 5xx retryable, 4xx not."""

    type = "webhook"

    def __init__(self, name: str, url: str, timeout_s: float = 10.0) -> None:
        self.name = name
        self.url = url
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def send(self, message: Message) -> DeliveryResult:
        body = {"message_id": message.id, "kind": message.kind, "channel": self.name}
        try:
            response = await self._client.post(self.url, json=body,
                                               headers={"Idempotency-Key": message.id})
        except httpx.HTTPError as exc:
            return DeliveryResult(False, True, f"{type(exc).__name__}")
        if response.is_success:
            return DeliveryResult(True, detail=f"HTTP {response.status_code}")
        return DeliveryResult(False, response.status_code >= 500,
                              f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()


async def deliver_until_empty(outbox: Outbox, channel: PostChannel) -> None:
    """Run delivery rounds until nothing is pending."""
    deliverer = Deliverer(outbox, {channel.name: channel}, outbox.clock, concurrency=8)
    while outbox.pending():
        await deliverer.run_once()
        due = outbox.next_due_ms()
        if due is not None and due > outbox.clock.now_ms():
            await outbox.clock.sleep_ms(due - outbox.clock.now_ms())


async def _main(db: str, url: str, n: int) -> None:
    conn = duckdb.connect(db)
    outbox = Outbox(conn.cursor(), SystemClock())
    added = outbox.enqueue([make_message(i) for i in range(n)])
    print(f"enqueued {added}", flush=True)
    channel = PostChannel(CHANNEL, url)
    try:
        await deliver_until_empty(outbox, channel)
    finally:
        await channel.aclose()
    print("done", flush=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
