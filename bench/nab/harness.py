"""NAB rows through the user's path: a DuckDB store, a rule expression, the evaluator.

Each file is written into its own temporary :class:`~monitoring.engine.store.Store`
as the series ``value{file="<name>"}``, and every detector's expression is
evaluated with :func:`monitoring.engine.evaluator.evaluate_many` over the file's
time range, at the file's own spacing, so that every row's time is an
evaluation step; a row's score is the expression's value at that step.

**Rows to samples.** NAB's times are naive; they are read as UTC. A store holds
one sample per (series, time), but three files repeat a timestamp 12 times (a
daylight-saving artefact) and one steps back 55 minutes. So a row's sample time
is its own time, or one second after the previous row's sample time if that is
later: ``t'[i] = max(t[i], t'[i-1] + 1 s)``. Every row stays a sample of its
own, order is kept, and a detector scoring row ``i`` sees exactly rows
``0..i`` (the evaluator only looks back). Rows moved this way are rarely on the
grid of the file's spacing; they are evaluated as one-step queries at their own
time (the same evaluator, the same result as a step of the range query).

**Scores.** A detector should give one series. Where it gives no value at a row
(too little history, a division by zero giving NaN), the row's score is NaN,
which the scorer treats as "no detection".
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.nab.corpus import FloatArray, Int64Array, NabFile, load_corpus

__all__ = ["FileScores", "evaluate_file", "evaluate_files", "sample_times_ms"]

BoolArray = npt.NDArray[np.bool_]

NUDGE_MS = 1000
"""How far a row is moved past the previous row when its own time is not later."""
MAX_STEPS = 100_000
"""Steps per evaluation call; a longer grid is evaluated in pieces (same results)."""


def sample_times_ms(stamps_s: Int64Array) -> Int64Array:
    """Strictly increasing sample times (ms): ``t'[i] = max(t[i], t'[i-1] + NUDGE)``."""
    shift = np.arange(len(stamps_s), dtype=np.int64) * NUDGE_MS
    out: Int64Array = np.maximum.accumulate(stamps_s * 1000 - shift) + shift
    return out


def grid_of(times_ms: Int64Array, stamps_s: Int64Array) -> tuple[int, int]:
    """(start, step) in ms: the first row, and the gcd of the unmoved rows' offsets."""
    start = int(times_ms[0])
    unmoved = times_ms[times_ms == stamps_s * 1000] - start
    step = int(np.gcd.reduce(unmoved)) if len(unmoved) else 0
    return start, step or NUDGE_MS


@dataclass(slots=True)
class FileScores:
    """Every detector's score for every row of one file, or why it has none."""

    name: str
    scores: dict[str, FloatArray] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    moved_rows: int = 0


def evaluate_file(f: NabFile, detectors: Sequence[tuple[str, Any]], workdir: Path) -> FileScores:
    """Store ``f``, evaluate each ``(name, IR node)``, map the results back to rows."""
    from monitoring.engine.store import Store

    began = time.perf_counter()
    times = sample_times_ms(f.timestamps)
    start, step = grid_of(times, f.timestamps)
    out = FileScores(f.name, moved_rows=int((times != f.timestamps * 1000).sum()))
    with tempfile.TemporaryDirectory(dir=workdir) as tmp, \
            Store(Path(tmp) / "nab.duckdb", memory_limit="256MB") as store:
        store.append_arrays([{"__name__": "value", "file": f.name}],
                            np.zeros(f.rows, dtype=np.int64), times, f.values)
        on_grid = (times - start) % step == 0
        grids = {name: np.full(f.rows, np.nan) for name, _ in detectors}
        end = int(times[on_grid].max())
        span = MAX_STEPS * step
        for a in range(start, end + 1, span):
            b = min(a + span - step, end)
            _evaluate(store, detectors, a, b, step, times, on_grid, grids, out.errors)
        for i in np.flatnonzero(~on_grid):
            t = int(times[i])
            rows = np.zeros(f.rows, dtype=np.bool_)
            rows[i] = True
            _evaluate(store, detectors, t, t, step, times, rows, grids, out.errors)
    out.scores = {name: grids[name] for name, _ in detectors if name not in out.errors}
    out.seconds = time.perf_counter() - began
    return out


def _evaluate(store: Any, detectors: Sequence[tuple[str, Any]], start: int, end: int, step: int,
              times: Int64Array, rows: BoolArray, grids: dict[str, FloatArray],
              errors: dict[str, str]) -> None:
    """One range query ``[start, end]`` for all detectors; fill ``rows`` whose time is in it."""
    from monitoring.engine.evaluator import evaluate, evaluate_many

    live = [(name, node) for name, node in detectors if name not in errors]
    if not live:
        return
    try:
        results = evaluate_many([node for _, node in live], store, start, end, step)
    except Exception:  # one detector's failure must not hide the others
        # evaluate_many isolates EvalErrors only; anything else (a bug in a kernel)
        # is pinned on the detector that raises it by evaluating them one at a time.
        results = {}
        for name, node in live:
            try:
                results[node] = evaluate(node, store, start, end, step)
            except Exception as e:
                errors[name] = f"evaluation failed: {type(e).__name__}: {e}"
    take = rows & (times >= start) & (times <= end)
    idx = np.flatnonzero(take)
    for name, node in live:
        if name in errors:
            continue
        result = results[node]
        failure = [w for w in result.warnings if w.startswith("evaluation failed")]
        if failure:  # how evaluate_many reports an expression that raised EvalError
            errors[name] = "; ".join(failure)
            continue
        if len(result.series) > 1:
            errors[name] = (f"gives {len(result.series)} series; a detector must give one "
                            "(aggregate it, e.g. max(...))")
            continue
        if not result.series:
            continue
        s = result.series[0]
        pos = np.searchsorted(s.ts, times[idx])
        hit = pos < len(s.ts)
        hit[hit] = s.ts[pos[hit]] == times[idx][hit]
        grids[name][idx[hit]] = s.values[pos[hit]]


def _worker(name: str, root: str, exprs: Sequence[tuple[str, str]], workdir: str) -> FileScores:
    """Process-pool entry point: load one file, compile the expressions, evaluate."""
    from monitoring.dsl.compiler import compile_query

    f = load_corpus([name], Path(root))[0]
    detectors = [(n, compile_query(e)[0]) for n, e in exprs]
    return evaluate_file(f, detectors, Path(workdir))


def evaluate_files(files: Sequence[NabFile], exprs: Sequence[tuple[str, str]], root: Path,
                   jobs: int, progress: Callable[[FileScores, int, int], None]
                   ) -> dict[str, FileScores]:
    """Evaluate every file (``jobs`` processes at a time), reporting each as it finishes.

    ``exprs`` are ``(detector name, expression text)`` pairs, already known to
    compile. Largest files first, so that the pool does not end on a long one.
    """
    from monitoring.dsl.compiler import compile_query

    order = sorted(files, key=lambda f: -f.rows)
    done: dict[str, FileScores] = {}
    with tempfile.TemporaryDirectory(prefix="nab-") as workdir:
        if jobs <= 1:
            detectors = [(n, compile_query(e)[0]) for n, e in exprs]
            for f in order:
                done[f.name] = evaluate_file(f, detectors, Path(workdir))
                progress(done[f.name], len(done), len(files))
            return done
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_worker, f.name, str(root), list(exprs), workdir)
                       for f in order]
            for fut in as_completed(futures):
                result = fut.result()
                done[result.name] = result
                progress(result, len(done), len(files))
    return done

