"""Every Redis key the reference worker uses, in one place.

All keys share the ``crashlab:`` prefix so a harness can flush exactly them.

    crashlab:queue                   LIST    ids of QUEUED jobs; LPUSH to enqueue, RPOP to claim
    crashlab:events                  STREAM  every event of every job (schema: ``events``)
    crashlab:rejected                STREAM  writes refused by the fencing check (diagnostics:
                                             job_id, worker_id, epoch, current_epoch, op, reason)
    crashlab:retried                 STREAM  writes that found their own effect already in place:
                                             the retry of a command Redis applied but whose
                                             reply was lost (diagnostics: job_id, worker_id,
                                             epoch, op, item, ts_ms); each changed nothing
    crashlab:deadlines               ZSET    job id -> absolute deadline (ms, Redis TIME) of
                                             live jobs submitted with a timeout (an ending
                                             removes the job)
    crashlab:state:<STATE>           SET     ids of the jobs in that state (one set per JobState);
                                             a job is in exactly one of them
    crashlab:job:<id>                HASH    the job (fields: ``JobField``)
    crashlab:job:<id>:plan           HASH    chunk index -> JSON {start, duration, checksum};
                                             written once chunking is done
    crashlab:job:<id>:chunks         HASH    chunk index -> JSON {text, checksum, epoch, worker};
                                             one field per committed chunk, never overwritten
    crashlab:job:<id>:events         STREAM  the job's own events (same entries as crashlab:events)
    crashlab:job:<id>:lease          STRING  "<worker_id>|<epoch>" with a PX TTL; gone = worker lost
    crashlab:job:<id>:transcript     STRING  the assembled transcript of a COMPLETED job
    crashlab:job:<id>:parts          HASH    upload part number -> JSON {etag, size, offset, epoch,
                                             worker}: the upload's checkpoint, one field per part
                                             committed; deleted when the upload completes
    crashlab:upload:targets          HASH    "<bucket>/<key>" -> id of the upload job that owns it;
                                             a second live job for the same object is refused
    crashlab:upload:abort            SET     ids of upload jobs that ended without completing and
                                             whose multipart upload must still be aborted
"""

from __future__ import annotations

from enum import StrEnum

PREFIX = "crashlab"
QUEUE = f"{PREFIX}:queue"
EVENTS = f"{PREFIX}:events"
REJECTED = f"{PREFIX}:rejected"
RETRIED = f"{PREFIX}:retried"
DEADLINES = f"{PREFIX}:deadlines"
UPLOAD_TARGETS = f"{PREFIX}:upload:targets"
UPLOAD_ABORTS = f"{PREFIX}:upload:abort"


class JobState(StrEnum):
    """Lifecycle: QUEUED -> PROCESSING -> COMPLETED | FAILED | TIMED_OUT | CANCELLED."""

    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    TIMED_OUT = "TIMED_OUT"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self not in (JobState.QUEUED, JobState.PROCESSING)


class JobKind(StrEnum):
    """What a job does: ``transcribe`` media into text, or ``upload`` a file to S3."""

    TRANSCRIBE = "transcribe"
    UPLOAD = "upload"


class JobField(StrEnum):
    """Fields of the ``crashlab:job:<id>`` hash."""

    ID = "id"
    KIND = "kind"
    STATE = "state"
    EPOCH = "epoch"  # fencing token: INCR on every claim; writes carry it and are checked
    WORKER = "worker_id"  # holder of the current epoch
    RECOVERING = "recovering"  # "1" while the current epoch is a recovery incarnation
    RETRY_COUNT = "retry_count"  # workers lost so far
    MAX_RETRIES = "max_retries"
    SOURCE = "source"  # path of the original media
    FILENAME = "filename"  # name given at upload
    SIZE = "size"
    DURATION = "duration"  # seconds, from the probe at upload
    CHUNK_SECONDS = "chunk_seconds"
    CHUNK_COUNT = "chunk_count"  # set when the plan is committed
    PLAN_EPOCH = "plan_epoch"  # the epoch that committed the plan (a retry of it is a no-op)
    # ``emitted_<event>``: the epoch an at-most-once-per-epoch event (processing_resumed)
    # was last published at, so a retried publish publishes nothing
    EMITTED_PREFIX = "emitted_"
    CHUNKS_DONE = "chunks_done"
    PROGRESS = "progress"  # chunks_done / chunk_count, 0..1
    ERROR = "error"  # reason of FAILED / TIMED_OUT / CANCELLED
    SEQ = "seq"  # per-job event sequence number (last one used)
    DEADLINE_MS = "deadline_ms"  # absolute, Redis TIME; no write is accepted after it
    CREATED_MS = "created_ms"
    UPDATED_MS = "updated_ms"
    # upload jobs only: the object, the source, and the checkpoint (see ``upload``)
    BUCKET = "bucket"
    S3_KEY = "s3_key"
    PART_SIZE = "part_size"  # bytes per part, fixed at submit: offsets never depend on settings
    STALE_AFTER_MS = "stale_after_ms"  # a source that stops growing this long is stale
    STALE_EPOCH = "stale_epoch"  # the epoch that marked the source stale (once per epoch)
    ON_STALE = "on_stale"  # "finalize" or "fail"
    FINISHED_SIZE = "finished_size"  # set once the writer marks the source finished
    UPLOAD_ID = "upload_id"  # the multipart upload, committed right after it is created
    UPLOAD_TOKEN = "upload_token"  # also stored on the object: recognises our own completion
    NEXT_PART = "next_part"  # part number the next part gets
    BYTES_SENT = "bytes_sent"  # bytes in committed parts = file offset of the next part
    PARTS_DONE = "parts_done"
    OBJECT_ETAG = "object_etag"  # ETag of the completed object


def state_key(state: JobState | str) -> str:
    return f"{PREFIX}:state:{state}"


def job_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}"


def plan_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:plan"


def chunks_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:chunks"


def job_events_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:events"


def lease_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:lease"


def transcript_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:transcript"


def parts_key(job_id: str) -> str:
    return f"{PREFIX}:job:{job_id}:parts"


def upload_target(bucket: str, key: str) -> str:
    """The field of ``UPLOAD_TARGETS`` that names one object."""
    return f"{bucket}/{key}"


# beside each uploaded object, its metadata object
METADATA_SUFFIX = ".metadata.json"


def metadata_key(key: str) -> str:
    """Where the metadata object of ``key`` is written."""
    return key + METADATA_SUFFIX
