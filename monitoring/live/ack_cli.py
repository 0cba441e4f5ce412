"""``monitoring ack FINGERPRINT``: acknowledge an alert, which stops its escalation.

Talks to the running engine (``--url``), which records the acknowledgement, stops the
escalation and tells the channels already notified; with no engine running it records the
acknowledgement in the store (``--db``), audited, and the engine's escalations see it when
they start (an acknowledged episode is not escalated further).

Exit codes: 0 acknowledged; 1 no such active alert; 2 bad input or could not run.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from monitoring.live import client
from monitoring.live.client import CommandError, Unreachable

PROG = "monitoring ack"
_FINGERPRINT = re.compile(r"[0-9a-f]{16}\Z")


def add_parsers(sub: Any) -> None:
    """Register ``monitoring ack``."""
    p = sub.add_parser("ack", parents=[client.connection_options()],
                       help="acknowledge an alert (stops its escalation)",
                       description="Acknowledge the alert FINGERPRINT (16 hex digits, from "
                       "'monitoring alerts' or the API).")
    p.add_argument("fingerprint", metavar="FINGERPRINT")
    p.add_argument("--by", default=client.default_user(), help="who (default: $USER)")
    p.add_argument("--comment", default="", help="a note (recorded in the audit ledger)")
    p.set_defaults(func=lambda args: client.run(_ack, args, PROG))


def _ack(args: argparse.Namespace) -> int:
    fp = args.fingerprint
    if not _FINGERPRINT.match(fp):
        raise CommandError(f"FINGERPRINT: expected 16 lowercase hex digits, got {fp!r}")
    try:
        status, data = client.call(args.url, "POST", f"/api/v1/alerts/{fp}/ack",
                                   {"by": args.by, "comment": args.comment})
    except Unreachable:
        from monitoring.notify.acks import AckError, AckStore

        with client.offline(args.db) as off:
            try:
                AckStore(off.conn.cursor(), off.clock, off.audit).acknowledge(
                    fp, by=args.by, comment=args.comment)
            except AckError as exc:
                raise CommandError(str(exc)) from None
        print(f"acknowledged {fp} in {args.db} (no engine at {args.url}; its escalation "
              "stops when the engine starts)")
        return client.EXIT_OK
    if status != 200:
        raise client.api_error(status, data)
    print(f"acknowledged {fp} by {args.by}; {data.get('messages', 0)} notification(s) sent")
    return client.EXIT_OK
