"""indexes_consistent: the queue, the leases and the deadline set list only what they should."""

from __future__ import annotations

from harness.checkers import Verdict
from harness.packs.reference.checkers.indexes import IndexesConsistent
from tests.harness.checkers.builders import check, one_job


def test_a_completed_job_is_in_no_index() -> None:
    assert check(IndexesConsistent(), one_job()).verdict is Verdict.VALID


def test_a_finished_job_left_in_the_queue_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(queued=1)
    result = check(IndexesConsistent(), run)
    assert result.verdict is Verdict.INVALID
    assert "job job-1 is COMPLETED but is still in the queue list (1 time)" in result.witness


def test_a_queued_job_is_in_the_queue_exactly_once() -> None:
    run = one_job()
    run.replace_snapshot(state="QUEUED", state_sets=["QUEUED"], queued=1)
    assert check(IndexesConsistent(), run).verdict is Verdict.VALID
    run.replace_snapshot(queued=2)
    result = check(IndexesConsistent(), run)
    assert result.verdict is Verdict.INVALID
    assert "is QUEUED but is in the queue list 2 times; expected once" in result.witness


def test_a_lease_outlives_neither_its_job_nor_its_epoch() -> None:
    run = one_job()
    run.replace_snapshot(lease="w2|2")
    result = check(IndexesConsistent(), run)
    assert result.verdict is Verdict.INVALID
    assert "is COMPLETED but still has a lease (held by w2 at epoch 2)" in result.witness

    run.replace_snapshot(state="PROCESSING", state_sets=["PROCESSING"], lease="w1|1")
    result = check(IndexesConsistent(), run)
    assert result.verdict is Verdict.INVALID
    assert "is at epoch 2 but its lease is held by w1 at epoch 1" in result.witness
    run.replace_snapshot(lease="w2|2")
    assert check(IndexesConsistent(), run).verdict is Verdict.VALID


def test_a_finished_job_left_in_the_deadline_set_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(deadline_ms=1_700_000_009_000)
    result = check(IndexesConsistent(), run)
    assert result.verdict is Verdict.INVALID
    assert "is COMPLETED but is still in the deadline set" in result.witness


def test_a_target_that_reports_no_index_is_not_applicable() -> None:
    run = one_job()
    run.replace_snapshot(queued=None)
    assert check(IndexesConsistent(), run).verdict is Verdict.NOT_APPLICABLE
