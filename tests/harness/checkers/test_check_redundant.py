"""no_work_after_commit: a committed chunk is never sent to the service again."""

from __future__ import annotations

from harness.checkers.base import Verdict
from tests.harness.checkers.builders import check, checker_named, one_job

CHECKER = checker_named("no_work_after_commit")


def test_recovered_run_that_only_redoes_the_uncommitted_chunk_is_valid() -> None:
    result = check(CHECKER, one_job())
    assert result.verdict is Verdict.VALID
    assert "redid a committed chunk" in result.witness


def test_call_for_a_chunk_after_its_commit_is_invalid_and_names_job_and_chunk() -> None:
    run = one_job()
    run.call("job-1", 0, "repeat", "alfa")  # after everything: chunk 0 was long committed
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 0" in result.witness and "after it was committed" in result.witness


def test_a_zombie_redoing_a_committed_chunk_after_its_thaw_is_judged_invalid() -> None:
    run = one_job()
    run.call("job-1", 0, "repeat", "alfa")
    run.add("process_signal", name="w2", pid=4242, signal="SIGSTOP")
    run.add("process_signal", name="w2", pid=4242, signal="SIGCONT")
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 0" in result.witness


def test_a_run_with_a_frozen_worker_that_redid_nothing_is_judged_valid() -> None:
    run = one_job()
    run.add("process_signal", name="w2", pid=4242, signal="SIGSTOP")
    run.add("process_signal", name="w2", pid=4242, signal="SIGCONT")
    result = check(CHECKER, run)
    assert result.verdict is Verdict.VALID
    assert "1 worker frozen and thawed" in result.witness


def test_a_status_query_in_the_same_millisecond_as_the_commit_it_led_to_is_valid() -> None:
    # Redis stamps events to the millisecond: a query answered at .2040331 s
    # can precede a commit stamped .204 s; from the next millisecond on it
    # cannot
    run = one_job()
    commit = run.event("job-1", "chunk_committed", chunk=3)
    status = run.call("job-1", 3, "status", "delta")
    status["call_ts"] = commit["ts_ms"] / 1000 + 0.0003
    assert check(CHECKER, run).verdict is Verdict.VALID
    status["call_ts"] = commit["ts_ms"] / 1000 + 0.0012
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID and "job job-1 chunk 3" in result.witness
