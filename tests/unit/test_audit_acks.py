"""Acknowledgement futures sharing one condition: the public Future API must still hold.

The point of the shared condition is that settling one batch wakes every waiting thread;
a thread woken for someone else's future must go back to waiting, never report a timeout
or a result it does not have.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import CancelledError, as_completed, wait

import pytest

from monitoring.audit.acks import AckFuture, resolve_all


@pytest.fixture
def condition() -> threading.Condition:
    return threading.Condition()


def test_result_and_exception(condition: threading.Condition) -> None:
    ok, bad = AckFuture(condition), AckFuture(condition)
    resolve_all(condition, [(ok, 7, None), (bad, None, ValueError("broken"))])
    assert ok.done() and ok.result() == 7 and ok.exception() is None
    with pytest.raises(ValueError, match="broken"):
        bad.result()
    assert isinstance(bad.exception(), ValueError)


def test_timeout_without_an_outcome(condition: threading.Condition) -> None:
    future = AckFuture(condition)
    began = time.monotonic()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.05)
    assert time.monotonic() - began >= 0.05
    with pytest.raises(TimeoutError):
        future.exception(timeout=0)


def test_a_waiter_woken_for_another_future_keeps_waiting(condition: threading.Condition
                                                         ) -> None:
    mine, other = AckFuture(condition), AckFuture(condition)
    got: list[object] = []

    def waiter() -> None:
        try:
            got.append(mine.result(timeout=5))
        except BaseException as exc:  # a stock Future.result would raise TimeoutError here
            got.append(exc)

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.05)
    resolve_all(condition, [(other, 1, None)])  # wakes the waiter, whose future is pending
    time.sleep(0.05)
    assert got == []
    resolve_all(condition, [(mine, 2, None)])
    thread.join(5)
    assert got == [2]


def test_one_wake_up_settles_many_waiters(condition: threading.Condition) -> None:
    futures = [AckFuture(condition) for _ in range(4)]
    results: list[int] = []
    threads = [threading.Thread(target=lambda f=f: results.append(f.result(timeout=5)))
               for f in futures]
    for t in threads:
        t.start()
    resolve_all(condition, [(f, i, None) for i, f in enumerate(futures)])
    for t in threads:
        t.join(5)
    assert sorted(results) == [0, 1, 2, 3]


def test_the_first_outcome_stays(condition: threading.Condition) -> None:
    future = AckFuture(condition)
    resolve_all(condition, [(future, "first", None)])
    resolve_all(condition, [(future, None, RuntimeError("late"))])
    assert future.result() == "first"


def test_callbacks_run_once_in_order_after_settling(condition: threading.Condition) -> None:
    future = AckFuture(condition)
    calls: list[tuple[str, object]] = []
    future.add_done_callback(lambda f: calls.append(("a", f.result())))
    future.add_done_callback(lambda f: calls.append(("b", f.result())))
    resolve_all(condition, [(future, 3, None)])
    future.add_done_callback(lambda f: calls.append(("late", f.result())))  # runs at once
    assert calls == [("a", 3), ("b", 3), ("late", 3)]


def test_cancelled_by_its_producer(condition: threading.Condition) -> None:
    future = AckFuture(condition)
    assert future.cancel()
    resolve_all(condition, [(future, 1, None)])
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result()
    done, pending = wait([future], timeout=1)
    assert done == {future} and not pending


def test_wait_and_as_completed(condition: threading.Condition) -> None:
    a, b = AckFuture(condition), AckFuture(condition)
    threading.Timer(0.05, lambda: resolve_all(condition, [(b, "b", None)])).start()
    done, pending = wait([a, b], timeout=5, return_when="FIRST_COMPLETED")
    assert done == {b} and pending == {a}
    resolve_all(condition, [(a, "a", None)])
    assert sorted(f.result() for f in as_completed([a, b], timeout=5)) == ["a", "b"]


def test_asyncio_can_await_it(condition: threading.Condition) -> None:
    future = AckFuture(condition)

    async def main() -> object:
        threading.Timer(0.02, lambda: resolve_all(condition, [(future, "done", None)])).start()
        return await asyncio.wrap_future(future)

    assert asyncio.run(main()) == "done"
