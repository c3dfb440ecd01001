"""S3 error replies: S3 answers ``503 SlowDown`` or ``500 InternalError`` for a while.

Toxiproxy cannot write an HTTP answer, so this fault goes through the S3 gate
(``harness.services.s3_gate``), a real HTTP proxy between the workers' S3
proxies and the moto server: the next ``count`` requests of ``operations``
(default ``UploadPart``), or every one for ``duration_ms`` when ``count`` is
null, are answered by the gate with S3's own error body and never reach
moto: nothing is stored, as when S3 turns a request away.

With ``point`` the rule is set while a worker is paused there (its next S3
request is the first refused: ``upload.part.before_upload``), otherwise at
once. The fault fires when the first request is refused, and is healed when
``count`` were refused or ``duration_ms`` passed, whichever is first; its
heal records how many were refused. Each refused request is in the history
(``s3_call`` with ``refused: true``), beside the retries that followed it.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar, Literal, Self

from pydantic import Field, model_validator

from harness.faults.base import SETTLED_POLL_S, FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind
from harness.packs.reference.faults.s3_proxy import s3_gate

OPERATIONS = ("UploadPart", "CreateMultipartUpload", "CompleteMultipartUpload", "ListParts",
              "AbortMultipartUpload", "ListMultipartUploads", "PutObject", "HeadObject")


class S3ErrorsSpec(FaultSpecModel):
    workload_kind: ClassVar[str] = "upload"
    kind: Literal["s3_errors"]
    status: Literal[503, 500] = Field(503, description="503 SlowDown or 500 InternalError")
    count: int | None = Field(3, ge=1, description="requests to refuse; null = every one "
                                                   "for duration_ms")
    duration_ms: int = Field(5000, ge=1, le=600_000,
                             description="the longest the errors last")
    operations: list[Literal[OPERATIONS]] = Field(  # type: ignore[valid-type]
        ["UploadPart"], min_length=1, description="S3 operations to refuse")
    point: str | None = Field(None, description="start while a worker is paused here")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        if len(set(self.operations)) != len(self.operations):
            raise ValueError("an operation is named twice")
        return self


@fault_kind(S3ErrorsSpec, colour="#cf222e")
class S3Errors:
    def __init__(self, fault_id: str, spec: S3ErrorsSpec) -> None:
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
        gate = s3_gate(ctx)
        paused = None
        if self.spec.point is not None:
            found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
            if found is None:
                return False
            paused = found[0]
        gate.set_errors(self.spec.status, count=self.spec.count,
                        duration_s=self.spec.duration_ms / 1000,
                        operations=frozenset(self.spec.operations))
        self._active = True
        set_at = time.monotonic()
        if paused is not None:
            ctx.disarm(paused, self.spec.point or "")
        while gate.fired() == 0:
            if time.monotonic() - set_at >= self.spec.duration_ms / 1000 or ctx.settled():
                self._active = False
                gate.clear()
                ctx.missed = (f"no {'/'.join(self.spec.operations)} request came within "
                              f"{self.spec.duration_ms} ms")
                return False
            time.sleep(SETTLED_POLL_S)
        where = {} if paused is None else {"worker": paused.worker_id}
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), **where)
        end = set_at + self.spec.duration_ms / 1000
        while time.monotonic() < end and not ctx.settled():
            if self.spec.count is not None and gate.fired() >= self.spec.count:
                break
            time.sleep(SETTLED_POLL_S)
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext) -> None:
        if self._active and ctx.env.s3_gate is not None:
            refused = ctx.env.s3_gate.clear()
            self._active = False
            ctx.record("fault_heal", fault_id=self.fault_id, refused=refused)
