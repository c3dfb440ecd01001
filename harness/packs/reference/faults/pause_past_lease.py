"""Pause past lease: freeze a worker (SIGSTOP) until its lease expires, then thaw it.

The frozen worker is a zombie: another worker takes the job over at a new
epoch while it sleeps; when it wakes it still believes it owns the job and
tries to write. Fencing must reject every such write. If ``point`` is given,
the worker is frozen while paused at that failpoint, then released after
SIGCONT, so its very next step is a write with the old epoch.

A thawed worker's heartbeat would normally notice the lost lease first and
stop the job before it writes. With ``stall_heartbeat`` (the default when a
point is given) the worker's ``lease.renew`` point is paused too, as a
starved heartbeat thread would be, so the zombie's write really reaches
Redis and only the fencing check stands between it and the data.

With ``rescuer_point``, the worker that takes the job over (the rescuer
started for it, or another live worker) is itself paused there (e.g.
``recovery.resumed``) until the zombie has written, so
the zombie's write lands while the new epoch owns the job but before the
new owner has redone the chunk: the one moment where only fencing helps.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.control_client import ControlError
from harness.environment import Worker
from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind


class PausePastLeaseSpec(FaultSpecModel):
    kind: Literal["pause_past_lease"]
    point: str | None = Field(None, description="freeze while paused at this failpoint")
    occurrence: int = Field(1, ge=1)
    hold_leases: float = Field(3.0, gt=1.0, description="how long to freeze, in lease TTLs")
    stall_heartbeat: bool = Field(True, description="also pause lease.renew (needs point)")
    rescuer_point: str | None = Field(
        None, description="hold the rescuing worker at this point until the zombie wrote")


@fault_kind(PausePastLeaseSpec, colour="#57606a")
class PausePastLease:
    def __init__(self, fault_id: str, spec: PausePastLeaseSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._frozen: list[Any] = []

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        workers = ctx.live_workers()
        if not workers:
            return False
        victim = workers[0]
        stall = self.spec.stall_heartbeat and self.spec.point is not None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            victim = found[0]
        if stall:
            victim.control.arm("lease.renew", "pause")
        rescuer = None
        if len(workers) == 1 or self.spec.rescuer_point is not None:
            # someone must be alive to take the job over while the victim sleeps
            arming = "" if self.spec.rescuer_point is None else f"{self.spec.rescuer_point}=1*pause"
            rescuer = ctx.env.start_worker(f"rescuer-{self.fault_id}", failpoints=arming)
        ctx.env.runtime.pause(victim.handle)
        self._frozen.append(victim)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=victim.worker_id)
        # the takeover may come from the rescuer or from another live worker
        rescuers = [] if rescuer is None else [rescuer]
        if rescuer is not None and self.spec.rescuer_point is not None:
            others = [w for w in workers if w is not victim]
            for worker in others:
                ctx.arm(worker, self.spec.rescuer_point, "1*pause")
            rescuers += others
            self._wait_for_rescue(ctx, rescuers, self.spec.rescuer_point)
        else:
            time.sleep(ctx.lease_ttl_s * self.spec.hold_leases)
        self._thaw(ctx)
        if self.spec.point is not None:
            victim.control.disarm(self.spec.point)  # releases the paused step: a zombie write
        if stall:
            time.sleep(0.3)  # let the zombie's write reach Redis before its heartbeat wakes
            victim.control.disarm("lease.renew")
        if self.spec.rescuer_point is not None:
            for worker in rescuers:
                ctx.disarm(worker, self.spec.rescuer_point)
        return True

    @staticmethod
    def _wait_for_rescue(ctx: FaultContext, rescuers: list[Worker], point: str) -> None:
        """Until one of ``rescuers`` stops at ``point`` (the takeover), or the phase timeout."""
        deadline = time.monotonic() + ctx.phase_timeout
        while time.monotonic() < deadline:
            for worker in rescuers:
                try:
                    held = worker.control.wait_for_hit(point, timeout=0.05)
                except ControlError:
                    continue  # a worker killed meanwhile
                if held is not None:
                    ctx.record("failpoint_hit", worker=worker.worker_id, point=held.point,
                               hit=held.hit, job=held.job, chunk=held.chunk, pid=held.pid,
                               action=held.action)
                    return

    def heal(self, ctx: FaultContext) -> None:
        self._thaw(ctx)

    def _thaw(self, ctx: FaultContext) -> None:
        while self._frozen:
            worker = self._frozen.pop()
            ctx.env.runtime.resume(worker.handle)
            ctx.record("fault_heal", fault_id=self.fault_id)
