"""Native histogram samples in test files, kept opaque beside the float store.

The evaluator has no native histograms. Test files still use them in
``input_series`` (``{{schema:1 sum:3 count:2 buckets:[1 1]}}``, ``{{...}}x3``,
``{{a}}+{{b}}x3``) and expect them back from plain selectors
(``promql_expr_test: expr: my_histogram``). This module parses them, expands
the series notation, and :class:`HistogramTable` answers exactly one kind of
query: an instant vector selector, with the standard lookback and staleness.
Anything else that touches a histogram series is reported as unsupported by
the runner (never passed, never failed).

Comparison is structural: schema, count, sum, zero bucket and threshold,
custom bucket bounds, and the bucket counts by bucket index (a bucket listed
with count 0 equals an absent one), plus the counter-reset hint. The hint of a
sample read back follows what Prometheus's TSDB returns: ``gauge`` stays
``gauge``; the first sample of a series has no hint (unknown); a later sample
is ``not_reset``, or ``reset`` when its count or a bucket went down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from monitoring.engine.gocompat import format_f
from monitoring.engine.memory import matches
from monitoring.engine.model import Labels, Matcher, is_stale

_FIELD = re.compile(r"([a-z_]+):(\[[^\]]*\]|\S+)")
_FLOAT_FIELDS = {"sum", "count", "z_bucket", "z_bucket_w"}
_INT_FIELDS = {"schema", "offset", "n_offset"}
_LIST_FIELDS = {"buckets", "n_buckets", "custom_values"}
HINTS = ("unknown", "reset", "not_reset", "gauge")


@dataclass(frozen=True, slots=True)
class Histogram:
    """One native histogram sample (float counts)."""

    schema: int = 0
    count: float = 0.0
    sum: float = 0.0
    zero_count: float = 0.0
    zero_threshold: float = 0.0
    positive: tuple[tuple[int, float], ...] = ()  # (bucket index, count), sorted, non-zero
    negative: tuple[tuple[int, float], ...] = ()
    custom_values: tuple[float, ...] = ()
    hint: str = "unknown"

    def text(self) -> str:
        """``{{schema:1 count:2 sum:3 ...}}``, the fields that differ from the defaults."""
        parts = []
        if self.schema:
            parts.append(f"schema:{self.schema}")
        parts += [f"count:{format_f(self.count)}", f"sum:{format_f(self.sum)}"]
        if self.zero_count:
            parts.append(f"z_bucket:{format_f(self.zero_count)}")
        if self.zero_threshold:
            parts.append(f"z_bucket_w:{format_f(self.zero_threshold)}")
        if self.custom_values:
            parts.append("custom_values:[" + " ".join(map(format_f, self.custom_values)) + "]")
        for prefix, buckets in (("", self.positive), ("n_", self.negative)):
            if buckets:
                parts.append(f"{prefix}offset:{buckets[0][0]}")
                dense = _dense(buckets)
                parts.append(f"{prefix}buckets:[" + " ".join(map(format_f, dense)) + "]")
        if self.hint != "unknown":
            parts.append(f"counter_reset_hint:{self.hint}")
        return "{{" + " ".join(parts) + "}}"

    def add(self, other: Histogram, sign: float = 1.0) -> Histogram:
        """``self + sign*other``, bucket by bucket (same schema only)."""
        if other.schema != self.schema or other.custom_values != self.custom_values:
            raise ValueError("cannot add native histograms of different schemas")
        return replace(
            self, count=self.count + sign * other.count, sum=self.sum + sign * other.sum,
            zero_count=self.zero_count + sign * other.zero_count,
            positive=_add(self.positive, other.positive, sign),
            negative=_add(self.negative, other.negative, sign))

    def went_down_from(self, prev: Histogram) -> bool:
        """Whether this sample is a counter reset relative to ``prev``."""
        if self.count < prev.count or self.zero_count < prev.zero_count:
            return True
        if self.schema > prev.schema or self.zero_threshold != prev.zero_threshold:
            return True
        for mine, theirs in ((self.positive, prev.positive), (self.negative, prev.negative)):
            have = dict(mine)
            if any(have.get(i, 0.0) < c for i, c in theirs):
                return True
        return False

    def equals(self, other: Histogram, same: object) -> bool:
        """Field-wise equality, floats compared with ``same(x, y)``."""
        f = same  # a float comparer
        assert callable(f)
        if (self.schema, self.hint, len(self.positive), len(self.negative)) != \
                (other.schema, other.hint, len(other.positive), len(other.negative)):
            return False
        if len(self.custom_values) != len(other.custom_values):
            return False
        floats = [(self.count, other.count), (self.sum, other.sum),
                  (self.zero_count, other.zero_count),
                  (self.zero_threshold, other.zero_threshold),
                  *zip(self.custom_values, other.custom_values, strict=True)]
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for (i, a), (j, b) in zip(mine, theirs, strict=True):
                if i != j:
                    return False
                floats.append((a, b))
        return all(f(a, b) for a, b in floats)


def _dense(buckets: tuple[tuple[int, float], ...]) -> list[float]:
    first, last = buckets[0][0], buckets[-1][0]
    have = dict(buckets)
    return [have.get(i, 0.0) for i in range(first, last + 1)]


def _add(a: tuple[tuple[int, float], ...], b: tuple[tuple[int, float], ...],
         sign: float) -> tuple[tuple[int, float], ...]:
    out = dict(a)
    for i, c in b:
        out[i] = out.get(i, 0.0) + sign * c
    return tuple(sorted((i, c) for i, c in out.items() if c != 0.0))


def _number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"bad number {text!r} for {name}") from None


def parse_histogram(text: str) -> Histogram:
    """One ``{{...}}`` literal; ValueError says what is wrong."""
    body = text.strip()
    if not (body.startswith("{{") and body.endswith("}}")):
        raise ValueError(f"a native histogram is written {{{{...}}}}, got {text!r}")
    body = body[2:-2]
    values: dict[str, object] = {}
    pos = 0
    for m in _FIELD.finditer(body):
        if body[pos:m.start()].strip():
            raise ValueError(f"unexpected {body[pos:m.start()].strip()!r}")
        pos = m.end()
        name, raw = m.group(1), m.group(2)
        if name in values:
            raise ValueError(f"field {name} given twice")
        if name in _LIST_FIELDS:
            if not raw.startswith("["):
                raise ValueError(f"{name} must be a list [...]")
            values[name] = [_number(name, x) for x in raw[1:-1].split()]
        elif name in _INT_FIELDS:
            if not re.fullmatch(r"[+-]?\d+", raw):
                raise ValueError(f"{name} must be an integer, got {raw!r}")
            values[name] = int(raw)
        elif name in _FLOAT_FIELDS:
            values[name] = _number(name, raw)
        elif name == "counter_reset_hint":
            if raw not in HINTS:
                raise ValueError(f"counter_reset_hint must be one of {', '.join(HINTS)}")
            values[name] = raw
        else:
            raise ValueError(f"unknown native histogram field {name!r}")
    if body[pos:].strip():
        raise ValueError(f"unexpected {body[pos:].strip()!r}")

    def buckets(key: str, offset_key: str) -> tuple[tuple[int, float], ...]:
        counts = values.get(key, [])
        start = values.get(offset_key, 0)
        assert isinstance(counts, list) and isinstance(start, int)
        return tuple((start + k, c) for k, c in enumerate(counts) if c != 0.0)

    def num(key: str) -> float:
        v = values.get(key, 0.0)
        assert isinstance(v, float)
        return v

    schema = values.get("schema", 0)
    hint = values.get("counter_reset_hint", "unknown")
    custom = values.get("custom_values", [])
    assert isinstance(schema, int) and isinstance(hint, str) and isinstance(custom, list)
    return Histogram(schema, num("count"), num("sum"), num("z_bucket"), num("z_bucket_w"),
                     buckets("buckets", "offset"), buckets("n_buckets", "n_offset"),
                     tuple(custom), hint)


_SEQ = re.compile(r"(\{\{[^{}]*\}\})(?:x(\d+)|([+-])(\{\{[^{}]*\}\})x(\d+))?")


def expand_histograms(token: str) -> list[Histogram]:
    """``{{a}}``, ``{{a}}xN`` (N+1 copies) or ``{{a}}+{{b}}xN`` (a, a+b, ..., a+N·b)."""
    m = _SEQ.fullmatch(token)
    if m is None:
        raise ValueError(f"bad native histogram sequence {token!r}")
    first = parse_histogram(m.group(1))
    if m.group(2) is not None:
        return [first] * (int(m.group(2)) + 1)
    if m.group(4) is None:
        return [first]
    step = parse_histogram(m.group(4))
    sign = -1.0 if m.group(3) == "-" else 1.0
    out = [first]
    for _ in range(int(m.group(5))):
        out.append(out[-1].add(step, sign))
    return out


HistSample = tuple[int, "Histogram | float"]
"""(time ms, a histogram, or a float: an ordinary sample or a staleness marker)."""


@dataclass(slots=True)
class HistogramTable:
    """Series that hold native histogram samples: every sample of them, floats included."""

    series: dict[Labels, list[HistSample]] = field(default_factory=dict)

    def add(self, labels: Labels, samples: list[HistSample]) -> None:
        """Store a series' samples (sorted by time), setting read-back hints."""
        out: list[HistSample] = []
        prev: Histogram | None = None
        for t, v in sorted(samples, key=lambda s: s[0]):
            if isinstance(v, Histogram) and v.hint != "gauge":
                if prev is None:
                    hint = "unknown"
                else:
                    hint = "reset" if v.went_down_from(prev) else "not_reset"
                v = replace(v, hint=hint)
            if isinstance(v, Histogram):
                prev = v
            out.append((t, v))
        self.series[labels] = out

    def names(self) -> set[Labels]:
        """The label sets of the histogram series."""
        return set(self.series)

    def select(self, matchers: list[Matcher], t_ms: int,
               lookback_ms: int) -> list[tuple[Labels, Histogram | float]]:
        """An instant selector at ``t_ms``: each series' latest sample in (t-lookback, t]."""
        out: list[tuple[Labels, Histogram | float]] = []
        for labels, samples in self.series.items():
            if not matches(labels, matchers):
                continue
            latest: Histogram | float | None = None
            for ts, v in samples:
                if t_ms - lookback_ms < ts <= t_ms:
                    latest = v
            if latest is None or (isinstance(latest, float) and is_stale(latest)):
                continue
            out.append((labels, latest))
        return out


InputValue = "float | Histogram | None"


def parse_input_values(text: str) -> list[float | Histogram | None]:
    """Expand an ``input_series`` value list that may mix floats and histograms.

    Float tokens go through :func:`monitoring.engine.promqltest.parse_values`;
    ``{{...}}`` tokens through :func:`expand_histograms` (which, unlike the
    ``.test`` reader, keeps each histogram's content so ``+`` can add them).
    """
    from monitoring.engine.promqltest import NativeHistogram, parse_values

    out: list[float | Histogram | None] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in " \t\n":
            i += 1
            continue
        if text.startswith("{{", i):
            m = _SEQ.match(text, i)
            if m is None:
                raise ValueError(f"unterminated native histogram at {text[i:i + 20]!r}")
            out.extend(expand_histograms(m.group(0)))
            i = m.end()
            continue
        j = i
        while j < n and text[j] not in " \t\n":
            j += 1
        for v in parse_values(text[i:j]):
            if isinstance(v, NativeHistogram):  # cannot happen: no "{{" in the token
                raise ValueError(f"bad value {text[i:j]!r}")
            out.append(v)
        i = j
    return out
