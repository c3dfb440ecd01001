"""Cleanup and reap_leftovers: nothing a run starts outlives it, however it ends."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
import pytest

from harness.cleanup import Cleanup, CleanupError, HarnessTerminated, reap_leftovers

CHILD = Path(__file__).with_name("cleanup_child.py")
REPO = Path(__file__).resolve().parents[2]
WaitGone = Callable[[int, float], bool]


class ChildHarness:
    """cleanup_child.py running as a separate harness process."""

    def __init__(self, mode: str, state_dir: Path, work_dir: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), mode, str(state_dir), str(work_dir)],
            stdout=subprocess.PIPE, text=True, env=env,
        )
        self.watched: list[psutil.Process] = []

    def read(self, timeout: float = 20.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "the child harness printed nothing in time"
        line = self.proc.stdout.readline()
        assert line, f"the child harness exited with {self.proc.wait()}"
        report: dict[str, Any] = json.loads(line)
        return report

    def started(self) -> dict[str, Any]:
        report = self.read()
        for key in ("redis", "worker", "helper"):
            self.watched.append(psutil.Process(report[key]))
        return report

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        for proc in self.watched:  # only if a test failed before they died
            if proc.is_running():
                proc.kill()


@pytest.fixture
def child_harness(tmp_path: Path) -> Iterator[Callable[[str], ChildHarness]]:
    children: list[ChildHarness] = []

    def start(mode: str) -> ChildHarness:
        child = ChildHarness(mode, tmp_path / "state", tmp_path)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- the stack itself --------------------------------------------------------


def test_steps_run_newest_first_and_a_failing_step_does_not_stop_the_rest() -> None:
    ran: list[str] = []

    def broken() -> None:
        ran.append("broken")
        raise OSError("disk gone")

    with pytest.raises(CleanupError, match="disk gone") as raised:
        with Cleanup(handle_sigterm=False) as cleanup:
            cleanup.callback(lambda: ran.append("first"), "first")
            cleanup.callback(broken, "broken")
            cleanup.callback(lambda: ran.append("last"), "last")

    assert ran == ["last", "broken", "first"]
    assert [what for what, _ in raised.value.errors] == ["broken"]


def test_an_error_in_the_block_propagates_after_teardown() -> None:
    ran: list[str] = []

    with pytest.raises(RuntimeError, match="scenario failed"):
        with Cleanup(handle_sigterm=False) as cleanup:
            cleanup.callback(lambda: ran.append("torn down"))
            raise RuntimeError("scenario failed")

    assert ran == ["torn down"]


def test_enter_exits_the_context_manager_at_teardown() -> None:
    seen: list[str] = []

    class Service:
        def __enter__(self) -> str:
            seen.append("enter")
            return "value"

        def __exit__(self, *exc: object) -> None:
            seen.append("exit")

    with Cleanup(handle_sigterm=False) as cleanup:
        assert cleanup.enter(Service()) == "value"
        assert seen == ["enter"]

    assert seen == ["enter", "exit"]


def test_sigterm_inside_the_block_unwinds_it_and_the_old_handler_comes_back() -> None:
    fallback: list[int] = []

    def previous(signum: int, frame: FrameType | None) -> None:
        fallback.append(signum)  # only reached if Cleanup's handler was not installed

    old = signal.signal(signal.SIGTERM, previous)
    ran: list[str] = []
    try:
        with pytest.raises(HarnessTerminated):
            with Cleanup() as cleanup:
                cleanup.callback(lambda: ran.append("torn down"))
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)  # the handler raises here at the latest
                pytest.fail("SIGTERM did not interrupt the block")
        assert signal.getsignal(signal.SIGTERM) is previous
    finally:
        signal.signal(signal.SIGTERM, old)
    assert ran == ["torn down"]
    assert fallback == []
    assert issubclass(HarnessTerminated, KeyboardInterrupt)


def test_temp_dir_is_deleted_at_teardown_with_its_marker(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Cleanup(state_dir=state, handle_sigterm=False) as cleanup:
        made = cleanup.temp_dir("unit", parent=tmp_path)
        (made / "file").write_text("x")
        assert list((state / "tempdirs").glob("*.json"))

    assert not made.exists()
    assert list((state / "tempdirs").glob("*.json")) == []


def test_reap_leftovers_leaves_a_running_harness_alone(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Cleanup(state_dir=state, handle_sigterm=False) as cleanup:
        made = cleanup.temp_dir("mine", parent=tmp_path)

        assert reap_leftovers(state) == []
        assert made.exists()


# -- a real harness process, interrupted -------------------------------------


@pytest.mark.parametrize(("sig", "unwound_by"), [(signal.SIGINT, "KeyboardInterrupt"),
                                                  (signal.SIGTERM, "HarnessTerminated")])
def test_interrupted_harness_tears_down_every_process_and_its_temp_dir(
    child_harness: Callable[[str], ChildHarness], wait_gone: WaitGone, tmp_path: Path,
    sig: int, unwound_by: str,
) -> None:
    child = child_harness("normal")
    report = child.started()
    assert all(alive(report[key]) for key in ("redis", "worker", "helper"))

    child.proc.send_signal(sig)

    assert child.read()["unwound_by"] == unwound_by
    assert child.proc.wait(timeout=20) == 130
    for key in ("redis", "worker", "helper"):
        assert wait_gone(report[key], 5.0), f"{key} outlived the harness"
    assert not Path(report["tmp"]).exists()
    assert list((tmp_path / "state" / "procs").glob("*.json")) == []


def test_reap_leftovers_kills_an_orphaned_redis_server_and_deletes_the_temp_dir(
    child_harness: Callable[[str], ChildHarness], wait_gone: WaitGone, tmp_path: Path
) -> None:
    child = child_harness("no-pdeathsig")
    report = child.started()

    child.proc.kill()
    child.proc.wait(timeout=10)
    assert alive(report["redis"]) and alive(report["worker"])  # orphans now
    removed = reap_leftovers(tmp_path / "state")

    assert any(f"pid {report['redis']}" in item for item in removed)
    for key in ("redis", "worker", "helper"):
        assert wait_gone(report[key], 5.0), f"{key} survived reap_leftovers"
    assert not Path(report["tmp"]).exists()
    assert reap_leftovers(tmp_path / "state") == []


def test_sigkilled_harness_takes_its_children_and_reap_clears_their_helpers(
    child_harness: Callable[[str], ChildHarness], wait_gone: WaitGone, tmp_path: Path
) -> None:
    child = child_harness("normal")
    report = child.started()

    child.proc.kill()
    child.proc.wait(timeout=10)

    assert wait_gone(report["redis"], 5.0) and wait_gone(report["worker"], 5.0)
    # The parent-death signal reaches only direct children: the worker's own
    # helper lives on in the worker's process group until the next reap.
    assert alive(report["helper"])
    removed = reap_leftovers(tmp_path / "state")
    assert any(str(report["helper"]) in item for item in removed)
    assert wait_gone(report["helper"], 5.0)
    assert not Path(report["tmp"]).exists()


# -- the start-up sweep when no Docker engine answers -------------------------


def _reap_recording_resource_warnings(state: Path) -> tuple[list[str], list[str]]:
    """reap_leftovers, then a garbage collection; what it removed and every ResourceWarning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        removed = reap_leftovers(state)
        gc.collect()
    return removed, [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_reap_leftovers_with_a_stale_docker_socket_leaks_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as gone:  # bound, never listening
        gone.bind(str(stale))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{stale}")

    removed, leaked = _reap_recording_resource_warnings(tmp_path / "state")

    assert stale.exists()
    assert removed == []
    assert leaked == []


def test_reap_leftovers_with_an_engine_that_hangs_up_leaks_no_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = tmp_path / "docker.sock"
    accepted: list[int] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(address))
        server.listen()

        def hang_up() -> None:  # answers every connection by closing it
            server.settimeout(10)
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = server.accept()
                    accepted.append(1)
                    conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        monkeypatch.setenv("DOCKER_HOST", f"unix://{address}")

        removed, leaked = _reap_recording_resource_warnings(tmp_path / "state")

        server.shutdown(socket.SHUT_RDWR)
    thread.join(10)
    assert len(accepted) >= 2  # the sweep's own probe, then the SDK's version request
    assert removed == []
    assert leaked == []


def test_ctrl_c_during_a_fork_is_raised_once_the_child_exists() -> None:
    # Python drops a KeyboardInterrupt raised inside a fork's at-fork hooks; a
    # SIGINT that lands while a child is being forked must still stop the run
    from harness.procs import _holding_signals

    started: list[subprocess.Popen[bytes]] = []

    def fork_hit_by_ctrl_c() -> subprocess.Popen[bytes]:
        signal.raise_signal(signal.SIGINT)  # arrives mid-fork
        started.append(subprocess.Popen(["sleep", "30"]))
        return started[-1]

    with pytest.raises(KeyboardInterrupt):
        _holding_signals(fork_hit_by_ctrl_c)
    assert len(started) == 1  # the child was made, so the caller can clean it up
    started[0].kill()
    started[0].wait()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


_UNSTOPPED = """
import atexit, json, sys
from pathlib import Path
from harness.procs import ManagedProcess, ProcessRegistry
registry = ProcessRegistry(Path(sys.argv[1]))
atexit.register(registry.release_own)
child = ManagedProcess("sleeper", ["sleep", "60"], log_path=Path(sys.argv[2]),
                       registry=registry).start()
theirs = {"pid": 1, "create_time": 0.0, "name": "theirs", "owner": 1, "owner_create_time": 0.0}
(Path(sys.argv[1]) / "1.json").write_text(json.dumps(theirs))
print(child.pid, flush=True)
raise KeyboardInterrupt  # as a Ctrl-C between a start and the step that would stop it
"""


def test_a_child_started_but_never_stopped_is_killed_and_unregistered_at_exit(
        tmp_path: Path, wait_gone: WaitGone) -> None:
    procs = tmp_path / "procs"
    done = subprocess.run([sys.executable, "-c", _UNSTOPPED, str(procs), str(tmp_path / "log")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0 and "KeyboardInterrupt" in done.stderr
    assert wait_gone(int(done.stdout.split()[0]), 5.0)
    # its own entry is gone; another owner's entry is not its to touch
    assert sorted(p.name for p in procs.glob("*.json")) == ["1.json"]
