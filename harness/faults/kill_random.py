"""Kill at a random time: SIGKILL a random live worker after a random delay.

Both choices come from the run's seeded ``Random``, so a replay with the same
seed makes the same choices (the moment within the job still depends on
timing; prefer ``kill_at_phase`` where exactness matters).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from harness.faults.base import FaultContext, reject_renamed
from harness.faults.registry import FaultSpecModel, fault_kind


class KillRandomSpec(FaultSpecModel):
    kind: Literal["kill_random"]
    min_delay_ms: int = Field(0, ge=0, description="earliest kill, after the previous step")
    max_delay_ms: int = Field(1000, ge=0, description="latest kill")
    restart: bool = True

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        return reject_renamed("kill_random", raw)

    @model_validator(mode="after")
    def _ordered(self) -> KillRandomSpec:
        if self.max_delay_ms < self.min_delay_ms:
            raise ValueError("max_delay_ms must be at least min_delay_ms")
        return self


@fault_kind(KillRandomSpec, colour="#cf222e")
class KillRandom:
    def __init__(self, fault_id: str, spec: KillRandomSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def fire(self, ctx: FaultContext) -> bool:
        delay = ctx.rng.uniform(self.spec.min_delay_ms, self.spec.max_delay_ms) / 1000
        if not ctx.wait_unless_settled(delay):
            return False
        workers = sorted(ctx.live_workers(), key=lambda w: w.worker_id)
        if not workers:
            return False
        victim = ctx.rng.choice(workers)
        ctx.kill(victim)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=victim.worker_id, delay_ms=round(delay * 1000))
        if self.spec.restart:
            ctx.replace(victim)
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def heal(self, ctx: FaultContext) -> None:
        """Nothing to undo: a killed process stays dead; the runner tops workers up."""
