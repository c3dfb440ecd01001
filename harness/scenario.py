"""Scenario files: YAML, validated at load, with errors naming file, field and fix.

A scenario is a workload (jobs of a given media length), a number of
workers, worker settings, an ordered schedule of faults (see
``harness.faults``) and what the checkers should expect. The catalog ships
as package data in ``scenarios/``; ``crashlab list`` shows it.

Example::

    name: crash-after-transcription
    description: SIGKILL right after a chunk commit; the replacement resumes.
    origin: seed 002, basic 1
    workload: {jobs: 1, media_seconds: 6}
    workers: 1
    faults:
      - {kind: kill_at_phase, point: chunk.committed, occurrence: 2}
    expect: {retry_count: 1}
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.checkers.base import Expectations
from harness.errors import ScenarioError
from harness.faults import FaultSpec
from harness.services.latency import LatencyModel
from harness.services.redis_proxies import check_slots

# Worker settings a scenario may set (the target turns them into its own variables).
DEFAULT_SETTINGS = {"lease_ttl_ms": "1000", "heartbeat_ms": "200", "chunk_seconds": "1.0",
                    "chunk_concurrency": "1", "poll_interval_ms": "20"}
MAX_JOBS = 10_000
"""The most jobs one workload submits."""
MAX_LISTED_JOBS = 1000
"""The most jobs a workload lists one by one (``media_seconds_per_job``)."""
MAX_UPLOAD_BYTES = 256 * 1024 * 1024
DEFAULT_MEDIA_SECONDS = 4.0
DEFAULT_SIZE_BYTES = 600_000
# a job's media: the reference API refuses empty media (400), so a length is above 0
MediaSeconds = Annotated[float, Field(gt=0, le=600)]
SizeBytes = Annotated[int, Field(ge=0, le=MAX_UPLOAD_BYTES)]
Timeout = Annotated[float, Field(gt=0, le=86400)]
# and for upload workloads: small parts (the S3 server's minimum follows), quick polls
UPLOAD_SETTINGS = {"upload_part_bytes": "65536", "upload_poll_ms": "20"}


class Workload(BaseModel):
    """The jobs to submit. ``transcribe`` jobs are audio of ``media_seconds``; ``upload``
    jobs are files of ``size_bytes``, written at once or ``growing`` in ``grow_steps``
    appends ``grow_interval_ms`` apart and then finished (``finishes``) or left to go
    stale (``stale_after_s``, ``on_stale``). ``media_seconds_per_job`` and
    ``size_bytes_per_job`` give each job its own length instead (one entry a job; the
    job count follows), as a generated workload does (``harness.explore.workloads``);
    ``timeout_s_per_job`` each job its own deadline, counted from its submit (null:
    none), so that one job's deadline may pass while it waits behind the others."""

    model_config = ConfigDict(extra="forbid")
    # transcribe and upload: the reference pack's; task: a queue library's job (rq, arq)
    # that works ``work_ms``, makes one billable call and records its effect
    kind: Literal["transcribe", "upload", "task"] = "transcribe"
    jobs: int = Field(1, ge=1, le=MAX_JOBS)
    rate: float | None = Field(None, gt=0, le=1000,
                               description="jobs per second, submitted beside the faults "
                                           "(default: all at once, before them)")
    burst: int = Field(1, ge=1, le=1000, description="with rate: jobs submitted together")
    duration_s: float | None = Field(None, gt=0, le=3600,
                                     description="with rate: submit for this long "
                                                 "(instead of jobs)")
    work_ms: int = Field(300, ge=0, le=600_000, description="how long a task job works")
    result_ttl_s: int | None = Field(None, ge=0, le=86400,
                                     description="how long the library keeps a result")
    media_seconds: MediaSeconds | None = Field(
        None, description=f"transcribe: every job's media length (default "
                          f"{DEFAULT_MEDIA_SECONDS:g} s)")
    max_retries: int | None = Field(None, ge=0, le=100)
    timeout_s: Timeout | None = Field(None, description="per-job deadline")
    size_bytes: SizeBytes | None = Field(
        None, description=f"upload: every job's source size (default {DEFAULT_SIZE_BYTES})")
    media_seconds_per_job: list[MediaSeconds] | None = Field(
        None, min_length=1, max_length=MAX_LISTED_JOBS,
        description="transcribe: each job's media length (instead of media_seconds)")
    size_bytes_per_job: list[SizeBytes] | None = Field(
        None, min_length=1, max_length=MAX_LISTED_JOBS,
        description="upload: each job's source size (instead of size_bytes)")
    timeout_s_per_job: list[Timeout | None] | None = Field(
        None, min_length=1, max_length=MAX_LISTED_JOBS,
        description="each job's deadline (null: none), instead of timeout_s")
    growing: bool = False
    grow_steps: int = Field(8, ge=1, le=10_000)
    grow_interval_ms: int = Field(150, ge=1, le=60_000)
    finishes: bool = True
    stale_after_s: float | None = Field(None, gt=0, le=3600)
    on_stale: Literal["finalize", "fail"] | None = None

    @model_validator(mode="after")
    def _arrivals(self) -> Self:
        if self.duration_s is not None:
            if self.rate is None:
                raise ValueError("duration_s submits at a rate: give rate (jobs per second)")
            if "jobs" in self.model_fields_set:
                raise ValueError("give jobs or duration_s, not both (with duration_s the "
                                 "job count is rate * duration_s)")
            self.jobs = max(1, round(self.rate * self.duration_s))
            if self.jobs > MAX_JOBS:
                raise ValueError(f"rate * duration_s is {self.jobs} jobs; at most {MAX_JOBS}")
        if self.burst > 1 and self.rate is None:
            raise ValueError("burst groups the arrivals of a rate: give rate as well")
        return self

    @model_validator(mode="after")
    def _per_job(self) -> Self:
        for name, kind, single in (("media_seconds_per_job", "transcribe", "media_seconds"),
                                   ("size_bytes_per_job", "upload", "size_bytes")):
            listed: list[Any] | None = getattr(self, name)
            if listed is None:
                continue
            if self.kind != kind:
                raise ValueError(f"{name} is for {kind} jobs, and this workload's kind is "
                                 f"{self.kind!r}: remove it or set kind: {kind}")
            if getattr(self, single) is not None:
                raise ValueError(f"give {single} or {name}, not both")
            if self.duration_s is not None:
                raise ValueError(f"{name} lists the jobs one by one: it cannot go with "
                                 f"duration_s (give jobs and rate instead)")
            if "jobs" in self.model_fields_set and self.jobs != len(listed):
                raise ValueError(f"{name} has {len(listed)} entries for {self.jobs} jobs: "
                                 f"give one a job (or leave jobs out)")
            self.jobs = len(listed)
        return self

    @model_validator(mode="after")
    def _deadlines(self) -> Self:
        listed = self.timeout_s_per_job
        if listed is None:
            return self
        if self.timeout_s is not None:
            raise ValueError("give timeout_s (every job's deadline) or timeout_s_per_job, "
                             "not both")
        if len(listed) != self.jobs:
            raise ValueError(f"timeout_s_per_job has {len(listed)} entries for {self.jobs} "
                             f"jobs: give one a job (null for a job without a deadline)")
        return self

    def media_of(self, index: int) -> float:
        """Job ``index``'s media length (``media_seconds_per_job``, else ``media_seconds``)."""
        listed = self.media_seconds_per_job
        if listed is not None:
            return listed[index % len(listed)]
        return DEFAULT_MEDIA_SECONDS if self.media_seconds is None else self.media_seconds

    def size_of(self, index: int) -> int:
        """Job ``index``'s source size (``size_bytes_per_job``, else ``size_bytes``)."""
        listed = self.size_bytes_per_job
        if listed is not None:
            return listed[index % len(listed)]
        return DEFAULT_SIZE_BYTES if self.size_bytes is None else self.size_bytes

    def timeout_of(self, index: int) -> float | None:
        """Job ``index``'s deadline in seconds from its submit (None: it has none)."""
        listed = self.timeout_s_per_job
        return self.timeout_s if listed is None else listed[index % len(listed)]

    @property
    def arrival_s(self) -> float:
        """How long submitting takes: 0 without a rate."""
        return 0.0 if self.rate is None else self.jobs / self.rate


class ServiceSpec(BaseModel):
    """How the workload's external service answers (the transcription service for the
    reference pack, the billing service for the queue packs): each call takes a latency
    drawn from a log-normal with this median and 99th percentile; it honours idempotency
    keys (a repeated key is answered from the first call, billed once) or ignores them
    (every call is new, billable work, as with the real OpenAI endpoint); and it answers
    its status endpoint (what it knows of a key) or not (404). With keys ignored, only
    the worker's own status check before redoing work keeps a chunk billed once."""

    model_config = ConfigDict(extra="forbid")
    latency_median_ms: float = Field(0, ge=0, le=60_000)
    latency_p99_ms: float | None = Field(None, ge=0, le=600_000)
    idempotency_keys: Literal["honoured", "ignored"] = "honoured"
    status_endpoint: bool = Field(True, description="answers status queries about a key")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.latency_p99_ms is not None and self.latency_p99_ms < self.latency_median_ms:
            raise ValueError(f"latency_p99_ms ({self.latency_p99_ms}) must be at least "
                             f"latency_median_ms ({self.latency_median_ms})")
        return self

    @property
    def has_latency(self) -> bool:
        return self.latency_median_ms > 0

    @property
    def has_behaviour(self) -> bool:
        """Whether it differs from a service that honours keys and answers status queries."""
        return self.idempotency_keys != "honoured" or not self.status_endpoint

    def latency(self, seed: int) -> LatencyModel:
        """The service's latency model for a run with ``seed``."""
        return LatencyModel(self.latency_median_ms, self.latency_p99_ms, seed)


class ExpectSpec(BaseModel):
    """The scenario's expectations; ``to_expectations`` hands them to the checkers."""

    model_config = ConfigDict(extra="forbid")
    terminal_states: list[str] = Field(default_factory=lambda: ["COMPLETED"])
    retry_count: int | None = Field(None, ge=0)
    failure_reason: str | None = None
    # the bound external_work_per_chunk applies: each chunk billed once (true), or once per
    # interruption at most (false); with ``service.idempotency_keys: ignored`` a true here
    # says the worker's own status check must keep the work single
    idempotency_keys_honoured: bool = True
    min_rejected_writes: int | None = Field(None, ge=0)
    effects: Literal["at_most_once", "at_least_once", "exactly_once"] | None = None

    def to_expectations(self, max_retries: int | None) -> Expectations:
        return Expectations(
            terminal_states=frozenset(self.terminal_states),
            idempotency_keys_honoured=self.idempotency_keys_honoured,
            max_retries=max_retries,
            expect_failure_reason=self.failure_reason,
            expect_retry_count=self.retry_count,
            min_rejected_writes=self.min_rejected_writes,
            effects=self.effects,
        )


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    description: str
    origin: str = ""
    target: str | None = Field(None, description="the pack this scenario is written for")
    workload: Workload = Field(default_factory=Workload)
    workers: int = Field(1, ge=1, le=16, description="workers alive once the faults are done")
    initial_workers: int | None = Field(None, ge=1, le=16,
                                        description="workers at the start (default: workers)")
    settings: dict[str, str] = Field(default_factory=dict)
    faults: list[FaultSpec] = Field(default_factory=list)
    expect: ExpectSpec = Field(default_factory=ExpectSpec)
    service: ServiceSpec = Field(default_factory=ServiceSpec)
    time_limit_s: float | None = Field(None, gt=0, le=3600,
                                       description="timed faults stop repeating this long "
                                                   "after the workload starts")
    supervise_s: float | None = Field(None, ge=0, le=600,
                                      description="while the faults run, start a worker that "
                                                  "failed by itself (exit code > 0) again this "
                                                  "long after, as a process manager would")
    timeout_s: float = Field(90, gt=0, le=3600, description="budget for jobs to settle")
    phase_timeout_s: float = Field(30, gt=0, le=600,
                                   description="how long a fault waits for its phase")
    tags: list[str] = Field(default_factory=list,
                            description="labels for selection; `quick` is `crashlab run --quick`")

    @model_validator(mode="after")
    def _timed(self) -> Self:
        arrival = self.workload.arrival_s
        if arrival > self.timeout_s:
            raise ValueError(f"workload: submitting takes {arrival:.0f} s (jobs / rate), "
                             f"beyond timeout_s ({self.timeout_s:.0f} s): raise timeout_s or "
                             f"shorten the workload")
        if self.time_limit_s is not None and self.time_limit_s > self.timeout_s:
            raise ValueError(f"time_limit_s ({self.time_limit_s:.0f} s) is beyond timeout_s "
                             f"({self.timeout_s:.0f} s): raise timeout_s")
        return self

    @model_validator(mode="after")
    def _known_workers(self) -> Self:
        count = max(self.workers, self.initial_workers or 0)
        for index, fault in enumerate(self.faults):
            names = getattr(fault, "workers", None)
            if isinstance(names, list) and (why := check_slots(names, count)):
                raise ValueError(f"faults.{index}.workers: {why}")
            # a fault on one kind of job's traffic (the S3 faults: uploads) says so
            needs = getattr(fault, "workload_kind", None)
            if needs is not None and needs != self.workload.kind:
                raise ValueError(f"faults.{index}: {fault.kind} acts on the traffic of "
                                 f"{needs} jobs; give the scenario workload: {{kind: {needs}}}")
        return self

    @field_validator("settings", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @property
    def worker_settings(self) -> dict[str, str]:
        """The settings for the reference pack (its defaults under the scenario's)."""
        return self.settings_for(DEFAULT_SETTINGS)

    def settings_for(self, defaults: Mapping[str, str]) -> dict[str, str]:
        """The worker settings of a run: a target's defaults under the scenario's."""
        extra = UPLOAD_SETTINGS if self.needs_s3 else {}
        return {**defaults, **extra, **self.settings}

    @property
    def needs_aof(self) -> bool:
        return any(f.kind == "restart_redis" for f in self.faults)

    @property
    def needs_s3(self) -> bool:
        return self.workload.kind == "upload"

    def expectations(self) -> Expectations:
        return self.expect.to_expectations(self.workload.max_retries)


def parse_scenario(text: str, source: str) -> Scenario:
    """Parse YAML text; ``ScenarioError`` naming ``source``, the field and the fix."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ScenarioError(f"{source}: expected a mapping with at least 'name' and "
                            f"'description', got {type(raw).__name__}")
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(part) for part in err["loc"]) or "(top level)"
            problems.append(f"  {field}: {_message(err)}{_hint(err)}")
        raise ScenarioError(f"{source}: invalid scenario\n" + "\n".join(problems)) from None


def _message(err: Any) -> str:
    if err.get("type") == "union_tag_invalid":
        from harness.faults import FAULT_KINDS

        tag = (err.get("ctx") or {}).get("tag", "?")
        return f"unknown fault kind {tag!r}; the kinds are: {', '.join(FAULT_KINDS)}"
    return str(err["msg"])


def _hint(err: Any) -> str:
    kind = err.get("type")
    if kind == "extra_forbidden":
        return " (remove it, or check its spelling)"
    if kind == "missing":
        return " (add this field)"
    return ""


def load_scenario_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc.strerror}") from None
    return parse_scenario(text, str(path))


def catalog() -> dict[str, Scenario]:
    """Every scenario shipped in the ``scenarios`` package, by name."""
    found: dict[str, Scenario] = {}
    for entry in sorted(importlib.resources.files("scenarios").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            scenario = parse_scenario(entry.read_text(encoding="utf-8"), f"scenarios/{entry.name}")
            if scenario.name in found:
                raise ScenarioError(f"scenarios/{entry.name}: duplicate name {scenario.name!r}")
            found[scenario.name] = scenario
    return found


QUICK_TAG = "quick"
SOAK_TAG = "soak"
"""Scenarios that run for minutes: ``--all`` leaves them out; run them by name."""


def runs_in_all(scenarios: Mapping[str, Scenario]) -> list[Scenario]:
    """What ``crashlab run --all`` runs of a catalog: every scenario but its soaks."""
    return [s for s in scenarios.values() if SOAK_TAG not in s.tags]


def tagged(tag: str) -> list[Scenario]:
    """The catalog's scenarios carrying ``tag`` (``quick``: the subset of ``run --quick``)."""
    return [s for s in catalog().values() if tag in s.tags]


def resolve(name_or_path: str) -> Scenario:
    """A catalog name, or a path to a scenario file."""
    path = Path(name_or_path)
    if name_or_path.endswith((".yaml", ".yml")) or path.is_file():
        return load_scenario_file(path)
    scenarios = catalog()
    if name_or_path not in scenarios:
        raise ScenarioError(f"no scenario named {name_or_path!r}; `crashlab list` shows the "
                            f"catalog ({', '.join(sorted(scenarios))})")
    return scenarios[name_or_path]
