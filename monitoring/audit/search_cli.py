"""``monitoring audit search`` and ``verify-window``: verified search from the shell.

``search`` shows only rows whose envelope verified against the newest signed checkpoint (each
marked as such); anything refused is printed to stderr as ``TAMPERED seq N: reason`` and the
exit code is 1. ``--prove-complete`` reads the whole time window instead of trusting the
search columns and proves that nothing in it was left out; ``--proof-out FILE`` saves that
proof, which ``verify-window FILE --vkey VKEY`` checks offline with the public key alone.
Every search is itself recorded in the ledger (``data_access``/``audit.search``) with the
operating-system user as the searcher.

Exit codes: 0 success, 1 tampering found (or the window could not be proven), 2 the search
could not run (bad flags, a locked ledger).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit import cli

if TYPE_CHECKING:
    from monitoring.audit.search import SearchResult

FORMATS = ("table", "jsonl", "json")


def add_parsers(sub: Any) -> None:
    """Add ``search`` and ``verify-window`` to ``monitoring audit``."""
    from monitoring.dsl.config import AUDIT_CATEGORIES

    p = sub.add_parser(
        "search", parents=[cli.common_options()], help="search the ledger (every row verified)",
        description="Search audit events by time window, actor, action, resource, category, "
        "correlation id and text. Every row shown is re-hashed and checked against the newest "
        "signed checkpoint; rows that fail are reported as TAMPERED (exit 1), never shown. "
        "The search itself is recorded in the ledger.")
    p.add_argument("--since", metavar="T", help="window start, inclusive (RFC 3339, Unix "
                   "seconds, now, now-1h)")
    p.add_argument("--until", metavar="T", help="window end, exclusive")
    p.add_argument("--actor", metavar="USER", help="the user id (mapped to its pseudonym)")
    p.add_argument("--actor-ref", metavar="REF", help="the actor's pseudonym (s-...)")
    p.add_argument("--action", metavar="ACTION")
    p.add_argument("--resource", metavar="RESOURCE")
    p.add_argument("--category", choices=AUDIT_CATEGORIES, metavar="CATEGORY",
                   help="one of " + ", ".join(AUDIT_CATEGORIES))
    p.add_argument("--correlation-id", metavar="ID")
    p.add_argument("--text", metavar="TEXT", help="case-insensitive text in the event, and in "
                   "its personal data where the subject's key exists")
    p.add_argument("--limit", type=int, default=100, metavar="N",
                   help="show at most N rows (default 100)")
    p.add_argument("--newest-first", action="store_true", help="newest rows first")
    p.add_argument("--include-archive", action="store_true",
                   help="also search the Parquet archives of pruned entries")
    p.add_argument("--decrypt", action="store_true",
                   help="show the decrypted personal data (user id, source, details)")
    p.add_argument("--format", choices=FORMATS, default="table",
                   help="table (default), jsonl (one row per line) or json")
    p.add_argument("--prove-complete", action="store_true",
                   help="read the whole window and prove that no entry in it was left out")
    p.add_argument("--proof-out", metavar="FILE",
                   help="with --prove-complete: write the window proof to FILE")
    p.set_defaults(func=lambda args: cli.run(cmd_search, args))

    p = sub.add_parser(
        "verify-window", help="check a window proof offline",
        description="Check a window proof (from 'search --prove-complete --proof-out') "
        "against the ledger's verifier key alone: the entries it carries are the ledger's, "
        "none is missing, and they cover the whole window. Exit 1 if it does not verify.")
    p.add_argument("proof", metavar="FILE", help="the proof file ('-': stdin)")
    p.add_argument("--vkey", action="append", required=True, metavar="VKEY",
                   help="the ledger's verifier key; repeat for rotated keys, each limited "
                   "with @FROM-TO (checkpoint sizes)")
    p.add_argument("--origin", help="the ledger origin to accept (default: the key's name)")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.set_defaults(func=lambda args: cli.run(cmd_verify_window, args))


def _time_us(flag: str, text: str | None) -> int | None:
    from monitoring.engine.timeparse import TimeFormatError, parse_time_ms

    if text is None:
        return None
    try:
        return parse_time_ms(text) * 1000
    except TimeFormatError as exc:
        raise UsageError(f"{flag}: {exc}") from None


class UsageError(Exception):
    """A flag that cannot be used (exit 2)."""


def cmd_search(args: argparse.Namespace) -> int:
    """Run the search, print the verified rows, report tampering."""
    from monitoring.audit.search import search

    try:
        since, until = _time_us("--since", args.since), _time_us("--until", args.until)
        if args.limit < 1:
            raise UsageError(f"--limit: expected at least 1, got {args.limit}")
        if args.proof_out and not args.prove_complete:
            raise UsageError("--proof-out needs --prove-complete")
        if not Path(args.db).exists():
            raise UsageError(f"{args.db}: no such store")
    except UsageError as exc:
        print(f"monitoring audit: error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    with cli.open_ledger(args) as ledger:
        result = search(ledger, since_us=since, until_us=until, actor=args.actor,
                        actor_ref=args.actor_ref, action=args.action, resource=args.resource,
                        category=args.category, correlation_id=args.correlation_id,
                        text=args.text, limit=args.limit, complete=args.prove_complete,
                        newest_first=args.newest_first, include_archive=args.include_archive,
                        decrypt=args.decrypt, requested_by=_searcher())
    if args.proof_out and result.window is not None:
        Path(args.proof_out).write_text(result.window.dumps(), encoding="utf-8")
    _print(result, args.format, embed_proof=args.proof_out is None)
    return cli.EXIT_OK if result.ok else cli.EXIT_PROBLEMS


def _searcher() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name for this uid (containers)
        return None


def _summary(result: SearchResult) -> str:
    shown = len(result.rows)
    more = ""
    if result.more:
        more = (f" of {result.matched} matching in the window (raise --limit)"
                if result.query.complete else " (more may match: raise --limit)")
    text = (f"{shown} row{'s' if shown != 1 else ''}{more}, verified against checkpoint size "
            f"{result.checkpoint.size} signed by {result.signed_by}")
    if result.uncovered:
        text += f"; {result.uncovered} entries after that checkpoint not searched"
    if result.query.complete:
        if result.window is not None:
            text += (f"; window proven complete (entries {result.window.start}.."
                     f"{result.window.end - 1} carried)")
        else:
            text += "; the window could NOT be proven complete"
        if result.pruned:
            text += f"; {len(result.pruned)} pruned entries in range (payload removed)"
    return text


def _print(result: SearchResult, fmt: str, *, embed_proof: bool) -> None:
    for finding in result.tampered:
        print(str(finding), file=sys.stderr)
    hidden = result.findings_total - len(result.tampered)
    if hidden:
        print(f"... and {hidden} more TAMPERED findings", file=sys.stderr)
    if fmt == "json":
        doc: dict[str, Any] = {
            "rows": [r.to_json() for r in result.rows], "matched": result.matched,
            "more": result.more, "checkpoint": {"origin": result.checkpoint.origin,
                                                "size": result.checkpoint.size,
                                                "root": result.checkpoint.root.hex(),
                                                "signed_by": result.signed_by},
            "tampered": [{"seq": f.seq, "reason": f.reason} for f in result.tampered],
            "uncovered": result.uncovered, "pruned": result.pruned, "ok": result.ok}
        if embed_proof and result.window is not None:
            doc["window_proof"] = result.window.to_json()
        json.dump(doc, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    if fmt == "jsonl":
        for row in result.rows:
            sys.stdout.write(json.dumps(row.to_json(), ensure_ascii=False) + "\n")
        print(_summary(result), file=sys.stderr)
        return
    _table(result)
    print(_summary(result), file=sys.stderr)


def _table(result: SearchResult) -> None:
    from rich.console import Console
    from rich.table import Table

    from monitoring.audit.loghandler import iso_utc

    table = Table(show_lines=False)
    for name in ("seq", "time (UTC)", "category", "action", "severity", "actor", "resource",
                 "outcome", "correlation", "verified"):
        table.add_column(name, no_wrap=name in ("seq", "time (UTC)"), overflow="fold")
    for row in result.rows:
        actor = row.actor or ""
        if row.personal is not None and row.personal.get("user_id"):
            actor = f"{row.personal['user_id']} ({actor})"
        elif row.erased:
            actor = f"{actor} (erased)"
        table.add_row(str(row.seq), iso_utc(row.ts_us / 1_000_000), row.category, row.action,
                      row.severity, actor, row.resource or "", row.outcome or "",
                      row.correlation_id or "", "✓" if row.verified else "")
    # A pipe or file gets the whole table, however wide, rather than truncated cells.
    Console(width=None if sys.stdout.isatty() else 400).print(table)


# --------------------------------------------------------------------------- verify-window


def cmd_verify_window(args: argparse.Namespace) -> int:
    """Check a window proof against verifier keys; print OK or the reason."""
    from monitoring.audit.errors import SigningKeyError, VerifyFailure
    from monitoring.audit.window import verify_window_proof

    try:
        text = sys.stdin.buffer.read() if args.proof == "-" else Path(args.proof).read_bytes()
    except OSError as exc:
        print(f"monitoring audit: error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return cli.EXIT_USAGE
    try:
        found = verify_window_proof(text, args.vkey, args.origin or _key_name(args.vkey[0]))
    except SigningKeyError as exc:
        print(f"monitoring audit: error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    except VerifyFailure as exc:
        print(f"FAIL: {exc}", file=sys.stderr)
        return cli.EXIT_PROBLEMS
    if args.format == "table":
        end = "(open: later entries may still fall in it)" if found.open_end else ""
        print(f"OK window seq {found.first}..{found.end - 1}: {len(found.entries)} entries, "
              f"complete under checkpoint size {found.checkpoint.size} signed by "
              f"{found.signed_by} {end}".rstrip())
        if found.pruned:
            print(f"note: {len(found.pruned)} entries in range were pruned (payload removed)")
    else:
        lines = found.entries if args.format == "jsonl" else [{
            "ok": True, "first": found.first, "end": found.end, "entries": found.entries,
            "pruned": found.pruned, "open_end": found.open_end,
            "checkpoint_size": found.checkpoint.size, "signed_by": found.signed_by}]
        for obj in lines:
            sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return cli.EXIT_OK


def _key_name(vkey: str) -> str | None:
    name, plus, _rest = vkey.partition("+")
    return name if plus else None
