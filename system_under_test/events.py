"""The event schema: what the worker publishes to its Redis Streams.

Every state change appends one entry, in the same atomic step as the change,
to both ``crashlab:events`` and ``crashlab:job:<id>:events``. Entry fields
(all strings, as Redis stores them):

    event      one of ``EventName``
    job_id     the job
    worker_id  who wrote it ("api" for submission and cancellation)
    epoch      the job's fencing epoch when it was written
    seq        per-job sequence number: 1, 2, 3, ... with no gaps
    ts_ms      wall-clock milliseconds from Redis ``TIME``
    recovery   "1" when written by a recovery incarnation, else "0"
    data       JSON object with the event's details (listed below)

Events and their ``data``:

    job_queued          {filename, size, duration, max_retries[, deadline_ms]}
    job_claimed         {}
    chunking_completed  {chunk_count}
    chunk_committed     {chunk, chunks_done, chunk_count}
    job_completed       {chunk_count, transcript_chars}
    job_failed          {reason}
    job_cancelled       {previous_state}
    job_released        {}                      graceful shutdown, no retry counted
    job_timed_out       {deadline_ms, now_ms, previous_state}   written by a worker's
                                                timeout monitor at a new epoch
    recovery_started    {previous_worker, previous_epoch, retry_count}
    processing_resumed  {committed, remaining, rechunked}
    recovery_completed  {chunk_count}
    recovery_failed     {reason}

Upload jobs (``upload``) use the same lifecycle events (``job_queued`` then
carries {kind, source, bucket, key, part_size, finished_size, max_retries},
``job_completed`` {size, parts, etag}, ``recovery_completed`` {parts, size},
``processing_resumed`` {parts, bytes_sent, reuploaded, uncommitted_in_s3,
completed_in_s3}) and:

    upload_started      {upload_id, bucket, key}        the multipart upload exists
    part_committed      {part, size, offset, etag, bytes_sent, parts_done}
                                                a part's checkpoint
    source_finished     {size}                  written by the API when the writer
                                                marks the source complete (not fenced:
                                                it carries the job's epoch at that time)
    stream_stale        {size, idle_ms, action}  the source stopped growing unfinished;
                                                ``action`` is "finalize" or "fail"
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventName(StrEnum):
    JOB_QUEUED = "job_queued"
    JOB_CLAIMED = "job_claimed"
    CHUNKING_COMPLETED = "chunking_completed"
    CHUNK_COMMITTED = "chunk_committed"
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"
    JOB_RELEASED = "job_released"
    JOB_TIMED_OUT = "job_timed_out"
    RECOVERY_STARTED = "recovery_started"
    PROCESSING_RESUMED = "processing_resumed"
    RECOVERY_COMPLETED = "recovery_completed"
    RECOVERY_FAILED = "recovery_failed"
    UPLOAD_STARTED = "upload_started"
    PART_COMMITTED = "part_committed"
    SOURCE_FINISHED = "source_finished"
    STREAM_STALE = "stream_stale"


@dataclass(frozen=True)
class Event:
    """One stream entry, parsed."""

    stream_id: str
    event: str
    job_id: str
    worker_id: str
    epoch: int
    seq: int
    ts_ms: int
    recovery: bool
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_fields(cls, stream_id: str, fields: dict[str, str]) -> Event:
        return cls(
            stream_id=stream_id,
            event=fields["event"],
            job_id=fields["job_id"],
            worker_id=fields["worker_id"],
            epoch=int(fields["epoch"]),
            seq=int(fields["seq"]),
            ts_ms=int(fields["ts_ms"]),
            recovery=fields["recovery"] == "1",
            data=json.loads(fields.get("data") or "{}"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.stream_id,
            "event": self.event,
            "job_id": self.job_id,
            "worker_id": self.worker_id,
            "epoch": self.epoch,
            "seq": self.seq,
            "ts_ms": self.ts_ms,
            "recovery": self.recovery,
            "data": self.data,
        }
