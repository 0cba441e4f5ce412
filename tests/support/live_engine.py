"""A live evaluator over a real DuckDB file, for the scheduler, state and history tests.

Series are 15 s samples from ``T0`` (an hour boundary); ``minute_wave`` gives
values by minute-of-hour, so at an evaluation ``T0 + phase + m minutes`` the
newest sample is the one of minute ``m`` (phase < 1 minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from monitoring.dryrun.ruleset import load_rule_set
from monitoring.dryrun.schedule import group_phase_ms
from monitoring.engine.model import Series, labels_of
from monitoring.engine.store import Store
from monitoring.live.alert_state import AlertStateStore
from monitoring.live.history import AlertHistory
from monitoring.live.scheduler import LiveEvaluator
from monitoring.live.store_access import StoreAccess
from monitoring.notify.model import Alert, FakeClock

MIN = 60_000
HOUR = 60 * MIN
T0 = 1_700_000_000_000 - 1_700_000_000_000 % HOUR

Wave = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]


def minute_wave(hours: int, value: Callable[[npt.NDArray[np.int64]], npt.NDArray[Any]]
                ) -> Wave:
    """15 s samples from T0; ``value`` gets each sample's minute-of-hour."""
    ts = T0 + np.arange(0, hours * HOUR, 15_000, dtype=np.int64)
    minute = ((ts - T0) // MIN) % 60
    return ts, np.asarray(value(minute), dtype=np.float64)


def square(lo: int, hi: int) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[Any]]:
    """1 for minutes-of-hour in ``[lo, hi)``, else 0."""
    return lambda m: ((m >= lo) & (m < hi)).astype(np.float64)


def write_series(store: Store, series: dict[str, tuple[dict[str, str], Wave]]) -> None:
    """``{"metric#anything": (labels, (ts, values))}`` into the store."""
    store.append_series([Series(labels_of({"__name__": name.split("#")[0], **labels}), ts, vs)
                         for name, (labels, (ts, vs)) in series.items()])


class LiveCase:
    """Rule files, a store and the live engine's tables in one DuckDB file under ``tmp``."""

    def __init__(self, tmp: Path, rules: str | dict[str, str],
                 series: dict[str, tuple[dict[str, str], Wave]] | None = None,
                 *, clock: FakeClock | None = None) -> None:
        files = {"r.rules": rules} if isinstance(rules, str) else rules
        self.paths: list[str] = []
        for name, text in files.items():
            path = tmp / name
            path.write_text(text, encoding="utf-8")
            self.paths.append(str(path))
        self.db = tmp / "live.duckdb"
        self.clock = clock or FakeClock(T0)
        self.received: list[list[Alert]] = []
        self.store: Store | None = None
        self.access: StoreAccess | None = None
        self.conn: duckdb.DuckDBPyConnection | None = None
        self.evaluator: LiveEvaluator | None = None
        if series:
            with Store(self.db) as store:
                write_series(store, series)

    def rule_file(self, name: str = "r.rules") -> str:
        return next(p for p in self.paths if Path(p).name == name)

    def open(self, **kwargs: Any) -> LiveEvaluator:
        """(Re)build the evaluator from the files and the database, as a restart does."""
        self.close()
        self.store = Store(self.db)
        self.access = StoreAccess(self.store)
        self.conn = duckdb.connect(str(self.db))  # the store's database instance
        self.evaluator = LiveEvaluator(
            load_rule_set(self.paths), self.access, AlertStateStore(self.conn),
            AlertHistory(self.conn), self.clock, on_alerts=self.received.append, **kwargs)
        return self.evaluator

    def close(self) -> None:
        if self.access is not None:
            self.access.close()
        if self.conn is not None:
            self.conn.close()
        if self.store is not None:
            self.store.close()
        self.store = self.access = self.conn = self.evaluator = None

    @property
    def ev(self) -> LiveEvaluator:
        assert self.evaluator is not None
        return self.evaluator

    def key(self, group: str = "g", file: str = "r.rules") -> str:
        return f"{self.rule_file(file)};{group}"

    def phase(self, group: str = "g", file: str = "r.rules") -> int:
        return group_phase_ms(group, self.rule_file(file), MIN)  # every test group: 1m

    def at(self, minute: int, group: str = "g", file: str = "r.rules") -> int:
        """The group's evaluation time in minute ``minute`` after T0."""
        return T0 + self.phase(group, file) + minute * MIN

    def evaluate(self, minutes: Sequence[int], group: str = "g", file: str = "r.rules"
                 ) -> list[list[Alert]]:
        """Evaluate the group at the given minutes; the alerts of each evaluation."""
        async def go() -> list[list[Alert]]:
            out = []
            for m in minutes:
                self.clock.set(self.at(m, group, file))
                out.append(await self.ev.evaluate_group(self.key(group, file),
                                                        self.at(m, group, file)))
            return out
        return asyncio.run(go())
