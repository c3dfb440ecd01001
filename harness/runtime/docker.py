"""Workers as Docker containers on the host's network, one container per incarnation.

``DockerRuntime`` implements the ``Runtime`` protocol with the engine adapter
(``harness.docker_engine``): ``docker run`` with ``network_mode=host`` (every
connection of the worker, to the proxied Redis, the transcription service
and its own control port, stays on 127.0.0.1), SIGKILL with ``docker kill``,
SIGSTOP/SIGCONT with ``docker pause``/``unpause`` (the cgroup freezer, which
freezes every process of the container at once, like a process group's
SIGSTOP), and the exit status from ``docker wait`` with the engine's 128+N
turned into -N. Pause and resume are reported as SIGSTOP and SIGCONT, so
the history of a docker run reads like one of the process runtime.

What the container sees:

* the run folder, bind-mounted at the same absolute path and used as the
  working directory, because the API on the host stores uploads under it and
  the worker reads the paths the API wrote into Redis;
* the command the target gave, except that the harness's own interpreter is
  replaced by the image's (``IMAGE_PYTHON``), whose environment has the
  project installed from the image's wheelhouse;
* the environment variables the target set (``CRASHLAB_*``, ``OPENAI_*`` and
  whatever differs from the harness's own environment), never the harness's
  ``PATH`` or ``HOME``. ``PYTHONPATH`` loses the harness's checkout (the image
  has the project installed); other folders on it (a mutant's patched copy)
  are mounted read-only at the same path;
* this user's uid and gid, so the files it writes into the run folder belong
  to whoever runs the harness.

Its stdout and stderr go straight into ``run_dir/logs/<name>.log`` (a shell
redirect inside the container), so the log is complete even if the harness
dies. One watcher thread per container blocks in ``docker wait``, reports
the exit when it happens and removes the container; ``stop_all`` removes
whatever is left. Every container carries the labels of
``harness.docker_engine``, and a new runtime first removes the containers
of harnesses that died without teardown.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.docker_engine import (
    LABEL_RUN,
    LABEL_RUNTIME,
    LABEL_WORKER,
    ContainerSpec,
    Engine,
    owner_labels,
    remove_orphans,
)
from harness.runtime.base import (
    PROCESS_EXIT,
    PROCESS_SIGNAL,
    PROCESS_START,
    EventSink,
    WorkerHandle,
)
from harness.runtime.tracked import TrackedRuntime, TrackedWorker

log = logging.getLogger(__name__)

RUNTIME = "docker"
# Where the image keeps the project's interpreter; both the Dockerfile at the
# repository root and ``harness.image`` install the project there.
IMAGE_PYTHON = "/opt/crashlab/bin/python"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_ALWAYS_PASSED = ("CRASHLAB_", "OPENAI_")
_CHECKOUT = Path(__file__).resolve().parent.parent.parent
# `exec` keeps the worker as the container's main process, the one `docker kill` signals.
_LOG_TO_FILE = ["/bin/sh", "-c", 'exec "$@" >>"$0" 2>&1']


@dataclass(kw_only=True)
class _Container(TrackedWorker):
    container_id: str
    pid: int
    watcher: threading.Thread | None = None


class DockerRuntime(TrackedRuntime[_Container]):
    """Runs workers as containers of ``image``; see the module docstring."""

    runtime = RUNTIME
    exit_report_grace = 2.0  # the engine reports a stop a little after it happens

    def __init__(self, run_dir: Path, image: str, *, engine: Engine | None = None,
                 on_event: EventSink | None = None, kill_timeout: float = 10.0) -> None:
        super().__init__(on_event, kill_timeout)
        self.run_dir = run_dir.resolve()
        self.image = image
        self.engine = engine if engine is not None else Engine.connect()
        self.runtime_id = uuid.uuid4().hex[:8]
        remove_orphans(self.engine)

    # -- starting ------------------------------------------------------------

    def start_worker(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> WorkerHandle:
        """Start ``argv`` in a new container named after worker ``name`` (new to this runtime)."""
        if not _NAME.match(name):
            raise ValueError(f"worker name {name!r} must match {_NAME.pattern}")
        if not argv:
            raise ValueError("argv must not be empty")
        log_path = self.run_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        container_env, extra_dirs = container_environment(env)
        binds = {str(self.run_dir): (str(self.run_dir), "rw")}
        binds |= {str(folder): (str(folder), "ro") for folder in extra_dirs}
        spec = ContainerSpec(
            name=f"crashlab-{self.runtime_id}-{name}", image=self.image,
            command=[str(log_path), *container_argv(argv)], entrypoint=_LOG_TO_FILE,
            env=container_env, binds=binds, user=f"{os.getuid()}:{os.getgid()}",
            working_dir=str(self.run_dir),
            labels={**owner_labels(), LABEL_RUN: str(self.run_dir),
                    LABEL_RUNTIME: self.runtime_id, LABEL_WORKER: name},
        )
        with self._lock:
            if name in self._workers:
                raise ValueError(f"a worker called {name!r} was already started")
            started = self.engine.run(spec)
            handle = WorkerHandle(name, RUNTIME, started.id, log_path, time.time())
            worker = _Container(handle=handle, container_id=started.id, pid=started.pid)
            self._workers[name] = worker
        with worker.lock:  # the watcher's exit event waits for the start event
            worker.watcher = threading.Thread(target=self._watch, args=(worker,),
                                              name=f"watch-{name}", daemon=True)
            worker.watcher.start()
            self._emit(PROCESS_START, name=name, pid=started.pid, ts=handle.started_at,
                       log=str(log_path), container=started.id)
        log.info("worker %s started in container %s (pid %d): %s", name, started.id[:12],
                 started.pid, " ".join(argv))
        return handle

    def pid(self, handle: WorkerHandle) -> int:
        """The host pid of the container's main process when it started."""
        return self._get(handle).pid

    # -- teardown ------------------------------------------------------------

    def stop_all(self, grace: float = 5.0) -> None:
        """SIGTERM every live container, SIGKILL the rest after ``grace`` s, remove them all.

        Safe to call more than once and on every exit path; the runtime can
        start workers again afterwards.
        """
        with self._lock:
            workers = list(self._workers.values())
        self._terminate([w for w in workers if not w.exited.is_set()], grace)
        for worker in workers:
            if worker.watcher is not None:
                worker.watcher.join(self.kill_timeout)
        for container in self.engine.labelled(f"{LABEL_RUNTIME}={self.runtime_id}"):
            self.engine.remove(container.id)
        self.engine.close()

    # -- internals -----------------------------------------------------------

    def _alive(self, worker: _Container) -> bool:
        if worker.exited.is_set():
            return False
        state = self.engine.state(worker.container_id)
        return state is not None and state.alive

    def _signal(self, worker: _Container, sig: int) -> bool:
        """Signal (or freeze/thaw) under the worker's lock; whether it was still alive."""
        name = worker.handle.name
        sig_name = signal.Signals(sig).name
        with worker.lock:
            ts = time.time()
            delivered = False
            if not worker.exited.is_set():
                if sig == signal.SIGSTOP:
                    delivered = self.engine.pause(worker.container_id)
                    worker.paused = worker.paused or delivered
                elif sig == signal.SIGCONT:
                    delivered = self.engine.unpause(worker.container_id)
                    worker.paused = worker.paused and not delivered
                else:
                    delivered = self.engine.signal(worker.container_id, sig)
            self._emit(PROCESS_SIGNAL, name=name, pid=worker.pid, signal=int(sig),
                       signal_name=sig_name, delivered=delivered, ts=ts)
        if delivered:
            log.info("worker %s (container %s): sent %s", name, worker.container_id[:12],
                     sig_name)
        else:
            log.info("worker %s was not running; %s not sent", name, sig_name)
        return delivered

    def _watch(self, worker: _Container) -> None:
        """Thread body: wait for the container to stop, report it, remove it."""
        try:
            status = self.engine.wait(worker.container_id)
        except Exception:  # noqa: BLE001 - the engine went away; the exit is unknown
            log.exception("waiting for worker %s failed", worker.handle.name)
            status = None
        ts = time.time()
        code = exit_code(status)
        with worker.lock:
            worker.exit_code = code
            worker.paused = False
            self._emit(PROCESS_EXIT, name=worker.handle.name, pid=worker.pid, exit_code=code,
                       signal=-code if code < 0 else None, ts=ts)
            worker.exited.set()
        log.info("worker %s (container %s) exited with %d", worker.handle.name,
                 worker.container_id[:12], code)
        try:
            self.engine.remove(worker.container_id)
        except Exception:  # noqa: BLE001 - stop_all removes it by label
            log.exception("removing the container of worker %s failed", worker.handle.name)


def exit_code(status: int | None) -> int:
    """The engine's exit status as ``subprocess`` reports it: 128+N (a signal) becomes -N.

    A container that vanished without a status counts as SIGKILLed (-9):
    something removed it by force.
    """
    if status is None:
        return -signal.SIGKILL
    if status > 128 and status - 128 in {int(s) for s in signal.Signals}:
        return -(status - 128)
    return status


def container_argv(argv: Sequence[str]) -> list[str]:
    """The target's command with the harness's interpreter replaced by the image's."""
    first = argv[0]
    if first == sys.executable or Path(first).resolve() == Path(sys.executable).resolve():
        return [IMAGE_PYTHON, *argv[1:]]
    return list(argv)


def container_environment(env: Mapping[str, str]) -> tuple[dict[str, str], list[Path]]:
    """The variables a container gets, and the host folders its ``PYTHONPATH`` needs mounted."""
    passed = {key: value for key, value in env.items()
              if key.startswith(_ALWAYS_PASSED) or os.environ.get(key) != value}
    passed.pop("PATH", None)
    folders: list[Path] = []
    for entry in passed.pop("PYTHONPATH", "").split(os.pathsep):
        if not entry:
            continue
        folder = Path(entry).resolve()
        if folder != _CHECKOUT and folder.is_dir():
            folders.append(folder)
    if folders:
        passed["PYTHONPATH"] = os.pathsep.join(str(folder) for folder in folders)
    if "CRASHLAB_PYTHON" in passed:
        passed["CRASHLAB_PYTHON"] = IMAGE_PYTHON
    passed |= {"PYTHONUNBUFFERED": "1", "HOME": "/tmp"}
    return passed, folders
