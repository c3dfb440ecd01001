"""S3 toxics: latency, reset_peer or timeout on the workers' S3 connections for a window.

On every worker's S3 proxy by default (and those of workers started meanwhile),
on those of ``workers`` otherwise. With ``point`` the toxic goes on while a
worker is paused there (and it is released once it is on), so a chosen part
meets it; otherwise after ``delay_ms``. The history's ``fault_start`` names the
slots it is on (``cut``).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import fault_kind
from harness.packs.reference.faults.s3_proxy import S3FaultSpec, s3_proxies


class S3ToxicSpec(S3FaultSpec):
    kind: Literal["s3_toxic"]
    toxic: Literal["latency", "reset_peer", "timeout"] = "latency"
    latency_ms: int = Field(500, ge=0, description="latency toxic: added delay each way")
    jitter_ms: int = Field(0, ge=0)
    timeout_ms: int = Field(0, ge=0, description="reset_peer/timeout toxics: toxiproxy's timeout")
    duration_ms: int = Field(2000, ge=1, description="how long the toxic stays")
    delay_ms: int = Field(0, ge=0, description="without point: the wait before it")
    point: str | None = Field(None, description="put it on while a worker is paused here")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")


@fault_kind(S3ToxicSpec, colour="#218bff")
class S3Toxic:
    def __init__(self, fault_id: str, spec: S3ToxicSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._active = False

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        if self.spec.point is None:
            return {}
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        proxies = s3_proxies(ctx)
        paused = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence),
                                     slots=self.spec.workers)
            if found is None:
                return False
            paused = found[0]
        elif not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
            return False
        names = self.spec.workers
        if self.spec.toxic == "latency":
            cut = proxies.add_latency(self.spec.latency_ms, self.spec.jitter_ms, names=names)
        elif self.spec.toxic == "reset_peer":
            cut = proxies.add_reset_peer(self.spec.timeout_ms, names=names)
        else:
            cut = proxies.add_timeout(self.spec.timeout_ms, names=names)
        self._active = True
        where = {} if paused is None else {"worker": paused.worker_id}
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), cut=cut, **where)
        if paused is not None:
            ctx.disarm(paused, self.spec.point or "")
        ctx.wait_unless_settled(self.spec.duration_ms / 1000)  # nothing left to slow down
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._active and ctx.env.s3_proxy is not None:
            ctx.env.s3_proxy.remove_toxics(self.spec.workers)
            self._active = False
            ctx.record("fault_heal", fault_id=self.fault_id)
