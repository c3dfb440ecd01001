"""A job is taken over only after its lease could have expired.

takeover_justified
    A worker claims a job by setting its lease with a TTL (``lease_ttl_ms``
    from the run's settings) in the same step that opens the epoch. So a
    ``recovery_started`` less than one TTL after the event that opened the
    previous epoch (``job_claimed`` or an earlier ``recovery_started``) took a
    job whose lease could not have expired: the worker stole a live job
    (a claim without a lease, a takeover that ignores the lease). Both times
    come from Redis ``TIME``. Runs whose settings do not name the TTL are not
    judged.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.history import FinalState, History, SutEvent, SutEventName

_OPENERS = {SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED}


class TakeoverJustified:
    name = "takeover_justified"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        start = history.run_start
        settings = start.get("settings") if start is not None else None
        ttl_raw = settings.get("lease_ttl_ms") if isinstance(settings, dict) else None
        if ttl_raw is None:
            return found.result("not checked: the run's settings do not name lease_ttl_ms")
        ttl = int(ttl_raw)
        takeovers = 0
        for job_id, events in history.events_by_job.items():
            opened: SutEvent | None = None
            for event in events:
                if event.event not in _OPENERS:
                    continue
                if event.event == SutEventName.RECOVERY_STARTED and opened is not None:
                    takeovers += 1
                    gap = event.ts_ms - opened.ts_ms
                    if gap < ttl:
                        found.invalid(
                            f"job {job_id}: {event.describe()} took the job {gap} ms after "
                            f"{opened.describe()} opened epoch {opened.epoch}, less than the "
                            f"{ttl} ms lease: the lease could not have expired")
                opened = event
        return found.result(f"{plural(takeovers, 'takeover')}, each after the previous "
                            f"owner's {ttl} ms lease could have expired")
