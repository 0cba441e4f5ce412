"""``bench/nab/run`` end to end: a subprocess, real DuckDB stores, the shipped detectors.

On three small NAB files (two tune files and a held-out one) the output must
have one ``NAME standard low_fp low_fn`` line per shipped detector with scores
in NAB's range, the published scoreboard and the per-category report. On a
small synthetic corpus (``--nab``) the threshold policy is checked: a threshold
chosen on the tune files is what scores a held-out file, and ``--tune``
refuses held-out files. Bad paths give a located error and exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from bench.nab import harness
from bench.nab.corpus import load_corpus
from bench.nab.detectors import load_detectors
from bench.nab.harness import evaluate_file, sample_times_ms
from monitoring.dsl.compiler import compile_query
from tests.unit.test_nab_scorer import nab_root

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "bench" / "nab" / "run"
SMALL = ["realAdExchange/exchange-3_cpc_results.csv", "realTraffic/speed_7578.csv",
         "realAdExchange/exchange-4_cpc_results.csv"]  # the last one is held out


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUN), *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


def _scores(stdout: str) -> dict[str, list[float | None]]:
    """The ``NAME standard low_fp low_fn`` lines (not the published ones)."""
    out = {}
    for line in stdout.splitlines():
        fields = line.split("#", 1)[0].split()
        if line.startswith("#") or len(fields) != 4 or fields[0].startswith("published:"):
            continue
        out[fields[0]] = [None if x == "n/a" else float(x) for x in fields[1:]]
    return out


def _list(tmp_path: Path, names: Sequence[str]) -> Path:
    path = tmp_path / "files.txt"
    path.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    return path


def test_shipped_detectors_have_thresholds_and_an_ensemble() -> None:
    detectors = load_detectors()
    assert "ensemble" in [d.name for d in detectors]
    for d in detectors:
        assert d.thresholds is not None, f"{d.name}: thresholds not written down"


def test_run_on_small_files(tmp_path: Path) -> None:
    nab_root()
    done = _run("--files", _list(tmp_path, SMALL))
    assert done.returncode == 0, done.stderr
    scores = _scores(done.stdout)
    assert list(scores) == [d.name for d in load_detectors()]
    for name, values in scores.items():
        assert len(values) == 3
        for v in values:  # 100 is the maximum; a detector can be far below the null's 0
            assert v is not None and -10_000 < v <= 100.0, (name, values)
    assert "published:numenta 70.10 63.12 74.32" in done.stdout.splitlines()
    assert "NOT directly comparable" in done.stdout
    categories = [ln.split() for ln in done.stdout.splitlines()
                  if ln.startswith("ensemble ") and len(ln.split()) == 10]
    assert [c[1] for c in categories] == ["realAdExchange", "realTraffic", "all"]
    assert categories[-1][2:4] == ["3", str(3 + 4 + 3)]  # files, windows
    for line in done.stderr.splitlines():  # progress: one line per file
        assert line.startswith("nab: [")
    assert len(done.stderr.splitlines()) == 3


def test_bad_path_is_a_located_error(tmp_path: Path) -> None:
    nab_root()
    listing = _list(tmp_path, [SMALL[0], "realTweets/no_such_file.csv"])
    done = _run("--files", listing)
    assert done.returncode == 2
    assert f"{listing}:2: no such NAB file: 'realTweets/no_such_file.csv'" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    done = _run("--files", tmp_path / "missing.txt")
    assert done.returncode == 2 and "cannot read the file list" in done.stderr
    done = _run("--files", _list(tmp_path, SMALL), "--detectors", "zscore,nope")
    assert done.returncode == 2 and "no detector 'nope'" in done.stderr


# ------------------------------------------------------------ a synthetic corpus


def _series(path: Path, rows: int, spike_at: int, spike: float) -> None:
    lines = ["timestamp,value"]
    for i in range(rows):
        t = f"2020-01-{1 + i * 300 // 86400:02d} {i * 300 % 86400 // 3600:02d}:" \
            f"{i * 300 % 3600 // 60:02d}:00"
        lines.append(f"{t},{spike if i == spike_at else 0.0}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _window(first: int, last: int) -> list[str]:
    def stamp(i: int) -> str:
        return (f"2020-01-{1 + i * 300 // 86400:02d} {i * 300 % 86400 // 3600:02d}:"
                f"{i * 300 % 3600 // 60:02d}:00.000000")
    return [stamp(first), stamp(last)]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """Two tune files with a spike of 10 at their window's start, a held-out one with 5."""
    root = tmp_path / "nab"
    windows = {}
    for name, spike in (("t/a.csv", 10.0), ("t/b.csv", 10.0), ("h/c.csv", 5.0)):
        _series(root / "data" / name, 200, 100, spike)
        windows[name] = [_window(100, 119)]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    (root / "config" / "profiles.json").write_text(json.dumps({
        name: {"CostMatrix": {"tpWeight": 1.0, "fpWeight": fp, "fnWeight": fn, "tnWeight": 1.0}}
        for name, fp, fn in (("standard", 0.11, 1.0), ("reward_low_FP_rate", 0.22, 1.0),
                             ("reward_low_FN_rate", 0.11, 2.0))}))
    (root / "tune-files.txt").write_text("t/a.csv\nt/b.csv\n")
    return root


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "detectors.yml"
    path.write_text(body, encoding="utf-8")
    return path


def test_thresholds_come_from_the_tune_files(corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "detectors:\n  - name: raw\n    expr: value\n")
    done = _run("--nab", corpus, "--config", config, "--files", _list(tmp_path, ["h/c.csv"]))
    assert done.returncode == 0, done.stderr
    # θ = 10 was chosen on t/a and t/b (where it is perfect); the held-out spike of 5 is missed.
    assert _scores(done.stdout) == {"raw": [0.0, 0.0, 0.0]}
    assert "optimised on the tune files in this run" in done.stdout
    assert sorted(ln.split()[2].rstrip(":") for ln in done.stderr.splitlines()) == [
        "h/c.csv", "t/a.csv", "t/b.csv"]
    done = _run("--nab", corpus, "--config", config, "--files", _list(tmp_path, ["t/a.csv"]))
    assert _scores(done.stdout) == {"raw": [100.0, 100.0, 100.0]}
    # Written thresholds are applied as they are.
    config = _config(tmp_path, "detectors:\n  - name: raw\n    expr: value\n    thresholds: "
                     "{standard: 5, reward_low_FP_rate: 5, reward_low_FN_rate: .inf}\n")
    done = _run("--nab", corpus, "--config", config, "--files", _list(tmp_path, ["h/c.csv"]))
    assert _scores(done.stdout) == {"raw": [100.0, 100.0, 0.0]}
    assert len(done.stderr.splitlines()) == 1  # only the requested file was evaluated


def test_tune_mode_refuses_held_out_files(corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "detectors:\n  - name: raw\n    expr: value\n")
    done = _run("--nab", corpus, "--config", config, "--tune",
                "--files", _list(tmp_path, ["t/a.csv", "h/c.csv"]))
    assert done.returncode == 2 and "h/c.csv is a held-out file" in done.stderr
    done = _run("--nab", corpus, "--config", config, "--tune", "--jobs", "2")
    assert done.returncode == 0, done.stderr
    assert "#     thresholds: {standard: 10.0, reward_low_FP_rate: 10.0, " \
           "reward_low_FN_rate: 10.0}" in done.stdout
    # --tune on some of the tune files optimises on those only.
    done = _run("--nab", corpus, "--config", config, "--tune", "--files",
                _list(tmp_path, ["t/a.csv"]))
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_failing_detector_is_reported_not_fatal(corpus: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, "detectors:\n"
                     "  - name: two\n    expr: value or vector(1)\n"
                     "  - name: raw\n    expr: value\n")
    done = _run("--nab", corpus, "--config", config, "--files", _list(tmp_path, ["t/a.csv"]))
    assert done.returncode == 1
    assert _scores(done.stdout) == {"raw": [100.0, 100.0, 100.0]}
    assert "# not evaluated: two: " in done.stdout and "gives 2 series" in done.stdout
    bad = _config(tmp_path, "detectors:\n  - name: raw\n    expr: value +\n")
    done = _run("--nab", corpus, "--config", bad, "--files", _list(tmp_path, ["t/a.csv"]))
    assert done.returncode == 2 and f"{bad}:2: detector 'raw'" in done.stderr
    assert "Traceback" not in done.stderr


# ------------------------------------------------------------ rows to samples and back


@pytest.mark.parametrize("name", ["realKnownCause/ec2_request_latency_system_failure.csv",
                                  "realKnownCause/machine_temperature_system_failure.csv",
                                  "realTraffic/occupancy_t4013.csv"])
def test_every_row_is_scored_from_its_own_sample(name: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Repeated and backward timestamps: each row is still a sample, scored causally.

    The grid is evaluated in pieces of at most 997 steps here (100,000 normally):
    the pieces' edges must not change any score.
    """
    monkeypatch.setattr(harness, "MAX_STEPS", 997)
    f = load_corpus([name], nab_root())[0]
    exprs = {"value": "value", "count": "count_over_time(value[1h])",
             "avg": "avg_over_time(value[1h])"}
    result = evaluate_file(f, [(k, compile_query(e)[0]) for k, e in exprs.items()], tmp_path)
    assert result.errors == {} and result.moved_rows > 0
    assert np.array_equal(result.scores["value"], f.values)
    times = sample_times_ms(f.timestamps)
    assert np.all(np.diff(times) > 0)
    lo = np.searchsorted(times, times - 3_600_000, side="right")  # windows (t - 1h, t]
    count = np.arange(f.rows) - lo + 1
    assert np.array_equal(result.scores["count"], count.astype(float))
    sums = np.concatenate(([0.0], np.cumsum(f.values)))
    avg = (sums[np.arange(f.rows) + 1] - sums[lo]) / count
    assert np.allclose(result.scores["avg"], avg, rtol=1e-9, atol=0)
