"""events_once: no event twice for the same job, epoch and chunk or part."""

from __future__ import annotations

import copy

from harness.checkers import Verdict
from harness.packs.reference.checkers.events_once import EventsOnce
from tests.harness.checkers.builders import check, one_job


def test_a_recovered_run_publishes_each_event_once() -> None:
    assert check(EventsOnce(), one_job()).verdict is Verdict.VALID


def test_a_resume_published_twice_at_one_epoch_is_invalid() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    run.insert_event_after(resumed, copy.deepcopy(resumed))
    run.renumber()

    result = check(EventsOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1: processing_resumed at epoch 2 was published twice: seq 7" in result.witness


def test_a_chunk_commit_published_twice_names_the_chunk() -> None:
    run = one_job()
    commit = run.event(event="chunk_committed", chunk=3)
    run.insert_event_after(commit, copy.deepcopy(commit))
    run.renumber()

    result = check(EventsOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert "chunk_committed chunk 3 at epoch 2 was published twice" in result.witness


def test_the_same_event_at_two_epochs_is_not_a_duplicate() -> None:
    run = one_job()  # job_claimed at epoch 1, recovery_started at epoch 2: both open an epoch
    planned = run.event(event="chunking_completed")
    again = {**copy.deepcopy(planned), "epoch": 2, "worker_id": "job-1.w2"}
    run.insert_event_after(run.event(event="recovery_started"), again)
    run.renumber()
    assert check(EventsOnce(), run).verdict is Verdict.VALID


def test_a_run_without_events_is_not_applicable() -> None:
    run = one_job()
    run.stream = []
    assert check(EventsOnce(), run).verdict is Verdict.NOT_APPLICABLE
