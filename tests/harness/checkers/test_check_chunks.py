"""chunk_committed_once, progress_monotonic and external_work_per_chunk."""

from __future__ import annotations

import copy

from harness.checkers import Expectations, Verdict
from harness.packs.reference.checkers.chunks import (
    ChunkCommittedOnce,
    ExternalWorkPerChunk,
    ProgressMonotonic,
)
from tests.harness.checkers.builders import check, exhaust_retries, one_job

NOT_HONOURED = Expectations(idempotency_keys_honoured=False)

# -- chunk_committed_once -----------------------------------------------------


def test_recovered_job_commits_each_chunk_once() -> None:
    result = check(ChunkCommittedOnce(), one_job())
    assert result.verdict is Verdict.VALID
    assert "4 chunks" in result.witness


def test_chunk_committed_twice_is_invalid_and_names_both_commits() -> None:
    run = one_job()
    first = run.event(event="chunk_committed", chunk=1)
    again = copy.deepcopy(run.event(event="chunk_committed", chunk=2))
    again["data"]["chunk"] = 1
    run.insert_event_after(run.event(event="chunk_committed", chunk=2), again)
    run.renumber()

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == (f"job job-1 chunk 1 committed twice: seq {first['seq']} "
                              f"(worker job-1.w1 epoch 1) and seq {again['seq']} "
                              "(worker job-1.w2 epoch 2)")


def test_completed_job_with_a_chunk_never_committed_is_invalid() -> None:
    run = one_job()
    run.stream.remove(run.event(event="chunk_committed", chunk=3))
    run.renumber()

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1 is COMPLETED but chunk 3 of 4 has no chunk_committed "
                              "event")


def test_commit_beyond_the_chunk_count_is_invalid() -> None:
    run = one_job()
    extra = copy.deepcopy(run.event(event="chunk_committed", chunk=3))
    extra["data"]["chunk"] = 4
    run.insert_event_after(run.event(event="chunk_committed", chunk=3), extra)
    run.renumber()
    run.replace_snapshot(committed_chunks={**run.snapshots["job-1"].committed_chunks,
                                           4: {"epoch": 2, "worker": "job-1.w2"}})

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 4 was committed" in result.witness
    assert "only 4 chunks" in result.witness


def test_snapshot_chunk_without_a_commit_event_is_invalid() -> None:
    run = one_job()
    run.stream.remove(run.event(event="chunk_committed", chunk=2))
    run.renumber()

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert any("job job-1 chunk 2 is among the final state's committed chunks but no "
               "chunk_committed event records it" in d for d in result.details)


def test_commit_event_missing_from_the_snapshot_is_invalid() -> None:
    run = one_job()
    chunks = dict(run.snapshots["job-1"].committed_chunks)
    del chunks[0]
    run.replace_snapshot(committed_chunks=chunks)

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 0 was committed (seq 4 (chunk_committed chunk 0 by worker job-1.w1 " \
        "epoch 1)) but is missing from the final state's committed chunks" == result.witness


def test_snapshot_chunk_overwritten_by_another_worker_is_invalid() -> None:
    run = one_job()
    chunks = dict(run.snapshots["job-1"].committed_chunks)
    chunks[1] = {**chunks[1], "epoch": 2, "worker": "job-1.w2"}
    run.replace_snapshot(committed_chunks=chunks)

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 1 in the final state was written by worker job-1.w2 at epoch 2" \
        in result.witness
    assert "by worker job-1.w1 epoch 1" in result.witness


def test_failed_job_may_have_uncommitted_chunks() -> None:
    run = one_job()
    exhaust_retries(run)
    assert check(ChunkCommittedOnce(), run).verdict is Verdict.VALID


def test_completed_job_without_chunk_count_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(chunk_count=None)

    result = check(ChunkCommittedOnce(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == "job job-1 is COMPLETED but its final state has no chunk_count"


# -- progress_monotonic -------------------------------------------------------


def test_chunks_done_rising_by_one_is_valid() -> None:
    assert check(ProgressMonotonic(), one_job()).verdict is Verdict.VALID


def test_chunks_done_skipping_a_step_is_invalid_and_names_the_event() -> None:
    run = one_job()
    commit = run.event(event="chunk_committed", chunk=2)
    commit["data"]["chunks_done"] = 4

    result = check(ProgressMonotonic(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith(
        f"job job-1: chunks_done went from 2 to 4 at seq {commit['seq']} (chunk_committed "
        "chunk 2 by worker job-1.w2 epoch 2) after seq")
    assert result.witness.endswith("expected 3")


def test_chunks_done_repeating_after_recovery_is_invalid() -> None:
    run = one_job()
    run.event(event="chunk_committed", chunk=2)["data"]["chunks_done"] = 2

    result = check(ProgressMonotonic(), run)

    assert result.verdict is Verdict.INVALID
    assert "chunks_done went from 2 to 2" in result.witness


def test_chunks_done_beyond_the_chunk_count_is_invalid() -> None:
    run = one_job()
    for commit in run.events(event="chunk_committed"):
        commit["data"]["chunk_count"] = 3

    result = check(ProgressMonotonic(), run)

    assert result.verdict is Verdict.INVALID
    assert "chunks_done 4 exceeds chunk_count 3" in result.witness


def test_snapshot_chunks_done_disagreeing_with_the_last_commit_is_invalid() -> None:
    run = one_job()
    run.replace_snapshot(chunks_done=5)

    result = check(ProgressMonotonic(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1: the final state has chunks_done 5 but the last "
                                     "chunk_committed (seq")
    assert result.witness.endswith("says 4")


# -- external_work_per_chunk --------------------------------------------------


def test_each_chunk_billed_once_with_the_repeat_answered_from_cache_is_valid() -> None:
    result = check(ExternalWorkPerChunk(), one_job())
    assert result.verdict is Verdict.VALID
    assert "keys honoured" in result.witness


def test_chunk_billed_twice_with_honoured_keys_is_invalid_and_names_the_calls() -> None:
    run = one_job()
    first, second = run.calls(chunk=2)
    second["outcome"] = "new"  # the recovering worker used a fresh key

    result = check(ExternalWorkPerChunk(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == (f"job job-1 chunk 2 was transcribed as new work 2 times "
                              f"(external call seq {first['seq']}, {second['seq']}); at most 1 "
                              "allowed because idempotency keys are honoured")


def test_rebilling_the_interrupted_chunk_is_allowed_when_keys_are_not_honoured() -> None:
    run = one_job()
    run.calls(chunk=2)[1]["outcome"] = "new"
    assert check(ExternalWorkPerChunk(), run, NOT_HONOURED).verdict is Verdict.VALID


def test_billing_beyond_one_per_interruption_is_invalid_when_keys_are_not_honoured() -> None:
    run = one_job()
    run.calls(chunk=2)[1]["outcome"] = "new"
    run.call("job-1", 2, "new", "echo foxtrot")

    result = check(ExternalWorkPerChunk(), run, NOT_HONOURED)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 2 was transcribed as new work 3 times" in result.witness
    assert "at most 2 allowed because keys are not honoured: 1 + 1 interruption" \
        in result.witness


def test_completed_chunk_never_billed_is_invalid() -> None:
    run = one_job()
    run.timeline.remove(run.calls(chunk=3)[0])

    result = check(ExternalWorkPerChunk(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1 chunk 3 is part of a COMPLETED job but the transcription service never " \
        "did new work for it" in result.witness


def test_repeats_faults_and_bad_requests_are_not_billable() -> None:
    run = one_job()
    for outcome in ("repeat", "fault", "bad_request"):
        run.call("job-1", 0, outcome, "alfa bravo")
    assert check(ExternalWorkPerChunk(), run).verdict is Verdict.VALID


def test_billable_call_naming_no_chunk_is_unknown() -> None:
    run = one_job()
    run.calls(chunk=3)[0]["chunk_index"] = None
    run.call("job-1", 3, "new", "golf hotel")

    result = check(ExternalWorkPerChunk(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "names no job or chunk" in result.witness
