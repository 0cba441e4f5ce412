"""What ``monitoring silence`` and ``monitoring ack`` share: the server, or the store file.

An operator's command should work whether or not the engine runs: it first talks to the
running server's API (``--url``); when nothing listens there it opens the store (``--db``)
and its ledger directly, so the silence or the acknowledgement is recorded (and audited) the
same way and the engine picks it up when it starts. A store that another process holds open
(an engine on another port) is reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx

from monitoring.notify.model import AuditSink, SystemClock

DEFAULT_URL = "http://127.0.0.1:9464"
DEFAULT_DB = "var/monitoring.duckdb"
EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2


class Unreachable(Exception):
    """No server answers at the URL (connection refused, or no such host)."""


class CommandError(Exception):
    """The command cannot do its job; ``code`` is the exit code."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def connection_options() -> argparse.ArgumentParser:
    """``--url`` and ``--db`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--url", default=DEFAULT_URL,
                   help=f"the running engine's API (default {DEFAULT_URL})")
    p.add_argument("--db", default=DEFAULT_DB, metavar="FILE",
                   help=f"the store to use when no engine answers (default {DEFAULT_DB})")
    return p


def default_user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "cli"


def call(url: str, method: str, path: str, body: Any = None,
         params: dict[str, str] | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One API request; returns (status, JSON body). Raises :class:`Unreachable`."""
    try:
        response = httpx.request(method, url.rstrip("/") + path, json=body, params=params,
                                 timeout=timeout)
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise Unreachable(str(exc)) from None
    except httpx.HTTPError as exc:
        raise CommandError(f"{url}: {exc}") from None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    return response.status_code, data


def api_error(status: int, data: Any) -> CommandError:
    """A non-2xx answer as an error naming the field (400) or what was not found (404)."""
    message = data.get("error", str(data)) if isinstance(data, dict) else str(data)
    return CommandError(message, EXIT_PROBLEMS if status == 404 else EXIT_USAGE)


@dataclass
class Offline:
    """The store opened directly: a connection, the real clock and the ledger's sink."""

    conn: duckdb.DuckDBPyConnection
    clock: SystemClock
    audit: AuditSink


@contextmanager
def offline(db: str) -> Iterator[Offline]:
    """Open ``db`` and its ledger (no engine runs); everything is closed afterwards."""
    from monitoring.audit.errors import AuditError
    from monitoring.audit.ledger import Ledger
    from monitoring.live.audit_sink import LedgerSink

    path = Path(db)
    if not path.is_file():
        raise CommandError(f"no engine answers and there is no store at {db} (give --url of "
                           "the running engine, or --db)")
    try:
        conn = duckdb.connect(str(path))
    except duckdb.Error as exc:
        raise CommandError(f"{db}: cannot open the store ({exc}); if an engine holds it, "
                           "give its --url") from None
    try:
        ledger = Ledger.open(conn)
    except AuditError as exc:
        conn.close()
        raise CommandError(f"{db}: cannot open the audit ledger: {exc}") from None
    try:
        sink = LedgerSink(ledger)
        yield Offline(conn, SystemClock(), sink)
        ledger.flush()
        if sink.failures:
            raise CommandError(f"audit ledger: {sink.last_error}", EXIT_PROBLEMS)
    finally:
        ledger.close()
        conn.close()


def run(job: Any, args: argparse.Namespace, prog: str) -> int:
    """Run ``job(args)`` and turn errors into messages and exit codes."""
    try:
        return int(job(args))
    except CommandError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.code


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))
