"""Seed-003 guarantees on real worker processes: timeouts and metrics; and what a worker
has ready before its first job."""

from __future__ import annotations

import hashlib
import signal
import time

import httpx
import pytest

from harness.environment import Environment
from harness.ports import free_port
from system_under_test import lua, upload_lua

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_deadline_is_enforced_by_a_live_worker(env: Environment) -> None:
    worker = env.start_worker("w", failpoints="chunk.committed=1*pause")
    job = env.submit(seed=31, seconds=4.0, timeout_s=1.0)
    assert worker.control.wait_for_hit("chunk.committed", timeout=30) is not None
    # the holder is stuck; a second worker's monitor must time the job out
    env.start_worker("v")
    assert env.wait_terminal(timeout=30)
    final = env.snapshot(job.job_id)
    assert final.state == "TIMED_OUT" and final.error is not None
    worker.control.release()
    events = [e for _, e in env.events() if e["job_id"] == job.job_id]
    assert events[-1]["event"] == "job_timed_out"
    # the snapshot says when the job ended: the Redis time of the event that ended it
    assert final.ended_at == int(events[-1]["ts_ms"]) / 1000
    status = httpx.get(f"{env.api_url}/jobs/{job.job_id}", timeout=10).json()
    assert status["state"] == "TIMED_OUT" and status["deadline_ms"] is not None


def test_metrics_count_recoveries_and_duplicate_prevention(env: Environment) -> None:
    victim = env.start_worker("w", failpoints="chunk.transcribed.before_commit=1*pause")
    job = env.submit(seed=32, seconds=2.0)
    assert victim.control.wait_for_hit(timeout=30) is not None
    env.runtime.kill(victim.handle, signal.SIGKILL)
    port = free_port()
    env.start_worker("m", settings={"metrics_port": str(port)})
    assert env.wait_terminal(timeout=30)
    final = env.snapshot(job.job_id)
    assert final.state == "COMPLETED"
    completed = [e for _, e in env.events() if e["event"] == "job_completed"]
    assert final.ended_at == int(completed[-1]["ts_ms"]) / 1000
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert 'crashlab_recoveries_total{outcome="claimed"} 1.0' in text
    assert "crashlab_duplicate_prevention_total 1.0" in text
    assert 'crashlab_jobs{state="COMPLETED"}' in text


def test_a_started_worker_has_its_scripts_in_the_redis_cache_before_any_job(
        env: Environment) -> None:
    client = env.redis.client()
    client.script_flush()
    env.start_worker("w")  # no job: without loading them up front, no commit script is loaded
    wanted = [hashlib.sha1(text.encode()).hexdigest()
              for text in (lua.COMMIT_CHUNK, lua.COMPLETE, upload_lua.COMMIT_PART)]
    deadline = time.monotonic() + 10
    while not all(client.script_exists(*wanted)):
        assert time.monotonic() < deadline, "the worker did not load its scripts"
        time.sleep(0.02)
