"""The HTTP API: submit audio, follow a job, read its transcript and events.

    POST /jobs                      multipart ``file`` (+ optional ``max_retries``,
                                    ``timeout_s``) -> 201
    GET  /jobs/{id}                 state, progress, retries, error
    GET  /jobs/{id}/transcript      200 when COMPLETED, 409 before
    GET  /jobs/{id}/events          the job's events (schema: ``events``)
    POST /jobs/{id}/cancel          QUEUED or PROCESSING -> CANCELLED, 409 otherwise
    GET  /health                    200 when Redis answers, 503 when not
    POST /uploads, POST /jobs/{id}/finish   the upload job kind (``upload_api``)

The ``lifespan`` owns the Redis pool. Uploads are written to the data dir
first and renamed into place, then queued in one atomic step.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from system_under_test import media
from system_under_test.config import Settings
from system_under_test.constants import JobField, JobKind, JobState
from system_under_test.errors import REDIS_ERRORS
from system_under_test.store import Store
from system_under_test.upload_api import upload_routes
from system_under_test.upload_store import UploadStore

_READ_BLOCK = 1024 * 1024


class JobStatus(BaseModel):
    job_id: str
    kind: str
    state: JobState
    progress: float
    chunks_done: int
    chunk_count: int | None
    retry_count: int
    max_retries: int
    epoch: int
    error: str | None
    deadline_ms: int | None
    bytes_sent: int | None = None  # upload jobs: bytes in checkpointed parts
    parts_done: int | None = None
    finished_size: int | None = None  # set once the source is finished


class Submitted(BaseModel):
    job_id: str
    state: JobState


def _optional_int(job: dict[str, str], field: JobField) -> int | None:
    value = job.get(field)
    return int(value) if value else None


def _status(job: dict[str, str]) -> JobStatus:
    count = job.get(JobField.CHUNK_COUNT)
    return JobStatus(
        job_id=job[JobField.ID], kind=job.get(JobField.KIND) or JobKind.TRANSCRIBE,
        state=JobState(job[JobField.STATE]),
        progress=float(job.get(JobField.PROGRESS, 0)),
        chunks_done=int(job.get(JobField.CHUNKS_DONE, 0)),
        chunk_count=int(count) if count else None,
        retry_count=int(job.get(JobField.RETRY_COUNT, 0)),
        max_retries=int(job.get(JobField.MAX_RETRIES, 0)),
        epoch=int(job.get(JobField.EPOCH, 0)), error=job.get(JobField.ERROR) or None,
        deadline_ms=int(job[JobField.DEADLINE_MS]) if job.get(JobField.DEADLINE_MS) else None,
        bytes_sent=_optional_int(job, JobField.BYTES_SENT),
        parts_done=_optional_int(job, JobField.PARTS_DONE),
        finished_size=_optional_int(job, JobField.FINISHED_SIZE),
    )


def create_app(settings: Settings) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # A pooled connection that died during an outage is retried once on a
        # fresh one, so the first request after Redis comes back succeeds.
        redis = Redis.from_url(settings.redis_url, decode_responses=True,
                               socket_connect_timeout=1.0, socket_timeout=2.0,
                               retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2),
                               retry_on_error=list(REDIS_ERRORS))
        app.state.store = Store(redis)
        app.state.uploads = UploadStore(redis)
        try:
            yield
        finally:
            await redis.aclose()

    app = FastAPI(title="crashlab reference worker", version="0.1.0", lifespan=lifespan)
    app.include_router(upload_routes(settings))
    uploads = settings.data_dir.resolve() / "jobs"

    @app.exception_handler(REDIS_ERRORS[0])
    @app.exception_handler(REDIS_ERRORS[1])
    async def redis_down(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503,
                            content={"detail": f"Redis is unavailable: {exc}"})

    def store(request: Request) -> Store:
        value: Store = request.app.state.store
        return value

    async def existing(request: Request, job_id: str) -> dict[str, str]:
        job = await store(request).job(job_id)
        if not job:
            raise HTTPException(404, f"no job with id {job_id!r}")
        return job

    @app.post("/jobs", status_code=201, response_model=Submitted)
    async def submit(
        request: Request,
        file: Annotated[UploadFile, File(description="the audio to transcribe")],
        max_retries: Annotated[int | None, Form(ge=0, le=100)] = None,
        timeout_s: Annotated[float | None, Form(gt=0, le=7 * 86400)] = None,
    ) -> Submitted:
        job_id = uuid.uuid4().hex[:16]
        job_dir = uploads / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        suffix = Path(file.filename or "upload").suffix[:10] or ".bin"
        source = job_dir / f"source{suffix}"
        partial = source.with_name(source.name + ".part")
        size = 0
        try:
            with partial.open("wb") as out:
                while block := await file.read(_READ_BLOCK):
                    size += len(block)
                    if size > settings.max_upload_bytes:
                        raise HTTPException(413, f"the upload is larger than the limit of "
                                                 f"{settings.max_upload_bytes} bytes")
                    out.write(block)
            if size == 0:
                raise HTTPException(400, "the uploaded file is empty")
            try:
                probe = await media.probe(partial)
            except media.MediaError as exc:
                raise HTTPException(415, f"not usable audio: {exc}") from None
            os.replace(partial, source)
        except HTTPException:
            partial.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                job_dir.rmdir()
            raise
        retries = settings.max_retries if max_retries is None else max_retries
        fields = {
            JobField.KIND: "transcribe", JobField.SOURCE: str(source),
            JobField.FILENAME: file.filename or "", JobField.SIZE: str(size),
            JobField.DURATION: f"{probe.duration:.6f}",
            JobField.CHUNK_SECONDS: str(settings.chunk_seconds),
            JobField.MAX_RETRIES: str(retries),
        }
        data: dict[str, Any] = {"filename": file.filename, "size": size,
                                "duration": probe.duration, "max_retries": retries}
        # 'exists' means a retried submit whose first attempt landed: same job, fine
        timeout = settings.job_timeout_s if timeout_s is None else timeout_s
        await store(request).submit(job_id, {str(k): v for k, v in fields.items()}, data,
                                    timeout_ms=round(timeout * 1000))
        return Submitted(job_id=job_id, state=JobState.QUEUED)

    @app.get("/jobs/{job_id}", response_model=JobStatus)
    async def status(request: Request, job_id: str) -> JobStatus:
        return _status(await existing(request, job_id))

    @app.get("/jobs/{job_id}/transcript")
    async def transcript(request: Request, job_id: str) -> dict[str, str]:
        job = await existing(request, job_id)
        if job.get(JobField.KIND, JobKind.TRANSCRIBE) != JobKind.TRANSCRIBE:
            raise HTTPException(409, f"job {job_id} is a {job[JobField.KIND]} job; only "
                                     "transcribe jobs have a transcript")
        if job[JobField.STATE] != JobState.COMPLETED:
            raise HTTPException(409, f"job {job_id} is {job[JobField.STATE]}; the transcript "
                                     "exists only once it is COMPLETED")
        text = await store(request).transcript(job_id)
        return {"job_id": job_id, "text": text or ""}

    @app.get("/jobs/{job_id}/events")
    async def events(request: Request, job_id: str) -> list[dict[str, Any]]:
        await existing(request, job_id)
        return [event.to_json() for event in await store(request).events(job_id)]

    @app.post("/jobs/{job_id}/cancel", response_model=JobStatus)
    async def cancel(request: Request, job_id: str) -> JobStatus:
        await existing(request, job_id)
        reply = await store(request).cancel(job_id)
        if reply != "ok":
            raise HTTPException(409, f"job {job_id} is {reply}; only QUEUED or PROCESSING "
                                     "jobs can be cancelled")
        return _status(await existing(request, job_id))

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        try:
            await store(request).redis.ping()
        except REDIS_ERRORS as exc:
            return JSONResponse(status_code=503, content={"ok": False, "redis": str(exc)})
        return JSONResponse(content={"ok": True, "redis": "ok"})

    return app
