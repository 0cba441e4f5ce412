"""Pull the raw samples the loaded rules read from an existing Prometheus server.

Why: with ``prometheus_url`` the engine runs our rules on the data a
Prometheus already scrapes, without a second scraper: each cycle it copies the
new samples of exactly the series the rules select into the store, and
evaluates there as on the embedded default.

Exact samples, not resampled ones: ``/api/v1/query_range`` returns values at
its step grid (the latest sample before each step), which would change what
``rate()`` and ``changes()`` see. A range vector ``selector[Nms]`` evaluated as
an instant query at ``until`` returns every stored sample in the window with
its own timestamp (Prometheus 2.x includes the left edge, 3.x excludes it; we
filter to ``(since, until]`` so both give the same). Windows longer than
``max_window_ms`` are pulled in pieces, so a first pull over hours of history
stays under Prometheus's ``--query.max-samples``.

Which series: :func:`rule_selectors` walks the compiled rules' IR for their
selectors (offsets and ``@`` pins dropped: the data is what matters), minus the
outputs of the rule set's own recording rules, which the engine computes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from monitoring.dryrun.ruleset import RuleSet, selectors
from monitoring.dsl import ir
from monitoring.dsl.lexical import is_label_name, quote
from monitoring.engine.model import DEFAULT_LOOKBACK_MS, METRIC_NAME

Sample = tuple[dict[str, str], int, float]

MAX_WINDOW_MS = 3_600_000
"""Longest window one query asks for (a longer pull is split into pieces of this)."""
CONCURRENCY = 4
"""Queries in flight at once (one Prometheus, shared with its other users)."""


class PullError(Exception):
    """A pull failed; the message names the URL, the query and Prometheus's reason."""


def selector_text(matchers: Sequence[tuple[str, str, str]]) -> str:
    """A selector in PromQL, all matchers in braces: ``{__name__="up",job="api"}``."""
    items = [f"{name if is_label_name(name) else quote(name)}{op}{quote(value)}"
             for name, op, value in matchers]
    return "{" + ",".join(items) + "}"


def rule_selectors(rule_set: RuleSet) -> list[str]:
    """The distinct selectors the rules of ``rule_set`` read, as PromQL text (sorted).

    Selectors of series that the set's own recording rules write are left out
    (the engine evaluates those rules itself).
    """
    recorded = {r.name for r in rule_set.rules if r.kind == "record"}
    found: set[tuple[tuple[str, str, str], ...]] = set()
    for rule in rule_set.rules:
        for sel in selectors(rule):
            if _name_of(sel.matchers) not in recorded:
                found.add(sel.matchers)
    # A selector narrower than a bare-name selector of the same metric adds nothing.
    bare = {_name_of(m) for m in found if len(m) == 1 and _name_of(m) is not None}
    return sorted(selector_text(m) for m in found
                  if len(m) == 1 or _name_of(m) not in bare)


def rule_lookback_ms(rule_set: RuleSet) -> int:
    """How far back from an evaluation time the rules of ``rule_set`` read, at most (ms).

    The window a first pull should cover so that every rule sees full windows
    at once: range selectors' ranges, subqueries' ranges (plus what their inner
    expression reads), offsets, and the 5-minute lookback of instant selectors.
    ``@`` pins to fixed timestamps are not counted.
    """
    memo: dict[ir.Node, int] = {}
    return max((_lookback(root, memo) for r in rule_set.rules for root in r.roots), default=0)


def _lookback(node: ir.Node, memo: dict[ir.Node, int]) -> int:
    done = memo.get(node)
    if done is not None:
        return done
    if isinstance(node, ir.Selector):
        out = DEFAULT_LOOKBACK_MS + max(node.offset_ms, 0)
    elif isinstance(node, ir.RangeSelector):
        out = node.range_ms + max(node.selector.offset_ms, 0)
    else:
        inner = max((_lookback(c, memo) for c in node.children()), default=0)
        out = inner + (node.range_ms + max(node.offset_ms, 0)
                       if isinstance(node, ir.Subquery) else 0)
    memo[node] = out
    return out


def _name_of(matchers: Sequence[tuple[str, str, str]]) -> str | None:
    """The metric name an equality matcher on ``__name__`` fixes, if any."""
    for name, op, value in matchers:
        if name == METRIC_NAME and op == "=":
            return value
    return None


def _duration(ms: int) -> str:
    return f"{ms}ms"


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}" if ms >= 0 else f"{ms / 1000:.3f}"


class PrometheusPuller:
    """Pulls raw samples of ``selectors`` from the Prometheus at ``url`` (its HTTP API).

    Use :meth:`aclose` (or ``async with``) to close its HTTP client.
    """

    def __init__(self, url: str, selectors: Sequence[str], *, timeout_s: float = 10.0,
                 max_window_ms: int = MAX_WINDOW_MS, headers: Mapping[str, str] | None = None
                 ) -> None:
        if not url.startswith(("http://", "https://")):
            raise PullError(f"prometheus_url {url!r}: expected an http:// or https:// URL")
        if max_window_ms <= 0:
            raise ValueError("max_window_ms must be positive")
        self.url = url.rstrip("/")
        self.selectors = list(selectors)
        self.max_window_ms = max_window_ms
        self._client = httpx.AsyncClient(timeout=timeout_s, headers=dict(headers or {}))

    async def __aenter__(self) -> PrometheusPuller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def pull(self, since_ms: int, until_ms: int) -> list[Sample]:
        """Every sample of the selectors with a time in ``(since_ms, until_ms]``.

        Raises :class:`PullError` (URL, HTTP status, Prometheus's error text) when
        a query fails; nothing is returned then, so the caller can retry the
        same window.
        """
        if until_ms <= since_ms or not self.selectors:
            return []
        windows: list[tuple[int, int]] = []
        lo = since_ms
        while lo < until_ms:
            hi = min(lo + self.max_window_ms, until_ms)
            windows.append((lo, hi))
            lo = hi
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(selector: str, lo: int, hi: int) -> list[Sample]:
            async with gate:
                return await self.range_samples(selector, lo, hi)

        parts = await asyncio.gather(*(one(s, lo, hi) for s in self.selectors
                                       for lo, hi in windows))
        # One series can match two selectors: keep each (series, time) once.
        seen: set[tuple[tuple[tuple[str, str], ...], int]] = set()
        out: list[Sample] = []
        for part in parts:
            for labels, ts, value in part:
                key = (tuple(sorted(labels.items())), ts)
                if key not in seen:
                    seen.add(key)
                    out.append((labels, ts, value))
        return out

    async def range_samples(self, selector: str, since_ms: int, until_ms: int) -> list[Sample]:
        """The samples of one selector in ``(since_ms, until_ms]`` (one query)."""
        query = f"{selector}[{_duration(until_ms - since_ms)}]"
        data = await self._query(query, until_ms)
        if data.get("resultType") != "matrix" or not isinstance(data.get("result"), list):
            raise PullError(f"{self.url}: query {query!r}: expected a matrix result, got "
                            f"{data.get('resultType')!r}")
        out: list[Sample] = []
        for series in data["result"]:
            labels = {str(k): str(v) for k, v in series.get("metric", {}).items()}
            for point in series.get("values", ()):
                ts = round(float(point[0]) * 1000)
                if since_ms < ts <= until_ms:
                    out.append((labels, ts, _value(point[1])))
        return out

    async def _query(self, query: str, at_ms: int) -> dict[str, Any]:
        endpoint = f"{self.url}/api/v1/query"
        try:
            response = await self._client.post(endpoint, data={"query": query,
                                                               "time": _seconds(at_ms)})
        except httpx.HTTPError as e:
            raise PullError(f"{endpoint}: query {query!r}: {type(e).__name__}: {e}"
                            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PullError(f"{endpoint}: query {query!r}: HTTP {response.status_code}, "
                            f"not a Prometheus API response: {response.text[:200]!r}")
        if response.status_code != 200 or body.get("status") != "success":
            kind = body.get("errorType", "error")
            raise PullError(f"{endpoint}: query {query!r}: HTTP {response.status_code}: "
                            f"{kind}: {body.get('error', 'no error text')}")
        data = body.get("data")
        if not isinstance(data, dict):
            raise PullError(f"{endpoint}: query {query!r}: the response has no data")
        return data


def _value(text: object) -> float:
    """A sample value as the API writes it ("1.5", "NaN", "+Inf")."""
    try:
        return float(str(text))
    except ValueError:
        return math.nan
