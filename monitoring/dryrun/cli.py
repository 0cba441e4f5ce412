"""``monitoring dry-run``: backtest a rule set over the store, print or save the report.

Exit codes, as for every sub-command: 0 the dry-run ran and no rule lacked
data; 1 problems (errors in the rule files, no rules, no data in the range, an
empty store, a rule with no data: an unknown metric); 2 usage errors
(bad flags or times, a store or rule path that does not exist). Heavy modules
are imported inside the command, so ``monitoring --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def add_parsers(sub: Any) -> None:
    """Register ``monitoring dry-run``."""
    from monitoring.cli import _positive_int

    p = sub.add_parser(
        "dry-run", help="backtest rules over stored history",
        description="Evaluate every rule of the rule files at its group's interval over the "
        "store's history (default: all of it), with the alert state machine (for, "
        "keep_firing_for, recovery conditions, no-data policy), and report per rule when it "
        "would have fired and which notifications would have gone out. Times: RFC 3339, "
        "Unix seconds, 'now' or 'now-1h'. See docs/dryrun.md.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="rule files or folders")
    p.add_argument("--db", required=True, metavar="DB", help="the store (a DuckDB file)")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="range start (default: the oldest sample)")
    p.add_argument("--to", dest="end", metavar="TIME",
                   help="range end (default: the newest sample)")
    p.add_argument("--format", choices=["table", "json"], default="table",
                   help="table (default) or json (schema in docs/dryrun.md)")
    p.add_argument("--html", metavar="FILE", help="also write an HTML report with plots")
    p.add_argument("--compare", action="append", metavar="OLD_PATH",
                   help="compare with this older rule set (repeat for several paths)")
    p.add_argument("--chunk-steps", type=_positive_int, default=1440, metavar="N",
                   help="evaluation steps per chunk (memory bound; default 1440)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                   help="colour in the table (default: auto, only on a terminal)")
    p.set_defaults(func=cmd_dry_run)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"monitoring dry-run: error: {message}", file=sys.stderr)
    return code


def cmd_dry_run(args: argparse.Namespace) -> int:
    """Load, evaluate, report."""
    from monitoring.dryrun.engine import DryRunError, DryRunOptions, run_compare, run_dry_run
    from monitoring.dryrun.ruleset import RuleSetError
    from monitoring.engine.timeparse import TimeFormatError, parse_time_ms

    paths = list(args.paths) + list(args.compare or [])
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return _error("no such file or directory: " + ", ".join(missing))
    if not Path(args.db).is_file():
        return _error(f"no such store: {args.db} (create one with `monitoring import`)")
    try:
        start = parse_time_ms(args.start) if args.start is not None else None
        end = parse_time_ms(args.end) if args.end is not None else None
    except TimeFormatError as exc:
        return _error(str(exc))
    render_html = _html_renderer(args) if args.html else None
    if isinstance(render_html, int):
        return render_html
    options = DryRunOptions(chunk_steps=args.chunk_steps)
    try:
        with _progress(args.quiet) as progress:
            if args.compare:
                report: Any = run_compare(args.compare, args.paths, args.db, start, end,
                                          options, progress)
            else:
                report = run_dry_run(args.paths, args.db, start, end, options, progress)
    except RuleSetError as exc:
        _print_diagnostics(exc, args.color)
        return EXIT_PROBLEMS
    except DryRunError as exc:
        return _error(str(exc), EXIT_PROBLEMS)
    return _output(args, report, render_html)


def _output(args: argparse.Namespace, report: Any, render_html: Callable[[Any], str] | None
            ) -> int:
    from monitoring.dryrun.report import CompareReport
    from monitoring.dryrun.terminal import render_compare, render_report

    compare = isinstance(report, CompareReport)
    if args.format == "json":
        sys.stdout.write(json.dumps(report.to_json(), indent=2, allow_nan=False) + "\n")
    else:
        colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        (render_compare if compare else render_report)(report, sys.stdout, colour)
    if render_html is not None:
        try:
            Path(args.html).write_text(render_html(report), encoding="utf-8")
        except OSError as exc:
            return _error(f"cannot write {args.html}: {exc.strerror}", EXIT_PROBLEMS)
        print(f"wrote {args.html}", file=sys.stderr)
    rules = report.new.rules if compare else report.rules
    no_data = [r for r in rules if r.status == "no_data"]
    for r in no_data:
        print(f"monitoring dry-run: {r.key}: {r.reason}", file=sys.stderr)
    return EXIT_PROBLEMS if no_data else EXIT_OK


def _html_renderer(args: argparse.Namespace) -> Callable[[Any], str] | int:
    """D's HTML renderer (``render``, ``render_compare``), or an exit code with a message."""
    import importlib

    try:
        html = importlib.import_module("monitoring.dryrun.html")
    except ImportError as exc:
        return _error(f"--html is not available: cannot import monitoring.dryrun.html ({exc})")
    name = "render_compare" if args.compare else "render"
    func = getattr(html, name, None)
    if func is None:
        return _error(f"--html is not available{' with --compare' if args.compare else ''}: "
                      f"monitoring.dryrun.html has no {name}()")
    out: Callable[[Any], str] = func
    return out


def _print_diagnostics(exc: Any, colour_choice: str) -> None:
    from monitoring.dsl.render import render_text

    colour = colour_choice == "always" or (colour_choice == "auto" and sys.stderr.isatty())
    for d in exc.diagnostics:
        print(render_text(d, colour), file=sys.stderr)
    print(f"monitoring dry-run: {len(exc.diagnostics)} error(s) in the rule files; "
          "nothing was evaluated", file=sys.stderr)


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar over chunks x grids on stderr, only on a terminal and without -q."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(),
               TextColumn("chunks"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("dry-run", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
