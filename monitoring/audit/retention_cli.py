"""``monitoring audit prune | archive | verify-archive | erase``: retention and erasure.

Exit codes as for every ``audit`` sub-command: 0 done (or verified), 1 a problem was found or
the operation was refused (a failed archive check, a legal hold, a tampered entry), 2 it could
not run (bad flags, a locked ledger, an unusable key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit import cli

if TYPE_CHECKING:
    from monitoring.audit.archive import ArchiveFile
    from monitoring.audit.retention import PrunePlan, Range


def add_parsers(sub: Any) -> None:
    """Add ``prune``, ``archive``, ``verify-archive`` and ``erase`` to ``monitoring audit``."""
    common = cli.common_options()
    p = sub.add_parser(
        "prune", parents=[common], help="delete payloads past their retention class",
        description="Delete the payloads of entries whose retention class has expired. A "
        "signed retention.prune record is appended first; leaf hashes, tree nodes and every "
        "checkpoint stay, so every checkpoint and every remaining proof still verifies.")
    p.add_argument("--approver", metavar="NAME",
                   help="who authorised the prune (recorded in the clear; required unless "
                   "--dry-run)")
    p.add_argument("--dry-run", action="store_true", help="show the plan, delete nothing")
    p.add_argument("--now", type=_time_arg, metavar="T",
                   help="the time to compute expiry from (RFC 3339, Unix seconds, now-1d; "
                   "default: now)")
    p.add_argument("--force-unanchored", action="store_true",
                   help="prune even if an external anchor lags behind the cut")
    p.set_defaults(func=lambda a: cli.run(cmd_prune, a))

    p = sub.add_parser(
        "archive", parents=[common], help="move old payloads to Parquet with signed manifests",
        description="Export entries older than their class's hot age (default 90 days) to "
        "Parquet files that DuckDB can query (read_parquet), each with a manifest signed by "
        "the ledger key, record a signed retention.archive event, then evict the payloads "
        "from the hot store.")
    p.add_argument("--to", required=True, metavar="DIR", help="the archive folder")
    p.add_argument("--older-than", type=_duration_arg, metavar="DURATION",
                   help="archive entries older than this (e.g. 90d) instead of each class's "
                   "hot age")
    p.add_argument("--now", type=_time_arg, metavar="T", help="the current time (default: now)")
    p.add_argument("--keep-hot", action="store_true",
                   help="export only; the payloads stay in the hot store")
    p.set_defaults(func=lambda a: cli.run(cmd_archive, a))

    p = sub.add_parser(
        "verify-archive", help="re-check an archive folder",
        description="Check every manifest signature, file hash and row (re-hashed envelope, "
        "columns against the envelope, inclusion proof against the manifest's checkpoint). "
        "With --db also against the ledger's kept leaf hashes and retention.archive records; "
        "with --vkey against the public key alone.")
    p.add_argument("folder", metavar="DIR")
    p.add_argument("--db", metavar="DB", help="the ledger's store (opened read-only)")
    p.add_argument("--vkey", action="append", default=[], metavar="VKEY",
                   help="a verifier key of the ledger (repeatable; instead of --db)")
    p.add_argument("--origin", metavar="ORIGIN", help="the ledger origin the archive must have")
    p.set_defaults(func=lambda a: cli.run(cmd_verify_archive, a))

    p = sub.add_parser(
        "erase", parents=[common], help="crypto-shred a data subject (GDPR Art. 17)",
        description="Destroy the subject's data key and delete its sealed personal data, then "
        "record a gdpr.erasure event naming the subject's pseudonymous ref only. Every "
        "checkpoint still verifies. Refused for a subject under a legal hold unless --force.")
    p.add_argument("subject", metavar="SUBJECT", help="the user id or subject to erase")
    p.add_argument("--reason", required=True, metavar="TEXT",
                   help="why (recorded in the clear: no personal data here)")
    p.add_argument("--force", action="store_true", help="erase despite a legal hold")
    p.set_defaults(func=lambda a: cli.run(cmd_erase, a))


def _time_arg(text: str) -> int:
    from monitoring.engine.timeparse import TimeFormatError, parse_time_ms

    try:
        return parse_time_ms(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration_arg(text: str) -> int:
    from monitoring.engine.timeparse import TimeFormatError, parse_duration_ms

    try:
        value = parse_duration_ms(text)
    except TimeFormatError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def _now_ms(args: argparse.Namespace) -> int:
    import time

    return int(args.now) if args.now is not None else time.time_ns() // 1_000_000


def _ranges_text(ranges: list[Range], limit: int = 6) -> str:
    parts = [f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"... ({len(ranges) - limit} more ranges)")
    return ", ".join(parts)


def print_plan(plan: PrunePlan) -> None:
    """The plan, one line per class (and the classes left alone)."""
    from monitoring.engine.timeparse import format_time

    print(f"prune plan at {format_time(plan.now_ms)} (checkpoint size {plan.checkpoint_size}):")
    for cut in plan.cuts:
        files = f", {len(cut.archives)} archive file(s)" if cut.archives else ""
        print(f"  {cut.retention}: before {format_time(cut.cut_us // 1000)}: {cut.count} "
              f"entries (seq {_ranges_text(cut.ranges)}){files}")
    for note in plan.skipped:
        print(f"  {note}")
    if plan.empty:
        print("  nothing has expired")


def cmd_prune(args: argparse.Namespace) -> int:
    """Plan and (unless --dry-run) carry out a prune."""
    from monitoring.audit.retention import plan_prune, prune

    if not args.dry_run and not (args.approver or "").strip():
        print("monitoring audit prune: error: --approver is required (or use --dry-run)",
              file=sys.stderr)
        return cli.EXIT_USAGE
    with cli.open_ledger(args) as ledger:
        plan = plan_prune(ledger, _now_ms(args))
        print_plan(plan)
        if args.dry_run or plan.empty:
            if args.dry_run:
                print("dry run: nothing was deleted")
            return cli.EXIT_OK
        result = prune(ledger, plan, args.approver, force_unanchored=args.force_unanchored)
    seqs = ", ".join(str(r.seq) for r in result.records)
    print(f"pruned {result.removed} hot payloads and {result.archived_removed} archived "
          f"entries; signed prune record(s) at seq {seqs}")
    for path in result.files_deleted:
        print(f"  deleted {path}")
    return cli.EXIT_OK


def cmd_archive(args: argparse.Namespace) -> int:
    """Archive old payloads to Parquet."""
    from monitoring.audit.archive import archive

    with cli.open_ledger(args) as ledger:
        files = archive(ledger, Path(args.to), now_ms=_now_ms(args),
                        older_than_ms=args.older_than, evict=not args.keep_hot)
    if not files:
        print("nothing to archive")
    for f in files:
        print(_file_line(f))
    return cli.EXIT_OK


def _file_line(f: ArchiveFile) -> str:
    return (f"{f.path}: {f.count} entries of class {f.retention} (seq "
            f"{_ranges_text(list(f.ranges))}), recorded at seq {f.record_seq}")


def cmd_verify_archive(args: argparse.Namespace) -> int:
    """Verify an archive folder against the ledger or a vkey."""
    from monitoring.audit.archive import verify_archive
    from monitoring.audit.errors import AuditError

    folder = Path(args.folder)
    if bool(args.db) == bool(args.vkey):
        print("monitoring audit verify-archive: error: give either --db or --vkey",
              file=sys.stderr)
        return cli.EXIT_USAGE
    if args.db:
        import duckdb

        from monitoring.audit.storage import LedgerStorage

        if not Path(args.db).exists():
            raise AuditError(f"{args.db}: no such store")
        try:
            conn = duckdb.connect(args.db, read_only=True)
        except duckdb.Error as exc:
            raise AuditError(f"{args.db}: cannot open read-only ({exc})") from None
        try:
            report = verify_archive(folder, LedgerStorage(conn), origin=args.origin)
        finally:
            conn.close()
    else:
        report = verify_archive(folder, list(args.vkey), origin=args.origin)
    for problem in report.problems:
        print(f"FAILED: {problem}")
    if not report.ok:
        print(f"{len(report.problems)} problem(s) in {report.files} archive file(s)")
        return cli.EXIT_PROBLEMS
    print(f"OK: {report.files} archive file(s), {report.rows} rows verified")
    return cli.EXIT_OK


def cmd_erase(args: argparse.Namespace) -> int:
    """Crypto-shred a subject."""
    from monitoring.audit.erasure import erase

    with cli.open_ledger(args) as ledger:
        appended = erase(ledger, args.subject, args.reason, force=args.force)
    print(f"erased: subject key destroyed and sealed data deleted; recorded as seq "
          f"{appended.seq} (checkpoint size {appended.checkpoint_size})")
    return cli.EXIT_OK
