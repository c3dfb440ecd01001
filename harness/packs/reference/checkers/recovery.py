"""Checkers of recovery: each recovery is seen through, and each one is counted.

recovery_paired
    Per job, in ``seq`` order: every ``recovery_started`` of epoch e is closed
    by a later ``recovery_completed`` or ``recovery_failed`` of epoch e, or by
    a ``job_released`` of epoch e (graceful hand-back), or is superseded by a
    later event at a higher epoch (another recovery, a claim, a cancel). A
    ``recovery_completed`` needs a ``processing_resumed`` of its epoch before
    it; ``processing_resumed``, ``recovery_completed`` and ``recovery_failed``
    need an open recovery of their epoch; and a recovering epoch never ends in
    ``job_completed``/``job_failed`` without closing its recovery first.
retry_accounting
    Per job: the final ``retry_count`` equals the number of
    ``recovery_started`` events, whose ``retry_count`` data runs 1, 2, 3, ...;
    a job that lost its worker more than ``max_retries`` times is FAILED with
    a reason mentioning "lost its worker" (and recovered no further), and a
    job failed for that reason did exceed it; the snapshot's ``max_retries``
    and ``retry_count`` match the scenario's, when it states them.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History, SutEvent, SutEventName

FAILED = "FAILED"
LOST_WORKER = "lost its worker"

_CLOSERS = {SutEventName.RECOVERY_COMPLETED, SutEventName.RECOVERY_FAILED,
            SutEventName.JOB_RELEASED}
_NEEDS_OPEN = {SutEventName.PROCESSING_RESUMED, SutEventName.RECOVERY_COMPLETED,
               SutEventName.RECOVERY_FAILED}
_ENDS_EPOCH = {SutEventName.JOB_COMPLETED, SutEventName.JOB_FAILED}


@checker(suite="reference", rank=70)
class RecoveryPaired:
    name = "recovery_paired"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        recoveries = 0
        for job_id, events in history.events_by_job.items():
            open_: SutEvent | None = None
            resumed = False
            for event in events:
                if open_ is not None and event.epoch > open_.epoch:
                    open_ = None  # superseded by a later epoch
                if event.event == SutEventName.RECOVERY_STARTED:
                    recoveries += 1
                    open_, resumed = event, False
                    continue
                if event.event in _NEEDS_OPEN and (open_ is None or open_.epoch != event.epoch):
                    found.invalid(f"job {job_id}: {event.describe()} has no open "
                                  f"recovery_started of epoch {event.epoch} before it")
                    continue
                if open_ is None or event.epoch != open_.epoch:
                    continue
                if event.event == SutEventName.PROCESSING_RESUMED:
                    if resumed:
                        found.invalid(f"job {job_id}: the recovery {open_.describe()} resumed "
                                      f"twice; the second is {event.describe()}")
                    resumed = True
                elif event.event == SutEventName.RECOVERY_COMPLETED and not resumed:
                    found.invalid(f"job {job_id}: {event.describe()} closes the recovery "
                                  f"{open_.describe()} with no processing_resumed of epoch "
                                  f"{open_.epoch} in between")
                elif event.event in _ENDS_EPOCH:
                    found.invalid(f"job {job_id}: {event.describe()} ends the recovering epoch "
                                  f"{open_.epoch} ({open_.describe()}) without a "
                                  "recovery_completed or recovery_failed")
                if event.event in _CLOSERS or event.event in _ENDS_EPOCH:
                    open_ = None
            if open_ is not None:
                found.invalid(f"job {job_id}: recovery {open_.describe()} was never closed: no "
                              f"recovery_completed or recovery_failed of epoch {open_.epoch} "
                              "and no later epoch")
        return found.result(f"every recovery_started ({recoveries}) was closed (after resuming, "
                            "if completed) or superseded")


@checker(suite="reference", rank=120)
class RetryAccounting:
    name = "retry_accounting"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        by_job = history.events_by_job
        for job_id in dict.fromkeys([*by_job, *state.jobs]):
            started = [event for event in by_job.get(job_id, ())
                       if event.event == SutEventName.RECOVERY_STARTED]
            for number, event in enumerate(started, start=1):
                said = event.data_int("retry_count")
                if said is not None and said != number:
                    found.invalid(f"job {job_id}: {event.describe()} reports retry_count {said} "
                                  f"but it is recovery number {number}")
            snap = state.jobs.get(job_id)
            if snap is None:
                continue
            if snap.retry_count != len(started):
                seqs = ", ".join(str(event.seq) for event in started) or "none"
                found.invalid(f"job {job_id}: the final state has retry_count "
                              f"{snap.retry_count} but the history has "
                              f"{plural(len(started), 'recovery_started event')} (seq {seqs})")
            limit = snap.max_retries
            if expectations.max_retries not in (None, limit):
                found.invalid(f"job {job_id} has max_retries {snap.max_retries}; the scenario "
                              f"submitted it with {expectations.max_retries}")
            lost = LOST_WORKER in (snap.error or "")
            if snap.retry_count > limit + 1:
                found.invalid(f"job {job_id} was recovered {snap.retry_count} times, past "
                              f"max_retries={limit}: it should have failed at retry {limit + 1}")
            if snap.retry_count > limit and not (snap.state == FAILED and lost):
                found.invalid(f"job {job_id} lost its worker {snap.retry_count} times "
                              f"(max_retries={limit}) but ended {snap.state} with error "
                              f"{snap.error!r}; expected FAILED with a reason mentioning "
                              f"{LOST_WORKER!r}")
            elif snap.retry_count <= limit and snap.state == FAILED and lost:
                found.invalid(f"job {job_id} FAILED with {snap.error!r} after only "
                              f"{plural(snap.retry_count, 'retry', 'retries')} "
                              f"(max_retries={limit})")
            want = expectations.expect_retry_count
            if want is not None and job_id in history.submits_by_job and snap.retry_count != want:
                found.invalid(f"job {job_id} ended with retry_count {snap.retry_count}; the "
                              f"scenario expects {want}")
        return found.result("every job's retry_count matches its recoveries and max_retries")
