"""``monitoring test FILE...``: run promtool-format rule unit tests.

Exit codes: 0 every selected test group passed (groups reported unsupported
do not fail the run unless ``--fail-unsupported``); 1 a test failed or a test
file could not be run (bad YAML, bad rule files, evaluation errors); 2 usage
errors (missing files, a bad ``--run`` pattern).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: Any) -> None:
    """Register ``monitoring test``."""
    p = sub.add_parser(
        "test", help="run rule unit tests (promtool's test file format)",
        description="Run unit tests for alerting and recording rules, in the format of "
        "`promtool test rules`. Rule files may be Prometheus rule files, DSL .rules files or "
        "the seed's alert_rules.yaml.")
    p.add_argument("paths", nargs="+", metavar="FILE", help="test files (YAML)")
    p.add_argument("--run", action="append", metavar="REGEX",
                   help="only run test groups whose name matches (may repeat)")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("--coverage", action="store_true",
                   help="after the tests, list every rule and whether a test exercised it")
    p.add_argument("--coverage-format", choices=["text", "json"], default="text",
                   help="coverage as a table (default) or JSON on stdout")
    p.add_argument("--fail-unsupported", action="store_true",
                   help="exit 1 when some test group could not be checked")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.set_defaults(func=cmd_test)


def _colour(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


def cmd_test(args: argparse.Namespace) -> int:
    """Run the test files."""
    from monitoring.ruletest import coverage
    from monitoring.ruletest.report import junit_xml, write_text
    from monitoring.ruletest.runner import run_file

    missing = [p for p in args.paths if not Path(p).is_file()]
    if missing:
        print("monitoring test: error: no such file: " + ", ".join(missing), file=sys.stderr)
        return EXIT_USAGE
    pattern = None
    if args.run:
        try:
            pattern = re.compile("|".join(args.run))
        except re.error as e:
            print(f"monitoring test: error: bad --run pattern: {e}", file=sys.stderr)
            return EXIT_USAGE
    results = [run_file(p, pattern) for p in args.paths]
    colour = _colour(args.color)
    write_text(results, sys.stdout, sys.stderr, colour)
    if args.junit:
        try:
            Path(args.junit).write_text(junit_xml(results), encoding="utf-8")
        except OSError as e:
            print(f"monitoring test: error: cannot write {args.junit}: {e.strerror or e}",
                  file=sys.stderr)
            return EXIT_USAGE
    if args.coverage:
        rows = coverage.compute(results)
        if args.coverage_format == "json":
            coverage.write_json(rows, sys.stdout)
        else:
            coverage.write_table(rows, sys.stdout, colour)
    if any(r.failed for r in results):
        return EXIT_PROBLEMS
    if args.fail_unsupported and any(r.unsupported for r in results):
        return EXIT_PROBLEMS
    return EXIT_OK
