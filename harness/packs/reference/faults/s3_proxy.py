"""What the reference pack's S3 faults share: the workers' S3 proxies, and which workers.

Every worker reaches S3 through a Toxiproxy proxy of its own slot (``s3-w1``,
...; ``harness.services.redis_proxies`` with the ``s3-`` prefix) in front of
the S3 gate (``harness.services.s3_gate``) in front of the moto server. The
proxies and the gate exist only in a run with upload jobs, which is why an
S3 fault's spec says ``workload_kind = "upload"`` (the scenario refuses it
in any other workload).
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, field_validator

from harness.errors import SetupError
from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel
from harness.services.redis_proxies import API_SLOT, RedisProxies
from harness.services.s3_gate import S3Gate

WORKERS_HELP = "whose S3 traffic: w1, w2, ...; default: every worker"


class S3FaultSpec(FaultSpecModel):
    """The base of the S3 faults' specs: an upload workload, ``workers`` by name."""

    workload_kind: ClassVar[str] = "upload"
    workers: list[str] | None = Field(None, min_length=1, description=WORKERS_HELP)

    @field_validator("workers")
    @classmethod
    def _workers_only(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and API_SLOT in value:
            raise ValueError("the API does not talk to S3: name workers (w1, w2, ...) only")
        return value


def s3_proxies(ctx: FaultContext) -> RedisProxies:
    """The run's S3 proxies; ``SetupError`` when the run has none."""
    if ctx.env.s3_proxy is None:
        raise SetupError("an S3 fault needs the workers' S3 proxies, which only a run with "
                         "upload jobs of the reference pack has (workload: {kind: upload})")
    return ctx.env.s3_proxy


def s3_gate(ctx: FaultContext) -> S3Gate:
    """The run's S3 gate; ``SetupError`` when the run has none."""
    if ctx.env.s3_gate is None:
        raise SetupError("s3_errors needs the S3 gate, which only a run with upload jobs of "
                         "the reference pack has (workload: {kind: upload})")
    return ctx.env.s3_gate
