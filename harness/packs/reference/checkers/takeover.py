"""A job is taken over only after its lease could have expired.

takeover_justified
    A worker claims a job by setting its lease with a TTL (``lease_ttl_ms``
    from the run's settings) in the same step that opens the epoch. So a
    ``recovery_started`` less than one TTL after the event that opened the
    previous epoch (``job_claimed`` or an earlier ``recovery_started``) took a
    job whose lease could not have expired: the worker stole a live job
    (a claim without a lease, a takeover that ignores the lease). Both times
    come from Redis ``TIME``. The TTL comes from the run's resolved settings
    (``run_start.settings``: the scenario's settings over the harness's
    defaults, exactly what every worker was started with). A run without a
    takeover is not applicable; takeovers without a known TTL are unknown.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History, SutEvent, SutEventName

_OPENERS = {SutEventName.JOB_CLAIMED, SutEventName.RECOVERY_STARTED}


@checker(suite="reference", rank=110)
class TakeoverJustified:
    name = "takeover_justified"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        start = history.run_start
        settings = start.get("settings") if start is not None else None
        ttl_raw = settings.get("lease_ttl_ms") if isinstance(settings, dict) else None
        takeovers: list[tuple[str, SutEvent, SutEvent]] = []
        for job_id, events in history.events_by_job.items():
            opened: SutEvent | None = None
            for event in events:
                if event.event not in _OPENERS:
                    continue
                if event.event == SutEventName.RECOVERY_STARTED and opened is not None:
                    takeovers.append((job_id, opened, event))
                opened = event
        if not takeovers:
            return found.not_applicable("no job was taken over from another worker")
        if ttl_raw is None:
            found.unknown(f"{plural(len(takeovers), 'takeover')} but the run's settings "
                          "(run_start) do not name lease_ttl_ms, so the lease is unknown")
            return found.result("")
        ttl = int(ttl_raw)
        for job_id, opened, event in takeovers:
            gap = event.ts_ms - opened.ts_ms
            if gap < ttl:
                found.invalid(f"job {job_id}: {event.describe()} took the job {gap} ms after "
                              f"{opened.describe()} opened epoch {opened.epoch}, less than "
                              f"the {ttl} ms lease: the lease could not have expired")
        return found.result(f"{plural(len(takeovers), 'takeover')}, each after the previous "
                            f"owner's {ttl} ms lease could have expired")
