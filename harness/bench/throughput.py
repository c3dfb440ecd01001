"""Figure 5 of ``crashlab bench``: what the recovery machinery costs in throughput.

The same workload (``jobs`` jobs of ``media_seconds``, all queued before a
worker starts) is processed by one worker with the machinery on (the
reference worker: leases renewed every heartbeat, an epoch-checked commit
with its event per chunk, the plan checkpoint, the timeout monitor) and by
one with it off (``recovery_machinery=false``: the bare worker, which does
the same cutting and transcription calls and writes only the result). Each
run is timed from the worker's control channel answering (it starts polling
the queue right after) to its last job settling. Each repeat runs on and off
back to back (in swapped order every other repeat), so its two runs share
the host's state, and the figure is the median of the repeats' ratios:

    ratio = median over the repeats of (seconds on / seconds off)

so 1.05 means the machinery costs 5 % of throughput; ``ratio_quartiles``
gives the middle half of the repeats' ratios, the spread one repeat shows on
this host (on a shared 2-core host one repeat strays by several percent, so
the median wants many of them). A slow spell of a
shared host that covers some repeats slows both runs of each of them; a
ratio of the two medians would pair slow runs with fast ones (one bench read
0.84 that way, its repeats' ratios having a median of 1.14). Both workers talk to the
data Redis directly, as a deployed worker does: the harness's fault proxy
(Toxiproxy) would add a hop to every round trip, a cost of the harness, not
of the machinery. The wait for the last job reads one field, not the whole
job, so that the measuring disturbs the measured as little as it can.

The ratio depends on how much useful work a chunk is, so it is taken twice:
with the service answering after ``latency_ms`` (the figure: 50 ms, a
quick transcription call) and with a local service that answers at once
(the instant-service line, a worst case with no target). The record also
gives the extra wall time per chunk and the worker's own CPU time per
chunk, on and off.

``count_round_trips`` restates the cost in Redis round trips: one run on
and one run off, each watched with MONITOR (``harness.bench.round_trips``),
never timed; the machinery's round trips per chunk are the on worker's
per-chunk commands less the off worker's.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psutil

from harness.bench.round_trips import Command, Monitor, summary, tally, worker_addresses
from harness.environment import TERMINAL, Environment
from harness.errors import InconclusiveError
from harness.history import bulk
from harness.ports import LOOPBACK
from harness.runner import Session
from harness.services.latency import LatencyModel
from harness.target import LatencyTarget

# The catalog's worker defaults (harness.scenario.DEFAULT_SETTINGS); the chunk length is
# the session's (its API cuts jobs into half-second chunks, so each has several commits)
THROUGHPUT_SETTINGS = {"lease_ttl_ms": "1000", "heartbeat_ms": "200", "poll_interval_ms": "20",
                       "chunk_concurrency": "1"}


def measure_throughput(session: Session, *, jobs: int, media_seconds: float,
                       repeats: int, timeout_s: float = 300.0,
                       latency_ms: float = 0.0) -> dict[str, Any]:
    """Seconds per run with the machinery on and off, chunks per second, and their ratio;
    the service answers each chunk after ``latency_ms`` (0: at once)."""
    runs: dict[bool, list[Run]] = {True: [], False: []}
    for repeat in range(repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for machinery in order:
            runs[machinery].append(_one_run(session, machinery, jobs=jobs,
                                            media_seconds=media_seconds, seed=repeat,
                                            timeout_s=timeout_s, latency_ms=latency_ms))
    chunks = runs[True][0].chunks
    on_s, off_s = [r.seconds for r in runs[True]], [r.seconds for r in runs[False]]
    on, off = statistics.median(on_s), statistics.median(off_s)
    extra = statistics.median(a - b for a, b in zip(on_s, off_s, strict=True))

    def summary(machinery: bool, median: float) -> dict[str, Any]:
        mine = runs[machinery]
        return {"seconds": [round(r.seconds, 4) for r in mine],
                "chunks_per_s": round(chunks / median, 1),
                "worker_cpu_ms_per_chunk": round(
                    statistics.median(r.cpu_s for r in mine) / chunks * 1000, 3)}

    return {
        "ratio": round(overhead_ratio(on_s, off_s), 3),
        "ratio_quartiles": [round(q, 3) for q in ratio_quartiles(on_s, off_s)],
        "on": summary(True, on), "off": summary(False, off),
        "extra_ms_per_chunk": round(extra / chunks * 1000, 3),
        "jobs": jobs, "chunks_per_run": chunks, "media_seconds": media_seconds,
        "repeats": repeats, "service_latency_ms": latency_ms,
    }


def count_round_trips(session: Session, *, jobs: int, media_seconds: float,
                      timeout_s: float = 300.0) -> dict[str, Any]:
    """The Redis commands of runs on and off (MONITOR) with ``media_seconds`` and twice
    that per job: per chunk, and the rest per job; ``machinery_per_chunk`` is what the
    machinery adds to each chunk (``round_trips.per_chunk``)."""
    runs = {(machinery, media): _one_run(session, machinery, jobs=jobs, media_seconds=media,
                                         seed=0, timeout_s=timeout_s, watch=True)
            for machinery in (True, False) for media in (media_seconds, 2 * media_seconds)}

    def worker(machinery: bool) -> dict[str, Any]:
        small, large = runs[machinery, media_seconds], runs[machinery, 2 * media_seconds]
        assert small.commands is not None and large.commands is not None
        return summary(small.commands, large.commands, chunks=(small.chunks, large.chunks),
                       jobs=jobs)

    on, off = worker(True), worker(False)
    chunks = runs[True, 2 * media_seconds].chunks
    return {
        "machinery_per_chunk": on["per_chunk"] - off["per_chunk"],
        "machinery_rest_per_job": round(on["rest_per_job"] - off["rest_per_job"], 2),
        "all_per_chunk": round((on["total"] - off["total"]) / chunks, 3) if chunks else None,
        "on": on, "off": off, "jobs": jobs, "chunks_per_run": chunks,
    }


def overhead_ratio(on: list[float], off: list[float]) -> float:
    """The median of the repeats' on/off ratios (``on[i]`` and ``off[i]`` ran back to back)."""
    return statistics.median(a / b for a, b in zip(on, off, strict=True))


def ratio_quartiles(on: list[float], off: list[float]) -> tuple[float, float]:
    """The first and third quartiles of the repeats' on/off ratios: how far one repeat
    strays on this host (a single repeat gives its own ratio twice)."""
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    if len(ratios) == 1:
        return ratios[0], ratios[0]
    first, _, third = statistics.quantiles(ratios, n=4, method="inclusive")
    return first, third


@dataclass(frozen=True)
class Run:
    seconds: float  # worker ready to last job settled
    cpu_s: float  # the worker's own CPU time by then (user + system)
    chunks: int
    commands: Counter[str] | None = None  # what the worker sent Redis, when watched


def _one_run(session: Session, machinery: bool, *, jobs: int, media_seconds: float, seed: int,
             timeout_s: float, latency_ms: float = 0.0, watch: bool = False) -> Run:
    """Queue the workload, start one worker, time it; with ``watch``, count its commands."""
    session.reset()
    env = session.env
    if latency_ms:
        if not isinstance(env.target, LatencyTarget):
            raise InconclusiveError(f"target {env.target.name} has no set_service_latency; "
                                    "the overhead at a service latency needs one")
        env.target.set_service_latency(env, LatencyModel(median_ms=latency_ms, seed=seed))
    submitted = [env.submit(3000 + seed * 100 + index, media_seconds) for index in range(jobs)]
    settings = {**THROUGHPUT_SETTINGS, "recovery_machinery": str(machinery).lower(),
                "redis_url": env.redis.url}  # not through the fault proxy
    # one worker takes the queue in order, so the last job submitted settles last
    last = submitted[-1].job_id
    # the harness is the stopwatch: a collector pass over its heap (large after an
    # exploration) would hold it for tens of milliseconds at either end of a run
    monitor = Monitor(LOOPBACK, env.redis.port) if watch else None
    commands: list[Command] | None = None
    try:
        with bulk():
            worker = env.start_worker("w1", settings=settings, wait_ready=False)
            handle = worker.handle
            env.wait_ready(worker, interval=0.002)
            started = time.monotonic()
            _wait_until_terminal(env, last, started + timeout_s)
            elapsed = time.monotonic() - started
        pid = env.runtime.pid(handle)
        assert pid is not None  # the process runtime: a host pid
        clients = worker_addresses(pid, env.redis.port) if monitor is not None else set()
    finally:
        if monitor is not None:
            commands = monitor.stop()
    times = psutil.Process(pid).cpu_times()
    chunks = 0
    for job in submitted:
        snapshot = env.snapshot(job.job_id)
        if snapshot.state != "COMPLETED" or snapshot.transcript != job.expected_transcript:
            raise InconclusiveError(
                f"throughput run (recovery machinery {'on' if machinery else 'off'}): job "
                f"{job.job_id} ended {snapshot.state} ({snapshot.error or 'wrong transcript'}); "
                f"see {env.runtime.log_path(handle)}")
        chunks += snapshot.chunk_count or 0
    return Run(elapsed, times.user + times.system, chunks,
               None if commands is None else tally(commands, clients))


def _wait_until_terminal(env: Environment, job_id: str, deadline: float) -> None:
    state = getattr(env.target, "job_state", None)
    if state is None:
        raise InconclusiveError(f"target {env.target.name} has no job_state(client, job_id); "
                                "the throughput figure needs one")
    while state(env.client, job_id) not in TERMINAL:
        if time.monotonic() > deadline:
            raise InconclusiveError(f"throughput run: job {job_id} did not settle in time")
        time.sleep(0.005)
