"""The seam between the harness and the worker it attacks.

A target says how to start the worker and its API, which failpoints (phases)
it has, how to submit work, and how to read its state and events out of
Redis. The harness never imports the worker's code: it runs the commands
the target gives and reads what the target's ``snapshot`` returns. The
reference worker's adapter is ``harness.targets.reference``; a user's own
worker plugs in by implementing this Protocol (see README, "Your own worker").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import redis


@dataclass(frozen=True)
class Wiring:
    """Where the services of one run are, as the worker should see them."""

    redis_url: str  # usually the Toxiproxy listener in front of the data Redis
    openai_base_url: str
    data_dir: Path
    s3_endpoint_url: str = ""  # the S3 server, when the run has upload jobs


@dataclass(frozen=True)
class WorkerSpec:
    """One worker incarnation to start."""

    worker_id: str
    control_url: str
    failpoints: str = ""


@dataclass(frozen=True)
class JobSnapshot:
    """The final state of one job, as the checkers need it."""

    job_id: str
    state: str
    epoch: int
    retry_count: int
    max_retries: int
    chunk_count: int | None
    chunks_done: int
    progress: float
    error: str | None
    transcript: str | None
    committed_chunks: dict[int, dict[str, Any]]
    state_sets: list[str]  # every state index that holds this job (must be exactly one)
    kind: str = "transcribe"  # or "upload"
    # upload jobs: the checkpoint as the store holds it (bucket, key, upload_id, bytes_sent,
    # next_part, finished_size, parts {number: {etag, size, offset, ...}}); parts is empty
    # once the job completed and cleaned up
    upload: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "state": self.state, "epoch": self.epoch,
            "retry_count": self.retry_count, "max_retries": self.max_retries,
            "chunk_count": self.chunk_count, "chunks_done": self.chunks_done,
            "progress": self.progress, "error": self.error, "transcript": self.transcript,
            "committed_chunks": {str(k): v for k, v in self.committed_chunks.items()},
            "state_sets": self.state_sets, "kind": self.kind, "upload": self.upload,
        }


@dataclass(frozen=True)
class JobInspection:
    """A job's raw state in Redis right now, for a person looking at it (``crashlab debug``).

    Unlike ``JobSnapshot`` it is read while the job runs and is never checked:
    ``fields`` is the job record as stored, ``plan`` and ``chunks`` the chunk
    plan and the committed chunk results by index, ``indexes`` every key that
    lists the job with how (``"member"``, ``"position 0"``, a score), and the
    lease is who holds it and for how many more milliseconds.
    """

    job_id: str
    fields: dict[str, str]
    plan: dict[int, dict[str, Any]]
    chunks: dict[int, dict[str, Any]]
    indexes: dict[str, str]
    lease_holder: str | None
    lease_ttl_ms: int | None
    keys: dict[str, str]  # what each part is called in the store, e.g. {"job": "app:job:42"}


@runtime_checkable
class InspectableTarget(Protocol):
    """A target that can show a job's raw state; optional (the debugger falls back
    to ``Target.snapshot``)."""

    def inspect(self, client: redis.Redis, job_id: str) -> JobInspection: ...


class Target(Protocol):
    name: str

    def phases(self) -> Mapping[str, str]:
        """Failpoint name -> what the worker is doing there."""
        ...

    def api_argv(self, host: str, port: int) -> Sequence[str]: ...

    def worker_argv(self) -> Sequence[str]: ...

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        """Environment variables for the API (``worker`` None) or one worker.

        ``settings`` are the scenario's knobs (e.g. ``lease_ttl_ms``), given to both.
        """
        ...

    def submit(self, api_url: str, media: Path, *, max_retries: int | None = None,
               timeout_s: float | None = None) -> str:
        """Submit one job through the worker's real API; returns its id."""
        ...

    def submit_upload(self, api_url: str, source: Path, *, bucket: str, key: str,
                      finished: bool, max_retries: int | None = None,
                      timeout_s: float | None = None, stale_after_s: float | None = None,
                      on_stale: str | None = None) -> str:
        """Submit one upload of ``source`` (``finished``: complete already) to
        ``s3://bucket/key`` through the worker's API; returns its id."""
        ...

    def finish_upload(self, api_url: str, job_id: str) -> int:
        """Tell the worker the upload's source is complete; returns the size it recorded."""
        ...

    def upload_source_dir(self, wiring: Wiring) -> Path:
        """Where upload sources must be written for the worker to accept them."""
        ...

    def upload_metadata_key(self, key: str) -> str | None:
        """The metadata object the worker writes beside ``key`` (None: it writes none)."""
        ...

    def job_ids(self, client: redis.Redis) -> list[str]: ...

    def chunk_file(self, wiring: Wiring, job_id: str, index: int) -> Path:
        """Where the worker keeps chunk ``index`` of a job (file faults damage it)."""
        ...

    def source_files(self, wiring: Wiring, job_id: str) -> list[Path]:
        """The job's original media as the worker stored it."""
        ...

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot: ...

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id ``after`` as (id, event dict) pairs."""
        ...

    def read_rejected(self, client: redis.Redis) -> list[dict[str, Any]]:
        """Writes the worker refused because the writer no longer owned the job."""
        ...

    def reset(self, client: redis.Redis) -> None:
        """Remove every key the worker owns (between examples)."""
        ...
