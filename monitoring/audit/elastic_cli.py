"""``monitoring audit ship`` and ``monitoring audit reconcile``: the Elasticsearch copy.

``ship`` copies entries after the highest one already in the index (and the checkpoints) with
bulk ``create`` operations, so it can be run repeatedly (from cron, say) and never overwrites
a document; a document id that already holds something else is reported (exit 1).
``reconcile`` compares every document of the ledger's origin with the ledger and lists those
that were altered, are missing, or should not be there, and checkpoint documents that reveal a
rolled-back or forked ledger (exit 1 for any). The API key, if the cluster needs one, comes
from the environment variable ``MONITORING_ELASTICSEARCH_API_KEY``; user and password may be
given in the URL.

Exit codes: 0 success, 1 a conflict, failure or discrepancy, 2 the command could not run
(Elasticsearch unreachable after the retries, bad flags, a locked ledger).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from monitoring.audit import cli

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

    from monitoring.audit.elastic import Retry
    from monitoring.audit.ledger import Ledger

_R = TypeVar("_R")

API_KEY_ENV = "MONITORING_ELASTICSEARCH_API_KEY"


def _es_options() -> argparse.ArgumentParser:
    from monitoring.audit.elastic import DEFAULT_CHECKPOINTS_INDEX, DEFAULT_EVENTS_INDEX

    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--es", required=True, metavar="URL",
                   help="the Elasticsearch URL (e.g. http://localhost:9200)")
    p.add_argument("--index", default=DEFAULT_EVENTS_INDEX,
                   help=f"the events index (default {DEFAULT_EVENTS_INDEX})")
    p.add_argument("--checkpoint-index", default=DEFAULT_CHECKPOINTS_INDEX,
                   help=f"the checkpoints index (default {DEFAULT_CHECKPOINTS_INDEX})")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="per-request timeout (default 10)")
    p.add_argument("--attempts", type=int, default=6, metavar="N",
                   help="attempts per request on 429/5xx/connection errors (default 6)")
    return p


def add_parsers(sub: Any) -> None:
    """Add ``ship`` and ``reconcile`` to ``monitoring audit``."""
    es = _es_options()
    p = sub.add_parser(
        "ship", parents=[cli.common_options(), es], help="copy the ledger to Elasticsearch",
        description="Ship entries (after the highest one already shipped) and checkpoints to "
        "Elasticsearch with bulk create operations (never overwriting). Exit 1 if a document "
        "id already holds a different document or a document could not be stored.")
    p.add_argument("--batch", type=int, default=500, metavar="N",
                   help="documents per bulk request (default 500)")
    p.add_argument("--refresh", action="store_true",
                   help="make the documents searchable before returning")
    p.set_defaults(func=lambda args: cli.run(cmd_ship, args))

    p = sub.add_parser(
        "reconcile", parents=[cli.common_options(), es],
        help="check the Elasticsearch copy against the ledger",
        description="Compare every document of the ledger's origin in Elasticsearch with the "
        "ledger: altered, missing and extra documents, and signed checkpoints that show a "
        "rolled-back or forked ledger. Exit 1 for any discrepancy.")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=lambda args: cli.run(cmd_reconcile, args))


def _client(args: argparse.Namespace) -> Elasticsearch:
    from monitoring.audit.elastic import connect

    return connect(args.es, api_key=os.environ.get(API_KEY_ENV) or None,
                   timeout_s=args.timeout)


def _check(args: argparse.Namespace) -> str | None:
    """A usage problem with the flags, or None."""
    from pathlib import Path

    if not Path(args.db).exists():
        return f"{args.db}: no such store"
    if args.attempts < 1:
        return f"--attempts: expected at least 1, got {args.attempts}"
    if getattr(args, "batch", 1) < 1:
        return f"--batch: expected at least 1, got {args.batch}"
    return None


def _run(args: argparse.Namespace, job: Callable[[Ledger, Elasticsearch], _R]) -> _R | int:
    """``job(ledger, client)``, or an exit code: 2 for bad flags or an unreachable cluster."""
    from monitoring.audit.elastic import ElasticUnavailable

    problem = _check(args)
    if problem:
        print(f"monitoring audit: error: {problem}", file=sys.stderr)
        return cli.EXIT_USAGE
    es = _client(args)
    try:
        with cli.open_ledger(args) as ledger:
            return job(ledger, es)
    except ElasticUnavailable as exc:
        print(f"monitoring audit: error: {exc}", file=sys.stderr)
        return cli.EXIT_USAGE
    finally:
        es.close()


def _retry(args: argparse.Namespace) -> Retry:
    from monitoring.audit.elastic import Retry

    return Retry(attempts=args.attempts)


def cmd_ship(args: argparse.Namespace) -> int:
    """Ship and print what was done."""
    from monitoring.audit.elastic import ElasticShipper

    report = _run(args, lambda ledger, es: ElasticShipper(
        es, index=args.index, checkpoint_index=args.checkpoint_index, batch=args.batch,
        retry=_retry(args)).ship(ledger, refresh=args.refresh))
    if isinstance(report, int):
        return report
    for conflict in report.conflicts:
        print(f"CONFLICT {conflict}", file=sys.stderr)
    for failure in report.failed:
        print(f"FAILED {failure}", file=sys.stderr)
    extra = []
    if report.already:
        extra.append(f"{report.already} already there")
    if report.skipped_pruned:
        extra.append(f"{report.skipped_pruned} pruned entries skipped")
    if report.retries:
        extra.append(f"{report.retries} retries")
    note = f" ({', '.join(extra)})" if extra else ""
    print(f"shipped {report.shipped} entries (seq {report.start}..{report.end - 1}) and "
          f"{report.checkpoints} checkpoints to {args.es}{note}")
    return cli.EXIT_OK if report.ok else cli.EXIT_PROBLEMS


def cmd_reconcile(args: argparse.Namespace) -> int:
    """Reconcile and print the discrepancies."""
    from monitoring.audit.elastic import reconcile

    report = _run(args, lambda ledger, es: reconcile(
        ledger, es, index=args.index, checkpoint_index=args.checkpoint_index,
        retry=_retry(args)))
    if isinstance(report, int):
        return report
    if args.format == "json":
        json.dump({"ok": report.ok, "origin": report.origin, "ledger_size": report.ledger_size,
                   "documents": report.documents, "checkpoints": report.checkpoints,
                   "not_shipped": report.not_shipped, "counts": report.counts,
                   "discrepancies": [{"kind": d.kind, "index": d.index, "doc_id": d.doc_id,
                                      "seq": d.seq, "detail": d.detail}
                                     for d in report.discrepancies]}, sys.stdout)
        sys.stdout.write("\n")
    else:
        for alarm in report.alarms():
            print(str(alarm), file=sys.stderr)
        shown = sum(report.counts.values()) - len(report.discrepancies)
        if shown:
            print(f"... and {shown} more discrepancies", file=sys.stderr)
        verdict = "OK" if report.ok else "MISMATCH " + ", ".join(
            f"{n} {kind}" for kind, n in sorted(report.counts.items()))
        print(f"{verdict}: {report.documents} documents and {report.checkpoints} checkpoints "
              f"compared with ledger size {report.ledger_size}; {report.not_shipped} entries "
              "not shipped yet")
    return cli.EXIT_OK if report.ok else cli.EXIT_PROBLEMS
