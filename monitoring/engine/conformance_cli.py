"""``monitoring conformance FILE...``: run Prometheus-format PromQL ``.test`` scripts.

Each file is run against a fresh in-memory store with the chosen evaluator, as
Prometheus's own harness runs it (see :mod:`monitoring.engine.promqltest`). The
output gives per file ``N passed, N failed, N unsupported``, every failure
with its ``file:line``, expression and reason, the reasons blocks were
unsupported, and one last line with the totals. Exit codes: 0 every
supported block passed, 1 some failed, 2 usage error or unreadable file.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from monitoring.engine.promqltest import FileReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_parsers(sub: Any) -> None:
    """Register ``monitoring conformance``."""
    p = sub.add_parser(
        "conformance", help="run PromQL .test scripts (Prometheus's test format)",
        description="Run PromQL test scripts in Prometheus's .test format (load / clear / "
        "eval) against an evaluator and report passed, failed and unsupported blocks. "
        "Blocks needing native histograms or experimental functions are unsupported.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--engine", choices=["fast", "reference"], default="fast",
                   help="the vectorised evaluator (default) or the step-by-step reference one")
    p.add_argument("--experimental", action="store_true",
                   help="also run blocks that use Prometheus's experimental functions "
                   "(limitk, sort_by_label, ts_of_*, ...), which both evaluators implement")
    p.add_argument("--verbose", action="store_true",
                   help="list every unsupported block instead of counting the reasons")
    p.set_defaults(func=cmd_conformance)


def cmd_conformance(args: argparse.Namespace) -> int:
    """Run the files and print the report."""
    from monitoring.engine.promqltest import (
        TestFormatError,
        evaluator_by_name,
        load_test_file,
        run_script,
    )

    out: TextIO = sys.stdout
    try:
        evaluate = evaluator_by_name(args.engine)
    except ImportError as e:
        print(f"monitoring conformance: error: the {args.engine} evaluator is not "
              f"available: {e}", file=sys.stderr)
        return EXIT_USAGE
    reports: list[FileReport] = []
    unreadable = False
    for name in args.files:
        try:
            script = load_test_file(name)
        except TestFormatError as e:
            print(f"monitoring conformance: error: {e}", file=sys.stderr)
            unreadable = True
            continue
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            print(f"monitoring conformance: error: cannot read {name}: {reason}",
                  file=sys.stderr)
            unreadable = True
            continue
        report = run_script(script, evaluate, experimental=args.experimental)
        reports.append(report)
        print_report(report, out, verbose=args.verbose)
    passed = sum(r.passed for r in reports)
    failed = sum(r.failed for r in reports)
    unsupported = sum(r.unsupported for r in reports)
    print(f"{passed} passed, {failed} failed, {unsupported} unsupported", file=out)
    if unreadable:
        return EXIT_USAGE
    return EXIT_FAILED if failed else EXIT_OK


def print_report(report: FileReport, out: TextIO, *, verbose: bool) -> None:
    """One file: its counts, its failures, then why blocks were unsupported."""
    from monitoring.engine.promqltest import Outcome

    print(f"{report.name}: {report.summary()}", file=out)
    for b in report.blocks:
        if b.outcome is Outcome.FAILED:
            print(f"  FAIL {report.name}:{b.line}: {b.expr}", file=out)
            print(f"       {b.reason}", file=out)
    unsupported = [b for b in report.blocks if b.outcome is Outcome.UNSUPPORTED]
    if verbose:
        for b in unsupported:
            print(f"  unsupported {report.name}:{b.line}: {b.expr}", file=out)
            print(f"       {b.reason}", file=out)
        return
    reasons = Counter(_reason_group(b.reason) for b in unsupported)
    for reason, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  unsupported: {n} x {reason}", file=out)


def _reason_group(reason: str) -> str:
    """The reason without the series it names, so equal causes count together."""
    head, sep, _ = reason.partition(" (")
    return head if sep else reason
