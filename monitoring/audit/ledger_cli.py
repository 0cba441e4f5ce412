"""``monitoring audit init | append | keygen | rotate-key | status``: the ledger from the shell.

``append`` lets programs in any language write to the ledger: one event per line of JSON on
stdin, with the field names of the seed's ``log_audit_event`` (``event_type``, ``action``,
``user_id``, ``severity``, ``details``, ...). The whole input is read and checked first; a bad
line is reported as ``<stdin>:LINE: error: FIELD: MESSAGE`` and skipped, every good line is
appended and durable before the command returns, and the exit code is 1 if any line was bad.
With ``--strict`` nothing is appended unless every line is good.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from monitoring.audit import cli


def add_parsers(sub: Any) -> None:
    """Add the ledger's own sub-commands to ``monitoring audit``."""
    common = cli.common_options()
    p = sub.add_parser("init", parents=[common], help="create the ledger in a store",
                       description="Create the audit ledger (tables, genesis entry, first "
                       "checkpoint) in a store, or report the existing one.")
    p.add_argument("--origin", metavar="ORIGIN",
                   help="the new ledger's identity (default monitoring.local/audit/<random>)")
    p.set_defaults(func=lambda args: cli.run(cmd_init, args))

    p = sub.add_parser(
        "append", parents=[common], help="append events given as JSON lines",
        description="Append audit events, one JSON object per line (the fields of "
        "log_audit_event: event_type, action, user_id, severity, resource, outcome, details, "
        "source, correlation_id, subject, retention). Bad lines are reported with their line "
        "number and skipped; all good lines are durable when the command returns. Exit 1 if "
        "any line was bad.")
    p.add_argument("input", nargs="?", default="-", metavar="FILE",
                   help="a file of JSON lines (default: standard input)")
    p.add_argument("--strict", action="store_true",
                   help="append nothing unless every line is a valid event")
    p.add_argument("--quiet", action="store_true", help="print no summary")
    p.set_defaults(func=lambda args: cli.run(cmd_append, args))

    p = sub.add_parser("keygen", help="write a new Ed25519 signing key file (mode 0600)",
                       description="Write a new signing key (a base64 Ed25519 seed) to FILE, "
                       "readable by its owner only; an existing file is never overwritten.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--origin", metavar="ORIGIN",
                   help="print the verifier key (vkey) the key has as this ledger's key")
    p.set_defaults(func=lambda args: cli.run(cmd_keygen, args))

    p = sub.add_parser(
        "rotate-key", parents=[common], help="switch the ledger to a new signing key",
        description="Record a key.rotate event signed by the current key; checkpoints after "
        "it are signed by the new key. Open the ledger with the new key from then on.")
    p.add_argument("--new-key", required=True, metavar="FILE",
                   help="the new key (see 'monitoring audit keygen')")
    p.set_defaults(func=lambda args: cli.run(cmd_rotate_key, args))

    p = sub.add_parser(
        "status", parents=[common], help="show the ledger's size, key and sidecar state",
        description="Show the ledger's origin, size, current verifier key, newest checkpoint "
        "and whether the sidecar agrees with the store (read-only; no key needed). Exit 1 if "
        "the sidecar and the store disagree. 'monitoring audit verify' checks everything.")
    p.set_defaults(func=lambda args: cli.run(cmd_status, args))


# ---------------------------------------------------------------------- init


def cmd_init(args: argparse.Namespace) -> int:
    """Create (or open) the ledger and print its identity."""
    existed = _ledger_exists(Path(args.db))
    with cli.open_ledger(args, origin=args.origin) as ledger:
        if existed and args.origin and args.origin != ledger.origin:
            print(f"monitoring audit: note: the ledger already exists with origin "
                  f"{ledger.origin}; --origin ignored", file=sys.stderr)
        print(f"{'ledger exists' if existed else 'created ledger'} {ledger.origin} "
              f"in {args.db}")
        print(f"size:    {ledger.size}")
        print(f"vkey:    {ledger.key.vkey()}")
        print(f"sidecar: {ledger.paths.sidecar}")
    return cli.EXIT_OK


def _ledger_exists(db: Path) -> bool:
    if not db.exists():
        return False
    import duckdb

    from monitoring.audit.storage import LedgerStorage

    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.Error:
        return True  # in use or unreadable: opening it will say which
    try:
        return LedgerStorage.exists(conn)
    finally:
        conn.close()


# ---------------------------------------------------------------------- append


@dataclass(frozen=True)
class _Line:
    number: int
    event: Any  # AuditEvent


def cmd_append(args: argparse.Namespace) -> int:
    """Read, check and append JSON-lines events; report bad lines by number."""
    name = "<stdin>" if args.input == "-" else args.input
    if args.input == "-":
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.input).read_bytes()
        except OSError as exc:
            print(f"monitoring audit: error: {args.input}: cannot read: {exc.strerror}",
                  file=sys.stderr)
            return cli.EXIT_USAGE
    good, errors = parse_event_lines(data)
    with cli.open_ledger(args) as ledger:
        policy_errors = [(line.number, msg) for line in good
                         if (msg := _policy_problem(ledger.policy, line.event))]
        errors.extend(policy_errors)
        bad = {n for n, _ in policy_errors}
        good = [line for line in good if line.number not in bad]
        if errors and args.strict:
            _report(errors, name, sys.stderr)
            print(f"monitoring audit: --strict: {len(errors)} bad line(s); nothing appended",
                  file=sys.stderr)
            return cli.EXIT_PROBLEMS
        if args.strict:
            results = ledger.append_many([line.event for line in good]) if good else []
            outcomes: list[tuple[int, Any]] = [(line.number, r) for line, r in zip(good, results,
                                                                                  strict=True)]
        else:
            outcomes = _append_each(ledger, good)
        for number, outcome in outcomes:
            if isinstance(outcome, BaseException):
                errors.append((number, str(outcome)))
        size = ledger.size
    _report(errors, name, sys.stderr)
    appended = sum(1 for _, o in outcomes if not isinstance(o, BaseException) and o.recorded)
    filtered = sum(1 for _, o in outcomes if not isinstance(o, BaseException) and not o.recorded)
    if not args.quiet:
        print(f"appended {appended}, filtered {filtered}, rejected {len(errors)}; "
              f"newest checkpoint size {size}")
    return cli.EXIT_PROBLEMS if errors else cli.EXIT_OK


def parse_event_lines(data: bytes) -> tuple[list[_Line], list[tuple[int, str]]]:
    """The valid events of a JSON-lines input, and ``(line, message)`` for every bad line.

    Blank lines are skipped. A line must be one JSON object without duplicate keys whose
    fields make a valid event.
    """
    from monitoring.audit.envelope import event_from_mapping
    from monitoring.audit.errors import EventError

    good: list[_Line] = []
    errors: list[tuple[int, str]] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.append((number, f"not UTF-8 (byte {exc.start + 1})"))
            continue
        try:
            obj = json.loads(text, object_pairs_hook=_no_duplicates)
        except _DuplicateKey as exc:
            errors.append((number, f"{exc.key}: duplicate key"))
            continue
        except json.JSONDecodeError as exc:
            errors.append((number, f"not JSON: {exc.msg} (column {exc.colno})"))
            continue
        try:
            good.append(_Line(number, event_from_mapping(obj)))
        except EventError as exc:
            errors.append((number, str(exc)))
    return good, errors


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _policy_problem(policy: Any, event: Any) -> str | None:
    """What the policy refuses about an event, or None.

    An unknown retention class, or a field the compliance presets in force require.
    """
    from monitoring.audit.errors import EventError
    from monitoring.audit.writer import admit

    try:
        admit(policy, event)
    except EventError as exc:
        return str(exc)
    return None


def _append_each(ledger: Any, lines: Sequence[_Line]) -> list[tuple[int, Any]]:
    """Submit every event (the writer batches them), then wait for all of them."""
    from monitoring.audit.errors import AuditError

    futures: list[tuple[int, Future[Any]]] = [(line.number, ledger.submit(line.event))
                                              for line in lines]
    outcomes: list[tuple[int, Any]] = []
    for number, future in futures:
        try:
            outcomes.append((number, future.result()))
        except AuditError as exc:
            outcomes.append((number, exc))
    return outcomes


def _report(errors: list[tuple[int, str]], name: str, out: IO[str]) -> None:
    for number, message in sorted(errors):
        print(f"{name}:{number}: error: {message}", file=out)


# ---------------------------------------------------------------------- keys


def cmd_keygen(args: argparse.Namespace) -> int:
    """Write a new signing key file."""
    from monitoring.audit.keys import SigningKey, write_key_file

    key = SigningKey.generate(args.origin or "monitoring.local/audit/new")
    write_key_file(Path(args.file), key)
    print(f"wrote a new Ed25519 signing key to {args.file} (mode 0600)")
    if args.origin:
        print(f"vkey: {key.vkey()}")
    else:
        print("its verifier key depends on the ledger's origin: see 'monitoring audit "
              "status' after 'rotate-key', or pass --origin")
    return cli.EXIT_OK


def cmd_rotate_key(args: argparse.Namespace) -> int:
    """Rotate the ledger to the key in ``--new-key``."""
    from monitoring.audit.keys import load_signing_key

    with cli.open_ledger(args) as ledger:
        old = ledger.key.verifier()
        new = load_signing_key(ledger.origin, Path(args.new_key))
        appended = ledger.rotate_key(new)
        size = appended.checkpoint_size
        print(f"rotated the signing key at size {size} (seq {appended.seq})")
        print(f"old key {old.key_hex}: valid for checkpoints of sizes 1..{size}")
        print(f"new key {new.verifier().key_hex}: valid for sizes > {size}")
        print(f"new vkey: {new.vkey()}")
    print(f"open the ledger with --key {args.new_key} (or $MONITORING_AUDIT_KEY_FILE) from "
          "now on; the old key no longer opens it")
    return cli.EXIT_OK


# ---------------------------------------------------------------------- status


def cmd_status(args: argparse.Namespace) -> int:
    """Print the ledger's state, read-only."""
    import duckdb

    from monitoring.audit.errors import AuditError
    from monitoring.audit.paths import ledger_paths
    from monitoring.audit.sidecar import Sidecar
    from monitoring.audit.storage import LedgerStorage

    db = Path(args.db)
    if not db.exists():
        raise AuditError(f"{db}: no such store")
    paths = ledger_paths(db, sidecar=Path(args.sidecar) if args.sidecar else None)
    try:
        conn = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        from monitoring.engine.store import describe_open_error

        raise AuditError(describe_open_error(db, str(exc))) from None
    try:
        if not LedgerStorage.exists(conn):
            raise AuditError(f"{db}: holds no audit ledger (create one with "
                             "'monitoring audit init')")
        storage = LedgerStorage(conn)
        latest = storage.latest_checkpoint()
        print(f"origin:     {storage.origin}")
        print(f"entries:    {storage.entry_count()} (seq 0..{storage.size() - 1})")
        if latest is None:
            print("checkpoint: none")
        else:
            when = datetime.fromtimestamp(latest.created_us / 1e6, UTC)
            print(f"checkpoint: size {latest.size}, root "
                  f"{base64.b64encode(latest.root).decode()}, signed "
                  f"{when.isoformat(timespec='seconds')}")
        print(f"key:        {_current_vkey(storage)}")
        problems = _sidecar_status(Sidecar(paths.sidecar), latest.size if latest else 0)
    finally:
        conn.close()
    return cli.EXIT_PROBLEMS if problems else cli.EXIT_OK


def _current_vkey(storage: Any) -> str:
    from monitoring.audit.errors import AuditError
    from monitoring.audit.verify import key_history

    try:
        history = key_history(storage)
    except AuditError as exc:
        return f"unknown ({exc}; run 'monitoring audit verify')"
    rotations = len(history.windows) - 1
    suffix = f" ({rotations} rotation{'s' if rotations != 1 else ''})" if rotations else ""
    return history.current.vkey() + suffix


def _sidecar_status(sidecar: Any, head: int) -> bool:
    """Print the sidecar's state; True when it disagrees with the store."""
    scan = sidecar.scan()
    if not scan.exists:
        print(f"sidecar:    {sidecar.path}: missing")
        return head > 0
    newest = scan.records[-1] if scan.records else None
    size = newest.size if newest else 0
    state = "agrees with the store" if size == head else (
        "behind the store (a crash before the sidecar append; the next open repairs it)"
        if size < head else "AHEAD of the store (entries were lost or rolled back)")
    print(f"sidecar:    {sidecar.path}: {len(scan.records)} checkpoints, newest size {size}, "
          f"{state}")
    if scan.torn is not None:
        print(f"            a torn final line ({len(scan.torn)} bytes, never acknowledged)")
    for error in scan.errors:
        print(f"            {error}")
    return size > head or bool(scan.errors)
