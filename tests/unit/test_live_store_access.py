"""StoreAccess: all store work on one thread, results and errors handed back, then closed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from monitoring.engine.store import Store, StoreError
from monitoring.live.store_access import StoreAccess, StoreClosedError


def test_work_runs_on_one_thread_in_order(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        access = StoreAccess(store)
        threads: list[str] = []

        def write(s: Store, i: int) -> int:
            threads.append(threading.current_thread().name)
            return s.append([({"__name__": "m"}, 1000 * i, float(i))])

        def job(i: int) -> Callable[[Store], int]:
            return lambda s: write(s, i)

        async def go() -> list[int]:
            return list(await asyncio.gather(*(access.run(job(i)) for i in range(5))))

        assert asyncio.run(go()) == [1] * 5
        assert access.run_sync(lambda s: write(s, 5)) == 1
        assert len(set(threads)) == 1 and threads[0].startswith("monitoring-store")
        assert threads[0] != threading.current_thread().name
        (series,) = access.run_sync(lambda s: s.select([("__name__", "=", "m")], 0, 10_000))
        assert series.values.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        access.close()
        access.close()  # idempotent
        assert access.closed


def test_errors_reach_the_caller_and_closed_access_refuses(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb") as store:
        Store(tmp_path / "ro.duckdb").close()
        access = StoreAccess(Store(tmp_path / "ro.duckdb", read_only=True))

        async def go() -> None:
            await access.run(lambda s: s.append([({"__name__": "m"}, 1, 1.0)]))

        with pytest.raises(StoreError, match="read-only"):
            asyncio.run(go())
        access.close()
        access.store.close()
        with pytest.raises(StoreClosedError):
            access.run_sync(lambda s: None)
        assert store.time_range() is None
