"""The worker process: claim jobs, keep their leases, recover the orphaned ones.

Each job runs through the runner of its kind: ``pipeline.JobRunner`` for
``transcribe``, ``upload.UploadRunner`` for ``upload``; leases, fencing,
retries and recovery are the same for both.

Loop: while there is room (``CRASHLAB_CONCURRENCY``), first take over a
PROCESSING job whose lease expired (its worker died: recovery), else claim
the next queued job; run each in its own task with a lease keeper beside it.
The keeper renews the lease every heartbeat; when a renewal is refused
(another epoch owns the job) or Redis has been unreachable for a whole lease
TTL, it cancels the job's task: a worker never works on a job it may have
lost.

SIGTERM (or SIGINT): stop taking work, cancel the running jobs and release
their leases so they go back to the queue without counting a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from redis.asyncio import Redis

from system_under_test import metrics
from system_under_test.config import Settings
from system_under_test.constants import JobField, JobKind
from system_under_test.control import ControlServer
from system_under_test.errors import REDIS_ERRORS, Fenced, JobFailure, S3Error
from system_under_test.failpoints import Failpoints
from system_under_test.pipeline import JobRunner
from system_under_test.store import Claim, Store, load_scripts, scripts_of
from system_under_test.transcriber import Transcriber
from system_under_test.upload import UploadRunner
from system_under_test.upload_store import UploadStore

log = logging.getLogger(__name__)


class Worker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.worker_id = settings.worker_id
        self.failpoints = Failpoints(self.worker_id, settings.failpoints)
        self.stopping = asyncio.Event()
        self.jobs: dict[str, tuple[Claim, asyncio.Task[None]]] = {}
        self.redis = Redis.from_url(
            settings.redis_url, decode_responses=True,
            socket_connect_timeout=1.0, socket_timeout=max(1.0, settings.lease_ttl_ms / 2000),
        )
        self.store = Store(self.redis)
        self.transcriber = Transcriber(settings)
        self.runner = JobRunner(settings, self.store, self.transcriber, self.failpoints)
        self.uploads = UploadRunner(settings, self.runner, UploadStore(self.redis))
        self._wakeup = asyncio.Event()
        self._janitor: asyncio.Task[None] | None = None

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "stopping": self.stopping.is_set(),
            "jobs": {job_id: {"epoch": claim.epoch, "recovering": claim.recovering,
                              "phase": self.runner.phase.get(job_id)}
                     for job_id, (claim, _) in self.jobs.items()},
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._request_stop)
        control = None
        if self.settings.control_address is not None:
            control = ControlServer(self.failpoints, self.settings.control_address, self.status)
            await control.start()
        if self.settings.metrics_port:
            metrics.serve(self.settings.metrics_port)
        try:
            if await self._wait_for_redis():
                log.info("worker %s ready (redis %s, concurrency %d)", self.worker_id,
                         self.settings.redacted_redis_url, self.settings.concurrency)
                await self._loop()
        finally:
            await self._shutdown()
            if control is not None:
                await control.close()
            await self.transcriber.close()
            self.uploads.close()
            await self.redis.aclose()
            log.info("worker %s stopped", self.worker_id)

    def _request_stop(self) -> None:
        if not self.stopping.is_set():
            log.info("worker %s: stop requested; finishing with leases released", self.worker_id)
        self.stopping.set()
        self._wakeup.set()

    async def _wait_for_redis(self) -> bool:
        """Ping until Redis answers, with capped backoff, then load the scripts; False if
        asked to stop first."""
        delay, attempt = 0.2, 1
        while not self.stopping.is_set():
            try:
                await self.redis.ping()
                await load_scripts(self.redis, [*scripts_of(self.store),
                                                *scripts_of(self.uploads.store)])
                return True
            except REDIS_ERRORS as exc:
                log.error("cannot reach Redis at %s (%s); retrying in %.1fs (attempt %d)",
                          self.settings.redacted_redis_url, exc, delay, attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            delay, attempt = min(delay * 2, 5.0), attempt + 1
        return False

    async def _loop(self) -> None:
        idle = self.settings.poll_interval_ms / 1000
        outage_logged = False
        next_scan = 0.0
        while not self.stopping.is_set():
            claim = None
            if time.monotonic() >= next_scan:
                next_scan = time.monotonic() + self.settings.timeout_scan_ms / 1000
                with contextlib.suppress(*REDIS_ERRORS):
                    await self._housekeeping()
            if len(self.jobs) < self.settings.concurrency:
                try:
                    claim = await self._next_claim()
                    if outage_logged:
                        log.info("redis is reachable again")
                        outage_logged = False
                except REDIS_ERRORS as exc:
                    if not outage_logged:
                        log.error("lost Redis (%s); polling again with backoff", exc)
                        outage_logged = True
                    idle = min(idle * 2, 2.0)
            if claim is not None:
                idle = self.settings.poll_interval_ms / 1000
                task = asyncio.create_task(self._run_job(claim), name=f"job-{claim.job_id}")
                self.jobs[claim.job_id] = (claim, task)
                continue
            # full: nothing to claim until a job ends (which sets the wakeup), so
            # sleep until the next housekeeping instead of polling
            full = len(self.jobs) >= self.settings.concurrency
            wait = max(0.0, next_scan - time.monotonic()) if full else idle
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), wait)

    async def _housekeeping(self) -> None:
        """Time out overdue jobs (any worker may; each job once) and refresh the gauges."""
        for job_id in await self.store.expire_due(self.worker_id):
            metrics.TIMEOUTS.inc()
            log.warning("job %s passed its deadline; marked TIMED_OUT", job_id)
        for state, count in (await self.store.job_counts()).items():
            metrics.JOBS.labels(state=state).set(count)
        if await self.uploads.store.has_abandoned():
            self._abort_abandoned_uploads()

    def _abort_abandoned_uploads(self) -> None:
        """Abort the uploads of jobs that ended without completing, beside the loop
        (S3 calls must not hold up claims and lease renewals)."""
        if self._janitor is None or self._janitor.done():
            self._janitor = asyncio.create_task(self._janitor_pass(), name="upload-janitor")

    async def _janitor_pass(self) -> None:
        try:
            await self.uploads.abort_abandoned()
        except (*REDIS_ERRORS, S3Error) as exc:
            log.warning("could not abort abandoned uploads yet (%s); trying again later", exc)

    async def _next_claim(self) -> Claim | None:
        """An orphaned job to recover first, else the next queued job."""
        lease_ms = self.settings.lease_ttl_ms
        for job_id in await self.store.orphaned_jobs():
            if job_id in self.jobs:
                continue
            outcome, value = await self.store.recover(job_id, self.worker_id, lease_ms)
            if outcome == "claimed":
                metrics.RECOVERIES.labels(outcome="claimed").inc()
                log.warning("job %s: its worker was lost; recovering at epoch %s", job_id, value)
                return Claim(job_id, int(value), recovering=True)
            if outcome == "failed":
                metrics.RECOVERIES.labels(outcome="failed").inc()
                log.error("job %s failed: %s", job_id, value)
                self._abort_abandoned_uploads()
        return await self.store.claim(self.worker_id, lease_ms)

    async def _run_job(self, claim: Claim) -> None:
        """The one place that turns whatever a job raised into its outcome."""
        job_task = asyncio.current_task()
        assert job_task is not None
        keeper = asyncio.create_task(self._keep_lease(claim, job_task))
        kind = JobKind.TRANSCRIBE
        try:
            if claim.job:  # a fresh claim brings the job's hash
                kind = JobKind(claim.job.get(JobField.KIND) or JobKind.TRANSCRIBE)
            else:
                kind = JobKind(await self.runner._read(lambda: self.store.kind(claim.job_id)))
            if kind is JobKind.UPLOAD:
                await self.uploads.run(claim)
            else:
                await self.runner.run(claim)
        except asyncio.CancelledError:
            if not keeper.done():  # cancelled by shutdown, not by a lost lease
                raise
            metrics.LEASE_LOSSES.inc()
            log.warning("job %s: lease lost at epoch %d; stopped working on it",
                        claim.job_id, claim.epoch)
        except Fenced as exc:
            log.warning("job %s: write refused at epoch %d (%s); dropping the job",
                        claim.job_id, claim.epoch, exc)
        except Exception as exc:  # noqa: BLE001 - any failure of the job is its outcome
            reason = str(exc) if isinstance(exc, JobFailure) else f"{type(exc).__name__}: {exc}"
            log.error("job %s failed: %s", claim.job_id, reason)
            with contextlib.suppress(*REDIS_ERRORS):
                await self.store.fail(claim, self.worker_id, reason)
            if kind is JobKind.UPLOAD:
                self._abort_abandoned_uploads()
        finally:
            keeper.cancel()
            self.jobs.pop(claim.job_id, None)
            self.runner.phase.pop(claim.job_id, None)
            self._wakeup.set()

    async def _keep_lease(self, claim: Claim, job_task: asyncio.Task[Any]) -> None:
        ttl = self.settings.lease_ttl_ms / 1000
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.settings.heartbeat_ms / 1000)
            await self.failpoints.hit("lease.renew", job=claim.job_id)
            try:
                if not await self.store.renew(claim, self.worker_id, self.settings.lease_ttl_ms):
                    log.warning("job %s: lease renewal refused at epoch %d", claim.job_id,
                                claim.epoch)
                    break
                renewed = time.monotonic()
            except REDIS_ERRORS as exc:
                if time.monotonic() - renewed >= ttl:
                    log.warning("job %s: could not renew the lease for %.1fs (%s)",
                                claim.job_id, ttl, exc)
                    break
        job_task.cancel()

    async def _shutdown(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._janitor
        running = list(self.jobs.values())
        for _, task in running:
            task.cancel()
        for claim, task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            try:
                reply = await self.store.release(claim, self.worker_id)
                log.info("job %s released (%s)", claim.job_id, reply)
            except REDIS_ERRORS as exc:
                log.warning("job %s: could not release the lease (%s); it will expire",
                            claim.job_id, exc)
