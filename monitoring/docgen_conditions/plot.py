"""Figures of the condition pages as deterministic SVG.

A figure is a column of panels sharing one time axis (hours since the start of
the example's data). Each panel draws what a reader needs to see a condition
work: the evaluated value (lines), the threshold or recovery level (dashed
horizontal lines), a band (shaded between two levels or two curves), the steps
where the condition holds (dots), and alert or context intervals (shaded
spans).

The SVG must be the same bytes on every run and machine with the pinned
matplotlib, so the committed images can be compared with freshly generated
ones: text stays text (``svg.fonttype: none``, no font outlines), the ids
matplotlib derives from a hash are salted with the figure's name
(``svg.hashsalt``), and the date metadata is left out. The settings are those
of the dry-run's HTML report (:mod:`monitoring.dryrun.html`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import matplotlib
import numpy as np
import numpy.typing as npt
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]

FLAG_COLOUR = "#d62728"
"""Steps where a condition holds, and firing alerts."""
LEVEL_COLOUR = "black"
RECOVER_COLOUR = "#2ca02c"
BAND_COLOUR = "#1f77b4"
CONTEXT_COLOUR = "#7f7f7f"
PALETTE = ("#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#17becf", "#bcbd22")
"""Line colours; red and green are kept for flags and recovery."""


@dataclass(frozen=True, slots=True)
class Line:
    """A curve: the evaluated value of an expression, or raw samples."""

    label: str
    x: FloatArray
    y: FloatArray
    colour: str | None = None
    width: float = 1.2
    style: str = "-"
    steps: bool = False  # drawn as a step function (values that jump: scores, weights)


@dataclass(frozen=True, slots=True)
class Level:
    """A horizontal line: a threshold or a recovery level."""

    label: str
    y: float
    colour: str = LEVEL_COLOUR
    style: str = "--"


@dataclass(frozen=True, slots=True)
class Band:
    """A shaded band between two levels (scalars) or two curves over ``x``."""

    label: str
    lo: float | FloatArray
    hi: float | FloatArray
    x: FloatArray | None = None
    colour: str = BAND_COLOUR
    alpha: float = 0.15


@dataclass(frozen=True, slots=True)
class Marks:
    """Dots at the steps where a condition holds."""

    label: str
    x: FloatArray
    y: FloatArray
    colour: str = FLAG_COLOUR
    size: float = 9.0


@dataclass(frozen=True, slots=True)
class Spans:
    """Shaded time intervals ``[start, end)`` in hours: firing alerts, maintenance..."""

    label: str
    intervals: Sequence[tuple[float, float]]
    colour: str = FLAG_COLOUR
    alpha: float = 0.18


Item = Line | Level | Band | Marks | Spans


@dataclass(frozen=True, slots=True)
class Panel:
    """One plot of a figure."""

    title: str
    items: Sequence[Item]
    ylabel: str = "value"
    percent: bool = False  # values are ratios shown as percentages
    ylim: tuple[float, float] | None = None
    yticks: Sequence[float] | None = None
    yticklabels: Sequence[str] | None = None
    legend: bool = True
    height: float = 2.3


@dataclass(frozen=True, slots=True)
class FigureSpec:
    """A figure: panels from top to bottom over a shared time axis."""

    name: str  # file stem, also the salt of the SVG ids
    panels: Sequence[Panel]
    xlabel: str = "time (hours)"
    xticks: Sequence[float] | None = None
    width: float = 9.0


def render_svg(spec: FigureSpec) -> str:
    """The figure as a standalone SVG document (same bytes for the same spec)."""
    buf = io.StringIO()
    save(spec, buf, "svg")
    return _COORDINATE.sub(_two_decimals, buf.getvalue())


_COORDINATE = re.compile(r'(?<=[ "LMCQz])-?\d+\.\d{3,}')
"""A coordinate with more than two decimals, as matplotlib writes path data and positions."""


def _two_decimals(match: re.Match[str]) -> str:
    """A coordinate with two decimals at most.

    Coordinates are points (1/72 inch): a hundredth is far below what anyone can
    see, and dropping the other decimals makes the committed files a quarter smaller.
    """
    text = f"{float(match.group(0)):.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def save(spec: FigureSpec, out: IO[str] | IO[bytes], fmt: str) -> None:
    """Draw the figure and write it in format ``fmt`` (``png`` is handy for previews)."""
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": spec.name,
                                "font.size": 9, "axes.titlesize": 10,
                                "axes.titlelocation": "left", "legend.fontsize": 8}):
        height = sum(p.height for p in spec.panels) + 0.5
        fig = Figure(figsize=(spec.width, height), layout="constrained")
        FigureCanvasSVG(fig)
        axes = fig.subplots(len(spec.panels), 1, sharex=True, squeeze=False,
                            height_ratios=[p.height for p in spec.panels])[:, 0]
        for ax, panel in zip(axes, spec.panels, strict=True):
            _draw(ax, panel)
        if spec.xticks is not None:
            axes[-1].set_xticks(list(spec.xticks))
        axes[-1].set_xlabel(spec.xlabel)
        _freeze_layout(fig)
        fig.savefig(out, format=fmt, metadata={"Date": None} if fmt == "svg" else None)


LAYOUT_DIGITS = 5
"""Axes positions (fractions of the figure) are rounded to this many decimals."""


def _freeze_layout(fig: Figure) -> None:
    """Run the constrained layout once, then pin every axes at its position, rounded.

    The layout solver's result can differ in the last bits from one process to the
    next (its arithmetic order is not fixed), and matplotlib names each clip path
    by a hash of the exact axes box: unrounded, the same figure would come out with
    other ids now and then.
    """
    fig.draw_without_rendering()
    boxes = [ax.get_position().bounds for ax in fig.axes]
    fig.set_layout_engine("none")
    for ax, (x, y, w, h) in zip(fig.axes, boxes, strict=True):
        ax.set_position((round(float(x), LAYOUT_DIGITS), round(float(y), LAYOUT_DIGITS),
                         round(float(w), LAYOUT_DIGITS), round(float(h), LAYOUT_DIGITS)))


def _draw(ax: Axes, panel: Panel) -> None:
    colours = iter(PALETTE)
    for item in panel.items:
        match item:
            case Line():
                colour = item.colour or next(colours)
                if item.steps:
                    ax.step(item.x, item.y, where="post", label=item.label, color=colour,
                            linewidth=item.width, linestyle=item.style)
                else:
                    ax.plot(item.x, item.y, label=item.label, color=colour,
                            linewidth=item.width, linestyle=item.style)
            case Level():
                ax.axhline(item.y, label=item.label, color=item.colour, linestyle=item.style,
                           linewidth=1.0)
            case Band():
                if item.x is None:
                    ax.axhspan(float(item.lo), float(item.hi),
                               color=item.colour, alpha=item.alpha, linewidth=0,
                               label=item.label)
                else:
                    ax.fill_between(item.x, item.lo, item.hi, color=item.colour,
                                    alpha=item.alpha, linewidth=0, label=item.label)
            case Marks():
                ax.scatter(item.x, item.y, s=item.size, color=item.colour, zorder=3,
                           label=item.label, linewidths=0)
            case Spans():
                for k, (lo, hi) in enumerate(item.intervals):
                    ax.axvspan(lo, hi, color=item.colour, alpha=item.alpha, linewidth=0,
                               label=item.label if k == 0 else None)
    ax.set_title(panel.title)
    ax.set_ylabel(panel.ylabel)
    if panel.percent:
        ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0, decimals=0))
    if panel.ylim is not None:
        ax.set_ylim(*panel.ylim)
    if panel.yticks is not None:
        ax.set_yticks(list(panel.yticks), labels=panel.yticklabels)
    ax.grid(True, alpha=0.3)
    if panel.legend:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
