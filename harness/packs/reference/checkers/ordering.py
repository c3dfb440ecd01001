"""Checkers of each job's event stream: complete and in order, and fenced by epoch.

events_ordered
    Per job, the ``seq`` numbers in the history (which holds the whole stream,
    copied at the end of the run) are 1, 2, 3, ... in stream order, with no
    gap and no duplicate, and ``ts_ms`` never decreases along ``seq``.
stale_epoch_rejected
    A single owner per epoch. Per job, along ``seq``: the epoch never
    decreases (a write at an epoch the job has left is a stale write that
    should have been refused); each epoch is opened once, by ``job_claimed``
    or ``recovery_started`` (whose worker owns it), by ``job_cancelled``
    (the API) or by ``job_timed_out`` (a worker's timeout monitor); and
    every other event at epoch e (``chunk_committed``, ``part_committed``,
    ``job_completed``, ...) is written by the owner of e, except the API's
    ``job_queued`` and ``source_finished``, which belong to no epoch. A write
    by anyone else is a zombie write. Writes the worker's fencing refused are listed as
    ``rejected_write`` entries and counted in the result; when the scenario
    expects at least some (``min_rejected_writes``), fewer means its fault
    did not exercise fencing at all: unknown.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import EntryKind, FinalState, History, SutEvent, SutEventName

_OPENERS = {SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED, SutEventName.JOB_CANCELLED,
            SutEventName.JOB_TIMED_OUT}
# written by the API from outside any epoch: owned by no worker
_OUTSIDE_EPOCHS = {SutEventName.JOB_QUEUED, SutEventName.SOURCE_FINISHED}


@checker(suite="reference", rank=80)
class EventsOrdered:
    name = "events_ordered"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        last_seq: dict[str, int] = {}
        seen: dict[tuple[str, int], SutEvent] = {}
        for event in history.sut_events:  # stream order
            job_id, seq = event.job_id, event.seq
            last = last_seq.get(job_id, 0)
            earlier = seen.get((job_id, seq))
            if earlier is not None:
                found.invalid(f"job {job_id}: seq {seq} appears twice: {earlier.event} (stream id "
                              f"{earlier.stream_id}) and {event.event} (stream id "
                              f"{event.stream_id})")
            elif seq > last + 1:
                missing = f"seq {last + 1}" if seq == last + 2 else f"seq {last + 1}..{seq - 1}"
                found.invalid(f"job {job_id}: {missing} missing; the stream goes from seq {last} "
                              f"to {event.describe()} (stream id {event.stream_id})")
            elif seq <= last:
                found.invalid(f"job {job_id}: {event.describe()} comes after seq {last} in the "
                              "stream (out of order)")
            seen.setdefault((job_id, seq), event)
            last_seq[job_id] = max(last, seq)
        for job_id, events in history.events_by_job.items():
            for before, after in zip(events, events[1:], strict=False):
                if after.ts_ms < before.ts_ms:
                    found.invalid(f"job {job_id}: {after.describe()} has ts_ms {after.ts_ms}, "
                                  f"earlier than {before.describe()} at ts_ms {before.ts_ms}")
        return found.result(f"{plural(len(history.sut_events), 'event')} of "
                            f"{plural(len(last_seq), 'job')} numbered 1..n in order")


@checker(suite="reference", rank=100)
class StaleEpochRejected:
    name = "stale_epoch_rejected"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        epochs = 0
        for job_id, events in history.events_by_job.items():
            owners: dict[int, SutEvent] = {}
            newest: SutEvent | None = None
            for event in events:
                if newest is not None and event.epoch < newest.epoch:
                    found.invalid(f"job {job_id}: stale write {event.describe()} was accepted "
                                  f"after the job had moved to epoch {newest.epoch} "
                                  f"({newest.describe()})")
                    continue
                newest = event
                if event.event in _OUTSIDE_EPOCHS:
                    continue
                if event.event in _OPENERS:
                    opened = owners.get(event.epoch)
                    if opened is not None:
                        found.invalid(f"job {job_id}: epoch {event.epoch} was opened twice: "
                                      f"{opened.describe()} and {event.describe()}")
                    else:
                        owners[event.epoch] = event
                        epochs += 1
                    continue
                owner = owners.get(event.epoch)
                if owner is None:
                    found.invalid(f"job {job_id}: {event.describe()} was written at epoch "
                                  f"{event.epoch}, which no job_claimed or recovery_started "
                                  "opened")
                elif owner.worker_id != event.worker_id:
                    found.invalid(f"job {job_id}: zombie write {event.describe()}: epoch "
                                  f"{event.epoch} belongs to worker {owner.worker_id} "
                                  f"({owner.describe()})")
        rejected = history.of_kind(EntryKind.REJECTED_WRITE)
        wanted = expectations.min_rejected_writes
        if wanted is not None and len(rejected) < wanted:
            found.unknown(f"the scenario expected a stale worker to attempt at least "
                          f"{plural(wanted, 'write')}, and {len(rejected)} were attempted: "
                          "fencing was not exercised")
        refused = "; ".join(
            f"{entry.get('op')} by {entry.get('worker_id')} at epoch {entry.get('epoch')} "
            f"(job {entry.get('job_id')} at epoch {entry.get('current_epoch')}): "
            f"{entry.get('reason')}" for entry in rejected[:3])
        return found.result(f"{plural(epochs, 'epoch')} each written only by its owner, "
                            f"never going back; {plural(len(rejected), 'stale write')} "
                            "attempted and refused" + (f" ({refused})" if refused else ""))
