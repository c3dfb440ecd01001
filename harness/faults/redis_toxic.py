"""Redis toxics: latency, reset_peer or timeout on the proxied connection for a window."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel, fault_kind


class RedisToxicSpec(FaultSpecModel):
    kind: Literal["redis_toxic"]
    toxic: Literal["latency", "reset_peer", "timeout"]
    latency_ms: int = Field(100, ge=0, description="latency toxic: added delay")
    jitter_ms: int = Field(0, ge=0)
    timeout_ms: int = Field(0, ge=0, description="reset_peer/timeout toxics: toxiproxy's timeout")
    duration_ms: int = Field(1000, ge=1)
    delay_ms: int = Field(0, ge=0)


@fault_kind(RedisToxicSpec, colour="#0969da")
class RedisToxic:
    def __init__(self, fault_id: str, spec: RedisToxicSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._active = False

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def fire(self, ctx: FaultContext) -> bool:
        proxy = ctx.env.proxy
        assert proxy is not None
        if not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
            return False
        if self.spec.toxic == "latency":
            proxy.add_latency(self.spec.latency_ms, self.spec.jitter_ms)
        elif self.spec.toxic == "reset_peer":
            proxy.add_reset_peer(self.spec.timeout_ms)
        else:
            proxy.add_timeout(self.spec.timeout_ms)
        self._active = True
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe())
        ctx.wait_unless_settled(self.spec.duration_ms / 1000)  # nothing left to slow down
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._active and ctx.env.proxy is not None:
            ctx.env.proxy.remove_toxics()
            self._active = False
            ctx.record("fault_heal", fault_id=self.fault_id)
