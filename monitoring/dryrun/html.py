"""The dry-run report as one self-contained HTML page (``monitoring dry-run --html``).

Why one file with everything inline: the page is attached to pull requests and
tickets and opened months later, offline. So there is no script, no web font
and no network access at view time: the CSS is in a ``<style>`` element and
every plot is an inline SVG drawn by matplotlib (text kept as text, so it
stays selectable and searchable). All text that comes from users (rule names,
expressions, label names and values, summaries) goes through Jinja2's
autoescaping; the only markup inserted unescaped is the SVG matplotlib wrote,
whose text matplotlib escapes itself.

Each rule gets a section: what it is (expression, ``for``, channels...), its
figures, a plot of the evaluated value (a line per series, the threshold
dashed, pending spans shaded lightly and firing spans strongly: one shaded
span per firing interval, each an SVG group with id ``rule-<N>-firing-<K>``,
N the section's number), the alert intervals and the notifications. A header
says what was evaluated, so someone who was not there can read the page.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import matplotlib
from markupsafe import Markup
from matplotlib import dates as mdates
from matplotlib import ticker
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

from monitoring.dryrun.report import DryRunReport, Interval, RulePlot, RuleReport
from monitoring.dryrun.terminal import duration, iso

MAX_ROWS = 500
DAY_MS = 86_400_000
"""Intervals and notifications listed per rule (the JSON output has them all)."""
FIRING_COLOUR = "#d62728"
PENDING_COLOUR = "#ff7f0e"
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_SUFFIX_UNITS = (("_seconds", "seconds"), ("_bytes", "bytes"), ("_ratio", "ratio"),
                 (":ratio", "ratio"), ("_percent", "percent"), ("_celsius", "celsius"))


# ------------------------------------------------------------------ units


def declared_units(paths: Sequence[str]) -> dict[str, str]:
    """Metric units declared in the rule files (``metric X { unit Y }``); {} if unreadable.

    Loading again is cheap (a few small files) and keeps the report model free
    of presentation details; a path that no longer exists just gives no units.
    """
    from monitoring.dsl.loader import load_paths

    existing = [p for p in paths if Path(p).exists()]
    if not existing:
        return {}
    units: dict[str, str] = {}
    for _, rule_file in load_paths(existing).rule_files:
        for decl in rule_file.metrics:
            if decl.unit:
                units[decl.name.value] = decl.unit
    return units


def guess_unit(expr: str, units: Mapping[str, str]) -> str | None:
    """The unit of a plotted expression, from the metrics it reads (a heuristic).

    The first metric with a declared unit or a conventional suffix decides;
    ``histogram_quantile`` of ``X_bucket`` has X's unit; a rate of a counter
    without a unit is "per second". None when nothing tells.
    """
    names = [m.group(0) for m in _NAME.finditer(expr)
             if not expr[m.end():].lstrip().startswith("(")]
    for raw in names:
        name = raw.removesuffix("_bucket") if "histogram_quantile" in expr else raw
        unit = units.get(name) or next(
            (u for suffix, u in _SUFFIX_UNITS if name.endswith(suffix)), None)
        if unit is not None:
            return unit
    if re.search(r"\b(rate|irate)\s*\(", expr):
        return "per second"
    return None


def _axis(unit: str | None) -> tuple[str, ticker.Formatter | None]:
    """The y-axis label and tick formatter for a unit."""
    if unit == "ratio":
        return "ratio (shown as %)", ticker.PercentFormatter(1.0)
    if unit == "percent":
        return "percent", ticker.PercentFormatter(100.0)
    if unit == "seconds":
        return "seconds", ticker.EngFormatter(unit="s")
    if unit == "bytes":
        return "bytes", ticker.EngFormatter(unit="B")
    if unit == "celsius":
        return "°C", None
    if unit is None:
        return "value", None
    return unit, None


# ------------------------------------------------------------------ plots


def _day(ms: float) -> float:
    """Matplotlib's date number (days since its epoch, set to 1970 in :func:`plot_svg`)."""
    return ms / DAY_MS


def _short_labels(plot: RulePlot) -> list[str]:
    """Legend entries: only the labels that differ between the plotted series."""
    keys = sorted({k for s in plot.series for k in s.labels if k != "__name__"})
    varying = [k for k in keys if len({s.labels.get(k) for s in plot.series}) > 1] or keys
    out = []
    for s in plot.series:
        text = ", ".join(f"{k}={s.labels[k]}" for k in varying if k in s.labels) or "{}"
        out.append(text + (" (fired)" if s.fired else ""))
    return out


def _spans(iv: Interval, last_ms: int) -> tuple[tuple[int, int] | None, tuple[int, int]]:
    """The pending span (None with ``for 0``) and the firing span of an interval."""
    end = iv.end_ms if iv.end_ms is not None else last_ms
    pending = (iv.active_ms, iv.start_ms) if iv.active_ms < iv.start_ms else None
    return pending, (iv.start_ms, max(end, iv.start_ms))


def plot_svg(rule: RuleReport, plot: RulePlot, index: int, unit: str | None,
             range_ms: tuple[int, int]) -> str:
    """The rule's plot as an inline ``<svg>`` element."""
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"rule{index}",
                                "date.epoch": "1970-01-01T00:00:00",
                                "font.size": 9, "axes.titlesize": 10}):
        fig = Figure(figsize=(10, 3.4), layout="constrained")
        FigureCanvasSVG(fig)
        ax = fig.add_subplot()
        times = [_day(t) for t in plot.times_ms]
        for series, label in zip(plot.series, _short_labels(plot), strict=True):
            ax.plot(times, series.values, label=label,
                    linewidth=1.6 if series.fired else 0.9, alpha=1.0 if series.fired else 0.7)
        if plot.threshold is not None and math.isfinite(plot.threshold):
            ax.axhline(plot.threshold, color="black", linestyle="--", linewidth=1,
                       label=f"threshold {plot.op or ''} {plot.threshold:g}".replace("  ", " "))
        last = range_ms[1]
        for k, iv in enumerate(rule.intervals):
            pending, firing = _spans(iv, last)
            if pending is not None:
                ax.axvspan(_day(pending[0]), _day(pending[1]), color=PENDING_COLOUR,
                           alpha=0.12, linewidth=0).set_gid(f"rule-{index + 1}-pending-{k}")
            ax.axvspan(_day(firing[0]), _day(firing[1]), color=FIRING_COLOUR, alpha=0.25,
                       linewidth=0).set_gid(f"rule-{index + 1}-firing-{k}")
        ax.set_xlim(_day(range_ms[0]), _day(range_ms[1]))
        ax.xaxis_date(dt.UTC)
        locator = mdates.AutoDateLocator(tz=dt.UTC)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(
            mdates.ConciseDateFormatter(locator, tz=dt.UTC))  # type: ignore[no-untyped-call]
        ax.set_xlabel("time (UTC)")
        label, formatter = _axis(unit)
        ax.set_ylabel(label)
        if formatter is not None:
            ax.yaxis.set_major_formatter(formatter)
        ax.grid(True, alpha=0.3)
        if plot.series or plot.threshold is not None:
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    return re.sub(r'<svg([^>]*?) width="[^"]*" height="[^"]*"',
                  rf'<svg\1 class="plot" role="img" aria-label="plot of rule {index + 1}"',
                  svg, count=1)


# ------------------------------------------------------------------ page


def _value(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.6g}"


def _labels(labels: Mapping[str, str]) -> str:
    return ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "alertname")


def _rule_view(rule: RuleReport, index: int, units: Mapping[str, str],
               range_ms: tuple[int, int]) -> dict[str, Any]:
    plot = rule.plot
    unit = guess_unit(plot.expr, units) if plot is not None else None
    return {
        "r": rule,
        "index": index,
        "anchor": f"rule-{index + 1}",
        "svg": (Markup(plot_svg(rule, plot, index, unit, range_ms))
                if plot is not None and rule.status == "ok" else None),
        "intervals": rule.intervals[:MAX_ROWS],
        "notifications": rule.notifications[:MAX_ROWS],
        "unit": unit,
    }


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                          trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(iso=iso, duration=duration, value=_value, labels=_labels)

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto;
       max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
code, pre { font: 13px ui-monospace, Menlo, Consolas, monospace; }
pre.expr { background: #f6f8fa; padding: .6em .8em; white-space: pre-wrap; border-radius: 4px; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border-bottom: 1px solid #e3e3e3; padding: .25em .7em; text-align: left;
         vertical-align: top; }
th { background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.facts td:first-child { color: #666; }
.status-ok { color: #1a7f37; } .status-not_evaluated, .status-no_data { color: #9a6700; }
.fired { color: #b42318; font-weight: 600; }
svg.plot { width: 100%; height: auto; display: block; }
.legend-key { display: inline-block; width: 1.2em; height: .8em; vertical-align: middle; }
.note { color: #555; font-size: 13px; }
section.rule { margin-bottom: 2.5em; }
"""

_TEMPLATE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Dry-run report: {{ info.paths | join(", ") }}</title>
<style>{{ css }}</style>
</head>
<body>
<header>
<h1>Dry-run report</h1>
<p>What would have happened if these alerting rules had been running over the stored history.
Every rule was evaluated at its group's interval, with its <code>for</code>,
<code>keep_firing_for</code>, recovery condition and no-data policy, as a live alerting engine
would have; notifications honour each rule's channels and cooldown. Nothing was sent and the
store was only read.</p>
<table class="facts">
<tr><td>rule files</td><td>{{ info.paths | join(", ") }}</td></tr>
<tr><td>store</td><td><code>{{ info.store }}</code></td></tr>
<tr><td>range (UTC)</td><td>{{ info.start_ms | iso }} to {{ info.end_ms | iso }}
  ({{ (info.end_ms - info.start_ms) | duration }})</td></tr>
<tr><td>groups</td><td>{% for g in info.groups %}{{ g.name }}
  (every {{ g.interval_ms | duration }}, {{ "{:,}".format(g.steps) }} evaluations
  {%- if g.query_offset_ms %}, query offset {{ g.query_offset_ms | duration }}{% endif %})
  {%- if not loop.last %}; {% endif %}{% endfor %}</td></tr>
<tr><td>rules</td><td>{{ alerts | length }} alerting ({{ fired }} fired), {{ records | length }}
  recording, {{ skipped | length }} not evaluated</td></tr>
<tr><td>run time</td><td>{{ "%.1f" | format(info.elapsed_s) }} s</td></tr>
</table>
{% if warnings %}<h3>Warnings</h3>
<ul>{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul>{% endif %}
<p class="note">How to read the plots: one line per series of the evaluated value (at most a few
series per rule: those that fired, and the ones closest to the threshold), the threshold as a
dashed line, <span class="legend-key" style="background:{{ pending }};opacity:.3"></span> pending
(the condition held, <code>for</code> had not yet passed) and
<span class="legend-key" style="background:{{ firing }};opacity:.5"></span> firing. Long ranges
are downsampled: each point then stands for a bucket of evaluations and shows the value furthest
towards the alert.</p>
</header>
<nav>
<h2>Summary</h2>
<table>
<tr><th>rule</th><th>status</th><th>firings</th><th>time firing</th><th>flaps</th>
<th>notifications</th></tr>
{% for v in views %}{% set r = v.r %}
<tr><td><a href="#{{ v.anchor }}">{{ r.key }}</a></td>
<td class="status-{{ r.status }}">{{ r.status | replace("_", " ") }}</td>
<td class="num{% if r.firings %} fired{% endif %}">{{ r.firings }}</td>
<td class="num">{{ r.firing_ms | duration }}</td><td class="num">{{ r.flaps }}</td>
<td class="num">{{ r.notifications | length }}</td></tr>
{% endfor %}
</table>
</nav>
<main>
{% for v in views %}{% set r = v.r %}
<section class="rule" id="{{ v.anchor }}" data-rule="{{ r.key }}"
  data-intervals="{{ r.intervals | length }}" data-status="{{ r.status }}">
<h2>{{ r.name }} <small class="note">group {{ r.group }}, {{ r.file }}</small></h2>
<pre class="expr">{{ r.expr }}</pre>
{% if r.status == "no_data" %}
<p class="status-no_data"><strong>No data</strong>:
{{ r.reason or "no series matched in the range" }}</p>
{% elif r.status != "ok" %}
<p class="status-{{ r.status }}"><strong>Not evaluated</strong>: {{ r.reason or r.status }}</p>
{% elif r.kind == "record" %}
<p>Recording rule, evaluated every {{ r.interval_ms | duration }}: {{ r.series }} series
recorded (later rules read them).</p>
{% for w in r.warnings + r.errors %}<p class="note">{{ w }}</p>{% endfor %}
{% else %}
<table class="facts">
<tr><td>evaluated</td><td>every {{ r.interval_ms | duration }}; for {{ r.for_ms | duration }};
  keep firing for {{ r.keep_firing_for_ms | duration }}</td></tr>
<tr><td>severity, channels</td><td>{{ r.severity or "-" }};
  {{ r.channels | join(", ") or "none" }}
  {%- if r.cooldown_ms %} (cooldown {{ r.cooldown_ms | duration }}){% endif %}</td></tr>
<tr><td>fired</td><td class="{% if r.firings %}fired{% endif %}">{{ r.firings }} time(s), in total
  {{ r.firing_ms | duration }}; median {{ r.median_firing_ms | duration }};
  first {{ r.first_firing_ms | iso }}, last {{ r.last_firing_ms | iso }}</td></tr>
<tr><td>series, flaps</td><td>{{ r.series }} series evaluated; {{ r.flaps }} flap(s)
  {%- if r.suppressed %}; {{ r.suppressed }} notification(s) suppressed by the cooldown
  {%- endif %}</td></tr>
</table>
{% for w in r.warnings + r.errors %}<p class="note">{{ w }}</p>{% endfor %}
{% if v.svg %}
<figure>
{{ v.svg }}
<figcaption class="note">Plotted: <code>{{ r.plot.expr }}</code>
{%- if v.unit %} ({{ v.unit }}){% endif %};
{{ r.plot.series | length }} of {{ r.plot.total_series }} series shown; one point per
{{ r.plot.bucket_ms | duration }}.</figcaption>
</figure>
{% endif %}
{% if r.kind == "alert" %}
<h3>Alerts ({{ r.intervals | length }})</h3>
{% if r.intervals %}
<table class="alerts">
<tr><th>pending since</th><th>firing from</th><th>resolved</th><th>duration</th><th>labels</th>
<th>peak</th></tr>
{% for iv in v.intervals %}
<tr><td>{{ iv.active_ms | iso }}</td><td>{{ iv.start_ms | iso }}</td>
<td>{{ iv.end_ms | iso if iv.end_ms is not none else "still firing" }}</td>
<td class="num">{{ iv.duration_ms | duration }}</td><td><code>{{ iv.labels | labels }}</code></td>
<td class="num">{{ iv.peak | value }}</td></tr>
{% endfor %}
</table>
{% if r.intervals | length > v.intervals | length %}<p class="note">and
{{ r.intervals | length - v.intervals | length }} more (see the JSON output).</p>{% endif %}
{% else %}<p>Never fired in this range.</p>{% endif %}
<h3>Notifications ({{ r.notifications | length }})</h3>
{% if r.notifications %}
<table class="notifications">
<tr><th>time</th><th>channel</th><th>kind</th><th>labels</th><th>value</th><th>summary</th></tr>
{% for n in v.notifications %}
<tr><td>{{ n.time_ms | iso }}</td><td>{{ n.channel }}</td><td>{{ n.kind }}</td>
<td><code>{{ n.labels | labels }}</code></td><td class="num">{{ n.value | value }}</td>
<td>{{ n.summary }}</td></tr>
{% endfor %}
</table>
{% if r.notifications | length > v.notifications | length %}<p class="note">and
{{ r.notifications | length - v.notifications | length }} more (see the JSON output).</p>{% endif %}
{% else %}<p>None.</p>{% endif %}
{% endif %}
{% endif %}
</section>
{% endfor %}
</main>
</body>
</html>
""")


def render(report: DryRunReport, units: Mapping[str, str] | None = None) -> str:
    """The whole page. ``units`` (metric name to unit) defaults to the rule files' declarations."""
    info = report.info
    known = dict(units) if units is not None else declared_units(info.paths)
    range_ms = (info.start_ms, info.end_ms)
    views = [_rule_view(r, i, known, range_ms) for i, r in enumerate(report.rules)]
    alerts = [r for r in report.rules if r.kind == "alert"]
    return _TEMPLATE.render(
        info=info, css=_CSS, views=views, warnings=report.warnings, alerts=alerts,
        records=[r for r in report.rules if r.kind == "record"],
        skipped=[r for r in report.rules if r.status != "ok"],
        fired=sum(1 for r in alerts if r.firings), pending=PENDING_COLOUR, firing=FIRING_COLOUR)
