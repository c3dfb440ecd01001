"""A process manager for the run: workers that fail by themselves are started again.

A real deployment runs its workers under systemd, supervisord or Kubernetes,
which start a worker again when it exits with an error. Some libraries rely
on that: an arq worker exits (code 1) when its Redis connection is lost, even
for a second, and does not reconnect; RQ's worker quits when it cannot tell
its work horse's outcome. Without a supervisor a soak of such a library
loses its workers at the first Redis cut and measures nothing after it.

With ``supervise_s`` in the scenario, ``Supervisor`` watches the workers on
a thread while the faults run (``harness.nemesis.TimedNemesis`` starts and
stops it) and starts the next incarnation of each worker that *failed by
itself* (exit code above 0) ``supervise_s`` later, like systemd's
``Restart=on-failure`` with ``RestartSec``. A worker the harness killed or
stopped (a signal, or a clean exit after SIGTERM) is left to the fault that
did it, which replaces it or not, and to the runner's top-up at the end; a
worker whose id already has a live successor is left alone. Each restart is
a ``supervisor_restart`` entry in the history; a restart that cannot start
(the worker dies again at once while Redis is down) is tried again on the
next exit, as a crash loop under a real supervisor would be.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from harness.environment import Environment
from harness.history import EntryKind

log = logging.getLogger(__name__)

LOOK_EVERY_S = 0.2


@dataclass(frozen=True)
class _Due:
    at: float
    worker_id: str  # the incarnation that exited (``w2.3``)
    code: int


class Supervisor:
    """Restarts workers that failed by themselves, ``delay_s`` after their exit."""

    def __init__(self, env: Environment, delay_s: float) -> None:
        self.env = env
        self.delay_s = delay_s
        self.restarts = 0
        self._seen: set[str] = set()  # incarnations already judged after their exit
        self._due: list[_Due] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crashlab-supervisor",
                                        daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(LOOK_EVERY_S):
            try:
                self._look()
            except Exception:  # noqa: BLE001 - a supervisor keeps watching
                log.exception("the supervisor could not restart a worker")

    def _look(self) -> None:
        runtime = self.env.runtime
        for worker in list(self.env.workers.values()):
            name = worker.worker_id
            if name in self._seen or runtime.is_running(worker.handle):
                continue
            code = runtime.exit_status(worker.handle)
            if code is None:
                continue
            self._seen.add(name)
            if code > 0:  # failed by itself; a signal or a clean exit is the harness's doing
                self._due.append(_Due(time.monotonic() + self.delay_s, name, code))
        now = time.monotonic()
        for due in [d for d in self._due if d.at <= now]:
            self._due.remove(due)
            self._restart(due)

    def _restart(self, due: _Due) -> None:
        base = due.worker_id.split(".")[0]
        if any(w.worker_id.split(".")[0] == base for w in self.env.live_workers()):
            return  # a fault or the runner replaced it already
        worker = self.env.start_worker(base, wait_ready=False)
        self.restarts += 1
        self.env.sink(EntryKind.SUPERVISOR_RESTART, name=worker.worker_id,
                      replaces=due.worker_id, code=due.code, delay_s=self.delay_s)
