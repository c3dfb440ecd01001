"""The rq pack's worker command: crashlab's control channel, then RQ's own ``rq worker``.

Run as ``python -m harness.packs.rq.launch``. It serves the failpoint control
channel first (``harness.failpoint.serve``, a thread that keeps answering
while Redis is cut), then hands over to RQ's real CLI entry point
(``rq.cli.main``, the ``rq`` console script) with the worker class
``CrashlabWorker`` (below). Everything comes from the
environment the target sets (``RqTarget.environment``):

    CRASHLAB_REDIS_URL                  the Redis the worker uses (the Toxiproxy listener)
    CRASHLAB_WORKER_ID                  the worker's RQ name (``--name``)
    CRASHLAB_CONTROL_URL                where the control channel listens
    CRASHLAB_FAILPOINTS                 points armed from the start (``point=actions;...``)
    CRASHLAB_LEDGER                     the effects ledger the jobs append to
    CRASHLAB_BILLING_URL                the billing service the example job charges
    CRASHLAB_RQ_QUEUE                   the queue listened on
    CRASHLAB_RQ_WORKER_TTL              ``--worker-ttl``
    CRASHLAB_RQ_MAINTENANCE_INTERVAL    ``--maintenance-interval``
    CRASHLAB_RQ_JOB_MONITORING_INTERVAL ``--job-monitoring-interval``
    CRASHLAB_RQ_HORSE_DIES_WITH_WORKER  "1": a horse dies with its worker (below)

``CrashlabWorker``: RQ's own ``Worker``, instrumented only with failpoints.

Each override calls a failpoint and then RQ's own method, unchanged, so a
fault can stop the worker at the exact step RQ is at. The points, in the
order a job meets them (``POINTS`` describes each):

    worker.dequeued            main process: ``execute_job`` entered; the job was moved
                               (BLMOVE) to the queue's intermediate list, not yet in the
                               StartedJobRegistry, the worker not yet BUSY (rq#2236)
    worker.execution_prepared  main process: ``prepare_execution`` done (execution in
                               ``rq:wip:<queue>``, worker BUSY), the horse not forked yet
    horse.started              work horse: ``perform_job`` entered, job status still queued
    job.*                      inside the job (``harness.packs.rq.app``)
    horse.before_success       work horse: the job returned, success not committed yet

A hit inside the horse (a forked child) is decided by the main process's
control channel and carries the horse's pid, so ``kill_at_phase`` with
``process: hit`` kills the horse alone while its worker lives on.

One deliberate addition, on by default (setting ``horse_dies_with_worker``):
RQ's horse leaves its worker's process group (``os.setpgrp`` in
``Worker.fork_work_horse``), so killing the worker's group would leave an
orphan horse finishing the job on its own. A machine, container or cgroup
that dies takes the horse with it; the horse asks the kernel for that
(``PR_SET_PDEATHSIG``), so a SIGKILL of the worker models a dead host. On
RQ's normal paths nothing changes (the worker waits for its horse, or kills
it first); where RQ's worker quits mid-job by itself (``BaseWorker.work``'s
catch-all, e.g. a Redis error while it monitors the horse) the horse now
dies with it, as in a container or a systemd unit, instead of running on as
an orphan. Set it to "0" for RQ's bare behaviour.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rq.worker import Worker

from harness.failpoint import WORKER_ID_ENV, failpoint, serve

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.registry import StartedJobRegistry

log = logging.getLogger(__name__)

WORKER_CLASS = "harness.packs.rq.launch.CrashlabWorker"
REDIS_URL_ENV = "CRASHLAB_REDIS_URL"
BILLING_URL_ENV = "CRASHLAB_BILLING_URL"
SETTING_PREFIX = "CRASHLAB_RQ_"

# Every failpoint, in the order a job meets them (``CrashlabWorker`` below for the
# worker's, ``harness.packs.rq.app`` for the job's); the control channel serves this
# catalog at /points and refuses to arm any other name.
POINTS: dict[str, str] = {
    "worker.dequeued": "the job was moved to the intermediate list; not in the "
                       "StartedJobRegistry, worker not BUSY",
    "worker.execution_prepared": "execution registered in rq:wip, worker BUSY; "
                                 "the work horse is not forked yet",
    "horse.started": "in the work horse, before RQ marks the job started",
    "job.started": "the job's attempt began (its ledger start is written)",
    "job.before_charge": "the job worked half its time; the billable call is next",
    "job.charged": "the billing service answered; the effect is recorded",
    "job.before_return": "the job finished its work and is about to return",
    "horse.before_success": "the job returned; RQ has not committed its success",
}

# (RQ's CLI option, the setting that gives it)
_OPTIONS = (("--worker-ttl", "worker_ttl"), ("--maintenance-interval", "maintenance_interval"),
            ("--job-monitoring-interval", "job_monitoring_interval"))


def rq_argv(env: Mapping[str, str]) -> list[str]:
    """The ``rq`` command line for the settings in ``env``; ``KeyError`` names a missing one."""
    argv = ["worker", "--url", env[REDIS_URL_ENV], "--worker-class", WORKER_CLASS,
            "--name", env[WORKER_ID_ENV]]
    for option, setting in _OPTIONS:
        value = env.get(SETTING_PREFIX + setting.upper())
        if value:
            argv += [option, value]
    argv.append(env.get(SETTING_PREFIX + "QUEUE", "default"))
    return argv


HORSE_DIES_ENV = "CRASHLAB_RQ_HORSE_DIES_WITH_WORKER"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


class CrashlabWorker(Worker):
    """``rq.Worker`` with a failpoint before or after each step a fault aims at."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        failpoint("worker.dequeued", job=job.id)
        super().execute_job(job, queue)

    def prepare_execution(self, job: Job) -> Execution:
        execution = super().prepare_execution(job)
        failpoint("worker.execution_prepared", job=job.id)
        return execution

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        if os.environ.get(HORSE_DIES_ENV, "1") == "1":
            _die_with_parent(self.pid or 0)
        super().main_work_horse(job, queue)

    def perform_job(self, job: Job, queue: Queue) -> bool:
        # inside the horse and before RQ's own try: an ``error`` here fails the horse
        # the way RQ's main_work_horse handles any exception (exit 1)
        failpoint("horse.started", job=job.id)
        return bool(super().perform_job(job, queue))

    def handle_job_success(self, job: Job, queue: Queue,
                           started_job_registry: StartedJobRegistry) -> None:
        failpoint("horse.before_success", job=job.id)
        super().handle_job_success(job, queue, started_job_registry)


def _die_with_parent(worker_pid: int) -> None:
    """SIGKILL this horse when its worker (``worker_pid``) dies; exit now if it already has."""
    libc: Any = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != worker_pid:  # the worker died between the fork and the prctl
        os._exit(1)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    serve(POINTS)
    try:
        command = rq_argv(os.environ)
    except KeyError as exc:
        sys.exit(f"rq worker launcher: the environment lacks {exc.args[0]}; start it through "
                 "the rq pack (RqTarget.environment sets it)")
    from rq.cli.cli import main as rq_main

    log.info("starting rq %s", " ".join(command))
    rq_main(list(argv) if argv is not None else command, prog_name="rq")


if __name__ == "__main__":
    main()
