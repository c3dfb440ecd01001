"""counters_agree: chunks_done, progress and an upload's bytes agree with what they count."""

from __future__ import annotations

from typing import Any

from harness.checkers import Verdict
from harness.packs.reference.checkers.counters import CountersAgree
from tests.harness.checkers.builders import check, exhaust_retries, one_job

PARTS: dict[int, dict[str, Any]] = {1: {"etag": '"a"', "size": 100, "offset": 0},
                                    2: {"etag": '"b"', "size": 100, "offset": 100}}


def test_a_completed_job_counts_its_chunks() -> None:
    result = check(CountersAgree(), one_job())
    assert result.verdict is Verdict.VALID
    assert "1 job" in result.witness


def test_a_chunk_counted_twice_is_invalid_though_it_is_committed_once() -> None:
    run = one_job()
    run.replace_snapshot(chunks_done=5)

    result = check(CountersAgree(), run)

    assert result.verdict is Verdict.INVALID
    assert "job job-1: chunks_done is 5 but 4 chunks are committed" in result.witness


def test_progress_that_is_not_chunks_done_over_chunk_count_is_invalid() -> None:
    run = one_job()
    exhaust_retries(run)  # FAILED with chunks 0 and 1 of 4 committed: progress 0.5
    assert check(CountersAgree(), run).verdict is Verdict.VALID
    run.replace_snapshot(progress=0.75)

    result = check(CountersAgree(), run)

    assert result.verdict is Verdict.INVALID
    assert "progress is 0.75 but chunks_done 2 of chunk_count 4 makes 0.5" in result.witness


def test_an_uploads_bytes_are_the_sum_of_its_parts() -> None:
    run = one_job()
    upload = {"bytes_sent": "200", "parts_done": "2", "next_part": "3", "parts": PARTS}
    run.replace_snapshot(kind="upload", chunk_count=None, state="PROCESSING",
                         progress=0.0, committed_chunks={}, chunks_done=0, upload=upload)
    assert check(CountersAgree(), run).verdict is Verdict.VALID

    run.replace_snapshot(upload={**upload, "bytes_sent": "300", "parts_done": "3"})
    result = check(CountersAgree(), run)

    assert result.verdict is Verdict.INVALID
    assert "bytes_sent is 300 but its 2 committed parts hold 200 bytes" in result.witness
    assert any("parts_done is 3 but 2 parts are committed" in d for d in result.details)


def test_a_completed_upload_sent_its_finished_size() -> None:
    run = one_job()
    run.replace_snapshot(kind="upload", chunk_count=None, committed_chunks={}, chunks_done=0,
                         upload={"bytes_sent": "150", "finished_size": "200", "parts": {}})

    result = check(CountersAgree(), run)

    assert result.verdict is Verdict.INVALID
    assert "COMPLETED with bytes_sent 150 but its source was finished at 200" in result.witness


def test_a_run_without_counters_is_not_applicable() -> None:
    run = one_job()
    run.replace_snapshot(kind="task", chunk_count=None)
    assert check(CountersAgree(), run).verdict is Verdict.NOT_APPLICABLE
