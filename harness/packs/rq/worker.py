"""RQ's own ``Worker``, instrumented only with failpoints (``--worker-class`` of ``rq worker``).

Each override calls a failpoint and then RQ's own method, unchanged, so a
fault can stop the worker at the exact step RQ is at. The points, in the
order a job meets them (``harness.packs.rq.launch.POINTS`` describes each):

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
(``PR_SET_PDEATHSIG``), so a SIGKILL of the worker models a dead host. RQ's
behaviour is otherwise untouched: the worker always outlives its horse on
every path RQ itself takes (it waits for the horse, or kills it first).
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import TYPE_CHECKING, Any

from rq.worker import Worker

from harness.failpoint import failpoint

if TYPE_CHECKING:
    from rq.executions import Execution
    from rq.job import Job
    from rq.queue import Queue
    from rq.registry import StartedJobRegistry

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
