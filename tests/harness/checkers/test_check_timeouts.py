"""timeout_enforced: nothing is written after a job's deadline."""

from __future__ import annotations

from harness.checkers.base import Verdict
from tests.harness.checkers.builders import RunBuilder, check, checker_named, one_job

CHECKER = checker_named("timeout_enforced")


def with_deadline(offset_ms: int) -> RunBuilder:
    """A recovered run whose job's deadline is ``offset_ms`` after its queued event."""
    run = one_job()
    queued = run.event("job-1", "job_queued")
    queued["data"]["deadline_ms"] = queued["ts_ms"] + offset_ms
    return run


def test_job_without_deadline_is_not_judged() -> None:
    result = check(CHECKER, one_job())
    assert result.verdict is Verdict.VALID and result.witness.startswith("0 jobs")


def test_job_completed_before_its_deadline_is_valid() -> None:
    result = check(CHECKER, with_deadline(10_000))
    assert result.verdict is Verdict.VALID and result.witness.startswith("1 job")


def test_write_after_the_deadline_is_invalid_and_names_the_job() -> None:
    result = check(CHECKER, with_deadline(50))
    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1:") and "after its deadline" in result.witness


def test_timed_out_job_without_its_event_is_invalid() -> None:
    run = with_deadline(10_000)
    run.replace_snapshot("job-1", state="TIMED_OUT", state_sets=["TIMED_OUT"])
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "no job_timed_out event" in result.witness
