"""Upload jobs through real worker processes: SIGKILL at every upload phase, and the API.

Real redis-server, real moto S3 server, real worker and API processes. Each
kill test pauses the worker at one failpoint, SIGKILLs it there, starts a
replacement and checks what S3 holds against the bytes the harness wrote.
"""

from __future__ import annotations

import hashlib
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.environment import Environment, EnvironmentOptions, SubmittedJob, Worker
from harness.packs.reference.target import ReferenceTarget
from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime
from harness.scenario import DEFAULT_SETTINGS, UPLOAD_SETTINGS
from harness.streams import Growth, source_bytes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

PART = int(UPLOAD_SETTINGS["upload_part_bytes"])
SIZE = 5 * PART + 4321


class UploadWorld:
    def __init__(self, run_dir: Path, registry: ProcessRegistry) -> None:
        self.runtime = ProcessRuntime(run_dir, registry)
        self.env = Environment(run_dir, ReferenceTarget(), self.runtime, registry=registry,
                               options=EnvironmentOptions(
                                   s3=True, worker_settings={**DEFAULT_SETTINGS,
                                                             **UPLOAD_SETTINGS}))

    def reset(self) -> None:
        self.runtime.stop_all(grace=2.0)
        self.env._stop_writers()
        self.env.writers.clear()
        self.env.target.reset(self.env.client)
        self.env.jobs.clear()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          registry: ProcessRegistry) -> Iterator[UploadWorld]:
    world = UploadWorld(tmp_path_factory.mktemp("uploads"), registry)
    world.env.start()
    try:
        yield world
    finally:
        world.env.close()


@pytest.fixture
def env(world: UploadWorld) -> Iterator[Environment]:
    world.reset()
    yield world.env
    world.runtime.stop_all(grace=2.0)


def kill_at(env: Environment, point: str, *, occurrence: int = 1, seed: int = 1,
            growth: Growth | None = None,
            max_retries: int | None = None) -> tuple[SubmittedJob, Worker]:
    actions = f"{occurrence - 1}*off->1*pause" if occurrence > 1 else "1*pause"
    worker = env.start_worker("w", failpoints=f"{point}={actions}")
    job = env.submit_upload(seed, SIZE, growth=growth, max_retries=max_retries)
    hit = worker.control.wait_for_hit(point, timeout=30)
    assert hit is not None, f"the worker never reached {point}"
    assert hit.job == job.job_id
    env.runtime.kill(worker.handle, signal.SIGKILL)
    assert env.runtime.wait(worker.handle, 10) == -signal.SIGKILL
    return job, worker


def job_events(env: Environment, job_id: str) -> list[dict[str, Any]]:
    return [event for _, event in env.events() if event["job_id"] == job_id]


def assert_uploaded_exactly(env: Environment, job: SubmittedJob, seed: int, *,
                            lost_workers: int) -> None:
    assert env.wait_terminal(timeout=60), "the upload never reached a terminal state"
    final = env.snapshot(job.job_id)
    assert final.state == "COMPLETED", final.error
    assert final.retry_count == lost_workers
    objects, pending = env.observe_uploads()
    (seen,) = objects
    assert seen["exists"] and seen["first_difference"] is None
    assert seen["sha256"] == hashlib.sha256(source_bytes(seed, SIZE)).hexdigest()
    assert pending["uploads"] == []
    events = job_events(env, job.job_id)
    parts = [e["data"] for e in events if e["event"] == "part_committed"]
    assert Counter(p["part"] for p in parts) == Counter(range(1, 7)), "a part committed twice"
    assert [p["offset"] for p in sorted(parts, key=lambda p: p["part"])] == [
        n * PART for n in range(6)]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    started = [e for e in events if e["event"] == "recovery_started"]
    assert len(started) == lost_workers
    if started:
        last = started[-1]["epoch"]
        closing = [e["event"] for e in events if e["epoch"] == last and e["recovery"]]
        assert closing[0] == "recovery_started" and "processing_resumed" in closing
        assert closing[-2:] == ["recovery_completed", "job_completed"]
    assert seen["metadata"]["size"] == SIZE and seen["metadata"]["etag"] == seen["etag"]


@pytest.mark.parametrize("point,occurrence", [
    ("job.claimed", 1),
    ("upload.created", 1),
    ("upload.started", 1),
    ("upload.part.before_upload", 2),
    ("upload.part.uploaded", 2),
    ("upload.part.committed", 2),
    ("upload.before_complete", 1),
    ("upload.completed_in_s3", 1),
    ("upload.metadata_written", 1),
])
def test_upload_killed_at_each_phase_resumes_byte_exact(
    env: Environment, point: str, occurrence: int
) -> None:
    job, _ = kill_at(env, point, occurrence=occurrence, seed=3)
    env.start_worker("w")
    assert_uploaded_exactly(env, job, 3, lost_workers=1)


def test_growing_source_killed_while_waiting_for_data_resumes_byte_exact(
    env: Environment,
) -> None:
    job, _ = kill_at(env, "upload.waiting", seed=4, growth=Growth(6, 0.2))
    env.start_worker("w")
    assert_uploaded_exactly(env, job, 4, lost_workers=1)
    events = [e["event"] for e in job_events(env, job.job_id)]
    assert "source_finished" in events


def test_worker_killed_while_verifying_the_checkpoint_is_recovered_again(
    env: Environment,
) -> None:
    job, _ = kill_at(env, "upload.part.committed", occurrence=2, seed=5)
    second = env.start_worker("w", failpoints="upload.verified=1*pause")
    assert second.control.wait_for_hit("upload.verified", timeout=30) is not None
    env.runtime.kill(second.handle, signal.SIGKILL)
    env.start_worker("w")
    assert_uploaded_exactly(env, job, 5, lost_workers=2)


def test_source_missing_on_resume_fails_the_job_and_leaves_no_upload(
    env: Environment,
) -> None:
    job, _ = kill_at(env, "upload.part.committed", occurrence=2, seed=6)
    job.media.unlink()
    env.start_worker("w")
    assert env.wait_terminal(timeout=60)
    final = env.snapshot(job.job_id)
    assert final.state == "FAILED"
    assert final.error is not None and final.error.startswith("file_missing_on_resume")
    events = [e["event"] for e in job_events(env, job.job_id)]
    assert events[-2:] == ["recovery_failed", "job_failed"]
    _, pending = env.observe_uploads()
    assert pending["uploads"] == []


def test_upload_past_its_retry_limit_fails_and_its_upload_is_aborted(env: Environment) -> None:
    job, _ = kill_at(env, "upload.part.committed", occurrence=2, seed=7, max_retries=0)
    env.start_worker("w")
    assert env.wait_terminal(timeout=60)
    final = env.snapshot(job.job_id)
    assert final.state == "FAILED" and "lost its worker" in (final.error or "")
    _, pending = env.observe_uploads()
    assert pending["uploads"] == []


# -- the API ---------------------------------------------------------------


def post_upload(env: Environment, **body: Any) -> httpx.Response:
    return httpx.post(f"{env.api_url}/uploads", json=body, timeout=10)


def a_source(env: Environment, name: str = "ok.bin", data: bytes = b"x" * 10) -> Path:
    path = env.target.upload_source_dir(env.wiring) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_upload_api_refuses_bad_requests_with_the_reason(env: Environment) -> None:
    source = str(a_source(env))
    good = {"source": source, "bucket": "crashlab-uploads", "key": "k"}
    cases = [
        ({**good, "source": "relative/file.bin"}, 400, "absolute path"),
        ({**good, "source": "/etc/hostname"}, 400, "outside the upload root"),
        ({**good, "source": source + ".missing"}, 400, "does not exist"),
        ({**good, "bucket": "Not_A_Bucket"}, 422, "bucket"),
        ({**good, "key": ""}, 422, "key"),
        ({**good, "key": "k.metadata.json"}, 422, "reserved"),
        ({**good, "on_stale": "explode"}, 422, "on_stale"),
        ({**good, "surprise": 1}, 422, "surprise"),
    ]
    for body, status, words in cases:
        response = post_upload(env, **body)
        assert response.status_code == status, (body, response.text)
        assert words in response.text, (body, response.text)


def test_second_live_upload_of_the_same_object_is_409(env: Environment) -> None:
    source = str(a_source(env))
    first = post_upload(env, source=source, bucket="crashlab-uploads", key="same")
    assert first.status_code == 201
    second = post_upload(env, source=source, bucket="crashlab-uploads", key="same")
    assert second.status_code == 409
    assert first.json()["job_id"] in second.json()["detail"]
    other = post_upload(env, source=source, bucket="crashlab-uploads", key="other")
    assert other.status_code == 201


def test_finish_is_idempotent_and_only_for_live_upload_jobs(env: Environment) -> None:
    path = a_source(env, "growing.bin", b"a" * 100)
    job_id = post_upload(env, source=str(path), bucket="crashlab-uploads",
                         key="growing").json()["job_id"]
    with path.open("ab") as out:
        out.write(b"b" * 50)
    first = httpx.post(f"{env.api_url}/jobs/{job_id}/finish", timeout=10)
    assert first.status_code == 200 and first.json()["finished_size"] == 150
    with path.open("ab") as out:
        out.write(b"c" * 50)
    again = httpx.post(f"{env.api_url}/jobs/{job_id}/finish", timeout=10)
    assert again.status_code == 200 and again.json()["finished_size"] == 150
    status = httpx.get(f"{env.api_url}/jobs/{job_id}", timeout=10).json()
    assert status["kind"] == "upload" and status["finished_size"] == 150
    assert httpx.get(f"{env.api_url}/jobs/{job_id}/transcript", timeout=10).status_code == 409
    missing = httpx.post(f"{env.api_url}/jobs/nope/finish", timeout=10)
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]
    media, _ = env.make_media(seed=1, seconds=1.0)
    transcribe = env.target.submit(env.api_url, media)
    refused = httpx.post(f"{env.api_url}/jobs/{transcribe}/finish", timeout=10)
    assert refused.status_code == 409 and "only upload jobs" in refused.json()["detail"]
    assert httpx.post(f"{env.api_url}/jobs/{job_id}/cancel", timeout=10).status_code == 200
    late = httpx.post(f"{env.api_url}/jobs/{job_id}/finish", timeout=10)
    assert late.status_code == 200  # finished before it was cancelled: the first answer stands
    never = post_upload(env, source=str(path), bucket="crashlab-uploads",
                        key="never").json()["job_id"]
    assert httpx.post(f"{env.api_url}/jobs/{never}/cancel", timeout=10).status_code == 200
    ended = httpx.post(f"{env.api_url}/jobs/{never}/finish", timeout=10)
    assert ended.status_code == 409 and "CANCELLED" in ended.json()["detail"]
