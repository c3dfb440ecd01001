"""The nemesis: every fault kind, its scenario-file spec, and how to build it.

One kind per module; each module holds the kind's spec (validated when the
scenario file is loaded) and its ``Fault`` implementation (``base``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from harness.faults.base import Fault, FaultContext
from harness.faults.files import CorruptChunk, CorruptChunkSpec, DeleteSource, DeleteSourceSpec
from harness.faults.freeze import Freeze, FreezeSpec
from harness.faults.kill_at_phase import KillAtPhase, KillAtPhaseSpec
from harness.faults.kill_random import KillRandom, KillRandomSpec
from harness.faults.pause_past_lease import PausePastLease, PausePastLeaseSpec
from harness.faults.redis_toxic import RedisToxic, RedisToxicSpec
from harness.faults.restart_redis import RestartRedis, RestartRedisSpec
from harness.faults.rolling_restart import RollingRestart, RollingRestartSpec
from harness.faults.service_errors import ServiceErrors, ServiceErrorsSpec
from harness.faults.sever_redis import SeverRedis, SeverRedisSpec
from harness.faults.stop import Stop, StopSpec

FaultSpec = Annotated[
    KillAtPhaseSpec | KillRandomSpec | PausePastLeaseSpec | SeverRedisSpec | RedisToxicSpec
    | RestartRedisSpec | CorruptChunkSpec | DeleteSourceSpec | ServiceErrorsSpec | FreezeSpec
    | StopSpec | RollingRestartSpec,
    Field(discriminator="kind"),
]

FAULT_KINDS = ("kill_at_phase", "kill_random", "pause_past_lease", "sever_redis",
               "redis_toxic", "restart_redis", "corrupt_chunk", "delete_source",
               "service_errors", "freeze", "stop", "rolling_restart")


def build_fault(fault_id: str, spec: FaultSpec) -> Fault:
    match spec:
        case KillAtPhaseSpec():
            return KillAtPhase(fault_id, spec)
        case KillRandomSpec():
            return KillRandom(fault_id, spec)
        case PausePastLeaseSpec():
            return PausePastLease(fault_id, spec)
        case SeverRedisSpec():
            return SeverRedis(fault_id, spec)
        case RedisToxicSpec():
            return RedisToxic(fault_id, spec)
        case RestartRedisSpec():
            return RestartRedis(fault_id, spec)
        case CorruptChunkSpec():
            return CorruptChunk(fault_id, spec)
        case DeleteSourceSpec():
            return DeleteSource(fault_id, spec)
        case ServiceErrorsSpec():
            return ServiceErrors(fault_id, spec)
        case FreezeSpec():
            return Freeze(fault_id, spec)
        case StopSpec():
            return Stop(fault_id, spec)
        case RollingRestartSpec():
            return RollingRestart(fault_id, spec)
    raise AssertionError(f"unhandled fault spec {spec!r}")


__all__ = ["FAULT_KINDS", "Fault", "FaultContext", "FaultSpec", "build_fault"]
