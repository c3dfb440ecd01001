"""Rolling restart: stop each worker in turn with a grace, start its successor, wait.

A deploy of N replicas: after ``delay_ms``, for every worker alive when the
fault fires (in worker-id order), a graceful stop (``stop.graceful_stop``:
SIGTERM, ``grace_ms``, then SIGKILL if it is still alive), the start of its
next incarnation (ready before the next step, as a rollout waits for the
new replica), then ``every_ms`` before the next worker. Jobs a stopped
worker releases go back to the queue and are picked up by the others or
by the new incarnation; the workload keeps running throughout.

Each stop is recorded as a ``worker_stop`` entry, like the ``stop`` fault's,
with its place in the rollout (``step`` of ``steps``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel, fault_kind
from harness.faults.stop import DEFAULT_GRACE_MS, graceful_stop, record_stop


class RollingRestartSpec(FaultSpecModel):
    kind: Literal["rolling_restart"]
    delay_ms: int = Field(0, ge=0, description="wait before the first worker is stopped")
    grace_ms: int = Field(DEFAULT_GRACE_MS, ge=0,
                          description="how long each SIGTERM may take before SIGKILL")
    every_ms: int = Field(500, ge=0, description="wait after each new worker started")
    stop_when_settled: bool = Field(
        False, description="end the rollout early once every job has settled")


@fault_kind(RollingRestartSpec, colour="#1a7f37")
class RollingRestart:
    def __init__(self, fault_id: str, spec: RollingRestartSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def fire(self, ctx: FaultContext) -> bool:
        if not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
            return False
        workers = sorted(ctx.live_workers(), key=lambda w: w.worker_id)
        if not workers:
            ctx.missed = "no live worker to restart"
            return False
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), workers=[w.worker_id for w in workers],
                   signal="SIGTERM", grace_ms=self.spec.grace_ms)
        for step, worker in enumerate(workers, start=1):
            stop = graceful_stop(ctx, worker, self.spec.grace_ms)
            record_stop(ctx, self.fault_id, stop, self.spec.grace_ms, step=step,
                        steps=len(workers))
            successor = ctx.replace(worker)
            ctx.record("rollout_step", fault_id=self.fault_id, step=step,
                       stopped=worker.worker_id, started=successor.worker_id)
            if step < len(workers):
                settled_early = not ctx.wait_unless_settled(self.spec.every_ms / 1000)
                if settled_early and self.spec.stop_when_settled:
                    break
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: every stopped worker was replaced as the rollout went."""
