"""Graceful stop: SIGTERM a worker, then SIGKILL it if it is still alive after a grace.

This is what a deploy does to a worker (``docker stop -t``, Kubernetes'
``terminationGracePeriodSeconds``, systemd's ``TimeoutStopSec``): ask it to
stop, wait, then kill it. A worker that honours SIGTERM hands its running
jobs back (the reference worker's ``RELEASE``: back to the queue, no retry
counted) and exits by itself; one that does not is killed at the end of the
grace, and its jobs must then be recovered like after any crash.

The stop fires at a phase (``point``/``occurrence``, like ``kill_at_phase``:
the worker is paused there, so the SIGTERM lands with that step in flight)
or after ``delay_ms``. Both runtimes stop the same way through the
``Runtime`` protocol: SIGTERM (``docker kill --signal``), a wait of
``grace_ms`` for the exit, then SIGKILL, which is ``docker stop -t``.

Every stopped worker gets one ``worker_stop`` entry in the history
(``record_stop``): the signal, the grace, whether the process left by
itself (``exited``) or was killed at the end of the grace (``killed``),
and how long it took; the checkers (``harness.packs.reference.checkers.graceful``) read it.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.environment import Worker
from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind

WORKER_STOP = "worker_stop"
"""The history entry kind of one graceful stop (see the module docstring)."""

EXITED = "exited"  # left by itself within the grace
KILLED = "killed"  # still alive at the end of the grace: SIGKILLed

DEFAULT_GRACE_MS = 10_000  # docker stop's default timeout


class StopSpec(FaultSpecModel):
    kind: Literal["stop"]
    point: str | None = Field(None, description="stop while paused at this failpoint")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")
    delay_ms: int = Field(0, ge=0, description="without a point: wait this long, then stop")
    grace_ms: int = Field(DEFAULT_GRACE_MS, ge=0,
                          description="how long SIGTERM may take before SIGKILL")
    restart: bool = Field(True, description="start a replacement worker once it is gone")

    @model_validator(mode="after")
    def _one_trigger(self) -> StopSpec:
        if self.point is not None and self.delay_ms:
            raise ValueError("give either point (stop at a phase) or delay_ms (stop at a "
                             "time), not both")
        return self


@dataclass(frozen=True)
class StopOutcome:
    """How one graceful stop ended."""

    worker: str
    outcome: str  # EXITED or KILLED
    exit_code: int | None
    took_ms: int


def graceful_stop(ctx: FaultContext, worker: Worker, grace_ms: int) -> StopOutcome:
    """SIGTERM ``worker``, wait up to ``grace_ms`` for it to exit, SIGKILL it if it did not.

    A frozen worker cannot act on SIGTERM, so it is thawed first (as the
    runtimes' own ``stop_all`` does). Each signal is recorded by the runtime
    as a ``process_signal``; the outcome is returned, not recorded.
    """
    runtime = ctx.env.runtime
    started = time.monotonic()
    if grace_ms == 0:
        return _no_grace(ctx, worker, started)
    runtime.kill(worker.handle, signal.SIGTERM)
    code = runtime.wait(worker.handle, grace_ms / 1000)
    if code is None and runtime.is_running(worker.handle):
        ctx.kill(worker)  # SIGKILL, and wait until it is gone
        return StopOutcome(worker.worker_id, KILLED, runtime.exit_status(worker.handle),
                           round((time.monotonic() - started) * 1000))
    return StopOutcome(worker.worker_id, EXITED, code,
                       round((time.monotonic() - started) * 1000))


def _no_grace(ctx: FaultContext, worker: Worker, started: float) -> StopOutcome:
    """A stop with no grace at all: SIGTERM and SIGKILL with nothing in between.

    The signals go straight to the process on this host (a container's too,
    by its host pid), so no runtime's round trip sits between them. Two
    ``kill`` calls back to back still leave a gap: on a loaded machine the
    harness can lose the CPU right after the SIGTERM, and the worker, woken
    by it, has handed its job back within that gap (seen in a docker run).
    A grace of zero means the worker gets no time at all to act on the
    SIGTERM, so it is stopped first (SIGSTOP, which a container's init
    receives from this namespace too): the SIGTERM stays pending and the
    SIGKILL ends it. ``docker stop -t 0`` leaves that microsecond gap open;
    crashlab closes it so the run is the same every time.
    """
    runtime = ctx.env.runtime
    pid = runtime.pid(worker.handle)
    if pid is None:
        runtime.kill(worker.handle, signal.SIGTERM)
    else:
        order = (signal.SIGSTOP, signal.SIGTERM, signal.SIGKILL)
        delivered = {sig: _send(pid, sig) for sig in order}
        for sig, sent in delivered.items():
            ctx.record("process_signal", name=worker.worker_id, pid=pid,
                       signal=signal.Signals(sig).name, delivered=sent)
    ctx.kill(worker)  # the runtime's own SIGKILL (the process group), and the reaping
    return StopOutcome(worker.worker_id, KILLED, runtime.exit_status(worker.handle),
                       round((time.monotonic() - started) * 1000))


def _send(pid: int, sig: signal.Signals) -> bool:
    """``sig`` to ``pid``; False when the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def record_stop(ctx: FaultContext, fault_id: str, stop: StopOutcome, grace_ms: int,
                **extra: object) -> None:
    """The ``worker_stop`` entry of one stop: signal, grace and who ended it."""
    ctx.record(WORKER_STOP, fault_id=fault_id, worker=stop.worker, signal="SIGTERM",
               grace_ms=grace_ms, outcome=stop.outcome, exit_code=stop.exit_code,
               took_ms=stop.took_ms, **extra)


@fault_kind(StopSpec, colour="#1a7f37")
class Stop:
    def __init__(self, fault_id: str, spec: StopSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        job: str | None = None
        chunk: int | None = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            victim, hit = found
            job, chunk = hit.job, hit.chunk
        else:
            if not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
                return False
            workers = sorted(ctx.live_workers(), key=lambda w: w.worker_id)
            if not workers:
                ctx.missed = "no live worker to stop"
                return False
            victim = ctx.rng.choice(workers)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=victim.worker_id, job=job, chunk=chunk,
                   signal="SIGTERM", grace_ms=self.spec.grace_ms)
        # the paused step stays paused: SIGTERM lands with it in flight, and the
        # worker's shutdown cancels it (a release must not let it run on first)
        stop = graceful_stop(ctx, victim, self.spec.grace_ms)
        record_stop(ctx, self.fault_id, stop, self.spec.grace_ms, job=job)
        if self.spec.restart:
            ctx.replace(victim)
        else:
            ctx.unreplaced.append(victim)
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self.spec.point is None:
            return
        for worker in ctx.live_workers():
            ctx.disarm(worker, self.spec.point)
