"""``monitoring audit anchor`` and ``monitoring audit witness``: anchoring from the shell.

``anchor`` publishes the ledger's newest checkpoint once, now, to the folders and witnesses
named, and prints what each one holds afterwards (the background
:class:`~monitoring.audit.anchors.AnchorService` does the same continuously inside the engine).
``witness serve`` runs a tlog witness (:mod:`monitoring.audit.witness`) for the logs named;
``witness vkey`` prints its cosigner key, which is what a log is given to check cosignatures.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.audit import cli

if TYPE_CHECKING:
    from monitoring.audit.anchors import Anchor


def add_parsers(sub: Any) -> None:
    """Add ``anchor`` and ``witness`` to the ``audit`` sub-commands."""
    p = sub.add_parser(
        "anchor", parents=[cli.common_options(), anchor_options()],
        help="publish the newest checkpoint to external anchors now",
        description="Publish the ledger's newest signed checkpoint to folders (on another "
        "volume) and tlog witnesses, once. Exit 1 if an anchor refused it: ROLLBACK or FORK "
        "in the message means the ledger lost entries or was rewritten.")
    p.set_defaults(func=lambda args: cli.run(_anchor, args))

    w = sub.add_parser("witness", help="run a transparency-log witness (c2sp.org/tlog-witness)",
                       description="A witness cosigns a log's checkpoints only when each is "
                       "consistent with the last one it cosigned; run it on another host.")
    wsub = w.add_subparsers(dest="witness_command", metavar="SUBCOMMAND")
    w.set_defaults(func=lambda _args: _usage(w))
    key_options = argparse.ArgumentParser(add_help=False)
    key_options.add_argument("--state", metavar="DIR", required=True,
                             help="the witness's folder (stored checkpoints, evidence, key)")
    key_options.add_argument("--name", default=None, metavar="NAME",
                             help="the witness's key name (default monitoring.local/witness)")
    key_options.add_argument("--key", metavar="FILE",
                             help="its Ed25519 key (default STATE/witness.key, made 0600)")

    s = wsub.add_parser("serve", parents=[key_options], help="serve add-checkpoint over HTTP")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default "
                   "127.0.0.1)")
    s.add_argument("--port", type=int, default=0, help="port (default: a free one, printed)")
    s.add_argument("--log", metavar="ORIGIN=VKEY", action="append", default=[],
                   help="a log the witness accepts, with its key (repeatable)")
    s.add_argument("--logs", metavar="FILE", action="append", default=[],
                   help="a file of 'ORIGIN VKEY' lines (# comments)")
    s.add_argument("--prefix", default="", help="URL path prefix of the endpoints")
    s.add_argument("--quiet", action="store_true", help="do not log requests to stderr")
    s.set_defaults(func=lambda args: cli.run(_serve, args))

    v = wsub.add_parser("vkey", parents=[key_options],
                        help="print the witness's cosigner key (created if missing)")
    v.set_defaults(func=lambda args: cli.run(_vkey, args))


def anchor_options(folder_flag: str = "--to-folder") -> argparse.ArgumentParser:
    """The options that name anchors (a parent parser); :func:`anchors_from_args` builds them.

    Folders land in ``args.anchor_folders`` whatever ``folder_flag`` is called.
    """
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument(folder_flag, metavar="DIR", action="append", default=[],
                   dest="anchor_folders", help="a folder anchor (repeatable)")
    p.add_argument("--witness", metavar="URL", action="append", default=[],
                   help="a tlog witness's submission URL (repeatable; one --witness-vkey each)")
    p.add_argument("--witness-vkey", metavar="VKEY", action="append", default=[],
                   help="the witness's cosigner key (name+keyid+base64)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per witness request (default 10)")
    return p


def anchors_from_args(args: argparse.Namespace, sidecar: Path | None = None) -> list[Anchor]:
    """The anchors of :func:`anchor_options`; AnchorError for a bad URL or key.

    With ``sidecar``, each witness keeps its client state beside it
    (:func:`~monitoring.audit.anchors.default_state_path`).
    """
    from monitoring.audit.anchors import FileAnchor, WitnessAnchor, default_state_path
    from monitoring.audit.errors import AnchorError

    if len(args.witness) != len(args.witness_vkey):
        raise AnchorError("give one --witness-vkey per --witness")
    anchors: list[Anchor] = [FileAnchor(folder) for folder in args.anchor_folders]
    anchors += [WitnessAnchor(url, vkey, args.timeout,
                              state=default_state_path(sidecar, url) if sidecar else None)
                for url, vkey in zip(args.witness, args.witness_vkey, strict=True)]
    return anchors


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return cli.EXIT_USAGE


def _anchor(args: argparse.Namespace) -> int:
    from monitoring.audit.anchors import WitnessAnchor
    from monitoring.audit.errors import AnchorError
    from monitoring.audit.note import Checkpoint

    if not args.anchor_folders and not args.witness:
        return _usage_error("anchor", "name at least one --to-folder or --witness")
    with cli.open_ledger(args) as ledger:
        newest = ledger.storage.latest_checkpoint()
        if newest is None:
            print("monitoring audit anchor: the ledger has no checkpoint yet", file=sys.stderr)
            return cli.EXIT_PROBLEMS
        cp = Checkpoint(ledger.origin, newest.size, newest.root)

        def proof_from(old: int) -> list[bytes]:
            return ledger.consistency_proof(old, cp.size) if 0 < old < cp.size else []

        try:
            anchors = anchors_from_args(args, ledger.paths.sidecar)
        except AnchorError as exc:
            return _usage_error("anchor", str(exc))
        failed = 0
        for anchor in anchors:
            try:
                if isinstance(anchor, WitnessAnchor):
                    result = anchor.submit(newest.note, cp, proof_from)
                    done = (f"cosigned size {cp.size} of {cp.origin} at {result.timestamp} "
                            f"(it held size {result.previous_size})")
                else:
                    anchor.publish(newest.note, cp, proof_from)
                    done = f"holds size {cp.size} of {cp.origin}"
            except AnchorError as exc:
                failed += 1
                print(f"monitoring audit: error: {exc}", file=sys.stderr)
            else:
                print(f"{anchor.name}: {done}")
    return cli.EXIT_PROBLEMS if failed else cli.EXIT_OK


def _usage_error(command: str, message: str) -> int:
    print(f"monitoring audit {command}: error: {message}", file=sys.stderr)
    return cli.EXIT_USAGE


def _witness(args: argparse.Namespace, logs: list[Any]) -> Any:
    from monitoring.audit.witness import DEFAULT_NAME, open_witness

    return open_witness(Path(args.state), logs, name=args.name or DEFAULT_NAME,
                        key_path=Path(args.key) if args.key else None)


def _vkey(args: argparse.Namespace) -> int:
    print(_witness(args, []).vkey)
    return cli.EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    from monitoring.audit.witness import WitnessConfigError, WitnessServer, log_verifiers

    try:
        logs = log_verifiers(args.log, [Path(f) for f in args.logs])
    except WitnessConfigError as exc:
        return _usage_error("witness", str(exc))
    if not logs:
        return _usage_error("witness", "name the logs to witness with --log ORIGIN=VKEY or "
                                       "--logs FILE")
    witness = _witness(args, logs)
    try:
        server = WitnessServer(witness, args.host, args.port, args.prefix)
    except OSError as exc:
        return _usage_error("witness", f"cannot listen on {args.host}:{args.port}: "
                                       f"{exc.strerror}")
    if not args.quiet:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s witness %(message)s")
    print(f"witness {witness.key.name} listening on {server.url}")
    print(f"vkey {witness.vkey}")
    print(f"logs {' '.join(sorted(witness.logs))}", flush=True)

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(cli.EXIT_OK)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return cli.EXIT_OK
