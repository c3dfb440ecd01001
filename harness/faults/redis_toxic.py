"""Redis toxics: latency, reset_peer or timeout on the proxied connections for a window.

On every worker's and the API's proxy (and those of workers started meanwhile) by
default; on those named by ``workers`` (w1, w2, ..., api) otherwise. The history's
``fault_start`` names the slots it was put on (``cut``).
"""

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
    workers: list[str] | None = Field(
        None, min_length=1, description="whose Redis: w1, w2, ..., api; default: all")


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
        names = self.spec.workers
        if self.spec.toxic == "latency":
            cut = proxy.add_latency(self.spec.latency_ms, self.spec.jitter_ms, names=names)
        elif self.spec.toxic == "reset_peer":
            cut = proxy.add_reset_peer(self.spec.timeout_ms, names=names)
        else:
            cut = proxy.add_timeout(self.spec.timeout_ms, names=names)
        self._active = True
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), cut=cut)
        ctx.wait_unless_settled(self.spec.duration_ms / 1000)  # nothing left to slow down
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._active and ctx.env.proxy is not None:
            ctx.env.proxy.remove_toxics(self.spec.workers)
            self._active = False
            ctx.record("fault_heal", fault_id=self.fault_id)
