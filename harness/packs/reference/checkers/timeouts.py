"""Timeout enforcement: a job's deadline is absolute, and nothing happens after it.

timeout_enforced
    For every job submitted with a deadline (``deadline_ms`` in its
    ``job_queued`` event, from Redis TIME): no worker event other than
    ``job_timed_out`` is written at or after the deadline (a worker still
    holding the job is fenced out); a job that ends TIMED_OUT has a
    ``job_timed_out`` event at or after its deadline and is not left
    PROCESSING; a job that ends COMPLETED completed before its deadline.
    Jobs without a deadline are not judged here.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History, SutEventName

_ALWAYS_ALLOWED = {SutEventName.JOB_QUEUED, SutEventName.JOB_TIMED_OUT}


@checker(suite="reference", rank=140)
class TimeoutEnforced:
    name = "timeout_enforced"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        judged = 0
        for job_id, events in history.events_by_job.items():
            queued = next((e for e in events if e.event == SutEventName.JOB_QUEUED), None)
            deadline = queued.data_int("deadline_ms") if queued is not None else None
            if deadline is None:
                continue
            judged += 1
            for event in events:
                if event.event not in _ALWAYS_ALLOWED and event.ts_ms >= deadline:
                    found.invalid(f"job {job_id}: {event.describe()} was written "
                                  f"{event.ts_ms - deadline} ms after its deadline")
            timed_out = [e for e in events if e.event == SutEventName.JOB_TIMED_OUT]
            for event in timed_out:
                if event.ts_ms < deadline:
                    found.invalid(f"job {job_id} was timed out {deadline - event.ts_ms} ms "
                                  f"before its deadline ({event.describe()})")
            snapshot = state.jobs.get(job_id)
            final = snapshot.state if snapshot is not None else None
            if final == "TIMED_OUT" and not timed_out:
                found.invalid(f"job {job_id} is TIMED_OUT but no job_timed_out event says when")
            if final in ("QUEUED", "PROCESSING") and history.run_start is not None:
                found.invalid(f"job {job_id} is still {final} after its deadline passed; "
                              "no worker enforced it")
        return found.result(f"{plural(judged, 'job')} with a deadline: nothing was written "
                            "after it, and each ended before it or TIMED_OUT")
