"""Sever S3: the workers' S3 proxies disabled for a window, then enabled again.

Connections to S3 are cut and new ones refused, as when the network to the
object store goes away; the S3 server keeps everything it stored. Every
worker's S3 by default (and that of any worker started during the cut),
``workers: [w1]`` for only those. With ``point`` the cut starts while a
worker is paused at that failpoint (``upload.part.before_upload``: its next
step is sending a part into the cut), and it is released as soon as the cut
is in place; otherwise it starts after ``delay_ms``. The history's
``fault_start`` names the slots cut (``cut``).
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import fault_kind
from harness.packs.reference.faults.s3_proxy import S3FaultSpec, s3_proxies


class SeverS3Spec(S3FaultSpec):
    kind: Literal["sever_s3"]
    duration_ms: int = Field(1000, ge=1, description="how long S3 stays cut")
    delay_ms: int = Field(0, ge=0, description="without point: the wait before the cut")
    point: str | None = Field(None, description="cut while a worker is paused here")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")


@fault_kind(SeverS3Spec, colour="#6639ba")
class SeverS3:
    def __init__(self, fault_id: str, spec: SeverS3Spec) -> None:
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
        cut = proxies.disable(self.spec.workers)
        self._cut = True
        where: dict[str, Any] = {}
        if paused is not None and ctx.last_hit is not None:
            where = {"worker": paused.worker_id, "job": ctx.last_hit.job,
                     "part": ctx.last_hit.chunk}
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), cut=cut, **where)
        if paused is not None:
            ctx.disarm(paused, self.spec.point or "")  # the control channel bypasses S3
        time.sleep(self.spec.duration_ms / 1000)
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._cut and ctx.env.s3_proxy is not None:
            ctx.env.s3_proxy.enable(self.spec.workers)
            self._cut = False
            ctx.record("fault_heal", fault_id=self.fault_id)
