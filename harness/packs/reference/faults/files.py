"""File faults: corrupt or delete a chunk file, delete the original media.

They act on the files the target says its worker keeps, usually right
after a kill, so the replacement finds the damage during recovery. A file
fault whose file does not exist has not fired.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from harness.faults.base import FaultContext
from harness.faults.registry import FaultSpecModel, fault_kind


class CorruptChunkSpec(FaultSpecModel):
    kind: Literal["corrupt_chunk"]
    chunk: int = Field(0, ge=0, description="chunk index")
    mode: Literal["corrupt", "delete"] = "corrupt"
    job: int = Field(0, ge=0, description="which submitted job (0 = the first)")
    at_crash: bool = Field(False, description="damage the job and chunk where the previous "
                                              "phase fault stopped a worker, when it named "
                                              "them, then start the replacement of a worker "
                                              "killed without one, so it finds the damage")


class DeleteSourceSpec(FaultSpecModel):
    kind: Literal["delete_source"]
    job: int = Field(0, ge=0)
    at_crash: bool = Field(False, description="the job where the previous phase fault "
                                              "stopped a worker, when it named one; then "
                                              "start the replacement of a worker killed "
                                              "without one")


def _aim(ctx: FaultContext, job: int, at_crash: bool) -> str:
    """The job a file fault damages: the ``job``-th submitted, or the crashed one."""
    if at_crash and ctx.last_hit is not None and ctx.last_hit.job in ctx.env.jobs:
        return ctx.last_hit.job
    return list(ctx.env.jobs)[job]


def _replace_crashed(ctx: FaultContext, at_crash: bool) -> None:
    """After damage at a crash: the killed workers' replacements, which will find it."""
    while at_crash and ctx.unreplaced:
        ctx.replace(ctx.unreplaced.pop(0))


@fault_kind(CorruptChunkSpec, colour="#9a6700")
class CorruptChunk:
    def __init__(self, fault_id: str, spec: CorruptChunkSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def fire(self, ctx: FaultContext) -> bool:
        job_id, chunk = _aim(ctx, self.spec.job, self.spec.at_crash), self.spec.chunk
        if self.spec.at_crash and ctx.last_hit is not None and ctx.last_hit.chunk is not None:
            chunk = ctx.last_hit.chunk
        path = ctx.chunk_file(job_id, chunk)
        if not path.is_file():
            ctx.missed = f"chunk file {path.name} of job {job_id} was not there to damage"
            return False
        if self.spec.mode == "delete":
            path.unlink()
        else:
            # keep the 44-byte WAV header (the file still parses as audio) and
            # replace every sample with a sawtooth, so its words change too
            data = bytearray(path.read_bytes())
            for i in range(44, len(data)):
                data[i] = (i * 37) & 0xFF
            path.write_bytes(bytes(data))
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), job=job_id, path=str(path))
        ctx.record("fault_heal", fault_id=self.fault_id)
        _replace_crashed(ctx, self.spec.at_crash)
        return True

    def heal(self, ctx: FaultContext) -> None:
        """A damaged file is the worker's to repair; nothing to undo here."""


@fault_kind(DeleteSourceSpec, colour="#9a6700")
class DeleteSource:
    def __init__(self, fault_id: str, spec: DeleteSourceSpec) -> None:
        self.fault_id = fault_id
        self.spec = spec

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}

    def fire(self, ctx: FaultContext) -> bool:
        job_id = _aim(ctx, self.spec.job, self.spec.at_crash)
        files = ctx.source_files(job_id)
        if not files:
            ctx.missed = f"job {job_id} had no source file left to delete"
            return False
        for path in files:
            path.unlink()
        ctx.record("fault_start", fault_id=self.fault_id, fault=self.spec.kind,
                   params=self.describe(), job=job_id, paths=[str(p) for p in files])
        ctx.record("fault_heal", fault_id=self.fault_id)
        _replace_crashed(ctx, self.spec.at_crash)
        return True

    def heal(self, ctx: FaultContext) -> None:
        """The original is gone for good: that is the fault."""
