from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from monitoring.dsl import fmt
from monitoring.dsl.fmt import format_paths, format_text, unified_diff

MESSY = """\
group "api" every 60s {   # the api
  alert Down { when   up{job='api'}==0
     for 300s   severity   critical }
}
"""
CANONICAL = """\
group api every 1m { # the api
  alert Down {
    when up{job="api"} == 0
    for 5m
    severity critical
  }
}
"""
BROKEN = "group g {\n  alert A { when up == }\n}\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))
    return path


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


def test_format_text() -> None:
    formatted, diagnostics = format_text(MESSY, "<stdin>")
    assert formatted == CANONICAL
    assert diagnostics == []
    assert format_text(CANONICAL)[0] == CANONICAL


def test_format_text_with_syntax_error() -> None:
    formatted, diagnostics = format_text(BROKEN, "<stdin>")
    assert formatted is None
    assert [d.code for d in diagnostics] == ["syntax/unexpected-token"]
    assert diagnostics[0].file == "<stdin>"


def test_rewrites_in_place_and_keeps_the_mode(tmp_path: Path) -> None:
    path = write(tmp_path / "a.rules", MESSY)
    path.chmod(0o640)
    report = format_paths([path])
    assert report.changed == [path]
    assert report.diagnostics == []
    assert report.exit_code == 0
    assert read(path) == CANONICAL
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["a.rules"]  # no temporary file left
    again = format_paths([path])
    assert again.changed == []
    assert again.files == [path]


def test_check_writes_nothing_and_fails(tmp_path: Path) -> None:
    messy = write(tmp_path / "messy.rules", MESSY)
    clean = write(tmp_path / "clean.rules", CANONICAL)
    before = messy.stat().st_mtime_ns
    report = format_paths([tmp_path], check=True)
    assert report.changed == [messy]
    assert report.files == [clean, messy]
    assert report.diff == ""
    assert report.exit_code == 1
    assert read(messy) == MESSY
    assert messy.stat().st_mtime_ns == before
    assert format_paths([clean], check=True).exit_code == 0


def test_diff_writes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path / "a.rules", MESSY)
    report = format_paths([path], diff=True)
    assert read(path) == MESSY
    assert report.changed == [path]
    assert report.diff.startswith(f"--- {path}\n+++ {path}\n@@ ")
    assert '-  alert Down { when   up{job=\'api\'}==0\n' in report.diff
    assert '+    when up{job="api"} == 0\n' in report.diff
    assert format_paths([write(tmp_path / "b.rules", CANONICAL)], diff=True).diff == ""


def test_diff_applies_with_patch(tmp_path: Path) -> None:
    path = write(tmp_path / "a.rules", MESSY.rstrip("\n"))  # no final newline either
    report = format_paths([path], diff=True)
    assert "\\ No newline at end of file" in report.diff
    patch = subprocess.run(["patch", "--version"], capture_output=True, check=False)
    if patch.returncode != 0:  # pragma: no cover - patch is in every CI image we use
        pytest.skip("patch(1) is not installed")
    subprocess.run(["patch", "-s", str(path)], input=report.diff.encode(), check=True)
    assert read(path) == CANONICAL


def test_syntax_errors_leave_the_file_untouched(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.rules", BROKEN)
    good = write(tmp_path / "good.rules", MESSY)
    report = format_paths([tmp_path])
    assert read(bad) == BROKEN
    assert read(good) == CANONICAL
    assert report.failed == [bad]
    assert report.changed == [good]
    assert [d.code for d in report.diagnostics] == ["syntax/unexpected-token"]
    assert report.diagnostics[0].file == str(bad)
    assert report.exit_code == 1


def test_folders_are_searched_recursively_for_rules_files(tmp_path: Path) -> None:
    nested = write(tmp_path / "x" / "y" / "deep.rules", MESSY)
    other = write(tmp_path / "x" / "notes.txt", MESSY)
    yaml = write(tmp_path / "rules.yaml", "groups: []\n")
    report = format_paths([tmp_path, nested])  # named twice: formatted once
    assert report.files == [nested]
    assert read(nested) == CANONICAL
    assert read(other) == MESSY
    assert read(yaml) == "groups: []\n"


def test_a_named_file_is_formatted_whatever_its_name(tmp_path: Path) -> None:
    path = write(tmp_path / "alerts.txt", MESSY)
    assert format_paths([path]).changed == [path]
    assert read(path) == CANONICAL


def test_missing_path(tmp_path: Path) -> None:
    report = format_paths([tmp_path / "nope.rules"])
    assert [d.code for d in report.diagnostics] == ["fmt/no-such-file"]
    assert report.exit_code == 1


def test_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.rules"
    data = 'group g { alert A { when up{x="caf\xe9"} } }\n'.encode("latin-1")
    path.write_bytes(data)
    report = format_paths([path])
    assert [d.code for d in report.diagnostics] == ["fmt/not-utf8"]
    assert path.read_bytes() == data


def test_symlink_target_is_rewritten(tmp_path: Path) -> None:
    real = write(tmp_path / "real" / "a.rules", MESSY)
    link = tmp_path / "link.rules"
    link.symlink_to(real)
    format_paths([link])
    assert link.is_symlink()
    assert read(real) == CANONICAL


def test_failed_write_leaves_the_file_and_no_temporary(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "a.rules", MESSY)

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    report = format_paths([path])
    assert [d.code for d in report.diagnostics] == ["fmt/write-failed"]
    assert "No space left on device" in report.diagnostics[0].message
    assert read(path) == MESSY
    assert [p.name for p in tmp_path.iterdir()] == ["a.rules"]


def test_output_that_does_not_read_back_is_refused(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard against formatter bugs: wrong output is reported, never written.
    path = write(tmp_path / "a.rules", MESSY)
    monkeypatch.setattr(fmt, "format_rule_file", lambda result: CANONICAL.replace("0", "1"))
    report = format_paths([path])
    assert [d.code for d in report.diagnostics] == ["fmt/internal-error"]
    assert read(path) == MESSY


def test_function_name_no_text_can_spell_is_reported() -> None:
    # `bool(x)` parses as a call where `bool` cannot be a modifier, but it is no
    # function and the printer refuses to spell it.
    formatted, diagnostics = format_text("group g { alert A { when bool(up) } }\n")
    assert formatted is None
    assert [d.code for d in diagnostics] == ["fmt/cannot-format"]


def test_unified_diff_without_changes_is_empty() -> None:
    assert unified_diff("a\n", "a\n", "x") == ""
    assert unified_diff("a\u2028b\n", "a\u2028c\n", "x").count("\n") == 5
