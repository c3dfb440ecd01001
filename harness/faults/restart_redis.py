"""Kill -9 the data Redis and start it again on the same port and folder.

A scenario with this fault runs Redis with AOF ``everysec`` (the loader
turns it on), as a real deployment that survives restarts would: up to a
second of acknowledged writes may be lost, which is exactly what the
worker's recovery must tolerate.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.faults.base import FaultContext, reject_renamed
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind


class RestartRedisSpec(FaultSpecModel):
    kind: Literal["restart_redis"]
    duration_ms: int = Field(500, ge=0, description="how long Redis stays down")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, raw: Any) -> Any:
        return reject_renamed("restart_redis", raw)
    delay_ms: int = Field(0, ge=0, description="wait before the kill (after the hit, if point)")
    point: str | None = None
    occurrence: int = Field(1, ge=1)


@fault_kind(RestartRedisSpec, colour="#953800")
class RestartRedis:
    def __init__(self, fault_id: str, spec: RestartRedisSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._down = False

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        paused = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            paused = found[0]
        # with a point, the delay runs while the worker is paused there (give AOF
        # everysec its second to make the last commit durable, or not)
        time.sleep(self.spec.delay_ms / 1000)
        pid = ctx.env.redis.pid
        ctx.env.redis.kill9()
        self._down = True
        ctx.record("process_signal", name="redis", pid=pid, signal="SIGKILL")
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe())
        if paused is not None:
            paused.control.disarm(self.spec.point or "")
        time.sleep(self.spec.duration_ms / 1000)
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._down:
            ctx.env.redis.restart()
            self._down = False
            ctx.record("process_start", name="redis", role="service", pid=ctx.env.redis.pid)
            ctx.record("fault_heal", fault_id=self.fault_id)
