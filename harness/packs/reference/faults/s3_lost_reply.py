"""S3 lost reply: S3 stores what a worker sent, and its answer never reaches the worker.

The ambiguous write of an object store: at ``point`` (by default
``upload.part.before_upload``, the step before a part is sent) the worker is
paused, then released with the S3 gate holding its next request once the
whole of it has arrived (botocore first waits for the gate's ``100
Continue``, which must get through). Then a ``limit_data`` toxic of 0 bytes
goes on the downstream side of the worker's own S3 proxy (``s3-<slot>``) and
the gate lets the request go on to moto, which stores the part and answers;
the toxic drops the first byte of the answer and closes the connection, so
the worker sees a connection closed for a request that was carried out. The fault waits
until Toxiproxy's byte counts show the drop, records it, and removes the toxic,
so the retry gets its answer. (``harness.faults.lost_reply`` does the same to
Redis; why this toxic and not another is written there.)

With ``operation`` the request held is the worker's next one of that S3
operation (``CreateMultipartUpload`` after ``job.claimed``, whose retry makes
a second upload), and requests of other operations before it pass untouched.

The history shows the applied request and its retry: two ``s3_call`` entries
for the same part, both answered 200 by S3.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.lost_reply import POLL_S, _dropped
from harness.faults.registry import fault_kind
from harness.packs.reference.faults.s3_errors import OPERATIONS
from harness.packs.reference.faults.s3_proxy import S3FaultSpec, s3_gate, s3_proxies
from harness.services.redis_proxies import slot_of
from harness.services.toxiproxy import ToxiproxyError

TOXIC = "s3_lost_reply"  # the toxic's name on the worker's S3 proxy


class S3LostReplySpec(S3FaultSpec):
    kind: Literal["s3_lost_reply"]
    point: str = Field("upload.part.before_upload",
                       description="failpoint; the worker's next S3 reply after it is lost")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")
    operation: Literal[OPERATIONS] | None = Field(  # type: ignore[valid-type]
        None, description="lose the reply of the worker's next request of this S3 operation "
                          "(e.g. CreateMultipartUpload); default: its next request")
    within_ms: int = Field(10_000, ge=1, le=600_000,
                           description="how long to wait for the worker's next S3 reply")


@fault_kind(S3LostReplySpec, colour="#a0111f")
class S3LostReply:
    def __init__(self, fault_id: str, spec: S3LostReplySpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._slot: str | None = None

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        proxies = s3_proxies(ctx)
        found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence),
                                 slots=self.spec.workers)
        if found is None:
            return False
        worker, hit = found
        gate = s3_gate(ctx)
        slot = self._slot = slot_of(worker.worker_id)
        proxy = proxies.slot(slot)
        # the worker's next request (of the operation) waits in the gate, all of it received
        gate.hold(None if self.spec.operation is None else frozenset({self.spec.operation}))
        ctx.disarm(worker, self.spec.point)  # the control channel bypasses S3
        if not gate.wait_held(self.spec.within_ms / 1000):
            gate.release()
            ctx.missed = (f"worker {worker.worker_id} sent no {self.spec.operation or 'request'}"
                          f" to S3 within {self.spec.within_ms} ms of leaving {self.spec.point}")
            return False
        before = _dropped(proxy.bytes_counted())
        proxy.add_limit_data(0, stream="downstream", name=TOXIC)
        released = time.monotonic()
        gate.release()  # on to S3, which stores it and answers into the toxic
        dropped = 0
        while time.monotonic() - released < self.spec.within_ms / 1000:
            dropped = _dropped(proxy.bytes_counted()) - before
            if dropped > 0:
                break
            time.sleep(POLL_S)
        after_ms = round((time.monotonic() - released) * 1000, 1)
        self._remove(ctx)
        if dropped <= 0:
            ctx.missed = (f"worker {worker.worker_id} got no reply from S3 within "
                          f"{self.spec.within_ms} ms of leaving {self.spec.point}")
            return False
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=worker.worker_id, job=hit.job,
                   part=hit.chunk, cut=[slot], dropped_bytes=dropped, lost_after_ms=after_ms)
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def heal(self, ctx: FaultContext) -> None:
        self._remove(ctx)  # fire heals before it returns; this is for an interrupted fire

    def _remove(self, ctx: FaultContext) -> None:
        if ctx.env.s3_gate is not None:
            ctx.env.s3_gate.release()
        if self._slot is None or ctx.env.s3_proxy is None:
            return
        slot, self._slot = self._slot, None
        try:
            ctx.env.s3_proxy.slot(slot).remove_toxic(TOXIC)
        except ToxiproxyError as exc:
            if exc.status != 404:  # already removed (a session's heal of every proxy)
                raise
