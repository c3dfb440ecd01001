"""Kill at phase: SIGKILL a worker while it is paused at an exact failpoint.

The point is armed ``pause`` on its N-th hit in every live worker; the first
worker to stop there is SIGKILLed (process group, so ffmpeg goes too), the
others are disarmed, and by default a replacement incarnation is started.
Occurrences count per worker process.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.control_client import ControlError
from harness.faults.base import FaultContext


class KillAtPhaseSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["kill_at_phase"]
    point: str = Field(description="failpoint name from the target's phase catalog")
    occurrence: int = Field(1, ge=1, description="kill at the N-th hit of the point")
    restart: bool = Field(True, description="start a replacement worker right away")


def pause_actions(occurrence: int) -> str:
    return f"{occurrence - 1}*off->1*pause" if occurrence > 1 else "1*pause"


class KillAtPhase:
    def __init__(self, fault_id: str, spec: KillAtPhaseSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        workers = ctx.live_workers()
        for worker in workers:
            ctx.arm(worker, self.spec.point, pause_actions(self.spec.occurrence))
        deadline = time.monotonic() + ctx.phase_timeout
        settled = False
        while time.monotonic() < deadline and not settled:
            # once every job is terminal the point can no longer be reached: one
            # last look for a hit, then give up at once instead of at the timeout
            settled = ctx.settled()
            for worker in workers:
                hit = worker.control.wait_for_hit(self.spec.point, timeout=0.1)
                if hit is None:
                    continue
                ctx.record("failpoint_hit", worker=worker.worker_id, point=hit.point,
                           hit=hit.hit, job=hit.job, chunk=hit.chunk, pid=hit.pid,
                           action=hit.action)
                ctx.kill(worker)
                ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                           params=self.describe(), worker=worker.worker_id, job=hit.job,
                           chunk=hit.chunk)
                self._disarm(ctx)
                if self.spec.restart:
                    ctx.replace(worker)
                # a kill is instantaneous: its window closes at once (the
                # replacement, if any, is already recorded as a process start)
                ctx.record("fault_heal", fault_id=self.fault_id)
                return True
        self._disarm(ctx)
        return False

    def heal(self, ctx: FaultContext) -> None:
        self._disarm(ctx)

    def _disarm(self, ctx: FaultContext) -> None:
        for worker in ctx.live_workers():
            try:
                worker.control.disarm(self.spec.point)
            except ControlError:
                pass  # a stopped (zombie) worker cannot answer; nothing armed is left to harm
