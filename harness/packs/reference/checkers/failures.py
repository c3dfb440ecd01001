"""A job fails only for a reason the run's faults explain.

failure_justified
    Every FAILED job's error must be explained by the history: a
    ``source_missing`` failure (or an upload's ``file_missing_on_resume`` /
    ``file_missing``) needs a ``delete_source`` fault on that job; an upload's
    ``stale_stream`` needs a writer that never finished its source, submitted
    with ``on_stale: fail``;
    "lost its worker" needs the job to have lost more workers than its
    ``max_retries``; a chunk that "failed after N attempts" needs a
    ``service_errors`` fault that fired. Any other failure (a chunk not
    committed at assembly, an unexpected exception) is a bug in the worker's
    recovery, whatever the scenario expected.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import EntryKind, FinalState, History

# a job whose input file a fault deleted fails with one of these
_MISSING = ("source_missing", "file_missing_on_resume", "file_missing")


@checker(suite="reference", rank=20)
class FailureJustified:
    name = "failure_justified"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        deleted: set[str] = set()
        service_faults = 0
        for entry in history.of_kind(EntryKind.FAULT_START):
            if entry.get("fault") == "delete_source" and entry.get("job"):
                deleted.add(str(entry.get("job")))
            if entry.get("fault") == "service_errors":
                service_faults += 1
        failed = 0
        for job_id, snapshot in state.jobs.items():
            if snapshot.state != "FAILED":
                continue
            failed += 1
            reason = snapshot.error or ""
            if reason.startswith(_MISSING):
                if job_id not in deleted:
                    found.invalid(f"job {job_id} failed with {reason!r}, but no fault deleted "
                                  "its original media")
            elif "lost its worker" in reason:
                if snapshot.retry_count <= snapshot.max_retries:
                    found.invalid(f"job {job_id} failed with {reason!r} after only "
                                  f"{snapshot.retry_count} lost workers (max_retries "
                                  f"{snapshot.max_retries})")
            elif reason.startswith("stale_stream"):
                op = history.submits_by_job.get(job_id)
                upload = op.upload if op is not None else None
                if upload is None or upload.finishes or upload.on_stale != "fail":
                    found.invalid(f"job {job_id} failed with {reason!r}, but its writer was "
                                  "meant to finish the source (or the job to finalize a "
                                  "stale one)")
            elif "failed after" in reason and reason.startswith("chunk"):
                if not service_faults:
                    found.invalid(f"job {job_id} failed with {reason!r}, but the service was "
                                  "never made to fail")
            else:
                found.invalid(f"job {job_id} failed with {reason!r}, which no injected fault "
                              "explains")
        return found.result(f"{plural(failed, 'failed job')}, each explained by a fault")
