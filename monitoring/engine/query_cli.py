"""``monitoring query EXPR --db DB``: evaluate an expression over the stored history.

``--at T`` runs an instant query, ``--from A --to B --step S`` a range query
(default: the last hour of data at a 1m step, ending at the newest sample).
Output is a table, JSON shaped like Prometheus's ``/api/v1/query`` and
``/api/v1/query_range`` responses, or CSV.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

from monitoring.engine.model import QueryResult, Series, format_labels
from monitoring.engine.timeparse import TimeFormatError, format_time, parse_duration_ms, \
    parse_time_ms

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
MAX_POINTS = 1_000_000
"""Steps × series above which a range query asks the user to narrow it."""


def add_parser(sub: Any) -> None:
    """Register ``monitoring query``."""
    p = sub.add_parser("query", help="evaluate an expression over stored history",
                       description="Evaluate an expression against the metric store: an "
                       "instant query with --at, or a range query with --from/--to/--step.")
    p.add_argument("expr", metavar="EXPR")
    p.add_argument("--db", required=True, metavar="FILE", help="the DuckDB store")
    p.add_argument("--at", metavar="TIME", help="instant query time (RFC 3339, Unix s, now-1h)")
    p.add_argument("--from", dest="start", metavar="TIME", help="range start")
    p.add_argument("--to", dest="end", metavar="TIME", help="range end")
    p.add_argument("--step", default="1m", metavar="DURATION", help="range step (default 1m)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.add_argument("--engine", choices=["fast", "reference"], default="fast",
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_query)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"monitoring query: error: {message}", file=sys.stderr)
    return code


def cmd_query(args: argparse.Namespace) -> int:
    """Run the query and print the result."""
    from monitoring.dsl.compiler import compile_expression
    from monitoring.dsl.render import render_text
    from monitoring.engine.model import EvalError
    from monitoring.engine.store import Store

    node, diags = compile_expression(args.expr)
    if node is None:
        for d in diags:
            print(render_text(d), file=sys.stderr)
        return EXIT_PROBLEMS
    if not Path(args.db).exists():
        return _error(f"no such store: {args.db} (create it with `monitoring import`)")
    if args.at and (args.start or args.end):
        return _error("give either --at or --from/--to, not both")
    with Store(args.db, read_only=True) as store:
        try:
            start, end, step = _window(args, store)
        except TimeFormatError as e:
            return _error(str(e))
        if end < start:
            return _error("--to is before --from")
        if step <= 0:
            return _error("--step must be positive")
        if (end - start) // step + 1 > MAX_POINTS:
            return _error(f"{(end - start) // step + 1:,} steps is too many; raise --step")
        evaluate = _engine(args.engine)
        try:
            result = evaluate(node, store, start, end, step)
        except EvalError as e:
            return _error(str(e), EXIT_PROBLEMS)
    instant = args.at is not None
    out = sys.stdout
    if args.format == "json":
        out.write(json.dumps(to_prometheus_json(result, instant), indent=2) + "\n")
    elif args.format == "csv":
        out.write(to_csv(result))
    else:
        out.write(to_table(result, instant))
    return EXIT_OK


def _engine(name: str) -> Any:
    if name == "reference":
        from monitoring.engine.reference import evaluate as ref

        return ref
    from monitoring.engine.evaluator import evaluate

    return evaluate


def _window(args: argparse.Namespace, store: Any) -> tuple[int, int, int]:
    span = store.time_range()
    newest = span[1] if span else parse_time_ms("now")
    if args.at is not None:
        t = parse_time_ms(args.at, now_ms=newest if args.at.startswith("now") else None)
        return t, t, 1
    end = parse_time_ms(args.end) if args.end else newest
    start = parse_time_ms(args.start) if args.start else end - 3_600_000
    return start, end, parse_duration_ms(args.step)


def format_value(v: float) -> str:
    """A float as Prometheus's API writes it: shortest digits, no exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    text = format(Decimal(repr(v)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _metric(series: Series) -> dict[str, str]:
    return dict(series.labels)


def to_prometheus_json(result: QueryResult, instant: bool) -> dict[str, Any]:
    """The response body of ``/api/v1/query`` (instant) or ``/api/v1/query_range``."""
    data: dict[str, Any]
    if result.kind == "string":
        t = float(result.steps[0]) / 1000 if len(result.steps) else 0.0
        data = {"resultType": "string", "result": [t, result.string]}
    elif result.kind == "scalar" and instant:
        s = result.series[0]
        data = {"resultType": "scalar",
                "result": [float(s.ts[0]) / 1000, format_value(float(s.values[0]))]}
    elif instant and result.kind == "vector":
        data = {"resultType": "vector", "result": [
            {"metric": _metric(s), "value": [float(s.ts[0]) / 1000, format_value(float(s.values[0]))]}
            for s in result.series if len(s.ts)]}
    else:
        data = {"resultType": "matrix", "result": [
            {"metric": _metric(s),
             "values": [[float(t) / 1000, format_value(float(v))]
                        for t, v in zip(s.ts, s.values, strict=True)]}
            for s in result.series]}
    body: dict[str, Any] = {"status": "success", "data": data}
    if result.warnings:
        body["warnings"] = list(result.warnings)
    if result.infos:
        body["infos"] = list(result.infos)
    return body


def to_csv(result: QueryResult) -> str:
    """One row per point: series, RFC 3339 time, Unix seconds, value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["series", "time", "timestamp", "value"])
    if result.kind == "string":
        writer.writerow(["", "", "", result.string])
        return buf.getvalue()
    for s in result.series:
        name = format_labels(s.labels) if s.labels else "{}"
        for t, v in zip(s.ts, s.values, strict=True):
            writer.writerow([name, format_time(int(t)), f"{int(t) / 1000:g}",
                             format_value(float(v))])
    return buf.getvalue()


def to_table(result: QueryResult, instant: bool) -> str:
    """A plain-text table: one line per series (instant) or a block per series (range)."""
    if result.kind == "string":
        return f"{result.string}\n"
    if not result.series:
        return "(empty result)\n"
    lines: list[str] = []
    if instant:
        names = [format_labels(s.labels) if s.labels else "{}" for s in result.series]
        width = min(max(len(n) for n in names), 100)
        for name, s in zip(names, result.series, strict=True):
            lines.append(f"{name:<{width}}  {format_value(float(s.values[0]))}")
        return "\n".join(lines) + "\n"
    for s in result.series:
        lines.append(format_labels(s.labels) if s.labels else "{}")
        for t, v in zip(s.ts, s.values, strict=True):
            lines.append(f"  {format_time(int(t))}  {format_value(float(v))}")
    return "\n".join(lines) + "\n"
