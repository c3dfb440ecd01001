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

The ratio depends on how much useful work a chunk is (here: a local service
that answers at once), so the record also gives the extra wall time per chunk
and the worker's own CPU time per chunk, on and off.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import psutil

from harness.environment import TERMINAL, Environment
from harness.errors import InconclusiveError
from harness.history import bulk
from harness.runner import Session

# The catalog's worker defaults (harness.scenario.DEFAULT_SETTINGS); the chunk length is
# the session's (its API cuts jobs into half-second chunks, so each has several commits)
THROUGHPUT_SETTINGS = {"lease_ttl_ms": "1000", "heartbeat_ms": "200", "poll_interval_ms": "20",
                       "chunk_concurrency": "1"}


def measure_throughput(session: Session, *, jobs: int, media_seconds: float,
                       repeats: int, timeout_s: float = 300.0) -> dict[str, Any]:
    """Seconds per run with the machinery on and off, chunks per second, and their ratio."""
    runs: dict[bool, list[Run]] = {True: [], False: []}
    for repeat in range(repeats):
        order = (True, False) if repeat % 2 == 0 else (False, True)
        for machinery in order:
            runs[machinery].append(_one_run(session, machinery, jobs=jobs,
                                            media_seconds=media_seconds, seed=repeat,
                                            timeout_s=timeout_s))
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
        "repeats": repeats,
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


def _one_run(session: Session, machinery: bool, *, jobs: int, media_seconds: float, seed: int,
             timeout_s: float) -> Run:
    """Queue the workload, start one worker, time it."""
    session.reset()
    env = session.env
    submitted = [env.submit(3000 + seed * 100 + index, media_seconds) for index in range(jobs)]
    settings = {**THROUGHPUT_SETTINGS, "recovery_machinery": str(machinery).lower(),
                "redis_url": env.redis.url}  # not through the fault proxy
    # one worker takes the queue in order, so the last job submitted settles last
    last = submitted[-1].job_id
    # the harness is the stopwatch: a collector pass over its heap (large after an
    # exploration) would hold it for tens of milliseconds at either end of a run
    with bulk():
        worker = env.start_worker("w1", settings=settings, wait_ready=False)
        handle = worker.handle
        env.wait_ready(worker, interval=0.002)
        started = time.monotonic()
        _wait_until_terminal(env, last, started + timeout_s)
        elapsed = time.monotonic() - started
    times = psutil.Process(env.runtime.pid(handle)).cpu_times()
    chunks = 0
    for job in submitted:
        snapshot = env.snapshot(job.job_id)
        if snapshot.state != "COMPLETED" or snapshot.transcript != job.expected_transcript:
            raise InconclusiveError(
                f"throughput run (recovery machinery {'on' if machinery else 'off'}): job "
                f"{job.job_id} ended {snapshot.state} ({snapshot.error or 'wrong transcript'}); "
                f"see {env.runtime.log_path(handle)}")
        chunks += snapshot.chunk_count or 0
    return Run(elapsed, times.user + times.system, chunks)


def _wait_until_terminal(env: Environment, job_id: str, deadline: float) -> None:
    state = getattr(env.target, "job_state", None)
    if state is None:
        raise InconclusiveError(f"target {env.target.name} has no job_state(client, job_id); "
                                "the throughput figure needs one")
    while state(env.client, job_id) not in TERMINAL:
        if time.monotonic() > deadline:
            raise InconclusiveError(f"throughput run: job {job_id} did not settle in time")
        time.sleep(0.005)
