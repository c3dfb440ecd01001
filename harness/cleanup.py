"""Tear down everything a run started, on every way out of it.

``Cleanup`` is a stack of teardown steps, like ``contextlib.ExitStack``: the
runner pushes each server, runtime and temporary directory as it creates
them, and leaving the ``with`` block undoes them in reverse order whether
the run ended normally, raised, was interrupted with Ctrl-C, or was sent
SIGTERM. While the block runs, SIGTERM raises ``HarnessTerminated`` (a
``KeyboardInterrupt``) in the main thread, so it unwinds exactly like
Ctrl-C; the previous handler comes back afterwards. While the steps run,
SIGINT and SIGTERM are held back so a second Ctrl-C cannot cut teardown
short; one that arrived is raised once teardown is done.

Only a SIGKILLed harness skips all this. Its children die with it
(``PR_SET_PDEATHSIG``, see ``harness.procs``), and ``reap_leftovers`` at the
next start kills whatever the process registry still lists and deletes the
temporary directories the dead run left. The state directory holds both:

    <state_dir>/procs/<pid>.json       one per live child (``ProcessRegistry``)
    <state_dir>/tempdirs/<id>.json     one per temporary directory of a live run

Worker containers (docker runtime) do not die with the harness; they carry
their owner's pid and start time as labels, and ``reap_leftovers`` also
removes those whose owner is gone (``harness.docker_engine``), when a
Docker engine answers on this machine.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import psutil

from harness.errors import CrashlabError
from harness.procs import ProcessRegistry, held_signals, is_alive

log = logging.getLogger(__name__)

T = TypeVar("T")

TEMP_PREFIX = "crashlab-"
# where the Docker engine listens unless DOCKER_HOST says otherwise
DOCKER_SOCKET = "/var/run/docker.sock"
_Handler = Callable[[int, FrameType | None], Any] | int | None


class HarnessTerminated(KeyboardInterrupt):
    """The harness got SIGTERM; unwinds like Ctrl-C."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        self.signum = signum
        super().__init__(f"terminated by {signal.Signals(signum).name}")


class CleanupError(CrashlabError):
    """One or more teardown steps failed (each was tried; see ``errors``)."""

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        self.errors = errors
        listed = "; ".join(f"{what}: {exc!r}" for what, exc in errors)
        super().__init__(f"{len(errors)} teardown step(s) failed: {listed}")


def process_registry(state_dir: Path) -> ProcessRegistry:
    """The process registry kept in ``state_dir``."""
    return ProcessRegistry(state_dir / "procs")


def _tempdir_markers(state_dir: Path) -> Path:
    return state_dir / "tempdirs"


@dataclass
class _Step:
    what: str
    run: Callable[[], object]


class Cleanup:
    """A stack of teardown steps, run in reverse on every exit path."""

    def __init__(self, *, state_dir: Path | None = None, handle_sigterm: bool = True) -> None:
        self.state_dir = state_dir.resolve() if state_dir is not None else None
        self.registry = process_registry(self.state_dir) if self.state_dir else None
        self.handle_sigterm = handle_sigterm
        self._steps: list[_Step] = []
        self._old_sigterm: _Handler = None
        self._installed = False
        self._held: list[int] = []

    # -- building the stack --------------------------------------------------

    def callback(self, fn: Callable[[], object], what: str | None = None) -> None:
        """Run ``fn()`` at teardown (``what`` names it in logs)."""
        self._steps.append(_Step(what or str(getattr(fn, "__qualname__", fn)), fn))

    def enter(self, cm: AbstractContextManager[T], what: str | None = None) -> T:
        """Enter ``cm`` now and exit it at teardown; returns what it returns."""
        value = cm.__enter__()
        self.callback(lambda: cm.__exit__(None, None, None), what or type(cm).__name__)
        return value

    def temp_dir(self, label: str = "run", parent: Path | None = None) -> Path:
        """A new temporary directory, deleted at teardown (or by ``reap_leftovers``).

        It is made in ``parent``, by default the system's temporary directory.
        """
        path = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{label}-", dir=parent)).resolve()
        marker: Path | None = None
        if self.state_dir is not None:
            folder = _tempdir_markers(self.state_dir)
            folder.mkdir(parents=True, exist_ok=True)
            marker = folder / f"{uuid.uuid4().hex}.json"
            marker.write_text(json.dumps({
                "path": str(path),
                "owner": os.getpid(),
                "owner_create_time": psutil.Process().create_time(),
            }))

        def remove() -> None:
            shutil.rmtree(path, ignore_errors=True)
            if marker is not None:
                marker.unlink(missing_ok=True)

        self.callback(remove, f"remove {path}")
        return path

    # -- running it ----------------------------------------------------------

    def close(self) -> list[tuple[str, BaseException]]:
        """Run every step, newest first; returns the failures (each is logged)."""
        errors: list[tuple[str, BaseException]] = []
        # a Ctrl-C or SIGTERM now waits until teardown is done (``__exit__`` raises it)
        with held_signals(self._held, note=_note_held):
            while self._steps:
                step = self._steps.pop()
                try:
                    step.run()
                except BaseException as exc:  # every step runs, whatever one does
                    log.error("teardown step %r failed: %r", step.what, exc, exc_info=exc)
                    errors.append((step.what, exc))
        return errors

    def __enter__(self) -> Cleanup:
        if self.handle_sigterm and _in_main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
            self._installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            log.info("tearing down after %s", exc_type.__name__)
        try:
            errors = self.close()
        finally:
            if self._installed:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._installed = False
        held, self._held = self._held, []
        if exc_type is None and held:
            signum = held[0]
            raise HarnessTerminated(signum) if signum == signal.SIGTERM else KeyboardInterrupt()
        if exc_type is None and errors:
            raise CleanupError(errors)


def _note_held(signum: int) -> None:
    log.warning("%s during teardown: finishing teardown first", signal.Signals(signum).name)


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise HarnessTerminated(signum)


def docker_engine_listening(timeout: float = 1.0) -> bool:
    """Whether something accepts connections at the Docker engine's address.

    Made before ``harness.docker_engine`` (and the docker SDK) is imported, so
    a machine without an engine, or with only the stale socket file of a
    stopped one, pays a failed ``connect`` and nothing more. The SDK itself
    must not make that failed connect: it leaves the socket of a refused
    connection unclosed (``Engine.connect`` asks this first, too). A
    ``DOCKER_HOST`` other than ``unix://`` is left to the SDK to try.
    """
    host = os.environ.get("DOCKER_HOST") or f"unix://{DOCKER_SOCKET}"
    if not host.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(timeout)
        try:
            probe.connect(host.removeprefix("unix://"))
        except OSError:
            return False
    return True


def reap_leftovers(state_dir: Path) -> list[str]:
    """Undo what a harness that died without teardown left in ``state_dir``.

    Kills the processes its registry lists, deletes its temporary directories
    and removes its worker containers; what belongs to harnesses that are
    still running is left alone. Call it once at startup, before starting
    anything. Returns a description of each thing removed.
    """
    state_dir = state_dir.resolve()
    removed = process_registry(state_dir).reap_leftovers()
    if docker_engine_listening():
        from harness.docker_engine import reap_orphan_containers

        removed += reap_orphan_containers()
    folder = _tempdir_markers(state_dir)
    if not folder.is_dir():
        return removed
    for marker in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(marker.read_text())
            path = Path(entry["path"])
            owner = int(entry["owner"])
            owner_created = float(entry["owner_create_time"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("ignoring unreadable temp-dir marker %s", marker)
            marker.unlink(missing_ok=True)
            continue
        if is_alive(owner, owner_created):
            continue  # a harness that is still running owns it
        if not path.name.startswith(TEMP_PREFIX):  # never delete what we did not create
            log.warning("temp-dir marker %s names %s, not a crashlab directory", marker, path)
        elif path.exists():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(f"temporary directory {path}")
            log.warning("removed temporary directory %s of an interrupted run", path)
        marker.unlink(missing_ok=True)
    return removed
