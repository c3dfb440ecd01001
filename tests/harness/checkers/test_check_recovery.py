"""recovery_paired and retry_accounting."""

from __future__ import annotations

import copy

from harness.checkers import Expectations, Verdict
from harness.packs.reference.checkers.recovery import RecoveryPaired, RetryAccounting
from tests.harness.checkers.builders import RunBuilder, check, exhaust_retries, one_job


def drop(run: RunBuilder, event: str) -> None:
    run.stream.remove(run.event(event=event))
    run.renumber()


# -- recovery_paired ----------------------------------------------------------


def test_recovery_resumed_and_completed_is_valid() -> None:
    result = check(RecoveryPaired(), one_job())
    assert result.verdict is Verdict.VALID
    assert "(1)" in result.witness


def test_recovery_failed_at_once_past_max_retries_is_valid() -> None:
    run = one_job()
    exhaust_retries(run)
    assert check(RecoveryPaired(), run).verdict is Verdict.VALID


def test_recovery_without_recovery_completed_is_invalid_and_names_the_end() -> None:
    run = one_job()
    drop(run, "recovery_completed")
    completed = run.event(event="job_completed")

    result = check(RecoveryPaired(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == (f"job job-1: seq {completed['seq']} (job_completed by worker "
                              "job-1.w2 epoch 2) ends the recovering epoch 2 (seq 6 "
                              "(recovery_started by worker job-1.w2 epoch 2)) without a "
                              "recovery_completed or recovery_failed")


def test_recovery_completed_without_processing_resumed_is_invalid() -> None:
    run = one_job()
    drop(run, "processing_resumed")

    result = check(RecoveryPaired(), run)

    assert result.verdict is Verdict.INVALID
    assert "closes the recovery seq 6 (recovery_started by worker job-1.w2 epoch 2) with no " \
        "processing_resumed of epoch 2" in result.witness


def test_recovery_never_closed_is_invalid() -> None:
    run = one_job()
    started = run.event(event="recovery_started")
    run.stream = run.stream[:run.stream.index(started) + 2]  # started, resumed; then the end

    result = check(RecoveryPaired(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: recovery seq 6 (recovery_started by worker job-1.w2 "
                              "epoch 2) was never closed: no recovery_completed or "
                              "recovery_failed of epoch 2 and no later epoch")


def test_recovery_superseded_by_a_later_recovery_is_valid() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    # w2 dies too; w3 recovers at epoch 3 and finishes the job
    for record in run.stream[run.stream.index(resumed) + 1:]:
        record.update(worker_id="job-1.w3", epoch=3)
    again = copy.deepcopy(run.event(event="recovery_started"))
    again.update(worker_id="job-1.w3", epoch=3)
    again["data"].update(previous_worker="job-1.w2", previous_epoch=2, retry_count=2)
    resumed_again = copy.deepcopy(resumed)
    resumed_again.update(worker_id="job-1.w3", epoch=3)
    run.insert_event_after(resumed, again)
    run.insert_event_after(again, resumed_again)
    run.renumber()

    assert check(RecoveryPaired(), run).verdict is Verdict.VALID


def test_recovery_superseded_by_a_cancel_is_valid() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    run.stream = run.stream[:run.stream.index(resumed) + 1]
    run.emit("job-1", "job_cancelled", "api", 3, previous_state="PROCESSING")
    run.renumber()

    assert check(RecoveryPaired(), run).verdict is Verdict.VALID


def test_processing_resumed_without_a_recovery_is_invalid() -> None:
    run = one_job(crash_after=None)
    claimed = run.event(event="job_claimed")
    resumed = {**copy.deepcopy(claimed), "event": "processing_resumed",
               "data": {"committed": [], "remaining": [0, 1, 2, 3], "rechunked": []}}
    run.insert_event_after(claimed, resumed)
    run.renumber()

    result = check(RecoveryPaired(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: seq 3 (processing_resumed by worker job-1.w1 epoch 1) "
                              "has no open recovery_started of epoch 1 before it")


def test_recovery_resumed_twice_is_invalid() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    run.insert_event_after(resumed, copy.deepcopy(resumed))
    run.renumber()

    result = check(RecoveryPaired(), run)

    assert result.verdict is Verdict.INVALID
    assert "resumed twice; the second is seq 8 (processing_resumed" in result.witness


# -- retry_accounting ---------------------------------------------------------


def test_one_recovery_counted_once_is_valid() -> None:
    assert check(RetryAccounting(), one_job()).verdict is Verdict.VALID


def test_retry_count_disagreeing_with_recoveries_is_invalid_and_names_them() -> None:
    run = one_job()
    run.replace_snapshot(retry_count=2)

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: the final state has retry_count 2 but the history has "
                              "1 recovery_started event (seq 6)")


def test_uncounted_recovery_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(retry_count=0)

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert "retry_count 0 but the history has 1 recovery_started event" in result.witness


def test_recovery_reporting_the_wrong_retry_number_is_invalid() -> None:
    run = one_job()
    run.event(event="recovery_started")["data"]["retry_count"] = 3

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: seq 6 (recovery_started by worker job-1.w2 epoch 2) "
                              "reports retry_count 3 but it is recovery number 1")


def test_job_failed_for_exceeding_max_retries_is_valid() -> None:
    run = one_job()
    exhaust_retries(run)
    expect = Expectations(terminal_states=frozenset({"FAILED"}), max_retries=0,
                          expect_retry_count=1)
    assert check(RetryAccounting(), run, expect).verdict is Verdict.VALID


def test_job_completed_past_max_retries_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(max_retries=0)

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1 lost its worker 1 times (max_retries=0) but ended "
                              "COMPLETED with error None; expected FAILED with a reason "
                              "mentioning 'lost its worker'")


def test_job_failed_for_lost_workers_within_max_retries_is_invalid() -> None:
    run = one_job()
    exhaust_retries(run)
    run.replace_snapshot(max_retries=1)

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 FAILED with 'lost its worker 1 times (max_retries=0)' after only 1 retry " \
        "(max_retries=1)" == result.witness


def test_recovering_again_after_exceeding_max_retries_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(max_retries=0, retry_count=2)
    again = copy.deepcopy(run.event(event="recovery_started"))
    again["data"]["retry_count"] = 2
    run.insert_event_after(run.event(event="recovery_started"), again)
    run.renumber()

    result = check(RetryAccounting(), run)

    assert result.verdict is Verdict.INVALID
    assert any("job job-1 was recovered 2 times, past max_retries=0: it should have failed at "
               "retry 1" == d.removeprefix("invalid: ") for d in result.details)


def test_retry_count_other_than_the_scenario_expects_is_invalid() -> None:
    result = check(RetryAccounting(), one_job(), Expectations(expect_retry_count=2))

    assert result.verdict is Verdict.INVALID
    assert result.witness == "job job-1 ended with retry_count 1; the scenario expects 2"


def test_max_retries_other_than_submitted_is_invalid() -> None:
    result = check(RetryAccounting(), one_job(), Expectations(max_retries=5))

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1 has max_retries 3; the scenario submitted it with 5")
