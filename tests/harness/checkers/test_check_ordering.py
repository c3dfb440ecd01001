"""events_ordered and stale_epoch_rejected."""

from __future__ import annotations

import copy

from harness.checkers import Verdict
from harness.packs.reference.checkers.ordering import EventsOrdered, StaleEpochRejected
from tests.harness.checkers.builders import check, one_job

# -- events_ordered -----------------------------------------------------------


def test_seq_one_to_n_in_stream_order_is_valid() -> None:
    run = one_job()
    run.add_job("job-2", crash_after=None)

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.VALID
    assert "19 events of 2 jobs" in result.witness


def test_missing_seq_is_invalid_and_names_the_gap() -> None:
    run = one_job()
    lost = run.event(event="chunk_committed", chunk=1)
    run.stream.remove(lost)

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith("job job-1: seq 5 missing; the stream goes from seq 4 to "
                                     "seq 6 (recovery_started by worker job-1.w2 epoch 2)")


def test_missing_first_events_are_named_as_a_range() -> None:
    run = one_job()
    del run.stream[:3]

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1: seq 1..3 missing; the stream goes from seq 0 to seq 4" in result.witness


def test_duplicate_seq_is_invalid_and_names_both_entries() -> None:
    run = one_job()
    commit = run.event(event="chunk_committed", chunk=0)
    twin = copy.deepcopy(commit)
    twin["stream_id"] = "999-1"
    run.stream.append(twin)

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == (f"job job-1: seq 4 appears twice: chunk_committed (stream id "
                              f"{commit['stream_id']}) and chunk_committed (stream id 999-1)")


def test_events_out_of_stream_order_are_invalid() -> None:
    run = one_job()
    a = run.stream.index(run.event(event="chunk_committed", chunk=0))
    run.stream[a], run.stream[a + 1] = run.stream[a + 1], run.stream[a]

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.INVALID
    assert any("seq 4 (chunk_committed chunk 0 by worker job-1.w1 epoch 1) comes after seq 5 in "
               "the stream (out of order)" in d for d in result.details)


def test_timestamp_going_back_along_seq_is_invalid() -> None:
    run = one_job()
    commit = run.event(event="chunk_committed", chunk=2)
    commit["ts_ms"] -= 1000

    result = check(EventsOrdered(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith(f"job job-1: seq {commit['seq']} (chunk_committed chunk 2 "
                                     f"by worker job-1.w2 epoch 2) has ts_ms {commit['ts_ms']}, "
                                     "earlier than seq 7 (processing_resumed")


# -- stale_epoch_rejected -----------------------------------------------------


def test_each_epoch_written_only_by_its_owner_is_valid() -> None:
    result = check(StaleEpochRejected(), one_job())
    assert result.verdict is Verdict.VALID
    assert "2 epochs" in result.witness


def test_zombie_write_at_the_new_epoch_is_invalid_and_names_it() -> None:
    run = one_job()
    zombie = run.event(event="chunk_committed", chunk=3)
    zombie["worker_id"] = "job-1.w1"  # the killed worker's write, stamped with the new epoch

    result = check(StaleEpochRejected(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == (f"job job-1: zombie write seq {zombie['seq']} (chunk_committed "
                              "chunk 3 by worker job-1.w1 epoch 2): epoch 2 belongs to worker "
                              "job-1.w2 (seq 6 (recovery_started by worker job-1.w2 epoch 2))")


def test_stale_write_at_an_old_epoch_is_invalid_and_names_the_newer_epoch() -> None:
    run = one_job()
    stale = run.event(event="chunk_committed", chunk=3)
    stale.update(worker_id="job-1.w1", epoch=1)

    result = check(StaleEpochRejected(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness.startswith(
        f"job job-1: stale write seq {stale['seq']} (chunk_committed chunk 3 by worker job-1.w1 "
        "epoch 1) was accepted after the job had moved to epoch 2")


def test_epoch_opened_twice_is_invalid() -> None:
    run = one_job()
    started = run.event(event="recovery_started")
    rival = copy.deepcopy(started)
    rival["worker_id"] = "job-1.w3"
    run.insert_event_after(started, rival)
    run.renumber()

    result = check(StaleEpochRejected(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: epoch 2 was opened twice: seq 6 (recovery_started by "
                              "worker job-1.w2 epoch 2) and seq 7 (recovery_started by worker "
                              "job-1.w3 epoch 2)")


def test_write_at_an_epoch_nobody_opened_is_invalid() -> None:
    run = one_job()
    run.events(event="job_claimed")[0]["event"] = "job_released"

    result = check(StaleEpochRejected(), run)

    assert result.verdict is Verdict.INVALID
    assert result.witness == ("job job-1: seq 2 (job_released by worker job-1.w1 epoch 1) was "
                              "written at epoch 1, which no job_claimed or recovery_started "
                              "opened")


def test_cancel_by_the_api_opens_its_own_epoch() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    run.stream = run.stream[:run.stream.index(resumed) + 1]
    run.emit("job-1", "job_cancelled", "api", 3, previous_state="PROCESSING")
    run.renumber()

    assert check(StaleEpochRejected(), run).verdict is Verdict.VALID


def test_worker_write_after_a_cancel_is_a_stale_write() -> None:
    run = one_job()
    resumed = run.event(event="processing_resumed")
    cancel = {**copy.deepcopy(resumed), "event": "job_cancelled", "worker_id": "api", "epoch": 3,
              "data": {"previous_state": "PROCESSING"}}
    run.insert_event_after(resumed, cancel)
    run.renumber()

    result = check(StaleEpochRejected(), run)

    assert result.verdict is Verdict.INVALID
    assert "stale write seq 9 (chunk_committed chunk 2 by worker job-1.w2 epoch 2)" \
        in result.witness
    assert "moved to epoch 3 (seq 8 (job_cancelled by worker api epoch 3))" in result.witness
