"""Typed access to the ``upload`` job kind's Redis state; every write is one Lua script.

The scripts live in ``upload_lua``; the lifecycle scripts shared with the
other kind (claim, renew, recover, fail, release, cancel) stay in ``store``.
``Checkpoint`` is what a worker reloads to resume: the committed parts and,
following from them, the next part number and the file offset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis

from system_under_test import upload_lua
from system_under_test.constants import (
    DEADLINES,
    EVENTS,
    PREFIX,
    QUEUE,
    UPLOAD_ABORTS,
    UPLOAD_TARGETS,
    JobField,
    job_key,
    lease_key,
    parts_key,
    upload_target,
)
from system_under_test.store import Claim, awaitable, recovery_flag, submit_with


@dataclass(frozen=True)
class Part:
    """One committed part: where it sits in the source and what S3 answered for it."""

    number: int
    etag: str
    size: int
    offset: int

    @property
    def end(self) -> int:
        return self.offset + self.size


@dataclass(frozen=True)
class Checkpoint:
    """An upload job as Redis holds it; ``upload_id`` None until the upload was created."""

    job_id: str
    source: str
    bucket: str
    key: str
    part_size: int
    stale_after_ms: int
    on_stale: str
    finished_size: int | None
    upload_id: str | None
    token: str | None
    next_part: int
    bytes_sent: int
    parts: tuple[Part, ...]

    @property
    def all_sent(self) -> bool:
        """Every byte of a finished source is in a committed part."""
        return (self.finished_size is not None and self.bytes_sent >= self.finished_size
                and bool(self.parts))


class UploadStore:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._submit = redis.register_script(upload_lua.SUBMIT_UPLOAD)
        self._begin = redis.register_script(upload_lua.BEGIN_UPLOAD)
        self._commit_part = redis.register_script(upload_lua.COMMIT_PART)
        self._finish = redis.register_script(upload_lua.FINISH_SOURCE)
        self._stale = redis.register_script(upload_lua.MARK_STALE)
        self._complete = redis.register_script(upload_lua.COMPLETE_UPLOAD)

    # -- API side ---------------------------------------------------------

    async def submit(self, job_id: str, fields: dict[str, str], data: dict[str, Any],
                     timeout_ms: int = 0) -> str:
        """'ok', 'exists' (a retried submit that landed) or 'busy:<id of the live owner>'."""
        return await submit_with(
            self._submit, [job_key(job_id), EVENTS, QUEUE, DEADLINES, UPLOAD_TARGETS],
            job_id, fields, data, timeout_ms)

    async def finish(self, job_id: str, size: int) -> str:
        reply = await self._finish(keys=[job_key(job_id), EVENTS], args=[job_id, size])
        return str(reply)

    # -- worker side ------------------------------------------------------

    async def checkpoint(self, job_id: str) -> Checkpoint:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(job_key(job_id))
            pipe.hgetall(parts_key(job_id))
            job, raw_parts = cast(tuple[dict[str, str], dict[str, str]],
                                  tuple(await pipe.execute()))
        parts = []
        for number, value in raw_parts.items():
            entry = json.loads(value)
            parts.append(Part(int(number), str(entry["etag"]), int(entry["size"]),
                              int(entry["offset"])))
        finished = job.get(JobField.FINISHED_SIZE)
        return Checkpoint(
            job_id=job_id, source=job[JobField.SOURCE], bucket=job[JobField.BUCKET],
            key=job[JobField.S3_KEY], part_size=int(job[JobField.PART_SIZE]),
            stale_after_ms=int(job[JobField.STALE_AFTER_MS]), on_stale=job[JobField.ON_STALE],
            finished_size=int(finished) if finished is not None else None,
            upload_id=job.get(JobField.UPLOAD_ID), token=job.get(JobField.UPLOAD_TOKEN),
            next_part=int(job.get(JobField.NEXT_PART, 1)),
            bytes_sent=int(job.get(JobField.BYTES_SENT, 0)),
            parts=tuple(sorted(parts, key=lambda p: p.number)),
        )

    async def finished_size(self, job_id: str) -> int | None:
        value = await awaitable(self.redis.hget(job_key(job_id), JobField.FINISHED_SIZE))
        return None if value is None else int(value)

    async def begin(self, claim: Claim, worker_id: str, upload_id: str, token: str,
                    data: dict[str, Any]) -> str:
        reply = await self._begin(
            keys=[job_key(claim.job_id), EVENTS],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), upload_id, token,
                  json.dumps(data)],
        )
        return str(reply)

    async def commit_part(self, claim: Claim, worker_id: str, part: Part) -> str:
        """'ok', or why not: a fencing refusal, 'out_of_order' or 'no_upload'."""
        reply = await self._commit_part(
            keys=[job_key(claim.job_id), EVENTS, parts_key(claim.job_id)],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), part.number,
                  part.etag, part.size, part.offset],
        )
        return str(reply)

    async def mark_stale(self, claim: Claim, worker_id: str, size: int, action: str,
                         data: dict[str, Any]) -> str:
        reply = await self._stale(
            keys=[job_key(claim.job_id), EVENTS],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), size, action,
                  json.dumps(data)],
        )
        return str(reply)

    async def complete(self, claim: Claim, worker_id: str, object_etag: str,
                       data: dict[str, Any]) -> str:
        reply = await self._complete(
            keys=[job_key(claim.job_id), EVENTS, parts_key(claim.job_id),
                  lease_key(claim.job_id)],
            args=[PREFIX, claim.job_id, worker_id, claim.epoch, recovery_flag(claim), object_etag,
                  json.dumps(data)],
        )
        return str(reply)

    # -- ended uploads whose multipart upload is still to be aborted -------

    async def has_abandoned(self) -> bool:
        return bool(await awaitable(self.redis.scard(UPLOAD_ABORTS)))

    async def abandoned(self) -> list[str]:
        return sorted(cast(set[str], await awaitable(self.redis.smembers(UPLOAD_ABORTS))))

    async def aborted(self, job_id: str) -> None:
        await awaitable(self.redis.srem(UPLOAD_ABORTS, job_id))

    async def owner_of(self, bucket: str, key: str) -> str | None:
        """The upload job that owns the object now (the last one submitted for it)."""
        return await awaitable(self.redis.hget(UPLOAD_TARGETS, upload_target(bucket, key)))
