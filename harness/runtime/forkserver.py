"""Workers forked from a pre-imported server, so a worker starts in milliseconds.

A cold start of the reference worker spends about 0.75 s of CPU importing
its libraries (the ``openai`` SDK, ``redis``, pydantic), and its exit
another 0.4 s tearing them down; on two cores that decides how many crash
schedules a minute an exploration can run. A ``Forker`` starts one fork
server (``harness.runtime.forkserver_child``) that imports them once, and
asks it to fork each worker: the child takes its own session, its log, its
environment and ``cwd``, and runs ``python -m MODULE ARGS`` in-process.

A forked worker is a real, separate process: the runtime signals its
process group (SIGKILL included) exactly as for a cold start, notices its
exit through a pidfd, and has the server reap it only when asked, so its
pid cannot be reused while the runtime may still signal it. It dies with the
server (``PR_SET_PDEATHSIG``), the server dies with the harness, and both
are in the process registry, so a SIGKILLed harness leaves nothing behind.

Only a worker started as ``PYTHON -m MODULE ARGS...`` with the server's
interpreter and interpreter-level environment (``PYTHON*`` variables: a
mutant's patched copy of the worker must not run on modules imported from
the original) is forked. The first such worker's command line and
environment choose the server; anything else, or a server that cannot
serve, makes ``start`` return None, and the runtime starts the worker cold.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from harness.errors import CrashlabError
from harness.procs import ManagedProcess, ProcessRegistry, kill_group

log = logging.getLogger(__name__)

SERVER_MODULE = "harness.runtime.forkserver_child"
# variables read when an interpreter starts: the server must have started with the
# values the worker would have started with
_INTERPRETER_VARS = ("PYTHON", "LD_", "VIRTUAL_ENV")
_MAX_MESSAGE = 1 << 20

_Key = tuple[str, tuple[tuple[str, str], ...]]


class ForkServerUnavailable(CrashlabError):
    """The fork server did not start or stopped answering; workers start cold."""


def module_form(argv: Sequence[str]) -> tuple[str, str, list[str]] | None:
    """``(python, module, args)`` for ``[python, "-m", module, *args]``, else None."""
    if len(argv) >= 3 and argv[1] == "-m" and not argv[2].startswith("-"):
        return argv[0], argv[2], list(argv[3:])
    return None


def _key(python: str, env: Mapping[str, str]) -> _Key:
    return python, tuple(sorted((k, v) for k, v in env.items()
                                if k.startswith(_INTERPRETER_VARS)))


class ForkServer:
    """One running fork server and the socket to it; requests are serialized."""

    def __init__(self, run_dir: Path, registry: ProcessRegistry | None, *, python: str,
                 env: Mapping[str, str], preload: Sequence[str],
                 ready_timeout: float = 60.0, answer_timeout: float = 10.0) -> None:
        self.run_dir = run_dir
        self.registry = registry
        self.answer_timeout = answer_timeout
        self._lock = threading.Lock()
        self._sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        argv = [python, "-m", SERVER_MODULE, "--fd", str(theirs.fileno())]
        for module in preload:
            argv += ["--preload", module]
        self.process = ManagedProcess("fork-server", argv,
                                      log_path=run_dir / "logs" / "fork-server.log",
                                      env=env, cwd=run_dir, registry=registry,
                                      pass_fds=[theirs.fileno()])
        self.broken = False
        try:
            self.process.start()
        except OSError as exc:
            self._sock.close()
            raise ForkServerUnavailable(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        try:
            self._receive(ready_timeout)
        except ForkServerUnavailable:
            self.close()
            raise

    def spawn(self, name: str, module: str, args: Sequence[str], env: Mapping[str, str],
              cwd: Path, log_path: Path) -> ForkedProcess:
        """Fork worker ``name`` running ``python -m module args``, logging to ``log_path``."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        request = {"op": "spawn", "module": module, "args": list(args), "env": dict(env),
                   "cwd": str(cwd)}
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            answer = self._call(request, [log_fd])
        finally:
            os.close(log_fd)
        return ForkedProcess(self, name, int(answer["pid"]), log_path, self.registry)

    def reap(self, pid: int) -> int | None:
        """Wait for child ``pid`` (which has exited or been SIGKILLed); its exit code."""
        code = self._call({"op": "reap", "pid": pid})["code"]
        return None if code is None else int(code)

    def close(self) -> None:
        """Stop the server; any worker still alive dies with it (parent-death signal)."""
        with self._lock:
            self.broken = True
            self._sock.close()  # the server reads end-of-file and exits
        try:
            self.process.wait(timeout=2.0)
        except (subprocess.TimeoutExpired, RuntimeError):  # still running, or never started
            self.process.kill()

    def _call(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            if self.broken:
                raise ForkServerUnavailable("the fork server is closed")
            try:
                socket.send_fds(self._sock, [json.dumps(request).encode()], list(fds))
            except OSError as exc:
                self.broken = True
                raise ForkServerUnavailable(f"the fork server is gone ({exc})") from exc
            return self._receive(self.answer_timeout)

    def _receive(self, timeout: float) -> dict[str, Any]:
        self._sock.settimeout(timeout)
        try:
            message = self._sock.recv(_MAX_MESSAGE)
        except OSError as exc:  # timeout included
            message, reason = b"", repr(exc)
        else:
            reason = "it exited"
        if not message:
            self.broken = True
            raise ForkServerUnavailable(f"the fork server did not answer ({reason}); see "
                                        f"{self.process.log_path}")
        answer: dict[str, Any] = json.loads(message)
        if "error" in answer:
            raise ForkServerUnavailable(f"the fork server refused: {answer['error']}")
        return answer


class ForkedProcess:
    """A worker forked by a ``ForkServer``; the same methods the runtime uses of a
    ``ManagedProcess``."""

    def __init__(self, server: ForkServer, name: str, pid: int, log_path: Path,
                 registry: ProcessRegistry | None) -> None:
        self.server = server
        self.name = name
        self.pid = pid
        self.log_path = log_path
        self.registry = registry
        self.started_at: float | None = time.time()
        self.returncode: int | None = None
        self._lock = threading.Lock()
        # unreaped until we ask, so the pid is still this child's
        self._pidfd = os.pidfd_open(pid)
        if registry is not None:
            try:
                registry.add(psutil.Process(pid), name)
            except psutil.NoSuchProcess:  # pragma: no cover - an unreaped child exists
                pass

    def is_running(self) -> bool:
        """Alive (a stopped process counts)."""
        if self.returncode is not None:
            return False
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        return not poller.poll(0)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op once it has exited)."""
        if self.is_running():
            kill_group(self.pid, sig)

    def wait_exited(self) -> None:
        """Block until it exits, leaving it unreaped."""
        if self.returncode is not None:
            return
        poller = select.poll()
        poller.register(self._pidfd, select.POLLIN)
        while not poller.poll():
            pass

    def kill(self) -> int:
        """SIGKILL the whole process group, have the server reap the leader; the exit code."""
        with self._lock:
            if self.returncode is not None:
                return self.returncode
            code: int | None = None
            if not self.server.broken:  # else the leader may be reaped and its pid reused
                kill_group(self.pid, signal.SIGKILL)
                try:
                    code = self.server.reap(self.pid)
                except ForkServerUnavailable:
                    code = None
            # without an answer the server is gone, and took the worker with it
            self.returncode = -signal.SIGKILL if code is None else code
            os.close(self._pidfd)
            if self.registry is not None:
                self.registry.remove(self.pid)
            return self.returncode


class Forker:
    """Starts workers from one lazily started ``ForkServer``; see the module docstring."""

    def __init__(self, run_dir: Path, registry: ProcessRegistry | None,
                 preload: Sequence[str] = ()) -> None:
        self.run_dir = run_dir
        self.registry = registry
        self.preload = tuple(preload)
        self.forked = 0  # workers started by forking
        self.cold = 0  # workers the runtime had to start cold
        self._server: ForkServer | None = None
        self._key: _Key | None = None
        self._lock = threading.Lock()

    def start(self, name: str, argv: Sequence[str], env: Mapping[str, str],
              log_path: Path) -> ForkedProcess | None:
        """Worker ``name`` forked from the server, or None: start it cold."""
        form = module_form(argv)
        with self._lock:
            if form is None:
                self.cold += 1
                return None
            python, module, args = form
            key = _key(python, env)
            if self._key is None:  # the first worker chooses the server
                self._key = key
                if not _pidfds_work():
                    log.warning("this kernel has no pidfd_open (Linux 5.3+); workers start cold")
                    self.cold += 1
                    return None
                try:
                    self._server = ForkServer(self.run_dir, self.registry, python=python,
                                              env=env, preload=self.preload)
                except ForkServerUnavailable as exc:
                    log.warning("%s; workers start cold", exc)
            server = self._server
            if server is None or server.broken or key != self._key:
                self.cold += 1
                return None
        try:
            proc = server.spawn(name, module, args, env, self.run_dir, log_path)
        except ForkServerUnavailable as exc:
            log.warning("cannot fork worker %s (%s); starting it cold", name, exc)
            self.cold += 1
            return None
        self.forked += 1
        return proc

    def close(self) -> None:
        """Stop the server (every forked worker still alive dies with it)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()


def _pidfds_work() -> bool:
    """Whether ``os.pidfd_open`` exists and works here (how a forked worker's exit is seen)."""
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):
        return False
    return True
