"""Sever Redis: disable the Toxiproxy proxy for a window, so every worker
connection to Redis is cut and new ones are refused; then enable it again.

With ``point``, the cut starts while a worker is paused at that failpoint
(released as soon as the cut is in place), so the worker meets the outage
at an exact step; otherwise it starts after ``delay_ms``.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind


class SeverRedisSpec(FaultSpecModel):
    kind: Literal["sever_redis"]
    duration_ms: int = Field(1000, ge=1)
    delay_ms: int = Field(0, ge=0)
    point: str | None = None
    occurrence: int = Field(1, ge=1)


@fault_kind(SeverRedisSpec, colour="#8250df")
class SeverRedis:
    def __init__(self, fault_id: str, spec: SeverRedisSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._cut = False

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        proxy = ctx.env.proxy
        assert proxy is not None
        paused = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            paused = found[0]
        elif not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
            return False
        proxy.disable()
        self._cut = True
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe())
        if paused is not None:
            paused.control.disarm(self.spec.point or "")  # the control channel bypasses Redis
        time.sleep(self.spec.duration_ms / 1000)
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._cut and ctx.env.proxy is not None:
            ctx.env.proxy.enable()
            self._cut = False
            ctx.record("fault_heal", fault_id=self.fault_id)
