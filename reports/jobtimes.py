"""Jobs over time, for every pack: submit and end, attempts, throughput, latency, recovery.

Only facts every pack's history holds are read, so the numbers mean the
same for the reference worker, RQ and arq:

- a job's submit: its ``op`` entry (``op: submit``) and that entry's ``ts``;
- its end: the final snapshot's ``ended_at``, the queue's own record (RQ's
  and arq's ``ended_at``, the reference worker's ``updated_ms``, stamped by
  the event that ended the job). A run folder saved before the reference
  pack filled it in falls back to the job's last terminal worker event;
- its attempts: the effects ledger's ``start`` lines; the reference worker
  writes no ledger, so there its ``job_claimed`` and ``recovery_started``
  events stand for them;
- the kills: ``process_signal`` SIGKILL entries.

Throughput is the number of jobs that ended in each time bin over the bin's
width. Latency is submit to end per job, binned by end time; a bin's p50 and
p99 are nearest-rank percentiles of the jobs that ended in it (in a bin of
fewer than 100 jobs the p99 is the slowest one). Recovery is measured as the
queue checker ``recovery_bounded`` does (``harness.ledger.killed_attempts``):
from a SIGKILL to the end of each job the killed worker had in flight, for a
job that completed after another attempt. Times are seconds since ``t0``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.history import FinalState, History, SutEventName
from harness.ledger import START, LedgerLine, attempt_starts, killed_attempts

ENDED_STATES = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})
_END_EVENTS: Mapping[str, str] = {
    SutEventName.JOB_COMPLETED: "COMPLETED", SutEventName.JOB_FAILED: "FAILED",
    SutEventName.JOB_TIMED_OUT: "TIMED_OUT", SutEventName.JOB_CANCELLED: "CANCELLED"}
_CLAIM_EVENTS = frozenset({SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED})
MAX_RATE_BINS = 30
"""The throughput and latency charts split the run into at most this many bins."""
NICE_WIDTHS = (0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0,
               600.0, 900.0, 1800.0, 3600.0)


@dataclass(frozen=True)
class JobSpan:
    """One submitted job: when it was submitted and when (and how) it ended."""

    job_id: str
    submitted: float
    ended: float | None  # None: it had not ended when the run stopped
    state: str  # its final state, "?" without a final snapshot

    @property
    def latency(self) -> float | None:
        return None if self.ended is None else self.ended - self.submitted


@dataclass(frozen=True)
class Attempt:
    """One attempt at a job by one worker incarnation; ``end`` is the next attempt's start,
    the job's end, or the worker's death, whichever came first (None: still running)."""

    job_id: str
    worker: str | None
    start: float
    end: float | None


@dataclass(frozen=True)
class RateBin:
    """The jobs that ended in ``[start, start + width)``."""

    start: float
    width: float
    completed: int
    other: int  # ended some other way: failed, timed out, cancelled
    p50: float | None
    p99: float | None

    @property
    def ended(self) -> int:
        return self.completed + self.other

    @property
    def rate(self) -> float:
        return self.ended / self.width


@dataclass(frozen=True)
class KillRecovery:
    """A job a SIGKILL interrupted, and how long it took to finish elsewhere."""

    kill_t: float
    worker: str  # the killed process
    job_id: str
    ended_t: float | None
    state: str
    recovered: bool  # it completed, in an attempt begun after the kill

    @property
    def took(self) -> float | None:
        return self.ended_t - self.kill_t if self.recovered and self.ended_t is not None \
            else None


def job_spans(history: History, state: FinalState | None, t0: float) -> tuple[JobSpan, ...]:
    """Every submitted job, in submit order."""
    event_ends = _event_ends(history) if _needs_event_ends(history, state) else {}
    spans = []
    for op in history.submits:
        submitted = history.by_index[op.index].ts - t0
        snap = state.jobs.get(op.job_id) if state is not None else None
        ended: float | None = None
        word = snap.state if snap is not None else "?"
        if snap is not None and snap.ended_at is not None and snap.state in ENDED_STATES:
            ended = snap.ended_at - t0
        elif (snap is None or snap.state in ENDED_STATES) and op.job_id in event_ends:
            ts, event_state = event_ends[op.job_id]
            ended, word = ts - t0, snap.state if snap is not None else event_state
        spans.append(JobSpan(op.job_id, submitted, ended, word))
    return tuple(spans)


def _needs_event_ends(history: History, state: FinalState | None) -> bool:
    if state is None:
        return True
    return any(snap.state in ENDED_STATES and snap.ended_at is None
               for snap in state.jobs.values())


def _event_ends(history: History) -> dict[str, tuple[float, str]]:
    """Each job's last terminal worker event: (its Redis time in s, the state it entered)."""
    ends: dict[str, tuple[float, str]] = {}
    for event in history.sut_events:
        word = _END_EVENTS.get(event.event)
        if word is not None:
            ts = event.ts_ms / 1000.0
            if event.job_id not in ends or ts >= ends[event.job_id][0]:
                ends[event.job_id] = (ts, word)
    return ends


def attempt_lines(history: History) -> dict[str, list[LedgerLine]]:
    """Each job's attempt starts: the ledger's, or the reference worker's claim events."""
    starts = attempt_starts(history)
    if starts:
        return starts
    for event in sorted(history.sut_events, key=lambda e: (e.ts_ms, e.seq)):
        if event.event in _CLAIM_EVENTS:
            starts.setdefault(event.job_id, []).append(
                LedgerLine(event.index, event.job_id, START, None, event.worker_id,
                           event.ts_ms / 1000.0))
    return starts


def attempts(history: History, spans: Sequence[JobSpan], deaths: Mapping[str, float],
             t0: float) -> tuple[Attempt, ...]:
    """Every attempt, cut at the next attempt, the job's end or its worker's death
    (``deaths``: when each worker incarnation, by name, was killed or exited)."""
    ends = {span.job_id: span.ended for span in spans}
    found = []
    for job_id, lines in attempt_lines(history).items():
        ordered = sorted(lines, key=lambda line: line.ts)
        for number, line in enumerate(ordered):
            start = line.ts - t0
            cuts = [t for t in (ends.get(job_id),
                                ordered[number + 1].ts - t0 if number + 1 < len(ordered)
                                else None,
                                deaths.get(line.worker or "")) if t is not None and t >= start]
            found.append(Attempt(job_id, line.worker, start, min(cuts) if cuts else None))
    return tuple(found)


def kill_recoveries(history: History, spans: Sequence[JobSpan],
                    t0: float) -> tuple[KillRecovery, ...]:
    """Each (SIGKILL, job in flight on the killed worker), in kill order; ``spans`` (from
    ``job_spans``) say when and how each job ended."""
    by_job = {span.job_id: span for span in spans}
    found = []
    for killed in killed_attempts(history, attempt_lines(history)):
        span = by_job.get(killed.job)
        kill_t = killed.ts - t0
        if span is None or span.state == "?" or (span.ended is not None
                                                 and span.ended <= kill_t):
            continue
        recovered = span.state == "COMPLETED" and span.ended is not None \
            and bool(killed.later)
        found.append(KillRecovery(kill_t, killed.name, killed.job, span.ended, span.state,
                                  recovered))
    return tuple(found)


def bin_width(span: float, most: int = MAX_RATE_BINS) -> float:
    """The smallest of ``NICE_WIDTHS`` that splits ``span`` seconds into at most ``most``
    bins (or a whole number of hours beyond them)."""
    for width in NICE_WIDTHS:
        if span / width <= most:
            return width
    return 3600.0 * math.ceil(span / (3600.0 * most))


def rate_bins(spans: Sequence[JobSpan], start: float, end: float,
              width: float) -> list[RateBin]:
    """Jobs by the bin they ended in, from the bin holding ``start`` to the one holding
    ``end``: how many ended (completed or otherwise) and their latency percentiles."""
    first = math.floor(start / width)
    count = max(1, math.floor(end / width) - first + 1)
    completed = [0] * count
    other = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]
    for span in spans:
        if span.ended is None or span.latency is None:
            continue
        slot = min(max(math.floor(span.ended / width) - first, 0), count - 1)
        if span.state == "COMPLETED":
            completed[slot] += 1
        else:
            other[slot] += 1
        latencies[slot].append(span.latency)
    return [RateBin((first + i) * width, width, completed[i], other[i],
                    nearest_rank(latencies[i], 0.50), nearest_rank(latencies[i], 0.99))
            for i in range(count)]


def nearest_rank(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` quantile: the smallest value with at least ``q`` of the values
    at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class Histogram:
    """Counts of values in bins of ``width`` from 0: ``counts[k]`` holds
    ``k * width <= value < (k + 1) * width``."""

    width: float
    counts: tuple[int, ...]


def histogram(values: Sequence[float], most: int = 60, *, top: float = 0.0) -> Histogram:
    """Non-negative ``values`` in bins of a nice width, at most ``most`` of them up to
    ``top`` or the largest value (a negative value, which a clock step could make, counts
    in the first bin)."""
    largest = max(values, default=0.0)
    width = bin_width(max(largest, top, 1e-3), most)
    counts = [0] * (max(0, math.floor(largest / width)) + 1)
    for value in values:
        counts[min(max(math.floor(value / width), 0), len(counts) - 1)] += 1
    return Histogram(width, tuple(counts))
