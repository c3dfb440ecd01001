"""The rq pack's example job: work a while, bill once, record the effect.

The job RQ runs (``queue.enqueue("harness.packs.rq.app.work", key, work_ms)``)::

    work(key: str, work_ms: int) -> str

``key`` is the job's id, used as the billing idempotency key; ``work_ms`` is
how long it works, in two halves around its one billable call. A user's own
job module is attacked the same way: the setting ``job`` names it
(``"module:function"``), it takes the same two arguments, and it records
its own effects with ``harness.failpoint.record(key, "start")`` when an
attempt begins and ``record(key, "effect")`` once its side effect was
applied; failpoints are optional (``harness.failpoint.failpoint``).

Failpoints, in order: ``job.started`` (the start is in the ledger),
``job.before_charge``, ``job.charged`` (billed and recorded),
``job.before_return``. It runs in RQ's work horse, so a hit carries the
horse's pid. The billing service's URL comes from ``CRASHLAB_BILLING_URL``.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request

from harness.failpoint import failpoint, record

BILLING_URL_ENV = "CRASHLAB_BILLING_URL"
CHARGE_TIMEOUT_S = 10.0


def work(key: str, work_ms: int) -> str:
    """One attempt of the job: see the module docstring."""
    record(key, "start")
    failpoint("job.started", job=key)
    time.sleep(work_ms / 2000)
    failpoint("job.before_charge", job=key)
    charge = bill(key)
    record(key, "effect", charge=charge)
    failpoint("job.charged", job=key)
    time.sleep(work_ms / 2000)
    failpoint("job.before_return", job=key)
    return f"{key} charged {charge}"


def bill(key: str) -> int:
    """POST one charge with ``key`` as its idempotency key; the charge number.

    ``RuntimeError`` naming the variable when no billing service is configured.
    """
    base = os.environ.get(BILLING_URL_ENV, "")
    if not base:
        raise RuntimeError(f"job {key}: {BILLING_URL_ENV} is not set, so there is no billing "
                           "service to charge; run the job through the rq pack")
    body = json.dumps({"job": key, "key": key, "pid": os.getpid()}).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}/charge", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=CHARGE_TIMEOUT_S) as response:  # noqa: S310
        return int(json.loads(response.read())["charge"])
