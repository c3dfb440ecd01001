"""The report's charts, drawn with matplotlib and returned as inline SVG text.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot, no
global backend state), saved as SVG with text kept as text
(``svg.fonttype: none``, so a chart costs tens of kilobytes, not hundreds),
then trimmed for inlining in HTML: no XML prolog, no metadata block, no
namespace URLs. Each figure gets its own ``svg.hashsalt`` so the element ids
of two charts on one page never collide.

Colours mean the same thing on every chart: one colour per worker
incarnation (its lane, and the commits it made), one per fault kind, and the
verdict colours of the page (``VERDICT_COLORS``).
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from reports import crowd
from reports.measures import ChunkCalls
from reports.timeline import FaultMark, ProgressPoint, Timeline

VERDICT_COLORS: Mapping[str, str] = {"valid": "#1a7f37", "invalid": "#cf222e",
                                     "unknown": "#bf8700", "incomplete": "#6e7781",
                                     "not_applicable": "#afb8c1"}
OUTCOME_COLORS: Mapping[str, str] = {"new": "#2da44e", "repeat": "#d4a72c",
                                     "status": "#54aeff", "fault": "#cf222e",
                                     "bad_request": "#8c959f"}
MAX_CHUNK_TICKS = 40
"""Past this many chunks the calls chart labels jobs instead of every chunk."""
MAX_CALL_BARS = 120
"""Past this many chunks (a soak's thousands) each bar of the calls chart sums a run of
consecutive chunks: the chart stays readable and quick to draw."""
LANE_COLORS = ("#0969da", "#8250df", "#1b7c83", "#bf3989", "#4d2d00", "#116329", "#953800",
               "#0550ae", "#6639ba", "#24292f")
NEMESIS = "nemesis"
_CHAR_WIDTH = 0.0068
"""Roughly how much of the timeline's x span one character of a 7.5 pt bold label takes."""

STYLE: dict[Any, Any] = {  # rc keys are typed as literals; these are all real rc keys
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Liberation Sans", "Arial", "Helvetica"],
    "font.size": 9,
    "axes.edgecolor": "#8c959f",
    "axes.labelcolor": "#24292f",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "xtick.color": "#57606a",
    "ytick.color": "#57606a",
    "svg.fonttype": "none",
}


def lane_colors(names: Sequence[str]) -> dict[str, str]:
    """A colour for each worker incarnation, in lane order."""
    return {name: LANE_COLORS[i % len(LANE_COLORS)] for i, name in enumerate(names)}


def to_svg(fig: Figure, salt: str, label: str) -> str:
    """The figure as an ``<svg>`` element ready to inline (``label`` is its accessible name)."""
    buffer = io.StringIO()
    rc: dict[Any, Any] = {"svg.fonttype": "none", "svg.hashsalt": salt}
    with matplotlib.rc_context(rc):
        fig.savefig(buffer, format="svg", bbox_inches="tight", pad_inches=0.05,
                    metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)
    text = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", text)
    text = text.replace("xlink:href=", "href=")
    text = re.sub(r"\n\s+", "\n", text)
    return text.replace("<svg", f'<svg role="img" aria-label="{label}"', 1)


def figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(width, height), layout="constrained")


def timeline_svg(timeline: Timeline, colors: Mapping[str, str],
                 scale: crowd.Scale | None = None) -> str:
    """Worker lanes over a nemesis lane, fault windows shaded, and job progress below;
    ``scale`` says which parts a big run aggregates (``reports.crowd``)."""
    scale = scale or crowd.Scale()
    with matplotlib.rc_context(STYLE):
        kinds = scale.fault_kinds
        nemesis = [NEMESIS] if kinds is None else list(kinds)
        workers = [lane.name for lane in timeline.lanes] if scale.slots is None else \
            [slot.name for slot in scale.slots]
        names = nemesis + workers
        rows = len(names)
        fig = figure(11.0, 1.9 + 0.42 * rows + 1.9)
        grid = fig.add_gridspec(2, 1, height_ratios=[0.5 + 0.42 * rows, 1.9])
        lanes_ax = fig.add_subplot(grid[0])
        progress_ax = fig.add_subplot(grid[1], sharex=lanes_ax)
        y_of = {name: rows - 1 - i for i, name in enumerate(names)}
        if scale.slots is None:
            _draw_lanes(lanes_ax, timeline, colors, y_of, scale.busy)
        else:
            crowd.draw_slots(lanes_ax, scale.slots, scale.busy, colors, y_of)
        if kinds is None:
            _draw_faults(lanes_ax, progress_ax, timeline.faults, y_of[NEMESIS], timeline.t_end)
        else:
            crowd.draw_fault_rows(lanes_ax, progress_ax, timeline.faults, y_of)
        if scale.counts is None:
            _draw_progress(progress_ax, timeline, colors)
        else:
            crowd.draw_job_counts(progress_ax, scale.counts)
        left = max(0.0, timeline.first_worker_start - 0.3)
        lanes_ax.set_xlim(left, timeline.t_end + 0.2)
        lanes_ax.set_ylim(-0.7, rows - 0.3)
        labels = dict(zip(names, names, strict=True))
        if kinds is not None:
            labels.update(crowd.fault_row_labels(timeline.faults, kinds))
        if scale.slots is not None:
            labels.update({slot.name: f"{slot.name} ({len(slot.lanes)} starts)"
                           for slot in scale.slots})
        lanes_ax.set_yticks([y_of[n] for n in names], [labels[n] for n in names])
        lanes_ax.tick_params(axis="x", labelbottom=False)
        lanes_ax.grid(axis="x", color="#d0d7de", linewidth=0.5)
        progress_ax.grid(axis="x", color="#d0d7de", linewidth=0.5)
        progress_ax.set_xlabel("seconds since the run started")
        kind_colours = dict(sorted({mark.kind: mark.colour for mark in timeline.faults}.items()))
        rejected = any(lane.rejected for lane in timeline.lanes)
        handles = _legend(kind_colours, rejected, commits=scale.counts is None)
        if scale.busy is not None:
            handles[0:1] = crowd.busy_legend()
        if scale.counts is not None:
            handles += crowd.counts_legend(any(scale.counts.other))
        fig.legend(handles=handles, loc="outside lower center", ncols=6, frameon=False)
        what = "one lane per worker incarnation" if scale.slots is None else \
            "one row per worker slot"
        return to_svg(fig, "timeline", f"timeline: {what}, faults and job progress")


def _draw_lanes(ax: Axes, timeline: Timeline, colors: Mapping[str, str],
                y_of: Mapping[str, int],
                busy: Mapping[str, Sequence[tuple[float, float]]] | None = None) -> None:
    for lane in timeline.lanes:
        y, color = y_of[lane.name], colors.get(lane.name, "#57606a")
        if busy is not None:
            crowd.draw_lane(ax, lane, y, color, busy.get(lane.name, ()))
        else:
            ax.broken_barh([(lane.start, max(lane.end - lane.start, 0.01))], (y - 0.25, 0.5),
                           facecolors=color, alpha=0.85, linewidth=0)
            for start, end in lane.pauses:
                ax.broken_barh([(start, max(end - start, 0.01))], (y - 0.25, 0.5),
                               facecolors="white", edgecolors=color, hatch="////",
                               linewidth=0.8)
            if lane.killed:
                ax.plot([lane.end], [y], marker="X", markersize=11, color="#cf222e",
                        markeredgecolor="white", linestyle="none", zorder=6)
            elif lane.end_reason.startswith("exit"):
                ax.plot([lane.end], [y], marker="|", markersize=12, color="#57606a",
                        linestyle="none", zorder=6)
        if lane.rejected:
            ax.plot(list(lane.rejected), [y] * len(lane.rejected), marker="x", markersize=7,
                    color="#24292f", markeredgewidth=1.5, linestyle="none", zorder=7)
        crowded = len(lane.hits) > 6
        for t, point in lane.hits:
            ax.plot([t], [y], marker="D", markersize=6, color="#f2cc60",
                    markeredgecolor="#24292f", markeredgewidth=0.7, linestyle="none", zorder=7)
            if not crowded:
                ax.annotate(point, (t, y + 0.28), fontsize=7, ha="center", va="bottom",
                            color="#24292f")


def _draw_faults(lanes_ax: Axes, progress_ax: Axes, faults: Sequence[FaultMark], y: int,
                 t_end: float) -> None:
    for mark in faults:
        color = mark.colour
        if mark.end is not None:
            width = max(mark.end - mark.start, 0.01)
            for ax in (lanes_ax, progress_ax):
                ax.axvspan(mark.start, mark.start + width, color=color, alpha=0.13, linewidth=0)
            lanes_ax.broken_barh([(mark.start, width)], (y - 0.25, 0.5), facecolors=color,
                                 alpha=0.8, linewidth=0)
        else:
            for ax in (lanes_ax, progress_ax):
                ax.axvline(mark.start, color=color, linestyle="--", linewidth=1, alpha=0.8)
            lanes_ax.plot([mark.start], [y], marker="v", markersize=8, color=color,
                          linestyle="none", zorder=6)
    # one label per cluster of faults that fired at (almost) the same moment, above the
    # nemesis lane, or below it when it would run into the previous label
    span = max(t_end, 1.0)
    row_end = [float("-inf"), float("-inf")]
    for group in _clusters(faults, span * 0.04):
        text = " · ".join(f"{m.fault_id} {m.label}" for m in group)
        start = group[0].start
        row = 0 if start > row_end[0] else 1 if start > row_end[1] else \
            min((0, 1), key=lambda r: row_end[r])
        row_end[row] = start + len(text) * _CHAR_WIDTH * span
        lanes_ax.annotate(text, (start, y + 0.3 if row == 0 else y - 0.3), fontsize=7.5,
                          ha="left", va="bottom" if row == 0 else "top", color="#24292f",
                          fontweight="bold")


def _clusters(faults: Sequence[FaultMark], gap: float) -> list[list[FaultMark]]:
    groups: list[list[FaultMark]] = []
    for mark in sorted(faults, key=lambda m: m.start):
        if groups and mark.start - groups[-1][0].start < gap:
            groups[-1].append(mark)
        else:
            groups.append([mark])
    return groups


def _draw_progress(ax: Axes, timeline: Timeline, colors: Mapping[str, str]) -> None:
    ax.set_ylabel("chunks committed")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if not timeline.progress:
        ax.text(0.5, 0.5, "no chunk was committed", transform=ax.transAxes, ha="center",
                va="center", color="#57606a")
        return
    styles = ["-", "--", ":", "-."]
    several = len(timeline.jobs) > 1
    by_job: dict[str, list[ProgressPoint]] = {}
    for point in timeline.progress:
        by_job.setdefault(point.job_id, []).append(point)
    for number, job in enumerate(timeline.jobs):
        points = by_job.get(job, [])
        if not points:
            continue
        xs = [timeline.first_worker_start] + [p.t for p in points]
        ys = [0] + [p.chunks_done for p in points]
        ax.step(xs, ys, where="post", color="#8c959f", linewidth=1.2,
                linestyle=styles[number % len(styles)])
        for point in points:
            star = point.event == "job_completed"
            ax.plot([point.t], [point.chunks_done], marker="*" if star else "o",
                    markersize=11 if star else 5, linestyle="none",
                    color=colors.get(point.worker, "#57606a"), markeredgecolor="white",
                    markeredgewidth=0.5, zorder=5)
        if several:  # name each job at its last point instead of a legend over the data
            ax.annotate(f"#{number + 1}", (points[-1].t, points[-1].chunks_done),
                        xytext=(0, 7), textcoords="offset points", ha="center", fontsize=7,
                        color="#57606a")
    top = max(p.chunk_count or p.chunks_done for p in timeline.progress)
    ax.set_ylim(-0.3, top + max(0.8, top * 0.12))


def _legend(kinds: Mapping[str, str], rejected: bool, *,
            commits: bool = True) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [
        Patch(facecolor="#57606a", alpha=0.85, label="worker running"),
        Patch(facecolor="white", edgecolor="#57606a", hatch="////", label="paused (SIGSTOP)"),
        Line2D([], [], marker="X", color="#cf222e", markeredgecolor="white", markersize=9,
               linestyle="none", label="SIGKILL"),
        Line2D([], [], marker="|", color="#57606a", markersize=9, linestyle="none",
               label="exited"),
        Line2D([], [], marker="D", color="#f2cc60", markeredgecolor="#24292f", markersize=6,
               linestyle="none", label="failpoint hit"),
    ]
    if commits:
        handles += [Line2D([], [], marker="o", color="#57606a", markersize=5, linestyle="none",
                           label="chunk commit (worker's colour)"),
                    Line2D([], [], marker="*", color="#57606a", markersize=9, linestyle="none",
                           label="job completed")]
    if rejected:
        handles.append(Line2D([], [], marker="x", color="#24292f", markeredgewidth=1.5,
                              markersize=6, linestyle="none", label="write rejected (stale epoch)"))
    for kind, colour in kinds.items():
        handles.append(Patch(facecolor=colour, alpha=0.6,
                             label=kind))
    return handles


@dataclass(frozen=True)
class CallBin:
    """Consecutive chunks of the calls chart drawn as one bar."""

    first: ChunkCalls
    size: int
    counts: Counter[str]
    billed_twice: bool


def bin_chunks(chunks: Sequence[ChunkCalls], most: int = MAX_CALL_BARS) -> list[CallBin]:
    """``chunks`` in at most ``most`` bars of equal runs (the last may be shorter); every
    call is counted in exactly one bar, and a bar holding a chunk billed twice says so."""
    size = max(1, -(-len(chunks) // most))
    bins = []
    for start in range(0, len(chunks), size):
        run = chunks[start:start + size]
        counts: Counter[str] = Counter()
        for chunk in run:
            counts.update(chunk.counts)
        bins.append(CallBin(run[0], len(run), counts, any(c.billed_twice for c in run)))
    return bins


def calls_svg(chunks: Sequence[ChunkCalls], job_numbers: Mapping[str, int]) -> str:
    """Stacked bars: calls per chunk by outcome; chunks billed twice marked above."""
    if len(chunks) > MAX_CALL_BARS:
        return _binned_calls_svg(bin_chunks(chunks), job_numbers, len(chunks))
    with matplotlib.rc_context(STYLE):
        fig = figure(min(11.0, 3.4 + 0.3 * len(chunks)), 2.4)
        ax = fig.add_subplot()
        several = len({c.job_id for c in chunks}) > 1
        labels = [_chunk_label(c, job_numbers, several) for c in chunks]
        xs = list(range(len(chunks)))
        bottoms = _stacked_bars(ax, [c.counts for c in chunks], width=0.7)
        for x, chunk in zip(xs, chunks, strict=True):
            if chunk.billed_twice:
                ax.annotate("billed twice", (x, bottoms[x]), ha="center", va="bottom",
                            fontsize=7, color="#cf222e", fontweight="bold")
        if len(chunks) <= MAX_CHUNK_TICKS:
            ax.set_xticks(xs, labels, rotation=90 if len(chunks) > 16 else 0, fontsize=7.5)
        else:  # one tick per job, at its first chunk, and a line between jobs
            firsts = [x for x in xs if x == 0 or chunks[x].job_id != chunks[x - 1].job_id]
            ax.set_xticks(firsts, [f"#{job_numbers.get(chunks[x].job_id or '', 0)}"
                                   for x in firsts], fontsize=7.5)
            for x in firsts[1:]:
                ax.axvline(x - 0.5, color="#d0d7de", linewidth=0.8)
            ax.set_xlabel("chunks, by job")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(bottoms, default=1) + 0.8)
        ax.set_ylabel("calls")
        fig.legend(loc="outside right upper", frameon=False)
        return to_svg(fig, "calls", "external calls per chunk, by outcome")


def _stacked_bars(ax: Axes, counts: Sequence[Counter[str]], *, width: float) -> list[int]:
    """One bar per entry of ``counts``, its outcomes stacked; returns each bar's top."""
    xs = list(range(len(counts)))
    bottoms = [0] * len(counts)
    for outcome, color in OUTCOME_COLORS.items():
        heights = [c[outcome] for c in counts]
        if any(heights):
            ax.bar(xs, heights, bottom=bottoms, color=color, width=width, label=outcome)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    return bottoms


def _binned_calls_svg(bins: Sequence[CallBin], job_numbers: Mapping[str, int],
                      total: int) -> str:
    with matplotlib.rc_context(STYLE):
        fig = figure(11.0, 2.4)
        ax = fig.add_subplot()
        xs = list(range(len(bins)))
        bottoms = _stacked_bars(ax, [b.counts for b in bins], width=0.9)
        for x, group in zip(xs, bins, strict=True):
            if group.billed_twice:
                ax.plot([x], [bottoms[x]], marker="v", color="#cf222e", linestyle="none")
        step = max(1, len(bins) // 12)
        ax.set_xticks(xs[::step], [f"#{job_numbers.get(b.first.job_id or '', 0)}"
                                   for b in bins[::step]], fontsize=7.5)
        ax.set_xlabel(f"{total} chunks in job order, {bins[0].size} to a bar (tick: the job "
                      "of its first chunk; red mark: a chunk billed twice)")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0, max(bottoms, default=1) * 1.1 + 0.8)
        ax.set_ylabel("calls")
        fig.legend(loc="outside right upper", frameon=False)
        return to_svg(fig, "calls", "external calls per chunk, by outcome, summed over runs "
                                    "of chunks")


def _chunk_label(chunk: ChunkCalls, job_numbers: Mapping[str, int], several: bool) -> str:
    name = "?" if chunk.chunk is None else str(chunk.chunk)
    if not several:
        return name
    return f"#{job_numbers.get(chunk.job_id or '', 0)}·{name}"


def latency_svg(groups: Sequence[tuple[str, Sequence[float]]], xlabel: str) -> str:
    """One row per group: every sample as a dot, the range as a line, the middle half as a
    bar and the median as a tick (the shape of a box plot, drawn for any sample size)."""
    with matplotlib.rc_context(STYLE):
        fig = figure(11.0, 0.8 + 0.36 * len(groups))
        ax = fig.add_subplot()
        rows = len(groups)
        for i, (_label, values) in enumerate(groups):
            y = rows - 1 - i
            ordered = sorted(values)
            if not ordered:
                continue
            ax.hlines(y, ordered[0], ordered[-1], color="#8c959f", linewidth=1)
            q1, q3 = _quantile(ordered, 0.25), _quantile(ordered, 0.75)
            ax.broken_barh([(q1, max(q3 - q1, 1e-3))], (y - 0.18, 0.36), facecolors="#ddf4ff",
                           edgecolors="#0969da", linewidth=0.8)
            middle = _quantile(ordered, 0.5)
            ax.vlines(middle, y - 0.22, y + 0.22, color="#0969da", linewidth=2)
            jitter = [((k * 0.618) % 1.0 - 0.5) * 0.3 for k in range(len(ordered))]
            ax.plot(ordered, [y + j for j in jitter], marker="o", markersize=4,
                    linestyle="none", color="#24292f", alpha=0.75, zorder=5)
            ax.annotate(f"median {middle:.2f} s (n={len(ordered)})", (ordered[-1], y),
                        xytext=(6, 0), textcoords="offset points", va="center", fontsize=7.5,
                        color="#57606a")
        ax.set_yticks([rows - 1 - i for i in range(rows)], [label for label, _ in groups])
        ax.set_ylim(-0.6, rows - 0.4)
        longest = max((v for _, values in groups for v in values), default=1.0)
        ax.set_xlim(0, max(longest, 0.1) * 1.3)
        ax.set_xlabel(xlabel)
        ax.grid(axis="x", color="#d0d7de", linewidth=0.5)
        return to_svg(fig, "latency", "recovery latency distribution")


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def trend_svg(points: Sequence[tuple[str, datetime, str]]) -> str:
    """Every run as a dot: scenario (row) by start time, coloured by verdict."""
    with matplotlib.rc_context(STYLE):
        scenarios = sorted({scenario for scenario, _, _ in points})
        fig = figure(11.0, 1.1 + 0.26 * len(scenarios))
        ax = fig.add_subplot()
        y_of = {name: len(scenarios) - 1 - i for i, name in enumerate(scenarios)}
        markers = {"valid": "o", "invalid": "X", "unknown": "s", "incomplete": "."}
        for verdict, marker in markers.items():
            chosen = [(_days(when), y_of[name]) for name, when, v in points if v == verdict]
            if chosen:
                ax.scatter([when for when, _ in chosen], [y for _, y in chosen], marker=marker,
                           s=40 if verdict != "incomplete" else 60,
                           color=VERDICT_COLORS[verdict], label=verdict, zorder=5,
                           edgecolors="white", linewidths=0.5)
        ax.set_yticks(list(y_of.values()), list(y_of))
        ax.set_ylim(-0.7, len(scenarios) - 0.3)
        ax.xaxis_date()  # shows _days as wall-clock times
        ax.grid(axis="y", color="#eaeef2", linewidth=0.6)
        fig.legend(loc="outside right upper", frameon=False)
        return to_svg(fig, "trend", "verdict of every run over time, per scenario")


def _days(when: datetime) -> float:
    """A naive wall-clock time as matplotlib's date number (days since its 1970 epoch)."""
    return (when - datetime(1970, 1, 1)).total_seconds() / 86400.0
