"""What every runtime does the same way once a worker is started.

A runtime keeps one ``TrackedWorker`` per worker it started, with a lock
that orders its events (start before signals before exit) and an ``exited``
event set by the runtime's watcher thread. ``TrackedRuntime`` builds the
public half of the ``Runtime`` protocol on three primitives a runtime
supplies: ``_signal`` (deliver a signal, or freeze and thaw, and report
it), ``_alive`` and ``pid``. The process and docker runtimes differ only in
those, in how they start a worker and in how they notice its exit.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from harness.runtime.base import EventSink, WorkerHandle

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class TrackedWorker:
    handle: WorkerHandle
    lock: threading.RLock = field(default_factory=threading.RLock)
    exited: threading.Event = field(default_factory=threading.Event)
    exit_code: int | None = None
    paused: bool = False


W = TypeVar("W", bound=TrackedWorker)


class TrackedRuntime(Generic[W]):
    """Signals, waiting, state and the SIGTERM-then-SIGKILL stop of tracked workers."""

    on_event: EventSink | None
    kill_timeout: float
    # how long ``exit_status`` waits for the watcher once the worker is seen gone
    exit_report_grace = 1.0

    def __init__(self, on_event: EventSink | None, kill_timeout: float) -> None:
        self.on_event = on_event
        self.kill_timeout = kill_timeout
        self._lock = threading.Lock()
        self._workers: dict[str, W] = {}

    # -- what a runtime supplies ---------------------------------------------

    def _signal(self, worker: W, sig: int) -> bool:
        """Deliver ``sig`` under the worker's lock and report it; whether it was alive."""
        raise NotImplementedError

    def _alive(self, worker: W) -> bool:
        raise NotImplementedError

    def pid(self, handle: WorkerHandle) -> int:
        raise NotImplementedError

    # -- signals -------------------------------------------------------------

    def kill(self, handle: WorkerHandle, sig: int = signal.SIGKILL) -> None:
        """Send ``sig``; after SIGKILL, wait until the worker is gone."""
        worker = self._get(handle)
        delivered = self._signal(worker, sig)
        if sig == signal.SIGKILL and delivered and not worker.exited.wait(self.kill_timeout):
            log.warning("worker %s still not gone %.0fs after SIGKILL",
                        handle.name, self.kill_timeout)

    def pause(self, handle: WorkerHandle) -> None:
        """Freeze the worker (recorded as SIGSTOP)."""
        self._signal(self._get(handle), signal.SIGSTOP)

    def resume(self, handle: WorkerHandle) -> None:
        """Thaw the worker (recorded as SIGCONT)."""
        self._signal(self._get(handle), signal.SIGCONT)

    # -- state ---------------------------------------------------------------

    def wait(self, handle: WorkerHandle, timeout: float | None) -> int | None:
        worker = self._get(handle)
        worker.exited.wait(timeout)
        return worker.exit_code

    def exit_status(self, handle: WorkerHandle) -> int | None:
        worker = self._get(handle)
        if not worker.exited.is_set() and not self._alive(worker):
            worker.exited.wait(self.exit_report_grace)  # let the watcher report it
        return worker.exit_code

    def is_running(self, handle: WorkerHandle) -> bool:
        """Alive, including paused; False as soon as it is gone."""
        return self._alive(self._get(handle))

    def log_path(self, handle: WorkerHandle) -> Path:
        return self._get(handle).handle.log_path

    def workers(self) -> list[WorkerHandle]:
        """Every worker this runtime started, in start order."""
        with self._lock:
            return [worker.handle for worker in self._workers.values()]

    # -- teardown ------------------------------------------------------------

    def _terminate(self, live: list[W], grace: float) -> None:
        """SIGTERM ``live`` workers (thawing frozen ones first), SIGKILL them after ``grace``."""
        for worker in live:
            if worker.paused:  # a frozen worker cannot act on SIGTERM
                self._signal(worker, signal.SIGCONT)
            self._signal(worker, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for worker in live:
            worker.exited.wait(max(0.0, deadline - time.monotonic()))
        for worker in live:
            if not worker.exited.is_set():
                log.warning("worker %s ignored SIGTERM for %.1fs; killing it",
                            worker.handle.name, grace)
                self.kill(worker.handle, signal.SIGKILL)

    # -- internals -----------------------------------------------------------

    def _get(self, handle: WorkerHandle) -> W:
        with self._lock:
            worker = self._workers.get(handle.name)
        if worker is None or worker.handle != handle:
            raise ValueError(f"{handle.name!r} is not a worker of this runtime")
        return worker

    def _emit(self, kind: str, **fields: object) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(kind, **fields)
        except Exception:
            log.exception("the runtime's event sink failed on %s %s", kind, fields)
