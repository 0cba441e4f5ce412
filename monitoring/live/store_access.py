"""One thread for every read and write of the metric store while the engine runs.

The engine is one asyncio event loop; evaluating a rule group or writing a
batch of collected samples takes milliseconds to seconds of DuckDB and NumPy
work that must not stall the loop (HTTP requests, notification deliveries).
Running it on a worker thread solves that, and running it on *one* worker
thread keeps the store's own invariants simple: the collectors' writes and the
scheduler's reads never interleave inside DuckDB, so a group evaluation sees
either all of a collected batch or none of it, and recording rules of one
group are written before the next group's evaluation starts.

``StoreAccess`` owns only the thread: the store is opened and closed by whoever
created it (the system closes it after :meth:`StoreAccess.close`).

Evaluations go through :meth:`StoreAccess.evaluate`, which hands them the
thread's :class:`~monitoring.live.read_cache.ReadCache`: groups evaluated one
after the other share what they read. A collector's write goes through
:meth:`StoreAccess.append`, which merges the written samples into what the
cache kept (a batch every few seconds would otherwise leave it empty for
most groups). Any other work (:meth:`StoreAccess.run`) may change the store
in ways the cache cannot follow, so the cache is emptied after it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import TypeVar

from monitoring.engine.store import LabelsLike, Store
from monitoring.live.read_cache import ReadCache

T = TypeVar("T")


class StoreClosedError(RuntimeError):
    """The access was closed: no more store work is accepted."""


class StoreAccess:
    """Serialises work on a :class:`~monitoring.engine.store.Store` onto one thread."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads = ReadCache(store)  # touched on the store thread only
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="monitoring-store")
        self._closed = False

    async def run(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store thread and return (or raise) its outcome."""
        loop = asyncio.get_running_loop()
        return await asyncio.wrap_future(self._submit(self._changing(fn)), loop=loop)

    def run_sync(self, fn: Callable[[Store], T]) -> T:
        """Run ``fn(store)`` on the store thread and wait for it (tests, start-up code)."""
        return self._submit(self._changing(fn)).result()

    async def append(self, samples: Sequence[tuple[LabelsLike, int, float]]) -> int:
        """:meth:`Store.append` on the store thread, keeping the read cache up to date."""
        loop = asyncio.get_running_loop()
        return await asyncio.wrap_future(
            self._submit(lambda _store: self.reads.append(samples)), loop=loop)

    async def evaluate(self, fn: Callable[[ReadCache], T]) -> T:
        """Run ``fn(reads)`` on the store thread, reading through the shared cache.

        ``fn`` reads through ``reads`` and writes through ``reads.store``,
        calling :meth:`ReadCache.wrote` after a write.
        """
        def work(store: Store) -> T:
            self.reads.check()
            return fn(self.reads)

        loop = asyncio.get_running_loop()
        return await asyncio.wrap_future(self._submit(work), loop=loop)

    def _changing(self, fn: Callable[[Store], T]) -> Callable[[Store], T]:
        """``fn``, emptying the read cache after it (it may have written)."""
        def work(store: Store) -> T:
            try:
                return fn(store)
            finally:
                self.reads.clear()

        return work

    def _submit(self, fn: Callable[[Store], T]) -> concurrent.futures.Future[T]:
        if self._closed:
            raise StoreClosedError("the store access is closed")
        return self._executor.submit(fn, self.store)

    def close(self) -> None:
        """Finish the work already submitted, then stop the thread (idempotent)."""
        self._closed = True
        self._executor.shutdown(wait=True)

    @property
    def closed(self) -> bool:
        return self._closed
