"""The rq pack's worker command: crashlab's control channel, then RQ's own ``rq worker``.

Run as ``python -m harness.packs.rq.launch``. It serves the failpoint control
channel first (``harness.failpoint.serve``, a thread that keeps answering
while Redis is cut), then hands over to RQ's real CLI entry point
(``rq.cli.main``, the ``rq`` console script) with the worker class
``harness.packs.rq.worker.CrashlabWorker``. Everything comes from the
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
    CRASHLAB_RQ_HORSE_DIES_WITH_WORKER  "1": a horse dies with its worker (``worker``)
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence

from harness.failpoint import WORKER_ID_ENV, serve

log = logging.getLogger(__name__)

WORKER_CLASS = "harness.packs.rq.worker.CrashlabWorker"
REDIS_URL_ENV = "CRASHLAB_REDIS_URL"
BILLING_URL_ENV = "CRASHLAB_BILLING_URL"
SETTING_PREFIX = "CRASHLAB_RQ_"

# Every failpoint, in the order a job meets them (``harness.packs.rq.worker`` for the
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
