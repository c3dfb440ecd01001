"""Resuming a job whose worker died: check what survived, redo only what is missing.

A recovering worker already holds the job at a new epoch (the ``RECOVER``
script took it over, counted the retry and published ``recovery_started``).
Here it reloads the chunk plan, keeps every committed chunk, checks the
uncommitted chunks' files against their recorded checksums, cuts missing or
corrupt ones again from the original, and publishes ``processing_resumed``.
If the original is gone and a chunk is needed, the job fails with a reason
(the failure publishes ``recovery_failed``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from system_under_test import media
from system_under_test.constants import JobField
from system_under_test.errors import JobFailure
from system_under_test.events import EventName
from system_under_test.store import Claim, PlannedChunk

if TYPE_CHECKING:
    from system_under_test.pipeline import JobRunner

log = logging.getLogger(__name__)


def intact(path: Path, checksum: str) -> bool:
    return read_intact(path, checksum) is not None


def read_intact(path: Path, checksum: str) -> bytes | None:
    """The file's bytes if they match ``checksum``; None if missing or damaged."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return data if media.digest(data) == checksum else None


async def prepare(runner: JobRunner, claim: Claim) -> list[PlannedChunk]:
    """Make the job ready to continue; returns its chunk plan."""
    await runner.at("recovery.started", claim)
    store = runner.store
    plan = await runner._read(lambda: store.plan(claim.job_id))
    if not plan:
        # died before the plan was committed: nothing to keep, start from the original
        log.info("job %s: no chunk plan survived; cutting from the original", claim.job_id)
        plan = await runner.cut_and_plan(claim)
        rechunked = [chunk.index for chunk in plan]
        committed_ids: list[int] = []
    else:
        committed = await runner._read(lambda: store.committed_chunks(claim.job_id))
        committed_ids = sorted(committed)
        chunk_dir = runner.chunk_dir(claim.job_id)
        damaged = [chunk for chunk in plan if chunk.index not in committed
                   and not intact(media.chunk_path(chunk_dir, chunk.index), chunk.checksum)]
        await runner.at("recovery.verified", claim)
        rechunked = [chunk.index for chunk in damaged]
        if damaged:
            try:
                await recut(runner, claim, damaged)
            except FileNotFoundError as exc:
                raise JobFailure(f"source_missing: chunks {rechunked} must be cut again "
                                 f"but {exc}") from exc
            await runner.at("recovery.rechunked", claim)
    remaining = [chunk.index for chunk in plan if chunk.index not in committed_ids]
    await runner._write(lambda: store.emit(claim, runner.worker_id, EventName.PROCESSING_RESUMED, {
        "committed": committed_ids, "remaining": remaining, "rechunked": rechunked}))
    log.info("job %s resumed at epoch %d: %d committed, %d remaining, %d re-cut",
             claim.job_id, claim.epoch, len(committed_ids), len(remaining), len(rechunked))
    await runner.at("recovery.resumed", claim)
    return plan


async def recut(runner: JobRunner, claim: Claim, chunks: list[PlannedChunk]) -> None:
    """Cut ``chunks`` again from the original and check they match the plan."""
    job = await runner._read(lambda: runner.store.job(claim.job_id))
    source = Path(job[JobField.SOURCE])
    chunk_dir = runner.chunk_dir(claim.job_id)
    await media.cut(source, chunk_dir, [(c.index, c.start, c.duration) for c in chunks])
    for chunk in chunks:
        if not intact(media.chunk_path(chunk_dir, chunk.index), chunk.checksum):
            raise JobFailure(f"chunk {chunk.index} cut again from {source} does not match its "
                             "recorded checksum (the original changed?)")
    log.info("job %s: re-cut chunks %s from the original", claim.job_id,
             [chunk.index for chunk in chunks])
