"""Freeze: SIGSTOP a worker for ``duration_ms``, then SIGCONT it: any pack, any lease.

The plain form of a worker that stops answering without dying: a long GC
pause, a VM migration, a container throttled to nothing. While it is
frozen its heartbeats, its timeouts and its job stand still, and the queue
decides on its own what becomes of the job (``pause_past_lease`` is the
reference pack's variant, timed in lease TTLs and aimed at fencing).

With ``point`` the worker is frozen while paused at that failpoint (the
``occurrence``-th hit), and the point is released after the thaw, so the
job goes on exactly where it stopped; without it, ``delay_ms`` after the
fault's turn comes (skipped if every job has settled by then). On the
docker runtime, the freeze is ``docker pause``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.environment import Worker
from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind


class FreezeSpec(FaultSpecModel):
    kind: Literal["freeze"]
    point: str | None = Field(None, description="freeze while paused at this failpoint")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")
    delay_ms: int = Field(0, ge=0, le=3_600_000,
                          description="without a point: how long after its turn")
    duration_ms: int = Field(description="how long the worker stays frozen", gt=0,
                             le=3_600_000)


@fault_kind(FreezeSpec, colour="#0550ae")
class Freeze:
    def __init__(self, fault_id: str, spec: FreezeSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._frozen: list[Worker] = []

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        job = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            victim, hit = found
            job = hit.job
        else:
            if not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
                return False
            workers = ctx.live_workers()
            if not workers:
                ctx.missed = "no worker was alive to freeze"
                return False
            victim = workers[0]
        ctx.env.runtime.pause(victim.handle)
        self._frozen.append(victim)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=victim.worker_id, job=job)
        time.sleep(self.spec.duration_ms / 1000)
        self._thaw(ctx)
        if self.spec.point is not None:
            ctx.disarm(victim, self.spec.point)  # the job goes on where it stopped
        return True

    def heal(self, ctx: FaultContext) -> None:
        self._thaw(ctx)

    def _thaw(self, ctx: FaultContext) -> None:
        while self._frozen:
            worker = self._frozen.pop()
            ctx.env.runtime.resume(worker.handle)
            ctx.record("fault_heal", fault_id=self.fault_id)
