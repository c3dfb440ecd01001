"""Target adapter for the reference worker (``python -m system_under_test``).

It knows the worker's command line, environment variables, Redis key
layout and event fields as a *contract* written down here, the way a user
would describe their own worker; it imports nothing from
``system_under_test``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import httpx
import redis

from harness.errors import CrashlabError
from harness.target import JobSnapshot, Wiring, WorkerSpec

PREFIX = "crashlab"
STATES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")

# The worker's failpoints, in the order a job meets them (its control channel
# serves the same list at /points; a test keeps the two equal).
PHASES: dict[str, str] = {
    "job.claimed": "a fresh job was claimed, nothing done yet",
    "chunking.started": "before ffmpeg cuts the media",
    "chunking.split": "chunk files written, plan not committed",
    "chunking.committed": "chunk plan committed",
    "chunk.before_request": "a chunk is about to be sent",
    "chunk.transcribed.before_commit": "the service answered, result not committed",
    "chunk.committed": "a chunk result and its event were committed",
    "assembly.started": "assembling the transcript",
    "job.before_complete": "transcript assembled, completion not committed",
    "job.completed": "the job was committed as COMPLETED",
    "recovery.started": "an interrupted job was taken over",
    "recovery.verified": "chunk files checked against their checksums",
    "recovery.rechunked": "damaged chunk files were cut again",
    "recovery.resumed": "processing_resumed published",
    "lease.renew": "the lease keeper is about to renew a lease",
}


class ReferenceTarget:
    name = "reference"

    def __init__(self, python: str | None = None, pythonpath: Path | None = None) -> None:
        self.python = python or sys.executable
        # a folder searched first for ``system_under_test`` (a patched copy, for mutants)
        self.pythonpath = pythonpath

    def phases(self) -> Mapping[str, str]:
        return PHASES

    def api_argv(self, host: str, port: int) -> Sequence[str]:
        return [self.python, "-m", "system_under_test", "api", "--host", host,
                "--port", str(port)]

    def worker_argv(self) -> Sequence[str]:
        return [self.python, "-m", "system_under_test", "worker"]

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        env = {
            "CRASHLAB_REDIS_URL": wiring.redis_url,
            "CRASHLAB_DATA_DIR": str(wiring.data_dir),
            "OPENAI_BASE_URL": wiring.openai_base_url,
            "OPENAI_API_KEY": "crashlab-local",
        }
        if self.pythonpath is not None:
            env["PYTHONPATH"] = str(self.pythonpath)
        if worker is not None:
            env |= {
                "CRASHLAB_WORKER_ID": worker.worker_id,
                "CRASHLAB_CONTROL_URL": worker.control_url,
                "CRASHLAB_FAILPOINTS": worker.failpoints,
            }
        env |= {f"CRASHLAB_{k.upper()}": v for k, v in settings.items()}
        return env

    def submit(self, api_url: str, media: Path, *, max_retries: int | None = None,
               timeout_s: float | None = None) -> str:
        data = {} if max_retries is None else {"max_retries": str(max_retries)}
        if timeout_s is not None:
            data["timeout_s"] = str(timeout_s)
        with media.open("rb") as handle:
            response = httpx.post(f"{api_url}/jobs", files={"file": (media.name, handle,
                                                                     "audio/wav")},
                                  data=data, timeout=30.0)
        if response.status_code != 201:
            raise CrashlabError(f"the API refused the job: {response.status_code} "
                                f"{response.text}")
        return str(response.json()["job_id"])

    def chunk_file(self, wiring: Wiring, job_id: str, index: int) -> Path:
        return wiring.data_dir / "jobs" / job_id / "chunks" / f"chunk-{index:04d}.wav"

    def source_files(self, wiring: Wiring, job_id: str) -> list[Path]:
        return sorted((wiring.data_dir / "jobs" / job_id).glob("source.*"))

    def job_ids(self, client: redis.Redis) -> list[str]:
        ids: set[str] = set()
        for state in STATES:
            ids |= set(client.smembers(f"{PREFIX}:state:{state}"))  # type: ignore[arg-type]
        return sorted(ids)

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot:
        key = f"{PREFIX}:job:{job_id}"
        job: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
        chunks: dict[str, str] = client.hgetall(f"{key}:chunks")  # type: ignore[assignment]
        sets = [s for s in STATES if client.sismember(f"{PREFIX}:state:{s}", job_id)]
        count = job.get("chunk_count")
        return JobSnapshot(
            job_id=job_id, state=job.get("state", "MISSING"),
            epoch=int(job.get("epoch", 0)), retry_count=int(job.get("retry_count", 0)),
            max_retries=int(job.get("max_retries", 0)),
            chunk_count=int(count) if count else None,
            chunks_done=int(job.get("chunks_done", 0)),
            progress=float(job.get("progress", 0)), error=job.get("error") or None,
            transcript=client.get(f"{key}:transcript"),  # type: ignore[arg-type]
            committed_chunks={int(i): json.loads(v) for i, v in chunks.items()},
            state_sets=sets,
        )

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        entries = cast(list[tuple[str, dict[str, str]]],
                       client.xrange(f"{PREFIX}:events", min=f"({after}" if after != "0" else "-"))
        out = []
        for entry_id, fields in entries:
            event: dict[str, Any] = dict(fields)
            event["data"] = json.loads(event.get("data") or "{}")
            for name in ("epoch", "seq", "ts_ms"):
                event[name] = int(event[name])
            event["recovery"] = event.get("recovery") == "1"
            out.append((entry_id, event))
        return out

    def read_rejected(self, client: redis.Redis) -> list[dict[str, Any]]:
        """Writes the worker's fencing refused (its diagnostics stream)."""
        entries = cast(list[tuple[str, dict[str, str]]], client.xrange(f"{PREFIX}:rejected"))
        return [{**fields, "stream_id": entry_id} for entry_id, fields in entries]

    def reset(self, client: redis.Redis) -> None:
        keys = list(client.scan_iter(f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
