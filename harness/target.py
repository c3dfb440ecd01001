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
from typing import Any, Protocol

import redis


@dataclass(frozen=True)
class Wiring:
    """Where the services of one run are, as the worker should see them."""

    redis_url: str  # usually the Toxiproxy listener in front of the data Redis
    openai_base_url: str
    data_dir: Path


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

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "state": self.state, "epoch": self.epoch,
            "retry_count": self.retry_count, "max_retries": self.max_retries,
            "chunk_count": self.chunk_count, "chunks_done": self.chunks_done,
            "progress": self.progress, "error": self.error, "transcript": self.transcript,
            "committed_chunks": {str(k): v for k, v in self.committed_chunks.items()},
            "state_sets": self.state_sets,
        }


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
