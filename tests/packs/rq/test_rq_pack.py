"""The rq pack against real RQ 2.12 workers: real redis-server, Toxiproxy, billing
service, ``rq worker`` processes through the pack's launcher, and real SIGKILLs.

Each test enqueues with RQ's own API (``RqTarget.submit_workload``), stops a
worker at one of the pack's failpoints through its control channel, and
judges from ``RqTarget.snapshot`` (RQ's ``Job.fetch`` and key layout) and the
effects ledger.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.environment import Environment, EnvironmentOptions, Worker
from harness.packs.rq.launch import POINTS, rq_argv
from harness.packs.rq.target import DEFAULT_SETTINGS, RqTarget
from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime
from harness.scenario import Scenario

QUEUE = DEFAULT_SETTINGS["queue"]


class RqWorld:
    """One environment (Redis, Toxiproxy, billing) for the module, reset per test."""

    def __init__(self, run_dir: Path, registry: ProcessRegistry) -> None:
        self.runtime = ProcessRuntime(run_dir, registry)
        self.target = RqTarget()
        self.env = Environment(run_dir, self.target, self.runtime, registry=registry,
                               options=EnvironmentOptions(worker_settings=dict(DEFAULT_SETTINGS)))

    def reset(self) -> None:
        self.runtime.stop_all(grace=2.0)
        self.target.reset(self.env.client)
        self.env.ledger_path.unlink(missing_ok=True)
        self.env.jobs.clear()

    def submit(self, seed: int, *, max_retries: int | None = None, work_ms: int = 200) -> str:
        scenario = Scenario.model_validate({
            "name": "t", "description": "t", "target": "rq",
            "workload": {"kind": "task", "jobs": 1, "work_ms": work_ms,
                         "max_retries": max_retries, "timeout_s": 30}})
        self.target.submit_workload(self.env, scenario, seed)
        return f"rq-{seed}-0"

    def ledger(self) -> list[dict[str, Any]]:
        if not self.env.ledger_path.exists():
            return []
        return [json.loads(line) for line in self.env.ledger_path.read_text().splitlines()]

    def worker_pid(self, worker: Worker) -> int:
        return int(worker.handle.ident)


@pytest.fixture(scope="module")
def rq_world(tmp_path_factory: pytest.TempPathFactory,
             registry: ProcessRegistry) -> Iterator[RqWorld]:
    world = RqWorld(tmp_path_factory.mktemp("rq"), registry)
    world.env.start()
    try:
        yield world
    finally:
        world.env.close()


@pytest.fixture
def world(rq_world: RqWorld) -> Iterator[RqWorld]:
    rq_world.reset()
    yield rq_world
    rq_world.runtime.stop_all(grace=2.0)


def _gone(pid: int, within: float = 3.0) -> bool:
    """Whether ``pid`` is dead (or a zombie) within ``within`` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.02)
    return False


def test_rq_argv_passes_the_settings_to_rqs_own_cli() -> None:
    argv = rq_argv({"CRASHLAB_REDIS_URL": "redis://127.0.0.1:1/0", "CRASHLAB_WORKER_ID": "w1",
                    "CRASHLAB_RQ_WORKER_TTL": "20", "CRASHLAB_RQ_QUEUE": "q"})
    assert argv == ["worker", "--url", "redis://127.0.0.1:1/0", "--worker-class",
                    "harness.packs.rq.launch.CrashlabWorker", "--name", "w1",
                    "--worker-ttl", "20", "q"]


@pytest.mark.slow
def test_a_job_completes_once_in_a_work_horse(world: RqWorld) -> None:
    worker = world.env.start_worker("w1")
    assert worker.control.points() == POINTS
    job_id = world.submit(1)
    assert world.env.wait_terminal(20.0), world.target.snapshot(world.env.client, job_id)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.native_state, snap.retry_count) == ("COMPLETED", "finished", 0)
    assert snap.state_sets == [f"rq:finished:{QUEUE}"]
    assert snap.ended_at is not None and snap.ended_at <= time.time()
    lines = world.ledger()
    assert [line["what"] for line in lines] == ["start", "effect"]
    # the job ran in RQ's forked work horse, not in the worker process itself
    assert lines[0]["pid"] != world.worker_pid(worker)
    assert [call["key"] for call in world.target._billing.calls()] == [job_id]  # type: ignore[union-attr]


@pytest.mark.slow
def test_killing_only_the_work_horse_retries_the_job(world: RqWorld) -> None:
    worker = world.env.start_worker("w1", failpoints="job.before_charge=1*pause")
    job_id = world.submit(2, max_retries=1)
    hit = worker.control.wait_for_hit("job.before_charge", timeout=15.0)
    assert hit is not None and hit.job == job_id
    assert hit.pid != world.worker_pid(worker)  # the horse's pid, carried by the hit
    os.kill(hit.pid, signal.SIGKILL)
    assert world.env.wait_terminal(20.0), world.target.snapshot(world.env.client, job_id)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.retry_count, snap.max_retries) == ("COMPLETED", 1, 1)
    assert world.runtime.is_running(worker.handle)  # the worker itself lived on
    starts = [line["pid"] for line in world.ledger() if line["what"] == "start"]
    assert len(starts) == 2 and starts[0] == hit.pid and starts[1] != hit.pid


@pytest.mark.slow
def test_a_killed_worker_takes_its_horse_and_leaves_the_job_in_wip(world: RqWorld) -> None:
    worker = world.env.start_worker("w1", failpoints="job.before_charge=1*pause")
    job_id = world.submit(3, max_retries=2)
    hit = worker.control.wait_for_hit("job.before_charge", timeout=15.0)
    assert hit is not None
    world.runtime.kill(worker.handle, signal.SIGKILL)
    world.runtime.wait(worker.handle, 10)
    assert _gone(hit.pid), "the work horse outlived its SIGKILLed worker"
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.native_state) == ("PROCESSING", "started")
    assert snap.state_sets == [f"rq:wip:{QUEUE}"]
    assert [line["what"] for line in world.ledger()] == ["start"]


@pytest.mark.slow
def test_a_kill_after_dequeue_leaves_the_job_only_in_the_intermediate_list(
        world: RqWorld) -> None:
    worker = world.env.start_worker("w1", failpoints="worker.dequeued=1*pause")
    job_id = world.submit(4, max_retries=2)
    hit = worker.control.wait_for_hit("worker.dequeued", timeout=15.0)
    assert hit is not None and hit.pid == world.worker_pid(worker)
    world.runtime.kill(worker.handle, signal.SIGKILL)
    world.runtime.wait(worker.handle, 10)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.native_state) == ("QUEUED", "queued")
    assert snap.state_sets == [f"rq:queue:{QUEUE}:intermediate"]
    assert world.ledger() == []


def test_an_unknown_job_is_missing_from_every_key(world: RqWorld) -> None:
    snap = world.target.snapshot(world.env.client, "rq-no-such-job")
    assert (snap.state, snap.state_sets, snap.native_state) == ("MISSING", [], None)
