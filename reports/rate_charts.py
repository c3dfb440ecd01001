"""Charts of jobs over time and of recovery, as Jepsen's rate and latency plots.

``rates_svg`` draws two panels on the timeline's time axis: jobs ended per
second (completed, and ended otherwise, stacked) and job latency per bin
(p50 and p99, with every job as a faint dot while there are few enough),
each fault window shaded from its ``fault_start`` to its ``fault_heal`` and
each instant fault (a kill) a thin line (past ``MAX_INSTANT_LINES`` of a
kind, a short tick along the top instead). Every shaded window carries an id
(``window-<fault id>-<panel>``) and the lines of each instant kind one
(``instants-<kind>-<panel>``), so a test, or a reader of the SVG, can find
them. ``recovery_svg`` is the
histogram of SIGKILL-to-finished-elsewhere times with the pack's declared
limit as a line.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import matplotlib
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from reports.charts import STYLE, figure, to_svg
from reports.jobtimes import Histogram, JobSpan, RateBin
from reports.timeline import FaultMark

MAX_DOTS = 600
"""Up to this many jobs, each one's latency is drawn as a dot behind the percentiles."""
MAX_INSTANT_LINES = 30
"""Up to this many instant faults of a kind are lines across the panels; more are ticks
along the top."""
COMPLETED_COLOUR = "#2da44e"
OTHER_COLOUR = "#cf222e"
P50_COLOUR = "#0969da"
P99_COLOUR = "#bf3989"


def shade_faults(ax: Axes, faults: Sequence[FaultMark], panel: str) -> None:
    """Each window shaded over its span (id ``window-<fault id>-<panel>``), the instants of
    each kind thin lines, drawn together (id ``instants-<kind>-<panel>``)."""
    instants: dict[str, list[float]] = {}
    colours: dict[str, str] = {}
    for mark in faults:
        if mark.end is None:
            instants.setdefault(mark.kind, []).append(mark.start)
            colours[mark.kind] = mark.colour
        else:
            ax.axvspan(mark.start, max(mark.end, mark.start + 0.01), color=mark.colour,
                       alpha=0.14, linewidth=0, gid=f"window-{mark.fault_id}-{panel}")
    for kind, times in instants.items():
        # a kill every few seconds would cover the data in lines: past a few, a rug of
        # ticks along the top
        bottom = 0.0 if len(times) <= MAX_INSTANT_LINES else 0.93
        ax.vlines(times, bottom, 1, transform=ax.get_xaxis_transform(), color=colours[kind],
                  linewidth=0.7 if bottom == 0 else 0.9, alpha=0.55 if bottom == 0 else 0.8,
                  gid=f"instants-{kind}-{panel}")


def rates_svg(bins: Sequence[RateBin], spans: Sequence[JobSpan], faults: Sequence[FaultMark],
              x_range: tuple[float, float]) -> str:
    with matplotlib.rc_context(STYLE):
        fig = figure(11.0, 4.6)
        grid = fig.add_gridspec(2, 1, height_ratios=[1, 1.15])
        rate_ax = fig.add_subplot(grid[0])
        latency_ax = fig.add_subplot(grid[1], sharex=rate_ax)
        width = bins[0].width
        starts = [b.start for b in bins]
        rate_ax.bar(starts, [b.completed / width for b in bins], width=width, align="edge",
                    color=COMPLETED_COLOUR, linewidth=0)
        if any(b.other for b in bins):
            rate_ax.bar(starts, [b.other / width for b in bins], width=width, align="edge",
                        bottom=[b.completed / width for b in bins], color=OTHER_COLOUR,
                        linewidth=0)
        rate_ax.set_ylabel("jobs ended / s")
        rate_ax.set_ylim(0, max(max(b.rate for b in bins) * 1.15, 0.1))
        rate_ax.tick_params(axis="x", labelbottom=False)
        ended = [(s.ended, s.latency) for s in spans
                 if s.ended is not None and s.latency is not None]
        if len(ended) <= MAX_DOTS:
            latency_ax.plot([t for t, _ in ended], [v for _, v in ended], marker="o",
                            markersize=2.5, linestyle="none", color="#8c959f", alpha=0.5)
        for attr, colour, label in (("p50", P50_COLOUR, "p50"), ("p99", P99_COLOUR, "p99")):
            # a bin where no job ended breaks the line instead of bridging it
            xs = [b.start + width / 2 for b in bins]
            ys = [math.nan if getattr(b, attr) is None else getattr(b, attr) for b in bins]
            latency_ax.plot(xs, ys, color=colour, linewidth=1.4, marker="o", markersize=3,
                            label=label)
        latency_ax.set_ylabel("submit → end (s)")
        latency_ax.set_ylim(bottom=0)
        latency_ax.set_xlabel(f"seconds since the run started (bins of {width:g} s, by the "
                              "time each job ended)")
        for ax, panel in ((rate_ax, "rate"), (latency_ax, "latency")):
            shade_faults(ax, faults, panel)
            ax.grid(axis="both", color="#eaeef2", linewidth=0.5)
        rate_ax.set_xlim(*x_range)
        fig.legend(handles=_legend(bins, faults, dots=0 < len(ended) <= MAX_DOTS),
                   loc="outside lower center", ncols=6, frameon=False)
        return to_svg(fig, "rates", "jobs ended per second and job latency over time, "
                                    "faults shaded")


def _legend(bins: Sequence[RateBin], faults: Sequence[FaultMark], *,
            dots: bool) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [Patch(facecolor=COMPLETED_COLOUR, label="completed")]
    if any(b.other for b in bins):
        handles.append(Patch(facecolor=OTHER_COLOUR, label="failed or ended otherwise"))
    handles += [Line2D([], [], color=P50_COLOUR, marker="o", markersize=3, label="latency p50"),
                Line2D([], [], color=P99_COLOUR, marker="o", markersize=3, label="latency p99")]
    if dots:
        handles.append(Line2D([], [], color="#8c959f", marker="o", markersize=3,
                              linestyle="none", label="one job"))
    kinds: dict[str, tuple[str, bool]] = {}
    for mark in faults:
        kinds.setdefault(mark.kind, (mark.colour, mark.end is not None))
    for kind, (colour, window) in sorted(kinds.items()):
        handles.append(Patch(facecolor=colour, alpha=0.3, label=kind) if window else
                       Line2D([], [], color=colour, linewidth=0.9, label=kind))
    return handles


def recovery_svg(found: Histogram, limit: float | None, pack: str | None) -> str:
    """Bars of the histogram; the pack's recovery limit as a red line."""
    with matplotlib.rc_context(STYLE):
        fig = figure(11.0, 2.4)
        ax = fig.add_subplot()
        starts = [k * found.width for k in range(len(found.counts))]
        ax.bar(starts, found.counts, width=found.width, align="edge", color="#54aeff",
               edgecolor="white", linewidth=0.5)
        right = len(found.counts) * found.width
        if limit:
            ax.axvline(limit, color="#cf222e", linewidth=1.5, linestyle="--")
            ax.annotate(f"limit {limit:g} s{f' ({pack})' if pack else ''}", (limit, 1),
                        xycoords=("data", "axes fraction"), xytext=(4, -4),
                        textcoords="offset points", ha="left", va="top", fontsize=8,
                        color="#cf222e")
            right = max(right, limit * 1.12)
        ax.set_xlim(0, right)
        ax.set_ylabel("jobs")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"seconds from the SIGKILL to the job's end on another worker "
                      f"(bins of {found.width:g} s)")
        ax.grid(axis="y", color="#eaeef2", linewidth=0.5)
        return to_svg(fig, "recovery-histogram", "recovery latency histogram: SIGKILL to "
                                                 "the job finished elsewhere")
