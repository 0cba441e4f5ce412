"""``monitoring demo-data --db DB``: write a demo history for the shipped rules.

Exit codes: 0 written; 1 the store could not be written; 2 usage errors (bad
numbers, unknown metric names, a store that already holds data: demo data is
for a fresh store, mixing it into real history would make a mess of both).
The generator (:mod:`monitoring.demo`, NumPy) is imported inside the command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: Any) -> None:
    """Register ``monitoring demo-data``."""
    p = sub.add_parser(
        "demo-data", help="write a demo history for the shipped rules",
        description="Generate a realistic history (daily seasonality, noise, counter resets, "
        "planted incidents) for every metric the shipped rules/ read, into a new store. "
        "The same --seed gives the same data.")
    p.add_argument("--db", required=True, metavar="DB", help="the store to create (DuckDB file)")
    p.add_argument("--days", type=float, default=7.0, metavar="N",
                   help="days of history (default 7)")
    p.add_argument("--end", metavar="TIME",
                   help="end of the history (default 2026-01-01T00:00:00Z, fixed so that a "
                   "seed always gives the same store; 'now' for the current time)")
    p.add_argument("--series", nargs="+", metavar="METRIC",
                   help="only these metrics (default: all of them)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_demo_data)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"monitoring demo-data: error: {message}", file=sys.stderr)
    return code


def cmd_demo_data(args: argparse.Namespace) -> int:
    """Check the options, generate, write, summarise."""
    from monitoring.demo import DEFAULT_END_MS, DemoError, check_options, write_demo
    from monitoring.engine.store import Store, StoreError
    from monitoring.engine.timeparse import TimeFormatError, format_time, parse_time_ms

    try:
        end_ms = DEFAULT_END_MS if args.end is None else parse_time_ms(args.end)
    except TimeFormatError as exc:
        return _error(f"--end: {exc}")
    series = [name for item in args.series or () for name in item.split(",") if name]
    try:
        check_options(args.days, series or None)
    except DemoError as exc:
        return _error(str(exc))
    db = Path(args.db)
    if db.exists() and db.stat().st_size > 0:
        try:
            with Store(db, read_only=True) as existing:
                if existing.time_range() is not None:
                    return _error(f"{db} already holds data: demo data goes into a new store")
        except StoreError as exc:
            return _error(str(exc))
    if not db.parent.is_dir():
        return _error(f"{db}: no such directory: {db.parent}")
    try:
        with Store(db) as store:
            summary = write_demo(store, args.days, args.seed, end_ms, series or None)
    except StoreError as exc:
        return _error(str(exc), EXIT_PROBLEMS)
    if not args.quiet:
        print(f"wrote {summary.samples:,} samples of {summary.series:,} series "
              f"({len(summary.families)} metrics) to {db}, "
              f"{format_time(summary.start_ms)} to {format_time(summary.end_ms)}")
        print(f"planted {len(summary.incidents)} incidents:")
        for inc in summary.incidents:
            where = f" on {inc.target}" if inc.target else ""
            print(f"  {format_time(inc.start_ms)}  {inc.kind}{where} "
                  f"for {inc.duration_ms // 60_000} min")
    return EXIT_OK
