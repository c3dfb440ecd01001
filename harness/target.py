"""The seam between the harness and the worker it attacks.

A target says how to start the worker and its API, which failpoints (phases)
it has, how to submit work, and how to read its state and events out of
Redis. The harness never imports the worker's code: it runs the commands
the target gives and reads what the target's ``snapshot`` returns.

Every pack implements ``Target`` (``harness.packs.reference``, ``.rq``,
``.arq``); a user's own worker plugs in the same way (README, "Attack your
own worker"). ``MediaTarget`` adds what the reference pack's media and
upload workloads and file faults need, ``MutantTarget`` the planted bugs a
pack may ship, ``InspectableTarget`` what ``crashlab debug`` shows of a job,
``ExplorableTarget`` how ``crashlab explore`` draws the pack's domain faults,
``LatencyTarget`` how a scenario's ``service`` latency reaches the pack's
external service, ``ServiceTarget`` how it is made to ignore idempotency keys
or its status endpoint, ``LeasedTarget`` how long a dead worker's job stays
claimed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import redis

if TYPE_CHECKING:  # the types of the hooks' arguments; they import this module
    from harness.checkers.base import Checker
    from harness.environment import Environment
    from harness.explore.strategies import Exploring
    from harness.history import HistoryWriter
    from harness.scenario import Scenario
    from harness.services.latency import LatencyModel


@dataclass(frozen=True)
class Wiring:
    """Where the services of one run are, as the worker should see them."""

    # usually a Toxiproxy listener in front of the data Redis: the API's in ``env.wiring``
    # (empty when the pack has no API), the worker's own in the wiring a worker is started
    # with (``env.worker_wiring``)
    redis_url: str
    openai_base_url: str
    data_dir: Path
    s3_endpoint_url: str = ""  # the S3 server, when the run has upload jobs
    services: Mapping[str, str] = field(default_factory=dict)  # a pack's services' URLs
    direct_redis_url: str = ""  # the data Redis itself (the harness's reads, never faulted)


@dataclass(frozen=True)
class WorkerSpec:
    """One worker incarnation to start."""

    worker_id: str
    control_url: str
    failpoints: str = ""


@dataclass(frozen=True)
class JobSnapshot:
    """The final state of one job, as the checkers need it.

    The first fields are every pack's: ``state`` in the core's words
    (``QUEUED``, ``PROCESSING``, ``COMPLETED``, ``FAILED``, ``TIMED_OUT``,
    ``CANCELLED``, or ``MISSING`` when the queue holds no record of it),
    ``state_sets`` every key that still lists the job (a queue, a registry,
    a state index), ``native_state`` the library's own word for it and
    ``ended_at`` when the library says it ended (epoch seconds). The rest
    are the reference pack's (chunks, transcript, upload checkpoint) and
    keep their empty defaults elsewhere.
    """

    job_id: str
    state: str
    retry_count: int
    max_retries: int
    error: str | None
    state_sets: list[str]  # every key that holds this job
    native_state: str | None = None
    ended_at: float | None = None
    epoch: int = 0
    chunk_count: int | None = None
    chunks_done: int = 0
    progress: float = 0.0
    transcript: str | None = None
    committed_chunks: dict[int, dict[str, Any]] = field(default_factory=dict)
    kind: str = "transcribe"  # or "upload", or a pack's kind ("task")
    # upload jobs: the checkpoint as the store holds it (bucket, key, upload_id, bytes_sent,
    # next_part, parts_done, finished_size, parts {number: {etag, size, offset, ...}}); parts
    # is empty once the job completed and cleaned up
    upload: dict[str, Any] | None = None
    # the indexes beside the state sets, as the reference worker keeps them: how often the
    # id is in the queue list (None: the target reports none of the three), the lease's
    # value ("<worker>|<epoch>"; None: no lease), the deadline set's score (ms; None: not
    # in it)
    queued: int | None = None
    lease: str | None = None
    deadline_ms: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id, "state": self.state, "epoch": self.epoch,
            "retry_count": self.retry_count, "max_retries": self.max_retries,
            "chunk_count": self.chunk_count, "chunks_done": self.chunks_done,
            "progress": self.progress, "error": self.error, "transcript": self.transcript,
            "committed_chunks": {str(k): v for k, v in self.committed_chunks.items()},
            "state_sets": self.state_sets, "kind": self.kind, "upload": self.upload,
            "native_state": self.native_state, "ended_at": self.ended_at,
            "queued": self.queued, "lease": self.lease, "deadline_ms": self.deadline_ms,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> JobSnapshot:
        """The inverse of ``to_json`` (chunk and part numbers back to ints); ``KeyError``,
        ``TypeError`` or ``ValueError`` when it is malformed."""
        upload = raw.get("upload")
        if upload is not None:
            upload = {**upload, "parts": {int(number): dict(part) for number, part in
                                          (upload.get("parts") or {}).items()}}
        return cls(
            job_id=str(raw["job_id"]), state=str(raw["state"]), epoch=int(raw.get("epoch", 0)),
            retry_count=int(raw["retry_count"]), max_retries=int(raw["max_retries"]),
            chunk_count=_optional_int(raw.get("chunk_count")),
            chunks_done=int(raw.get("chunks_done", 0)), progress=float(raw.get("progress", 0)),
            native_state=raw.get("native_state"),
            ended_at=None if raw.get("ended_at") is None else float(raw["ended_at"]),
            error=raw.get("error"), transcript=raw.get("transcript"),
            committed_chunks={int(k): dict(v) for k, v in
                              (raw.get("committed_chunks") or {}).items()},
            state_sets=[str(s) for s in raw.get("state_sets") or ()],
            kind=str(raw.get("kind") or "transcribe"), upload=upload,
            queued=_optional_int(raw.get("queued")),
            lease=None if raw.get("lease") is None else str(raw["lease"]),
            deadline_ms=_optional_int(raw.get("deadline_ms")),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


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


class Semantics(StrEnum):
    """How often a pack promises a job's side effect is applied (judged from the ledger)."""

    AT_MOST_ONCE = "at_most_once"
    AT_LEAST_ONCE = "at_least_once"
    EXACTLY_ONCE = "exactly_once"


class Target(Protocol):
    """A pack's adapter: everything the core needs to attack one kind of worker.

    The core (runtimes, Redis, Toxiproxy, process-level faults, the history,
    the runner, exploration, reports, CLI) reaches a worker only through
    these members; it never imports a pack (``harness.packs``). A pack is
    found by name (``harness.packs_registry``).

    Vocabulary and promises:

    name                the pack's name (``--target NAME``, ``schedule.json``)
    effects             what the pack promises of a job's side effect (``Semantics``)
    recovery_limit_s    a job whose worker crashed must finish elsewhere within this
    default_settings    worker settings used when a scenario does not give them
    repeating_points    failpoints hit once per item (chunk, part, attempt), so a fault
                        may wait for their N-th hit
    after_crash_points  failpoints reached only after a crash (never drawn first)
    workload_kinds      the ``workload.kind`` values this pack can submit
    """

    @property
    def name(self) -> str: ...

    @property
    def effects(self) -> Semantics: ...

    @property
    def recovery_limit_s(self) -> float: ...

    @property
    def default_settings(self) -> Mapping[str, str]: ...

    @property
    def repeating_points(self) -> frozenset[str]: ...

    @property
    def after_crash_points(self) -> frozenset[str]: ...

    @property
    def workload_kinds(self) -> frozenset[str]: ...

    def phases(self) -> Mapping[str, str]:
        """Failpoint name -> what the worker is doing there."""
        ...

    def api_argv(self, host: str, port: int) -> Sequence[str] | None:
        """The command of the worker's API, or None when work is enqueued directly."""
        ...

    def worker_argv(self) -> Sequence[str]: ...

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        """Environment variables for the API (``worker`` None) or one worker.

        ``settings`` are the scenario's knobs (e.g. ``lease_ttl_ms``), given to both.
        """
        ...

    def start_services(self, env: Environment) -> dict[str, str]:
        """Start the pack's own services (each stopped by ``env.close()``, through
        ``env.own``); returns their URLs by name, which the wiring carries."""
        ...

    def submit_workload(self, env: Environment, scenario: Scenario, seed: int,
                        indices: Sequence[int] | None = None) -> None:
        """Submit the scenario's jobs (through the API, or straight to the queue): those
        numbered ``indices`` (default: all ``workload.jobs``; a workload with a rate
        arrives a few at a time, from a thread: ``harness.nemesis.Arrivals``). Job
        ``i``'s id and content derive from ``seed`` and ``i`` alone; each one is
        registered with ``env.add_job`` and recorded as an ``op``."""
        ...

    def job_ids(self, client: redis.Redis) -> list[str]: ...

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot: ...

    def collect(self, env: Environment, history: HistoryWriter) -> None:
        """At the end of a run, while everything still runs: copy what the worker and
        its services recorded (events, external calls, the effects ledger) into the
        history."""
        ...

    def checkers(self) -> Sequence[Checker]:
        """Every checker that judges this pack's runs: the core's job-queue invariants
        it applies and its own domain checkers."""
        ...

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        """Events after stream id ``after`` as (id, event dict) pairs ([] if it has none)."""
        ...

    def reset(self, client: redis.Redis) -> None:
        """Remove every key the worker owns (between examples)."""
        ...


@runtime_checkable
class MediaTarget(Target, Protocol):
    """The members the reference pack's workloads and file faults use on top of
    ``Target``: media and upload jobs through its API, where its files lie."""

    def submit(self, api_url: str, media: Path, *, max_retries: int | None = None,
               timeout_s: float | None = None) -> str:
        """Submit one job through the worker's real API; returns its id."""
        ...

    def submit_upload(self, api_url: str, source: Path, *, bucket: str, key: str,
                      finished: bool, max_retries: int | None = None,
                      timeout_s: float | None = None, stale_after_s: float | None = None,
                      on_stale: str | None = None) -> str:
        """Submit one upload of ``source`` to ``s3://bucket/key``; returns its id."""
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

    def chunk_file(self, wiring: Wiring, job_id: str, index: int) -> Path:
        """Where the worker keeps chunk ``index`` of a job (file faults damage it)."""
        ...

    def source_files(self, wiring: Wiring, job_id: str) -> list[Path]:
        """The job's original media as the worker stored it."""
        ...

    def read_rejected(self, client: redis.Redis) -> list[dict[str, Any]]:
        """Writes the worker refused because the writer no longer owned the job."""
        ...


def media_target(target: Target) -> MediaTarget:
    """``target`` as a ``MediaTarget``; ``CrashlabError`` naming what it lacks if not."""
    if not isinstance(target, MediaTarget):
        from harness.errors import CrashlabError

        raise CrashlabError(f"target {target.name} has no media or upload jobs and no chunk "
                            "files; this workload or fault is the reference pack's")
    return target


@runtime_checkable
class ExplorableTarget(Protocol):
    """A target whose exploration differs from the core's default; optional.

    Without it, ``crashlab explore`` draws the core's process and Redis faults at
    the target's points with its default settings (``harness.explore.strategies``).
    """

    def exploring(self, base: Scenario) -> Exploring:
        """Settings, items per job, time limit and fault menu for exploring ``base``."""
        ...


@runtime_checkable
class LatencyTarget(Protocol):
    """A target whose external service answers after the scenario's ``service``
    latency; optional. A scenario with a latency is refused (exit 3) by a target
    without it."""

    def set_service_latency(self, env: Environment, model: LatencyModel) -> None:
        """Make the service the jobs call answer after latencies drawn from ``model``
        (called once per run, after ``start_services`` or a session's reset)."""
        ...


@runtime_checkable
class ServiceTarget(Protocol):
    """A target whose external service can be told to ignore idempotency keys and to
    have no status endpoint (the scenario's ``service`` block); optional. A scenario
    asking for either is refused (exit 3) by a target without it."""

    def set_service_behaviour(self, env: Environment, *, honour_keys: bool,
                              status_endpoint: bool) -> None:
        """Make the service honour or ignore idempotency keys, and answer its status
        endpoint or not (called once per run, like ``set_service_latency``)."""
        ...


@runtime_checkable
class LeasedTarget(Protocol):
    """A target whose jobs stay claimed by their worker for a while after it died;
    optional. A fault that repeats more often than that (``every_s``) is refused
    (exit 3): no job could ever be taken over between two repeats."""

    def lease_s(self, settings: Mapping[str, str]) -> float:
        """How long a job's claim outlives its dead worker, under ``settings``."""
        ...


@runtime_checkable
class MutantTarget(Protocol):
    """A target that ships planted bugs (``crashlab mutants``, ``--mutant NAME``); optional."""

    def mutants(self) -> Mapping[str, str]:
        """Each planted bug's name and what it breaks."""
        ...

    def with_mutant(self, name: str, state_dir: Path | None = None) -> Target:
        """The same target running a copy of its worker with bug ``name`` planted."""
        ...


@dataclass(frozen=True)
class MutationSource:
    """What ``crashlab mutants --generate`` may mutate in a target's worker.

    ``package`` is the worker's package folder (copied, never mutated in
    place), ``files`` the modules in it to mutate (relative to it), and
    ``scenarios`` the catalog scenarios run against each mutant, in order
    (the first invalid one kills it, so the likeliest killers go first).
    """

    package: Path
    files: tuple[str, ...]
    scenarios: tuple[str, ...]


@runtime_checkable
class MutableSourceTarget(Protocol):
    """A target whose worker's source crashlab can mutate with cosmic-ray; optional."""

    def mutation_source(self) -> MutationSource:
        """The package, the modules to mutate and the scenarios that judge a mutant."""
        ...

    def with_source(self, root: Path) -> Target:
        """The same target running the worker package found under ``root`` (put first
        on the worker's import path) instead of the shipped one."""
        ...
