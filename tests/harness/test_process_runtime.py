"""ProcessRuntime: real worker processes, stopped, continued and SIGKILLed as a group."""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.errors import SetupError
from harness.ports import wait_until
from harness.procs import ProcessRegistry
from harness.runtime.base import WorkerHandle
from harness.runtime.process import ProcessRuntime

Events = list[tuple[str, dict[str, Any]]]

# A worker that starts a helper (as a real worker starts ffmpeg), says so, and sleeps.
SLEEPER = """
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("helper", helper.pid, flush=True)
print("greeting", os.environ.get("GREETING"), flush=True)
time.sleep(120)
"""
IGNORES_SIGTERM = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def runtime(
    tmp_path: Path, proc_registry: ProcessRegistry, events: Events
) -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(tmp_path / "run", proc_registry,
                        on_event=lambda kind, **fields: events.append((kind, fields)))
    yield rt
    rt.stop_all(grace=1.0)


def start_sleeper(runtime: ProcessRuntime, name: str = "worker-1") -> tuple[WorkerHandle, int]:
    """Start SLEEPER; its handle and its helper's pid."""
    handle = runtime.start_worker(name, [sys.executable, "-c", SLEEPER], {"GREETING": "hi"})
    found: list[int] = []

    def helper_started() -> bool:
        match = re.search(r"^helper (\d+)$", runtime.log_path(handle).read_text(), re.M)
        if match:
            found.append(int(match.group(1)))
        return bool(found)

    wait_until(helper_started, timeout=10, what="the sleeper's helper")
    return handle, found[0]


def start_and_wait_for(runtime: ProcessRuntime, name: str, script: str, line: str) -> WorkerHandle:
    handle = runtime.start_worker(name, [sys.executable, "-c", script], {})
    wait_until(lambda: line in runtime.log_path(handle).read_text(), timeout=10,
               what=f"{name} to print {line!r}")
    return handle


def status(pid: int) -> str:
    return str(psutil.Process(pid).status())


def test_worker_output_and_environment_land_in_its_log_file(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    handle, _ = start_sleeper(runtime)

    assert runtime.log_path(handle) == tmp_path / "run" / "logs" / "worker-1.log"
    wait_until(lambda: "greeting hi" in runtime.log_path(handle).read_text(), timeout=5,
               what="the greeting")


def test_start_is_reported_with_name_pid_and_time(runtime: ProcessRuntime, events: Events) -> None:
    before = time.time()
    handle, _ = start_sleeper(runtime)

    kind, fields = events[0]
    assert kind == "process_start"
    assert fields["name"] == "worker-1"
    assert fields["pid"] == runtime.pid(handle) == int(handle.ident)
    assert before <= fields["ts"] <= time.time()
    assert runtime.is_running(handle)


def test_pause_stops_the_whole_group_and_resume_continues_it(runtime: ProcessRuntime) -> None:
    handle, helper = start_sleeper(runtime)
    pid = runtime.pid(handle)

    runtime.pause(handle)
    wait_until(lambda: status(pid) == psutil.STATUS_STOPPED == status(helper), timeout=5,
               what="both processes to stop")
    assert runtime.is_running(handle)  # paused is not dead

    runtime.resume(handle)
    wait_until(lambda: psutil.STATUS_STOPPED not in (status(pid), status(helper)), timeout=5,
               what="both processes to continue")


def test_sigkill_exits_with_minus_9_and_takes_the_helper_with_it(
    runtime: ProcessRuntime, events: Events, wait_gone: Callable[[int, float], bool]
) -> None:
    handle, helper = start_sleeper(runtime)

    runtime.kill(handle)  # SIGKILL by default; returns once it is gone

    assert runtime.exit_status(handle) == -9
    assert not runtime.is_running(handle)
    assert wait_gone(helper, 5.0)
    kinds = [kind for kind, _ in events]
    assert kinds == ["process_start", "process_signal", "process_exit"]
    assert events[1][1]["signal_name"] == "SIGKILL" and events[1][1]["delivered"] is True
    assert events[2][1]["exit_code"] == -9 and events[2][1]["signal"] == signal.SIGKILL
    assert events[1][1]["ts"] <= events[2][1]["ts"]


def test_sigkill_of_a_paused_worker_still_kills_it(runtime: ProcessRuntime) -> None:
    handle, _ = start_sleeper(runtime)
    runtime.pause(handle)

    runtime.kill(handle, signal.SIGKILL)

    assert runtime.wait(handle, timeout=5) == -9


def test_exit_on_its_own_is_recorded_without_anyone_waiting(
    runtime: ProcessRuntime, events: Events
) -> None:
    handle = runtime.start_worker("crasher", [sys.executable, "-c", "raise SystemExit(3)"], {})

    wait_until(lambda: any(kind == "process_exit" for kind, _ in events), timeout=10,
               what="the exit event")

    assert events[-1][1]["exit_code"] == 3 and events[-1][1]["signal"] is None
    assert runtime.exit_status(handle) == 3
    assert runtime.wait(handle, timeout=0) == 3


def test_wait_returns_none_while_the_worker_runs(runtime: ProcessRuntime) -> None:
    handle, _ = start_sleeper(runtime)

    assert runtime.wait(handle, timeout=0.1) is None
    assert runtime.exit_status(handle) is None


def test_sigterm_is_sent_to_the_group_and_its_exit_observed(runtime: ProcessRuntime) -> None:
    handle, _ = start_sleeper(runtime)

    runtime.kill(handle, signal.SIGTERM)

    assert runtime.wait(handle, timeout=5) == -15


def test_stop_all_ends_paused_workers_and_kills_those_ignoring_sigterm(
    runtime: ProcessRuntime, events: Events
) -> None:
    paused, _ = start_sleeper(runtime, "paused")
    stubborn = start_and_wait_for(runtime, "stubborn", IGNORES_SIGTERM, "ready")
    runtime.pause(paused)

    runtime.stop_all(grace=0.5)

    assert runtime.exit_status(paused) == -15
    assert runtime.exit_status(stubborn) == -9
    sent = [(f["name"], f["signal_name"]) for kind, f in events if kind == "process_signal"]
    assert ("paused", "SIGCONT") in sent and ("stubborn", "SIGKILL") in sent


def test_signal_to_an_exited_worker_is_recorded_as_not_delivered(
    runtime: ProcessRuntime, events: Events
) -> None:
    handle = runtime.start_worker("quick", [sys.executable, "-c", "pass"], {})
    assert runtime.wait(handle, timeout=10) == 0

    runtime.kill(handle)

    assert events[-1][0] == "process_signal" and events[-1][1]["delivered"] is False
    assert runtime.exit_status(handle) == 0


def test_worker_started_from_a_finished_thread_keeps_running(runtime: ProcessRuntime) -> None:
    # PR_SET_PDEATHSIG fires when the forking *thread* ends, unless the
    # harness forks from a thread that lives as long as it does.
    handles: list[WorkerHandle] = []
    thread = threading.Thread(target=lambda: handles.append(start_sleeper(runtime)[0]))
    thread.start()
    thread.join()

    time.sleep(0.3)

    assert runtime.is_running(handles[0])


def test_worker_names_are_unique_per_runtime(runtime: ProcessRuntime) -> None:
    start_sleeper(runtime, "worker-1")

    with pytest.raises(ValueError, match="already"):
        runtime.start_worker("worker-1", [sys.executable, "-c", "pass"], {})


def test_missing_executable_is_a_setup_error(runtime: ProcessRuntime, tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="cannot start worker"):
        runtime.start_worker("ghost", [str(tmp_path / "no-such-program")], {})


def test_handle_of_another_runtime_is_rejected(
    runtime: ProcessRuntime, tmp_path: Path
) -> None:
    other = ProcessRuntime(tmp_path / "other")
    handle = other.start_worker("worker-1", [sys.executable, "-c", "pass"], {})
    try:
        with pytest.raises(ValueError, match="not a worker of this runtime"):
            runtime.is_running(handle)
    finally:
        other.stop_all(grace=1.0)
