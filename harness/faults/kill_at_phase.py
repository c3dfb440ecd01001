"""Kill at phase: SIGKILL a worker while it is paused at an exact failpoint.

The point is armed ``pause`` on its N-th hit in every live worker; the first
worker to stop there is SIGKILLed (process group, so ffmpeg goes too), the
others are disarmed, and by default a replacement incarnation is started.
Occurrences count per worker process.

With ``process: hit`` only the process that reached the point is killed
(by its pid, from the hit): for a worker that runs each job in a forked
child, such as RQ's work horse, that is the child alone, and the worker
itself lives on. On the process runtime only (a container's pids are not
the host's).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel, fault_kind


class KillAtPhaseSpec(FaultSpecModel):
    kind: Literal["kill_at_phase"]
    point: str = Field(description="failpoint name from the target's phase catalog")
    occurrence: int = Field(1, ge=1, description="kill at the N-th hit of the point")
    restart: bool = Field(True, description="start a replacement worker right away")
    process: Literal["worker", "hit"] = Field(
        "worker", description="kill the worker, or only the process that hit the point")


def pause_at_hits(hits: Iterable[int]) -> str:
    """Failpoint actions pausing exactly at these hit numbers (``2*off->1*pause``)."""
    terms: list[str] = []
    last = 0
    for hit in sorted(set(hits)):
        if hit - last > 1:
            terms.append(f"{hit - last - 1}*off")
        terms.append("1*pause")
        last = hit
    return "->".join(terms)


def pause_actions(occurrence: int) -> str:
    """Failpoint actions pausing at the ``occurrence``-th hit only."""
    return pause_at_hits([occurrence])


@fault_kind(KillAtPhaseSpec, colour="#cf222e")
class KillAtPhase:
    def __init__(self, fault_id: str, spec: KillAtPhaseSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {self.spec.point: pause_actions(self.spec.occurrence)}

    def fire(self, ctx: FaultContext) -> bool:
        found = ctx.wait_any_hit(self.spec.point, pause_actions(self.spec.occurrence))
        if found is None:
            return False
        worker, hit = found
        if self.spec.process == "hit" and str(hit.pid) != worker.handle.ident:
            ctx.kill_pid(worker, hit.pid)
            ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                       params=self.describe(), worker=worker.worker_id, job=hit.job,
                       chunk=hit.chunk, pid=hit.pid)
            ctx.disarm(worker, self.spec.point)
            ctx.record("fault_heal", fault_id=self.fault_id)
            return True
        ctx.kill(worker)
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), worker=worker.worker_id, job=hit.job,
                   chunk=hit.chunk)
        if self.spec.restart:
            ctx.replace(worker)
        else:
            ctx.unreplaced.append(worker)  # a later ``at_crash`` file fault may restart it
        # a kill is instantaneous: its window closes at once (the replacement,
        # if any, is already recorded as a process start)
        ctx.record("fault_heal", fault_id=self.fault_id)
        return True

    def heal(self, ctx: FaultContext) -> None:
        for worker in ctx.live_workers():
            ctx.disarm(worker, self.spec.point)
