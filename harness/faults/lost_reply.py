"""Lost reply: the worker's next Redis command is applied, and its reply never arrives.

The ambiguous write (Jepsen's *indeterminate* operation): the client cannot tell
a command that failed from one whose answer was lost, so it retries, and a retry
that is not idempotent applies the write twice (counts twice, emits twice).

How, through the real Toxiproxy: the point is armed ``pause`` (its N-th hit) in
every live worker (of ``workers``, when given). The first worker to stop there
gets a ``limit_data`` toxic of 0 bytes on the *downstream* stream of its own
proxy (``harness.services.redis_proxies``), then is released. Its next command
goes upstream untouched, Redis applies it and answers; the toxic drops the first
byte of that answer and closes the connection at once, so the worker sees the
connection closed by the server (not a timeout, and so no waiting on its socket
timeout) for a command that was applied. The fault waits until Toxiproxy's
byte counts show the drop (received minus sent downstream grew, counted as the
connection closes), records it, and removes the toxic, so the retry, which
goes out on a fresh connection after the worker's backoff, gets its answer.

Why this toxic and not another: ``timeout`` (a black hole) drops every reply
for as long as it stays and closes nothing until it is removed, so the worker
waits for its socket timeout and the window is the fault's guess, not the
command's. ``reset_peer`` resets connections as soon as data arrives, upstream
included, so the command may never reach Redis. Disabling the proxy after the
request passed cannot be timed from outside: the reply is back within a
fraction of a millisecond. ``limit_data`` 0 downstream acts on the reply
itself: the request always passes, the reply is always dropped, and the
connection ends at that moment.

Only the one worker's connections are touched, and only its job's command may
be the one: while the toxic is there, any other reply to that worker would be
dropped the same way, and a command on a connection opened meanwhile fails in
its handshake before it is sent. So the worker's background Redis callers are
held first: a target may name, as ``background_points``, failpoints its worker
passes before each Redis call that is not the job's own (the reference
worker's lease keeper stops at ``lease.renew``); each is armed ``pause`` and
waited for before the toxic goes on, and released once it is off (or after
half a lease, if the job is slow to reach Redis, so no lease lapses for it).
The fault heals as soon as the drop is seen, usually within milliseconds of
the release.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field, field_validator

from harness.environment import Worker
from harness.faults.base import FaultContext
from harness.faults.kill_at_phase import pause_actions
from harness.faults.registry import FaultSpecModel, fault_kind
from harness.services.redis_proxies import API_SLOT, slot_of
from harness.services.toxiproxy import ToxiproxyError

TOXIC = "lost_reply"  # the toxic's name on the worker's proxy
POLL_S = 0.002  # how often Toxiproxy's byte counts are read while waiting for the drop
HOLD_WAIT_S = 5.0  # how long a background caller may take to reach its point


class LostReplySpec(FaultSpecModel):
    kind: Literal["lost_reply"]
    point: str = Field(description="failpoint; the worker's next Redis reply after it is lost")
    occurrence: int = Field(1, ge=1, description="at the N-th hit of the point")
    workers: list[str] | None = Field(
        None, min_length=1, description="workers (w1, w2, ...) that may be the one; "
                                        "default: any")
    within_ms: int = Field(5000, ge=1, le=600_000,
                           description="how long to wait for the worker's next reply")

    @field_validator("workers")
    @classmethod
    def _workers_only(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and API_SLOT in value:
            raise ValueError("the API has no failpoints: name workers (w1, w2, ...) only")
        return value


@fault_kind(LostReplySpec, colour="#bf3989")
class LostReply:
    def __init__(self, fault_id: str, spec: LostReplySpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._slot: str | None = None  # the proxy carrying the toxic

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        assert ctx.env.proxy is not None
        found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence),
                                 slots=self.spec.workers)
        if found is None:
            return False
        worker, hit = found
        held = self._hold_background(ctx, worker)
        slot = self._slot = slot_of(worker.worker_id)
        proxy = ctx.env.proxy.slot(slot)
        before = _dropped(proxy.bytes_counted())
        proxy.add_limit_data(0, stream="downstream", name=TOXIC)
        released = time.monotonic()
        ctx.disarm(worker, self.spec.point)  # the control channel bypasses Redis
        dropped = 0
        holding = list(held)
        while (waited := time.monotonic() - released) < self.spec.within_ms / 1000:
            dropped = _dropped(proxy.bytes_counted()) - before
            if dropped > 0:
                break
            if holding and waited >= ctx.lease_ttl_s / 2:
                # the job is slow to reach Redis (a service call, a cut): let the lease
                # keeper go before its lease could lapse; its reply may be the one lost
                for point in holding:
                    ctx.disarm(worker, point)
                holding = []
            time.sleep(POLL_S)
        after_ms = round((time.monotonic() - released) * 1000, 1)
        self._remove(ctx)
        for point in holding:
            ctx.disarm(worker, point)
        if dropped <= 0:
            ctx.missed = (f"worker {worker.worker_id} got no reply from Redis within "
                          f"{self.spec.within_ms} ms of leaving {self.spec.point}")
            return False
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=worker.worker_id, job=hit.job,
                   chunk=hit.chunk, cut=[slot], dropped_bytes=dropped,
                   lost_after_ms=after_ms, held=held)
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def _hold_background(self, ctx: FaultContext, worker: Worker) -> list[str]:
        """Pause the worker's background Redis callers at their points; the points held."""
        points = [p for p in getattr(ctx.env.target, "background_points", ())
                  if p in ctx.env.target.phases() and p != self.spec.point]
        held = []
        for point in points:
            worker.control.arm(point, "pause")
            if worker.control.wait_for_hit(point, timeout=HOLD_WAIT_S) is not None:
                held.append(point)
            else:  # not reached (its job ended?): nothing of it to hold
                ctx.disarm(worker, point)
        return held

    def heal(self, ctx: FaultContext) -> None:
        self._remove(ctx)  # fire heals before it returns; this is for an interrupted fire

    def _remove(self, ctx: FaultContext) -> None:
        if self._slot is None or ctx.env.proxy is None:
            return
        slot, self._slot = self._slot, None
        try:
            ctx.env.proxy.slot(slot).remove_toxic(TOXIC)
        except ToxiproxyError as exc:
            if exc.status != 404:  # already removed (a session's heal of every proxy)
                raise


def _dropped(counts: dict[str, tuple[int, int]]) -> int:
    """Bytes Redis sent back that never reached the worker (received minus sent)."""
    received, sent = counts.get("downstream", (0, 0))
    return received - sent
