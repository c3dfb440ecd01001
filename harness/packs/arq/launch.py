"""The arq pack's worker command: crashlab's control channel, then arq's own ``Worker``.

Run as ``python -m harness.packs.arq.launch``. It serves the failpoint control
channel first (``harness.failpoint.serve``, a thread that keeps answering
while Redis is cut or the event loop is busy), then builds arq's real
``arq.worker.Worker`` (the subclass ``CrashlabWorker`` below) from the
settings in the environment and runs it with ``Worker.run``, exactly what
``arq.worker.run_worker`` does with a ``WorkerSettings`` class. Everything
comes from the environment the target sets (``ArqTarget.environment``):

    CRASHLAB_REDIS_URL          the Redis the worker uses (the Toxiproxy listener)
    CRASHLAB_WORKER_ID          the worker's name in crashlab's history
    CRASHLAB_CONTROL_URL        where the control channel listens
    CRASHLAB_FAILPOINTS         points armed from the start (``point=actions;...``)
    CRASHLAB_LEDGER             the effects ledger the jobs append to
    CRASHLAB_BILLING_URL        the billing service the example job charges
    CRASHLAB_ARQ_JOB            the job coroutine, ``module:function``
    CRASHLAB_ARQ_QUEUE          ``queue_name`` (arq's default ``arq:queue``)
    CRASHLAB_ARQ_JOB_TIMEOUT    ``job_timeout`` in seconds
    CRASHLAB_ARQ_MAX_TRIES      ``max_tries``
    CRASHLAB_ARQ_POLL_DELAY     ``poll_delay`` in seconds
    CRASHLAB_ARQ_KEEP_RESULT    ``keep_result`` in seconds
    CRASHLAB_ARQ_MAX_JOBS       ``max_jobs``

``CrashlabWorker``: arq's own ``Worker``, instrumented only with failpoints.

Each override awaits a failpoint and then arq's own method, unchanged. arq
has no separate dequeue step: ``Worker.start_jobs`` claims a job id it read
from the queue by setting ``arq:in-progress:<id>`` (``psetex`` for
``job_timeout + 10`` s) and starts ``run_job`` as a task; the job stays in
the ``arq:queue`` sorted set until ``finish_job`` removes it. The points, in
the order a job meets them (``POINTS`` describes each):

    worker.dequeued        ``run_job`` entered: the in-progress key is set, the try
                           counter (``arq:retry:<id>``) not yet incremented, the job
                           record not yet read
    job.*                  inside the job (``harness.packs.arq.app``)
    worker.before_finish   the job returned or raised and its result is serialized;
                           ``finish_job`` has not written it, the job is still queued

arq runs jobs as tasks on the worker's own event loop (no forked child), so
every hit carries the worker's pid and a SIGKILL takes the job with it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func

from harness.failpoint import afailpoint, serve

log = logging.getLogger(__name__)

REDIS_URL_ENV = "CRASHLAB_REDIS_URL"
SETTING_PREFIX = "CRASHLAB_ARQ_"

# Every failpoint, in the order a job meets them (``CrashlabWorker`` below for the
# worker's, ``harness.packs.arq.app`` for the job's); the control channel serves this
# catalog at /points and refuses to arm any other name.
POINTS: dict[str, str] = {
    "worker.dequeued": "the job id was claimed (arq:in-progress set); its try is not "
                       "counted and its record not read yet",
    "job.started": "the job's attempt began (its ledger start is written)",
    "job.before_charge": "the job worked half its time; the billable call is next",
    "job.charged": "the billing service answered; the effect is recorded",
    "job.before_return": "the job finished its work and is about to return",
    "worker.before_finish": "the job ended; arq has not written its result nor removed "
                            "it from the queue",
}


@dataclass(frozen=True)
class ArqSettings:
    """The ``Worker`` arguments a run sets; every other argument keeps arq's default."""

    redis_url: str
    job: str  # module:function
    queue: str
    job_timeout_s: float
    max_tries: int
    poll_delay_s: float
    keep_result_s: float
    max_jobs: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ArqSettings:
        """The settings in ``env``; ``ValueError`` naming the variable that is missing or bad."""
        def get(name: str) -> str:
            key = name if name == REDIS_URL_ENV else SETTING_PREFIX + name
            value = env.get(key, "")
            if not value:
                raise ValueError(f"the environment lacks {key}; start the worker through "
                                 "the arq pack (ArqTarget.environment sets it)")
            return value

        try:
            return cls(redis_url=get(REDIS_URL_ENV), job=get("JOB"), queue=get("QUEUE"),
                       job_timeout_s=float(get("JOB_TIMEOUT")), max_tries=int(get("MAX_TRIES")),
                       poll_delay_s=float(get("POLL_DELAY")),
                       keep_result_s=float(get("KEEP_RESULT")), max_jobs=int(get("MAX_JOBS")))
        except ValueError as exc:
            if "lacks" in str(exc):
                raise
            raise ValueError(f"an arq setting in the environment is not a number ({exc}); "
                             "give job_timeout, poll_delay, keep_result in seconds and "
                             "max_tries, max_jobs as integers") from exc


def job_function(spec: str) -> tuple[str, Any]:
    """The ``module:function`` coroutine and the name arq registers (and enqueues) it by.

    ``ValueError`` naming the spec when it is malformed or does not import.
    """
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"setting job: {spec!r} is not 'module:function'; give the job as "
                         "e.g. 'harness.packs.arq.app:work'")
    module = importlib.import_module(module_name)
    coroutine = getattr(module, name, None)
    if coroutine is None:
        raise ValueError(f"setting job: module {module_name!r} has no {name!r}")
    return name, coroutine


class CrashlabWorker(Worker):
    """``arq.worker.Worker`` with a failpoint before each step a fault aims at."""

    async def run_job(self, job_id: str, score: int) -> None:
        await afailpoint("worker.dequeued", job=job_id)
        await super().run_job(job_id, score)

    async def finish_job(self, job_id: str, finish: bool, result_data: bytes | None,
                         result_timeout_s: float | None, keep_result_forever: bool,
                         incr_score: int | None, keep_in_progress: float | None) -> None:
        await afailpoint("worker.before_finish", job=job_id)
        await super().finish_job(job_id, finish, result_data, result_timeout_s,
                                 keep_result_forever, incr_score, keep_in_progress)


def build_worker(settings: ArqSettings) -> CrashlabWorker:
    """arq's worker for ``settings``, as ``arq.worker.create_worker`` would make it."""
    name, coroutine = job_function(settings.job)
    return CrashlabWorker(
        functions=[func(coroutine, name=name)],
        queue_name=settings.queue,
        redis_settings=RedisSettings.from_dsn(settings.redis_url),
        job_timeout=settings.job_timeout_s,
        max_tries=settings.max_tries,
        poll_delay=settings.poll_delay_s,
        keep_result=settings.keep_result_s,
        max_jobs=settings.max_jobs,
    )


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(POINTS)
    try:
        settings = ArqSettings.from_env(os.environ)
        worker = build_worker(settings)
    except ValueError as exc:
        sys.exit(f"arq worker launcher: {exc}")
    log.info("starting arq worker on %s (job %s, job_timeout %s s, max_tries %d)",
             settings.queue, settings.job, settings.job_timeout_s, settings.max_tries)
    worker.run()


if __name__ == "__main__":
    main()
