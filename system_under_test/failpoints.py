"""Named failpoints: places where a harness can stop, slow or break the worker.

In the spirit of fail-rs and gofail. A point is a name from ``POINTS``; the
worker calls ``await failpoints.hit(name, job=..., chunk=...)`` there. An
unarmed point costs one dict lookup.

Action grammar (``CRASHLAB_FAILPOINTS`` or the control channel)::

    spec    := point "=" actions { ";" point "=" actions }
    actions := term { "->" term }
    term    := [ count "*" ] kind [ "(" arg ")" ]
    kind    := off | pause | sleep(ms) | error

Terms apply in order; a term with a count applies to that many hits, then the
next term takes over; a term without a count applies to every later hit.
``2*off->pause`` lets two hits pass and pauses the third and every later one;
``2*off->1*pause`` pauses only the third.

``pause`` records the hit (point, worker id, pid, hit number, job, chunk) where
the control channel can read it, logs it, and blocks the calling coroutine
until it is released or the process is killed. ``error`` raises
``FailpointError``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

# The action grammar and its semantics are the failpoint helper's, the same one
# that users' workers import (the one module of the harness this package may use).
from harness.failpoint import (
    FailpointError,
    Kind,
    Term,
    action_for,
    before_hit_reported,
    parse_actions,
)

log = logging.getLogger(__name__)

# The phase catalog, in the order a job meets them. A target adapter reads it
# from here (through the control channel's /points), so keep it complete.
POINTS: dict[str, str] = {
    "job.claimed": "a fresh job was claimed (lease and epoch taken), nothing done yet",
    "chunking.started": "before ffmpeg cuts the media",
    "chunking.split": "chunk files written, chunk plan not yet committed",
    "chunking.committed": "chunk plan committed",
    "chunk.before_request": "a chunk is about to be sent to the transcription service",
    "chunk.transcribed.before_commit": "the service answered; the result is not yet committed",
    "chunk.committed": "a chunk result, its progress and its event were committed",
    "assembly.started": "every chunk is committed; the transcript is being assembled",
    "job.before_complete": "transcript assembled, completion not yet committed",
    "job.completed": "the job was committed as COMPLETED",
    "recovery.started": "an interrupted job was taken over (recovery_started published)",
    "recovery.verified": "chunk files checked against their checksums",
    "recovery.rechunked": "missing or corrupt chunk files were cut again from the original",
    "recovery.resumed": "processing_resumed published; remaining chunks about to run",
    "lease.renew": "the lease keeper is about to renew a lease (paused: a stalled heartbeat)",
    # the upload job kind (it also meets job.claimed, recovery.started, recovery.resumed)
    "upload.created": "the multipart upload was created in S3; its id is not yet committed",
    "upload.started": "the upload id and token were committed (an empty checkpoint)",
    "upload.verified": "resuming: the checkpoint was checked against S3's ListParts",
    "upload.waiting": "the source has no full part to send yet; waiting for it to grow",
    "upload.part.before_upload": "a part was read from the source and is about to be sent",
    "upload.part.uploaded": "S3 has the part; its checkpoint is not yet committed",
    "upload.part.committed": "the part's checkpoint (number, ETag, size, offset) was committed",
    "upload.before_complete": "every part is committed; CompleteMultipartUpload not yet sent",
    "upload.completed_in_s3": "S3 assembled the object; metadata and completion not written",
    "upload.metadata_written": "the metadata object was written; completion not committed",
}


def parse_spec(text: str) -> dict[str, tuple[Term, ...]]:
    """Parse ``point=actions;point=actions``; unknown points are an error."""
    armed: dict[str, tuple[Term, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, actions = item.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"bad failpoint {item!r}: expected POINT=ACTIONS")
        check_point(name)
        armed[name] = parse_actions(actions)
    return armed


def check_point(name: str) -> None:
    if name not in POINTS:
        raise ValueError(f"unknown failpoint {name!r}; known points: {', '.join(POINTS)}")


@dataclass
class Hit:
    """A recorded hit of an armed point that paused or raised."""

    id: int
    point: str
    action: str
    hit: int
    worker_id: str
    pid: int
    job: str | None
    chunk: int | None
    ts: float
    released: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "point": self.point, "action": self.action, "hit": self.hit,
            "worker_id": self.worker_id, "pid": self.pid, "job": self.job,
            "chunk": self.chunk, "ts": self.ts, "released": self.released,
        }


@dataclass
class _Armed:
    terms: tuple[Term, ...]
    hits: int = 0
    releases: list[asyncio.Event] = field(default_factory=list)

    def action_for(self, hit: int) -> Term:
        return action_for(self.terms, hit)


class Failpoints:
    """The registry of armed points in one worker process."""

    def __init__(self, worker_id: str, spec: str = "") -> None:
        self.worker_id = worker_id
        self._armed: dict[str, _Armed] = {}
        self.hits: list[Hit] = []
        self._hit_added = asyncio.Condition()  # binds to the running loop on first use
        for name, terms in parse_spec(spec).items():
            self._armed[name] = _Armed(terms)

    def arm(self, name: str, actions: str) -> None:
        check_point(name)
        terms = parse_actions(actions)
        self.disarm(name)
        self._armed[name] = _Armed(terms)
        log.info("failpoint armed: %s=%s", name, actions)

    def disarm(self, name: str) -> None:
        armed = self._armed.pop(name, None)
        if armed is not None:
            for event in armed.releases:
                event.set()

    def release(self, name: str | None = None) -> int:
        """Let paused hits go on (at ``name``, or everywhere); returns how many."""
        count = 0
        for point, armed in self._armed.items():
            if name is None or point == name:
                for event in armed.releases:
                    if not event.is_set():
                        event.set()
                        count += 1
                armed.releases.clear()
        for hit in self.hits:
            if name is None or hit.point == name:
                hit.released = True
        return count

    def armed(self) -> dict[str, dict[str, Any]]:
        return {
            name: {"actions": "->".join(t.text() for t in a.terms), "hits": a.hits}
            for name, a in self._armed.items()
        }

    async def hit(self, name: str, *, job: str | None = None, chunk: int | None = None) -> None:
        armed = self._armed.get(name)
        if armed is None:
            return
        armed.hits += 1
        term = armed.action_for(armed.hits)
        if term.kind is Kind.OFF:
            return
        if term.kind is Kind.SLEEP:
            await asyncio.sleep(term.arg / 1000)
            return
        before_hit_reported()  # e.g. coverage data saved before the harness can kill us
        record = Hit(len(self.hits) + 1, name, term.kind.value, armed.hits, self.worker_id,
                     os.getpid(), job, chunk, time.time())
        self.hits.append(record)
        log.warning("failpoint hit: %s", record.to_json())
        await self._notify()
        if term.kind is Kind.ERROR:
            raise FailpointError(f"failpoint {name} (hit {armed.hits}) armed with error")
        release = asyncio.Event()
        armed.releases.append(release)
        await release.wait()
        record.released = True

    async def wait_for_hits(self, since: int, timeout: float) -> list[Hit]:
        """Hits with id > ``since``, waiting up to ``timeout`` for the first one."""
        async with self._hit_added:
            try:
                await asyncio.wait_for(
                    self._hit_added.wait_for(lambda: len(self.hits) > since), timeout
                )
            except TimeoutError:
                pass
        return self.hits[since:]

    async def _notify(self) -> None:
        async with self._hit_added:
            self._hit_added.notify_all()
