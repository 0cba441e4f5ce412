"""The ``monitoring audit`` command and what its sub-commands share.

Each ``*_cli`` module listed in :data:`AUDIT_COMMANDS` adds its sub-commands with
``add_parsers(subparsers)``; they all take the options of :func:`common_options` and open the
ledger with :func:`open_ledger`, so paths and keys are resolved the same way everywhere.
Heavy modules are imported inside the commands so ``monitoring --help`` stays fast.

Exit codes: 0 success, 1 the command found a problem (a bad event, a failed verification),
2 it could not run (bad flags, a missing file, a locked ledger).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitoring.audit.ledger import Ledger

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

AUDIT_COMMANDS = (
    "monitoring.audit.ledger_cli",  # init, append, keygen, rotate-key, status
    "monitoring.audit.verify_cli",  # verify, receipt, verify-receipt, acknowledge
    "monitoring.audit.anchors_cli",  # anchor, witness
    "monitoring.audit.retention_cli",  # prune, archive, erase
    "monitoring.audit.search_cli",  # search
    "monitoring.audit.elastic_cli",  # ship, reconcile
)
"""Modules that add ``audit`` sub-commands; a module that does not exist yet is skipped."""


def common_options() -> argparse.ArgumentParser:
    """The options every ``audit`` sub-command that opens a ledger takes (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--db", required=True, metavar="DB", help="the store (a DuckDB file)")
    p.add_argument("--key", metavar="FILE", help="the Ed25519 signing key (default: "
                   "$MONITORING_AUDIT_KEY, $MONITORING_AUDIT_KEY_FILE, or "
                   "~/.config/monitoring/audit-signing.key)")
    p.add_argument("--kek", metavar="FILE", help="the key that wraps the per-subject keys "
                   "(default: $MONITORING_AUDIT_KEK(_FILE) or ~/.config/monitoring/audit-kek)")
    p.add_argument("--sidecar", metavar="FILE",
                   help="the checkpoint sidecar file (default: DB.checkpoints)")
    p.add_argument("--vault", metavar="DIR",
                   help="the folder of per-subject keys (default: DB.subject-keys)")
    p.add_argument("--config", metavar="DIR",
                   help="a folder with audit_filters.yaml (compliance filters and presets)")
    return p


def open_ledger(args: argparse.Namespace, **options: Any) -> Ledger:
    """Open the ledger the common options name (created if missing)."""
    from monitoring.audit.ledger import Ledger

    return Ledger.open(
        Path(args.db),
        key_path=Path(args.key) if args.key else None,
        kek_path=Path(args.kek) if args.kek else None,
        sidecar=Path(args.sidecar) if args.sidecar else None,
        vault_dir=Path(args.vault) if args.vault else None,
        policy=load_policy(args.config) if args.config else None,
        **options,
    )


def load_policy(folder: str) -> Any:
    """The audit policy of ``folder/audit_filters.yaml``; its problems are located errors."""
    from monitoring.audit.errors import AuditError
    from monitoring.audit.policy import AuditPolicy
    from monitoring.dsl.config import load_audit_filters
    from monitoring.dsl.diagnostics import Severity
    from monitoring.dsl.render import render_text
    from monitoring.dsl.source import SourceFile

    path = Path(folder)
    if path.is_dir():
        candidates = [path / "audit_filters.yaml", path / "audit_filters.yml"]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise AuditError(f"{folder}: no audit_filters.yaml in this folder")
        path = found[0]
    config, diags = load_audit_filters(SourceFile.read(path))
    errors = [d for d in diags if d.severity is Severity.ERROR]
    if errors:
        raise AuditError("\n".join(render_text(d, False) for d in errors))
    return AuditPolicy.from_config(config)


def add_parsers(subparsers: Any) -> None:
    """Add ``audit`` and its sub-commands to the ``monitoring`` command."""
    p = subparsers.add_parser(
        "audit", help="the tamper-evident audit ledger",
        description="Append to, verify, search and maintain the audit ledger kept in a store.")
    sub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda _args: _no_subcommand(p))
    for module in AUDIT_COMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.add_parsers(sub)


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return EXIT_USAGE


def run(func: Any, args: argparse.Namespace) -> int:
    """Run a sub-command body; an :class:`AuditError` becomes a message and exit code 1."""
    from monitoring.audit.errors import AuditError, LedgerLockedError, SigningKeyError

    try:
        return int(func(args))
    except (LedgerLockedError, SigningKeyError) as exc:
        print(f"monitoring audit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AuditError as exc:
        print(f"monitoring audit: error: {exc}", file=sys.stderr)
        return EXIT_PROBLEMS
