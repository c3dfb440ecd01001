"""One claimed job from chunking to completion.

``JobRunner.run`` is the whole path of a job through the worker; read it
top to bottom. Every Redis write goes through ``_write``, which retries a
lost connection while the lease may still be ours and turns a refusal by the
fencing check into ``Fenced`` (this worker no longer owns the job: stop, and
change nothing).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from system_under_test import media, metrics, recovery
from system_under_test.config import Settings
from system_under_test.constants import JobField, JobState
from system_under_test.errors import REDIS_ERRORS, Fenced, JobFailure
from system_under_test.failpoints import Failpoints
from system_under_test.store import ChunkResult, Claim, PlannedChunk, Store
from system_under_test.transcriber import Transcriber

log = logging.getLogger(__name__)

_REFUSALS = {"stale_epoch", "not_processing", "no_such_job", "incomplete", "deadline_passed"}
T = TypeVar("T")


def _primary(errors: ExceptionGroup[Exception]) -> Exception:
    """The one exception that decides the job's outcome when parallel chunks fail.

    Losing the job (``Fenced``) outranks a reason to fail it, which outranks
    anything unexpected: a worker that no longer owns a job must not fail it.
    """
    flat: list[Exception] = []
    pending: list[Exception] = [errors]
    while pending:
        error = pending.pop(0)
        if isinstance(error, ExceptionGroup):
            pending.extend(error.exceptions)
        else:
            flat.append(error)
    for kind in (Fenced, JobFailure):
        for error in flat:
            if isinstance(error, kind):
                return error
    return flat[0]


class JobRunner:
    def __init__(self, settings: Settings, store: Store, transcriber: Transcriber,
                 failpoints: Failpoints) -> None:
        self.settings = settings
        self.store = store
        self.transcriber = transcriber
        self.failpoints = failpoints
        self.worker_id = settings.worker_id
        self.phase: dict[str, str] = {}  # job id -> last point reached, for /status
        # resolved once: resolving walks the path with a system call per part, per chunk
        self.jobs_dir = settings.data_dir.resolve() / "jobs"

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def chunk_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "chunks"

    async def at(self, point: str, claim: Claim, chunk: int | None = None) -> None:
        """Mark a phase boundary: record it, then give the failpoint its chance."""
        self.phase[claim.job_id] = point if chunk is None else f"{point}#{chunk}"
        await self.failpoints.hit(point, job=claim.job_id, chunk=chunk)

    async def run(self, claim: Claim) -> None:
        """Take a claimed job to COMPLETED, or raise why not."""
        if claim.recovering:
            plan = await recovery.prepare(self, claim)
        else:
            await self.at("job.claimed", claim)
            plan = await self.cut_and_plan(claim)
        texts = await self.transcribe_remaining(claim, plan)
        await self.finish(claim, plan, texts)

    async def cut_and_plan(self, claim: Claim) -> list[PlannedChunk]:
        job = claim.job or await self._read(lambda: self.store.job(claim.job_id))
        source = Path(job[JobField.SOURCE])
        bounds = media.chunk_bounds(float(job[JobField.DURATION]),
                                    float(job[JobField.CHUNK_SECONDS]))
        await self.at("chunking.started", claim)
        chunk_dir = self.chunk_dir(claim.job_id)
        try:
            checksums = await media.cut(
                source, chunk_dir, [(i, start, length) for i, (start, length) in enumerate(bounds)])
        except FileNotFoundError as exc:
            raise JobFailure(f"source_missing: {exc}") from exc
        plan = [PlannedChunk(i, start, length, checksums[i])
                for i, (start, length) in enumerate(bounds)]
        await self.at("chunking.split", claim)
        await self._write(lambda: self.store.commit_plan(claim, self.worker_id, plan))
        await self.at("chunking.committed", claim)
        return plan

    async def transcribe_remaining(self, claim: Claim,
                                   plan: list[PlannedChunk]) -> dict[int, str]:
        """Transcribe and commit every chunk not yet committed.

        Returns the texts known to be committed: those committed before, and
        this run's own commits (a chunk found committed by someone else is
        left out, and ``finish`` reads it back).
        """
        # a fresh claim of a job with no chunk committed needs no read: the claim saw
        # chunks_done at 0, and from then on only this epoch can commit
        fresh = claim.job.get(JobField.CHUNKS_DONE) == "0"
        committed = {} if fresh else await self.committed_texts(claim.job_id)
        remaining = [chunk for chunk in plan if chunk.index not in committed]
        gate = asyncio.Semaphore(self.settings.chunk_concurrency)
        texts = dict(committed)

        async def one(chunk: PlannedChunk) -> None:
            async with gate:
                text = await self.transcribe_chunk(claim, chunk)
            if text is not None:
                texts[chunk.index] = text

        try:
            async with asyncio.TaskGroup() as group:
                for chunk in remaining:
                    group.create_task(one(chunk))
        except ExceptionGroup as errors:
            raise _primary(errors) from errors
        return texts

    async def committed_texts(self, job_id: str) -> dict[int, str]:
        """The texts of the job's committed chunks, by index."""
        committed = await self._read(lambda: self.store.committed_chunks(job_id))
        return {index: result.text for index, result in committed.items()}

    async def transcribe_chunk(self, claim: Claim, chunk: PlannedChunk) -> str | None:
        """Transcribe one chunk and commit its text; returns the text if this commit
        stored it, None if the chunk was already committed (the first result is kept)."""
        await self.at("chunk.before_request", claim, chunk.index)
        path = media.chunk_path(self.chunk_dir(claim.job_id), chunk.index)
        text = None
        if claim.epoch > 1:
            # an earlier holder (dead, or stopped and released) may have been answered by
            # the service and not committed: a service that ignores idempotency keys would
            # bill the chunk again, so ask it first
            text = await self.transcriber.completed_text(claim.job_id, chunk.index)
            if text is not None:
                metrics.DUPLICATES_PREVENTED.inc()
                log.info("chunk %d of job %s: the service already completed it; committing "
                         "its result without a new call", chunk.index, claim.job_id)
        if text is None:
            # read once, check those very bytes, send those very bytes: the file
            # may be damaged at any moment, including between a check and a send
            audio = recovery.read_intact(path, chunk.checksum)
            if audio is None:
                await recovery.recut(self, claim, [chunk])
                audio = recovery.read_intact(path, chunk.checksum)
                if audio is None:
                    raise JobFailure(f"chunk {chunk.index} is damaged again right after being "
                                     "cut from the original")
            text = await self.transcriber.transcribe(audio, path.name, claim.job_id, chunk.index)
        await self.at("chunk.transcribed.before_commit", claim, chunk.index)
        result = ChunkResult(chunk.index, text, chunk.checksum, claim.epoch, self.worker_id)
        reply = await self._write(lambda: self.store.commit_chunk(claim, self.worker_id, result))
        stored = reply != "duplicate"
        if stored:
            metrics.CHUNKS_COMMITTED.inc()
        else:
            log.info("chunk %d of job %s was already committed; kept the first result",
                     chunk.index, claim.job_id)
        await self.at("chunk.committed", claim, chunk.index)
        return text if stored else None

    async def finish(self, claim: Claim, plan: list[PlannedChunk], texts: dict[int, str]) -> None:
        """Assemble the transcript from the committed texts and complete the job.

        ``texts`` are the committed texts already known; the rest are read
        back from Redis, and a chunk still missing there fails the job.
        """
        await self.at("assembly.started", claim)
        if any(chunk.index not in texts for chunk in plan):
            texts = {**texts, **await self.committed_texts(claim.job_id)}
        missing = [chunk.index for chunk in plan if chunk.index not in texts]
        if missing:
            raise JobFailure(f"chunks {missing} are not committed; refusing to complete")
        pieces = (texts[chunk.index].strip() for chunk in plan)
        transcript = " ".join(piece for piece in pieces if piece)
        await self.at("job.before_complete", claim)
        await self.complete(claim, lambda: self.store.complete(claim, self.worker_id,
                                                               transcript))
        shutil.rmtree(self.chunk_dir(claim.job_id), ignore_errors=True)
        log.info("job %s completed (%d chunks)", claim.job_id, len(plan))
        await self.at("job.completed", claim)

    # -- Redis access that survives short outages ---------------------------
    # A lost connection is retried forever here: the lease keeper (worker.py)
    # cancels this job's task once the lease can no longer be ours, which is
    # what bounds the wait.

    async def complete(self, claim: Claim, op: Callable[[], Awaitable[str]]) -> None:
        """Run a completion script; a retried completion whose first attempt did land
        (the job is COMPLETED at this claim's epoch) is not a refusal."""
        try:
            await self._write(op)
        except Fenced:
            job = await self._read(lambda: self.store.job(claim.job_id))
            if not (job.get(JobField.STATE) == JobState.COMPLETED
                    and job.get(JobField.EPOCH) == str(claim.epoch)):
                raise

    async def _write(self, op: Callable[[], Awaitable[str]]) -> str:
        """Run an epoch-checked script; a refusal raises ``Fenced``."""
        reply = await self._retrying(op)
        if reply in _REFUSALS:
            metrics.WRITES_REJECTED.labels(reason=reply).inc()
            raise Fenced(reply)
        return reply

    async def _read(self, op: Callable[[], Awaitable[T]]) -> T:
        return await self._retrying(op)

    async def _retrying(self, op: Callable[[], Awaitable[T]]) -> T:
        delay = 0.05
        while True:
            try:
                return await op()
            except REDIS_ERRORS as exc:
                log.warning("redis unavailable (%s); retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
