"""The ``import`` and ``export`` sub-commands: files in and out of the metric store.

:func:`add_parsers` adds both to the ``monitoring`` command's sub-parsers.
Heavy modules (DuckDB, NumPy) are imported inside the commands so that
``monitoring --help`` stays fast.

Exit codes, as for every sub-command: 0 success; 1 bad input (any bad row, even
with ``--skip-bad``, which keeps the good rows); 2 the job could not run (bad
flags or selector, missing files, no store at ``--db`` for export, a store
locked by another process). Problems are printed as ``file:line[:column]:
error: message``; bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from monitoring.engine.ingest import ImportReport
    from monitoring.engine.model import Matcher
    from monitoring.engine.store import Retention, Store

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

_FORMATS = ("auto", "prometheus", "openmetrics", "csv", "parquet")


class UsageError(Exception):
    """A problem that stops the command before it starts (exit 2)."""


def add_parsers(subparsers: Any) -> None:
    """Add ``import`` and ``export`` to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser(
        "import", help="import metric history into a store",
        description="Import Prometheus text, OpenMetrics, CSV or Parquet files into a store "
        "(created if missing) in one transaction: if any row is bad nothing is imported, "
        "unless --skip-bad. Exit 1 if any row was bad.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--db", required=True, metavar="DB", help="the store (a DuckDB file)")
    p.add_argument("--format", choices=_FORMATS, default="auto",
                   help="file format (default: by extension and content)")
    p.add_argument("--skip-bad", "--keep-going", dest="skip_bad", action="store_true",
                   help="import the good rows and report the bad ones")
    p.add_argument("--default-time", metavar="T",
                   help="timestamp for text samples that have none (RFC 3339, epoch "
                   "seconds, now, now-1h); without it such samples are errors")
    p.add_argument("--retention", metavar="DURATION",
                   help="after the import, delete samples older than this before the "
                   "newest sample (e.g. 30d)")
    p.set_defaults(func=cmd_import)

    p = subparsers.add_parser(
        "export", help="export a store as OpenMetrics",
        description="Write series as OpenMetrics text, as `promtool tsdb create-blocks-from "
        "openmetrics` reads it. Staleness markers cannot be written and are left out.")
    p.add_argument("--db", required=True, metavar="DB", help="the store (a DuckDB file)")
    p.add_argument("--match", action="append", default=[], metavar="SELECTOR",
                   help='series selector such as \'up{job="api"}\' (repeatable: any of them; '
                   "default: every series)")
    p.add_argument("--from", dest="start", metavar="T",
                   help="first time, inclusive (RFC 3339, epoch seconds, now, now-1h)")
    p.add_argument("--to", dest="end", metavar="T", help="last time, inclusive")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=cmd_export)


# ---------------------------------------------------------------- import


def cmd_import(args: argparse.Namespace) -> int:
    """Import files into the store; print bad rows and a summary."""
    from monitoring.engine.store import StoreError

    try:
        files = _existing_files(args.files)
        _check_parent(Path(args.db))
        default_ts = _time_arg("--default-time", args.default_time)
        keep_ms = _duration_arg("--retention", args.retention)
        with _open_store(args.db, read_only=False) as store, _progress(files) as advance:
            report, retained = _import_and_retain(store, files, args, default_ts, keep_ms,
                                                  advance)
    except (UsageError, StoreError) as e:
        return _fail(str(e))
    except OSError as e:  # a file vanished or became unreadable while importing
        return _fail(f"{e.filename or args.db}: {e.strerror or e}")
    _print_import(report, args.skip_bad)
    if retained is not None and (retained.samples or retained.series):
        print(f"retention: deleted {retained.samples} samples and {retained.series} series "
              f"older than {args.retention} before the newest sample")
    return EXIT_OK if report.ok else EXIT_PROBLEMS


def _import_and_retain(store: Store, files: Sequence[Path], args: argparse.Namespace,
                       default_ts: int | None, keep_ms: int | None,
                       advance: Callable[[int], None] | None
                       ) -> tuple[ImportReport, Retention | None]:
    """The import (one transaction), then the retention pass if the import was kept."""
    from monitoring.engine.ingest import import_files

    report = import_files(store, files, args.format, skip_bad=args.skip_bad,
                          default_ts_ms=default_ts, progress=advance)
    retained = None
    if keep_ms is not None and report.committed:
        retained = store.retain(keep_ms)
    return report, retained


def _print_import(report: ImportReport, skip_bad: bool) -> None:
    for error in report.errors:
        print(error, file=sys.stderr)
    hidden = report.error_count - len(report.errors)
    if hidden > 0 or report.stopped_early:
        more = f"{hidden} more bad rows not shown" if hidden > 0 else "stopped reading"
        print(f"monitoring: {more} (at most {len(report.errors)} are reported)",
              file=sys.stderr)
    if report.error_count and not skip_bad:
        print(f"import failed: {_rows(report.error_count)} bad; nothing was imported "
              "(use --skip-bad to import the good rows)", file=sys.stderr)
        return
    bad = f", skipped {_rows(report.error_count)}" if report.error_count else ""
    print(f"imported {report.series} series, {report.samples} samples from "
          f"{report.files} file{'s' if report.files != 1 else ''}{bad} "
          f"in {report.seconds:.2f} s")


def _rows(n: int) -> str:
    return f"{n} row" + ("s" if n != 1 else "")


@contextmanager
def _progress(files: Sequence[Path]) -> Iterator[Callable[[int], None] | None]:
    """A progress bar of bytes read on a terminal (stderr), else nothing."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    total = sum(f.stat().st_size for f in files)
    columns = (TextColumn("importing"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("import", total=total)
        yield lambda n: bar.advance(task, n)


# ---------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    """Write the selected series as OpenMetrics text."""
    from monitoring.engine.export import export_openmetrics, export_to_file
    from monitoring.engine.store import StoreError

    started = time.perf_counter()
    try:
        selectors = [parse_selector(text) for text in args.match] or [[]]
        start = _time_arg("--from", args.start)
        end = _time_arg("--to", args.end)
        if not Path(args.db).is_file():
            raise UsageError(f"{args.db}: no such store")
        with _open_store(args.db, read_only=True) as store:
            if args.output and args.output != "-":
                report = export_to_file(store, args.output, selectors, start, end)
            else:
                report = export_openmetrics(store, sys.stdout, selectors, start, end)
                sys.stdout.flush()
    except (UsageError, StoreError) as e:
        return _fail(str(e))
    except OSError as e:  # the output file cannot be written
        return _fail(f"{e.filename or args.output}: {e.strerror or e}")
    notes = []
    if report.stale_dropped:
        notes.append(f"{report.stale_dropped} staleness markers left out")
    if report.skipped_series:
        notes.append(f"{report.skipped_series} series without a valid metric name left out")
    extra = f" ({'; '.join(notes)})" if notes else ""
    print(f"exported {report.series} series, {report.samples} samples in "
          f"{time.perf_counter() - started:.2f} s{extra}", file=sys.stderr)
    return EXIT_OK


def parse_selector(text: str) -> list[Matcher]:
    """The matchers of a series selector such as ``up{job="api"}``, as the IR lowers them."""
    from monitoring.dsl import ast
    from monitoring.dsl.parser import parse_expression
    from monitoring.dsl.regex import regex_error
    from monitoring.dsl.render import render_text

    result = parse_expression(text)
    if not result.ok or result.node is None:
        raise UsageError("invalid --match selector:\n"
                         + "\n".join(render_text(d) for d in result.diagnostics))
    node = result.node
    while isinstance(node, ast.ParenExpr):
        node = node.expr
    if not isinstance(node, ast.VectorSelector) or node.offset or node.at:
        raise UsageError(f"--match {text!r}: expected a series selector such as "
                         "'up{job=\"api\"}'")
    matchers = sorted({(m.name, m.op.value, m.value) for m in node.matchers})
    for _name, op, value in matchers:
        problem = regex_error(value) if op in ("=~", "!~") else None
        if problem is not None:
            raise UsageError(f"--match {text!r}: invalid regular expression {value!r}: "
                             f"{problem}")
    return matchers


# ---------------------------------------------------------------- shared


def _open_store(path: str, read_only: bool) -> Store:
    from monitoring.engine.store import Store

    return Store(path, read_only=read_only)


def _existing_files(paths: Sequence[str]) -> list[Path]:
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise UsageError("no such file: " + ", ".join(missing))
    return [Path(p) for p in paths]


def _check_parent(db: Path) -> None:
    parent = db.parent if str(db.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"{db}: no such directory {str(parent)!r}")


def _time_arg(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    from monitoring.engine.timeparse import TimeFormatError, parse_time_ms

    try:
        ms = parse_time_ms(text)
    except TimeFormatError as e:
        raise UsageError(f"{flag}: {e}") from None
    if not -(2**63) <= ms < 2**63:
        raise UsageError(f"{flag}: {text!r} is out of range")
    return ms


def _duration_arg(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    from monitoring.engine.timeparse import TimeFormatError, parse_duration_ms

    try:
        ms = parse_duration_ms(text)
    except TimeFormatError as e:
        raise UsageError(f"{flag}: {e}") from None
    if ms < 0:
        raise UsageError(f"{flag}: the duration must not be negative")
    return ms


def _fail(message: str, stream: TextIO | None = None) -> int:
    print(f"monitoring: error: {message}", file=stream or sys.stderr)
    return EXIT_USAGE
