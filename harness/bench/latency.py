"""Figures 2-4 of ``crashlab bench``: recovery, takeover and event latency, on real workers.

All three run in one ``Session`` (services started once, reset between
trials; workers forked from its fork server). Time comes from two views of
the same host clock: the harness's ``time.time()`` for what it does (the
SIGKILL, seeing a worker's control channel answer) and the worker's event
timestamps (Redis ``TIME`` in whole milliseconds, taken inside the commit's
own atomic step) for what the worker did.

recovery  One worker, paused by a failpoint right after its first chunk
          commit, is SIGKILLed and its replacement started at once. Total:
          the SIGKILL to the replacement's first chunk commit at the new
          epoch. *start* is the SIGKILL to the replacement's control channel
          answering, *resume* the rest; resume includes waiting for the dead
          worker's lease, so *lease_wait* (SIGKILL to the lease's expiry) is
          reported too: with ``LATENCY_SETTINGS`` it is between the lease TTL
          minus one heartbeat and the TTL.
takeover  The same kill with a second worker already running and idle: from
          the lease's expiry (its remaining TTL read right after the kill) to
          that worker's ``recovery_started``.
event     While one worker processes queued jobs, a consumer blocked in ``XREAD``
          on the target's event stream notes when each ``chunk_committed``
          arrives (the harness does nothing else meanwhile); a sample is the
          arrival minus the event's ``ts_ms``, which is rounded down to the
          millisecond (so a sample is up to 1 ms high).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, cast

import redis

from harness.bench.stats import Distribution
from harness.environment import Environment, Worker
from harness.errors import InconclusiveError
from harness.faults.kill_at_phase import pause_actions
from harness.history import SutEventName, bulk
from harness.runner import Session
from harness.target import InspectableTarget

# The shortest lease the reference worker accepts, renewed four times per TTL: recovery
# cannot start before the dead worker's lease runs out, so this is its floor.
LATENCY_SETTINGS = {"lease_ttl_ms": "200", "heartbeat_ms": "50", "poll_interval_ms": "10",
                    "chunk_concurrency": "1"}
KILL_POINT = "chunk.committed"
HOLD_POINT = "job.claimed"  # where the event-latency worker waits to be let go
_TERMINAL_EVENTS = {SutEventName.JOB_COMPLETED, SutEventName.JOB_FAILED,
                    SutEventName.JOB_TIMED_OUT, SutEventName.JOB_CANCELLED}
Event = dict[str, Any]


@dataclass(frozen=True)
class KilledJob:
    """A job whose worker was just SIGKILLed while it held it."""

    job_id: str
    epoch: int  # the dead worker's epoch
    mark: str  # the last stream id before the kill
    killed_at: float  # time.time() when the SIGKILL was sent
    lease_expiry_ms: float | None  # when the dead worker's lease runs out (Redis ms)


def measure_recovery(session: Session, trials: int, media_seconds: float) -> dict[str, Any]:
    """Figure 2: SIGKILL to the replacement's first resumed commit, in ``trials`` trials."""
    totals, starts, resumes, leases = [], [], [], []
    for trial in range(trials):
        env = session.env
        session.reset()
        victim = _start(env, "w1", failpoints=f"{KILL_POINT}={pause_actions(1)}")[0]
        killed = _kill_at_first_commit(env, victim, seed=trial + 1, media_seconds=media_seconds)
        ready_at = _start(env, "w1")[1]
        commit = _wait_event(env, killed, SutEventName.CHUNK_COMMITTED)
        killed_ms = killed.killed_at * 1000
        totals.append(commit["ts_ms"] - killed_ms)
        starts.append((ready_at - killed.killed_at) * 1000)
        resumes.append(commit["ts_ms"] - ready_at * 1000)
        if killed.lease_expiry_ms is not None:
            leases.append(max(0.0, killed.lease_expiry_ms - killed_ms))
    return {
        "total_ms": Distribution.of(totals).to_json(),
        "replacement_start_ms": Distribution.of(starts).to_json(),
        "resume_ms": Distribution.of(resumes).to_json(),
        "lease_wait_ms": Distribution.of(leases).to_json() if leases else None,
        "trials": trials,
    }


def measure_takeover(session: Session, trials: int, media_seconds: float) -> dict[str, Any]:
    """Figure 3: a dead worker's lease expiry to a live worker's ``recovery_started``."""
    samples = []
    for trial in range(trials):
        env = session.env
        session.reset()
        victim = _start(env, "w1", failpoints=f"{KILL_POINT}={pause_actions(1)}")[0]
        job = env.submit(1000 + trial, media_seconds)
        if victim.control.wait_for_hit(KILL_POINT, timeout=30) is None:
            raise InconclusiveError(f"takeover trial {trial + 1}: worker {victim.worker_id} "
                                    f"never reached {KILL_POINT}")
        _start(env, "w2")  # idle: the one job is held by the paused victim
        killed = _kill(env, victim, job.job_id)
        if killed.lease_expiry_ms is None:
            raise InconclusiveError(f"takeover trial {trial + 1}: job {job.job_id} had no "
                                    "lease left to expire (is the target inspectable?)")
        started = _wait_event(env, killed, SutEventName.RECOVERY_STARTED)
        samples.append(started["ts_ms"] - killed.lease_expiry_ms)
    return {"takeover_ms": Distribution.of(samples).to_json(), "trials": trials}


def measure_event_latency(session: Session, jobs: int, media_seconds: float,
                          timeout_s: float = 120.0) -> dict[str, Any]:
    """Figure 4: chunk commit to the event arriving at a blocked stream consumer.

    One worker takes the queued jobs one after the other. It is held at its
    first ``HOLD_POINT`` until it is up, so that once it is let go the harness
    only waits for the consumer to see every job end: starting a worker (a
    fork, its connections, the readiness polls) does not compete with the
    consumer for the interpreter and the cores while it measures. One worker,
    not several: on two cores, a second worker's ffmpeg cut running beside the
    first worker's commits starved the consumer for 30-55 ms in most runs (the
    events of those moments arrived together), which measures the rig's
    oversubscribed cores, not the path from a commit to a consumer.
    """
    env = session.env
    stream = getattr(env.target, "event_stream", None)
    if not isinstance(stream, str):
        raise InconclusiveError(f"target {env.target.name} names no event stream "
                                "(attribute event_stream); event latency cannot be measured")
    session.reset()
    submitted = {env.submit(2000 + index, media_seconds).job_id for index in range(jobs)}
    consumer = _Consumer(env.redis.client(), stream, submitted)
    # the consumer is the instrument: a collector pass over this process's heap (large
    # after an exploration) would stall it for tens of milliseconds and be read as latency
    with bulk():
        consumer.start()
        try:
            worker = _start(env, "w1", failpoints=f"{HOLD_POINT}={pause_actions(1)}")[0]
            if worker.control.wait_for_hit(HOLD_POINT, timeout=30) is None:
                raise InconclusiveError(f"event latency: worker {worker.worker_id} never "
                                        f"reached {HOLD_POINT}")
            worker.control.release(HOLD_POINT)
            if not consumer.settled.wait(timeout_s):
                raise InconclusiveError(f"event latency: {jobs} job(s) not settled in "
                                        f"{timeout_s:.0f}s")
        finally:
            consumer.close()
    samples = [arrived * 1000 - int(fields["ts_ms"]) for arrived, fields in consumer.arrivals
               if fields.get("event") == SutEventName.CHUNK_COMMITTED]
    if not samples:
        raise InconclusiveError("event latency: the consumer saw no chunk_committed event")
    return {"latency_ms": Distribution.of(samples).to_json(), "jobs": jobs,
            "resolution_ms": 1}


# -- one trial's steps ---------------------------------------------------------


def _start(env: Environment, worker_id: str, failpoints: str = "") -> tuple[Worker, float]:
    """Start a worker with ``LATENCY_SETTINGS``; it and the time its control channel answered.

    Polls every 2 ms (``Environment.wait_ready`` polls every 20 ms: too coarse here).
    """
    worker = env.start_worker(worker_id, failpoints=failpoints, settings=LATENCY_SETTINGS,
                              wait_ready=False)
    env.wait_ready(worker, interval=0.002)
    return worker, time.time()


def _kill_at_first_commit(env: Environment, victim: Worker, *, seed: int,
                          media_seconds: float) -> KilledJob:
    job = env.submit(seed, media_seconds)
    if victim.control.wait_for_hit(KILL_POINT, timeout=30) is None:
        raise InconclusiveError(f"worker {victim.worker_id} never reached {KILL_POINT}")
    return _kill(env, victim, job.job_id)


def _kill(env: Environment, victim: Worker, job_id: str) -> KilledJob:
    """SIGKILL ``victim`` (paused at the kill point, holding ``job_id``)."""
    epoch = env.snapshot(job_id).epoch
    events = env.events()
    mark = events[-1][0] if events else "0"
    killed_at = time.time()
    env.runtime.kill(victim.handle)
    return KilledJob(job_id, epoch, mark, killed_at, _lease_expiry_ms(env, job_id))


def _lease_expiry_ms(env: Environment, job_id: str) -> float | None:
    """When the job's lease runs out, in Redis milliseconds (None: no lease, or the target
    cannot tell)."""
    if not isinstance(env.target, InspectableTarget):
        return None
    seconds, micros = cast(tuple[int, int], env.client.time())
    ttl = env.target.inspect(env.client, job_id).lease_ttl_ms
    if ttl is None or ttl < 0:
        return None
    return seconds * 1000 + micros / 1000 + ttl


def _wait_event(env: Environment, killed: KilledJob, name: str,
                timeout: float = 30.0) -> Event:
    """The killed job's first ``name`` event at a newer epoch (polled every 5 ms)."""
    deadline = time.monotonic() + timeout
    after = killed.mark
    while True:
        for stream_id, event in env.target.read_events(env.client, after):
            after = stream_id
            if (event["event"] == name and event["job_id"] == killed.job_id
                    and event["epoch"] > killed.epoch):
                return event
        if time.monotonic() > deadline:
            raise InconclusiveError(f"job {killed.job_id}: no {name} at an epoch after "
                                    f"{killed.epoch} within {timeout:.0f}s")
        time.sleep(0.005)


class _Consumer(threading.Thread):
    """A stream consumer blocked in ``XREAD``, noting when each entry arrives; ``settled``
    is set once every job of ``jobs`` has published a terminal event."""

    def __init__(self, client: redis.Redis, stream: str, jobs: set[str]) -> None:
        super().__init__(name="bench-consumer", daemon=True)
        self.client = client
        self.stream = stream
        self.arrivals: list[tuple[float, dict[str, str]]] = []
        self.settled = threading.Event()
        self._pending = set(jobs)
        self._done = threading.Event()
        newest = cast(list[tuple[str, dict[str, str]]], client.xrevrange(stream, count=1))
        self._last = newest[0][0] if newest else "0-0"

    def run(self) -> None:
        while not self._done.is_set():
            reply = cast(list[tuple[str, list[tuple[str, dict[str, str]]]]],
                         self.client.xread({self.stream: self._last}, block=100, count=1000))
            arrived = time.time()
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    self._last = entry_id
                    self.arrivals.append((arrived, fields))
                    if fields.get("event") in _TERMINAL_EVENTS:
                        self._pending.discard(fields.get("job_id", ""))
            if not self._pending:
                self.settled.set()

    def close(self) -> None:
        self._done.set()
        self.join(timeout=5)
        self.client.close()
