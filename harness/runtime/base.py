"""The contract between the runner and wherever workers run.

A ``Runtime`` starts workers, signals them (SIGKILL at an exact phase,
SIGSTOP/SIGCONT to freeze them), waits for them and tears them all down. The
local ``ProcessRuntime`` implements it with process groups; ``DockerRuntime``
(``harness.runtime.docker``) with ``docker run``/``docker kill --signal
KILL``/``docker pause``/``docker unpause``, which is why a worker is
identified by an opaque ``WorkerHandle`` rather than by a pid.

Every runtime reports what it did to an optional ``EventSink``, called as
``sink(kind, **fields)`` with one of these kinds (``ts`` is ``time.time()``):

* ``process_start``: name, pid, ts, log (the log file path as a string)
* ``process_signal``: name, pid, signal (number), signal_name, delivered
  (False when the worker had already exited), ts
* ``process_exit``: name, pid, exit_code, signal (the killing signal's
  number or None), ts

Exit codes follow ``subprocess``: negative means killed by that signal
(-9 after SIGKILL). A runtime whose platform reports 128+N (Docker) converts.
The sink may be called from a runtime's own threads (a process runtime
notices exits in a watcher thread), so it must be thread-safe, must not
block for long, and should not raise (errors are logged and dropped).
"""

from __future__ import annotations

import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PROCESS_START = "process_start"
PROCESS_SIGNAL = "process_signal"
PROCESS_EXIT = "process_exit"


class EventSink(Protocol):
    """Receives one runtime event; see the module docstring for kinds and fields."""

    def __call__(self, kind: str, /, **fields: object) -> None: ...


@dataclass(frozen=True)
class WorkerHandle:
    """One incarnation of a worker, as returned by ``Runtime.start_worker``.

    ``ident`` is what the runtime uses to find it again: the pid for a
    process runtime, the container id for Docker. Handles compare and hash by
    value, so they can be dict keys.
    """

    name: str
    runtime: str
    ident: str
    log_path: Path
    started_at: float


class Runtime(Protocol):
    """Starts, signals and reaps workers: ``ProcessRuntime``, ``DockerRuntime``."""

    def start_worker(
        self, name: str, argv: Sequence[str], env: Mapping[str, str]
    ) -> WorkerHandle:
        """Start ``argv`` as worker ``name`` (unique per incarnation) with ``env`` added."""
        ...

    def kill(self, handle: WorkerHandle, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker and everything it started.

        After SIGKILL, returns once the worker is gone.
        """
        ...

    def pause(self, handle: WorkerHandle) -> None:
        """Freeze the worker (SIGSTOP / docker pause)."""
        ...

    def resume(self, handle: WorkerHandle) -> None:
        """Unfreeze it (SIGCONT / docker unpause)."""
        ...

    def wait(self, handle: WorkerHandle, timeout: float | None) -> int | None:
        """Its exit code once it exits, or None if still running after ``timeout`` s."""
        ...

    def exit_status(self, handle: WorkerHandle) -> int | None:
        """Its exit code, or None while it runs."""
        ...

    def is_running(self, handle: WorkerHandle) -> bool:
        """Whether it is alive (a paused worker is)."""
        ...

    def pid(self, handle: WorkerHandle) -> int | None:
        """Its process id on this host, if the runtime knows one."""
        ...

    def log_path(self, handle: WorkerHandle) -> Path:
        """The file holding its stdout and stderr."""
        ...

    def stop_all(self, grace: float = 5.0) -> None:
        """Stop every worker still running: politely, then by force after ``grace`` s."""
        ...
