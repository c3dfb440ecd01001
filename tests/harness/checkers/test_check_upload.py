"""upload_byte_exact, and how the other checkers read upload jobs, on synthetic histories."""

from __future__ import annotations

import hashlib
from typing import Any

from harness.checkers.base import Expectations, Verdict
from harness.packs.reference.checkers.upload import multipart_etag
from harness.target import JobSnapshot
from tests.harness.checkers.builders import (
    RunBuilder,
    check,
    check_reference,
    checker_named,
    one_job,
)

CHECKER = checker_named("upload_byte_exact")
PART = 100
CONTENT = bytes(range(256)) * 2  # 512 bytes: parts of 100, 100, 100, 100, 100, 12
JOB = "up-1"


def etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


def upload_run(content: bytes = CONTENT, *, crash_after: int | None = 2) -> RunBuilder:
    """One upload job: w1 commits parts 1..crash_after and dies, w2 resumes and completes."""
    run = RunBuilder()
    run.start_worker("w1", 1)
    run.add("op", op="submit", job_id=JOB, job_kind="upload", bucket="b", key="k",
            expected_size=len(content), expected_sha256=hashlib.sha256(content).hexdigest(),
            growing=False, finishes=True, on_stale=None)
    run.emit(JOB, "job_queued", "api", 0, kind="upload", max_retries=3)
    run.emit(JOB, "job_claimed", "w1", 1)
    run.emit(JOB, "upload_started", "w1", 1, upload_id="U1", bucket="b", key="k")
    pieces = [content[i:i + PART] for i in range(0, len(content), PART)]
    worker, epoch, recovery = "w1", 1, False
    for number, piece in enumerate(pieces, start=1):
        if crash_after is not None and number == crash_after + 1:
            run.start_worker("w2", 1)
            worker, epoch, recovery = "w2", 2, True
            run.emit(JOB, "recovery_started", worker, epoch, recovery=True, previous_worker="w1",
                     previous_epoch=1, retry_count=1)
            run.emit(JOB, "processing_resumed", worker, epoch, recovery=True,
                     parts=list(range(1, number)), bytes_sent=(number - 1) * PART)
        offset = (number - 1) * PART
        run.emit(JOB, "part_committed", worker, epoch, recovery=recovery, part=number,
                 size=len(piece), offset=offset, etag=etag(piece),
                 bytes_sent=offset + len(piece), parts_done=number)
    whole = multipart_etag([etag(piece) for piece in pieces])
    if recovery:
        run.emit(JOB, "recovery_completed", worker, epoch, recovery=True, parts=len(pieces))
    run.emit(JOB, "job_completed", worker, epoch, recovery=recovery, size=len(content),
             parts=len(pieces), etag=whole)
    run.add("s3_object", job_id=JOB, bucket="b", key="k", exists=True, size=len(content),
            sha256=hashlib.sha256(content).hexdigest(), etag=whole, token="t",
            first_difference=None, metadata_key="k.metadata.json",
            metadata={"size": len(content), "etag": whole})
    run.add("s3_uploads", bucket="b", uploads=[], waited_s=0.0)
    run.snapshots[JOB] = JobSnapshot(
        job_id=JOB, state="COMPLETED", epoch=epoch, retry_count=0 if crash_after is None else 1,
        max_retries=3, chunk_count=None, chunks_done=0, progress=1.0, error=None,
        transcript=None, committed_chunks={}, state_sets=["COMPLETED"], kind="upload",
        upload={"bucket": "b", "s3_key": "k", "parts": {}}, queued=0)
    return run


def s3_object(run: RunBuilder) -> dict[str, Any]:
    (found,) = run.of_kind("s3_object")
    return found


def part_event(run: RunBuilder, number: int) -> dict[str, Any]:
    (found,) = [r for r in run.events(JOB, "part_committed") if r["data"]["part"] == number]
    return found


def test_a_crashed_and_resumed_upload_passes_every_checker() -> None:
    run = upload_run()
    results = check_reference(run.history(), run.state(), Expectations(expect_retry_count=1))
    assert {r.checker: r.verdict for r in results if r.verdict is not Verdict.VALID} == {
        "graceful_stop_honoured": Verdict.NOT_APPLICABLE}
    upload = next(r for r in results if r.checker == "upload_byte_exact")
    assert "1 completed upload byte-exact" in upload.witness


def test_object_that_differs_names_the_first_byte_and_its_part() -> None:
    run = upload_run()
    s3_object(run).update(sha256="0" * 64, first_difference=250)
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "offset 250" in result.witness and "in part 3" in result.witness
    assert JOB in result.witness


def test_parts_with_a_gap_are_not_contiguous() -> None:
    run = upload_run()
    part_event(run, 4)["data"]["offset"] = 350
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "part 4 starts at byte 350" in result.witness


def test_a_short_part_before_the_last_is_invalid() -> None:
    run = upload_run()
    event = part_event(run, 2)
    event["data"]["size"] = 50
    for number in range(3, 7):
        part_event(run, number)["data"]["offset"] -= 50
    s3_object(run)["size"] = len(CONTENT) - 50
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert any("only the last part may be shorter" in d for d in result.details)


def test_a_part_committed_twice_is_invalid() -> None:
    run = upload_run()
    twice = dict(part_event(run, 3))
    run.insert_event_after(part_event(run, 3), {**twice, "data": dict(twice["data"])})
    run.renumber(JOB)
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "part 3 was committed twice" in result.witness


def test_object_assembled_from_other_parts_has_the_wrong_multipart_etag() -> None:
    run = upload_run()
    part_event(run, 5)["data"]["etag"] = etag(b"not what was sent")
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "not the multipart ETag" in result.witness


def test_upload_left_in_progress_after_the_job_ended_is_an_orphan() -> None:
    run = upload_run()
    run.of_kind("s3_uploads")[0]["uploads"] = [{"key": "k", "upload_id": "U9"},
                                               {"key": "stray", "upload_id": "U8"}]
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert "U9" in result.witness and JOB in result.witness and "orphan" in result.witness
    assert any("U8" in d and "no upload job owns" in d for d in result.details)


def test_missing_metadata_and_leftover_checkpoint_are_invalid() -> None:
    run = upload_run()
    s3_object(run)["metadata"] = None
    run.replace_snapshot(JOB, upload={"parts": {1: {"etag": "x"}}})
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID
    assert any("no metadata object" in d for d in result.details)
    assert any("not cleaned up" in d for d in result.details)


def test_completed_upload_whose_object_is_missing_is_invalid() -> None:
    run = upload_run()
    s3_object(run).update(exists=False, size=None, sha256=None, etag=None)
    result = check(CHECKER, run)
    assert result.verdict is Verdict.INVALID and "does not exist" in result.witness


def test_without_a_record_of_s3_the_verdict_is_unknown() -> None:
    run = upload_run()
    run.timeline = [r for r in run.timeline if r["kind"] not in ("s3_uploads", "s3_object")]
    assert check(CHECKER, run).verdict is Verdict.UNKNOWN


def test_runs_without_uploads_are_not_applicable_and_say_so() -> None:
    result = check(CHECKER, one_job())
    assert result.verdict is Verdict.NOT_APPLICABLE and "no upload jobs" in result.witness


def test_the_apis_source_finished_is_no_zombie_write() -> None:
    run = upload_run()
    run.insert_event_after(part_event(run, 4), {
        "kind": "sut_event", "stream_id": "x-1", "event": "source_finished", "job_id": JOB,
        "worker_id": "api", "epoch": 2, "seq": 0, "ts_ms": part_event(run, 4)["ts_ms"],
        "recovery": False, "data": {"size": len(CONTENT)}})
    run.renumber(JOB)
    assert check(checker_named("stale_epoch_rejected"), run).verdict is Verdict.VALID


def test_missing_file_and_stale_failures_need_their_cause() -> None:
    checker = checker_named("failure_justified")
    run = upload_run()
    run.replace_snapshot(JOB, state="FAILED", state_sets=["FAILED"],
                         error="file_missing_on_resume: /data/streams/x is gone")
    assert check(checker, run).verdict is Verdict.INVALID
    run.add("fault_start", fault_id="f1", fault="delete_source", params={}, job=JOB)
    assert check(checker, run).verdict is Verdict.VALID
    run.replace_snapshot(JOB, error="stale_stream: /data/streams/x did not grow for 2.0s")
    assert check(checker, run).verdict is Verdict.INVALID  # its writer was to finish it
    submit = run.of_kind("op")[0]
    submit.update(finishes=False, on_stale="fail")
    assert check(checker, run).verdict is Verdict.VALID
