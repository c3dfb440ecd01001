"""A real worker process SIGKILLed at each phase; a restarted worker must finish exactly.

Each test arms one failpoint with ``pause``, waits for the real worker
process to stop there, SIGKILLs its process group, starts a replacement and
checks the final Redis state, the event stream and the transcription
service's call log.
"""

from __future__ import annotations

import signal
from collections import Counter
from typing import Any

import pytest

from harness.environment import Environment, SubmittedJob, Worker
from system_under_test.constants import lease_key

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

MEDIA_SECONDS = 4.0  # 4 chunks of 1 s (FAST_WORKER in conftest)


def kill_at(env: Environment, point: str, *, occurrence: int = 1,
            job: SubmittedJob | None = None) -> tuple[SubmittedJob, Worker]:
    actions = f"{occurrence - 1}*off->1*pause" if occurrence > 1 else "1*pause"
    worker = env.start_worker("w", failpoints=f"{point}={actions}")
    job = job or env.submit(seed=11, seconds=MEDIA_SECONDS)
    hit = worker.control.wait_for_hit(point, timeout=30)
    assert hit is not None, f"the worker never reached {point}"
    assert hit.job == job.job_id
    env.runtime.kill(worker.handle, signal.SIGKILL)
    assert env.runtime.wait(worker.handle, 10) == -signal.SIGKILL
    return job, worker


def job_events(env: Environment, job_id: str) -> list[dict[str, Any]]:
    return [event for _, event in env.events() if event["job_id"] == job_id]


def assert_completed_exactly(env: Environment, job: SubmittedJob, *, lost_workers: int) -> None:
    assert env.wait_terminal(timeout=60), "the job never reached a terminal state"
    final = env.snapshot(job.job_id)
    assert final.state == "COMPLETED", final.error
    assert final.transcript == job.expected_transcript
    assert final.retry_count == lost_workers
    assert final.state_sets == ["COMPLETED"]
    events = job_events(env, job.job_id)
    commits = Counter(e["data"]["chunk"] for e in events if e["event"] == "chunk_committed")
    assert commits == Counter(range(final.chunk_count or 0)), "a chunk was committed twice"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    billable = Counter(c["chunk_index"] for c in env.transcription.calls()
                       if c["job_id"] == job.job_id and c["outcome"] == "new")
    assert billable == Counter(range(final.chunk_count or 0)), "billable work was repeated"
    started = [e for e in events if e["event"] == "recovery_started"]
    assert len(started) == lost_workers
    if started:
        last = started[-1]["epoch"]
        closing = [e["event"] for e in events if e["epoch"] == last and e["recovery"]]
        assert closing[0] == "recovery_started" and "processing_resumed" in closing
        assert closing[-2:] == ["recovery_completed", "job_completed"]


@pytest.mark.parametrize("point,occurrence", [
    ("job.claimed", 1),
    ("chunking.split", 1),
    ("chunk.transcribed.before_commit", 2),
    ("chunk.committed", 2),
    ("assembly.started", 1),
    ("job.before_complete", 1),
])
def test_killed_worker_is_replaced_and_job_completes_exactly(
    env: Environment, point: str, occurrence: int
) -> None:
    job, _ = kill_at(env, point, occurrence=occurrence)
    env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=1)


def test_resume_skips_committed_chunks(env: Environment) -> None:
    job, _ = kill_at(env, "chunk.committed", occurrence=3)
    env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=1)
    resumed = [e for e in job_events(env, job.job_id) if e["event"] == "processing_resumed"]
    assert resumed[0]["data"]["committed"] == [0, 1, 2]
    assert resumed[0]["data"]["remaining"] == [3]


def test_answer_received_before_the_crash_is_taken_from_the_service_status(
    env: Environment,
) -> None:
    job, _ = kill_at(env, "chunk.transcribed.before_commit", occurrence=1)
    replacement = env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=1)
    chunk0 = [c["outcome"] for c in env.transcription.calls()
              if c["job_id"] == job.job_id and c["chunk_index"] == 0]
    assert chunk0 == ["new", "status"], "the recovering worker sent chunk 0 again"
    log = env.runtime.log_path(replacement.handle).read_text()
    assert "already completed it; committing its result without a new call" in log


def test_crash_during_recovery_is_recovered_again(env: Environment) -> None:
    job, _ = kill_at(env, "chunk.committed", occurrence=2)
    second = env.start_worker("w", failpoints="recovery.started=1*pause")
    assert second.control.wait_for_hit("recovery.started", timeout=30) is not None
    env.runtime.kill(second.handle, signal.SIGKILL)
    env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=2)


def test_corrupt_and_missing_chunk_files_are_cut_again(env: Environment) -> None:
    job, _ = kill_at(env, "chunk.committed", occurrence=1)
    chunk_dir = env.wiring.data_dir / "jobs" / job.job_id / "chunks"
    (chunk_dir / "chunk-0002.wav").write_bytes(b"RIFF garbage")
    (chunk_dir / "chunk-0003.wav").unlink()
    env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=1)
    resumed = [e for e in job_events(env, job.job_id) if e["event"] == "processing_resumed"]
    assert resumed[0]["data"]["rechunked"] == [2, 3]


def test_missing_original_fails_recovery_with_a_reason(env: Environment) -> None:
    job, _ = kill_at(env, "chunking.split")
    chunk_dir = env.wiring.data_dir / "jobs" / job.job_id / "chunks"
    (chunk_dir / "chunk-0001.wav").unlink()
    for source in (env.wiring.data_dir / "jobs" / job.job_id).glob("source*"):
        source.unlink()
    env.start_worker("w")
    assert env.wait_terminal(timeout=60)
    final = env.snapshot(job.job_id)
    assert final.state == "FAILED"
    assert final.error is not None and final.error.startswith("source_missing")
    events = [e["event"] for e in job_events(env, job.job_id)]
    assert events[-2:] == ["recovery_failed", "job_failed"]


def test_sigterm_releases_the_job_without_counting_a_retry(env: Environment) -> None:
    worker = env.start_worker("w", failpoints="chunk.committed=1*pause")
    job = env.submit(seed=12, seconds=MEDIA_SECONDS)
    assert worker.control.wait_for_hit("chunk.committed", timeout=30) is not None
    env.runtime.kill(worker.handle, signal.SIGTERM)
    assert env.runtime.wait(worker.handle, 10) == 0
    assert env.client.exists(lease_key(job.job_id)) == 0
    assert env.snapshot(job.job_id).state == "QUEUED"
    env.start_worker("w")
    assert_completed_exactly(env, job, lost_workers=0)
    assert "job_released" in [e["event"] for e in job_events(env, job.job_id)]
    # the job came back as a fresh claim with a chunk committed: that chunk is kept, not
    # sent again
    sent = [c for c in env.transcription.calls()
            if c["job_id"] == job.job_id and c["chunk_index"] == 0]
    assert len(sent) == 1, sent
