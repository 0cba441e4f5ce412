"""``monitoring silence add | list | expire``: mute alerts by label matchers for a while.

Talks to the running engine (``--url``); with no engine running it writes to the store
(``--db``) directly, audited the same way (see :mod:`monitoring.live.client`).

Exit codes: 0 done; 1 the silence was not found; 2 bad input or the command could not run.
"""

from __future__ import annotations

import argparse
from typing import Any

from monitoring.live import client
from monitoring.live.client import CommandError, Unreachable

PROG = "monitoring silence"


def add_parsers(sub: Any) -> None:
    """Register ``monitoring silence`` and its sub-commands."""
    conn = client.connection_options()
    p = sub.add_parser("silence", help="mute alerts matching label matchers for a while",
                       description="Create, list and expire silences (Alertmanager matcher "
                       "syntax: name=\"v\", name!=\"v\", name=~\"re\", name!~\"re\").")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    a = actions.add_parser("add", parents=[conn], help="create a silence",
                           description="Silence alerts matching every MATCHER.")
    a.add_argument("matchers", nargs="+", metavar="MATCHER",
                   help='e.g. alertname="HighErrorRate" instance=~"api-.*"')
    a.add_argument("--duration", help="how long, e.g. 2h (or give --ends)")
    a.add_argument("--ends", help="end time (RFC 3339 or Unix seconds)")
    a.add_argument("--starts", help="start time (default: now)")
    a.add_argument("--comment", required=True, help="why (recorded in the audit ledger)")
    a.add_argument("--by", default=client.default_user(), help="who (default: $USER)")
    a.set_defaults(func=lambda args: client.run(_add, args, PROG))

    ls = actions.add_parser("list", parents=[conn], help="list silences")
    ls.add_argument("--expired", action="store_true", help="include expired silences")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(func=lambda args: client.run(_list, args, PROG))

    e = actions.add_parser("expire", parents=[conn], help="end a silence now")
    e.add_argument("id", metavar="ID", help="the silence's id (from 'silence list')")
    e.add_argument("--by", default=client.default_user(), help="who (default: $USER)")
    e.set_defaults(func=lambda args: client.run(_expire, args, PROG))


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"matchers": args.matchers, "created_by": args.by,
                            "comment": args.comment}
    for key, value in (("duration", args.duration), ("ends_at", args.ends),
                       ("starts_at", args.starts)):
        if value is not None:
            body[key] = value
    return body


def _add(args: argparse.Namespace) -> int:
    body = _body(args)
    try:
        status, data = client.call(args.url, "POST", "/api/v1/silences", body)
    except Unreachable:
        data = _add_offline(args.db, body)
    else:
        if status != 201:
            raise client.api_error(status, data)
    print(f"silence {data['id']} until {_time(int(data['ends_ms']))}: "
          + " ".join(data["matchers"]))
    return client.EXIT_OK


def _add_offline(db: str, body: dict[str, Any]) -> dict[str, Any]:
    from monitoring.live.server import BadRequest, parse_silence, silence_error
    from monitoring.notify.silences import InvalidSilence, SilenceStore

    with client.offline(db) as off:
        try:
            req = parse_silence(body, off.clock.now_ms())
            store = SilenceStore(off.conn.cursor(), off.clock, off.audit)
            silence = store.create(req.matchers, ends_ms=req.ends_ms, starts_ms=req.starts_ms,
                                   created_by=req.created_by, comment=req.comment)
        except InvalidSilence as exc:
            raise CommandError(silence_error(exc).message) from None
        except BadRequest as exc:
            raise CommandError(exc.message) from None
        return silence.to_json(off.clock.now_ms())


def _list(args: argparse.Namespace) -> int:
    params = {"expired": "true" if args.expired else "false"}
    try:
        status, data = client.call(args.url, "GET", "/api/v1/silences", params=params)
    except Unreachable:
        from monitoring.notify.silences import SilenceStore

        with client.offline(args.db) as off:
            store = SilenceStore(off.conn.cursor(), off.clock, off.audit)
            now = off.clock.now_ms()
            data = {"silences": [s.to_json(now) for s in
                                 store.list(include_expired=args.expired)]}
    else:
        if status != 200:
            raise client.api_error(status, data)
    silences = data["silences"]
    if args.format == "json":
        client.print_json(silences)
        return client.EXIT_OK
    if not silences:
        print("no silences")
    for s in silences:
        print(f"{s['id']}  {s.get('state', ''):8}  until {_time(int(s['ends_ms']))}  "
              f"{' '.join(s['matchers'])}  by {s['created_by']}: {s['comment']}")
    return client.EXIT_OK


def _expire(args: argparse.Namespace) -> int:
    try:
        status, data = client.call(args.url, "DELETE", f"/api/v1/silences/{args.id}",
                                   params={"by": args.by})
    except Unreachable:
        from monitoring.notify.silences import SilenceError, SilenceStore

        with client.offline(args.db) as off:
            store = SilenceStore(off.conn.cursor(), off.clock, off.audit)
            try:
                data = store.expire(args.id, args.by).to_json()
            except SilenceError as exc:
                raise CommandError(str(exc), client.EXIT_PROBLEMS) from None
    else:
        if status != 200:
            raise client.api_error(status, data)
    print(f"silence {data['id']} expired")
    return client.EXIT_OK


def _time(ms: int) -> str:
    from monitoring.engine.timeparse import format_time

    return format_time(ms)
