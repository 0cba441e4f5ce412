"""``monitoring query EXPR --db DB``: evaluate an expression over the stored history.

``--at T`` runs an instant query; ``--from A --to B --step S`` a range query
(each bound defaults to the store's data: ``--to`` to the newest sample,
``--from`` to an hour before ``--to``). Without either, a range query over the
last hour of data. Output is a table, CSV, or JSON byte-for-byte shaped like
the bodies of Prometheus's ``/api/v1/query`` and ``/api/v1/query_range``
responses (compact, as Prometheus writes them), so tools written against the
Prometheus API read it unchanged.

Limits are Prometheus's: a range query may have at most 11,000 steps, and a
range query must be of an instant vector or a scalar.

Exit codes: 0 success; 1 the expression is invalid or its evaluation failed;
2 the query could not run (bad times or step, too many steps, no store).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitoring.engine.gocompat import format_f
from monitoring.engine.timeparse import (
    TimeFormatError,
    format_time,
    parse_duration_ms,
    parse_time_ms,
)

if TYPE_CHECKING:
    from monitoring.dsl.ir import Node
    from monitoring.engine.model import Labels, QueryResult, Series
    from monitoring.engine.query import Evaluator, QueryOptions

EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE = 0, 1, 2
MAX_STEPS = 11_000
"""Prometheus's limit on ``(end - start) / step`` of a range query."""
DEFAULT_RANGE_MS = 3_600_000


class QueryUsageError(Exception):
    """A query that cannot run as asked (exit 2); the message says what to change."""


def add_parsers(sub: Any) -> None:
    """Register ``monitoring query``."""
    p = sub.add_parser(
        "query", help="evaluate an expression over stored history",
        description="Evaluate a PromQL expression against the metric store: an instant query "
        "with --at, or a range query with --from/--to/--step (default: the last hour of data "
        "at a 1m step). Times: RFC 3339, Unix seconds, 'now' or 'now-1h'.")
    p.add_argument("expr", metavar="EXPR", help="the expression, e.g. 'rate(x_total[5m])'")
    p.add_argument("--db", required=True, metavar="DB", help="the store (a DuckDB file)")
    p.add_argument("--at", metavar="TIME", help="instant query at this time")
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="range start (default: an hour before --to)")
    p.add_argument("--to", dest="end", metavar="TIME",
                   help="range end (default: the newest sample)")
    p.add_argument("--step", default="1m", metavar="DURATION",
                   help="range step, e.g. 15s or 1m (default 1m)")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table (default); json: the Prometheus HTTP API response body; csv")
    p.add_argument("--engine", choices=["fast", "reference"], default="fast",
                   help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_query)


def _error(message: str, code: int = EXIT_USAGE) -> int:
    print(f"monitoring query: error: {message}", file=sys.stderr)
    return code


def cmd_query(args: argparse.Namespace) -> int:
    """Compile, check the window, evaluate, print."""
    from monitoring.dsl.compiler import compile_query
    from monitoring.dsl.render import render_text
    from monitoring.engine.query import QueryOptions
    from monitoring.engine.store import StoreError

    node, diags, positions = compile_query(args.expr)
    if node is None:
        for d in diags:
            print(render_text(d), file=sys.stderr)
        return EXIT_PROBLEMS
    instant = args.at is not None
    if instant and (args.start is not None or args.end is not None):
        return _error("give either --at (instant query) or --from/--to (range query), not both")
    if not Path(args.db).is_file():
        return _error(f"no such store: {args.db} (create one with `monitoring import`)")
    try:
        if not instant:
            check_range_type(node)
        with _open(args.db) as store:
            start, end, step = query_window(args, store.time_range())
            result = run(node, store, start, end, step, instant, args.engine,
                         QueryOptions(positions=positions))
    except QueryUsageError as e:
        return _error(str(e))
    except StoreError as e:
        return _error(str(e))
    except QueryFailed as e:
        return _error(str(e), EXIT_PROBLEMS)
    sys.stdout.write(render(result, instant, args.format))
    return EXIT_OK


class QueryFailed(Exception):
    """Evaluation failed (exit 1)."""


def _open(path: str) -> Any:
    from monitoring.engine.store import Store

    return Store(path, read_only=True)


def check_range_type(node: Node) -> None:
    """Refuse what Prometheus refuses in a range query (a range vector or a string)."""
    from monitoring.stdlib.types import ValueType

    if node.type in (ValueType.MATRIX, ValueType.STRING):
        raise QueryUsageError(
            f'invalid expression type "{node.type}" for range query, must be Scalar or instant '
            "Vector (use --at for an instant query)")


def query_window(args: argparse.Namespace, span: tuple[int, int] | None) -> tuple[int, int, int]:
    """(start, end, step) in ms from the flags; defaults come from the data's time span."""
    try:
        if args.at is not None:
            t = parse_time_ms(args.at)
            return t, t, 0
        if args.end is not None:
            end = parse_time_ms(args.end)
        elif span is not None:
            end = span[1]
        else:
            raise QueryUsageError("the store is empty: give --to (or --at)")
        start = parse_time_ms(args.start) if args.start is not None else end - DEFAULT_RANGE_MS
        step = parse_duration_ms(args.step)
    except TimeFormatError as e:
        raise QueryUsageError(str(e)) from None
    if step <= 0:
        raise QueryUsageError(f"--step {args.step}: must be greater than zero")
    if end < start:
        if args.end is None:
            raise QueryUsageError(f"--from ({format_time(start)}) is after the newest sample "
                                  f"({format_time(end)}), the default --to")
        raise QueryUsageError(f"--to ({format_time(end)}) is before --from ({format_time(start)})")
    if (end - start) // step > MAX_STEPS:  # Prometheus's test, to the step
        smallest = (end - start) // (MAX_STEPS + 1) + 1
        raise QueryUsageError(
            f"{(end - start) // step + 1:,} steps: more than Prometheus's maximum resolution of "
            f"{MAX_STEPS:,} points per series; use --step {math.ceil(smallest / 1000)}s or more, "
            "or a shorter --from/--to")
    return start, end, step


def run(node: Node, store: Any, start: int, end: int, step: int, instant: bool, engine: str,
        options: QueryOptions) -> QueryResult:
    """Evaluate with the chosen engine; evaluation errors become :class:`QueryFailed`."""
    from monitoring.engine.model import EvalError

    evaluate = _engine(engine)
    try:
        if instant:
            return evaluate(node, store, start, start, 1, options, instant=True)
        return evaluate(node, store, start, end, step, options)
    except (EvalError, ValueError) as e:
        raise QueryFailed(str(e)) from None


def _engine(name: str) -> Evaluator:
    if name == "reference":
        from monitoring.engine.reference import evaluate as reference

        return reference
    from monitoring.engine.evaluator import evaluate

    return evaluate


# ------------------------------------------------------------ output


def render(result: QueryResult, instant: bool, fmt: str) -> str:
    """The result in one of the output formats."""
    if fmt == "json":
        return dumps(to_prometheus_json(result, instant)) + "\n"
    if fmt == "csv":
        return to_csv(result)
    return to_table(result, instant)


def format_value(v: float) -> str:
    """A float as Prometheus's API writes it (Go's ``FormatFloat(v, 'f', -1, 64)``)."""
    return format_f(v)


def format_seconds(ms: int) -> str:
    """Epoch ms as seconds the way Prometheus writes them (``jsonutil.MarshalTimestamp``).

    Whole seconds have no fraction; otherwise exactly three decimals:
    ``1767225600``, ``1767225600.500``, ``1767225600.001``.
    """
    sign = "-" if ms < 0 else ""
    whole, frac = divmod(abs(ms), 1000)
    return f"{sign}{whole}.{frac:03d}" if frac else f"{sign}{whole}"


class Timestamp(int):
    """Epoch ms of a vector or matrix point: :func:`dumps` writes :func:`format_seconds`."""


def scalar_time(ms: int) -> int | float:
    """Epoch ms of a scalar or string result, as Prometheus writes it.

    Those are encoded as a Go ``float64`` of seconds (shortest digits), not with
    the three decimals of points: ``1767225600``, ``1767225600.5``. An int for
    whole seconds, so that no ``.0`` is written; otherwise Python's shortest
    repr of ``ms / 1000``, which is the same text.
    """
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _point(t: int, v: float) -> list[Any]:
    return [Timestamp(t), format_value(float(v))]


def _sorted(series: list[Series]) -> list[Series]:
    return sorted(series, key=lambda s: s.labels)


def to_prometheus_json(result: QueryResult, instant: bool) -> dict[str, Any]:
    """The response body of ``/api/v1/query`` (instant) or ``/api/v1/query_range``.

    Times are :class:`Timestamp` (ms); :func:`dumps` writes the body as Prometheus does.
    """
    data: dict[str, Any]
    if result.kind == "string":
        t = int(result.steps[0]) if len(result.steps) else 0
        data = {"resultType": "string", "result": [scalar_time(t), result.string or ""]}
    elif result.kind == "scalar" and instant:
        s = result.series[0]
        data = {"resultType": "scalar",
                "result": [scalar_time(int(s.ts[0])), format_value(float(s.values[0]))]}
    elif result.kind == "vector" and instant:
        data = {"resultType": "vector", "result": [
            {"metric": dict(s.labels), "value": _point(s.ts[0], s.values[0])}
            for s in _sorted(result.series) if len(s.ts)]}
    else:
        data = {"resultType": "matrix", "result": [
            {"metric": dict(s.labels),
             "values": [_point(t, v) for t, v in zip(s.ts.tolist(), s.values.tolist(),
                                                      strict=True)]}
            for s in _sorted(result.series) if len(s.ts)]}
    body: dict[str, Any] = {"status": "success", "data": data}
    if result.warnings:
        body["warnings"] = list(result.warnings)
    if result.infos:
        body["infos"] = list(result.infos)
    return body


def dumps(value: Any) -> str:
    """Compact JSON as Prometheus's API writes it; :class:`Timestamp` as seconds."""
    if isinstance(value, Timestamp):
        return format_seconds(int(value))
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dumps(v) for v in value) + "]"
    if isinstance(value, str):
        return _string(value)
    return json.dumps(value)


_PLAIN = re.compile(r'[^"\\\x00-\x1f<>&\u2028\u2029]*\Z')
_SHORT = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _string(text: str) -> str:
    r"""A JSON string escaped as Prometheus's encoder does (jsoniter, HTML-safe).

    Non-ASCII is written as is; ``"``, ``\``, newline, return and tab get short
    escapes; other control characters, ``<``, ``>``, ``&``, U+2028 and U+2029
    are written as ``\uXXXX``.
    """
    if _PLAIN.match(text):
        return f'"{text}"'
    return '"' + "".join(_SHORT.get(ch) or (f"\\u{ord(ch):04x}" if ch in "<>&\u2028\u2029"
                                            or ord(ch) < 0x20 else ch) for ch in text) + '"'


def _name(labels: Labels) -> str:
    from monitoring.engine.model import format_labels

    return format_labels(labels) if labels else "{}"


def to_csv(result: QueryResult) -> str:
    """One row per point: series, RFC 3339 time, Unix seconds, value."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["series", "time", "timestamp", "value"])
    if result.kind == "string":
        t = int(result.steps[0]) if len(result.steps) else 0
        writer.writerow(["", format_time(t), format_seconds(t), result.string or ""])
        return buf.getvalue()
    for s in _sorted(result.series):
        name = _name(s.labels)
        for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True):
            writer.writerow([name, format_time(t), format_seconds(t), format_value(v)])
    return buf.getvalue()


def to_table(result: QueryResult, instant: bool) -> str:
    """Plain text: one line per series (instant), or a block of points per series (range)."""
    if result.kind == "string":
        return f"{result.string}\n"
    series = [s for s in _sorted(result.series) if len(s.ts)]
    if not series:
        return "(empty result)\n"
    if instant and result.kind in ("vector", "scalar"):
        names = [_name(s.labels) for s in series]
        width = min(max(len(n) for n in names), 100)
        lines = [f"{name:<{width}}  {format_value(float(s.values[0]))}"
                 for name, s in zip(names, series, strict=True)]
        return "\n".join(lines) + "\n"
    lines = []
    for s in series:
        lines.append(_name(s.labels))
        lines.extend(f"  {format_time(t)}  {format_value(v)}"
                     for t, v in zip(s.ts.tolist(), s.values.tolist(), strict=True))
    return "\n".join(lines) + "\n"
