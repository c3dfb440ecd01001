"""Processes the harness starts, and the guarantee that none outlives it.

Every child is started in its own session (so a signal reaches its whole
process group), asks the kernel to SIGKILL it when the harness dies
(``PR_SET_PDEATHSIG``), and is written to a registry folder until it is
reaped. A harness that was itself SIGKILLed leaves registry entries behind;
``ProcessRegistry.reap_leftovers`` at the next start kills exactly those
processes (matched by pid *and* start time, so a recycled pid is never hit).

``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child exits, not
the process. A child started from a short-lived thread would therefore be
SIGKILLed as soon as that thread ends. Children are forked from the main
thread directly and, when started from any other thread, by one long-lived
spawner thread, so the signal only fires when the harness process dies.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

# Loaded once in the parent: dlopen between fork and exec can deadlock when
# another thread held the loader or malloc lock at fork time.
try:
    _prctl: Callable[..., int] | None = ctypes.CDLL("libc.so.6", use_errno=True).prctl
except OSError:  # not Linux: the registry still catches leftovers
    _prctl = None


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die with the harness process."""

    def setup() -> None:  # runs in the child between fork and exec
        if _prctl is None:
            return
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return setup


class _Spawner:
    """One daemon thread that forks children for threads other than the main one.

    It lives as long as the process, so the parent-death signal it arms only
    fires when the harness itself dies.
    """

    _lock = threading.Lock()
    _instance: _Spawner | None = None

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], subprocess.Popen[bytes]], Future[subprocess.Popen[bytes]]]
        ] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="crashlab-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> _Spawner:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _serve(self) -> None:
        while True:
            job, future = self._jobs.get()
            try:
                future.set_result(job())
            except BaseException as exc:  # handed to the waiting thread
                future.set_exception(exc)

    def run(self, job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        future: Future[subprocess.Popen[bytes]] = Future()
        self._jobs.put((job, future))
        return future.result()


def _popen(argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """``subprocess.Popen`` in a new session, armed to die with this process."""

    def job() -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
            argv, start_new_session=True, preexec_fn=_die_with_parent(os.getpid()), **kwargs
        )

    if threading.current_thread() is threading.main_thread():
        return _holding_signals(job)
    return _Spawner.get().run(job)


@contextmanager
def held_signals(held: list[int],
                 note: Callable[[int], None] | None = None) -> Iterator[None]:
    """Inside, SIGINT and SIGTERM only land in ``held`` (and ``note``); the caller
    decides what to do with them afterwards. Outside the main thread, no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def hold(signum: int, frame: object) -> None:
        held.append(signum)
        if note is not None:
            note(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _holding_signals(job: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run ``job`` (a fork) with SIGINT and SIGTERM held, then deliver any that came.

    A KeyboardInterrupt raised inside the fork's at-fork hooks (logging
    registers some) is printed and dropped by Python, so a Ctrl-C that lands
    during a fork would be lost; held, it is raised once the child exists.
    """
    held: list[int] = []
    try:
        with held_signals(held):
            return job()
    finally:
        for signum in dict.fromkeys(held):
            signal.raise_signal(signum)  # now through the handler that was there


def default_state_dir() -> Path:
    """Where crashlab keeps state between runs (registry, example database)."""
    return Path(os.environ.get("CRASHLAB_STATE_DIR", ".crashlab")).resolve()


class ProcessRegistry:
    """A folder with one JSON file per live child process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def add(self, proc: psutil.Process, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        entry = {"pid": proc.pid, "create_time": proc.create_time(), "name": name,
                 "owner": os.getpid(), "owner_create_time": psutil.Process().create_time()}
        (self.folder / f"{proc.pid}.json").write_text(json.dumps(entry))

    def remove(self, pid: int) -> None:
        (self.folder / f"{pid}.json").unlink(missing_ok=True)

    def _entries(self) -> Iterator[tuple[Path, dict[str, Any] | None]]:
        """Each entry file and what it holds (None: it cannot be read)."""
        if not self.folder.is_dir():
            return
        for path in sorted(self.folder.glob("*.json")):
            try:
                yield path, json.loads(path.read_text())
            except (OSError, ValueError):
                yield path, None

    def release_own(self) -> list[str]:
        """Kill what this process registered and never took back; at its exit.

        A signal that lands between a child's start and the step that would stop
        it (its caller had not stored it yet) leaves its entry behind; this sweeps
        those, so a process ends with no entry of its own in the registry.
        """
        released: list[str] = []
        me = os.getpid()
        for path, entry in self._entries():
            if entry is None or entry.get("owner") != me:
                continue  # unreadable ones are being written, or are the next reap's
            if is_alive(entry["pid"], entry.get("create_time")):
                kill_group(entry["pid"])
                released.append(f"{entry.get('name')} (pid {entry['pid']})")
            path.unlink(missing_ok=True)
        if released:
            log.warning("stopped children left running at exit: %s", ", ".join(released))
        return released

    def reap_leftovers(self) -> list[str]:
        """Kill processes left by a harness that is no longer alive.

        Returns a description of each process killed.
        """
        killed: list[str] = []
        for path, entry in self._entries():
            if entry is None:
                path.unlink(missing_ok=True)
                continue
            if is_alive(entry.get("owner", -1), entry.get("owner_create_time")):
                continue  # a harness that is still running owns it
            try:
                proc = psutil.Process(entry["pid"])
                if proc.status() == psutil.STATUS_ZOMBIE:
                    raise psutil.NoSuchProcess(proc.pid)  # dead, only not yet reaped
                if abs(proc.create_time() - entry["create_time"]) < 0.01:
                    kill_group(proc.pid)
                    killed.append(f"{entry['name']} (pid {entry['pid']})")
            except psutil.NoSuchProcess:
                # The leader is gone, but its group may live on (a worker's
                # ffmpeg, say). A group id cannot be reused while the group
                # has members, so whatever is still in it is ours.
                survivors = _group_members(entry["pid"])
                if survivors:
                    kill_group(entry["pid"])
                    killed.append(
                        f"{entry['name']}'s group {entry['pid']} (pids "
                        f"{', '.join(str(pid) for pid in survivors)})"
                    )
            path.unlink(missing_ok=True)
        if killed:
            log.warning("removed leftovers of an interrupted run: %s", ", ".join(killed))
        return killed


def is_alive(pid: int, create_time: float | None = None) -> bool:
    """Whether ``pid`` is a live (non-zombie) process started at ``create_time``.

    Without ``create_time`` any live process with that pid counts.
    """
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return create_time is None or abs(proc.create_time() - create_time) < 0.01
    except psutil.AccessDenied:
        return True  # someone else's process: assume it is what it claims
    except (psutil.NoSuchProcess, ValueError):
        return False


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``."""
    members: list[int] = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return members


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def kill_group(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``'s process group, or the process alone when it has none of its own."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _exited_unreaped(pid: int, timeout: float | None) -> bool:
    """Wait up to ``timeout`` for ``pid`` to exit, leaving it unreaped."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None:
            return True
        if deadline is not None and time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


class ManagedProcess:
    """One child process with its own process group and log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        registry: ProcessRegistry | None = None,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.registry = registry
        self.pass_fds = tuple(pass_fds)  # descriptors the child inherits (a control socket)
        self._popen: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_file = self.log_path.open("ab")
        try:
            self._popen = _popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                pass_fds=self.pass_fds,
            )
        finally:
            log_file.close()
        self.started_at = time.time()
        if self.registry is not None:
            try:
                self.registry.add(psutil.Process(self._popen.pid), self.name)
            except psutil.NoSuchProcess:
                pass
        log.debug("started %s (pid %d): %s", self.name, self._popen.pid, " ".join(self.argv))
        return self

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """Exit status once reaped (negative: killed by that signal)."""
        return None if self._popen is None else self._popen.returncode

    def is_running(self) -> bool:
        """Alive (a stopped process counts); never reaps, so the pid stays ours."""
        if self._popen is None or self._popen.returncode is not None:
            return False
        return not _exited_unreaped(self._popen.pid, 0)

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (no-op once it has exited)."""
        if self.is_running():
            kill_group(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the leader to exit on its own; then clear its group and reap it.

        Raises ``subprocess.TimeoutExpired`` if it is still running after ``timeout``.
        """
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        if self._popen.returncode is None and not _exited_unreaped(self.pid, timeout):
            raise subprocess.TimeoutExpired(self.argv, timeout or 0.0)
        return self.kill()

    def stop(self, grace: float = 3.0) -> int | None:
        """SIGTERM the group, SIGKILL it after ``grace`` seconds, and reap it."""
        if self._popen is None:
            return None
        if self.is_running():
            self.signal(signal.SIGCONT)  # a stopped process cannot handle SIGTERM
            self.signal(signal.SIGTERM)
            _exited_unreaped(self.pid, grace)
        return self.kill()

    def kill(self) -> int:
        """SIGKILL the whole process group and reap the leader.

        The group is signalled while the leader is still unreaped, so its pid
        (the group id) cannot have been recycled yet; grandchildren such as
        ffmpeg go with it.
        """
        if self._popen is None:
            raise RuntimeError(f"{self.name} was never started")
        if self._popen.returncode is None:
            kill_group(self.pid, signal.SIGKILL)
        code = self._popen.wait()
        self._forget()
        return code

    def wait_exited(self) -> None:
        """Block until the leader exits, leaving it unreaped (its pid stays ours)."""
        while True:
            try:
                os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:  # already reaped
                return
            except OSError:  # pragma: no cover - EINTR is retried by Python itself
                time.sleep(0.05)
                continue
            return

    def _forget(self) -> None:
        if self.registry is not None and self._popen is not None:
            self.registry.remove(self._popen.pid)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)
