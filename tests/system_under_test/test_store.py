"""The atomic Lua steps against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis
from redis.asyncio import Redis

from harness.services.redis_server import RedisServer
from system_under_test.constants import DEADLINES, chunks_key, job_events_key, job_key, lease_key
from system_under_test.store import ChunkResult, Claim, PlannedChunk, Store

T = TypeVar("T")
JOB = {"kind": "transcribe", "source": "/nonexistent", "duration": "4", "chunk_seconds": "2"}


def run(server: RedisServer, body: Callable[[Store], Awaitable[T]]) -> T:
    async def main() -> T:
        client = Redis.from_url(server.url, decode_responses=True)
        try:
            return await body(Store(client))
        finally:
            await client.aclose()

    return asyncio.run(main())


def dump(client: redis.Redis, job_id: str) -> dict[str, Any]:
    """Everything the job owns, to compare before/after a refused write."""
    return {
        "job": client.hgetall(job_key(job_id)),
        "chunks": client.hgetall(chunks_key(job_id)),
        "events": client.xlen(job_events_key(job_id)),
        "lease": client.get(lease_key(job_id)),
    }


async def claimed_job(store: Store, *, max_retries: int = 2) -> Claim:
    await store.submit("j1", {**JOB, "max_retries": str(max_retries)}, {})
    claim = await store.claim("w1", 10_000)
    assert claim is not None
    plan = [PlannedChunk(0, 0.0, 2.0, "c0"), PlannedChunk(1, 2.0, 2.0, "c1")]
    assert await store.commit_plan(claim, "w1", plan) == "ok"
    return claim


def test_commit_from_stale_epoch_is_rejected_and_changes_nothing(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, str]:
        claim = await claimed_job(store)
        redis_db.delete(lease_key("j1"))
        outcome, epoch = await store.recover("j1", "w2", 10_000)
        assert (outcome, epoch) == ("claimed", str(claim.epoch + 1))
        before = dump(redis_db, "j1")
        stale = await store.commit_chunk(claim, "w1", ChunkResult(0, "zombie", "c0", 1, "w1"))
        after = dump(redis_db, "j1")
        assert before == after
        fresh = Claim("j1", claim.epoch + 1, recovering=True)
        ok = await store.commit_chunk(fresh, "w2", ChunkResult(0, "alfa", "c0", 2, "w2"))
        return stale, ok

    stale, ok = run(redis_server, body)
    assert stale == "stale_epoch"
    assert ok == "ok"
    assert json.loads(redis_db.hget(chunks_key("j1"), "0"))["text"] == "alfa"  # type: ignore[arg-type]


def test_chunk_result_progress_and_event_are_committed_together(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> list[str]:
        claim = await claimed_job(store)
        await store.commit_chunk(claim, "w1", ChunkResult(1, "bravo", "c1", 1, "w1"))
        return [e.event for e in await store.events("j1")]

    events = run(redis_server, body)
    job = redis_db.hgetall(job_key("j1"))
    assert job["chunks_done"] == "1" and job["progress"] == "0.5"
    assert events[-1] == "chunk_committed"
    entry = redis_db.xrevrange(job_events_key("j1"), count=1)[0][1]  # type: ignore[index]
    assert json.loads(entry["data"]) == {"chunk": 1, "chunks_done": 1, "chunk_count": 2}


def test_second_commit_of_a_chunk_is_a_duplicate_that_keeps_the_first(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> str:
        claim = await claimed_job(store)
        await store.commit_chunk(claim, "w1", ChunkResult(0, "first", "c0", 1, "w1"))
        return await store.commit_chunk(claim, "w1", ChunkResult(0, "second", "c0", 1, "w1"))

    assert run(redis_server, body) == "duplicate"
    assert json.loads(redis_db.hget(chunks_key("j1"), "0"))["text"] == "first"  # type: ignore[arg-type]
    assert redis_db.hget(job_key("j1"), "chunks_done") == "1"


def test_completion_is_refused_until_every_chunk_is_committed(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, str]:
        claim = await claimed_job(store)
        await store.commit_chunk(claim, "w1", ChunkResult(0, "alfa", "c0", 1, "w1"))
        early = await store.complete(claim, "w1", "alfa")
        await store.commit_chunk(claim, "w1", ChunkResult(1, "bravo", "c1", 1, "w1"))
        return early, await store.complete(claim, "w1", "alfa bravo")

    assert run(redis_server, body) == ("incomplete", "ok")
    assert redis_db.smembers("crashlab:state:COMPLETED") == {"j1"}
    assert redis_db.smembers("crashlab:state:PROCESSING") == set()


def test_recovery_past_max_retries_fails_the_job_with_a_reason(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> list[tuple[str, str]]:
        await claimed_job(store, max_retries=1)
        outcomes = []
        for worker in ("w2", "w3"):
            redis_db.delete(lease_key("j1"))
            outcomes.append(await store.recover("j1", worker, 10_000))
        return outcomes

    (first, _), (second, reason) = run(redis_server, body)
    assert first == "claimed" and second == "failed"
    assert "lost its worker 2 times" in reason
    job = redis_db.hgetall(job_key("j1"))
    assert job["state"] == "FAILED" and job["retry_count"] == "2"
    assert redis_db.smembers("crashlab:state:FAILED") == {"j1"}


def test_recovery_leaves_a_job_whose_lease_is_still_held(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, str]:
        await claimed_job(store)
        return await store.recover("j1", "w2", 10_000)

    assert run(redis_server, body) == ("skip", "lease_held")
    assert redis_db.hget(job_key("j1"), "retry_count") == "0"


def test_release_requeues_without_counting_a_retry(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, Claim | None]:
        claim = await claimed_job(store)
        released = await store.release(claim, "w1")
        return released, await store.claim("w2", 10_000)

    released, again = run(redis_server, body)
    assert released == "ok"
    assert again is not None and again.job_id == "j1" and again.epoch == 3
    assert redis_db.hget(job_key("j1"), "retry_count") == "0"


def test_claim_brings_the_job_hash_as_the_claim_left_it(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[Claim, Claim | None]:
        claim = await claimed_job(store)
        result = ChunkResult(0, "alfa", "c0", claim.epoch, "w1")
        assert await store.commit_chunk(claim, "w1", result) == "ok"
        assert await store.release(claim, "w1") == "ok"
        return claim, await store.claim("w2", 10_000)

    first, again = run(redis_server, body)
    assert {k: first.job[k] for k in JOB} == JOB
    assert first.job["state"] == "PROCESSING" and first.job["worker_id"] == "w1"
    assert first.job["epoch"] == str(first.epoch) and first.job["chunks_done"] == "0"
    assert again is not None and again.job["worker_id"] == "w2"
    assert again.job["chunks_done"] == "1"  # the worker must read what was committed
    assert again.job == redis_db.hgetall(job_key("j1"))  # nothing changed since the claim


def test_cancelled_job_is_never_claimed_and_fences_its_worker(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, str, Claim | None]:
        claim = await claimed_job(store)
        cancelled = await store.cancel("j1")
        late = await store.commit_chunk(claim, "w1", ChunkResult(0, "late", "c0", 1, "w1"))
        return cancelled, late, await store.claim("w2", 10_000)

    cancelled, late, next_claim = run(redis_server, body)
    assert (cancelled, late, next_claim) == ("ok", "stale_epoch", None)
    assert redis_db.hget(job_key("j1"), "state") == "CANCELLED"


def test_event_sequence_numbers_have_no_gaps(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> list[int]:
        claim = await claimed_job(store)
        for index, text in enumerate(("alfa", "bravo")):
            await store.commit_chunk(claim, "w1", ChunkResult(index, text, f"c{index}", 1, "w1"))
        await store.complete(claim, "w1", "alfa bravo")
        return [e.seq for e in await store.events("j1")]

    seqs = run(redis_server, body)
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 6


def test_refused_write_is_recorded_on_the_rejected_stream(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> str:
        claim = await claimed_job(store)
        redis_db.delete(lease_key("j1"))
        await store.recover("j1", "w2", 10_000)
        return await store.commit_chunk(claim, "w1", ChunkResult(0, "late", "c0", 1, "w1"))

    assert run(redis_server, body) == "stale_epoch"
    (_, fields), = redis_db.xrange("crashlab:rejected")  # type: ignore[misc]
    assert fields["op"] == "commit_chunk" and fields["worker_id"] == "w1"
    assert (fields["epoch"], fields["current_epoch"]) == ("1", "2")


def test_deadline_refuses_writes_and_times_the_job_out_once(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> tuple[str, list[str], list[str], str]:
        await store.submit("j1", {**JOB, "max_retries": "2"}, {}, timeout_ms=150)
        claim = await store.claim("w1", 10_000)
        assert claim is not None
        await asyncio.sleep(0.2)
        late = await store.commit_plan(claim, "w1", [PlannedChunk(0, 0.0, 2.0, "c0")])
        first = await store.expire_due("w2")
        second = await store.expire_due("w3")
        renewed = "renewed" if await store.renew(claim, "w1", 10_000) else "refused"
        return late, first, second, renewed

    late, first, second, renewed = run(redis_server, body)
    assert late == "deadline_passed"
    assert (first, second, renewed) == (["j1"], [], "refused")
    job = redis_db.hgetall(job_key("j1"))
    assert job["state"] == "TIMED_OUT" and "deadline passed" in job["error"]
    assert redis_db.smembers("crashlab:state:TIMED_OUT") == {"j1"}
    last = redis_db.xrevrange(job_events_key("j1"), count=1)[0][1]  # type: ignore[index]
    assert last["event"] == "job_timed_out" and last["worker_id"] == "w2"


def test_a_job_that_ends_before_its_deadline_leaves_the_deadline_set(
    redis_server: RedisServer, redis_db: redis.Redis
) -> None:
    async def body(store: Store) -> list[str]:
        for job_id in ("done", "failed", "cancelled"):
            await store.submit(job_id, JOB, {}, timeout_ms=60_000)
        assert redis_db.zcard(DEADLINES) == 3
        replies = [await store.cancel("cancelled")]
        for _ in range(2):
            claim = await store.claim("w1", 10_000)
            assert claim is not None
            if claim.job_id == "done":
                await store.commit_plan(claim, "w1", [PlannedChunk(0, 0.0, 2.0, "c0")])
                await store.commit_chunk(claim, "w1", ChunkResult(0, "alfa", "c0", 1, "w1"))
                replies.append(await store.complete(claim, "w1", "alfa"))
            else:
                replies.append(await store.fail(claim, "w1", "no good"))
        return replies

    assert run(redis_server, body) == ["ok", "ok", "ok"]
    assert redis_db.zcard(DEADLINES) == 0  # each ending took its deadline with it
