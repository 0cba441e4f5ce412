"""The heap is frozen once every group of the loaded rules has been evaluated."""

from __future__ import annotations

import gc

from monitoring.live.heap import HeapFreezer


def test_frozen_after_every_group_once_and_unfrozen_by_a_reload() -> None:
    freezer = HeapFreezer(True)
    try:
        freezer.loaded(["a", "b"])
        freezer.evaluated("a")
        freezer.evaluated("a")
        assert not freezer.frozen and gc.get_freeze_count() == 0
        freezer.evaluated("b")
        assert freezer.frozen and gc.get_freeze_count() > 0
        freezer.loaded(["c"])  # new rules: the old ones' cycles may be collected
        assert not freezer.frozen and gc.get_freeze_count() == 0
        freezer.evaluated("c")
        assert freezer.frozen
    finally:
        gc.unfreeze()


def test_nothing_is_frozen_unless_asked() -> None:
    freezer = HeapFreezer(False)
    freezer.loaded(["a"])
    freezer.evaluated("a")
    assert not freezer.frozen and gc.get_freeze_count() == 0
