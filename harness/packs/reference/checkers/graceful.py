"""A graceful stop hands its jobs back; a stop whose grace ran out is a crash.

graceful_stop_honoured
    Reads every ``worker_stop`` entry the ``stop`` and ``rolling_restart``
    faults recorded (``harness.faults.stop``: the worker, the SIGTERM, the
    grace, and whether the process left by itself or was killed at the end
    of the grace). The jobs the worker held when SIGTERM reached it are those
    whose latest owning event (``job_claimed`` or ``recovery_started``)
    before the signal was the worker's, with no ``job_completed``,
    ``job_failed``, ``job_cancelled``, ``job_timed_out`` or ``job_released``
    of its own in between. Then, for each held job:

    - a worker that left by itself must have released it (``job_released``
      by that worker) or finished it within the grace; a released job must
      be claimed again by another worker through the queue (``job_claimed``,
      not a ``recovery_started``: a release consumes no retry and leaves no
      lease to expire) and be finished by that other worker;
    - a worker killed at the end of its grace crashed: unless its release
      made it out before the kill, the job must be recovered by another
      worker (``recovery_started``, which counts the retry; ``retry_accounting``
      checks the count);
    - a job a stop left in no queue and with no worker (not terminal at the
      end, and no owner after the stop) is reported lost, with the stop and
      the job's last event as its witness.

    Times: the stop's SIGTERM is the ``worker_stop`` entry's wall time minus
    how long the stop took; the events carry Redis ``TIME`` from the same
    host. A run without a graceful stop is not applicable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import Entry, EntryKind, FinalState, History, SutEvent, SutEventName

WORKER_STOP = "worker_stop"  # written by harness.faults.stop.record_stop

_OPENERS = {SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED}
_ENDS = {SutEventName.JOB_COMPLETED, SutEventName.JOB_FAILED, SutEventName.JOB_CANCELLED,
         SutEventName.JOB_TIMED_OUT}
_FINISHED = {SutEventName.JOB_COMPLETED, SutEventName.JOB_FAILED}
_TERMINAL_STATES = {"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"}


@dataclass(frozen=True)
class WorkerStop:
    """One ``worker_stop`` entry."""

    index: int
    worker: str
    outcome: str  # "exited" or "killed"
    grace_ms: int
    sigterm_ms: int  # wall time of the SIGTERM, in ms

    @classmethod
    def from_entry(cls, entry: Entry, sigterms: Sequence[Entry]) -> WorkerStop:
        """``sigterms``: the run's SIGTERM ``process_signal`` entries; the latest one to
        the same worker before this entry is when the stop began."""
        worker = entry.text("worker")
        sent = [s for s in sigterms if s.get("name") == worker and s.index < entry.index]
        # without the signal's own entry: the stop's end minus how long it took
        at = (float(sent[-1].get("sent_ts") or sent[-1].ts) if sent
              else entry.ts - (entry.optional_int("took_ms") or 0) / 1000)
        return cls(entry.index, worker, entry.text("outcome"), entry.integer("grace_ms"),
                   int(at * 1000))

    def describe(self) -> str:
        how = ("left by itself" if self.outcome == "exited"
               else "was killed at the end of the grace")
        return (f"worker {self.worker} (stopped with SIGTERM and a {self.grace_ms} ms grace "
                f"at history entry {self.index}, {how})")


def held_at(events: Sequence[SutEvent], worker: str, at_ms: int) -> SutEvent | None:
    """The owning event by which ``worker`` still held the job at ``at_ms``, if it did.

    Redis stamps events to the millisecond: an event of the SIGTERM's own
    millisecond may come after it (a release answering it), so only events
    of earlier milliseconds count as before.
    """
    owner: SutEvent | None = None
    for event in events:
        if event.ts_ms >= at_ms:
            break
        if event.event in _OPENERS:
            owner = event
        elif event.event in _ENDS or event.event == SutEventName.JOB_RELEASED:
            owner = None
    return owner if owner is not None and owner.worker_id == worker else None


@checker(suite="reference", rank=170)
class GracefulStopHonoured:
    name = "graceful_stop_honoured"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        sigterms = [e for e in history.of_kind(EntryKind.PROCESS_SIGNAL)
                    if e.get("signal") == "SIGTERM"]
        stops = [WorkerStop.from_entry(e, sigterms) for e in history.of_kind(WORKER_STOP)]
        if not stops:
            return found.not_applicable("no worker was stopped with SIGTERM in this run")
        released = crashed = 0
        for stop in stops:
            for job_id, events in history.events_by_job.items():
                owner = held_at(events, stop.worker, stop.sigterm_ms)
                if owner is None:
                    continue
                after = [e for e in events if e.index > owner.index and e.ts_ms >= owner.ts_ms]
                outcome = self._judge(found, stop, job_id, owner, after)
                released += outcome == "released"
                crashed += outcome == "crashed"
                self._lost(found, stop, job_id, events, after, state)
        exited = sum(1 for s in stops if s.outcome == "exited")
        return found.result(
            f"{plural(len(stops), 'stop')} ({exited} left by itself, {len(stops) - exited} "
            f"killed at the end of the grace): {plural(released, 'job')} released and "
            f"finished by another worker, {plural(crashed, 'job')} recovered after a kill")

    @staticmethod
    def _judge(found: Findings, stop: WorkerStop, job_id: str, owner: SutEvent,
               after: list[SutEvent]) -> str:
        mine = [e for e in after if e.worker_id == stop.worker]
        release = next((e for e in mine if e.event == SutEventName.JOB_RELEASED), None)
        if release is None and any(e.event in _FINISHED for e in mine):
            return "finished"  # it finished the job within the grace: nothing to hand back
        if release is not None:
            later = [e for e in after if e.index > release.index]
            reopen = next((e for e in later if e.event in _OPENERS), None)
            if reopen is None:
                found.invalid(f"job {job_id}: released by {stop.describe()} at "
                              f"{release.describe()}, but no worker claimed it again")
                return "bad"
            if reopen.event == SutEventName.RECOVERY_STARTED:
                found.invalid(f"job {job_id}: released by {stop.describe()} at "
                              f"{release.describe()}, yet taken back by recovery "
                              f"({reopen.describe()}), which counts a retry the release "
                              "must not consume")
                return "bad"
            if reopen.worker_id == stop.worker:
                found.invalid(f"job {job_id}: released by {stop.describe()} at "
                              f"{release.describe()} and claimed again by the stopping "
                              f"worker itself ({reopen.describe()})")
                return "bad"
            end = next((e for e in later if e.event in _FINISHED), None)
            if end is not None and end.worker_id == stop.worker:
                found.invalid(f"job {job_id}: released by {stop.describe()}, but finished by "
                              f"that same worker ({end.describe()})")
                return "bad"
            return "released"
        if stop.outcome == "exited":
            found.invalid(f"job {job_id}: held by {stop.describe()} since "
                          f"{owner.describe()}, but the worker never released it: a graceful "
                          "stop left the job to its lease")
            return "bad"
        recovery = next((e for e in after if e.event == SutEventName.RECOVERY_STARTED
                         and e.worker_id != stop.worker), None)
        if recovery is None:
            found.invalid(f"job {job_id}: held by {stop.describe()} since "
                          f"{owner.describe()}; after the kill no other worker recovered it")
            return "bad"
        return "crashed"

    @staticmethod
    def _lost(found: Findings, stop: WorkerStop, job_id: str, events: Sequence[SutEvent],
              after: list[SutEvent], state: FinalState) -> None:
        snapshot = state.jobs.get(job_id)
        if snapshot is None or snapshot.state in _TERMINAL_STATES:
            return
        last = events[-1]
        owner_after = any(e.event in _OPENERS and e.worker_id != stop.worker for e in after)
        queued = any("queue" in index.lower() for index in snapshot.state_sets)
        if not owner_after and not queued:
            found.invalid(f"job {job_id} was lost by {stop.describe()}: it ended {snapshot.state} "
                          f"in no queue ({', '.join(snapshot.state_sets) or 'no state index'}) "
                          f"and no worker took it after the stop; its last event is "
                          f"{last.describe()}")
