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

import system_under_test
from harness.checkers.base import Checker
from harness.checkers.registry import suite
from harness.environment import UPLOAD_BUCKET, Environment
from harness.errors import CrashlabError
from harness.explore.strategies import Exploring
from harness.history import HistoryWriter
from harness.packs.reference import explore
from harness.scenario import DEFAULT_SETTINGS, Scenario
from harness.services.latency import LatencyModel
from harness.services.redis_proxies import S3_PREFIX, RedisProxies
from harness.services.s3_gate import S3Gate
from harness.streams import Growth
from harness.target import (
    JobInspection,
    JobSnapshot,
    MutationSource,
    Semantics,
    Wiring,
    WorkerSpec,
)

PREFIX = "crashlab"
STATES = ("QUEUED", "PROCESSING", "COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED")
ENDED = frozenset(STATES[2:])

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
    # upload jobs (they also meet job.claimed, recovery.started and recovery.resumed)
    "upload.created": "multipart upload created, its id not committed",
    "upload.started": "upload id and token committed",
    "upload.verified": "resuming: checkpoint checked against ListParts",
    "upload.waiting": "the source has no whole part yet; waiting for it to grow",
    "upload.part.before_upload": "a part was read and is about to be sent",
    "upload.part.uploaded": "S3 has the part, its checkpoint not committed",
    "upload.part.committed": "the part's checkpoint was committed",
    "upload.before_complete": "every part committed, CompleteMultipartUpload not sent",
    "upload.completed_in_s3": "S3 assembled the object, completion not committed",
    "upload.metadata_written": "metadata object written, completion not committed",
}
# phases only an upload job meets (an exploration of transcribe jobs leaves them out)
# ``crashlab mutants --generate``: the recovery code cosmic-ray mutates, and the
# scenarios that judge each mutant (the broadest killers first: a kill mid-job,
# a zombie's late writes, billing after a crash, Redis lost, an upload resumed,
# a deploy, the retry limit; every fault anchored at a phase, so a loaded machine
# cannot make a run inconclusive)
MUTATED_MODULES = ("pipeline.py", "recovery.py", "worker.py", "store.py", "lua.py",
                   "upload.py", "upload_store.py", "upload_lua.py")
MUTATION_SCENARIOS = ("crash-mid-transcription", "zombie-worker", "service-answered-before-crash",
                      "redis-restart-mid-job", "upload-kill-after-checkpoint", "deploy-mid-job",
                      "retry-limit-reached")
UPLOAD_PHASES = tuple(point for point in PHASES if point.startswith("upload."))
# the worker writes this object beside each uploaded one
METADATA_SUFFIX = ".metadata.json"


class ReferenceTarget:
    name = "reference"
    # a chunk is billed once: the service dedupes the idempotency key, and a resumed
    # job never redoes a committed chunk (external_work_per_chunk judges it)
    effects = Semantics.EXACTLY_ONCE
    # a dead worker's job is taken over once its lease (1 s in the catalog) runs out
    recovery_limit_s = 30.0
    default_settings = DEFAULT_SETTINGS
    # hit once per chunk or part; a ``recovery.`` point (and the resume check of an
    # upload) only after a crash
    repeating_points = frozenset(p for p in PHASES
                                 if p.startswith(("chunk.", "upload.part.", "lease.")))
    after_crash_points = frozenset(p for p in PHASES
                                   if p.startswith("recovery.") or p == "upload.verified")
    workload_kinds = frozenset({"transcribe", "upload"})
    # the lease keeper stops here before each renewal: a ``lost_reply`` holds it there so
    # the reply it loses is the job's own (``harness.faults.lost_reply``)
    background_points = ("lease.renew",)
    # `crashlab run --coverage` (harness/worker_coverage.py): the package measured, and its
    # recovery code reported apart: takeover, leases (a lost one ends the job in _run_job),
    # timeouts, retries, resume from what survived (chunks, the service's own record of a
    # chunk, upload checkpoints), cleanup of what a dead worker left
    coverage_source = ("system_under_test",)
    coverage_recovery = (
        "system_under_test/recovery.py",
        "system_under_test/worker.py:Worker._next_claim",
        "system_under_test/worker.py:Worker._run_job",
        "system_under_test/worker.py:Worker._keep_lease",
        "system_under_test/worker.py:Worker._housekeeping",
        "system_under_test/worker.py:Worker._abort_abandoned_uploads",
        "system_under_test/worker.py:Worker._janitor_pass",
        "system_under_test/store.py:Store.orphaned_jobs",
        "system_under_test/store.py:Store.recover",
        "system_under_test/store.py:Store.renew",
        "system_under_test/store.py:Store.expire_due",
        "system_under_test/pipeline.py:JobRunner._retrying",
        "system_under_test/transcriber.py:Transcriber.completed_text",
        "system_under_test/upload.py:UploadRunner.abort_strays",
        "system_under_test/upload.py:UploadRunner.verify",
        "system_under_test/upload.py:UploadRunner.resumed",
        "system_under_test/upload.py:UploadRunner.ours",
        "system_under_test/upload.py:UploadRunner.abort_abandoned",
    )
    # what a fork server imports once for all the workers it starts
    # (``harness.runtime.forkserver``): the worker, and what the openai SDK imports only
    # when its client is made and first used; a name that is not there is skipped
    worker_preload = ("system_under_test.worker", "system_under_test.bare",
                      "system_under_test.logs", "openai.resources.audio.audio", "httpcore2",
                      "anyio._backends._asyncio", "h11", "truststore")
    # the stream every event goes to, for a consumer that blocks on it (``crashlab bench``)
    event_stream = f"{PREFIX}:events"

    def __init__(self, python: str | None = None, pythonpath: Path | None = None,
                 mutant: str | None = None) -> None:
        self.python = python or sys.executable
        # a folder searched first for ``system_under_test`` (a patched copy, for mutants)
        self.pythonpath = pythonpath
        # the planted bug in that copy (``mutants``); recorded so a replay uses it
        self.mutant = mutant

    def phases(self) -> Mapping[str, str]:
        return PHASES

    def exploring(self, base: Scenario) -> Exploring:
        """Faster leases, chunks from the media length, and the domain faults' menu."""
        return explore.exploring(base, self.default_settings, self.repeating_points,
                                 self.after_crash_points)

    def phases_for(self, kind: str) -> Mapping[str, str]:
        """The points a job of ``kind`` passes, where exploration draws its faults.

        Optional for a target (``harness.explore`` uses ``phases()`` without it).
        """
        if kind == "upload":
            shared = ("job.claimed", "job.completed", "recovery.started", "recovery.resumed",
                      "lease.renew")
            return {p: d for p, d in PHASES.items() if p in UPLOAD_PHASES or p in shared}
        return {p: d for p, d in PHASES.items() if p not in UPLOAD_PHASES}

    def mutants(self) -> Mapping[str, str]:
        from harness.packs.reference.mutants import MUTANTS

        return {name: mutant.description for name, mutant in MUTANTS.items()}

    def mutation_source(self) -> MutationSource:
        """The recovery code: pipeline, recovery, worker, uploads, both stores and their
        Lua scripts; judged by scenarios that crash, freeze, cut and deploy."""
        return MutationSource(Path(system_under_test.__file__).parent, MUTATED_MODULES,
                              MUTATION_SCENARIOS)

    def with_source(self, root: Path) -> ReferenceTarget:
        return ReferenceTarget(python=self.python, pythonpath=root)

    def with_mutant(self, name: str, state_dir: Path | None = None) -> ReferenceTarget:
        from harness.packs.reference.mutants import mutant_target

        return mutant_target(name, state_dir)

    def start_services(self, env: Environment) -> dict[str, str]:
        """The transcription service, and the S3 server when the run has upload jobs."""
        env.transcription.start()
        env.sink("process_start", name="transcription", role="service",
                 pid=env.transcription.process.pid)
        urls = {"openai": env.transcription.base_url}
        if env.s3 is not None:
            env.s3.start()
            env.sink("process_start", name="s3", role="service", pid=env.s3.pid)
            client = env.s3.client()
            client.create_bucket(Bucket=UPLOAD_BUCKET)
            client.close()
            urls["s3"] = env.s3.endpoint_url
            # the workers reach S3 through proxies of their own in front of the gate
            # (``harness.services.s3_gate``): the S3 faults' way in
            env.s3_gate = S3Gate(env.s3.port).start()
            env.own("s3-gate", env.s3_gate.stop)
            env.s3_proxy = RedisProxies(env.toxiproxy, env.s3_gate.port, prefix=S3_PREFIX)
        return urls

    def lease_s(self, settings: Mapping[str, str]) -> float:
        """A job's lease (``lease_ttl_ms``), renewed by its worker's heartbeat."""
        return int(settings["lease_ttl_ms"]) / 1000

    def set_service_latency(self, env: Environment, model: LatencyModel) -> None:
        """The transcription service answers each chunk after a drawn latency."""
        env.transcription.set_latency(model)

    def set_service_behaviour(self, env: Environment, *, honour_keys: bool,
                              status_endpoint: bool) -> None:
        """The transcription service ignores idempotency keys, or its status endpoint."""
        env.transcription.set_behaviour(honour_keys=honour_keys,
                                        status_endpoint=status_endpoint)

    def submit_workload(self, env: Environment, scenario: Scenario, seed: int,
                        indices: Sequence[int] | None = None) -> None:
        """Submit the scenario's jobs through the worker's API; job ``i`` gets seed
        ``seed * 1000 + i`` (its media or its source bytes) and its own length
        (``Workload.media_of``, ``size_of``)."""
        work = scenario.workload
        for index in range(work.jobs) if indices is None else indices:
            if work.kind == "upload":
                growth = (Growth(work.grow_steps, work.grow_interval_ms / 1000, work.finishes)
                          if work.growing else None)
                env.submit_upload(seed * 1000 + index, work.size_of(index), growth=growth,
                                  max_retries=work.max_retries, timeout_s=work.timeout_of(index),
                                  stale_after_s=work.stale_after_s, on_stale=work.on_stale)
            else:
                env.submit(seed * 1000 + index, work.media_of(index),
                           max_retries=work.max_retries, timeout_s=work.timeout_of(index),
                           chunk_seconds=float(env.options.worker_settings["chunk_seconds"]))

    def collect(self, env: Environment, history: HistoryWriter) -> None:
        """The worker's event stream, refused and retried writes, the service's call log
        and (with upload jobs) the workers' S3 calls and what S3 holds, into the history."""
        for stream_id, event in env.events():
            history.record("sut_event", stream_id=stream_id, **event)
        for rejected in self.read_rejected(env.client):
            history.record("rejected_write", **rejected)
        for retried in self.read_retried(env.client):
            history.record("retried_write", **retried)
        for call in env.transcription.calls():
            fields = {k: v for k, v in call.items() if k not in ("ts", "index", "kind")}
            history.record("external_call", call_ts=call.get("ts"), **fields)
        if env.s3_gate is not None:
            for s3_call in env.s3_gate.calls():
                history.record("s3_call", **s3_call)
        if env.s3 is not None:
            objects, pending = env.observe_uploads()
            for seen in objects:
                history.record("s3_object", **seen)
            history.record("s3_uploads", **pending)

    def checkers(self) -> Sequence[Checker]:
        # the queue's invariants that need no effects ledger: the reference worker's side
        # effects are its billed transcription calls, judged per chunk by its own checkers
        return suite("reference", "faults", extra=("jobs_settled", "none_lost"))

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
        if wiring.s3_endpoint_url:
            env["CRASHLAB_S3_ENDPOINT_URL"] = wiring.s3_endpoint_url
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
                                  data=data, timeout=30.0,
                                  verify=False)  # plain HTTP: no CA bundle to load
        if response.status_code != 201:
            raise CrashlabError(f"the API refused the job: {response.status_code} "
                                f"{response.text}")
        return str(response.json()["job_id"])

    def submit_upload(self, api_url: str, source: Path, *, bucket: str, key: str,
                      finished: bool, max_retries: int | None = None,
                      timeout_s: float | None = None, stale_after_s: float | None = None,
                      on_stale: str | None = None) -> str:
        body: dict[str, Any] = {"source": str(source), "bucket": bucket, "key": key,
                                "finished": finished}
        optional = {"max_retries": max_retries, "timeout_s": timeout_s,
                    "stale_after_s": stale_after_s, "on_stale": on_stale}
        body |= {name: value for name, value in optional.items() if value is not None}
        response = httpx.post(f"{api_url}/uploads", json=body, timeout=30.0)
        if response.status_code != 201:
            raise CrashlabError(f"the API refused the upload: {response.status_code} "
                                f"{response.text}")
        return str(response.json()["job_id"])

    def finish_upload(self, api_url: str, job_id: str) -> int:
        response = httpx.post(f"{api_url}/jobs/{job_id}/finish", timeout=30.0)
        if response.status_code != 200:
            raise CrashlabError(f"the API refused to finish upload {job_id}: "
                                f"{response.status_code} {response.text}")
        return int(response.json()["finished_size"])

    def upload_source_dir(self, wiring: Wiring) -> Path:
        return wiring.data_dir / "streams"

    def upload_metadata_key(self, key: str) -> str | None:
        return key + METADATA_SUFFIX

    def chunk_file(self, wiring: Wiring, job_id: str, index: int) -> Path:
        return wiring.data_dir / "jobs" / job_id / "chunks" / f"chunk-{index:04d}.wav"

    def source_files(self, wiring: Wiring, job_id: str) -> list[Path]:
        return sorted((wiring.data_dir / "jobs" / job_id).glob("source.*"))

    def job_ids(self, client: redis.Redis) -> list[str]:
        ids: set[str] = set()
        for state in STATES:
            ids |= set(client.smembers(f"{PREFIX}:state:{state}"))  # type: ignore[arg-type]
        return sorted(ids)

    def job_state(self, client: redis.Redis, job_id: str) -> str:
        """The job's state alone: one HGET, light enough to poll while timing the worker
        (``crashlab bench``); ``snapshot`` reads everything."""
        state = client.hget(f"{PREFIX}:job:{job_id}", "state")
        return str(state) if state is not None else "MISSING"

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot:
        key = f"{PREFIX}:job:{job_id}"
        # one MULTI: a consistent view even while workers are running
        pipe = client.pipeline(transaction=True)
        pipe.hgetall(key)
        pipe.hgetall(f"{key}:chunks")
        pipe.hgetall(f"{key}:parts")
        pipe.get(f"{key}:transcript")
        pipe.lpos(f"{PREFIX}:queue", job_id, count=0)  # every position of the id
        pipe.get(f"{key}:lease")
        pipe.zscore(f"{PREFIX}:deadlines", job_id)
        for state in STATES:
            pipe.sismember(f"{PREFIX}:state:{state}", job_id)
        job, chunks, parts, transcript, queued, lease, deadline, *member = pipe.execute()
        sets = [state for state, inside in zip(STATES, member, strict=True) if inside]
        count = job.get("chunk_count")
        kind = job.get("kind") or "transcribe"
        upload: dict[str, Any] | None = None
        if kind == "upload":
            upload = {name: job.get(name) for name in (
                "bucket", "s3_key", "upload_id", "bytes_sent", "next_part", "parts_done",
                "finished_size", "object_etag", "part_size")}
            upload["parts"] = {int(n): json.loads(v) for n, v in parts.items()}
        state = job.get("state", "MISSING")
        # every event the job's scripts emit stamps updated_ms (Redis TIME) with it, and
        # nothing writes an ended job again: for an ended job it is when it ended
        updated = job.get("updated_ms")
        ended_at = int(updated) / 1000.0 if updated and state in ENDED else None
        return JobSnapshot(
            job_id=job_id, state=state, ended_at=ended_at,
            epoch=int(job.get("epoch", 0)), retry_count=int(job.get("retry_count", 0)),
            max_retries=int(job.get("max_retries", 0)),
            chunk_count=int(count) if count else None,
            chunks_done=int(job.get("chunks_done", 0)),
            progress=float(job.get("progress", 0)), error=job.get("error") or None,
            transcript=transcript,
            committed_chunks={int(i): json.loads(v) for i, v in chunks.items()},
            state_sets=sets, kind=kind, upload=upload, queued=len(queued or ()),
            lease=lease, deadline_ms=None if deadline is None else int(deadline),
        )

    def inspect(self, client: redis.Redis, job_id: str) -> JobInspection:
        """The job's keys as they are now (``crashlab debug``'s ``job`` and ``where``)."""
        key = f"{PREFIX}:job:{job_id}"
        fields: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
        plan: dict[str, str] = client.hgetall(f"{key}:plan")  # type: ignore[assignment]
        chunks: dict[str, str] = client.hgetall(f"{key}:chunks")  # type: ignore[assignment]
        indexes: dict[str, str] = {}
        for state in STATES:
            if client.sismember(f"{PREFIX}:state:{state}", job_id):
                indexes[f"{PREFIX}:state:{state}"] = "member"
        position = client.lpos(f"{PREFIX}:queue", job_id)
        if position is not None:
            indexes[f"{PREFIX}:queue"] = f"position {position}"
        deadline = client.zscore(f"{PREFIX}:deadlines", job_id)
        if deadline is not None:
            indexes[f"{PREFIX}:deadlines"] = f"deadline {int(cast(float, deadline))} ms"
        lease = cast(str | None, client.get(f"{key}:lease"))
        ttl = int(cast(int, client.pttl(f"{key}:lease"))) if lease is not None else None
        return JobInspection(
            job_id=job_id, fields=fields,
            plan={int(i): json.loads(v) for i, v in plan.items()},
            chunks={int(i): json.loads(v) for i, v in chunks.items()},
            indexes=indexes, lease_holder=lease, lease_ttl_ms=ttl,
            keys={"job": key, "plan": f"{key}:plan", "chunks": f"{key}:chunks",
                  "events": f"{key}:events", "lease": f"{key}:lease"},
        )

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        entries = cast(list[tuple[str, dict[str, str]]],
                       client.xrange(self.event_stream, min=f"({after}" if after != "0" else "-"))
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

    def read_retried(self, client: redis.Redis) -> list[dict[str, Any]]:
        """Writes that found their own effect in place: retries after a lost reply."""
        entries = cast(list[tuple[str, dict[str, str]]], client.xrange(f"{PREFIX}:retried"))
        return [{**fields, "stream_id": entry_id} for entry_id, fields in entries]

    def reset(self, client: redis.Redis) -> None:
        keys = list(client.scan_iter(f"{PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
