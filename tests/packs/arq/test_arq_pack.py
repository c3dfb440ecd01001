"""The arq pack against real arq 0.28 workers: real redis-server, Toxiproxy, billing
service, arq ``Worker`` processes through the pack's launcher, and real SIGKILLs.

Each test enqueues with arq's own API (``ArqTarget.submit_workload``, that is
``ArqRedis.enqueue_job``), stops a worker at one of the pack's failpoints
through its control channel, and judges from ``ArqTarget.snapshot`` (arq's
keys, its pickled job and result records decoded) and the effects ledger.
The workers run with job_timeout 2 s, so a claim lasts 2 + 10 s and a test can
wait for a dead worker's claim to expire.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.environment import Environment, EnvironmentOptions
from harness.errors import ScenarioError
from harness.packs.arq.launch import POINTS, ArqSettings, job_function
from harness.packs.arq.target import DEFAULT_SETTINGS, ArqTarget
from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime
from harness.scenario import Scenario

QUEUE = DEFAULT_SETTINGS["queue"]
# short claims so a test can wait for a dead worker's claim to expire: 2 + 10 s
FAST = {**DEFAULT_SETTINGS, "job_timeout": "2", "max_tries": "3", "poll_delay": "0.1"}


class ArqWorld:
    """One environment (Redis, Toxiproxy, billing) for the module, reset per test."""

    def __init__(self, run_dir: Path, registry: ProcessRegistry) -> None:
        self.runtime = ProcessRuntime(run_dir, registry)
        self.target = ArqTarget()
        self.env = Environment(run_dir, self.target, self.runtime, registry=registry,
                               options=EnvironmentOptions(worker_settings=dict(FAST)))

    def reset(self) -> None:
        self.runtime.stop_all(grace=2.0)
        self.target.reset(self.env.client)
        self.env.ledger_path.unlink(missing_ok=True)
        self.env.jobs.clear()

    def submit(self, seed: int, *, max_retries: int | None = None, work_ms: int = 200) -> str:
        scenario = Scenario.model_validate({
            "name": "t", "description": "t", "target": "arq",
            "workload": {"kind": "task", "jobs": 1, "work_ms": work_ms,
                         "max_retries": max_retries}})
        self.target.submit_workload(self.env, scenario, seed)
        return f"arq-{seed}-0"

    def ledger(self) -> list[dict[str, Any]]:
        if not self.env.ledger_path.exists():
            return []
        return [json.loads(line) for line in self.env.ledger_path.read_text().splitlines()]

    def billed(self) -> list[str]:
        billing = self.target._billing
        assert billing is not None
        return [str(call["key"]) for call in billing.calls() if call.get("billed", True)]


@pytest.fixture(scope="module")
def arq_world(tmp_path_factory: pytest.TempPathFactory,
              registry: ProcessRegistry) -> Iterator[ArqWorld]:
    world = ArqWorld(tmp_path_factory.mktemp("arq"), registry)
    world.env.start()
    try:
        yield world
    finally:
        world.env.close()


@pytest.fixture
def world(arq_world: ArqWorld) -> Iterator[ArqWorld]:
    arq_world.reset()
    yield arq_world
    arq_world.runtime.stop_all(grace=2.0)


def test_settings_come_from_the_environment_and_name_what_is_missing() -> None:
    env = {"CRASHLAB_REDIS_URL": "redis://127.0.0.1:1/0",
           **{f"CRASHLAB_ARQ_{k.upper()}": v for k, v in DEFAULT_SETTINGS.items()}}
    settings = ArqSettings.from_env(env)
    assert (settings.queue, settings.job_timeout_s, settings.max_tries) == ("arq:queue", 20.0, 5)
    del env["CRASHLAB_ARQ_MAX_TRIES"]
    with pytest.raises(ValueError, match="CRASHLAB_ARQ_MAX_TRIES"):
        ArqSettings.from_env(env)
    with pytest.raises(ValueError, match="not 'module:function'"):
        job_function("harness.packs.arq.app.work")
    assert job_function(DEFAULT_SETTINGS["job"])[0] == "work"


def test_a_workload_retry_limit_arq_cannot_honour_is_refused(world: ArqWorld) -> None:
    with pytest.raises(ScenarioError, match="settings.max_tries: 2"):
        world.submit(9, max_retries=1)  # FAST gives max_tries 3
    assert world.target.job_ids(world.env.client) == []


def test_an_enqueued_job_is_queued_in_arqs_own_keys(world: ArqWorld) -> None:
    job_id = world.submit(10)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.native_state, snap.retry_count, snap.max_retries) == \
        ("QUEUED", "queued", 0, 2)
    assert snap.state_sets == [QUEUE, f"arq:job:{job_id}"]
    assert world.target.job_ids(world.env.client) == [job_id]


@pytest.mark.slow
def test_a_job_completes_once_in_the_worker_process(world: ArqWorld) -> None:
    worker = world.env.start_worker("w1")
    assert worker.control.points() == POINTS
    job_id = world.submit(1)
    assert world.env.wait_terminal(20.0), world.target.snapshot(world.env.client, job_id)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.native_state, snap.retry_count) == ("COMPLETED", "complete", 0)
    assert snap.state_sets == [f"arq:result:{job_id}"]
    assert snap.ended_at is not None and snap.ended_at <= time.time()
    lines = world.ledger()
    assert [line["what"] for line in lines] == ["start", "effect"]
    # arq runs the job as a task in the worker's own event loop
    assert lines[0]["pid"] == int(worker.handle.ident)
    assert world.billed() == [job_id]


@pytest.mark.slow
def test_a_killed_workers_job_stays_claimed_then_runs_again(world: ArqWorld) -> None:
    worker = world.env.start_worker("w1", failpoints="job.before_charge=1*pause")
    job_id = world.submit(2, max_retries=2)
    hit = worker.control.wait_for_hit("job.before_charge", timeout=15.0)
    assert hit is not None and hit.job == job_id
    world.runtime.kill(worker.handle, signal.SIGKILL)
    world.runtime.wait(worker.handle, 10)
    killed_at = time.time()
    snap = world.target.snapshot(world.env.client, job_id)
    # the job never left the queue; the claim and the counted try are still there
    assert (snap.state, snap.native_state, snap.retry_count) == ("PROCESSING", "in_progress", 0)
    assert snap.state_sets == [QUEUE, f"arq:job:{job_id}", f"arq:in-progress:{job_id}",
                               f"arq:retry:{job_id}"]
    world.env.start_worker("w2")
    assert world.env.wait_terminal(30.0), world.target.snapshot(world.env.client, job_id)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.retry_count) == ("COMPLETED", 1)
    assert snap.ended_at is not None
    # not before the claim (job_timeout 2 s + arq's 10 s) ran out
    assert snap.ended_at - killed_at > 8.0
    starts = [line for line in world.ledger() if line["what"] == "start"]
    assert [line["job_try"] for line in starts] == [1, 2]
    assert world.billed() == [job_id]


@pytest.mark.slow
def test_a_kill_after_the_claim_leaves_an_uncounted_try(world: ArqWorld) -> None:
    worker = world.env.start_worker("w1", failpoints="worker.dequeued=1*pause")
    job_id = world.submit(3, max_retries=2)
    hit = worker.control.wait_for_hit("worker.dequeued", timeout=15.0)
    assert hit is not None and hit.job == job_id and hit.pid == int(worker.handle.ident)
    world.runtime.kill(worker.handle, signal.SIGKILL)
    world.runtime.wait(worker.handle, 10)
    snap = world.target.snapshot(world.env.client, job_id)
    assert (snap.state, snap.retry_count) == ("PROCESSING", 0)
    assert snap.state_sets == [QUEUE, f"arq:job:{job_id}", f"arq:in-progress:{job_id}"]
    assert world.ledger() == []


@pytest.mark.slow
def test_a_timed_out_attempt_ends_timed_out(world: ArqWorld) -> None:
    world.env.start_worker("w1", failpoints="job.before_charge=1*sleep(3000)")
    job_id = world.submit(4, max_retries=2)
    assert world.env.wait_terminal(20.0), world.target.snapshot(world.env.client, job_id)
    snap = world.target.snapshot(world.env.client, job_id)
    assert snap.state == "TIMED_OUT" and snap.error is not None
    assert "TimeoutError" in snap.error
    assert snap.state_sets == [f"arq:result:{job_id}"]


def test_an_unknown_job_is_missing_from_every_key(world: ArqWorld) -> None:
    snap = world.target.snapshot(world.env.client, "arq-no-such-job")
    assert (snap.state, snap.state_sets, snap.native_state) == ("MISSING", [], None)
