"""``monitoring serve``: load rules/ and the config, collect, evaluate, notify, audit, serve.

Runs until SIGINT or SIGTERM, then stops gracefully: the loops end, pending notifications
stay in the durable outbox (delivered on the next start), the ledger is flushed and closed.
It prints the URL it serves on as its first line of output.

``--demo`` runs on a :class:`~monitoring.notify.model.ScaledClock` (``--speed``, default 60:
an hour in a minute) with :class:`~monitoring.live.demo_feed.DemoFeed`'s synthetic metrics,
in a fresh ``var/demo-live.duckdb`` unless ``--db`` names another store.

Exit codes: 0 stopped cleanly; 1 the rule files have errors; 2 could not run (bad options,
the port or the store in use).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
DEFAULT_PORT = 9464
DEMO_DB = Path("var/demo-live.duckdb")


def add_parsers(sub: Any) -> None:
    """Register ``monitoring serve``."""
    p = sub.add_parser(
        "serve", help="run the engine: evaluate rules, notify, audit, serve the API",
        description="Load the rule files and the configuration, collect metrics, evaluate the "
        "rules on their schedules, send notifications (a console channel by default), record "
        "every decision in the audit ledger, and serve /metrics and the JSON API. Runs until "
        "Ctrl-C or SIGTERM.")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="rule files and folders, and configuration files (default: rules/)")
    p.add_argument("--config", metavar="DIR", help="a folder with notification_config.yaml, "
                   "escalation_policies.yaml, routing.yaml, oncall.yaml, audit_filters.yaml "
                   "(default: config/ if it exists)")
    p.add_argument("--db", metavar="FILE", help="the DuckDB store (default: "
                   "var/monitoring.duckdb; with --demo a fresh var/demo-live.duckdb)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"port to serve on (default {DEFAULT_PORT}; 0: a free port)")
    p.add_argument("--demo", action="store_true",
                   help="feed synthetic metrics that make the shipped rules fire and resolve")
    p.add_argument("--speed", type=_speed, default=60.0, metavar="X",
                   help="with --demo: simulated time runs X times faster (default 60)")
    p.add_argument("--seed", type=int, default=1, help="with --demo: random seed (default 1)")
    p.add_argument("--no-console", action="store_true", help="no console channel on stdout")
    p.add_argument("--system-metrics", action=argparse.BooleanOptionalAction, default=None,
                   help="collect this machine's CPU, memory, disk and network metrics "
                   "(default: on, off with --demo so the demo's alerts are the demo's)")
    p.add_argument("--stop-after", type=_seconds, metavar="SECONDS",
                   help="stop by itself after this many seconds of real time (demos, scripts)")
    p.add_argument("--elasticsearch-url", metavar="URL",
                   help="copy the audit ledger to this Elasticsearch (needs the "
                   "elasticsearch extra)")
    p.add_argument("--prometheus-url", metavar="URL",
                   help="pull the series the rules read from this Prometheus server")
    p.set_defaults(func=cmd_serve)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value <= 100_000:
        raise argparse.ArgumentTypeError("must be above 0 and at most 100000")
    return value


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"monitoring serve: error: {message}", file=sys.stderr)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the options, build the runtime, run until a signal."""
    from monitoring.engine.store import StoreError
    from monitoring.live.runtime import RuntimeOptions
    from monitoring.notify.model import ScaledClock, SystemClock

    paths = args.paths or (["rules"] if Path("rules").is_dir() else [])
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        return _error("no such file or directory: " + ", ".join(missing))
    config = args.config if args.config is not None else (
        "config" if Path("config").is_dir() else None)
    if config is not None and not Path(config).is_dir():
        return _error(f"--config {config}: no such directory")
    if not paths and config is None:
        return _error("no rules: give rule files or folders (there is no rules/ here)")
    db = Path(args.db) if args.db else (DEMO_DB if args.demo else Path("var/monitoring.duckdb"))
    if args.demo and not args.db:
        _fresh(db)
    try:
        clock = ScaledClock(args.speed, _demo_start(db)) if args.demo else SystemClock()
    except StoreError as exc:
        return _error(str(exc))
    options = RuntimeOptions(
        paths=paths, config_dir=config, db=db, clock=clock,
        console=not args.no_console,
        collect_system=not args.demo if args.system_metrics is None else args.system_metrics,
        prometheus_url=args.prometheus_url, elasticsearch_url=args.elasticsearch_url,
        demo=args.demo, demo_seed=args.seed,
        external_url=f"http://{args.host}:{args.port or DEFAULT_PORT}",
        freeze_heap=True)  # the process is the engine's own
    try:
        return asyncio.run(serve(options, args.host, args.port, args.stop_after))
    except KeyboardInterrupt:
        return EXIT_OK


def _demo_start(db: Path) -> int:
    """Where demo time starts: now, or after the newest sample of a store used before.

    Demo time runs ahead of the wall clock; a restarted demo continues from where the
    previous run left its samples, alert state and outbox, instead of going back in time.
    """
    import time

    from monitoring.engine.store import Store

    now = time.time_ns() // 1_000_000
    if not db.is_file():
        return now
    with Store(db, read_only=True) as store:
        span = store.time_range()
    return now if span is None else max(now, span[1] + 1)


def _fresh(db: Path) -> None:
    """Remove a previous demo store and the ledger files beside it."""
    from monitoring.audit.paths import ledger_paths

    lp = ledger_paths(db)
    for path in (db, db.with_name(db.name + ".wal"), lp.sidecar, lp.lock):
        path.unlink(missing_ok=True)
    shutil.rmtree(lp.vault, ignore_errors=True)


async def serve(options: Any, host: str, port: int, stop_after: float | None = None) -> int:
    """Run the engine and the HTTP API until SIGINT/SIGTERM (or ``stop_after`` seconds)."""
    from monitoring.audit.errors import AuditError
    from monitoring.engine.store import StoreError
    from monitoring.live.rules_api import RuleError
    from monitoring.live.runtime import Runtime
    from monitoring.live.server import HttpServer

    runtime = Runtime(options)
    try:
        runtime.open()
    except RuleError as exc:
        print(str(exc), file=sys.stderr)
        return _error("the rule files have errors (see above); nothing was started",
                      EXIT_PROBLEMS)
    except (StoreError, AuditError, OSError) as exc:
        return _error(str(exc))
    server = HttpServer(runtime, host, port)
    try:
        await server.start()
    except OSError as exc:
        await runtime.close()
        return _error(f"cannot serve on {host}:{port}: {exc.strerror or exc}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        for name, problems in runtime.broken_rules.items():
            print(f"API rule {name} is not evaluated:\n{problems}", file=sys.stderr)
        print(f"monitoring: serving {server.url} (db {options.db}, "
              f"{len(runtime.rule_set.rules)} rules, channels: "
              f"{', '.join(sorted(runtime.channels)) or 'none'})"
              + (f", demo at {options.clock.speed:g}x" if options.demo else ""), flush=True)
        if stop_after is None:
            await stop.wait()
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), stop_after)
        print("monitoring: stopping", flush=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await server.stop()
        await runtime.stop()
    return EXIT_OK
