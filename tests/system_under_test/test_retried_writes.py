"""Every worker write sent again after its reply was lost changes nothing the second time.

A lost reply (``lost_reply`` in the harness) leaves the worker with a command
Redis applied and an answer that never came; the worker sends the same command
again. Here each script is run twice with the same arguments, as that retry
does, against a real redis-server: the second run must answer ``duplicate``,
leave the job's keys and streams as the first left them, and say so on the
retried-writes stream.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from harness.services.redis_server import RedisServer
from system_under_test.constants import (
    EVENTS,
    RETRIED,
    chunks_key,
    job_events_key,
    job_key,
    lease_key,
    parts_key,
    plan_key,
)
from system_under_test.store import ChunkResult, Claim, PlannedChunk, Store
from system_under_test.upload_store import Part, UploadStore

JOB = {"kind": "transcribe", "source": "/nonexistent", "duration": "4", "chunk_seconds": "2",
       "max_retries": "2"}
UPLOAD = {"kind": "upload", "source": "/nonexistent", "bucket": "b", "s3_key": "k",
          "part_size": "1024", "stale_after_ms": "60000", "on_stale": "fail",
          "max_retries": "2"}
PLAN = [PlannedChunk(0, 0.0, 2.0, "c0"), PlannedChunk(1, 2.0, 2.0, "c1")]

Step = Callable[[Store, UploadStore, Claim], Awaitable[str]]


def everything(client: redis.Redis, job_id: str = "j1") -> dict[str, Any]:
    """All the job owns, and the global stream, to compare before and after a retry."""
    return {"job": client.hgetall(job_key(job_id)), "plan": client.hgetall(plan_key(job_id)),
            "chunks": client.hgetall(chunks_key(job_id)),
            "parts": client.hgetall(parts_key(job_id)), "lease": client.get(lease_key(job_id)),
            "events": client.xlen(job_events_key(job_id)), "stream": client.xlen(EVENTS),
            "sets": sorted(k for k in client.keys("crashlab:state:*")
                           if client.sismember(k, job_id))}


def run(server: RedisServer, body: Callable[[Store, UploadStore], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        client = Redis.from_url(server.url, decode_responses=True)
        try:
            return await body(Store(client), UploadStore(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


async def transcribing(store: Store, uploads: UploadStore) -> Claim:
    await store.submit("j1", JOB, {})
    claim = await store.claim("w1", 60_000)
    assert claim is not None
    return claim


async def planned(store: Store, uploads: UploadStore) -> Claim:
    claim = await transcribing(store, uploads)
    assert await store.commit_plan(claim, "w1", PLAN) == "ok"
    return claim


async def all_committed(store: Store, uploads: UploadStore) -> Claim:
    claim = await planned(store, uploads)
    for chunk in PLAN:
        result = ChunkResult(chunk.index, f"t{chunk.index}", chunk.checksum, claim.epoch, "w1")
        assert await store.commit_chunk(claim, "w1", result) == "ok"
    return claim


async def uploading(store: Store, uploads: UploadStore) -> Claim:
    await uploads.submit("j1", UPLOAD, {})
    claim = await store.claim("w1", 60_000)
    assert claim is not None
    return claim


async def upload_begun(store: Store, uploads: UploadStore) -> Claim:
    claim = await uploading(store, uploads)
    assert await uploads.begin(claim, "w1", "up-1", "tok", {}) == "ok"
    return claim


async def upload_sent(store: Store, uploads: UploadStore) -> Claim:
    claim = await upload_begun(store, uploads)
    assert await uploads.commit_part(claim, "w1", Part(1, '"e1"', 1024, 0)) == "ok"
    assert await uploads.finish("j1", 1024) == "ok"
    return claim


CASES: dict[str, tuple[Callable[[Store, UploadStore], Awaitable[Claim]], Step]] = {
    "commit_plan": (transcribing, lambda s, u, c: s.commit_plan(c, "w1", PLAN)),
    "commit_chunk": (planned, lambda s, u, c: s.commit_chunk(
        c, "w1", ChunkResult(0, "t0", "c0", c.epoch, "w1"))),
    "emit": (planned, lambda s, u, c: s.emit(c, "w1", "processing_resumed", {"committed": []})),
    "complete": (all_committed, lambda s, u, c: s.complete(c, "w1", "t0 t1")),
    "fail": (planned, lambda s, u, c: s.fail(c, "w1", "no good")),
    "begin_upload": (uploading, lambda s, u, c: u.begin(c, "w1", "up-1", "tok", {})),
    "commit_part": (upload_begun, lambda s, u, c: u.commit_part(
        c, "w1", Part(1, '"e1"', 1024, 0))),
    "mark_stale": (upload_begun, lambda s, u, c: u.mark_stale(c, "w1", 0, "fail", {})),
    "complete_upload": (upload_sent, lambda s, u, c: u.complete(c, "w1", '"obj"', {})),
}


@pytest.mark.parametrize("op", sorted(CASES))
def test_a_write_sent_again_after_its_reply_was_lost_changes_nothing(
    op: str, redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    setup, step = CASES[op]

    async def body(store: Store, uploads: UploadStore) -> tuple[str, str]:
        claim = await setup(store, uploads)
        first = await step(store, uploads, claim)
        before = everything(redis_db)
        again = await step(store, uploads, claim)
        assert everything(redis_db) == before
        return first, again

    first, again = run(redis_server, body)
    assert (first, again) == ("ok", "duplicate")
    retried = [fields for _, fields in redis_db.xrange(RETRIED)]  # type: ignore[union-attr]
    assert len(retried) == 1
    assert (retried[0]["job_id"], retried[0]["worker_id"], retried[0]["op"]) == ("j1", "w1", op)


def test_a_new_epoch_may_plan_again_a_job_an_earlier_epoch_planned(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    """Only the same epoch's plan is a retry: a job released and claimed again re-plans."""
    async def body(store: Store, uploads: UploadStore) -> tuple[str, str]:
        claim = await planned(store, uploads)
        assert await store.release(claim, "w1") == "ok"
        again = await store.claim("w2", 60_000)
        assert again is not None and again.epoch == claim.epoch + 2
        return (await store.commit_plan(again, "w2", PLAN),
                await store.emit(again, "w2", "processing_resumed", {}))

    assert run(redis_server, body) == ("ok", "ok")
    events = [json.loads(f["data"]) for _, f in redis_db.xrange(job_events_key("j1"))
              if f["event"] == "chunking_completed"]  # type: ignore[union-attr]
    assert len(events) == 2
    assert redis_db.xlen(RETRIED) == 0


def test_a_different_part_at_a_committed_number_is_still_out_of_order(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store, uploads: UploadStore) -> str:
        claim = await upload_begun(store, uploads)
        assert await uploads.commit_part(claim, "w1", Part(1, '"e1"', 1024, 0)) == "ok"
        return await uploads.commit_part(claim, "w1", Part(1, '"other"', 1024, 0))

    assert run(redis_server, body) == "out_of_order"
    assert redis_db.xlen(RETRIED) == 0
