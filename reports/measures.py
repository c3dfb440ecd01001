"""Numbers a report derives from a history: recovery latency, calls per chunk, coverage.

Recovery latency is measured from each worker crash (a SIGKILL, or a SIGSTOP
that left a zombie) to the next sign of progress on the job that worker held,
made under a later epoch: the first ``chunk_committed`` by the new owner, or
its ``job_completed`` when no chunk was left to do. The job a crashed worker
held is the one named by its last failpoint hit before the signal, or else
any job whose latest event before the signal was written by that worker. The
takeover (the new owner's ``recovery_started`` or ``job_claimed``) is kept
too, so the lease wait and the resumption can be told apart.

Calls per chunk come from the transcription service's call log: ``new`` is
billable work, ``repeat`` a request the service answered from its
idempotency cache, ``fault`` an injected error, ``bad_request`` a rejected
call. A chunk with more than one ``new`` was billed twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harness.history import CallOutcome, EntryKind, History, SutEvent, SutEventName

PROGRESS_EVENTS = frozenset({SutEventName.CHUNK_COMMITTED, SutEventName.JOB_COMPLETED})
TAKEOVER_EVENTS = frozenset({SutEventName.RECOVERY_STARTED, SutEventName.JOB_CLAIMED})
CLOCK_SLACK_S = 0.005
"""How far a Redis timestamp may trail the harness's record of a signal (same host clock)."""


@dataclass(frozen=True)
class Recovery:
    """One crash and how long the job it interrupted took to move again."""

    crash_t: float
    cause: str  # "SIGKILL" or "SIGSTOP"
    worker: str
    job_id: str
    epoch: int  # the crashed owner's epoch (0: it never wrote an event for the job)
    takeover_t: float | None
    resumed_t: float | None
    resumed_by: str | None
    resumed_event: str | None

    @property
    def latency(self) -> float | None:
        return None if self.resumed_t is None else self.resumed_t - self.crash_t

    @property
    def takeover_latency(self) -> float | None:
        return None if self.takeover_t is None else self.takeover_t - self.crash_t


@dataclass(frozen=True)
class ChunkCalls:
    """Every call the service logged for one chunk of one job."""

    job_id: str | None
    chunk: int | None
    outcomes: tuple[str, ...]  # in call order

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.outcomes)

    @property
    def billed_twice(self) -> bool:
        return self.counts[CallOutcome.NEW] > 1

    @property
    def repeated(self) -> bool:
        return len(self.outcomes) > 1


@dataclass(frozen=True)
class CoverageRow:
    """One planned fault: whether and when it fired and healed."""

    fault_id: str
    kind: str
    params: str
    fired_t: float | None
    healed_t: float | None
    skipped: str | None

    @property
    def status(self) -> str:
        if self.fired_t is not None:
            return "fired and healed" if self.healed_t is not None else "fired, never healed"
        return "did not fire" if self.skipped is not None else "not reached"


def recoveries(history: History, t0: float) -> tuple[Recovery, ...]:
    result: list[Recovery] = []
    touched: dict[str, set[str]] = {}  # by worker, the jobs it wrote an event of
    for event in history.sut_events:
        touched.setdefault(event.worker_id, set()).add(event.job_id)
    for sig in history.signals:
        if sig.role != "worker" or sig.signal not in ("SIGKILL", "SIGSTOP"):
            continue
        crash_ts = history.by_index[sig.index].ts
        for job_id in _held_jobs(history, sig.name, sig.index, crash_ts,
                                 touched.get(sig.name, set())):
            mine = [e for e in history.events_by_job.get(job_id, ())
                    if e.worker_id == sig.name and e.ts_ms / 1000.0 <= crash_ts + CLOCK_SLACK_S]
            epoch = max((e.epoch for e in mine), default=0)
            later = [e for e in history.events_by_job.get(job_id, ())
                     if e.epoch > epoch and e.ts_ms / 1000.0 >= crash_ts - CLOCK_SLACK_S]
            takeover = _first(later, TAKEOVER_EVENTS)
            resumed = _first(later, PROGRESS_EVENTS)
            result.append(Recovery(
                crash_ts - t0, sig.signal, sig.name, job_id, epoch,
                None if takeover is None else takeover.ts_ms / 1000.0 - t0,
                None if resumed is None else resumed.ts_ms / 1000.0 - t0,
                None if resumed is None else resumed.worker_id,
                None if resumed is None else resumed.event))
    return tuple(result)


def _held_jobs(history: History, worker: str, index: int, crash_ts: float,
               touched: set[str]) -> list[str]:
    hits = [e for e in history.of_kind(EntryKind.FAILPOINT_HIT)
            if e.get("worker") == worker and e.index < index and e.get("job")]
    if hits:
        return [str(hits[-1].get("job"))]
    held = []
    for job_id, events in history.events_by_job.items():
        if job_id not in touched:  # its latest event cannot be the worker's
            continue
        before = [e for e in events if e.ts_ms / 1000.0 <= crash_ts + CLOCK_SLACK_S]
        if before and before[-1].worker_id == worker and not _terminal(before[-1]):
            held.append(job_id)
    return held


def _terminal(event: SutEvent) -> bool:
    return event.event in (SutEventName.JOB_COMPLETED, SutEventName.JOB_FAILED,
                           SutEventName.JOB_CANCELLED)


def _first(events: Sequence[SutEvent], names: frozenset[SutEventName]) -> SutEvent | None:
    chosen = [e for e in events if e.event in names]
    return min(chosen, key=lambda e: (e.ts_ms, e.seq)) if chosen else None


def calls_per_chunk(history: History) -> tuple[ChunkCalls, ...]:
    """Calls grouped by (job, chunk), jobs in submit order, chunks in order."""
    grouped: dict[tuple[str | None, int | None], list[str]] = {}
    for call in sorted(history.external_calls, key=lambda c: c.seq):
        grouped.setdefault((call.job_id, call.chunk_index), []).append(call.outcome)
    order = {op.job_id: i for i, op in enumerate(history.submits)}
    keys = sorted(grouped, key=lambda k: (order.get(k[0] or "", len(order)), k[0] or "",
                                          -1 if k[1] is None else k[1]))
    return tuple(ChunkCalls(job, chunk, tuple(grouped[(job, chunk)])) for job, chunk in keys)


def coverage(history: History, t0: float) -> tuple[CoverageRow, ...]:
    """The schedule's faults against what the history says happened to each."""
    started = {str(e.get("fault_id")): e.ts - t0 for e in history.of_kind(EntryKind.FAULT_START)}
    healed = {str(e.get("fault_id")): e.ts - t0 for e in history.of_kind(EntryKind.FAULT_HEAL)}
    skipped = {str(e.get("fault_id")): str(e.get("reason") or "skipped")
               for e in history.of_kind(EntryKind.FAULT_SKIPPED)}
    rows = []
    for planned in history.schedule:
        params = ", ".join(f"{key}={value}" for key, value in planned.params.items()
                           if key != "kind" and value is not None)
        rows.append(CoverageRow(planned.fault_id, planned.fault, params,
                                started.get(planned.fault_id), healed.get(planned.fault_id),
                                skipped.get(planned.fault_id)))
    return tuple(rows)


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2
