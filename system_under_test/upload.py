"""One claimed upload job: a file, possibly still growing, streamed into an S3 multipart upload.

``UploadRunner.run`` is the whole path of an upload through the worker; read
it top to bottom:

1. open: a job without an upload creates one (with a fresh token stored on
   the object-to-be) and commits its id; a job that has one (taken over after
   a crash, or released) reloads its checkpoint and checks every committed
   part against ``ListParts``, sending a part again under its own number if
   S3 does not hold it as committed (same bytes, same ETag: safe).
2. stream: while the source holds a whole part past the committed offset
   (or, once finished, any bytes), read it, send it, commit its checkpoint
   (part number, ETag, size, offset) in one fenced step. A part sent but not
   checkpointed before a crash is simply sent again under the same number.
   A source that stops growing unfinished for its stale time is finalized
   as it is or failed, as the job says, with a ``stream_stale`` event.
3. finalize: ``CompleteMultipartUpload``. A repeated one, or ``NoSuchUpload``
   after a completion a crash hid, is settled by ``HEAD``: the object
   carries the job's token. Then the metadata object, then COMPLETED (which
   deletes the checkpoint).

A source missing on resume fails the job with ``file_missing_on_resume``.
A job that ends any other way than COMPLETED is put on the abort list in the
same step (``lua.move``), and ``abort_abandoned`` aborts its multipart
upload after the failure is committed, never before: a worker that lost the
job must not destroy the upload its successor is using.

Redis access goes through the transcription runner's ``_read``/``_write``:
a lost connection is retried while the lease may still be ours, a fencing
refusal raises ``Fenced``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from system_under_test import metrics
from system_under_test.config import Settings
from system_under_test.constants import metadata_key
from system_under_test.errors import Fenced, JobFailure, S3Error
from system_under_test.events import EventName
from system_under_test.pipeline import JobRunner
from system_under_test.store import Claim
from system_under_test.upload_store import Checkpoint, Part, UploadStore

if TYPE_CHECKING:
    from system_under_test.objectstore import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

# replies of the upload scripts that mean the checkpoint and this worker disagree
_DISAGREE = {"out_of_order", "no_upload", "has_upload"}

def read_range(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as source:
        source.seek(offset)
        return source.read(length)


class UploadRunner:
    def __init__(self, settings: Settings, jobs: JobRunner, store: UploadStore,
                 objects: ObjectStore | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.jobs = jobs  # phases, failpoints and Redis retries are shared with transcription
        self.store = store
        self.worker_id = settings.worker_id
        self.clock = clock
        self._objects = objects

    @property
    def s3(self) -> ObjectStore:
        # made on first use: a worker that never uploads never pays for boto3
        if self._objects is None:
            from system_under_test.objectstore import ObjectStore

            self._objects = ObjectStore(self.settings)
        return self._objects

    def close(self) -> None:
        if self._objects is not None:
            self._objects.close()

    async def at(self, point: str, claim: Claim, part: int | None = None) -> None:
        await self.jobs.at(point, claim, part)

    async def run(self, claim: Claim) -> None:
        """Take a claimed upload job to COMPLETED, or raise why not."""
        await self.at("recovery.started" if claim.recovering else "job.claimed", claim)
        checkpoint = await self.jobs._read(lambda: self.store.checkpoint(claim.job_id))
        completed: ObjectInfo | None = None
        if checkpoint.upload_id is None:
            owner = await self.jobs._read(lambda: self.store.owner_of(checkpoint.bucket,
                                                                        checkpoint.key))
            if owner == claim.job_id:
                await self.abort_strays(checkpoint)
            checkpoint = await self.begin(claim, checkpoint)
            if claim.recovering:
                await self.resumed(claim, checkpoint, reuploaded=[], uncommitted=[],
                                   completed=False)
        else:
            checkpoint, completed = await self.verify(claim, checkpoint)
        if completed is None:
            checkpoint = await self.stream(claim, checkpoint)
        await self.finalize(claim, checkpoint, completed)

    # -- 1. open --------------------------------------------------------------

    async def begin(self, claim: Claim, checkpoint: Checkpoint) -> Checkpoint:
        token = uuid.uuid4().hex
        upload_id = await self.s3.create(checkpoint.bucket, checkpoint.key, token)
        await self.at("upload.created", claim)
        data = {"upload_id": upload_id, "bucket": checkpoint.bucket, "key": checkpoint.key}
        try:
            reply = await self.jobs._write(lambda: self.store.begin(
                claim, self.worker_id, upload_id, token, data))
        except Fenced:
            # the job is someone else's: this upload would be nobody's
            try:
                await self.s3.abort(checkpoint.bucket, checkpoint.key, upload_id)
            except S3Error as exc:
                log.warning("job %s: could not abort the upload it could not commit (%s)",
                            claim.job_id, exc)
            raise
        if reply in _DISAGREE:
            raise JobFailure(f"the upload of job {claim.job_id} was started twice ({reply})")
        log.info("job %s: multipart upload %s started for s3://%s/%s", claim.job_id, upload_id,
                 checkpoint.bucket, checkpoint.key)
        await self.at("upload.started", claim)
        return await self.jobs._read(lambda: self.store.checkpoint(claim.job_id))

    async def abort_strays(self, checkpoint: Checkpoint) -> None:
        """Abort uploads of this job's object that a predecessor created but never committed.

        Called only while the job owns the object (the API refuses a second live
        job for it), so every upload in progress for it is one of ours.
        """
        for upload_id in await self.s3.pending_uploads(checkpoint.bucket, checkpoint.key):
            if await self.s3.abort(checkpoint.bucket, checkpoint.key, upload_id):
                metrics.UPLOAD_ABORTS.inc()
                log.warning("job %s: aborted upload %s, created before a crash and never "
                            "committed", checkpoint.job_id, upload_id)

    async def verify(self, claim: Claim,
                     checkpoint: Checkpoint) -> tuple[Checkpoint, ObjectInfo | None]:
        """Check the committed parts against S3; the object if the upload was completed."""
        assert checkpoint.upload_id is not None
        listed = await self.s3.list_parts(checkpoint.bucket, checkpoint.key,
                                          checkpoint.upload_id)
        completed: ObjectInfo | None = None
        reuploaded: list[int] = []
        # sent but never checkpointed (the crash fell in between): sent again in turn
        uncommitted = sorted(n for n in listed or {} if n >= checkpoint.next_part)
        if listed is None:
            # the upload is gone: completed by a predecessor that died before committing
            # it, or aborted by someone else
            completed = await self.ours(checkpoint)
            if completed is None:
                raise JobFailure(f"upload_lost: multipart upload {checkpoint.upload_id} no "
                                 f"longer exists and s3://{checkpoint.bucket}/{checkpoint.key} "
                                 "is not the object it would have made")
        else:
            source = Path(checkpoint.source)
            if not checkpoint.all_sent and not source.is_file():
                raise JobFailure(f"file_missing_on_resume: {source} is gone and "
                                 f"{self._remaining(checkpoint)} of it must still be sent")
            for part in checkpoint.parts:
                if listed.get(part.number) == (part.etag, part.size):
                    continue
                # S3 does not hold the part as committed: send the same bytes again
                etag = await self.send(claim, checkpoint, part.number, part.offset, part.size,
                                       missing="file_missing_on_resume")
                if etag != part.etag:
                    raise JobFailure(f"source_changed: part {part.number} of {source} (bytes "
                                     f"{part.offset}..{part.end}) has ETag {etag} now, "
                                     f"{part.etag} when it was committed")
                reuploaded.append(part.number)
                metrics.UPLOAD_REUPLOADS.inc()
        await self.at("upload.verified", claim)
        if claim.recovering:
            await self.resumed(claim, checkpoint, reuploaded, uncommitted, completed is not None)
        return checkpoint, completed

    async def resumed(self, claim: Claim, checkpoint: Checkpoint, reuploaded: list[int],
                      uncommitted: list[int], completed: bool) -> None:
        data = {"parts": [part.number for part in checkpoint.parts],
                "bytes_sent": checkpoint.bytes_sent, "reuploaded": reuploaded,
                "uncommitted_in_s3": uncommitted, "completed_in_s3": completed}
        await self.jobs._write(lambda: self.jobs.store.emit(
            claim, self.worker_id, EventName.PROCESSING_RESUMED, data))
        log.info("job %s resumed at epoch %d: %d parts, %d bytes committed%s", claim.job_id,
                 claim.epoch, len(checkpoint.parts), checkpoint.bytes_sent,
                 "; the object was already complete" if completed else "")
        await self.at("recovery.resumed", claim)

    # -- 2. stream ------------------------------------------------------------

    async def stream(self, claim: Claim, checkpoint: Checkpoint) -> Checkpoint:
        """Send and checkpoint parts until every byte of the finished source is committed."""
        source = Path(checkpoint.source)
        offset, number = checkpoint.bytes_sent, checkpoint.next_part
        finished = checkpoint.finished_size
        seen_size, grew_at = -1, self.clock()
        while not (finished is not None and offset >= finished and number > 1):
            try:
                size = source.stat().st_size
            except FileNotFoundError:
                raise JobFailure(f"file_missing: {source} disappeared with "
                                 f"{offset} bytes sent") from None
            if size != seen_size:
                seen_size, grew_at = size, self.clock()
            if finished is not None and size < finished:
                raise JobFailure(f"source_shrank: {source} has {size} bytes, fewer than the "
                                 f"{finished} it was finished with")
            length = min(checkpoint.part_size, (finished if finished is not None else size)
                         - offset)
            # a whole part, the tail of a finished source, or the one empty part of an
            # empty source (S3 needs at least one part)
            if length == checkpoint.part_size or (finished is not None
                                                  and (length > 0 or number == 1)):
                await self.send_and_commit(claim, checkpoint, number, offset, length)
                offset, number = offset + length, number + 1
                continue
            await self.at("upload.waiting", claim)
            idle = self.clock() - grew_at
            if idle * 1000 >= checkpoint.stale_after_ms:
                finished = await self.stale(claim, checkpoint, size, idle)
                continue
            await asyncio.sleep(self.settings.upload_poll_ms / 1000)
            finished = await self.jobs._read(lambda: self.store.finished_size(claim.job_id))
        return await self.jobs._read(lambda: self.store.checkpoint(claim.job_id))

    async def stale(self, claim: Claim, checkpoint: Checkpoint, size: int,
                    idle: float) -> int | None:
        """Handle a source idle past its stale time; the size it is final at."""
        action = checkpoint.on_stale
        data = {"size": size, "idle_ms": round(idle * 1000), "action": action}
        reply = await self.jobs._write(lambda: self.store.mark_stale(
            claim, self.worker_id, size, action, data))
        if reply == "finished":  # the writer finished it meanwhile
            return await self.jobs._read(lambda: self.store.finished_size(claim.job_id))
        if action == "fail":
            raise JobFailure(f"stale_stream: {checkpoint.source} did not grow for "
                             f"{idle:.1f}s and was never marked finished")
        log.warning("job %s: %s did not grow for %.1fs; finalizing it at %d bytes",
                    claim.job_id, checkpoint.source, idle, size)
        return size

    async def send(self, claim: Claim, checkpoint: Checkpoint, number: int, offset: int,
                   length: int, missing: str = "file_missing") -> str:
        """Read bytes ``offset..offset+length`` of the source and send them as part ``number``."""
        assert checkpoint.upload_id is not None
        source = Path(checkpoint.source)
        try:
            body = await asyncio.to_thread(read_range, source, offset, length)
        except FileNotFoundError:
            raise JobFailure(f"{missing}: {source} disappeared before part {number} "
                             f"(bytes {offset}..{offset + length}) was read") from None
        if len(body) != length:
            raise JobFailure(f"source_shrank: {source} ends before byte {offset + length}")
        await self.at("upload.part.before_upload", claim, number)
        return await self.s3.upload_part(checkpoint.bucket, checkpoint.key,
                                         checkpoint.upload_id, number, body)

    async def send_and_commit(self, claim: Claim, checkpoint: Checkpoint, number: int,
                              offset: int, length: int) -> None:
        etag = await self.send(claim, checkpoint, number, offset, length)
        await self.at("upload.part.uploaded", claim, number)
        part = Part(number, etag, length, offset)
        reply = await self.jobs._write(lambda: self.store.commit_part(claim, self.worker_id,
                                                                      part))
        if reply in _DISAGREE:
            raise JobFailure(f"part {number} (bytes {offset}..{offset + length}) could not be "
                             f"checkpointed: {reply}")
        if reply == "duplicate":  # a retry whose first attempt landed (its reply was lost)
            log.info("part %d of job %s was already checkpointed", number, claim.job_id)
        else:
            metrics.UPLOAD_PARTS.inc()
            metrics.UPLOAD_BYTES.inc(length)
        await self.at("upload.part.committed", claim, number)

    # -- 3. finalize ----------------------------------------------------------

    async def finalize(self, claim: Claim, checkpoint: Checkpoint,
                       completed: ObjectInfo | None) -> None:
        assert checkpoint.upload_id is not None
        bucket, key = checkpoint.bucket, checkpoint.key
        if completed is None:
            await self.at("upload.before_complete", claim)
            etag = await self.s3.complete(bucket, key, checkpoint.upload_id,
                                          [(part.number, part.etag) for part in checkpoint.parts])
            if etag is None:
                completed = await self.ours(checkpoint)
                if completed is None:
                    raise JobFailure(f"upload_lost: multipart upload {checkpoint.upload_id} "
                                     "vanished before it could be completed")
                etag = completed.etag
            await self.at("upload.completed_in_s3", claim)
        else:
            etag = completed.etag
        size = sum(part.size for part in checkpoint.parts)
        # the same content every time: writing it again after a crash changes nothing
        await self.s3.put_json(bucket, metadata_key(key), {
            "job_id": checkpoint.job_id, "source": checkpoint.source, "bucket": bucket,
            "key": key, "size": size, "parts": len(checkpoint.parts),
            "part_size": checkpoint.part_size, "etag": etag, "upload_id": checkpoint.upload_id,
            "token": checkpoint.token})
        await self.at("upload.metadata_written", claim)
        data = {"size": size, "parts": len(checkpoint.parts), "etag": etag}
        await self.jobs.complete(claim, lambda: self.store.complete(claim, self.worker_id, etag,
                                                                    data))
        log.info("job %s completed: s3://%s/%s, %d bytes in %d parts", claim.job_id, bucket,
                 key, size, len(checkpoint.parts))
        await self.at("job.completed", claim)

    async def ours(self, checkpoint: Checkpoint) -> ObjectInfo | None:
        """The object, if it is the one this job's upload made (its token, its size)."""
        info = await self.s3.head(checkpoint.bucket, checkpoint.key)
        if info is None or info.token != checkpoint.token:
            return None
        if checkpoint.all_sent and info.size != checkpoint.bytes_sent:
            return None
        return info

    @staticmethod
    def _remaining(checkpoint: Checkpoint) -> str:
        if checkpoint.finished_size is None:
            return f"everything after byte {checkpoint.bytes_sent} (it was never finished)"
        return f"{checkpoint.finished_size - checkpoint.bytes_sent} bytes"

    # -- ended jobs -----------------------------------------------------------

    async def abort_abandoned(self) -> int:
        """Abort the multipart uploads of upload jobs that ended without completing.

        Any worker may run it, any number of times: an abort of an upload that is
        already gone is a no-op, and a job leaves the list only once its uploads
        are gone. Returns how many jobs it cleared.
        """
        cleared = 0
        for job_id in await self.store.abandoned():
            if not await self.jobs.store.job(job_id):
                await self.store.aborted(job_id)  # the job itself is gone
                continue
            checkpoint = await self.store.checkpoint(job_id)
            if checkpoint.upload_id is not None and await self.s3.abort(
                    checkpoint.bucket, checkpoint.key, checkpoint.upload_id):
                metrics.UPLOAD_ABORTS.inc()
                log.info("job %s ended without completing; aborted upload %s", job_id,
                         checkpoint.upload_id)
            if await self.store.owner_of(checkpoint.bucket, checkpoint.key) == job_id:
                await self.abort_strays(checkpoint)
            await self.store.aborted(job_id)
            cleared += 1
        return cleared
