"""indexes_consistent: the queue, the leases and the deadline set list only what they should.

Beside the state sets (``state_index_exclusive``), the reference worker keeps
three indexes, and a write applied twice or an ending that forgets one leaves
them wrong. In the final state, per job:

* the queue list holds the job only while it is QUEUED, exactly once (a
  QUEUED job missing from it would never be claimed; a second entry would be
  claimed twice, or a finished one claimed again);
* a lease exists only for a PROCESSING job, at the job's current epoch;
* the deadline set holds only live jobs (QUEUED or PROCESSING): a finished
  job's deadline must go with it.

Judged from the indexes the target's snapshot reports (``JobSnapshot.queued``,
``lease``, ``deadline_ms``); a target that reports none is not applicable.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History

LIVE = ("QUEUED", "PROCESSING")


@checker(suite="reference", rank=135)
class IndexesConsistent:
    name = "indexes_consistent"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        judged = [(job_id, snap) for job_id, snap in state.jobs.items()
                  if snap.queued is not None]
        if not judged:
            return found.not_applicable("the final state reports no queue, lease or deadline "
                                        "index of any job")
        for job_id, snap in judged:
            queued = snap.queued or 0
            if snap.state == "QUEUED" and queued != 1:
                found.invalid(f"job {job_id} is QUEUED but is in the queue list "
                              f"{plural(queued, 'time')}; expected once")
            elif snap.state != "QUEUED" and queued:
                found.invalid(f"job {job_id} is {snap.state} but is still in the queue list "
                              f"({plural(queued, 'time')})")
            if snap.lease is not None:
                holder, _, epoch = snap.lease.rpartition("|")
                if snap.state != "PROCESSING":
                    found.invalid(f"job {job_id} is {snap.state} but still has a lease "
                                  f"(held by {holder} at epoch {epoch})")
                elif epoch != str(snap.epoch):
                    found.invalid(f"job {job_id} is at epoch {snap.epoch} but its lease is "
                                  f"held by {holder} at epoch {epoch}")
            if snap.deadline_ms is not None and snap.state not in LIVE:
                found.invalid(f"job {job_id} is {snap.state} but is still in the deadline set "
                              f"(deadline {snap.deadline_ms} ms)")
        return found.result(f"the queue, leases and deadline set of {plural(len(judged), 'job')}"
                            " list only queued, processing and live jobs")
