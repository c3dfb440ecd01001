"""Failpoint actions, counts and the control channel, on a real worker process."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from harness.control_client import ControlClient
from harness.environment import Environment
from harness.packs.reference.target import PHASES
from system_under_test.failpoints import POINTS, FailpointError, Failpoints, parse_spec


def test_counts_let_hits_pass_then_pause_once() -> None:
    async def main() -> list[str]:
        fps = Failpoints("w", "chunk.committed=2*off->1*pause")
        outcome = []
        for _ in range(4):
            task = asyncio.create_task(fps.hit("chunk.committed"))
            await asyncio.sleep(0.01)
            outcome.append("paused" if not task.done() else "passed")
            fps.release()
            await task
        return outcome

    assert asyncio.run(main()) == ["passed", "passed", "paused", "passed"]


def test_error_action_raises_and_records_the_hit() -> None:
    async def main() -> Failpoints:
        fps = Failpoints("w", "job.claimed=error")
        with pytest.raises(FailpointError, match="job.claimed"):
            await fps.hit("job.claimed", job="j1")
        return fps

    fps = asyncio.run(main())
    assert [(h.point, h.job, h.action) for h in fps.hits] == [("job.claimed", "j1", "error")]


def test_unknown_point_and_bad_action_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="unknown failpoint 'chunk.commited'"):
        parse_spec("chunk.commited=pause")
    with pytest.raises(ValueError, match="sleep needs milliseconds"):
        parse_spec("chunk.committed=sleep")
    with pytest.raises(ValueError, match="bad failpoint action 'explode'"):
        parse_spec("chunk.committed=explode")


def test_target_adapter_phase_catalog_matches_the_worker() -> None:
    assert list(PHASES) == list(POINTS)


@pytest.mark.slow
def test_control_channel_works_while_redis_is_severed(env: Environment) -> None:
    assert env.proxy is not None
    worker = env.start_worker("w")
    env.proxy.disable()
    try:
        worker.control.arm("chunk.committed", "1*pause")
        assert worker.control.armed()["chunk.committed"]["actions"] == "1*pause"
        assert set(worker.control.points()) == set(POINTS)
    finally:
        env.proxy.enable()
    job = env.submit(seed=21, seconds=2.0)
    hit = worker.control.wait_for_hit("chunk.committed", timeout=30)
    assert hit is not None and hit.job == job.job_id and hit.worker_id == "w"
    assert worker.control.status()["jobs"][job.job_id]["phase"].startswith("chunk.committed")
    assert worker.control.release("chunk.committed") == 1
    assert env.wait_terminal(timeout=30)
    assert env.snapshot(job.job_id).state == "COMPLETED"


@pytest.mark.slow
def test_worker_started_while_redis_is_down_retries_then_works(env: Environment) -> None:
    assert env.proxy is not None
    env.proxy.disable()
    try:
        worker = env.start_worker("w")
        time.sleep(1.5)
        assert env.runtime.is_running(worker.handle)
    finally:
        env.proxy.enable()
    log = env.runtime.log_path(worker.handle).read_text()
    assert "cannot reach Redis" in log and "retrying in" in log
    assert "Traceback" not in log
    job = env.submit(seed=22, seconds=2.0)
    assert env.wait_terminal(timeout=30)
    assert env.snapshot(job.job_id).transcript == job.expected_transcript
    env.runtime.kill(worker.handle, signal.SIGTERM)
    assert env.runtime.wait(worker.handle, 10) == 0


def test_control_client_reports_an_unreachable_worker() -> None:
    from harness.control_client import ControlError
    from harness.ports import free_port

    client = ControlClient(f"http://127.0.0.1:{free_port()}")
    assert client.ready() is False
    with pytest.raises(ControlError, match="did not answer"):
        client.armed()
