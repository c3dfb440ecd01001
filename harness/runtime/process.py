"""Workers as local child processes, each in its own process group.

``ProcessRuntime`` starts a worker with ``harness.procs.ManagedProcess`` (own
session, dies with the harness, listed in the process registry), with its
stdout and stderr in ``run_dir/logs/<name>.log`` and ``run_dir`` as its
working directory. Every signal goes to the worker's whole process group, so
a SIGKILL also takes the ffmpeg or other helpers it started, as a machine
crash would.

With ``fork_server``, workers are forked from a process that has already
imported the worker's ``preload`` modules (``harness.runtime.forkserver``),
so a worker (a replacement after a SIGKILL included) starts in milliseconds;
``close`` stops that server after the workers.

One watcher thread per worker blocks in ``waitid(..., WNOWAIT)`` until the
worker exits, so a death is noticed (and time-stamped) when it happens, even
if nobody is asking. The watcher then kills whatever is left in the group and
reaps the worker. Each worker's signals, exit handling and events run under
one lock, so a ``process_signal`` event always precedes the ``process_exit``
it caused, and a signal can never reach a pid that was reaped and reused.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from harness.errors import SetupError
from harness.procs import ManagedProcess, ProcessRegistry
from harness.runtime.base import (
    PROCESS_EXIT,
    PROCESS_SIGNAL,
    PROCESS_START,
    EventSink,
    WorkerHandle,
)
from harness.runtime.forkserver import ForkedProcess, Forker
from harness.runtime.tracked import TrackedRuntime, TrackedWorker

log = logging.getLogger(__name__)

RUNTIME = "process"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_STOPPING = (signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


@dataclass(kw_only=True)
class _Worker(TrackedWorker):
    proc: ManagedProcess | ForkedProcess


class ProcessRuntime(TrackedRuntime[_Worker]):
    """Runs workers as process groups under ``run_dir``; see the module docstring."""

    runtime = RUNTIME

    def __init__(
        self,
        run_dir: Path,
        registry: ProcessRegistry | None = None,
        *,
        on_event: EventSink | None = None,
        inherit_env: bool = True,
        kill_timeout: float = 10.0,
        fork_server: bool = False,
        preload: Sequence[str] = (),
    ) -> None:
        super().__init__(on_event, kill_timeout)
        self.run_dir = run_dir.resolve()
        self.registry = registry
        self.inherit_env = inherit_env
        self.forker = Forker(self.run_dir, registry, preload) if fork_server else None

    # -- starting ------------------------------------------------------------

    def start_worker(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> WorkerHandle:
        """Start ``argv`` as worker ``name``.

        The child's environment is this process's environment updated with
        ``env`` (only ``env`` when the runtime was made with
        ``inherit_env=False``). ``name`` must be new to this runtime (e.g.
        ``worker-1``, then ``worker-1.2`` for its restart); it names the log.
        """
        if not _NAME.match(name):
            raise ValueError(f"worker name {name!r} must match {_NAME.pattern}")
        if not argv:
            raise ValueError("argv must not be empty")
        child_env = {**os.environ, **env} if self.inherit_env else dict(env)
        log_path = self.run_dir / "logs" / f"{name}.log"
        with self._lock:
            if name in self._workers:
                raise ValueError(f"a worker called {name!r} was already started")
            self.run_dir.mkdir(parents=True, exist_ok=True)
            proc: ManagedProcess | ForkedProcess | None = None
            if self.forker is not None:
                proc = self.forker.start(name, argv, child_env, log_path)
            if proc is None:
                proc = ManagedProcess(
                    name, argv, log_path=log_path, env=child_env, cwd=self.run_dir,
                    registry=self.registry,
                )
                try:
                    proc.start()
                except OSError as exc:
                    raise SetupError(f"cannot start worker {name} ({argv[0]}): {exc}") from exc
            started_at = proc.started_at if proc.started_at is not None else time.time()
            handle = WorkerHandle(name, RUNTIME, str(proc.pid), log_path, started_at)
            worker = _Worker(handle=handle, proc=proc)
            self._workers[name] = worker
        with worker.lock:  # the watcher's exit event waits for the start event
            threading.Thread(
                target=self._watch, args=(worker,), name=f"watch-{name}", daemon=True
            ).start()
            self._emit(PROCESS_START, name=name, pid=proc.pid, ts=started_at,
                       log=str(log_path))
        log.info("worker %s started (pid %d): %s", name, proc.pid, " ".join(argv))
        return handle

    def pid(self, handle: WorkerHandle) -> int:
        return self._get(handle).proc.pid

    # -- teardown ------------------------------------------------------------

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every live worker, SIGKILL those still alive after ``grace`` s.

        Safe to call more than once and on every exit path.
        """
        with self._lock:
            live = [w for w in self._workers.values() if not w.exited.is_set()]
        if live:
            self._terminate(live, grace)

    def close(self) -> None:
        """Stop every worker, then the fork server; safe to call more than once."""
        try:
            self.stop_all()
        finally:
            if self.forker is not None:
                self.forker.close()

    def __enter__(self) -> ProcessRuntime:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _alive(self, worker: _Worker) -> bool:
        if worker.exited.is_set():
            return False
        with worker.lock:
            return not worker.exited.is_set() and worker.proc.is_running()

    def _signal(self, worker: _Worker, sig: int) -> bool:
        """Signal the group under the worker's lock; whether it was still alive."""
        name = worker.handle.name
        with worker.lock:
            ts = time.time()
            delivered = not worker.exited.is_set() and worker.proc.is_running()
            if delivered:
                worker.proc.signal(sig)
                if sig in _STOPPING:
                    worker.paused = True
                elif sig == signal.SIGCONT:
                    worker.paused = False
            self._emit(PROCESS_SIGNAL, name=name, pid=worker.proc.pid, signal=int(sig),
                       signal_name=signal.Signals(sig).name, delivered=delivered, ts=ts)
        if delivered:
            log.info("worker %s (pid %d): sent %s", name, worker.proc.pid,
                     signal.Signals(sig).name)
        else:
            log.info("worker %s had already exited; %s not sent", name,
                     signal.Signals(sig).name)
        return delivered

    def _watch(self, worker: _Worker) -> None:
        """Thread body: notice the exit, clear the group, reap, report."""
        pid = worker.proc.pid
        worker.proc.wait_exited()
        ts = time.time()
        with worker.lock:
            code = worker.proc.kill()  # SIGKILLs what is left of the group, reaps
            worker.exit_code = code
            worker.paused = False
            self._emit(PROCESS_EXIT, name=worker.handle.name, pid=pid, exit_code=code,
                       signal=-code if code < 0 else None, ts=ts)
            worker.exited.set()
        log.info("worker %s (pid %d) exited with %d", worker.handle.name, pid, code)
