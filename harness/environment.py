"""One run's world: services, the worker's API, worker incarnations, workload.

``Environment`` starts everything a scenario needs on free loopback ports:
the data Redis, Toxiproxy in front of it (the worker only ever sees a proxy,
one per worker and one for the API: ``harness.services.redis_proxies``, so the
harness can sever one worker or all), the transcription service, a moto S3
server when the run has upload jobs, and the target's API; then starts and
signals worker incarnations through a ``Runtime``. Everything it starts is
stopped by ``close()``, which the runner calls on every exit path; processes
also die with the harness (PDEATHSIG) and are found by the registry if the
harness is SIGKILLed.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import redis

from harness.audio import SEGMENT_SECONDS, expected_transcript, words_for, write_wav
from harness.control_client import ControlClient
from harness.errors import SetupError
from harness.ports import LOOPBACK, free_port, port_open, wait_until
from harness.procs import ManagedProcess, ProcessRegistry, log_tail
from harness.runfolder import LEDGER_FILE
from harness.runtime.base import Runtime, WorkerHandle
from harness.services.redis_proxies import API_SLOT, RedisProxies
from harness.services.redis_server import RedisServer
from harness.services.s3 import S3Server
from harness.services.toxiproxy import ToxiproxyServer
from harness.services.transcription_server import TranscriptionService
from harness.streams import Growth, SourceWriter, first_difference, sha256, source_bytes
from harness.target import JobSnapshot, Target, Wiring, WorkerSpec, media_target

log = logging.getLogger(__name__)

Sink = Callable[..., object]
TERMINAL = ("COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")
UPLOAD_BUCKET = "crashlab-uploads"
ABORT_WAIT_S = 10.0  # how long the end of a run waits for ended jobs' uploads to be aborted


@dataclass
class Worker:
    """One worker incarnation and its control channel."""

    worker_id: str
    handle: WorkerHandle
    control: ControlClient


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str
    media: Path
    words: tuple[str, ...]
    expected_transcript: str
    media_seconds: float
    kind: str = "transcribe"  # "upload": ``media`` is the source file, streamed to ``key``
    bucket: str = ""
    key: str = ""


@dataclass
class EnvironmentOptions:
    redis_aof: bool = False
    worker_settings: dict[str, str] = field(default_factory=dict)
    ready_timeout: float = 30.0
    s3: bool = False  # start a moto S3 server (upload jobs) with a bucket ``UPLOAD_BUCKET``


class Environment:
    def __init__(self, run_dir: Path, target: Target, runtime: Runtime, *,
                 registry: ProcessRegistry | None = None, sink: Sink | None = None,
                 options: EnvironmentOptions | None = None) -> None:
        self.run_dir = run_dir
        self.target = target
        self.runtime = runtime
        self.registry = registry
        self.sink: Sink = sink if sink is not None else record_nothing
        self.options = options or EnvironmentOptions()
        self.redis = RedisServer(run_dir / "redis", aof=self.options.redis_aof, registry=registry)
        self.toxiproxy = ToxiproxyServer(run_dir / "toxiproxy", registry=registry)
        self.transcription = TranscriptionService(run_dir / "transcription", registry=registry)
        self.s3: S3Server | None = None
        if self.options.s3:
            part_bytes = int(self.options.worker_settings.get("upload_part_bytes", 5 << 20))
            self.s3 = S3Server(run_dir / "s3", registry=registry,
                               part_min_size=min(5 << 20, part_bytes))
        self.writers: dict[str, SourceWriter] = {}
        self._contents: dict[str, bytes] = {}
        self.proxy: RedisProxies | None = None  # every slot's proxy; faults name slots
        self.api: ManagedProcess | None = None
        self.api_url = ""
        self.workers: dict[str, Worker] = {}
        self.jobs: dict[str, SubmittedJob] = {}
        self.submitting = False  # jobs are still arriving (``harness.nemesis.Arrivals``)
        self._incarnations: dict[str, int] = {}
        self._workers_lock = threading.Lock()  # timed faults replace workers from threads
        self._terminal: set[str] = set()  # terminal states are final: not read again
        self._finished_seen = 0  # for progress lines while Redis is down
        self._client: redis.Redis | None = None
        self._owned: list[tuple[str, Callable[[], object]]] = []

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Environment:
        self.redis.start()
        self.sink("process_start", name="redis", role="service", pid=self.redis.pid)
        self.toxiproxy.start()
        self.sink("process_start", name="toxiproxy", role="service", pid=self.toxiproxy.pid)
        self.proxy = RedisProxies(self.toxiproxy, self.redis.port)
        data_dir = self.run_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        # the pack's own services (the reference pack: transcription and S3)
        urls = self.target.start_services(self)
        # the API's wiring (its proxy is made with the API, if the pack has one); each
        # worker's has its own slot's proxy (``worker_wiring``)
        self.wiring = Wiring(redis_url="",
                             openai_base_url=urls.get("openai", ""), data_dir=data_dir,
                             s3_endpoint_url=urls.get("s3", ""), services=urls,
                             direct_redis_url=f"redis://{LOOPBACK}:{self.redis.port}/0")
        self._start_api()
        return self

    def own(self, name: str, stop: Callable[[], object], pid: int | None = None) -> None:
        """Stop ``stop`` with everything else at ``close()`` (a pack's service), newest
        first, and record the start of its process (``pid``), if it has one."""
        self._owned.append((name, stop))
        if pid is not None:
            self.sink("process_start", name=name, role="service", pid=pid)

    @property
    def ledger_path(self) -> Path:
        """The effects ledger the run's jobs append to (``harness.failpoint.record``)."""
        return self.wiring.data_dir / LEDGER_FILE

    def _start_api(self) -> None:
        port = free_port()
        argv = self.target.api_argv(LOOPBACK, port)
        if argv is None:
            return  # the pack enqueues straight to Redis
        assert self.proxy is not None
        self.wiring = replace(self.wiring, redis_url=self.proxy.slot(API_SLOT).url_for_redis())
        env = self._aws(_child_env(self.target.environment(self.wiring, None,
                                                           self.options.worker_settings)))
        self.api = ManagedProcess("api", argv,
                                  log_path=self.run_dir / "logs" / "api.log", env=env,
                                  registry=self.registry).start()
        self.api_url = f"http://{LOOPBACK}:{port}"
        api = self.api

        def healthy() -> bool:
            if not port_open(port):
                return False
            # plain HTTP on loopback: verify=False skips loading the CA bundle (~50 ms)
            return httpx.get(f"{self.api_url}/health", timeout=2.0,
                             verify=False).status_code == 200

        try:
            wait_until(healthy, timeout=self.options.ready_timeout, what="worker API",
                       alive=api.is_running)
        except (TimeoutError, RuntimeError) as exc:
            raise SetupError(f"{exc}; its log ends with:\n{api.log_tail()}") from exc
        self.sink("process_start", name="api", role="api", pid=api.pid)

    def close(self) -> None:
        """Stop everything this environment started, newest first; never raises."""
        steps: list[tuple[str, Callable[[], Any]]] = [
            ("writers", self._stop_writers),
            ("workers", lambda: self.runtime.stop_all(grace=2.0)),
            ("api", lambda: self.api.stop() if self.api is not None else None),
            *reversed(self._owned),
            ("transcription", self.transcription.stop),
            ("toxiproxy", self.toxiproxy.stop),
            ("redis", self.redis.stop),
            ("s3", lambda: self.s3.stop() if self.s3 is not None else None),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:  # noqa: BLE001 - teardown must reach every step
                log.exception("stopping %s failed", name)
        if self._client is not None:
            self._client.close()

    def __enter__(self) -> Environment:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- workers -------------------------------------------------------------

    def start_worker(self, worker_id: str, *, failpoints: str = "",
                     settings: Mapping[str, str] | None = None,
                     wait_ready: bool = True) -> Worker:
        with self._workers_lock:
            incarnation = self._incarnations.get(worker_id, 0) + 1
            self._incarnations[worker_id] = incarnation
        name = worker_id if incarnation == 1 else f"{worker_id}.{incarnation}"
        control_url = f"http://{LOOPBACK}:{free_port()}"
        spec = WorkerSpec(worker_id=name, control_url=control_url, failpoints=failpoints)
        merged = {**self.options.worker_settings, **(settings or {})}
        env = self._aws(_child_env(self.target.environment(self.worker_wiring(worker_id), spec,
                                                           merged)))
        handle = self.runtime.start_worker(name, self.target.worker_argv(), env)
        worker = Worker(name, handle, ControlClient(control_url))
        self.workers[name] = worker
        if wait_ready:
            self.wait_ready(worker)
        return worker

    def worker_wiring(self, worker_id: str) -> Wiring:
        """The wiring of worker ``worker_id``'s incarnations: Redis through its own proxy."""
        assert self.proxy is not None, "the environment has not started"
        return replace(self.wiring, redis_url=self.proxy.slot(worker_id).url_for_redis())

    def wait_ready(self, worker: Worker, interval: float = 0.02) -> None:
        """Until the worker's control channel answers (asked every ``interval`` s);
        ``SetupError`` with its log if not."""
        handle = worker.handle
        try:
            wait_until(worker.control.ready, timeout=self.options.ready_timeout,
                       what=f"worker {worker.worker_id}", interval=interval,
                       alive=lambda: self.runtime.is_running(handle))
        except (TimeoutError, RuntimeError) as exc:
            tail = log_tail(self.runtime.log_path(handle), 30)
            raise SetupError(f"{exc}; its log ends with:\n{tail}") from exc

    def top_up(self, count: int, failpoints: str = "") -> list[Worker]:
        """Start workers at once until ``count`` are alive (concurrent recovery races)."""
        alive = {w.worker_id.split(".")[0] for w in self.live_workers()}
        missing = [f"w{i}" for i in range(1, count + 1) if f"w{i}" not in alive]
        started = [self.start_worker(name, failpoints=failpoints, wait_ready=False)
                   for name in missing[:count - len(alive)]]
        for worker in started:
            self.wait_ready(worker)
        return started

    def live_workers(self) -> list[Worker]:
        return [w for w in list(self.workers.values()) if self.runtime.is_running(w.handle)]

    # -- workload ------------------------------------------------------------

    def add_job(self, job_id: str, *, kind: str, **op_fields: object) -> SubmittedJob:
        """Register a job a pack enqueued itself, and record its ``op submit``."""
        job = SubmittedJob(job_id, Path(), (), "", 0.0, kind=kind)
        self.jobs[job_id] = job
        self.sink("op", op="submit", job_id=job_id, job_kind=kind, **op_fields)
        return job

    def make_media(self, seed: int, seconds: float) -> tuple[Path, list[str]]:
        segments = max(1, round(seconds / SEGMENT_SECONDS))
        words = words_for(seed, segments)
        path = self.run_dir / "media" / f"job-{seed}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, words)
        return path, words

    def submit(self, seed: int, seconds: float, *, max_retries: int | None = None,
               timeout_s: float | None = None,
               chunk_seconds: float | None = None) -> SubmittedJob:
        media, words = self.make_media(seed, seconds)
        job_id = media_target(self.target).submit(self.api_url, media, max_retries=max_retries,
                                    timeout_s=timeout_s)
        job = SubmittedJob(job_id, media, tuple(words), expected_transcript(words),
                           len(words) * SEGMENT_SECONDS)
        self.jobs[job_id] = job
        self.sink("op", op="submit", job_id=job_id, expected_transcript=job.expected_transcript,
                  media_seconds=job.media_seconds, chunk_seconds=chunk_seconds,
                  timeout_s=timeout_s)
        return job

    def submit_upload(self, seed: int, size: int, *, growth: Growth | None = None,
                      max_retries: int | None = None, timeout_s: float | None = None,
                      stale_after_s: float | None = None,
                      on_stale: str | None = None) -> SubmittedJob:
        """Write a source of ``size`` bytes (all at once, or growing) and upload it.

        A growing source gets its first step before the submit; a writer thread
        appends the rest and then marks it finished (unless ``growth.finishes``
        is false). The expected object is every byte the writer will write.
        """
        if self.s3 is None:
            raise SetupError("upload jobs need the S3 server: start the environment with "
                             "EnvironmentOptions(s3=True)")
        content = source_bytes(seed, size)
        path = media_target(self.target).upload_source_dir(self.wiring) / f"upload-{seed}.bin"
        key = f"uploads/{self.run_dir.name}/upload-{seed}.bin"
        writer = None
        if growth is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        else:
            writer = SourceWriter(path, content, growth)
            writer.write_first()
        job_id = media_target(self.target).submit_upload(
            self.api_url, path, bucket=UPLOAD_BUCKET, key=key, finished=growth is None,
            max_retries=max_retries, timeout_s=timeout_s, stale_after_s=stale_after_s,
            on_stale=on_stale)
        job = SubmittedJob(job_id, path, (), "", 0.0, kind="upload", bucket=UPLOAD_BUCKET,
                           key=key)
        self.jobs[job_id] = job
        self._contents[job_id] = content
        self.sink("op", op="submit", job_id=job_id, job_kind="upload", bucket=UPLOAD_BUCKET,
                  key=key, expected_size=size, expected_sha256=sha256(content),
                  growing=growth is not None,
                  finishes=growth is None or growth.finishes, on_stale=on_stale)
        if writer is not None:
            self.writers[job_id] = writer
            writer.start(lambda: self._finish(job_id))
        return job

    def _finish(self, job_id: str) -> None:
        size = media_target(self.target).finish_upload(self.api_url, job_id)
        self.sink("op", op="finish", job_id=job_id, size=size)

    def reset_uploads(self) -> None:
        """Stop the source writers and empty the upload bucket (between runs of a session)."""
        self._stop_writers()
        self.writers.clear()
        if self.s3 is None:
            return
        client = self.s3.client()
        try:
            for key, upload_id in _pending_uploads(client, UPLOAD_BUCKET):
                client.abort_multipart_upload(Bucket=UPLOAD_BUCKET, Key=key, UploadId=upload_id)
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=UPLOAD_BUCKET):
                for item in page.get("Contents", []):
                    client.delete_object(Bucket=UPLOAD_BUCKET, Key=item["Key"])
        finally:
            client.close()

    def _stop_writers(self) -> None:
        for writer in self.writers.values():
            writer.stop()

    def _aws(self, env: dict[str, str]) -> dict[str, str]:
        """A child's environment, cut off from real AWS when this run has an S3 server."""
        return self.s3.client_env(env) if self.s3 is not None else env

    def observe_uploads(self, wait: float = ABORT_WAIT_S) -> tuple[list[dict[str, Any]],
                                                                     dict[str, Any]]:
        """Every upload job's object, and the multipart uploads still in progress.

        Read straight from S3. A job that ended without completing has its upload
        aborted by the worker just after the failure is committed, so this waits
        up to ``wait`` seconds for the uploads of ended jobs to go.
        """
        if self.s3 is None:
            return [], {}
        client = self.s3.client()
        try:
            uploads = {job_id: job for job_id, job in self.jobs.items() if job.kind == "upload"}
            started = time.monotonic()
            while True:
                pending = _pending_uploads(client, UPLOAD_BUCKET)
                ended = {job.key for job_id, job in uploads.items()
                         if self.snapshot(job_id).state in TERMINAL}
                if not any(key in ended for key, _ in pending):
                    break
                if time.monotonic() - started >= wait:
                    break
                time.sleep(0.1)
            waited = round(time.monotonic() - started, 3)
            objects = [self._observe_object(client, job_id, job)
                       for job_id, job in uploads.items()]
        finally:
            client.close()
        return objects, {"bucket": UPLOAD_BUCKET, "waited_s": waited,
                         "uploads": [{"key": k, "upload_id": u} for k, u in pending]}

    def _observe_object(self, client: Any, job_id: str, job: SubmittedJob) -> dict[str, Any]:
        seen: dict[str, Any] = {"job_id": job_id, "bucket": job.bucket, "key": job.key,
                                "exists": False, "size": None, "sha256": None, "etag": None,
                                "token": None, "first_difference": None,
                                "metadata_key": None, "metadata": None}
        body = _get(client, job.bucket, job.key)
        if body is not None:
            data, head = body
            seen |= {"exists": True, "size": len(data), "sha256": sha256(data),
                     "etag": head["ETag"], "token": (head.get("Metadata") or {}).get(
                         "crashlab-token"),
                     "first_difference": first_difference(self._contents[job_id], data)}
        meta_key = media_target(self.target).upload_metadata_key(job.key)
        seen["metadata_key"] = meta_key
        meta = _get(client, job.bucket, meta_key) if meta_key else None
        if meta is not None:
            try:
                seen["metadata"] = json.loads(meta[0])
            except ValueError:
                seen["metadata"] = {"unreadable": meta[0][:200].decode(errors="replace")}
        return seen

    # -- observation (straight to Redis, never through the proxy) ------------

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = self.redis.client()
        return self._client

    def snapshot(self, job_id: str) -> JobSnapshot:
        return self.target.snapshot(self.client, job_id)

    def is_terminal(self, job_id: str) -> bool:
        """Whether the job reached a terminal state; once it has, Redis is not asked again
        (a workload of thousands is polled only for its unfinished jobs), unless Redis
        may be restarted (AOF on): a restart may bring back an older state."""
        if job_id in self._terminal:
            return True
        if self.snapshot(job_id).state in TERMINAL:
            if not self.options.redis_aof:
                self._terminal.add(job_id)
            return True
        return False

    def forget_jobs(self) -> None:
        """Between the runs of a session: no job is submitted any more."""
        self.jobs.clear()
        self._terminal.clear()
        self._finished_seen = 0

    def finished(self) -> int:
        """How many submitted jobs are terminal (for progress lines); while Redis is down,
        the count last seen."""
        try:
            self._finished_seen = sum(self.is_terminal(job_id) for job_id in list(self.jobs))
        except redis.RedisError:
            self._finished_seen = max(self._finished_seen, len(self._terminal))
        return self._finished_seen

    def wait_terminal(self, timeout: float, job_ids: list[str] | None = None) -> bool:
        """Whether every job (default: all submitted) reached a terminal state in time."""
        ids = job_ids if job_ids is not None else list(self.jobs)
        deadline = time.monotonic() + timeout
        while True:
            try:
                if all(self.is_terminal(i) for i in ids):
                    return True
            except redis.ConnectionError:
                pass  # Redis is being restarted by a fault
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return self.target.read_events(self.client, "0")


def record_nothing(kind: str, **fields: object) -> None:
    """The default sink: record nothing."""


def _pending_uploads(client: Any, bucket: str) -> list[tuple[str, str]]:
    """(key, upload id) of every multipart upload in progress in ``bucket``."""
    found = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        found += [(str(u["Key"]), str(u["UploadId"])) for u in page.get("Uploads", [])]
    return found


def _get(client: Any, bucket: str, key: str) -> tuple[bytes, dict[str, Any]] | None:
    """The object's bytes and its GET answer, or None if there is no such object."""
    try:
        answer = client.get_object(Bucket=bucket, Key=key)
    except client.exceptions.NoSuchKey:
        return None
    return answer["Body"].read(), answer


def _child_env(extra: Mapping[str, str]) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRASHLAB_", "OPENAI_"))}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    # the worker must import the same code as the harness, installed or not; a
    # target's own PYTHONPATH (a patched copy of the worker) comes first
    here = str(Path(__file__).resolve().parent.parent)
    # after them, what the harness was given (a user's project folders, [tool.crashlab])
    first, inherited = extra.get("PYTHONPATH"), os.environ.get("PYTHONPATH")
    env["PYTHONPATH"] = ":".join(p for p in (first, here, inherited) if p)
    env.setdefault("CRASHLAB_PYTHON", sys.executable)
    return env
