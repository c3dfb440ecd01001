"""Target adapter for real RQ 2.x workers (``--target rq``).

Jobs are enqueued with RQ's own API (``rq.Queue.enqueue``) straight into the
data Redis; workers are RQ's own ``rq worker`` (``harness.packs.rq.launch``)
with an instrumented subclass of ``rq.Worker`` (``harness.packs.rq.launch``);
each job is the example app (``harness.packs.rq.app``) or the user's own.
Outcomes are read back with RQ's own ``Job.fetch`` and RQ's key layout:

    rq:job:<id>                   the job hash (status, retries_left, exc_info, ended_at)
    rq:queue:<q>                  the queue (a list of job ids)
    rq:queue:<q>:intermediate     dequeued but not yet started (BLMOVE target)
    rq:wip:<q>                    StartedJobRegistry (members ``<job id>:<execution id>``)
    rq:finished:<q> rq:failed:<q> rq:deferred:<q> rq:scheduled:<q> rq:canceled:<q>
                                  the other registries (sorted sets of job ids)

Why RQ 2.12.0: RQ 3.0 exists, but the issues this pack is meant to reveal
(rq#2015, rq#1461, rq#2236) were reported against RQ 1.x/2.x, and the
intermediate list, executions and abandoned-job cleanup they concern are
2.x's.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import redis
from rq import Queue, Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job

from harness.checkers.base import Checker
from harness.checkers.registry import suite
from harness.environment import Environment
from harness.errors import ScenarioError
from harness.history import HistoryWriter
from harness.ledger import record_ledger, record_service_calls
from harness.packs.rq.app import BILLING_URL_ENV
from harness.packs.rq.launch import POINTS, REDIS_URL_ENV, SETTING_PREFIX
from harness.runfolder import LEDGER_FILE
from harness.scenario import Scenario
from harness.services.billing import BillingService
from harness.services.latency import LatencyModel
from harness.target import JobSnapshot, Semantics, Wiring, WorkerSpec

# RQ's JobStatus -> the core's words (harness.target.JobSnapshot)
STATES = {"created": "QUEUED", "queued": "QUEUED", "deferred": "QUEUED", "scheduled": "QUEUED",
          "started": "PROCESSING", "finished": "COMPLETED", "failed": "FAILED",
          "stopped": "CANCELLED", "canceled": "CANCELLED"}
# the registries holding job ids as members, by RQ's key template
REGISTRIES = ("rq:finished:{q}", "rq:failed:{q}", "rq:deferred:{q}", "rq:scheduled:{q}",
              "rq:canceled:{q}")
MAX_RETRIES_META = "crashlab_max_retries"  # the Retry(max=N) a job was enqueued with
TIMEOUT_MARK = "JobTimeoutException"  # in exc_info: RQ's death penalty ended the attempt

# Worker settings when a scenario gives none. RQ's defaults (worker_ttl 420,
# maintenance_interval 600, job_monitoring_interval 30) put the recovery of a
# killed job 11-12 minutes away, so the pack shortens the three documented
# ``rq worker`` options; every other RQ default stands.
DEFAULT_SETTINGS = {
    "queue": "crashlab",
    # an idle worker blocks in BLMOVE for worker_ttl - 15 s and runs maintenance
    # (the abandoned-job cleanup) only between two such waits
    "worker_ttl": "20",
    "maintenance_interval": "5",
    "job_monitoring_interval": "5",
    "horse_dies_with_worker": "1",  # see harness.packs.rq.launch
    "job": "harness.packs.rq.app:work",
}


class RqTarget:
    """RQ 2.x workers; see the module docstring."""

    name = "rq"
    # RQ re-runs a failed or abandoned attempt of a job enqueued with Retry and
    # dedupes nothing, so a retried job may repeat its side effect (docs: "Retrying
    # failed jobs"); a job without Retry is never re-run (its scenarios demand
    # at_most_once through expect.effects)
    effects = Semantics.AT_LEAST_ONCE
    # A killed attempt stays in rq:wip until its heartbeat TTL runs out:
    # BaseWorker.get_heartbeat_ttl = min(time left, job_monitoring_interval) + 60
    # = 65 s here; StartedJobRegistry.cleanup then fails it or, with retries left,
    # requeues it at the next maintenance (5 s, an idle BLMOVE 5 s). A job orphaned
    # in the intermediate list is failed by IntermediateQueue.cleanup one minute
    # after a maintenance first saw it. 65 + 5 + 5 + the job's own work and a
    # worker's start: 90 s.
    recovery_limit_s = 90.0
    default_settings = DEFAULT_SETTINGS
    repeating_points: frozenset[str] = frozenset()  # every point is hit once per attempt
    after_crash_points: frozenset[str] = frozenset()
    workload_kinds = frozenset({"task"})

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._billing: BillingService | None = None

    # -- vocabulary and commands ---------------------------------------------

    def phases(self) -> Mapping[str, str]:
        return POINTS

    def api_argv(self, host: str, port: int) -> Sequence[str] | None:
        return None  # no API: jobs are enqueued straight to Redis

    def worker_argv(self) -> Sequence[str]:
        return [self.python, "-m", "harness.packs.rq.launch"]

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        env = {REDIS_URL_ENV: wiring.redis_url,
               "CRASHLAB_LEDGER": str(wiring.data_dir / LEDGER_FILE),
               BILLING_URL_ENV: wiring.services.get("billing", "")}
        if worker is not None:
            env |= {"CRASHLAB_WORKER_ID": worker.worker_id,
                    "CRASHLAB_CONTROL_URL": worker.control_url,
                    "CRASHLAB_FAILPOINTS": worker.failpoints}
        env |= {SETTING_PREFIX + key.upper(): value for key, value in settings.items()}
        return env

    # -- services and workload -----------------------------------------------

    def start_services(self, env: Environment) -> dict[str, str]:
        """The billing service the example job charges."""
        service = BillingService(env.run_dir / "billing", env.registry).start()
        self._billing = service
        env.own("billing", service.stop, service.pid)
        return {"billing": service.url}

    def lease_s(self, settings: Mapping[str, str]) -> float:
        """A killed attempt stays in ``rq:wip`` for its heartbeat TTL (see above): at most
        ``job_monitoring_interval + 60`` s."""
        return float(settings["job_monitoring_interval"]) + 60

    def set_service_latency(self, env: Environment, model: LatencyModel) -> None:
        """The billing service answers each charge after a drawn latency."""
        if self._billing is not None:
            self._billing.set_latency(model)

    def submit_workload(self, env: Environment, scenario: Scenario, seed: int,
                        indices: Sequence[int] | None = None) -> None:
        """Enqueue the workload's jobs (``indices``, default all) with RQ's API; job ``i``
        is ``rq-<seed>-<i>``."""
        work = scenario.workload
        settings = {**self.default_settings, **env.options.worker_settings}
        func = _dotted(settings["job"])
        queue = Queue(settings["queue"], connection=raw_client(env.client))
        for index in range(work.jobs) if indices is None else indices:
            job_id = f"rq-{seed}-{index}"
            options: dict[str, Any] = {"job_id": job_id,
                                       "meta": {MAX_RETRIES_META: work.max_retries}}
            if work.max_retries is not None:
                options["retry"] = Retry(max=work.max_retries)
            timeout_s = work.timeout_of(index)
            if timeout_s is not None:
                options["job_timeout"] = max(1, round(timeout_s))
            if work.result_ttl_s is not None:
                options["result_ttl"] = work.result_ttl_s
            queue.enqueue(func, job_id, work.work_ms, **options)
            env.add_job(job_id, kind="task", max_retries=work.max_retries,
                        timeout_s=timeout_s, work_ms=work.work_ms,
                        result_ttl_s=work.result_ttl_s, queue=queue.name, func=func)

    def collect(self, env: Environment, history: HistoryWriter) -> None:
        """The effects ledger and the billing service's call log, into the history."""
        record_ledger(env.ledger_path, history)
        if self._billing is not None:
            record_service_calls("billing", self._billing.calls(), history)

    def checkers(self) -> Sequence[Checker]:
        return suite("queue", "faults")

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        return []  # RQ publishes no event stream

    # -- reading outcomes ----------------------------------------------------

    def job_ids(self, client: redis.Redis) -> list[str]:
        keys = client.scan_iter("rq:job:*", count=1000)
        return sorted({str(key)[len("rq:job:"):] for key in keys
                       if ":" not in str(key)[len("rq:job:"):]})

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot:
        raw = raw_client(client)
        queue = str(self.default_settings["queue"])
        try:
            job = Job.fetch(job_id, connection=raw)
        except NoSuchJobError:
            return JobSnapshot(job_id=job_id, state="MISSING", retry_count=0, max_retries=0,
                               error=None, state_sets=self._where(raw, job_id, queue),
                               kind="task")
        queue = job.origin or queue
        status = job.get_status(refresh=False)
        native = str(getattr(status, "value", status) or "")
        error = _error(job)
        state = STATES.get(native, "QUEUED")
        if state == "FAILED" and error is not None and TIMEOUT_MARK in error:
            state = "TIMED_OUT"
        allowed = job.meta.get(MAX_RETRIES_META)
        max_retries = int(allowed) if allowed is not None else 0
        retries = max_retries - int(job.retries_left) if job.retries_left is not None else 0
        return JobSnapshot(
            job_id=job_id, state=state, retry_count=max(0, retries), max_retries=max_retries,
            error=error, state_sets=self._where(raw, job_id, queue), native_state=native,
            ended_at=job.ended_at.timestamp() if job.ended_at is not None else None,
            kind="task")

    def _where(self, raw: redis.Redis, job_id: str, queue: str) -> list[str]:
        """Every key of ``queue`` that lists ``job_id`` (see the module docstring)."""
        lists = (f"rq:queue:{queue}", f"rq:queue:{queue}:intermediate")
        zsets = [template.format(q=queue) for template in REGISTRIES]
        pipe = raw.pipeline(transaction=True)
        for key in lists:
            pipe.lpos(key, job_id)
        for key in zsets:
            pipe.zscore(key, job_id)
        pipe.zrange(f"rq:wip:{queue}", 0, -1)
        *found, wip = pipe.execute()
        sets = [key for key, hit in zip([*lists, *zsets], found, strict=True) if hit is not None]
        prefix = f"{job_id}:".encode()
        if any(bytes(member).startswith(prefix) for member in wip):
            sets.append(f"rq:wip:{queue}")
        return sets

    def reset(self, client: redis.Redis) -> None:
        keys = list(client.scan_iter("rq:*", count=1000))
        if keys:
            client.delete(*keys)
        if self._billing is not None and self._billing.pid is not None:
            self._billing.reset()


_RAW: dict[int, redis.Redis] = {}  # one bytes client per harness client


def raw_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server that returns bytes, as RQ needs (its job hash holds
    compressed and pickled fields); made once per ``client``."""
    raw = _RAW.get(id(client))
    if raw is None or raw.connection_pool.connection_kwargs.get("port") != \
            client.connection_pool.connection_kwargs.get("port"):
        given = client.connection_pool.connection_kwargs
        raw = _RAW[id(client)] = redis.Redis(
            host=given.get("host", "127.0.0.1"), port=given.get("port", 6379),
            db=given.get("db", 0), password=given.get("password"),
            socket_timeout=given.get("socket_timeout"), decode_responses=False)
    return raw


def _dotted(spec: str) -> str:
    """``module:function`` (the ``job`` setting) as the dotted name RQ enqueues."""
    module, sep, function = spec.partition(":")
    if not sep or not module or not function:
        raise ScenarioError(f"setting job: {spec!r} is not 'module:function'; give the job "
                            "as e.g. 'harness.packs.rq.app:work'")
    return f"{module}.{function}"


def _error(job: Job) -> str | None:
    """The job's last failure text, if it failed (RQ keeps it in its results)."""
    try:
        text = job.exc_info
    except Exception:  # noqa: BLE001 - a result RQ cannot read is no error text
        return None
    return str(text).strip().splitlines()[-1] if text else None
