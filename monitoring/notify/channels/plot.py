"""A PNG plot of an alert's metric around the alert, attached to emails.

The person paged at 3 a.m. wants to see at a glance whether the metric spiked,
crept up, or flaps: the email carries a small line chart of the series the alert
is about over the hour before it started, with the firing interval shaded.

Drawing is separate from reading. :func:`plot_png` draws given series;
:func:`store_plot_source` turns a ``read(message) -> series`` function, which the
system supplies (it knows the rule's selectors and owns the Store's executor), into
the :data:`~monitoring.notify.channels.base.PlotSource` of a
:class:`~monitoring.notify.channels.base.ChannelContext`. Only matplotlib's
object API and the Agg canvas are used (no pyplot, no global state), so plots can
be drawn in worker threads.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from monitoring.notify.channels.base import PlotSource
from monitoring.notify.model import FIRING, Message

SeriesData = tuple[Mapping[str, str], Sequence[int], Sequence[float]]
"""One series to draw: its labels, sample times (epoch ms) and values."""
SeriesReader = Callable[[Message], Sequence[SeriesData]]
"""What the system supplies: the series to plot for a message (empty: no plot)."""

BEFORE_MS = 3_600_000
"""How far before the earliest alert start the plot begins."""
AFTER_MS = 600_000
"""How far after the end (or the message time, while firing) the plot runs."""
MAX_SERIES = 8
"""Series drawn at most (legend stays readable); the rest are counted in the title."""
FIRING_COLOUR = "#d62728"
RESOLVED_COLOUR = "#2ca02c"
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2",
           "#7f7f7f")

_MS_PER_DAY = 86_400_000

log = logging.getLogger(__name__)


def plot_window(message: Message, before_ms: int = BEFORE_MS,
                after_ms: int = AFTER_MS) -> tuple[int, int]:
    """The time range ``[start, end]`` (epoch ms) a plot of the message should cover."""
    starts = [a.starts_at_ms for a in message.alerts] or [message.created_ms]
    ends = [a.ends_at_ms for a in message.alerts if a.ends_at_ms is not None]
    end = max([message.created_ms, *ends])
    return min(starts) - before_ms, end + after_ms


def plot_png(series: Sequence[SeriesData], *, title: str = "",
             spans: Sequence[tuple[int, int | None, str]] = (),
             window: tuple[int, int] | None = None, width_px: int = 800,
             height_px: int = 320) -> bytes:
    """A PNG line chart of ``series`` with ``spans`` (start ms, end ms or None, status) shaded.

    A span without an end runs to the right edge (a firing alert). ``window`` fixes the
    x range; by default it covers the data and the spans.
    """
    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    lo, hi = window if window is not None else _extent(series, spans)
    for i, (labels, times, values) in enumerate(series[:MAX_SERIES]):
        ax.plot(np.asarray(times, dtype=np.float64) / _MS_PER_DAY,
                np.asarray(values, dtype=np.float64), linewidth=1.3,
                color=PALETTE[i % len(PALETTE)], label=_legend(labels))
    for start, end, status in spans:
        colour = FIRING_COLOUR if status == FIRING else RESOLVED_COLOUR
        ax.axvspan(_x(start), _x(hi if end is None else end), color=colour,
                   alpha=0.15, linewidth=0)
        ax.axvline(_x(start), color=colour, linewidth=1.0, linestyle="--")
    extra = len(series) - MAX_SERIES
    ax.set_title(title + (f" (+{extra} more series)" if extra > 0 else ""), fontsize=10,
                 loc="left")
    ax.set_xlim(_x(lo), _x(hi))
    ax.xaxis_date(tz=dt.UTC)
    ax.xaxis.set_major_formatter(
        mdates.DateFormatter("%H:%M", tz=dt.UTC))  # type: ignore[no-untyped-call]
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(True, linewidth=0.4, alpha=0.5)
    if series and len(series) <= MAX_SERIES and any(labels for labels, _, _ in series):
        ax.legend(fontsize=7, loc="upper left", frameon=False)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def store_plot_source(read: SeriesReader, *, before_ms: int = BEFORE_MS,
                      after_ms: int = AFTER_MS) -> PlotSource:
    """The context's plot renderer: ``read(message)``'s series drawn around the alerts.

    A failing ``read`` or an empty result gives no plot (None): the notification goes out
    without an attachment rather than not at all.
    """

    def source(message: Message) -> bytes | None:
        try:
            series = [s for s in read(message) if len(s[1])]
        except Exception:  # a plot must never stop a notification
            log.warning("cannot read the series to plot for message %s", message.id,
                        exc_info=True)
            return None
        if not series:
            return None
        names = list(dict.fromkeys(a.name or a.rule for a in message.alerts))
        spans = [(a.starts_at_ms, a.ends_at_ms, a.status) for a in message.alerts]
        return plot_png(series, title=", ".join(names), spans=spans,
                        window=plot_window(message, before_ms, after_ms))

    return source


def _extent(series: Sequence[SeriesData],
            spans: Sequence[tuple[int, int | None, str]]) -> tuple[int, int]:
    times = [t for _, ts, _ in series for t in (ts[0], ts[-1]) if len(ts)]
    times += [t for start, end, _ in spans for t in (start, end) if t is not None]
    if not times:
        return 0, 1
    lo, hi = min(times), max(times)
    return lo, max(hi, lo + 1)


def _x(ms: int) -> float:
    """Matplotlib's date axis unit: days since 1970-01-01 (its default epoch)."""
    return ms / _MS_PER_DAY


def _legend(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    text = f"{name}{{{inner}}}" if inner else name
    return text if len(text) <= 80 else text[:79] + "…"
