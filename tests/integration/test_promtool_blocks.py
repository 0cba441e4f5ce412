"""Our OpenMetrics against the real ``promtool``: exports backfill, parsing agrees.

* A generated store is exported with ``monitoring export``, turned into TSDB
  blocks with ``promtool tsdb create-blocks-from openmetrics``, and read back
  with ``promtool tsdb list`` and ``promtool tsdb dump``: every series and every
  sample (times to the millisecond, values bit for bit, NaN included) must be
  what the store holds, staleness markers aside.
* The same export imported by ``monitoring import`` gives the same data.
* Hand-written OpenMetrics files, good and bad, are given to both promtool and
  our importer: both must accept or both reject, and accepted files must yield
  the same samples.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from monitoring.cli import main
from monitoring.engine.ingest import IngestError, parse_file
from monitoring.engine.model import STALE_NAN, Labels, Series, is_stale, labels_of
from monitoring.engine.store import Store
from tests.support import datagen
from tests.support.prometheus import create_blocks, peer_binary

DURATION_MS = 3 * 3600_000
Point = tuple[int, str]


@pytest.fixture(scope="module")
def promtool() -> str:
    return peer_binary("promtool")


def value_key(v: float) -> str:
    """Values compared exactly: NaN as one spelling, -0.0 kept apart from 0.0."""
    return "NaN" if math.isnan(v) else float.hex(v)


def store_contents(db: Path) -> dict[Labels, list[Point]]:
    with Store(db, read_only=True) as store:
        return {s.labels: [(t, value_key(v)) for t, v in zip(s.ts.tolist(), s.values.tolist(),
                                                             strict=True) if not is_stale(v)]
                for s in store.select([], -(2**63), 2**63 - 1)}


# ---------------------------------------------------------------- promtool output

_GO_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)')
_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
           "\\": "\\", '"': '"', "'": "'"}


def go_unquote(body: str) -> str:
    """The inside of a Go ``strconv.Quote`` string (how promtool prints label values)."""
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "xuU":
            return chr(int(code[1:], 16))
        if code[0].isdigit():
            return chr(int(code, 8))
        return _SIMPLE[code]
    return _GO_ESCAPE.sub(one, body)


_DUMP_LINE = re.compile(r"\{(.*)\} (\S+) (-?\d+)\Z")
_DUMP_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:, |\Z)')


def promtool_dump(promtool: str, storage: Path) -> dict[Labels, list[Point]]:
    """Every sample in a TSDB folder, as ``promtool tsdb dump`` prints it."""
    (storage / "wal").mkdir(exist_ok=True)  # dump opens the head too
    out = subprocess.run([promtool, "tsdb", "dump", str(storage)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    data: dict[Labels, list[Point]] = {}
    for line in out.splitlines():
        m = _DUMP_LINE.match(line)
        assert m is not None, line
        pairs = {}
        pos = 0
        while pos < len(m.group(1)):
            lm = _DUMP_LABEL.match(m.group(1), pos)
            assert lm is not None, line
            pairs[lm.group(1)] = go_unquote(lm.group(2))
            pos = lm.end()
        data.setdefault(labels_of(pairs), []).append((int(m.group(3)),
                                                      value_key(float(m.group(2)))))
    return {k: sorted(v) for k, v in data.items()}


def promtool_list(promtool: str, storage: Path) -> tuple[int, int]:
    """(blocks, samples) from ``promtool tsdb list``."""
    out = subprocess.run([promtool, "tsdb", "list", str(storage)], capture_output=True,
                         text=True, timeout=300, check=True).stdout.splitlines()
    header = out[0].split("  ")
    header = [h.strip() for h in header if h.strip()]
    column = header.index("NUM SAMPLES")
    rows = [line.split() for line in out[1:] if line.strip()]
    # Columns after DURATION are single tokens; count from the right.
    from_right = len(header) - column
    return len(rows), sum(int(r[-from_right]) for r in rows)


def run_promtool_backfill(promtool: str, om: Path, storage: Path
                          ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om),
                           str(storage)], capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- the exported store


AWKWARD = ['say "hi"', "back\\slash", "new\nline", "tab\there", "ünï☃ 𝄞", "\\n literally",
           "{}=,", "#", " # {x} 1"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, promtool: str
             ) -> Iterator[tuple[Path, Path, Path]]:
    """(store, OpenMetrics export, TSDB folder) of a generated data set."""
    root = tmp_path_factory.mktemp("blocks")
    db = root / "history.duckdb"
    rng = np.random.default_rng(1)
    with Store(db) as store:
        # From time 0: small times are where float seconds lose milliseconds.
        store.append_series(datagen.generate(30, 0, DURATION_MS))
        for i, value in enumerate(AWKWARD):
            ts = np.sort(rng.choice(np.arange(0, DURATION_MS), 40, replace=False))
            store.append_series(Series(labels_of({"__name__": "awkward", "v": value,
                                                  "i": str(i)}), ts, rng.normal(size=40)))
        special = [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308,
                   0.1, 1 / 3, -2.5e-300, STALE_NAN, 7.0]
        store.append([(labels_of({"__name__": "special_total"}), 1001 + 1000 * k, v)
                      for k, v in enumerate(special)])
    om = root / "history.om"
    assert main(["export", "--db", str(db), "-o", str(om)]) == 0
    storage = root / "tsdb"
    create_blocks(om, storage)
    yield db, om, storage


def test_promtool_backfills_every_series_and_sample(exported: tuple[Path, Path, Path],
                                                    promtool: str) -> None:
    db, _om, storage = exported
    want = store_contents(db)
    n_samples = sum(len(points) for points in want.values())
    assert len(want) == 30 + len(AWKWARD) + 1
    blocks, listed = promtool_list(promtool, storage)
    assert blocks >= 2  # three hours of data: more than one two-hour block
    assert listed == n_samples
    assert promtool_dump(promtool, storage) == want


def test_our_import_of_the_export_is_identical(exported: tuple[Path, Path, Path],
                                               tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db, om, _storage = exported
    again = tmp_path / "again.duckdb"
    assert main(["import", str(om), "--db", str(again)]) == 0
    capsys.readouterr()
    assert store_contents(again) == store_contents(db)
    # And exporting the copy gives the same text.
    assert main(["export", "--db", str(again), "-o", str(tmp_path / "again.om")]) == 0
    assert (tmp_path / "again.om").read_bytes() == om.read_bytes()


# ---------------------------------------------------------------- parsing agreement


CASES = {
    "plain": "g 1 1\n# EOF\n",
    "no final newline": "g 1 1\n# EOF",
    "metadata": ("# HELP g_seconds Help with \\\\ and \\n.\n# TYPE g_seconds gauge\n"
                 "# UNIT g_seconds seconds\ng_seconds 1 1\n# EOF\n"),
    "help without text": "# HELP g \ng 1 1\n# EOF\n",
    "escapes": 'g{a="x\\"y\\\\z\\nw",b="\\q",c="\\t"} 1 1\n# EOF\n',
    "empty labels": 'g{} 1 1\ng{a=""} 2 2\n# EOF\n',
    "values": ("g NaN 1\ng +Inf 2\ng -Inf 3\ng inf 4\ng Infinity 5\ng -0 6\ng .5 7\n"
               "g 1e-400 8\ng 1.7976931348623157e308 9\n# EOF\n"),
    # In time order: promtool drops samples older than the newest of their series.
    "times": ("g 4 0.001\ng 1 1.5e3\ng 2 1767225600.0005\ng 3 1767225600.999\n"
              "g 5 1767225601\n# EOF\n"),
    "exemplars": ('# TYPE c counter\nc_total 1 1 # {trace="a b"} 0.5 0.9\n'
                  'h_bucket{le="1"} 2 1 # {} 1\n# EOF\n'),
    "interleaved series": "a 1 1\nb 1 1\na 2 2\n# EOF\n",
    "colon name": "a:b:c 1 1\n# EOF\n",
    "unicode value": 'g{a="é☃ 𝄞"} 1 1\n# EOF\n',
    "missing eof": "g 1 1\n",
    "blank line": "g 1 1\n\n# EOF\n",
    "after eof": "g 1 1\n# EOF\ng 2 2\n",
    "newline after eof": "g 1 1\n# EOF\n\n",
    "comment": "# hello\ng 1 1\n# EOF\n",
    "two spaces": "g  1 1\n# EOF\n",
    "tab": "g\t1 1\n# EOF\n",
    "trailing space": "g 1 1 \n# EOF\n",
    "crlf": "g 1 1\r\n# EOF\r\n",
    "trailing comma": 'g{a="1",} 1 1\n# EOF\n',
    "space after comma": 'g{a="1", b="2"} 1 1\n# EOF\n',
    "space around equals": 'g{a = "1"} 1 1\n# EOF\n',
    "space before brace": 'g {a="1"} 1 1\n# EOF\n',
    "no timestamp": "g 1\n# EOF\n",
    "nan timestamp": "g 1 NaN\n# EOF\n",
    "underscore value": "g 1_0 1\n# EOF\n",
    "hex value": "g 0x10 1\n# EOF\n",
    "signed nan": "g +NaN 1\n# EOF\n",
    "overflow": "g 1e400 1\n# EOF\n",
    "bad type": "# TYPE g foo\ng 1 1\n# EOF\n",
    "untyped": "# TYPE g untyped\ng 1 1\n# EOF\n",
    "type without text": "# TYPE g\ng 1 1\n# EOF\n",
    "unit not a suffix": "# UNIT g seconds\ng 1 1\n# EOF\n",
    "duplicate label": 'g{a="1",a="2"} 1 1\n# EOF\n',
    "name label": 'g{__name__="x"} 1 1\n# EOF\n',
    "label starting with digit": 'g{1a="x"} 1 1\n# EOF\n',
    "unterminated value": 'g{a="1} 1 1\n# EOF\n',
    "exemplar on gauge": 'g 1 1 # {a="b"} 1\n# EOF\n',
    "exemplar without value": 'c_total 1 1 # {a="b"}\n# EOF\n',
    "exemplar without space": 'c_total 1 1 #{a="b"} 1\n# EOF\n',
    "extra field": "g 1 1 2\n# EOF\n",
    "bad exemplar value": 'c_total 1 1 # {a="b"} x\n# EOF\n',
}


def our_parse(path: Path) -> tuple[dict[Labels, list[Point]], list[IngestError]]:
    data: dict[Labels, dict[int, str]] = {}
    errors = []
    for item in parse_file(path, "openmetrics"):
        if isinstance(item, IngestError):
            errors.append(item)
        else:
            labels, t, v = item
            data.setdefault(labels, {}).setdefault(t, value_key(v))  # TSDB keeps the first
    return {k: sorted(v.items()) for k, v in data.items()}, errors


@pytest.mark.parametrize("name", list(CASES))
def test_openmetrics_parsing_agrees_with_promtool(name: str, promtool: str,
                                                  tmp_path: Path) -> None:
    om = tmp_path / "case.om"
    om.write_bytes(CASES[name].encode("utf-8"))
    storage = tmp_path / "tsdb"
    result = run_promtool_backfill(promtool, om, storage)
    ours, errors = our_parse(om)
    if result.returncode != 0:
        assert errors, f"promtool rejects {name!r} ({result.stderr.strip()}), we accept it"
        return
    assert not errors, f"promtool accepts {name!r}, we reject it: {errors}"
    assert promtool_dump(promtool, storage) == ours
