"""``monitoring audit verify | receipt | verify-receipt | acknowledge``.

``verify`` and ``receipt`` only read the store (a read-only DuckDB connection, no signing
key needed), so an auditor can run them on a copy; while the engine holds the store open for
writing, DuckDB refuses a second process and the message says so. ``verify-receipt`` is the
offline verifier (:mod:`monitoring.audit.offline`): it needs the receipt and the public key,
nothing else. ``acknowledge`` is the operator's answer to a startup alarm (recovery.py).

Exit codes: 0 verified, 1 a problem was found (the first bad seq and the reason are printed),
2 the command could not run.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit import cli

if TYPE_CHECKING:
    from monitoring.audit.anchors import Anchor
    from monitoring.audit.keys import KeyHistory
    from monitoring.audit.storage import LedgerStorage
    from monitoring.audit.verify import Report

MAX_LISTED = 20
"""Problems printed after the first line of a failed verification (all are in --json)."""


def add_parsers(sub: Any) -> None:
    """Add ``verify``, ``receipt``, ``verify-receipt`` and ``acknowledge``."""
    anchors = _anchor_options()
    p = sub.add_parser(
        "verify", parents=[cli.common_options(), anchors],
        help="verify the ledger: OK, or the first bad seq and why",
        description="Check the newest signed checkpoint against the stored tree, the sidecar "
        "and the anchors; with --full, recompute every leaf and every checkpoint's root and "
        "check every row. Exit 0 OK, 1 a problem was found, 2 could not run.")
    p.add_argument("--full", action="store_true", help="verify everything (see docs/audit.md)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--vkey", action="append", default=[], metavar="VKEY[@FROM-TO]",
                   help="expected verifier key(s) of the ledger (default: the keys its genesis "
                   "and key.rotate entries name; give the key you trust to pin it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=lambda args: cli.run(_verify, args))

    r = sub.add_parser(
        "receipt", parents=[cli.common_options()],
        help="export one entry with its inclusion proof (a C2SP tlog-proof)",
        description="Write a self-contained receipt for entry SEQ: its envelope, the inclusion "
        "proof and the newest signed checkpoint. Anyone can check it offline with "
        "'monitoring audit verify-receipt FILE --vkey VKEY' (the key is printed).")
    r.add_argument("seq", type=int, metavar="SEQ", help="the entry's sequence number")
    r.add_argument("-o", "--output", metavar="FILE", help="write here (default: stdout)")
    r.add_argument("--since", type=int, metavar="SIZE",
                   help="also prove that the checkpoint extends the tree of this size (for a "
                   "verifier that remembers an older checkpoint)")
    r.set_defaults(func=lambda args: cli.run(_receipt, args))

    v = sub.add_parser(
        "verify-receipt", help="check a receipt offline against the ledger's public key",
        description="Check a receipt (from 'monitoring audit receipt') with nothing but the "
        "ledger's verifier key. Exit 0 OK, 1 the receipt does not verify, 2 unusable input.")
    from monitoring.audit.offline import add_arguments, run

    add_arguments(v)
    v.set_defaults(func=run)

    a = sub.add_parser(
        "acknowledge", parents=[cli.common_options(), anchors],
        help="accept a ROLLBACK/FORK/MISSING_LOG alarm and start a new incarnation",
        description="After investigating a startup alarm: keep the current sidecar as "
        "SIDECAR.incarnation-N, write a fresh one from the store's checkpoints and record the "
        "alarms and the reason in a signed security/ledger.alarm_acknowledged event, so the "
        "ledger signs again. The checkpoints named in the alarms stop raising them.")
    a.add_argument("--reason", required=True, help="what was found and decided (recorded)")
    a.set_defaults(func=lambda args: cli.run(_acknowledge, args))


def _anchor_options() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--anchor-folder", metavar="DIR", action="append", default=[],
                   help="a folder anchor to compare with (repeatable)")
    p.add_argument("--witness", metavar="URL", action="append", default=[],
                   help="a tlog witness to compare with (repeatable; one --witness-vkey each)")
    p.add_argument("--witness-vkey", metavar="VKEY", action="append", default=[],
                   help="the witness's cosigner key")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per witness request (default 10)")
    return p


def _anchors(args: argparse.Namespace) -> list[Anchor]:
    from monitoring.audit.anchors import FileAnchor, WitnessAnchor
    from monitoring.audit.errors import AuditError

    if len(args.witness) != len(args.witness_vkey):
        raise _Usage("give one --witness-vkey per --witness")
    found: list[Anchor] = [FileAnchor(folder) for folder in args.anchor_folder]
    for url, vkey in zip(args.witness, args.witness_vkey, strict=True):
        try:
            found.append(WitnessAnchor(url, vkey, args.timeout))
        except AuditError as exc:
            raise _Usage(f"--witness {url}: {exc}") from None
    return found


class _Usage(Exception):
    """A command line that cannot run (exit 2)."""


def _paths(args: argparse.Namespace) -> tuple[Path, Path]:
    from monitoring.audit.paths import ledger_paths

    db = Path(args.db)
    paths = ledger_paths(db, sidecar=Path(args.sidecar) if args.sidecar else None)
    return db, paths.sidecar


@contextmanager
def _read_only(db: Path) -> Iterator[LedgerStorage]:
    """The ledger in ``db`` through a read-only connection; exit 2 when it cannot be read."""
    from monitoring.audit.verify import StoreUnavailable, open_read_only

    try:
        with open_read_only(db) as storage:
            yield storage
    except StoreUnavailable as exc:
        raise _Usage(str(exc)) from None


def _usage_errors(body: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace],
                                                                        int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return body(args)
        except _Usage as exc:
            print(f"monitoring audit: error: {exc}", file=sys.stderr)
            return cli.EXIT_USAGE
    return run


def _pinned(vkeys: list[str]) -> KeyHistory | None:
    from monitoring.audit.keys import KeyHistory, parse_vkey_window

    if not vkeys:
        return None
    return KeyHistory([parse_vkey_window(text) for text in vkeys])


@_usage_errors
def _verify(args: argparse.Namespace) -> int:
    from monitoring.audit.verify import StoreUnavailable, run_verify

    anchors = _anchors(args)
    history = _pinned(args.vkey)
    try:
        with _progress(args.full and not args.no_progress and not args.json) as progress:
            report = run_verify(Path(args.db), full=args.full,
                                sidecar=Path(args.sidecar) if args.sidecar else None,
                                anchors=anchors, history=history, progress=progress)
    except StoreUnavailable as exc:
        raise _Usage(str(exc)) from None
    _print_report(report, args.json)
    return cli.EXIT_OK if report.ok else cli.EXIT_PROBLEMS


def _print_report(report: Report, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report.to_json(), indent=2))
        return
    print(report.summary())
    if not report.ok:
        for line in report.problems[:MAX_LISTED]:
            print(f"  {line}")
        if len(report.problems) > MAX_LISTED:
            print(f"  ... and {len(report.problems) - MAX_LISTED} more (--json lists all)")
    for line in report.warnings:
        print(f"  warning: {line}", file=sys.stderr)


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar on a terminal (stderr), else nothing."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    with Progress("verifying", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("entries", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@_usage_errors
def _receipt(args: argparse.Namespace) -> int:
    from monitoring.audit.errors import AuditError
    from monitoring.audit.external import StoreView, open_signed
    from monitoring.audit.merkle import (
        consistency_proof,
        inclusion_proof,
        leaf_hash,
        verify_inclusion,
    )
    from monitoring.audit.receipt import build_receipt
    from monitoring.audit.verify import key_history

    db, _sidecar = _paths(args)
    with _read_only(db) as storage:
        history = key_history(storage)
        newest = storage.latest_checkpoint()
        if newest is None:
            raise AuditError("the ledger has no signed checkpoint yet")
        view = StoreView(storage.origin, history, newest, storage.checkpoint,
                         lambda _s: None, lambda _s: b"")
        cp = open_signed(view, newest.note)
        signer = _signer(history, newest.note, cp.size)
        if not 0 <= args.seq < cp.size:
            raise AuditError(f"seq {args.seq}: not in the newest checkpoint (size {cp.size})")
        entry = storage.entry(args.seq)
        if entry is None or not entry.envelope:
            raise AuditError(f"seq {args.seq}: the entry's payload is not in the store "
                             "(pruned, or the row is missing)")
        proof = inclusion_proof(storage, args.seq, cp.size)
        verify_inclusion(leaf_hash(entry.envelope), args.seq, cp.size, proof, cp.root)
        consistency = None
        if args.since is not None:
            if not 0 < args.since <= cp.size:
                raise AuditError(f"--since {args.since}: expected 1..{cp.size}")
            consistency = (args.since, consistency_proof(storage, args.since, cp.size))
        text = build_receipt(entry.envelope, args.seq, proof, newest.note,
                             consistency=consistency)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote the receipt of seq {args.seq} (checkpoint size {cp.size}) to "
              f"{args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    print(f"verify with: monitoring audit verify-receipt {args.output or 'RECEIPT'} "
          f"--vkey {signer}", file=sys.stderr)
    return cli.EXIT_OK


def _signer(history: KeyHistory, note: str, size: int) -> str:
    """The vkey of the key that signed ``note`` (what a verifier of the receipt needs)."""
    from monitoring.audit.note import open_note

    _body, signers = open_note(note, history.verifiers)
    return history.check_any(signers, size).vkey()


@_usage_errors
def _acknowledge(args: argparse.Namespace) -> int:
    from monitoring.audit.recovery import acknowledge

    db, sidecar = _paths(args)
    anchors = _anchors(args)
    done = acknowledge(db, sidecar, args.reason,
                       lambda: cli.open_ledger(args, check=False), anchors)
    if not done.alarms:
        print("nothing to acknowledge: the ledger raises no alarm")
        return cli.EXIT_OK
    for alarm in done.alarms:
        print(f"acknowledged {alarm}")
    where = f"; the previous sidecar is kept as {done.previous_sidecar}" \
        if done.previous_sidecar else ""
    seq = done.event.seq if done.event else None
    print(f"incarnation {done.incarnation} started (event seq {seq}){where}")
    return cli.EXIT_OK
