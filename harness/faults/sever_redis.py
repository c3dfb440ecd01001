"""Sever Redis: disable Toxiproxy proxies for a window, so connections to Redis
are cut and new ones refused; then enable them again.

Every worker and the API reach Redis through a proxy of their own
(``harness.services.redis_proxies``). By default all of them are cut, and any
worker started during the cut starts cut off; ``workers: [w1]`` cuts only
those named (``api`` names the API): a partial partition, where the others
keep Redis and may take over the cut-off worker's jobs once its leases expire.

With ``point``, the cut starts while a worker is paused at that failpoint
(released as soon as the cut is in place), so the worker meets the outage
at an exact step; only the workers being cut are armed. Otherwise it starts
after ``delay_ms``. The history's ``fault_start`` names the slots cut (``cut``).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind
from harness.services.redis_proxies import worker_slots


class SeverRedisSpec(FaultSpecModel):
    kind: Literal["sever_redis"]
    duration_ms: int = Field(1000, ge=1)
    delay_ms: int = Field(0, ge=0)
    point: str | None = None
    occurrence: int = Field(1, ge=1)
    workers: list[str] | None = Field(
        None, min_length=1, description="whose Redis to cut: w1, w2, ..., api; default: all")

    @model_validator(mode="after")
    def _a_worker_to_stop(self) -> Self:
        if self.point is not None and self.workers is not None and not worker_slots(
                self.workers):
            raise ValueError("a cut at a point needs a worker among workers: the API has no "
                             "failpoints")
        return self


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
            slots = None if self.spec.workers is None else worker_slots(self.spec.workers)
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence),
                                     slots=slots)
            if found is None:
                return False
            paused = found[0]
        elif not ctx.wait_unless_settled(self.spec.delay_ms / 1000):
            return False
        cut = proxy.disable(self.spec.workers)
        self._cut = True
        where = {} if paused is None else {"worker": paused.worker_id}
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), cut=cut, **where)
        if paused is not None:
            paused.control.disarm(self.spec.point or "")  # the control channel bypasses Redis
        time.sleep(self.spec.duration_ms / 1000)
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._cut and ctx.env.proxy is not None:
            ctx.env.proxy.enable(self.spec.workers)
            self._cut = False
            ctx.record("fault_heal", fault_id=self.fault_id)
