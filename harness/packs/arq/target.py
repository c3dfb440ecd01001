"""Target adapter for real arq 0.28 workers (``--target arq``).

Jobs are enqueued with arq's own API (``arq.connections.ArqRedis.enqueue_job``,
``_job_id`` ``arq-<seed>-<i>``) straight into the data Redis, never through
the proxy; workers are arq's own ``Worker`` (``harness.packs.arq.launch``);
each job is the example coroutine (``harness.packs.arq.app``) or the user's
own. Outcomes are read back from arq's key layout (``arq.constants``), the
job and result records decoded with arq's own ``deserialize_job`` and
``deserialize_result``:

    arq:queue                  the queue (sorted set, score = when the job may run); a
                               job stays in it while it runs, until ``finish_job``
    arq:job:<id>               the pickled job (function, args, enqueue time), expires
                               ``expires_extra_ms`` (1 day) after its score
    arq:in-progress:<id>       the claim, set by ``Worker.start_jobs`` for
                               ``job_timeout + 10`` s and never refreshed
    arq:retry:<id>             the try counter, incremented as each attempt starts
    arq:result:<id>            the pickled result (success, result or exception, tries,
                               start and finish times), kept ``keep_result`` s

arq has no per-job retry limit or timeout at enqueue time: ``max_tries`` and
``job_timeout`` are the worker's. So a workload's ``max_retries`` and
``timeout_s`` must agree with the settings ``max_tries`` (= max_retries + 1)
and ``job_timeout``; ``submit_workload`` refuses a scenario where they do not.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any, cast

import redis
from arq.connections import RedisSettings, create_pool
from arq.constants import (
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)
from arq.jobs import DeserializationError, JobStatus, deserialize_job, deserialize_result
from arq.worker import JobExecutionFailed

from harness.checkers.base import Checker
from harness.checkers.registry import suite
from harness.environment import Environment
from harness.errors import ScenarioError
from harness.history import HistoryWriter
from harness.ledger import record_ledger, record_service_calls
from harness.packs.arq.app import BILLING_URL_ENV
from harness.packs.arq.launch import POINTS, REDIS_URL_ENV, SETTING_PREFIX, job_function
from harness.runfolder import LEDGER_FILE
from harness.scenario import Scenario, Workload
from harness.services.billing import BillingService
from harness.services.latency import LatencyModel
from harness.target import JobSnapshot, Semantics, Wiring, WorkerSpec

# Worker settings when a scenario gives none: arq's own defaults but one.
# arq's job_timeout of 300 s sets every claim (arq:in-progress) for 310 s, and
# a crashed worker's job waits for that key to expire (arq#343, arq#407), so
# the pack shortens job_timeout to 20 s (claims of 30 s); arq-kill-mid-job-stock
# runs arq's 300 s.
DEFAULT_SETTINGS = {
    "queue": "arq:queue",          # arq.constants.default_queue_name
    "job_timeout": "20",           # arq: 300
    "max_tries": "5",              # arq's default
    "poll_delay": "0.5",           # arq's default
    "keep_result": "3600",         # arq's default
    "max_jobs": "10",              # arq's default
    "job": "harness.packs.arq.app:work",
}
IN_PROGRESS_MARGIN_S = 10  # Worker.__init__: in_progress_timeout_s = max job timeout + 10


class ArqTarget:
    """arq workers; see the module docstring."""

    name = "arq"
    # A job leaves arq:queue only when finish_job (or finish_failed_job) runs, so an
    # attempt cut short by a crash is run again once its claim expires, side effect
    # and all; arq dedupes nothing but the enqueue of a job id (enqueue_job refuses an
    # id whose job or result exists). arq's documentation says as much: jobs may run
    # more than once and should be idempotent. A job with max_tries 1 is never re-run
    # (run_job fails it with "max 1 retries exceeded"), so its scenarios demand
    # at_most_once through expect.effects.
    effects = Semantics.AT_LEAST_ONCE
    # A killed worker's job is claimed by arq:in-progress:<id> for job_timeout + 10 s
    # from its start = 30 s with the pack's job_timeout (20 s); after the key expires
    # the next poll (every 0.5 s) of a live worker starts it again, and it works its
    # own time. 30 + 0.5 + a replacement worker's start and the job's work (a few
    # seconds) + slack for a loaded 2-core machine: 45 s.
    recovery_limit_s = 45.0
    default_settings = DEFAULT_SETTINGS
    repeating_points: frozenset[str] = frozenset()  # every point is hit once per attempt
    after_crash_points: frozenset[str] = frozenset()
    workload_kinds = frozenset({"task"})

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable
        self._billing: BillingService | None = None
        self._max_retries: dict[str, int] = {}  # job id -> max_tries - 1 it was run with

    # -- vocabulary and commands ---------------------------------------------

    def phases(self) -> Mapping[str, str]:
        return POINTS

    def api_argv(self, host: str, port: int) -> Sequence[str] | None:
        return None  # no API: jobs are enqueued straight to Redis

    def worker_argv(self) -> Sequence[str]:
        return [self.python, "-m", "harness.packs.arq.launch"]

    def environment(self, wiring: Wiring, worker: WorkerSpec | None,
                    settings: Mapping[str, str]) -> dict[str, str]:
        env = {REDIS_URL_ENV: wiring.redis_url,
               "CRASHLAB_LEDGER": str(wiring.data_dir / LEDGER_FILE),
               BILLING_URL_ENV: wiring.services.get("billing", "")}
        if worker is not None:
            env |= {"CRASHLAB_WORKER_ID": worker.worker_id,
                    "CRASHLAB_CONTROL_URL": worker.control_url,
                    "CRASHLAB_FAILPOINTS": worker.failpoints}
        merged = {**self.default_settings, **settings}
        env |= {SETTING_PREFIX + key.upper(): value for key, value in merged.items()}
        return env

    # -- services and workload -----------------------------------------------

    def start_services(self, env: Environment) -> dict[str, str]:
        """The billing service the example job charges."""
        service = BillingService(env.run_dir / "billing", env.registry).start()
        self._billing = service
        env.own("billing", service.stop, service.pid)
        return {"billing": service.url}

    def lease_s(self, settings: Mapping[str, str]) -> float:
        """arq's claim (``arq:in-progress``) lasts ``job_timeout + 10`` s."""
        return float(settings["job_timeout"]) + 10

    def set_service_latency(self, env: Environment, model: LatencyModel) -> None:
        """The billing service answers each charge after a drawn latency."""
        if self._billing is not None:
            self._billing.set_latency(model)

    def submit_workload(self, env: Environment, scenario: Scenario, seed: int,
                        indices: Sequence[int] | None = None) -> None:
        """Enqueue ``workload.jobs`` jobs with arq's API; job ``i`` is ``arq-<seed>-<i>``."""
        work = scenario.workload
        settings = {**self.default_settings, **env.options.worker_settings}
        max_retries = _agreed_retries(scenario.name, work.max_retries, settings)
        _check_timeout(scenario.name, work, settings)
        function, _ = job_function(settings["job"])
        job_ids = [f"arq-{seed}-{index}"
                   for index in (range(work.jobs) if indices is None else indices)]
        url = env.wiring.direct_redis_url
        asyncio.run(_enqueue(url, settings["queue"], function, job_ids, work.work_ms))
        for job_id in job_ids:
            self._max_retries[job_id] = max_retries
            env.add_job(job_id, kind="task", max_retries=max_retries,
                        timeout_s=float(settings["job_timeout"]), work_ms=work.work_ms,
                        queue=settings["queue"], func=settings["job"])

    def collect(self, env: Environment, history: HistoryWriter) -> None:
        """The effects ledger and the billing service's call log, into the history."""
        record_ledger(env.ledger_path, history)
        if self._billing is not None:
            record_service_calls("billing", self._billing.calls(), history)

    def checkers(self) -> Sequence[Checker]:
        return suite("queue", "faults")

    def read_events(self, client: redis.Redis, after: str) -> list[tuple[str, dict[str, Any]]]:
        return []  # arq publishes no event stream

    # -- reading outcomes ----------------------------------------------------

    def job_ids(self, client: redis.Redis) -> list[str]:
        ids: set[str] = set()
        for prefix in (job_key_prefix, result_key_prefix, in_progress_key_prefix):
            ids |= {_text(key)[len(prefix):] for key in client.scan_iter(prefix + "*", count=1000)}
        queue = self.default_settings["queue"]
        ids |= {_text(member) for member in cast(list[bytes], client.zrange(queue, 0, -1))}
        return sorted(ids)

    def snapshot(self, client: redis.Redis, job_id: str) -> JobSnapshot:
        """The job's state from arq's keys, in the order ``arq.jobs.Job.status`` reads them
        (result, in-progress claim, queue score)."""
        raw = raw_client(client)
        queue = self.default_settings["queue"]
        pipe = raw.pipeline(transaction=True)
        pipe.get(result_key_prefix + job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        pipe.zscore(queue, job_id)
        pipe.get(job_key_prefix + job_id)
        pipe.get(retry_key_prefix + job_id)
        found = pipe.execute()
        result_raw, in_progress, score, job_raw, tries_raw = found
        sets = [key for key, held in ((queue, score is not None),
                                      (job_key_prefix + job_id, job_raw is not None),
                                      (in_progress_key_prefix + job_id, bool(in_progress)),
                                      (retry_key_prefix + job_id, tries_raw is not None),
                                      (result_key_prefix + job_id, result_raw is not None))
                if held]
        max_retries = self._max_retries.get(job_id, int(self.default_settings["max_tries"]) - 1)
        tries = int(tries_raw) if tries_raw is not None else 0
        if result_raw is not None:
            return self._finished(job_id, result_raw, sets, max_retries)
        if in_progress:
            native, state = JobStatus.in_progress, "PROCESSING"
        elif score is not None:
            native, state = JobStatus.queued, "QUEUED"  # deferred is queued to the core
            if score > _now_ms(raw):
                native = JobStatus.deferred
        else:
            native, state = JobStatus.not_found, "MISSING"
        if job_raw is not None and not tries:
            try:
                tries = int(deserialize_job(job_raw).job_try or 0)
            except DeserializationError:
                pass
        return JobSnapshot(job_id=job_id, state=state, retry_count=max(0, tries - 1),
                           max_retries=max_retries, error=None, state_sets=sets,
                           native_state=native.value if native is not JobStatus.not_found
                           else None, kind="task")

    def _finished(self, job_id: str, result_raw: bytes, sets: list[str],
                  max_retries: int) -> JobSnapshot:
        try:
            result = deserialize_result(result_raw)
        except DeserializationError as exc:
            return JobSnapshot(job_id=job_id, state="FAILED", retry_count=0,
                               max_retries=max_retries, error=f"unreadable arq result: {exc}",
                               state_sets=sets, native_state=JobStatus.complete.value,
                               kind="task")
        error = None
        state = "COMPLETED"
        tries = int(result.job_try or 1)
        if _refused_try(result.result):
            # run_job counts a try (INCR arq:retry) before it checks max_tries, so the
            # result of a refused try records one more try than ever ran the job
            tries -= 1
        if not result.success:
            error = f"{type(result.result).__name__}: {result.result}"
            if isinstance(result.result, asyncio.CancelledError):
                state = "CANCELLED"  # Job.abort
            elif isinstance(result.result, TimeoutError):
                state = "TIMED_OUT"  # run_job's asyncio.wait_for(job, timeout_s)
            else:
                state = "FAILED"
        return JobSnapshot(job_id=job_id, state=state,
                           retry_count=max(0, tries - 1),
                           max_retries=max_retries, error=error, state_sets=sets,
                           native_state=JobStatus.complete.value,
                           ended_at=result.finish_time.timestamp(), kind="task")

    def reset(self, client: redis.Redis) -> None:
        keys = list(client.scan_iter("arq:*", count=1000))
        if keys:
            client.delete(*keys)
        self._max_retries.clear()
        if self._billing is not None and self._billing.pid is not None:
            self._billing.reset()


def _refused_try(outcome: object) -> bool:
    """Whether a result is run_job's refusal of a try past ``max_tries`` (the job's
    function did not run on it)."""
    return isinstance(outcome, JobExecutionFailed) and "retries exceeded" in str(outcome)


async def _enqueue(url: str, queue: str, function: str, job_ids: Sequence[str],
                   work_ms: int) -> None:
    """``enqueue_job`` each id on the Redis at ``url``; ``ScenarioError`` if arq refuses one."""
    pool = await create_pool(RedisSettings.from_dsn(url), default_queue_name=queue)
    try:
        for job_id in job_ids:
            job = await pool.enqueue_job(function, job_id, work_ms, _job_id=job_id)
            if job is None:
                raise ScenarioError(f"arq refused to enqueue job {job_id}: a job or result "
                                    "with this id already exists; reset the queue (or use "
                                    "another seed) before submitting again")
    finally:
        await pool.aclose()  # redis-py 5: close() is deprecated


def _agreed_retries(scenario: str, max_retries: int | None, settings: Mapping[str, str]) -> int:
    """The retries arq will allow (``max_tries - 1``); ``ScenarioError`` if the workload
    asks for others."""
    tries = int(settings["max_tries"])
    if max_retries is not None and max_retries + 1 != tries:
        raise ScenarioError(f"scenario {scenario}: workload.max_retries {max_retries} needs "
                            f"arq's max_tries {max_retries + 1}, but the settings give "
                            f"max_tries {tries}; arq's retry limit is the worker's, so set "
                            f"settings.max_tries: {max_retries + 1}")
    return tries - 1


def _check_timeout(scenario: str, work: Workload, settings: Mapping[str, str]) -> None:
    given = float(settings["job_timeout"])
    timeout_s = work.timeout_s
    if work.timeout_s_per_job is not None:
        raise ScenarioError(f"scenario {scenario}: workload.timeout_s_per_job: arq's timeout "
                            f"is the worker's (settings.job_timeout), one for every job; "
                            f"give workload.timeout_s instead")
    if timeout_s is not None and timeout_s != given:
        raise ScenarioError(f"scenario {scenario}: workload.timeout_s {timeout_s:g} differs "
                            f"from arq's job_timeout {given:g}; arq's timeout is the worker's, "
                            f"so set settings.job_timeout: {timeout_s:g}")


def _now_ms(client: redis.Redis) -> int:
    seconds, micros = cast(tuple[int, int], client.time())
    return int(seconds) * 1000 + int(micros) // 1000


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_RAW: dict[int, redis.Redis] = {}  # one bytes client per harness client


def raw_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server that returns bytes (arq's records are pickles);
    made once per ``client`` and remade when the server's port changed."""
    given = client.connection_pool.connection_kwargs
    raw = _RAW.get(id(client))
    if raw is None or raw.connection_pool.connection_kwargs.get("port") != given.get("port"):
        raw = _RAW[id(client)] = redis.Redis(
            host=given.get("host", "127.0.0.1"), port=given.get("port", 6379),
            db=given.get("db", 0), password=given.get("password"),
            socket_timeout=given.get("socket_timeout"), decode_responses=False)
    return raw
