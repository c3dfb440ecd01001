"""Transcription service faults: HTTP errors (429/5xx), latency, or hung calls.

The fault is set on the service and counts as fired once the service has
applied it to at least one call (its rule says so while it is active; a
rule whose ``count`` is spent is gone, and the call log says so then); it
is cleared after ``duration_ms`` (or when the run heals), which also
releases hung calls.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel, fault_kind


class ServiceErrorsSpec(FaultSpecModel):
    kind: Literal["service_errors"]
    status: Literal[429, 500, 502, 503] | None = None
    count: int | None = Field(3, ge=1, description="calls to hit; null = every call in the window")
    latency_ms: int = Field(0, ge=0)
    hang: bool = False
    duration_ms: int = Field(2000, ge=0, description="window before the fault is cleared")


@fault_kind(ServiceErrorsSpec, colour="#bc4c00")
class ServiceErrors:
    def __init__(self, fault_id: str, spec: ServiceErrorsSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self._active = False
        self._logged = 0  # calls in the service's log when the fault was set

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def prearm(self, ctx: FaultContext) -> None:
        """Arm the service before the calls can start (the runner calls this when this
        fault is next, so work that starts in milliseconds cannot slip past it)."""
        service = ctx.env.transcription
        self._logged = len(service.calls())
        service.set_fault(status=self.spec.status, count=self.spec.count,
                          latency_ms=self.spec.latency_ms, hang=self.spec.hang)
        self._active = True

    def fire(self, ctx: FaultContext) -> bool:
        service = ctx.env.transcription
        if not self._active:
            self.prearm(ctx)
        deadline = time.monotonic() + ctx.phase_timeout
        while not (any(f.get("fired", 0) for f in service.faults())
                   or any(c.get("outcome") == "fault" for c in service.calls()[self._logged:])):
            if time.monotonic() > deadline or ctx.settled():
                self.heal(ctx, fired=False)
                return False
            time.sleep(0.02)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe())
        ctx.wait_unless_settled(self.spec.duration_ms / 1000)  # no job left to answer
        self.heal(ctx)
        return True

    def heal(self, ctx: FaultContext, fired: bool = True) -> None:
        if self._active:
            ctx.env.transcription.clear_faults()
            self._active = False
            if fired:
                ctx.record("fault_heal", fault_id=self.fault_id)
