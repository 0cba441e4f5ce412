"""The ``fmt`` job: rewrite ``.rules`` files in canonical form, or report which would change.

``format_paths`` formats files in place (folders are searched recursively for
``*.rules``); with ``check`` or ``diff`` it writes nothing and reports what
would change. A file with syntax errors is never rewritten: formatting works
from the AST, and the parser drops what it cannot read. Writes are atomic (a
temporary file in the same folder, then ``os.replace``) and keep the file's
permissions, so an interrupted run never leaves a half-written rule file.

Before anything is written, the formatted text is parsed again and compared
with the original AST and comments: a formatter bug is reported as an error
instead of silently changing what a rule means.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.parser import ParseResult, parse_rule_file
from monitoring.dsl.printer import format_rule_file
from monitoring.dsl.source import SourceFile, Span

RULES_SUFFIX = ".rules"


@dataclass(slots=True)
class FmtReport:
    """What a ``fmt`` run did.

    ``changed`` lists the files that were rewritten (or, with ``check`` or
    ``diff``, would be); ``failed`` the files left alone because they could not
    be read or parsed, whose findings are in ``diagnostics``; ``diff`` is the
    unified diff of every change when one was asked for.
    """

    files: list[Path] = field(default_factory=list)
    changed: list[Path] = field(default_factory=list)
    failed: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    diff: str = ""
    check: bool = False

    @property
    def exit_code(self) -> int:
        """1 on any problem, and with ``check`` also when a file would change; else 0."""
        if self.diagnostics or (self.check and self.changed):
            return 1
        return 0


def format_text(text: str, name: str = "<stdin>") -> tuple[str | None, list[Diagnostic]]:
    """Format the text of one rule file: the canonical text (``None`` on errors) and findings."""
    source = SourceFile(name, text)
    result = parse_rule_file(source)
    if not result.ok:
        return None, list(result.diagnostics)
    try:
        formatted = format_rule_file(result)
    except ValueError as e:  # a name the parser took but no source text can spell
        return None, [*result.diagnostics, Diagnostic(
            "fmt/cannot-format", Severity.ERROR, f"cannot format this file: {e}",
            Span(source, 0, 0))]
    problem = _verify(result, formatted, source)
    if problem is not None:
        return None, [*result.diagnostics, problem]
    return formatted, list(result.diagnostics)


def _verify(original: ParseResult, formatted: str, source: SourceFile) -> Diagnostic | None:
    """Refuse output that does not read back to the same rules and comments."""
    again = parse_rule_file(SourceFile(source.name, formatted))
    before = [c.text.rstrip() for c in original.comments]
    after = [c.text.rstrip() for c in again.comments]
    if again.ok and again.node == original.node and sorted(before) == sorted(after):
        return None
    return Diagnostic("fmt/internal-error", Severity.ERROR,
                      "the formatted text does not read back to the same rules; "
                      "the file was left unchanged (please report this)",
                      Span(source, 0, 0))


def format_paths(paths: Sequence[str | Path], check: bool = False, diff: bool = False
                 ) -> FmtReport:
    """Format every ``.rules`` file under ``paths``.

    Without ``check`` and ``diff`` changed files are rewritten in place; with
    either nothing is written, ``check`` only reports, ``diff`` also collects a
    unified diff.
    """
    report = FmtReport(check=check)
    diffs: list[str] = []
    for path in _rule_files(paths, report):
        report.files.append(path)
        original = _read(path, report)
        if original is None:
            continue
        formatted, diagnostics = format_text(original, str(path))
        if formatted is None:
            report.failed.append(path)
            report.diagnostics.extend(diagnostics)
            continue
        if formatted == original:
            continue
        report.changed.append(path)
        if diff:
            diffs.append(unified_diff(original, formatted, str(path)))
        if not (check or diff):
            _write(path, formatted, report)
    report.diff = "".join(diffs)
    return report


def _rule_files(paths: Iterable[str | Path], report: FmtReport) -> list[Path]:
    """Named files as they are, folders searched for ``*.rules``; each file once, in order."""
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*" + RULES_SUFFIX) if p.is_file())
        elif path.is_file():
            found = [path]
        else:
            report.diagnostics.append(Diagnostic(
                "fmt/no-such-file", Severity.ERROR, f"no such file or directory: {path}", None,
                path=str(path)))
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def _read(path: Path, report: FmtReport) -> str | None:
    """The file as text; a file that is not UTF-8 is refused rather than re-encoded."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        message = f"file is not valid UTF-8 (byte {e.start}); it was left unchanged"
        code = "fmt/not-utf8"
    except OSError as e:
        message = f"cannot read file: {e.strerror or e}"
        code = "fmt/unreadable"
    report.failed.append(path)
    report.diagnostics.append(Diagnostic(code, Severity.ERROR, message, None, path=str(path)))
    return None


def _write(path: Path, text: str, report: FmtReport) -> None:
    """Replace the file atomically, keeping its permissions (and any symlink to it)."""
    try:
        write_atomic(path, text)
    except OSError as e:
        report.failed.append(path)
        report.diagnostics.append(Diagnostic(
            "fmt/write-failed", Severity.ERROR, f"cannot write file: {e.strerror or e}", None,
            path=str(path)))


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    Readers see the old file or the new one, never a mix. The target of a
    symbolic link is replaced, not the link.
    """
    target = Path(os.path.realpath(path))
    mode = stat.S_IMODE(target.stat().st_mode)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def unified_diff(before: str, after: str, name: str) -> str:
    """A unified diff of one file, marking a missing final newline as ``diff -u`` does."""
    lines = difflib.unified_diff(_lines(before), _lines(after), fromfile=name, tofile=name)
    out: list[str] = []
    for line in lines:
        out.append(line)
        if not line.endswith("\n"):
            out.append("\n\\ No newline at end of file\n")
    return "".join(out)


def _lines(text: str) -> list[str]:
    """Lines ended by a newline only (``splitlines`` also splits at U+2028 inside strings)."""
    parts = text.split("\n")
    lines = [p + "\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines
