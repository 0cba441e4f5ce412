"""The ``monitoring`` command: one sub-command per user job.

Exit codes are the same for every sub-command: 0 success (for ``lint``: no
error-level finding), 1 the job found problems, 2 usage errors (bad flags,
missing files). Bad input never produces a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from monitoring import __version__

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2


def _colour(stream: TextIO, choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return stream.isatty()


def _missing_paths(paths: Sequence[str]) -> list[str]:
    return [p for p in paths if p != "-" and not Path(p).exists()]


def _usage_error(message: str) -> int:
    print(f"monitoring: error: {message}", file=sys.stderr)
    return EXIT_USAGE


# ---------------------------------------------------------------- lint


def cmd_lint(args: argparse.Namespace) -> int:
    """Check rule and configuration files; print diagnostics."""
    from monitoring.dsl.render import render_json, render_sarif, render_text, summarise
    from monitoring.lint.catalogue import descriptions
    from monitoring.lint.runner import lint_paths

    missing = _missing_paths(args.paths)
    if missing:
        return _usage_error("no such file or directory: " + ", ".join(missing))
    report = lint_paths(args.paths, limit=args.max_diagnostics)
    shown = [d for d in report.diagnostics if d.severity >= _min_severity(args)]
    out = sys.stdout
    if args.format == "json":
        summary = {"files": report.files, "rules": report.rules, "errors": report.errors,
                   "warnings": report.warnings, "dropped": report.dropped}
        out.write(render_json(shown, summary) + "\n")
    elif args.format == "sarif":
        out.write(render_sarif(shown, descriptions(), __version__) + "\n")
    else:
        colour = _colour(out, args.color)
        for d in shown:
            out.write(render_text(d, colour) + "\n\n")
        if not args.quiet or shown:
            out.write(summarise(shown, report.files, report.rules, report.dropped) + "\n")
    fail = report.errors > 0 or (args.strict and report.warnings > 0)
    return EXIT_PROBLEMS if fail else EXIT_OK


def _min_severity(args: argparse.Namespace) -> int:
    from monitoring.dsl.diagnostics import Severity

    return {"info": Severity.INFO, "warning": Severity.WARNING, "error": Severity.ERROR}[
        args.min_severity]


# ---------------------------------------------------------------- fmt


def cmd_fmt(args: argparse.Namespace) -> int:
    """Format DSL rule files canonically."""
    from monitoring.dsl.fmt import format_paths, format_text
    from monitoring.dsl.render import render_text

    if args.paths == ["-"]:
        text = sys.stdin.read()
        formatted, diags = format_text(text, "<stdin>")
        for d in diags:
            print(render_text(d, _colour(sys.stderr, args.color)), file=sys.stderr)
        if formatted is None:
            return EXIT_PROBLEMS
        if args.check:
            return EXIT_PROBLEMS if formatted != text else EXIT_OK
        sys.stdout.write(formatted)
        return EXIT_OK
    missing = _missing_paths(args.paths)
    if missing:
        return _usage_error("no such file or directory: " + ", ".join(missing))
    report = format_paths(args.paths, check=args.check, diff=args.diff)
    for d in report.diagnostics:
        print(render_text(d, _colour(sys.stderr, args.color)), file=sys.stderr)
    if report.diff:
        sys.stdout.write(report.diff)
    for path in report.changed:
        verb = "would reformat" if args.check or args.diff else "reformatted"
        print(f"{verb} {path}", file=sys.stderr)
    if report.diagnostics:
        return EXIT_PROBLEMS
    return EXIT_PROBLEMS if (args.check and report.changed) else EXIT_OK


# ---------------------------------------------------------------- graph


def cmd_graph(args: argparse.Namespace) -> int:
    """Print the evaluation graph of a rule set."""
    from monitoring.dsl.diagnostics import Severity
    from monitoring.dsl.graph import render_dot, render_text
    from monitoring.dsl.loader import load_paths
    from monitoring.dsl.render import render_text as render_diag
    from monitoring.lint.runner import compile_workspace

    missing = _missing_paths(args.paths)
    if missing:
        return _usage_error("no such file or directory: " + ", ".join(missing))
    ws = load_paths(args.paths)
    state = compile_workspace(ws)
    errors = [d for d in [*ws.diagnostics, *state.diagnostics] if d.severity is Severity.ERROR]
    for d in errors:
        print(render_diag(d, _colour(sys.stderr, args.color)), file=sys.stderr)
    render = render_dot if args.format == "dot" else render_text
    sys.stdout.write(render(state.program))
    return EXIT_PROBLEMS if errors else EXIT_OK


# ---------------------------------------------------------------- schema


def cmd_schema(args: argparse.Namespace) -> int:
    """Print a JSON Schema of one of the YAML file formats."""
    from monitoring.dsl.schema import schema_json, schema_names

    names = schema_names()
    if args.name is None:
        print("\n".join(names))
        return EXIT_OK
    if args.name not in names:
        from monitoring.dsl.diagnostics import did_you_mean

        hint = did_you_mean(args.name, names)
        return _usage_error(f"unknown schema {args.name!r}" + (f"; {hint}" if hint else "")
                            + "; available: " + ", ".join(names))
    sys.stdout.write(schema_json(args.name) + "\n")
    return EXIT_OK


# ---------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``monitoring`` command."""
    parser = argparse.ArgumentParser(
        prog="monitoring",
        description="Rules-as-code monitoring: lint, format and inspect rule files.",
    )
    parser.add_argument("--version", action="version", version=f"monitoring {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    colour = argparse.ArgumentParser(add_help=False)
    colour.add_argument("--color", choices=["auto", "always", "never"], default="auto",
                        help="colour in text output (default: auto, only on a terminal)")

    p = sub.add_parser("lint", parents=[colour], help="check rule and configuration files",
                       description="Check rule files (DSL, seed YAML, Prometheus) and "
                       "configuration files; exit 1 if any error is found.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument("--format", choices=["text", "json", "sarif"], default="text")
    p.add_argument("--min-severity", choices=["info", "warning", "error"], default="info",
                   help="hide findings below this severity")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.add_argument("--max-diagnostics", type=_positive_int, default=200, metavar="N",
                   help="stop reporting after N findings (default 200)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary line when clean")
    p.set_defaults(func=cmd_lint)

    p = sub.add_parser("fmt", parents=[colour], help="format DSL rule files",
                       description="Rewrite .rules files in canonical form (comments kept). "
                       "Use - to read standard input and write standard output.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if a file would change")
    p.add_argument("--diff", action="store_true", help="print a unified diff, write nothing")
    p.set_defaults(func=cmd_fmt)

    p = sub.add_parser("graph", parents=[colour], help="print the evaluation graph",
                       description="Compile rule files and print the evaluation graph: every "
                       "unique sub-expression once, shared ones marked.")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--format", choices=["text", "dot"], default="text")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("schema", help="print the JSON Schema of a YAML file format",
                       description="Print a JSON Schema (for editor completion). Without NAME, "
                       "list the available schemas.")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.set_defaults(func=cmd_schema)

    for module in ENGINE_COMMANDS:
        importlib.import_module(module).add_parsers(sub)
    return parser


ENGINE_COMMANDS = (
    "monitoring.engine.store_cli",  # import, export
    "monitoring.engine.query_cli",  # query
    "monitoring.engine.conformance_cli",  # conformance
    "monitoring.dryrun.cli",  # dry-run
    "monitoring.ruletest.cli",  # test
    "monitoring.demo_cli",  # demo-data
    "monitoring.audit.cli",  # audit ...
    "monitoring.live.serve_cli",  # serve
    "monitoring.live.alerts_cli",  # alerts, alerts history, alerts stats
    "monitoring.live.silence_cli",  # silence add / list / expire
    "monitoring.live.ack_cli",  # ack
)
"""Modules that add sub-commands with ``add_parsers(subparsers)``; each sets ``func``."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script and of ``python -m monitoring``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
