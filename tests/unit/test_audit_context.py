from __future__ import annotations

import asyncio
import contextvars
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from monitoring.audit.context import (
    MAX_ID_LENGTH,
    check_correlation_id,
    correlation,
    current_correlation_id,
    ensure_correlation,
    new_correlation_id,
    propagate,
)
from monitoring.audit.errors import EventError


def test_outside_any_block_there_is_no_id() -> None:
    assert current_correlation_id() is None


def test_new_id_is_uuid4_hex_and_random() -> None:
    ids = {new_correlation_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) and i[12] == "4" for i in ids)


def test_block_sets_and_restores() -> None:
    with correlation("alert-42") as cid:
        assert cid == "alert-42"
        assert current_correlation_id() == "alert-42"
    assert current_correlation_id() is None


def test_block_without_id_makes_a_fresh_one() -> None:
    with correlation() as a:
        assert current_correlation_id() == a
    with correlation() as b:
        assert b != a


def test_blocks_nest_and_restore_the_outer_id_even_on_error() -> None:
    with correlation("outer"):
        with pytest.raises(RuntimeError), correlation("inner"):
            assert current_correlation_id() == "inner"
            raise RuntimeError("boom")
        assert current_correlation_id() == "outer"
        with correlation() as fresh:
            assert fresh not in ("outer", "inner")
        assert current_correlation_id() == "outer"
    assert current_correlation_id() is None


def test_ensure_joins_the_current_correlation_or_starts_one() -> None:
    with correlation("alert-7"), ensure_correlation() as cid:
        assert cid == "alert-7"
    with ensure_correlation() as cid:
        assert cid is not None and current_correlation_id() == cid
    assert current_correlation_id() is None


def test_asyncio_tasks_inherit_and_isolate() -> None:
    async def child(name: str) -> tuple[str | None, str | None]:
        inherited = current_correlation_id()
        with correlation(name):
            await asyncio.sleep(0)
            return inherited, current_correlation_id()

    async def main() -> tuple[list[tuple[str | None, str | None]], str | None]:
        with correlation("parent"):
            results = await asyncio.gather(child("a"), child("b"))
            return list(results), current_correlation_id()

    results, after = asyncio.run(main())
    assert results == [("parent", "a"), ("parent", "b")]
    assert after == "parent"  # the tasks' own blocks did not leak into the parent


def test_plain_threads_do_not_inherit_but_propagate_carries_it() -> None:
    seen: dict[str, str | None] = {}

    def record(key: str) -> None:
        seen[key] = current_correlation_id()

    with correlation("req-1"):
        plain = threading.Thread(target=record, args=("plain",))
        carried = threading.Thread(target=propagate(record), args=("carried",))
        for t in (plain, carried):
            t.start()
        for t in (plain, carried):
            t.join()
    assert seen == {"plain": None, "carried": "req-1"}


def test_propagate_works_concurrently_in_a_pool() -> None:
    barrier = threading.Barrier(4)

    def work(n: int) -> tuple[int, str | None]:
        barrier.wait(timeout=5)  # all four inside the same captured context at once
        with correlation(f"inner-{n}"):
            pass
        return n, current_correlation_id()

    with correlation("batch"):
        task = propagate(work)
    with ThreadPoolExecutor(4) as pool:
        results = sorted(pool.map(task, range(4)))
    assert results == [(n, "batch") for n in range(4)]


def test_copy_context_run_sees_the_id() -> None:
    with correlation("ctx"):
        ctx = contextvars.copy_context()
    assert ctx.run(current_correlation_id) == "ctx"


@pytest.mark.parametrize(("value", "message"), [
    ("", "must not be empty"),
    ("x" * (MAX_ID_LENGTH + 1), f"at most {MAX_ID_LENGTH}"),
    ("a\nb", "control characters"),
    (42, "expected a string, got int"),
])
def test_bad_ids_are_refused_naming_the_field(value: object, message: str) -> None:
    with pytest.raises(EventError, match=message) as info:
        check_correlation_id(value)
    assert info.value.field == "correlation_id"
    with pytest.raises(EventError), correlation(value):  # type: ignore[arg-type]
        pass
    assert current_correlation_id() is None


def test_longest_allowed_id_is_accepted() -> None:
    ok = "t" * MAX_ID_LENGTH
    assert check_correlation_id(ok) == ok
