"""The timeline of a run too big to draw lane by lane, job by job and fault by fault.

A soak kills a worker every few seconds and runs thousands of jobs: a lane
per worker incarnation, a line per job and a label per fault would be a wall
of ink (and slow to draw). Each part is aggregated on its own, only past its
threshold, so a small run keeps its exact drawing:

- more than ``MAX_LANES`` worker incarnations: one row per worker *slot*
  (``w1``, ``w1.2``, ``w1.3`` ... share the row ``w1``: a killed worker's
  replacement takes its place), each incarnation drawn where it lived;
- more than ``MAX_JOBS`` jobs: instead of each job's committed chunks, how
  many jobs were queued, running, or waiting after the worker running them
  was killed (each a time-weighted mean over a bin), and how many had ended
  so far; the worker lanes then show when each worker was busy (running an
  attempt) and when it was idle;
- more than ``MAX_FAULT_LABELS`` faults: one nemesis row per fault kind,
  named by its kind and count, instead of a label per fault.

A job's attempts come from ``reports.jobtimes`` (the ledger's starts, or the
reference worker's claims), so this works for every pack.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from reports.jobtimes import Attempt, JobSpan
from reports.timeline import FaultMark, Lane, Timeline

MAX_LANES = 40
"""Past this many worker incarnations, one row per worker slot."""
MAX_JOBS = 40
"""Past this many jobs, job counts by state instead of a line per job."""
MAX_FAULT_LABELS = 8
"""Past this many fired faults, one nemesis row per fault kind instead of a label each."""
COUNT_BINS = 120
"""The job-count panel averages over this many bins across the run."""
JOB_STATES: Mapping[str, str] = {"queued": "#afb8c1", "running": "#0969da",
                                 "orphaned": "#cf222e"}
"""Job states over time, with their colour: orphaned = its worker was killed, not yet
taken over."""
STATE_WORDS: Mapping[str, str] = {"queued": "queued", "running": "running",
                                  "orphaned": "whose worker was killed, not yet taken over"}

Interval = tuple[float, float]


@dataclass(frozen=True)
class Slot:
    """The incarnations of one worker, each replacing the one before."""

    name: str
    lanes: tuple[Lane, ...]

    @property
    def killed(self) -> int:
        return sum(1 for lane in self.lanes if lane.killed)


@dataclass(frozen=True)
class JobCounts:
    """Jobs by state over the run: ``mean[state][k]`` is the mean number of jobs in that
    state over bin ``k`` (from ``edges[k]`` to ``edges[k + 1]``); ``completed[k]`` and
    ``other[k]`` how many had ended, completed or otherwise, by ``edges[k + 1]``."""

    edges: tuple[float, ...]
    mean: Mapping[str, tuple[float, ...]]
    completed: tuple[int, ...]
    other: tuple[int, ...]


@dataclass(frozen=True)
class Scale:
    """What the timeline of one run aggregates; each field None keeps the detailed drawing."""

    slots: tuple[Slot, ...] | None = None
    busy: Mapping[str, tuple[Interval, ...]] | None = None  # by incarnation name
    counts: JobCounts | None = None
    fault_kinds: tuple[str, ...] | None = None  # one nemesis row each, in firing order

    @property
    def aggregated(self) -> bool:
        return any(part is not None for part in (self.slots, self.busy, self.counts,
                                                 self.fault_kinds))


def plan(timeline: Timeline, spans: Sequence[JobSpan], attempts: Sequence[Attempt]) -> Scale:
    """The scale a run's timeline is drawn at (``Scale()`` for a small run)."""
    slots = group_slots(timeline.lanes) if len(timeline.lanes) > MAX_LANES else None
    counts = busy = None
    if len(timeline.jobs) > MAX_JOBS:
        counts = job_counts(spans, attempts, timeline.lanes, timeline.first_worker_start,
                            timeline.t_end)
        # a gap under a thousandth of the run is narrower than a pixel: closed, not drawn
        busy = busy_intervals(timeline.lanes, attempts,
                              gap=(timeline.t_end - timeline.first_worker_start) / 1000)
    kinds = None
    if len(timeline.faults) > MAX_FAULT_LABELS:
        kinds = tuple(dict.fromkeys(m.kind for m in sorted(timeline.faults,
                                                           key=lambda m: m.start)))
    return Scale(slots, busy, counts, kinds)


def slot_of(name: str) -> str:
    """``w1.3`` -> ``w1``: the worker an incarnation replaces; other names stand alone."""
    base, dot, suffix = name.rpartition(".")
    return base if dot and base and suffix.isdigit() else name


def group_slots(lanes: Sequence[Lane]) -> tuple[Slot, ...]:
    grouped: dict[str, list[Lane]] = {}
    for lane in sorted(lanes, key=lambda lane: lane.start):
        grouped.setdefault(slot_of(lane.name), []).append(lane)
    return tuple(Slot(name, tuple(members)) for name, members in grouped.items())


def deaths(lanes: Sequence[Lane]) -> dict[str, float]:
    """When each incarnation that did not outlive the run was killed or exited."""
    return {lane.name: lane.end for lane in lanes if lane.end_reason != "still running"}


def busy_intervals(lanes: Sequence[Lane], attempts: Sequence[Attempt],
                   gap: float = 0.0) -> dict[str, tuple[Interval, ...]]:
    """Per incarnation, when it ran at least one attempt (inside its life; spans closer
    than ``gap`` merged)."""
    life = {lane.name: (lane.start, lane.end) for lane in lanes}
    spans: dict[str, list[Interval]] = {}
    for attempt in attempts:
        if attempt.worker not in life:
            continue
        born, died = life[attempt.worker]
        start = max(attempt.start, born)
        end = min(died if attempt.end is None else attempt.end, died)
        if end > start:
            spans.setdefault(attempt.worker, []).append((start, end))
    return {name: tuple(_merge(found, gap)) for name, found in spans.items()}


def _merge(intervals: list[Interval], gap: float) -> list[Interval]:
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1] + gap:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def state_intervals(spans: Sequence[JobSpan], attempts: Sequence[Attempt],
                    lanes: Sequence[Lane], t_end: float) -> dict[str, list[Interval]]:
    """Every job's time in each of ``JOB_STATES``, until it ended (or the run did)."""
    killed_at = {lane.name: lane.end for lane in lanes if lane.killed}
    by_job: dict[str, list[Attempt]] = {}
    for attempt in attempts:
        by_job.setdefault(attempt.job_id, []).append(attempt)
    found: dict[str, list[Interval]] = {state: [] for state in JOB_STATES}

    def add(state: str, start: float, end: float) -> None:
        if end > start:
            found[state].append((start, end))

    for span in spans:
        end = t_end if span.ended is None else span.ended
        tries = sorted(by_job.get(span.job_id, ()), key=lambda a: a.start)
        add("queued", span.submitted, tries[0].start if tries else end)
        for number, attempt in enumerate(tries):
            stop = end if attempt.end is None else min(attempt.end, end)
            add("running", attempt.start, stop)
            resumed = tries[number + 1].start if number + 1 < len(tries) else end
            orphaned = killed_at.get(attempt.worker or "") == attempt.end
            add("orphaned" if orphaned else "queued", stop, resumed)
    return found


def job_counts(spans: Sequence[JobSpan], attempts: Sequence[Attempt], lanes: Sequence[Lane],
               t_start: float, t_end: float, bins: int = COUNT_BINS) -> JobCounts:
    start = min([t_start] + [span.submitted for span in spans])
    width = max(t_end - start, 1e-6) / bins
    edges = tuple(start + k * width for k in range(bins + 1))
    mean: dict[str, tuple[float, ...]] = {}
    for state, intervals in state_intervals(spans, attempts, lanes, t_end).items():
        covered = [0.0] * bins
        for a, b in intervals:
            first, last = int((a - start) // width), int((b - start) // width)
            for k in range(max(first, 0), min(last, bins - 1) + 1):
                covered[k] += max(0.0, min(b, edges[k + 1]) - max(a, edges[k]))
        mean[state] = tuple(c / width for c in covered)
    done = sorted(s.ended for s in spans if s.ended is not None and s.state == "COMPLETED")
    other = sorted(s.ended for s in spans if s.ended is not None and s.state != "COMPLETED")
    return JobCounts(edges, mean, tuple(bisect.bisect_right(done, t) for t in edges[1:]),
                     tuple(bisect.bisect_right(other, t) for t in edges[1:]))


# -- drawing ------------------------------------------------------------------------------

def draw_slots(ax: Axes, slots: Sequence[Slot], busy: Mapping[str, Sequence[Interval]] | None,
               colors: Mapping[str, str], y_of: Mapping[str, int]) -> None:
    """Each slot's incarnations in its row, drawn together (a few artists per row, not per
    incarnation): alive (pale, or solid without ``busy``), busy (solid), SIGKILL (X)."""
    for slot in slots:
        y, color = y_of[slot.name], colors.get(slot.lanes[0].name, "#57606a")
        lives = [(lane.start, max(lane.end - lane.start, 0.01)) for lane in slot.lanes]
        ax.broken_barh(lives, (y - 0.25, 0.5), facecolors=color,
                       alpha=0.85 if busy is None else 0.22, linewidth=0)
        if busy is not None:
            spans = [(a, b - a) for lane in slot.lanes for a, b in busy.get(lane.name, ())]
            ax.broken_barh(spans, (y - 0.25, 0.5), facecolors=color, alpha=0.9, linewidth=0)
        pauses = [(a, max(b - a, 0.01)) for lane in slot.lanes for a, b in lane.pauses]
        if pauses:
            ax.broken_barh(pauses, (y - 0.25, 0.5), facecolors="white", edgecolors=color,
                           hatch="////", linewidth=0.8)
        kills = [lane.end for lane in slot.lanes if lane.killed]
        ax.plot(kills, [y] * len(kills), marker="X", markersize=7, color="#cf222e",
                markeredgecolor="white", markeredgewidth=0.5, linestyle="none", zorder=6)
        exits = [lane.end for lane in slot.lanes if lane.end_reason.startswith("exit")]
        ax.plot(exits, [y] * len(exits), marker="|", markersize=8, color="#57606a",
                linestyle="none", zorder=6)


def draw_lane(ax: Axes, lane: Lane, y: float, color: str,
              busy: Sequence[Interval] | None, *, marker: float = 11) -> None:
    """One incarnation: its life, solid when ``busy`` is None, else pale with its busy
    spans solid; then its pauses, and its end (an X for a SIGKILL, a bar for an exit)."""
    life = [(lane.start, max(lane.end - lane.start, 0.01))]
    if busy is None:
        ax.broken_barh(life, (y - 0.25, 0.5), facecolors=color, alpha=0.85, linewidth=0)
    else:
        ax.broken_barh(life, (y - 0.25, 0.5), facecolors=color, alpha=0.22, linewidth=0)
        ax.broken_barh([(a, b - a) for a, b in busy], (y - 0.25, 0.5), facecolors=color,
                       alpha=0.9, linewidth=0)
    for start, end in lane.pauses:
        ax.broken_barh([(start, max(end - start, 0.01))], (y - 0.25, 0.5),
                       facecolors="white", edgecolors=color, hatch="////", linewidth=0.8)
    if lane.killed:
        ax.plot([lane.end], [y], marker="X", markersize=marker, color="#cf222e",
                markeredgecolor="white", markeredgewidth=0.5, linestyle="none", zorder=6)
    elif lane.end_reason.startswith("exit"):
        ax.plot([lane.end], [y], marker="|", markersize=marker + 1, color="#57606a",
                linestyle="none", zorder=6)


def draw_fault_rows(lanes_ax: Axes, other_ax: Axes, faults: Sequence[FaultMark],
                    y_of: Mapping[str, int]) -> None:
    """A row per fault kind: windows as bars (and shaded on both panels), instants as
    ticks. No line is drawn across the panels for an instant: a kill every few seconds
    would hide them; the X on the lane shows each SIGKILL."""
    instants: dict[str, list[float]] = {}
    for mark in faults:
        if mark.end is None:
            instants.setdefault(mark.kind, []).append(mark.start)
            continue
        width = max(mark.end - mark.start, 0.01)
        for ax in (lanes_ax, other_ax):
            ax.axvspan(mark.start, mark.start + width, color=mark.colour, alpha=0.13,
                       linewidth=0)
        lanes_ax.broken_barh([(mark.start, width)], (y_of[mark.kind] - 0.25, 0.5),
                             facecolors=mark.colour, alpha=0.8, linewidth=0)
    colours = {mark.kind: mark.colour for mark in faults}
    for kind, times in instants.items():
        y = y_of[kind]
        lanes_ax.vlines(times, y - 0.3, y + 0.3, color=colours[kind], linewidth=1.4, zorder=6)


def fault_row_labels(faults: Sequence[FaultMark], kinds: Sequence[str]) -> dict[str, str]:
    counts = {kind: sum(1 for m in faults if m.kind == kind) for kind in kinds}
    return {kind: f"{kind} ×{count}" for kind, count in counts.items()}


def draw_job_counts(ax: Axes, counts: JobCounts) -> None:
    """Stacked mean counts of jobs not yet ended; the jobs ended so far on a right axis."""
    xs = list(counts.edges)
    bottom = [0.0] * (len(xs) - 1)
    for state, color in JOB_STATES.items():
        values = counts.mean[state]
        top = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.fill_between(xs, bottom + bottom[-1:], top + top[-1:], step="post", color=color,
                        alpha=0.75, linewidth=0)
        bottom = top
    ax.set_ylabel("jobs in flight")
    ax.set_ylim(0, max(max(bottom, default=0.0) * 1.15, 1.0))
    ended = ax.twinx()
    ended.spines["right"].set_visible(True)
    ended.step(xs[1:], counts.completed, where="pre", color="#1a7f37", linewidth=1.4)
    if any(counts.other):
        ended.step(xs[1:], counts.other, where="pre", color="#953800", linewidth=1.4)
    ended.set_ylabel("jobs ended so far")
    ended.set_ylim(0, max(max(counts.completed, default=0), 1) * 1.08)


def busy_legend() -> list[Patch | Line2D]:
    return [Patch(facecolor="#57606a", alpha=0.9, label="worker busy (runs a job)"),
            Patch(facecolor="#57606a", alpha=0.22, label="worker idle")]


def counts_legend(other_ended: bool) -> list[Patch | Line2D]:
    handles: list[Patch | Line2D] = [
        Patch(facecolor=color, alpha=0.75, label=f"jobs {STATE_WORDS[state]}")
        for state, color in JOB_STATES.items()]
    handles.append(Line2D([], [], color="#1a7f37", linewidth=1.4,
                          label="jobs completed so far (right axis)"))
    if other_ended:
        handles.append(Line2D([], [], color="#953800", linewidth=1.4,
                              label="jobs failed or ended otherwise (right axis)"))
    return handles
