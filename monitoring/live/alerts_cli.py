"""``monitoring alerts``, ``alerts history``, ``alerts stats``: the engine's alerts, from its DB.

``monitoring alerts`` lists the active alerts (pending, firing, no-data) as the
engine saved them after its last evaluation (``live_alert_state``); ``history``
lists state changes (``live_alert_transitions``); ``stats`` prints firings per
rule, mean time to acknowledge and to resolve, flapping and noisiest rules, and
pages per person per week (:mod:`monitoring.live.stats`).

The database is opened read-only. While ``monitoring serve`` runs it holds the
file; then all three ask the running engine's API instead (``--url``:
``/api/v1/alerts``, ``/api/v1/history``, ``/api/v1/stats``).

Exit codes: 0 done (also when there is nothing to show); 2 the command could
not run (no database, bad arguments, the database in use and no engine answering).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from monitoring.live import client
from monitoring.live.client import CommandError, Unreachable

PROG = "monitoring alerts"
STATES = ("pending", "firing", "nodata")
_NUMBER = re.compile(r"\d+(\.\d+)?\Z")


def add_parsers(sub: Any) -> None:
    """Register ``monitoring alerts`` with its ``history`` and ``stats`` sub-commands."""
    from monitoring.cli import _positive_int

    p = sub.add_parser(
        "alerts", help="active alerts, their history and statistics",
        description="List the live engine's active alerts (from its database, or from the "
        "running engine's API when the engine holds the database). Sub-commands: history, "
        "stats.")
    _db_option(p, client.DEFAULT_DB)
    p.add_argument("--url", default=client.DEFAULT_URL,
                   help="the running engine's API, asked when it holds the database "
                   f"(default {client.DEFAULT_URL})")
    p.add_argument("--state", choices=STATES, help="only alerts in this state")
    p.add_argument("--rule", help="only alerts of this rule")
    p.add_argument("--label", action="append", default=[], metavar="K=V",
                   help="only alerts with this label value (repeatable: all of them)")
    _format_option(p)
    p.set_defaults(func=lambda args: client.run(_list, args, PROG))
    actions = p.add_subparsers(dest="alerts_action", metavar="ACTION")

    h = actions.add_parser("history", help="alert state changes",
                           description="State changes of alerts, oldest first.")
    _db_option(h, argparse.SUPPRESS)
    h.add_argument("--since", default="24h",
                   help="from this long ago (24h) or this time (RFC 3339, Unix seconds); "
                   "default 24h")
    h.add_argument("--until", help="up to this time (default: now)")
    h.add_argument("--rule", help="only this rule")
    h.add_argument("--fingerprint", help="only this alert")
    _url_option(h)
    h.add_argument("--limit", type=_positive_int, default=1000,
                   help="at most this many, the newest (default 1000)")
    _format_option(h, argparse.SUPPRESS)
    h.set_defaults(func=lambda args: client.run(_history, args, f"{PROG} history"))

    s = actions.add_parser("stats", help="alert statistics",
                           description="Firings per rule, mean time to acknowledge and to "
                           "resolve, flapping and noisiest rules, pages per person per week.")
    _db_option(s, argparse.SUPPRESS)
    s.add_argument("--since", default="7d", help="from this long ago or this time (default 7d)")
    s.add_argument("--until", help="up to this time (default: now)")
    _url_option(s)
    s.add_argument("--top", type=_positive_int, default=10,
                   help="noisiest rules shown (default 10)")
    _format_option(s, argparse.SUPPRESS)
    s.set_defaults(func=lambda args: client.run(_stats, args, f"{PROG} stats"))


def _url_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=argparse.SUPPRESS,
                   help="the running engine's API, asked when it holds the database")


def _db_option(p: argparse.ArgumentParser, default: Any) -> None:
    # Sub-commands suppress their default so `alerts --db X history` keeps X.
    p.add_argument("--db", default=default, metavar="FILE",
                   help=f"the engine's database (default {client.DEFAULT_DB})")


def _format_option(p: argparse.ArgumentParser, default: Any = "table") -> None:
    p.add_argument("--format", choices=("table", "json"), default=default,
                   help="output format (default table)")


# ---------------------------------------------------------------- database


class DatabaseBusy(CommandError):
    """Another process (a running engine) holds the database."""


@contextmanager
def open_db(db: str) -> Iterator[duckdb.DuckDBPyConnection]:
    """The engine's database, read-only; clear errors for a missing or busy file."""
    path = Path(db)
    if not path.is_file():
        raise CommandError(f"no database at {db}: start `monitoring serve` (it creates it) "
                           "or give --db FILE")
    try:
        conn = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        if "lock" in str(exc).lower():
            raise DatabaseBusy(f"{db} is in use by another process (a running `monitoring "
                               "serve`?); stop it, or use its HTTP API") from None
        raise CommandError(f"{db}: cannot open the database: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


def _times(args: argparse.Namespace) -> tuple[int, int]:
    from monitoring.engine.timeparse import TimeFormatError, parse_duration_ms, parse_time_ms

    now = int(time.time() * 1000)
    try:
        until = now if args.until is None else parse_time_ms(args.until, now)
        text = args.since.strip()
        if _NUMBER.match(text) or text.startswith("now") or "T" in text or "-" in text:
            since = parse_time_ms(text, now)
        else:
            since = until - parse_duration_ms(text)
    except TimeFormatError as exc:
        raise CommandError(str(exc)) from None
    if since > until:
        raise CommandError("--since is after --until")
    return since, until


# ---------------------------------------------------------------- alerts


def _list(args: argparse.Namespace) -> int:
    labels = _label_filters(args.label)
    try:
        views = _stored_views(args.db)
    except DatabaseBusy as busy:
        views = _served_views(args.url, busy)
    views = [v for v in views
             if (args.state is None or v.get("state") == args.state)
             and (args.rule is None or args.rule in (v.get("rule"),
                                                     v.get("labels", {}).get("alertname")))
             and all(v.get("labels", {}).get(k) == val for k, val in labels.items())]
    if args.format == "json":
        client.print_json(views)
        return client.EXIT_OK
    if not views:
        print("no active alerts")
        return client.EXIT_OK
    rows = [(v["state"], _time(v.get("fired_at_ms") or v.get("active_at_ms")), v["rule"],
             v["fingerprint"], _value(v.get("value")), _labels(v["labels"]))
            for v in views]
    _table(("STATE", "SINCE", "RULE", "FINGERPRINT", "VALUE", "LABELS"), rows)
    return client.EXIT_OK


def _served_views(url: str, busy: DatabaseBusy) -> list[dict[str, Any]]:
    """The active alerts from the running engine's API."""
    try:
        status, data = client.call(url, "GET", "/api/v1/alerts")
    except Unreachable:
        raise CommandError(f"{busy} (no engine answers at {url})") from None
    if status != 200:
        raise client.api_error(status, data)
    return list(data.get("alerts", []))


def _served(url: str, path: str, query: dict[str, Any], busy: DatabaseBusy) -> Any:
    """A running engine's answer, when it holds the database."""
    params = {k: str(v) for k, v in query.items() if v is not None}
    try:
        status, data = client.call(url, "GET", path, params=params)
    except Unreachable:
        raise CommandError(f"{busy} (no engine answers at {url})") from None
    if status != 200:
        raise client.api_error(status, data)
    return data


def _stored_views(db: str) -> list[dict[str, Any]]:
    from monitoring.live.alert_state import TABLE, active_alerts, read_states
    from monitoring.live.stats import table_exists
    from monitoring.notify.model import fingerprint

    with open_db(db) as conn:
        if not table_exists(conn, TABLE):
            return []
        alerts = active_alerts(read_states(conn).values())
    return [{"fingerprint": fingerprint(a.labels), "rule": a.rule, "group": a.group,
             "file": a.file, "labels": a.labels, "state": a.state,
             "active_at_ms": a.active_at_ms, "fired_at_ms": a.fired_at_ms,
             "value": None if a.value is None else repr(a.value), "flapping": a.flapping,
             "saved_ms": a.updated_ms}
            for a in alerts]


def _label_filters(texts: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise CommandError(f"--label {text!r}: expected NAME=VALUE, e.g. instance=web-1")
        out[key.strip()] = value.strip().strip('"')
    return out


# ---------------------------------------------------------------- history


def _history(args: argparse.Namespace) -> int:
    from monitoring.live.history import TABLE, TransitionRecord, read_transitions
    from monitoring.live.stats import table_exists

    since, until = _times(args)
    try:
        with open_db(args.db) as conn:
            records = [] if not table_exists(conn, TABLE) else read_transitions(
                conn, since_ms=since, until_ms=until, rule=args.rule,
                fingerprint=args.fingerprint, limit=args.limit)
    except DatabaseBusy as busy:
        query = {"since_ms": since, "until_ms": until, "rule": args.rule,
                 "fingerprint": args.fingerprint, "limit": args.limit}
        data = _served(args.url, "/api/v1/history", query, busy)
        records = [TransitionRecord.from_json(r) for r in data["transitions"]]
    if getattr(args, "format", "table") == "json":
        client.print_json([r.to_json() for r in records])
        return client.EXIT_OK
    if not records:
        print(f"no alert state changes from {_time(since)} to {_time(until)}")
        return client.EXIT_OK
    rows = [(_time(r.at_ms), r.rule, r.fingerprint, f"{r.from_state} -> {r.to_state}",
             _value(r.value), _labels(r.labels)) for r in records]
    _table(("TIME", "RULE", "FINGERPRINT", "CHANGE", "VALUE", "LABELS"), rows)
    return client.EXIT_OK


# ---------------------------------------------------------------- stats


def _stats(args: argparse.Namespace) -> int:
    from monitoring.live.stats import AlertStats, alert_stats

    since, until = _times(args)
    try:
        with open_db(args.db) as conn:
            stats = alert_stats(conn, since, until, top=args.top)
    except DatabaseBusy as busy:
        query = {"since_ms": since, "until_ms": until, "top": args.top}
        stats = AlertStats.from_json(_served(args.url, "/api/v1/stats", query, busy))
    if getattr(args, "format", "table") == "json":
        client.print_json(stats.to_json())
        return client.EXIT_OK
    print(f"alert statistics from {_time(since)} to {_time(until)}")
    print(f"  firings: {stats.firings}   mean time to acknowledge: "
          f"{_duration(stats.mean_time_to_ack_ms)}   mean time to resolve: "
          f"{_duration(stats.mean_time_to_resolve_ms)}")
    for note in stats.notes:
        print(f"  note: {note}")
    if stats.rules:
        print("\nper rule:")
        _table(("RULE", "FIRINGS", "CHANGES", "PER FIRING", "REFIRES", "MTTA", "MTTR"),
               [(r.rule, str(r.firings), str(r.changes),
                 "-" if r.changes_per_firing is None else f"{r.changes_per_firing:.1f}",
                 str(r.refires), _duration(r.mean_time_to_ack_ms),
                 _duration(r.mean_time_to_resolve_ms)) for r in stats.rules])
    print("\nnoisiest: " + (", ".join(f"{r.rule} ({r.firings})" for r in stats.noisiest)
                            or "none"))
    print("flapping: " + (", ".join(r.rule for r in stats.flapping) or "none"))
    if stats.pages:
        print("\npages per person per week:")
        _table(("WEEK", "PERSON", "PAGES"),
               [(_time(p.week_start_ms)[:10], p.person, str(p.pages)) for p in stats.pages])
    return client.EXIT_OK


# ---------------------------------------------------------------- formatting


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        print("  ".join(cells).rstrip())


def _time(ms: int | None) -> str:
    from monitoring.engine.timeparse import format_time

    return "-" if ms is None else format_time(int(ms))


def _value(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return str(value)


def _labels(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items())
                     if k != "alertname")


def _duration(ms: float | None) -> str:
    if ms is None:
        return "-"
    seconds = round(ms / 1000)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
