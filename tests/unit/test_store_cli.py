"""``monitoring import`` and ``monitoring export`` through the main command."""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest

from monitoring.cli import main
from monitoring.engine.model import STALE_NAN, Labels, is_stale, labels_of
from monitoring.engine.store import Store

T0 = 1_767_225_600_000


def lbl(**pairs: str) -> Labels:
    return labels_of({("__name__" if k == "name" else k): v for k, v in pairs.items()})


def contents(db: Path) -> list[tuple[Labels, list[tuple[int, str]]]]:
    with Store(db, read_only=True) as store:
        out = []
        for s in store.select([], -(2**63), 2**63 - 1):
            points = [(t, "stale" if is_stale(v) else repr(v))
                      for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True)]
            out.append((s.labels, points))
        return out


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    a = tmp_path / "a.prom"
    a.write_text('up{job="a"} 1 1767225600000\nup{job="b"} 0 1767225600000\n')
    b = tmp_path / "b.om"
    b.write_text('up{job="a"} 2 1767225615\n# EOF\n')
    return [a, b]


def test_import_then_export(tmp_path: Path, files: list[Path],
                            capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert main(["import", *map(str, files), "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("imported 2 series, 3 samples from 2 files in ")
    assert err == ""
    assert main(["export", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert out == ('up{job="a"} 1.0 1767225600.0\nup{job="a"} 2.0 1767225615.0\n'
                   'up{job="b"} 0.0 1767225600.0\n# EOF\n')
    assert err.startswith("exported 2 series, 3 samples in ")


def test_export_options(tmp_path: Path, files: list[Path],
                        capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert main(["import", *map(str, files), "--db", str(db)]) == 0
    out_file = tmp_path / "out.om"
    code = main(["export", "--db", str(db), "-o", str(out_file), "--match", 'up{job="a"}',
                 "--from", "2026-01-01T00:00:10Z", "--to", "1767225615"])
    assert code == 0
    assert out_file.read_text() == 'up{job="a"} 2.0 1767225615.0\n# EOF\n'
    capsys.readouterr()
    code = main(["export", "--db", str(db), "--match", 'up{job="b"}', "--match", "nothing"])
    assert code == 0
    assert capsys.readouterr().out == 'up{job="b"} 0.0 1767225600.0\n# EOF\n'


def test_export_reports_what_it_left_out(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    with Store(db) as store:
        store.append([(lbl(name="m"), 1000, 1.0), (lbl(name="m"), 2000, math.nan),
                      (lbl(name="m"), 3000, 3.0), (lbl(name="m"), 4000, STALE_NAN),
                      (lbl(job="x"), 1000, 1.0)])
    assert main(["export", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert out == "m 1.0 1.0\nm NaN 2.0\nm 3.0 3.0\n# EOF\n"
    assert "(1 staleness markers left out; 1 series without a valid metric name left out)" in err


def test_failed_import_changes_nothing_and_exits_1(tmp_path: Path, files: list[Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "s.duckdb"
    assert main(["import", str(files[0]), "--db", str(db)]) == 0
    before = contents(db)
    bad = tmp_path / "c.csv"
    bad.write_text("timestamp,metric,value\n1767225600,up,1\n1767225600,up,high\n")
    capsys.readouterr()
    assert main(["import", *map(str, files), str(bad), "--db", str(db)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{bad}:3:15: error: invalid value 'high'",
        "import failed: 1 row bad; nothing was imported (use --skip-bad to import the good "
        "rows)",
    ]
    assert contents(db) == before
    assert main(["import", *map(str, files), str(bad), "--db", str(db), "--skip-bad"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("imported 3 series, 4 samples from 3 files, skipped 1 row in ")
    assert contents(db) != before


def test_import_default_time_and_format(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    scrape = tmp_path / "scrape.txt"
    scrape.write_text("# TYPE up gauge\nup 1\n")
    db = tmp_path / "s.duckdb"
    assert main(["import", str(scrape), "--db", str(db)]) == 1
    assert "sample has no timestamp" in capsys.readouterr().err
    assert main(["import", str(scrape), "--db", str(db), "--default-time",
                 "2026-01-01T00:00:00Z"]) == 0
    assert contents(db) == [(lbl(name="up"), [(T0, "1.0")])]
    om = tmp_path / "data.txt"
    om.write_text("up 2 1767225601\n")
    # Forced OpenMetrics: seconds, and '# EOF' is required.
    assert main(["import", str(om), "--db", str(db), "--format", "openmetrics"]) == 1
    assert "OpenMetrics data must end with '# EOF'" in capsys.readouterr().err


def test_import_retention(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "d.prom"
    data.write_text("".join(f"m {k} {T0 + k * 3600_000}\n" for k in range(48)))
    db = tmp_path / "s.duckdb"
    assert main(["import", str(data), "--db", str(db), "--retention", "1d"]) == 0
    out = capsys.readouterr().out
    assert "retention: deleted 23 samples and 0 series older than 1d" in out
    ((_, points),) = contents(db)
    assert [t for t, _ in points] == [T0 + k * 3600_000 for k in range(23, 48)]


@pytest.mark.parametrize(("args", "message"), [
    (["import", "missing.prom", "--db", "{tmp}/s.duckdb"], "no such file: missing.prom"),
    (["import", "{tmp}/a.prom", "--db", "{tmp}/nodir/s.duckdb"], "no such directory"),
    (["import", "{tmp}/a.prom", "--db", "{tmp}/s.duckdb", "--default-time", "soon"],
     "--default-time: invalid time 'soon'"),
    (["import", "{tmp}/a.prom", "--db", "{tmp}/s.duckdb", "--default-time", "1e30"],
     "--default-time: '1e30' is out of range"),
    (["import", "{tmp}/a.prom", "--db", "{tmp}/s.duckdb", "--retention", "forever"],
     "--retention: invalid duration 'forever'"),
    (["import", "{tmp}/a.prom", "--db", "{tmp}/a.prom"], "cannot open the store"),
    (["export", "--db", "{tmp}/none.duckdb"], "none.duckdb: no such store"),
    (["export", "--db", "{tmp}/s.duckdb", "--match", "up{"], "invalid --match selector"),
    (["export", "--db", "{tmp}/s.duckdb", "--match", "rate(up[5m])"],
     "expected a series selector"),
    (["export", "--db", "{tmp}/s.duckdb", "--match", 'up{a=~"("}'],
     "invalid regular expression '('"),
    (["export", "--db", "{tmp}/s.duckdb", "--from", "yesterday"], "--from: invalid time"),
    (["export", "--db", "{tmp}/s.duckdb", "-o", "{tmp}/nodir/out.om"], "No such file"),
])
def test_usage_errors_exit_2_without_traceback(tmp_path: Path, files: list[Path],
                                               capsys: pytest.CaptureFixture[str],
                                               args: list[str], message: str) -> None:
    Store(tmp_path / "s.duckdb").close()
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("monitoring: error: ") and message in err, err
    assert "Traceback" not in err


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["import", "--help"])
    out = capsys.readouterr().out
    assert "--skip-bad" in out and "--db" in out and "--retention" in out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "--match" in out and "--from" in out and "--output" in out


class Terminal(io.StringIO):
    """Standard error as a terminal would be."""

    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_only(tmp_path: Path, files: list[Path],
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    size = sum(f.stat().st_size for f in files)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["import", *map(str, files), "--db", str(tmp_path / "a.duckdb")]) == 0
    shown = terminal.getvalue()
    assert "importing" in shown and f"{size}/{size} bytes" in shown
    monkeypatch.undo()
    assert main(["import", *map(str, files), "--db", str(tmp_path / "b.duckdb")]) == 0
    assert capsys.readouterr().err == ""
