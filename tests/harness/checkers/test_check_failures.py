"""failure_justified: a FAILED job's reason must be explained by a fault."""

from __future__ import annotations

from harness.checkers.base import Verdict
from tests.harness.checkers.builders import RunBuilder, check, checker_named, one_job

CHECKER = checker_named("failure_justified")


def failed(reason: str, retry_count: int = 1, max_retries: int = 3) -> RunBuilder:
    run = one_job()
    run.replace_snapshot("job-1", state="FAILED", state_sets=["FAILED"], error=reason,
                         retry_count=retry_count, max_retries=max_retries)
    return run


def test_completed_jobs_need_no_justification() -> None:
    assert check(CHECKER, one_job()).verdict is Verdict.VALID


def test_source_missing_needs_a_delete_source_fault() -> None:
    run = failed("source_missing: original media is missing")
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID and "no fault deleted" in result.witness
    run.add("fault_start", fault_id="f9", fault="delete_source", params={}, job="job-1")
    run.add("fault_heal", fault_id="f9")
    assert check(CHECKER, run).verdict is Verdict.VALID


def test_lost_workers_must_exceed_max_retries() -> None:
    early = check(CHECKER, failed("lost its worker 1 times (max_retries=3)"))
    assert early.verdict is Verdict.INVALID and "after only 1 lost workers" in early.witness
    enough = failed("lost its worker 2 times (max_retries=1)", retry_count=2, max_retries=1)
    assert check(CHECKER, enough).verdict is Verdict.VALID


def test_unexplained_reason_is_invalid_and_names_the_job() -> None:
    result = check(CHECKER, failed("chunks [2] are not committed; refusing to complete"))
    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1 failed with") and "explains" in result.witness
