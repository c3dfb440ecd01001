"""The upload job kind in one process, against a real redis-server and a real moto S3 server.

The runner runs as a coroutine here so a test can stop it at an exact
failpoint and cancel it (the in-process stand-in for a dead worker; the
SIGKILL tests with real worker processes are in ``test_upload_crash``),
then take the job over at a new epoch the way a live worker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.asyncio import Redis

from harness.procs import ProcessRegistry
from harness.services.redis_server import RedisServer
from harness.services.s3 import S3Server
from harness.streams import source_bytes
from system_under_test.config import Settings
from system_under_test.constants import (
    REJECTED,
    UPLOAD_ABORTS,
    job_events_key,
    job_key,
    lease_key,
    metadata_key,
    parts_key,
)
from system_under_test.errors import JobFailure
from system_under_test.failpoints import Failpoints
from system_under_test.objectstore import ObjectStore
from system_under_test.pipeline import JobRunner
from system_under_test.store import Claim, Store
from system_under_test.transcriber import Transcriber
from system_under_test.upload import UploadRunner
from system_under_test.upload_store import Part, UploadStore

pytestmark = pytest.mark.timeout(60)

BUCKET = "uploads"
PART = 64 * 1024
SIZE = 5 * PART + 1234  # five whole parts and a short tail


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory,
              registry: ProcessRegistry) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto"), registry=registry, part_min_size=PART)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server: S3Server) -> Iterator[Any]:
    s3_server.reset()
    client = s3_server.client()
    client.create_bucket(Bucket=BUCKET)
    yield client
    client.close()


@dataclass
class Rig:
    """One test's worker parts, wired to the real servers."""

    redis: Redis
    store: Store
    uploads: UploadStore
    failpoints: Failpoints
    runner: UploadRunner
    source: Path

    async def submit(self, job_id: str = "u1", *, finished: bool = True, stale_ms: int = 60_000,
                     on_stale: str = "fail", key: str = "obj.bin") -> str:
        size = self.source.stat().st_size
        fields = {"kind": "upload", "source": str(self.source), "bucket": BUCKET, "s3_key": key,
                  "part_size": str(PART), "stale_after_ms": str(stale_ms),
                  "on_stale": on_stale, "max_retries": "3"}
        if finished:
            fields["finished_size"] = str(size)
        return await self.uploads.submit(job_id, fields, {})

    async def claim(self) -> Claim:
        claim = await self.store.claim("w1", 60_000)
        assert claim is not None
        return claim

    async def take_over(self, job_id: str = "u1", worker: str = "w2") -> Claim:
        """What a live worker does once the holder's lease is gone."""
        await self.redis.delete(lease_key(job_id))
        outcome, epoch = await self.store.recover(job_id, worker, 60_000)
        assert outcome == "claimed", epoch
        return Claim(job_id, int(epoch), recovering=True)

    async def run_until(self, claim: Claim, point: str) -> None:
        """Run the job until it pauses at ``point``, then cancel it there (it "dies")."""
        task = asyncio.create_task(self.runner.run(claim))
        hits = await self.failpoints.wait_for_hits(0, timeout=20)
        assert hits and hits[-1].point == point, hits
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.failpoints.disarm(point)

    async def events(self, job_id: str = "u1") -> list[dict[str, Any]]:
        entries = await self.redis.xrange(job_events_key(job_id))
        return [{**fields, "data": json.loads(fields["data"])} for _, fields in entries]


@contextlib.asynccontextmanager
async def rig(redis_server: RedisServer, s3: Any, tmp_path: Path, content: bytes,
              failpoints: str = "") -> AsyncIterator[Rig]:
    source = tmp_path / "streams" / "source.bin"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(content)
    settings = Settings(redis_url=redis_server.url, data_dir=tmp_path, worker_id="w1",
                        upload_poll_ms=10)
    client = Redis.from_url(redis_server.url, decode_responses=True)
    await client.flushall()
    store = Store(client)
    fps = Failpoints("w1", failpoints)
    transcriber = Transcriber(settings)
    jobs = JobRunner(settings, store, transcriber, fps)
    uploads = UploadStore(client)
    runner = UploadRunner(settings, jobs, uploads, ObjectStore(settings, client=s3))
    try:
        yield Rig(client, store, uploads, fps, runner, source)
    finally:
        await transcriber.close()
        await client.aclose()


def object_bytes(s3: Any, key: str = "obj.bin") -> bytes:
    return bytes(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def pending(s3: Any) -> list[str]:
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def test_part_checkpoint_and_its_event_commit_together_or_not_at_all(
    redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, source_bytes(1, SIZE),
                       "upload.started=1*pause") as r:
            await r.submit()
            first = await r.claim()
            await r.run_until(first, "upload.started")
            assert await r.uploads.commit_part(first, "w1", Part(1, '"e1"', PART, 0)) == "ok"
            job = redis_db.hgetall(job_key("u1"))
            assert (job["next_part"], job["bytes_sent"], job["parts_done"]) == (
                "2", str(PART), "1")
            assert json.loads(redis_db.hget(parts_key("u1"), "1") or "")["etag"] == '"e1"'
            committed = [e for e in await r.events() if e["event"] == "part_committed"]
            assert [e["data"]["part"] for e in committed] == [1]
            assert committed[0]["data"]["bytes_sent"] == PART

            def everything() -> tuple[Any, ...]:
                return (redis_db.hgetall(job_key("u1")), redis_db.hgetall(parts_key("u1")),
                        redis_db.xlen(job_events_key("u1")))

            before = everything()
            # a part that skips one, or starts anywhere but where the last one ended
            assert await r.uploads.commit_part(first, "w1", Part(3, '"e3"', PART, 2 * PART)) \
                == "out_of_order"
            assert await r.uploads.commit_part(first, "w1", Part(2, '"e2"', PART, 7)) \
                == "out_of_order"
            assert everything() == before
            # a worker that lost the job changes nothing, and its attempt is recorded
            await r.take_over()
            before = everything()
            assert await r.uploads.commit_part(first, "w1", Part(2, '"e2"', PART, PART)) \
                == "stale_epoch"
            assert everything() == before
            refused = redis_db.xrange(REJECTED)[-1][1]
            assert (refused["op"], refused["worker_id"], refused["reason"]) == (
                "commit_part", "w1", "stale_epoch")

    asyncio.run(body())


def test_upload_streams_whole_parts_then_the_tail_and_cleans_up(
    redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(2, SIZE)

    async def body() -> list[dict[str, Any]]:
        async with rig(redis_server, s3, tmp_path, content) as r:
            await r.submit()
            await r.runner.run(await r.claim())
            return await r.events()

    events = asyncio.run(body())
    assert object_bytes(s3) == content
    parts = [e["data"] for e in events if e["event"] == "part_committed"]
    assert [(p["part"], p["offset"], p["size"]) for p in parts] == [
        (n + 1, n * PART, PART) for n in range(5)] + [(6, 5 * PART, 1234)]
    assert events[-1]["event"] == "job_completed"
    assert events[-1]["data"]["size"] == SIZE and events[-1]["data"]["parts"] == 6
    metadata = json.loads(object_bytes(s3, metadata_key("obj.bin")))
    assert (metadata["size"], metadata["parts"], metadata["etag"]) == (
        SIZE, 6, s3.head_object(Bucket=BUCKET, Key="obj.bin")["ETag"])
    assert redis_db.exists(parts_key("u1"), lease_key("u1")) == 0
    assert redis_db.hget(job_key("u1"), "state") == "COMPLETED"
    assert pending(s3) == []


def test_finalize_after_a_completion_the_crash_hid_is_recognised_by_its_token(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(3, SIZE)

    async def body() -> list[dict[str, Any]]:
        async with rig(redis_server, s3, tmp_path, content,
                       "upload.completed_in_s3=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.completed_in_s3")
            await r.runner.run(await r.take_over())
            return await r.events()

    events = asyncio.run(body())
    resumed = next(e for e in events if e["event"] == "processing_resumed")
    assert resumed["data"]["completed_in_s3"] is True
    assert [e["event"] for e in events[-2:]] == ["recovery_completed", "job_completed"]
    assert object_bytes(s3) == content
    assert pending(s3) == []


def test_complete_repeated_on_a_completed_upload_gives_the_same_object(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(4, SIZE)

    async def body() -> tuple[str | None, str | None]:
        async with rig(redis_server, s3, tmp_path, content,
                       "upload.completed_in_s3=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.completed_in_s3")
            checkpoint = await r.uploads.checkpoint("u1")
            assert checkpoint.upload_id is not None
            parts = [(p.number, p.etag) for p in checkpoint.parts]
            again = await r.runner.s3.complete(BUCKET, "obj.bin", checkpoint.upload_id, parts)
            await r.runner.run(await r.take_over())
            return again, (await r.redis.hget(job_key("u1"), "object_etag"))

    again, committed = asyncio.run(body())
    etag = s3.head_object(Bucket=BUCKET, Key="obj.bin")["ETag"]
    # S3 answers a repeated completion with the same object, or with NoSuchUpload (None)
    assert again in (etag, None)
    assert committed == etag
    assert object_bytes(s3) == content


def test_an_upload_gone_without_our_object_fails_the_job_as_lost(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, source_bytes(5, SIZE),
                       "upload.part.committed=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.committed")
            checkpoint = await r.uploads.checkpoint("u1")
            assert checkpoint.upload_id is not None
            s3.abort_multipart_upload(Bucket=BUCKET, Key="obj.bin",
                                      UploadId=checkpoint.upload_id)
            s3.put_object(Bucket=BUCKET, Key="obj.bin", Body=b"someone else's")
            with pytest.raises(JobFailure, match="upload_lost"):
                await r.runner.run(await r.take_over())

    asyncio.run(body())


def test_part_sent_but_not_checkpointed_is_sent_again_under_its_own_number(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(6, SIZE)

    async def body() -> list[dict[str, Any]]:
        async with rig(redis_server, s3, tmp_path, content,
                       "upload.part.uploaded=1*off->1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.uploaded")
            await r.runner.run(await r.take_over())
            return await r.events()

    events = asyncio.run(body())
    resumed = next(e for e in events if e["event"] == "processing_resumed")
    assert resumed["data"]["parts"] == [1]
    assert resumed["data"]["uncommitted_in_s3"] == [2]
    numbers = [e["data"]["part"] for e in events if e["event"] == "part_committed"]
    assert numbers == [1, 2, 3, 4, 5, 6]
    assert object_bytes(s3) == content


def test_committed_parts_s3_does_not_hold_are_sent_again(
    redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(7, SIZE)

    async def body() -> list[dict[str, Any]]:
        async with rig(redis_server, s3, tmp_path, content,
                       "upload.part.committed=1*off->1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.committed")
            # S3 lost the parts (here: the checkpoint now names a fresh, empty upload)
            fresh = s3.create_multipart_upload(Bucket=BUCKET, Key="obj.bin")["UploadId"]
            old = redis_db.hget(job_key("u1"), "upload_id")
            s3.abort_multipart_upload(Bucket=BUCKET, Key="obj.bin", UploadId=old)
            redis_db.hset(job_key("u1"), "upload_id", fresh)
            await r.runner.run(await r.take_over())
            return await r.events()

    events = asyncio.run(body())
    resumed = next(e for e in events if e["event"] == "processing_resumed")
    assert resumed["data"]["reuploaded"] == [1, 2]
    assert object_bytes(s3) == content


def test_changed_source_under_a_committed_part_fails_the_job(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, source_bytes(8, SIZE),
                       "upload.part.committed=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.committed")
            checkpoint = await r.uploads.checkpoint("u1")
            await r.redis.hset(parts_key("u1"), "1", json.dumps(
                {"etag": '"0000"', "size": PART, "offset": 0}))
            assert checkpoint.parts[0].etag != '"0000"'
            with pytest.raises(JobFailure, match="source_changed: part 1"):
                await r.runner.run(await r.take_over())

    asyncio.run(body())


def test_missing_source_on_resume_fails_and_the_upload_is_aborted_after_the_failure(
    redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, source_bytes(9, SIZE),
                       "upload.part.committed=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.committed")
            r.source.unlink()
            claim = await r.take_over()
            with pytest.raises(JobFailure, match="file_missing_on_resume") as failure:
                await r.runner.run(claim)
            assert pending(s3) != []  # nothing is aborted before the failure is committed
            assert await r.store.fail(claim, "w2", str(failure.value)) == "ok"
            assert redis_db.smembers(UPLOAD_ABORTS) == {"u1"}
            assert await r.runner.abort_abandoned() == 1

    asyncio.run(body())
    assert pending(s3) == []
    assert redis_db.smembers(UPLOAD_ABORTS) == set()
    job = redis_db.hgetall(job_key("u1"))
    assert job["state"] == "FAILED" and job["error"].startswith("file_missing_on_resume")


def test_cancelled_upload_is_aborted_by_any_worker(
    redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, source_bytes(10, SIZE),
                       "upload.part.committed=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.part.committed")
            assert await r.store.cancel("u1") == "ok"
            assert await r.runner.abort_abandoned() == 1
            assert await r.runner.abort_abandoned() == 0  # once is enough

    asyncio.run(body())
    assert pending(s3) == []


def test_upload_created_but_never_committed_is_aborted_on_resume(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(11, SIZE)

    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, content, "upload.created=1*pause") as r:
            await r.submit()
            await r.run_until(await r.claim(), "upload.created")
            assert len(pending(s3)) == 1
            await r.runner.run(await r.take_over())

    asyncio.run(body())
    assert pending(s3) == []
    assert object_bytes(s3) == content


@pytest.mark.parametrize("action", ["finalize", "fail"])
def test_a_source_that_stops_growing_unfinished_is_handled_as_configured(
    action: str, redis_server: RedisServer, redis_db: redis.Redis, s3: Any, tmp_path: Path
) -> None:
    content = source_bytes(12, 2 * PART + 99)

    async def body() -> list[dict[str, Any]]:
        async with rig(redis_server, s3, tmp_path, content) as r:
            await r.submit(finished=False, stale_ms=300, on_stale=action)
            claim = await r.claim()
            if action == "finalize":
                await r.runner.run(claim)
            else:
                with pytest.raises(JobFailure, match="stale_stream"):
                    await r.runner.run(claim)
            return await r.events()

    events = asyncio.run(body())
    stale = next(e for e in events if e["event"] == "stream_stale")
    assert stale["data"]["action"] == action and stale["data"]["size"] == len(content)
    assert stale["data"]["idle_ms"] >= 300
    if action == "finalize":
        assert object_bytes(s3) == content
        assert redis_db.hget(job_key("u1"), "finished_size") == str(len(content))
    else:
        assert redis_db.hget(job_key("u1"), "finished_size") is None


def test_empty_finished_source_uploads_as_one_empty_part(
    redis_server: RedisServer, s3: Any, tmp_path: Path
) -> None:
    async def body() -> None:
        async with rig(redis_server, s3, tmp_path, b"") as r:
            await r.submit()
            await r.runner.run(await r.claim())

    asyncio.run(body())
    assert object_bytes(s3) == b""
