"""The arq pack's example job: work a while, bill once, record the effect.

arq runs coroutines that take its job context first. The one this pack
enqueues (``ArqRedis.enqueue_job("work", key, work_ms, _job_id=key)``)::

    async def work(ctx: dict, key: str, work_ms: int) -> str

``ctx`` is arq's (``job_id``, ``job_try``, ``redis``, ...); ``key`` is the
job's id, used as the billing idempotency key; ``work_ms`` is how long it
works, in two halves around its one billable call. A user's own job is
attacked the same way: the setting ``job`` names it (``"module:function"``),
it is a coroutine with the same three parameters, and it records its own
effects with ``harness.failpoint.record(key, "start")`` when an attempt
begins and ``record(key, "effect")`` once its side effect was applied;
failpoints (``await harness.failpoint.afailpoint(...)``) are optional.

Failpoints, in order: ``job.started`` (the start is in the ledger),
``job.before_charge``, ``job.charged`` (billed and recorded),
``job.before_return``. arq runs the job as a task in the worker's own event
loop, so a hit carries the worker's pid. The billing call is a plain
blocking ``urllib`` request run in a thread (``asyncio.to_thread``), so the
worker's loop goes on polling while it waits. The billing service's URL
comes from ``CRASHLAB_BILLING_URL``.
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from typing import Any

from harness.failpoint import afailpoint, record

BILLING_URL_ENV = "CRASHLAB_BILLING_URL"
CHARGE_TIMEOUT_S = 10.0


async def work(ctx: dict[str, Any], key: str, work_ms: int) -> str:
    """One attempt of the job: see the module docstring."""
    record(key, "start", job_try=ctx.get("job_try"))
    await afailpoint("job.started", job=key)
    await asyncio.sleep(work_ms / 2000)
    await afailpoint("job.before_charge", job=key)
    charge = await asyncio.to_thread(bill, key)
    record(key, "effect", charge=charge)
    await afailpoint("job.charged", job=key)
    await asyncio.sleep(work_ms / 2000)
    await afailpoint("job.before_return", job=key)
    return f"{key} charged {charge}"


def bill(key: str) -> int:
    """POST one charge with ``key`` as its idempotency key; the charge number.

    ``RuntimeError`` naming the variable when no billing service is configured.
    """
    base = os.environ.get(BILLING_URL_ENV, "")
    if not base:
        raise RuntimeError(f"job {key}: {BILLING_URL_ENV} is not set, so there is no billing "
                           "service to charge; run the job through the arq pack")
    body = json.dumps({"job": key, "key": key, "pid": os.getpid()}).encode()
    request = urllib.request.Request(f"{base.rstrip('/')}/charge", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=CHARGE_TIMEOUT_S) as response:  # noqa: S310
        return int(json.loads(response.read())["charge"])
