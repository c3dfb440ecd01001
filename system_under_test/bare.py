"""The worker with its recovery machinery removed: the baseline of ``crashlab bench``.

``CRASHLAB_RECOVERY_MACHINERY=false`` runs this instead of ``worker.Worker``.
It does a transcribe job's useful work as the real worker does (the same
ffmpeg cut, the same transcription calls with the same idempotency keys, the
same transcript) and keeps none of what recovery needs: no lease and no
heartbeat, no fencing epoch, no chunk plan or per-chunk checkpoint, no
events, no timeout monitor. It pops a queued id, does the work, and writes
the transcript and the COMPLETED state in one transaction. A crash loses the
job. It exists so that the cost of leases, checkpoints and events can be
measured against it; it must never process real work. Upload jobs are not
handled (they are failed at once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
from pathlib import Path
from typing import Any, cast

from redis.asyncio import Redis

from system_under_test import media
from system_under_test.config import Settings
from system_under_test.constants import (
    QUEUE,
    JobField,
    JobKind,
    JobState,
    job_key,
    state_key,
    transcript_key,
)
from system_under_test.control import ControlServer
from system_under_test.failpoints import Failpoints
from system_under_test.transcriber import Transcriber

log = logging.getLogger(__name__)


class BareWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.failpoints = Failpoints(self.worker_id, "")  # the control channel wants them
        self.stopping = asyncio.Event()
        self.redis = Redis.from_url(settings.redis_url, decode_responses=True,
                                    socket_connect_timeout=1.0)
        self.transcriber = Transcriber(settings)

    def status(self) -> dict[str, Any]:
        return {"worker_id": self.worker_id, "stopping": self.stopping.is_set(),
                "recovery_machinery": False}

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        control = None
        if self.settings.control_address is not None:
            control = ControlServer(self.failpoints, self.settings.control_address, self.status)
            await control.start()
        log.warning("worker %s runs WITHOUT recovery machinery (benchmark baseline): a crash "
                    "loses its jobs", self.worker_id)
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.settings.concurrency):
                    group.create_task(self._loop())
        finally:
            if control is not None:
                await control.close()
            await self.transcriber.close()
            await self.redis.aclose()

    async def _loop(self) -> None:
        idle = self.settings.poll_interval_ms / 1000
        while not self.stopping.is_set():
            job_id = await self.redis.rpop(QUEUE)
            if job_id is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), idle)
                continue
            await self._process(str(job_id))

    async def _process(self, job_id: str) -> None:
        job = cast(dict[str, str], await self.redis.hgetall(job_key(job_id)))
        if job.get(JobField.STATE) != JobState.QUEUED:
            return  # cancelled while queued
        chunk_dir = self.settings.data_dir.resolve() / "jobs" / job_id / "chunks"
        try:
            if job.get(JobField.KIND, JobKind.TRANSCRIBE) != JobKind.TRANSCRIBE:
                raise ValueError("the bare worker only transcribes")
            transcript, chunks = await self._transcribe(job, chunk_dir)
        except Exception as exc:  # noqa: BLE001 - any failure of the job is its outcome
            log.error("job %s failed: %s", job_id, exc)
            await self._finish(job_id, JobState.FAILED, {JobField.ERROR: str(exc)})
            return
        await self._finish(job_id, JobState.COMPLETED, {
            JobField.CHUNK_COUNT: str(chunks), JobField.CHUNKS_DONE: str(chunks),
            JobField.PROGRESS: "1"}, transcript)
        shutil.rmtree(chunk_dir, ignore_errors=True)
        log.info("job %s completed (%d chunks)", job_id, chunks)

    async def _transcribe(self, job: dict[str, str], chunk_dir: Path) -> tuple[str, int]:
        job_id = job[JobField.ID]
        bounds = media.chunk_bounds(float(job[JobField.DURATION]),
                                    float(job[JobField.CHUNK_SECONDS]))
        await media.cut(Path(job[JobField.SOURCE]), chunk_dir,
                        [(i, start, length) for i, (start, length) in enumerate(bounds)])
        gate = asyncio.Semaphore(self.settings.chunk_concurrency)
        texts: dict[int, str] = {}

        async def one(index: int) -> None:
            async with gate:
                path = media.chunk_path(chunk_dir, index)
                texts[index] = await self.transcriber.transcribe(path.read_bytes(), path.name,
                                                                 job_id, index)

        async with asyncio.TaskGroup() as group:
            for index in range(len(bounds)):
                group.create_task(one(index))
        pieces = (texts[index].strip() for index in range(len(bounds)))
        return " ".join(piece for piece in pieces if piece), len(bounds)

    async def _finish(self, job_id: str, state: JobState, fields: dict[str, str],
                      transcript: str | None = None) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            if transcript is not None:
                pipe.set(transcript_key(job_id), transcript)
            values: dict[Any, Any] = {JobField.STATE: state, **fields}
            pipe.hset(job_key(job_id), mapping=values)
            pipe.smove(state_key(JobState.QUEUED), state_key(state), job_id)
            await pipe.execute()
