"""The nemesis contract: a fault fires once, is recorded, and is always healed.

A ``Fault`` is built from its validated spec (one pydantic model per kind,
in the kind's own module). The runner calls ``fire`` in schedule order and
``heal`` for every fault at the end, whatever happened in between. ``fire``
returns True once the fault took effect; False means it never fired (its
phase was not reached in time): the runner records ``fault_skipped`` and
the verdict can be no better than *unknown*.

Faults act only through the ``FaultContext``: the environment's services and
runtime, the seeded ``Random`` of the run, and the history sink.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from harness.control_client import ControlError, FailpointHit
from harness.environment import Environment, Worker
from harness.errors import SetupError
from harness.runtime.process import ProcessRuntime
from harness.services.redis_proxies import slot_of
from harness.target import media_target

log = logging.getLogger(__name__)

SETTLED_POLL_S = 0.02  # how often a timed wait looks whether every job has settled
# how long one round of waiting for a failpoint hit lasts, over all workers: a hit
# at the last worker polled (a paused worker) or every job settling is seen this late
HIT_ROUND_S = 0.05
SETTLED_FIRST = "every job had settled before it was due"


@dataclass
class FaultContext:
    env: Environment
    rng: random.Random
    record: Callable[..., object]
    phase_timeout: float = 30.0
    # failpoints the next fault needs, armed from the environment in every
    # worker started from now on, so no hit can slip by before it is armed
    upcoming: dict[str, str] = field(default_factory=dict)
    # where the latest phase fault stopped a worker (file faults can aim there)
    last_hit: FailpointHit | None = None
    # workers killed without a replacement, oldest first
    unreplaced: list[Worker] = field(default_factory=list)
    # why the fault being fired did not fire, when it knows better than a timeout
    missed: str | None = None

    @property
    def upcoming_spec(self) -> str:
        return ";".join(f"{point}={actions}" for point, actions in self.upcoming.items())

    def arm(self, worker: Worker, point: str, actions: str) -> None:
        """Arm ``point`` unless the worker was started with it armed already.

        Re-arming would reset its hit count and release a hit already paused.
        """
        if point not in worker.control.armed():
            worker.control.arm(point, actions)

    def start_worker(self, name: str) -> Worker:
        return self.env.start_worker(name, failpoints=self.upcoming_spec)

    @property
    def lease_ttl_s(self) -> float:
        return int(self.env.options.worker_settings.get("lease_ttl_ms", "5000")) / 1000

    def live_workers(self) -> list[Worker]:
        return self.env.live_workers()

    def kill(self, worker: Worker) -> None:
        self.env.runtime.kill(worker.handle, signal.SIGKILL)
        self.env.runtime.wait(worker.handle, 10)

    def kill_pid(self, worker: Worker, pid: int) -> None:
        """SIGKILL one process of ``worker`` (a job's forked child) by its pid, and record
        it; ``SetupError`` where the pid is not the host's (containers)."""
        if not isinstance(self.env.runtime, ProcessRuntime):
            raise SetupError("killing only the process that hit a point (process: hit) needs "
                             "the process runtime; run with --runtime process")
        self.record("process_signal", name=f"{worker.worker_id}/{pid}", pid=pid,
                    signal="SIGKILL", delivered=_signal(pid, signal.SIGKILL))

    def replace(self, worker: Worker) -> Worker:
        """Start the next incarnation of a dead worker (same id, fresh process)."""
        return self.start_worker(worker.worker_id.split(".")[0])

    def chunk_file(self, job_id: str, index: int) -> Path:
        return media_target(self.env.target).chunk_file(self.env.wiring, job_id, index)

    def source_files(self, job_id: str) -> list[Path]:
        job = self.env.jobs.get(job_id)
        if job is not None and job.kind == "upload":  # the file the harness's writer wrote
            return [job.media] if job.media.is_file() else []
        return media_target(self.env.target).source_files(self.env.wiring, job_id)

    def first_job(self) -> str:
        return next(iter(self.env.jobs))

    def settled(self) -> bool:
        """Every submitted job is terminal, and no more will arrive: no phase will be
        reached any more."""
        if self.env.submitting:
            return False
        try:
            return bool(self.env.jobs) and self.env.wait_terminal(timeout=0.0)
        except Exception:  # noqa: BLE001 - Redis may be down during a fault; not settled
            return False

    def wait_unless_settled(self, seconds: float) -> bool:
        """Sleep ``seconds``; False as soon as every job has settled (a fault timed for
        later can no longer change the outcome, so the run need not sit it out)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.settled():
                return False  # skip_reason() sees the settled jobs too
            time.sleep(min(SETTLED_POLL_S, left))
        return True

    def fire(self, fault: Fault) -> bool:
        """Fire ``fault``, forgetting why an earlier one missed (``skip_reason``)."""
        self.missed = None
        return fault.fire(self)

    def skip_reason(self) -> str:
        """Why the fault just fired did not fire: its own word, else settled or timed out."""
        if self.missed is not None:
            return self.missed
        if self.settled():
            return SETTLED_FIRST
        return f"did not fire within {self.phase_timeout:.0f}s"

    def wait_any_hit(self, point: str, actions: str, slots: Sequence[str] | None = None
                     ) -> tuple[Worker, FailpointHit] | None:
        """Arm ``point`` on every live worker (of ``slots``, when given: ``w1`` and its
        later incarnations) and wait for the first to stop there.

        The others are disarmed at once (which releases any of them already
        paused there), so exactly one worker is held. None after the phase
        timeout, or as soon as every job has settled (the point can no longer
        be reached).
        """
        workers = self.live_workers()
        if slots is not None:
            for worker in workers:
                if slot_of(worker.worker_id) not in slots:
                    self.disarm(worker, point)  # armed at its start (``upcoming``)
            workers = [w for w in workers if slot_of(w.worker_id) in slots]
            if not workers:
                self.missed = f"no live worker of {', '.join(slots)} to reach {point}"
                return None
        for worker in workers:
            self.arm(worker, point, actions)
        deadline = time.monotonic() + self.phase_timeout
        found: tuple[Worker, FailpointHit] | None = None
        settled = False
        while found is None and time.monotonic() < deadline and not settled:
            settled = self.settled()  # one last look for a hit after it turns true
            for worker in workers:  # one round of long polls takes at most HIT_ROUND_S
                hit = worker.control.wait_for_hit(point, timeout=HIT_ROUND_S / len(workers))
                if hit is not None:
                    found = (worker, hit)
                    break
        for worker in self.live_workers():
            if found is None or worker is not found[0]:
                self.disarm(worker, point)
        if found is not None:
            worker, hit = found
            self.last_hit = hit
            self.record("failpoint_hit", worker=worker.worker_id, point=hit.point, hit=hit.hit,
                        job=hit.job, chunk=hit.chunk, pid=hit.pid, action=hit.action)
        return found

    def disarm(self, worker: Worker, point: str) -> None:
        """Disarm (and so release) ``point``; a frozen worker cannot answer, and that's fine."""
        try:
            worker.control.disarm(point)
        except ControlError:
            pass


def _signal(pid: int, sig: int) -> bool:
    try:
        os.kill(pid, sig)
        return True
    except ProcessLookupError:
        return False


RENAMED_FIELDS = {
    "restart_redis": {"down_ms": "duration_ms"},
    "kill_random": {"min_ms": "min_delay_ms", "max_ms": "max_delay_ms"},
}
"""Old fault field names and their new ones: one name per meaning across every kind
(``duration_ms``: how long a fault lasts; ``delay_ms`` / ``*_delay_ms``: the wait before)."""


def reject_renamed(kind: str, raw: Any) -> Any:
    """A spec's ``model_validator(mode="before")``: a clear error for an old field name."""
    if isinstance(raw, dict):
        for old, new in RENAMED_FIELDS.get(kind, {}).items():
            if old in raw:
                raise ValueError(f"{kind}: field {old!r} was renamed {new!r}; write "
                                 f"{new}: {raw[old]!r} instead")
    return raw


class Fault(Protocol):
    """One fault of a schedule."""

    fault_id: str

    def describe(self) -> dict[str, Any]:
        """The spec as plain data, for the history and the report."""
        ...

    def points(self) -> dict[str, str]:
        """Failpoints to arm at worker start for this fault (point -> actions)."""
        ...

    def fire(self, ctx: FaultContext) -> bool: ...

    def heal(self, ctx: FaultContext) -> None: ...
