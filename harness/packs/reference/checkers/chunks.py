"""Per-chunk checkers: each chunk is committed once, counted once and billed once.

chunk_committed_once
    Per job, at most one ``chunk_committed`` event per chunk index; a COMPLETED
    transcription job has exactly one for every index ``0 .. chunk_count-1`` (an
    upload job has no chunks: ``upload_byte_exact`` judges its parts) and none outside
    that range; and the final state's committed chunks are exactly the chunks
    the events committed (with the epoch and worker of that commit, when the
    snapshot records them).
progress_monotonic
    Per job, ``chunks_done`` in the ``chunk_committed`` events, taken in
    ``seq`` order, is 1, 2, 3, ... (up by exactly one per commit, never above
    ``chunk_count``), and the final state's ``chunks_done`` equals the last one.
external_work_per_chunk
    Count the service's calls with outcome ``new`` (billable work) per
    ``(job, chunk)``. When the service honours idempotency keys, a worker that
    reuses one key per chunk is billed exactly once for every chunk of a
    COMPLETED job and at most once for any chunk of another job. When keys are
    not honoured (the scenario says so), a chunk may be billed again each time
    its worker was interrupted: at most ``1 + interruptions``, where
    interruptions is approximated as the larger of the run's worker SIGKILLs
    and the job's ``recovery_started`` events; a chunk of a COMPLETED job is
    still billed at least once. A billable call that names no job or chunk
    cannot be attributed, so it makes the verdict unknown.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import (
    CallOutcome,
    ExternalCall,
    FinalState,
    History,
    SutEvent,
    SutEventName,
)

COMPLETED = "COMPLETED"


def commits_by_chunk(events: tuple[SutEvent, ...]) -> dict[int | None, list[SutEvent]]:
    """A job's ``chunk_committed`` events by chunk index (None when the event names none)."""
    commits: dict[int | None, list[SutEvent]] = {}
    for event in events:
        if event.event == SutEventName.CHUNK_COMMITTED:
            commits.setdefault(event.data_int("chunk"), []).append(event)
    return commits


def _times(count: int) -> str:
    return {2: "twice", 3: "three times"}.get(count, f"{count} times")


@checker(suite="reference", rank=40)
class ChunkCommittedOnce:
    name = "chunk_committed_once"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        by_job = history.events_by_job
        total = 0
        for job_id in dict.fromkeys([*by_job, *state.jobs]):
            commits = commits_by_chunk(by_job.get(job_id, ()))
            total += len(commits)
            for chunk, events in commits.items():
                if chunk is None:
                    found.invalid(f"job {job_id}: {events[0].describe()} names no chunk index")
                elif len(events) > 1:
                    found.invalid(f"job {job_id} chunk {chunk} committed {_times(len(events))}: "
                                  + " and ".join(event.brief() for event in events))
            snap = state.jobs.get(job_id)
            if snap is None:
                continue
            if snap.state == COMPLETED and snap.kind == "transcribe":
                if snap.chunk_count is None:
                    found.invalid(f"job {job_id} is COMPLETED but its final state has no "
                                  "chunk_count")
                else:
                    for chunk in range(snap.chunk_count):
                        if chunk not in commits:
                            found.invalid(f"job {job_id} is COMPLETED but chunk {chunk} of "
                                          f"{snap.chunk_count} has no chunk_committed event")
                    for chunk, events in commits.items():
                        if chunk is not None and not 0 <= chunk < snap.chunk_count:
                            found.invalid(f"job {job_id} chunk {chunk} was committed "
                                          f"({events[0].describe()}) but the job has only "
                                          f"{plural(snap.chunk_count, 'chunk')}")
            for chunk in sorted(set(snap.committed_chunks) - set(commits)):
                found.invalid(f"job {job_id} chunk {chunk} is among the final state's committed "
                              "chunks but no chunk_committed event records it")
            for chunk, events in commits.items():
                if chunk is None:
                    continue
                stored = snap.committed_chunks.get(chunk)
                if stored is None:
                    found.invalid(f"job {job_id} chunk {chunk} was committed "
                                  f"({events[0].describe()}) but is missing from the final "
                                  "state's committed chunks")
                    continue
                kept = [event for event in events if _matches(stored, event)]
                if not kept:
                    found.invalid(f"job {job_id} chunk {chunk} in the final state was written "
                                  f"by worker {stored.get('worker')} at epoch "
                                  f"{stored.get('epoch')}, but its chunk_committed event is "
                                  f"{events[0].describe()}")
        return found.result(f"{plural(total, 'chunk')} committed once each, matching the "
                            "final state")


def _matches(stored: dict[str, object], event: SutEvent) -> bool:
    """Whether a snapshot's committed chunk agrees with a commit event (on the fields it has)."""
    epoch, worker = stored.get("epoch"), stored.get("worker")
    if epoch is not None and str(epoch) != str(event.epoch):
        return False
    return worker is None or str(worker) == event.worker_id


@checker(suite="reference", rank=90)
class ProgressMonotonic:
    name = "progress_monotonic"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        jobs = 0
        for job_id, events in history.events_by_job.items():
            jobs += 1
            done = 0
            last: SutEvent | None = None
            for event in events:
                if event.event != SutEventName.CHUNK_COMMITTED:
                    continue
                now = event.data_int("chunks_done")
                count = event.data_int("chunk_count")
                if now is None:
                    found.invalid(f"job {job_id}: {event.describe()} carries no chunks_done")
                    continue
                if now != done + 1:
                    after = f"after {last.describe()}" if last else "at the first commit"
                    found.invalid(f"job {job_id}: chunks_done went from {done} to {now} at "
                                  f"{event.describe()} {after}; expected {done + 1}")
                if count is not None and now > count:
                    found.invalid(f"job {job_id}: chunks_done {now} exceeds chunk_count {count} "
                                  f"at {event.describe()}")
                done, last = now, event
            snap = state.jobs.get(job_id)
            if snap is not None and snap.chunks_done != done:
                said = f"the last chunk_committed ({last.describe()}) says {done}" if last \
                    else "no chunk_committed event was recorded"
                found.invalid(f"job {job_id}: the final state has chunks_done "
                              f"{snap.chunks_done} but {said}")
        return found.result(f"chunks_done rose by one per commit in {plural(jobs, 'job')}")


@checker(suite="reference", rank=50)
class ExternalWorkPerChunk:
    name = "external_work_per_chunk"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        billed: dict[tuple[str, int], list[ExternalCall]] = {}
        for call in history.external_calls:
            if call.outcome != CallOutcome.NEW:
                continue
            if call.job_id is None or call.chunk_index is None:
                found.unknown(f"billable external call seq {call.seq} (key "
                              f"{call.idempotency_key!r}) names no job or chunk, so it cannot be "
                              "attributed")
                continue
            billed.setdefault((call.job_id, call.chunk_index), []).append(call)

        recoveries: dict[str, int] = {}
        for event in history.sut_events:
            if event.event == SutEventName.RECOVERY_STARTED:
                recoveries[event.job_id] = recoveries.get(event.job_id, 0) + 1
        kills = len(history.worker_kills)
        honoured = expectations.idempotency_keys_honoured

        for job_id, snap in state.jobs.items():
            if snap.state != COMPLETED or snap.chunk_count is None:
                continue
            for chunk in range(snap.chunk_count):
                if (job_id, chunk) not in billed:
                    found.invalid(f"job {job_id} chunk {chunk} is part of a COMPLETED job but "
                                  "the transcription service never did new work for it (no "
                                  "external_call with outcome 'new')")

        for (job_id, chunk), calls in billed.items():
            if honoured:
                allowed, why = 1, "idempotency keys are honoured"
            else:
                interruptions = max(kills, recoveries.get(job_id, 0))
                allowed = 1 + interruptions
                why = (f"keys are not honoured: 1 + {plural(interruptions, 'interruption')} "
                       f"({plural(kills, 'worker kill')}, "
                       f"{plural(recoveries.get(job_id, 0), 'recovery', 'recoveries')} of the job)")
            if len(calls) > allowed:
                seqs = ", ".join(str(call.seq) for call in calls)
                found.invalid(f"job {job_id} chunk {chunk} was transcribed as new work "
                              f"{len(calls)} times (external call seq {seqs}); at most {allowed} "
                              f"allowed because {why}")
        return found.result(f"{plural(len(billed), 'chunk')} billed within bounds "
                            f"(keys {'honoured' if honoured else 'not honoured'})")
