"""Typed access to the worker's Redis state; every write is one Lua script.

The scripts live in ``lua``; this module only names their keys and
arguments and turns their replies into Python values. Reads that feed a
decision (recovery) are advisory: the write that follows re-checks
everything under the epoch.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from system_under_test import lua
from system_under_test.constants import (
    DEADLINES,
    EVENTS,
    PREFIX,
    QUEUE,
    JobField,
    JobKind,
    JobState,
    chunks_key,
    job_events_key,
    job_key,
    lease_key,
    plan_key,
    state_key,
    transcript_key,
)
from system_under_test.events import Event

T = TypeVar("T")


def awaitable(reply: Awaitable[T] | T) -> Awaitable[T]:
    """A command of the asyncio client, typed as what it is: redis-py types each command
    for both of its clients (``Awaitable[T] | T``), and the asyncio one always awaits."""
    return cast(Awaitable[T], reply)


@dataclass(frozen=True)
class Claim:
    """A job this worker holds at ``epoch``; ``recovering`` for a takeover.

    ``job`` is the job's hash as the claim itself left it (read in the same
    atomic step, so it saves the worker a round trip); empty for a takeover.
    Only what no one changes while the job is held may be taken from it: the
    kind, the source and its cut, and whether a chunk had been committed
    before (only this epoch can commit from then on).
    """

    job_id: str
    epoch: int
    recovering: bool
    job: dict[str, str] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PlannedChunk:
    index: int
    start: float
    duration: float
    checksum: str

    def to_json(self) -> str:
        return json.dumps({"start": self.start, "duration": self.duration,
                           "checksum": self.checksum}, sort_keys=True)


@dataclass(frozen=True)
class ChunkResult:
    index: int
    text: str
    checksum: str
    epoch: int
    worker_id: str


async def submit_with(script: AsyncScript, keys: list[str], job_id: str,
                      fields: dict[str, str], data: dict[str, Any], timeout_ms: int) -> str:
    """Run a submit script: its args are the prefix, the job id, the ``job_queued``
    event's data, the timeout and then the job hash's fields as name, value pairs."""
    flat = [item for pair in fields.items() for item in pair]
    reply = await script(keys=keys, args=[PREFIX, job_id, json.dumps(data), timeout_ms, *flat])
    return str(reply)


async def load_scripts(redis: Redis, scripts: Iterable[AsyncScript]) -> None:
    """Put ``scripts`` in Redis's script cache, all in one round trip.

    A script's first call would otherwise be a NOSCRIPT refusal, a load and a
    second try. A restarted Redis forgets its cache; a call then loads its
    script again by itself.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for script in scripts:
            pipe.script_load(script.script)
        await pipe.execute()


def scripts_of(store: object) -> list[AsyncScript]:
    """The scripts a store registered (its ``AsyncScript`` attributes)."""
    return [value for value in vars(store).values() if isinstance(value, AsyncScript)]


class Store:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._submit = redis.register_script(lua.SUBMIT)
        self._claim = redis.register_script(lua.CLAIM)
        self._renew = redis.register_script(lua.RENEW)
        self._commit_plan = redis.register_script(lua.COMMIT_PLAN)
        self._commit_chunk = redis.register_script(lua.COMMIT_CHUNK)
        self._emit = redis.register_script(lua.EMIT)
        self._complete = redis.register_script(lua.COMPLETE)
        self._fail = redis.register_script(lua.FAIL)
        self._release = redis.register_script(lua.RELEASE)
        self._recover = redis.register_script(lua.RECOVER)
        self._cancel = redis.register_script(lua.CANCEL)
        self._expire_due = redis.register_script(lua.EXPIRE_DUE)

    # -- API side ---------------------------------------------------------

    async def submit(self, job_id: str, fields: dict[str, str], data: dict[str, Any],
                     timeout_ms: int = 0) -> str:
        """Queue a job; with ``timeout_ms`` it gets an absolute deadline from Redis TIME."""
        return await submit_with(self._submit, [job_key(job_id), EVENTS, QUEUE, DEADLINES],
                                 job_id, fields, data, timeout_ms)

    async def expire_due(self, worker_id: str, limit: int = 100) -> list[str]:
        """Time out every job past its deadline; returns the ids it timed out."""
        reply = await self._expire_due(keys=[DEADLINES, EVENTS, QUEUE],
                                       args=[PREFIX, worker_id, limit])
        return [str(job_id) for job_id in reply]

    async def job_counts(self) -> dict[str, int]:
        """How many jobs are in each state (for metrics)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for state in JobState:
                pipe.scard(state_key(state))
            counts = await pipe.execute()
        return {str(state): int(n) for state, n in zip(JobState, counts, strict=True)}

    async def cancel(self, job_id: str) -> str:
        """'ok', 'no_such_job', or the terminal state that prevents it."""
        reply = await self._cancel(
            keys=[job_key(job_id), EVENTS, lease_key(job_id), QUEUE], args=[PREFIX, job_id]
        )
        return str(reply)

    async def job(self, job_id: str) -> dict[str, str]:
        return cast(dict[str, str], await awaitable(self.redis.hgetall(job_key(job_id))))

    async def kind(self, job_id: str) -> str:
        """The job's kind (``JobKind``); jobs from before kinds existed transcribe."""
        kind = cast(str | None, await awaitable(self.redis.hget(job_key(job_id), JobField.KIND)))
        return kind or JobKind.TRANSCRIBE

    async def transcript(self, job_id: str) -> str | None:
        return cast(str | None, await self.redis.get(transcript_key(job_id)))

    async def events(self, job_id: str, count: int = 1000) -> list[Event]:
        entries = cast(list[tuple[str, dict[str, str]]],
                       await self.redis.xrange(job_events_key(job_id), count=count))
        return [Event.from_fields(entry_id, fields) for entry_id, fields in entries]

    # -- worker side ------------------------------------------------------

    async def claim(self, worker_id: str, lease_ms: int) -> Claim | None:
        reply = await self._claim(keys=[QUEUE, EVENTS], args=[PREFIX, worker_id, lease_ms])
        if not reply:
            return None
        flat = [str(item) for item in reply[2]]
        return Claim(str(reply[0]), int(reply[1]), recovering=False,
                     job=dict(zip(flat[::2], flat[1::2], strict=True)))

    async def renew(self, claim: Claim, worker_id: str, lease_ms: int) -> bool:
        reply = await self._renew(
            keys=[job_key(claim.job_id), lease_key(claim.job_id)],  # KEYS[2]: see RENEW
            args=[worker_id, claim.epoch, lease_ms],
        )
        return bool(reply)

    async def orphaned_jobs(self) -> list[str]:
        """PROCESSING jobs whose lease is gone: their worker died or stalled."""
        processing = state_key(JobState.PROCESSING)
        members = cast(set[str], await awaitable(self.redis.smembers(processing)))
        ids = sorted(members)
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(lease_key(job_id))
            flags = await pipe.execute()
        return [job_id for job_id, flag in zip(ids, flags, strict=True) if not flag]

    async def recover(self, job_id: str, worker_id: str, lease_ms: int) -> tuple[str, str]:
        """('claimed', epoch) | ('failed', reason) | ('skip', why)."""
        reply = await self._recover(
            keys=[job_key(job_id), EVENTS, lease_key(job_id)],
            args=[PREFIX, job_id, worker_id, lease_ms],
        )
        return str(reply[0]), str(reply[1])

    async def commit_plan(
        self, claim: Claim, worker_id: str, chunks: Sequence[PlannedChunk]
    ) -> str:
        pairs: list[str] = []
        for chunk in chunks:
            pairs += [str(chunk.index), chunk.to_json()]
        reply = await self._commit_plan(
            keys=[job_key(claim.job_id), EVENTS, plan_key(claim.job_id)],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), len(chunks),
                  json.dumps({"chunk_count": len(chunks)}), *pairs],
        )
        return str(reply)

    async def plan(self, job_id: str) -> list[PlannedChunk]:
        raw = cast(dict[str, str], await awaitable(self.redis.hgetall(plan_key(job_id))))
        chunks = []
        for index, value in raw.items():
            entry = json.loads(value)
            chunks.append(PlannedChunk(int(index), float(entry["start"]),
                                       float(entry["duration"]), str(entry["checksum"])))
        return sorted(chunks, key=lambda c: c.index)

    async def commit_chunk(self, claim: Claim, worker_id: str, result: ChunkResult) -> str:
        """'ok', 'duplicate' (already committed; nothing changed) or why it was refused."""
        value = json.dumps({"text": result.text, "checksum": result.checksum,
                            "epoch": result.epoch, "worker": result.worker_id}, sort_keys=True)
        reply = await self._commit_chunk(
            keys=[job_key(claim.job_id), EVENTS, chunks_key(claim.job_id)],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), result.index, value],
        )
        return str(reply)

    async def committed_chunks(self, job_id: str) -> dict[int, ChunkResult]:
        raw = cast(dict[str, str], await awaitable(self.redis.hgetall(chunks_key(job_id))))
        results = {}
        for index, value in raw.items():
            entry = json.loads(value)
            results[int(index)] = ChunkResult(int(index), entry["text"], entry["checksum"],
                                              int(entry["epoch"]), entry["worker"])
        return results

    async def emit(self, claim: Claim, worker_id: str, event: str, data: dict[str, Any]) -> str:
        reply = await self._emit(
            keys=[job_key(claim.job_id), EVENTS],
            args=[claim.job_id, worker_id, claim.epoch, recovery_flag(claim), event,
                  json.dumps(data)],
        )
        return str(reply)

    async def complete(self, claim: Claim, worker_id: str, transcript: str) -> str:
        reply = await self._complete(
            keys=[job_key(claim.job_id), EVENTS, chunks_key(claim.job_id),
                  transcript_key(claim.job_id), lease_key(claim.job_id)],
            args=[PREFIX, claim.job_id, worker_id, claim.epoch, recovery_flag(claim), transcript],
        )
        return str(reply)

    async def fail(self, claim: Claim, worker_id: str, reason: str) -> str:
        reply = await self._fail(
            keys=[job_key(claim.job_id), EVENTS, lease_key(claim.job_id)],
            args=[PREFIX, claim.job_id, worker_id, claim.epoch, recovery_flag(claim), reason],
        )
        return str(reply)

    async def release(self, claim: Claim, worker_id: str) -> str:
        reply = await self._release(
            keys=[job_key(claim.job_id), EVENTS, lease_key(claim.job_id), QUEUE],
            args=[PREFIX, claim.job_id, worker_id, claim.epoch],
        )
        return str(reply)


def recovery_flag(claim: Claim) -> str:
    """The scripts' ``recovery`` argument: "1" while the claim is a takeover."""
    return "1" if claim.recovering else "0"
