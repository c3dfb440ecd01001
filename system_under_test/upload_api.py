"""The HTTP API of the ``upload`` job kind (mounted by ``api.create_app``).

    POST /uploads                JSON ``UploadRequest`` -> 201 {job_id, state}
    POST /jobs/{id}/finish       the writer is done: the source is complete at its
                                 current size -> 200 {job_id, state, finished_size}

A source is a file under the upload root (``CRASHLAB_UPLOAD_ROOT``, default
``<data dir>/streams``) that a writer may still be appending to. The job
streams it into ``s3://<bucket>/<key>`` and writes ``<key>.metadata.json``
beside it. One live job per object: a second submit for the same bucket and
key is a 409 while the first is QUEUED or PROCESSING. Other status reads
(``GET /jobs/{id}``, events, cancel) are the shared ones in ``api``.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from system_under_test.config import Settings
from system_under_test.constants import METADATA_SUFFIX, JobField, JobKind, JobState
from system_under_test.upload_store import UploadStore

# S3's rules for bucket names: 3-63 characters, lower-case letters, digits, dots, hyphens,
# starting and ending with a letter or digit
BUCKET_NAME = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, description="absolute path of the file, under the "
                                                  "upload root; it may still be growing")
    bucket: str = Field(pattern=BUCKET_NAME, description="an existing bucket")
    key: str = Field(min_length=1, max_length=1024, description="the object to write")
    finished: bool = Field(False, description="the file is complete already (no finish call "
                                              "will follow)")
    max_retries: int | None = Field(None, ge=0, le=100)
    timeout_s: float | None = Field(None, gt=0, le=7 * 86400)
    stale_after_s: float | None = Field(None, gt=0, le=86400, description="an unfinished "
                                        "source that does not grow this long is stale")
    on_stale: Literal["finalize", "fail"] | None = None

    @field_validator("key")
    @classmethod
    def _not_a_metadata_key(cls, value: str) -> str:
        if value.endswith(METADATA_SUFFIX):
            raise ValueError(f"must not end with {METADATA_SUFFIX!r}: that name is reserved "
                             "for the metadata object written beside each upload")
        return value


class UploadSubmitted(BaseModel):
    job_id: str
    state: JobState


class SourceFinished(BaseModel):
    job_id: str
    state: JobState
    finished_size: int


def upload_routes(settings: Settings) -> APIRouter:
    routes = APIRouter()

    def uploads(request: Request) -> UploadStore:
        value: UploadStore = request.app.state.uploads
        return value

    def source_path(text: str) -> Path:
        """The source as a resolved path under the upload root; 400 naming the fix if not."""
        source = Path(text)
        if not source.is_absolute():
            raise HTTPException(400, f"source {text!r} must be an absolute path")
        root = settings.upload_dir
        resolved = source.resolve()
        if not resolved.is_relative_to(root):
            raise HTTPException(400, f"source {text} is outside the upload root {root}; write "
                                     "the file under it (or set CRASHLAB_UPLOAD_ROOT)")
        return resolved

    @routes.post("/uploads", status_code=201, response_model=UploadSubmitted)
    async def submit_upload(request: Request, body: UploadRequest) -> UploadSubmitted:
        source = source_path(body.source)
        if not source.is_file():
            raise HTTPException(400, f"source {source} does not exist or is not a regular "
                                     "file; create it before submitting (it may stay empty "
                                     "and grow)")
        size = source.stat().st_size
        job_id = uuid.uuid4().hex[:16]
        retries = settings.max_retries if body.max_retries is None else body.max_retries
        stale_s = body.stale_after_s or settings.upload_stale_after_s
        fields = {
            JobField.KIND: JobKind.UPLOAD, JobField.SOURCE: str(source),
            JobField.FILENAME: source.name, JobField.SIZE: str(size),
            JobField.BUCKET: body.bucket, JobField.S3_KEY: body.key,
            JobField.PART_SIZE: str(settings.upload_part_bytes),
            JobField.STALE_AFTER_MS: str(round(stale_s * 1000)),
            JobField.ON_STALE: body.on_stale or settings.upload_on_stale,
            JobField.MAX_RETRIES: str(retries),
        }
        if body.finished:
            fields[JobField.FINISHED_SIZE] = str(size)
        data: dict[str, Any] = {
            "kind": JobKind.UPLOAD.value, "source": str(source), "bucket": body.bucket,
            "key": body.key, "part_size": settings.upload_part_bytes,
            "finished_size": size if body.finished else None, "max_retries": retries}
        timeout = settings.job_timeout_s if body.timeout_s is None else body.timeout_s
        reply = await uploads(request).submit(job_id, {str(k): str(v) for k, v in fields.items()},
                                              data, timeout_ms=round(timeout * 1000))
        if reply.startswith("busy:"):
            raise HTTPException(409, f"s3://{body.bucket}/{body.key} is being uploaded by job "
                                     f"{reply.removeprefix('busy:')}; wait until it ends or "
                                     "choose another key")
        return UploadSubmitted(job_id=job_id, state=JobState.QUEUED)

    @routes.post("/jobs/{job_id}/finish", response_model=SourceFinished)
    async def finish(request: Request, job_id: str) -> SourceFinished:
        store = uploads(request)
        job: dict[str, str] = await request.app.state.store.job(job_id)
        if not job:
            raise HTTPException(404, f"no job with id {job_id!r}")
        if job.get(JobField.KIND) != JobKind.UPLOAD:
            raise HTTPException(409, f"job {job_id} is a {job.get(JobField.KIND)} job; only "
                                     "upload jobs have a source to finish")
        try:
            size = Path(job[JobField.SOURCE]).stat().st_size
        except FileNotFoundError:
            raise HTTPException(409, f"the source of job {job_id} ({job[JobField.SOURCE]}) is "
                                     "gone; it cannot be finished") from None
        reply = await store.finish(job_id, size)
        if reply.startswith("already:"):  # a retried finish: the first one counts
            size = int(reply.removeprefix("already:"))
        elif reply.startswith("shrunk:"):
            raise HTTPException(409, f"the source of job {job_id} has {size} bytes, fewer than "
                                     f"the {reply.removeprefix('shrunk:')} already uploaded")
        elif reply != "ok":
            raise HTTPException(409, f"job {job_id} is {reply}; only QUEUED or PROCESSING "
                                     "uploads can be finished")
        state = await request.app.state.store.job(job_id)
        return SourceFinished(job_id=job_id, state=JobState(state[JobField.STATE]),
                              finished_size=size)

    return routes
