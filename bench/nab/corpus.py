"""NAB's files as arrays: rows, timestamps, values, anomaly windows as row positions.

NAB scores by **row position** (its README, "Things to watch for"): a window is a
pair of inclusive row indices, the probationary period is a number of leading
rows. Timestamps are only needed to find the rows a window's edges name, and by
the harness to put the rows into a time-series store.

The corpus is read in place from ``../shared/peer/nab`` relative to the
checkout (``NAB_ROOT`` in the environment overrides it); it is never copied into
the project.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "NabError",
    "NabFile",
    "default_root",
    "load_corpus",
    "load_file",
    "probation_rows",
    "read_list",
    "tune_list",
]

PROBATION_FRACTION = 0.15
PROBATION_CAP = 750
"""``P = min(floor(0.15 · rows), 750)`` rows at the start of a file are not scored."""

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


class NabError(Exception):
    """Bad input (a missing or malformed NAB file, a bad list): the message names where."""


def default_root() -> Path:
    """``$NAB_ROOT``, else ``shared/peer/nab`` beside the checkout this file is in."""
    env = os.environ.get("NAB_ROOT")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2].parent / "shared" / "peer" / "nab"


@dataclass(frozen=True, slots=True, eq=False)
class NabFile:
    """One NAB series with its ground truth.

    ``name`` is the path relative to ``data/`` (the key of the label JSON, e.g.
    ``realKnownCause/nyc_taxi.csv``); ``timestamps`` are the CSV's naive times as
    Unix seconds (read as UTC), in row order, so not always increasing;
    ``windows`` is a ``[k × 2]`` array of inclusive ``(first row, last row)``
    pairs in time order.
    """

    name: str
    path: Path
    timestamps: Int64Array
    values: FloatArray
    windows: Int64Array
    probation: int

    @property
    def category(self) -> str:
        """The folder under ``data/``: ``realTweets``, ``artificialNoAnomaly``..."""
        return self.name.split("/", 1)[0]

    @property
    def rows(self) -> int:
        """Number of data rows."""
        return len(self.values)


def probation_rows(rows: int) -> int:
    """NAB's probationary period of a file with ``rows`` rows."""
    return min(int(PROBATION_FRACTION * rows), PROBATION_CAP)


def tune_list(root: Path | None = None) -> list[str]:
    """The 35 files thresholds and parameters may be tuned on (``tune-files.txt``)."""
    return read_list((root or default_root()) / "tune-files.txt")


def read_list(path: Path) -> list[str]:
    """File names (relative to ``data/``) one a line; blank lines and ``#`` comments skipped.

    Names are not checked here; :func:`load_corpus` does that, naming the line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise NabError(f"{path}: cannot read the file list: {e.strerror or e}") from None
    names = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if entry:
            names.append(entry)
    return names


@cache
def _windows_json(root: Path) -> dict[str, list[list[str]]]:
    path = root / "labels" / "combined_windows.json"
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise NabError(f"{path}: cannot read NAB's labels: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise NabError(f"{path}:{e.lineno}:{e.colno}: {e.msg}") from None
    if not isinstance(data, dict):
        raise NabError(f"{path}: expected an object of file -> windows")
    return data


def load_corpus(files: Sequence[str] | None = None, root: Path | None = None,
                origin: str | None = None) -> list[NabFile]:
    """Load the named files (default: all 58 files of the label JSON), in the given order.

    ``origin`` names where the list came from (a list file), so that an unknown
    name is reported as ``origin:line``.
    """
    root = root or default_root()
    labels = _windows_json(root)
    names = sorted(labels) if files is None else list(files)
    seen: set[str] = set()
    out = []
    for lineno, name in enumerate(names, 1):
        where = f"{origin}:{lineno}: " if origin else ""
        if name in seen:
            raise NabError(f"{where}{name} is listed twice")
        seen.add(name)
        path = root / "data" / name
        if name not in labels or not path.is_file():
            raise NabError(f"{where}no such NAB file: {name!r} (names are paths relative to "
                           f"{root / 'data'}, e.g. realKnownCause/nyc_taxi.csv)")
        out.append(load_file(root, name, labels[name]))
    return out


def load_file(root: Path, name: str, windows: Iterable[Sequence[str]]) -> NabFile:
    """One data CSV and its windows (timestamp pairs) mapped to row positions."""
    path = root / "data" / name
    stamps, values = read_csv(path)
    return NabFile(name, path, stamps, values, window_rows(stamps, windows, name),
                   probation_rows(len(values)))


def read_csv(path: Path) -> tuple[Int64Array, FloatArray]:
    """``timestamp,value`` rows as (Unix seconds, values); errors name ``file:line``."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise NabError(f"{path}: {e.strerror or e}") from None
    if not lines or lines[0].strip() != "timestamp,value":
        raise NabError(f"{path}:1: expected the header 'timestamp,value'")
    stamps: list[str] = []
    values: list[float] = []
    for lineno, line in enumerate(lines[1:], 2):
        stamp, sep, value = line.partition(",")
        try:
            if not sep:
                raise ValueError("expected 'timestamp,value'")
            values.append(float(value))
        except ValueError:
            raise NabError(f"{path}:{lineno}: bad value {value!r}") from None
        stamps.append(stamp.strip())
    return parse_times(stamps, path), np.asarray(values, dtype=np.float64)


def parse_times(stamps: Sequence[str], where: Path | str) -> Int64Array:
    """Naive ``YYYY-MM-DD HH:MM:SS[.ffffff]`` strings as Unix seconds (read as UTC)."""
    try:
        times = np.array([s.split(".", 1)[0] for s in stamps], dtype="datetime64[s]")
    except ValueError as e:
        raise NabError(f"{where}: bad timestamp: {e}") from None
    return times.astype(np.int64)


def window_rows(stamps: Int64Array, windows: Iterable[Sequence[str]], name: str) -> Int64Array:
    """Windows as inclusive row pairs: the first row at the start time, the last at the end.

    Both edges are exact row timestamps in NAB. Where a timestamp repeats (three
    files have a run of 12 equal timestamps), the widest reading is taken; no
    shipped window touches such a run.
    """
    pairs = []
    for window in windows:
        start, end = parse_times([window[0], window[1]], name)
        first = np.flatnonzero(stamps == start)
        last = np.flatnonzero(stamps == end)
        if not len(first) or not len(last) or first[0] > last[-1]:
            raise NabError(f"labels of {name}: window {list(window)} does not match the "
                           "file's rows")
        pairs.append((int(first[0]), int(last[-1])))
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)
