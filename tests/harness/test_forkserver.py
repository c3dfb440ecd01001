"""Workers forked from a fork server: real, separate processes, SIGKILLed and reaped for real."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime

# Worker modules, run as ``python -m NAME`` (so the runtime may fork them).
MODULES = {
    "bench_sleeper": """
import os, subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print("helper", helper.pid, "greeting", os.environ.get("GREETING"), "cwd", os.getcwd(),
      flush=True)
time.sleep(120)
""",
    "bench_exits": """
import sys
print("exiting", flush=True)
sys.exit(3)
""",
}


@pytest.fixture
def modules(tmp_path: Path) -> Path:
    folder = tmp_path / "modules"
    folder.mkdir()
    for name, text in MODULES.items():
        (folder / f"{name}.py").write_text(text)
    return folder


@pytest.fixture
def runtime(tmp_path: Path, proc_registry: ProcessRegistry) -> Iterator[ProcessRuntime]:
    rt = ProcessRuntime(tmp_path / "run", proc_registry, fork_server=True, preload=("json",))
    yield rt
    rt.close()


def env_for(modules: Path, **extra: str) -> dict[str, str]:
    return {"PYTHONPATH": f"{modules}:{Path(__file__).resolve().parents[2]}", **extra}


def wait_for_line(path: Path, prefix: str, timeout: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                if line.startswith(prefix):
                    return line.split()
        time.sleep(0.02)
    raise AssertionError(f"{path} never printed {prefix!r}")


def test_forked_worker_is_its_own_process_group_and_dies_by_sigkill(
    runtime: ProcessRuntime, modules: Path, proc_registry: ProcessRegistry,
    wait_gone: Callable[[int, float], bool],
) -> None:
    handle = runtime.start_worker("w1", [sys.executable, "-m", "bench_sleeper"],
                                  env_for(modules, GREETING="hi"))
    words = wait_for_line(handle.log_path, "helper")
    pid, helper = runtime.pid(handle), int(words[1])
    assert runtime.forker is not None and runtime.forker.forked == 1
    server = runtime.forker._server
    assert server is not None
    # a separate process, forked by the server (not by the harness), in its own session
    assert pid not in (os.getpid(), server.process.pid)
    assert psutil.Process(pid).ppid() == server.process.pid
    assert os.getsid(pid) == pid and os.getpgid(helper) == pid
    # its own environment and working directory, not the server's
    assert words[3] == "hi" and Path(words[5]) == runtime.run_dir
    assert (proc_registry.folder / f"{pid}.json").is_file()

    runtime.kill(handle, signal.SIGKILL)

    assert runtime.exit_status(handle) == -signal.SIGKILL
    assert not runtime.is_running(handle)
    assert wait_gone(pid, 5) and wait_gone(helper, 5)  # the group went with it
    assert not (proc_registry.folder / f"{pid}.json").exists()


def test_exit_code_and_output_of_a_forked_worker(runtime: ProcessRuntime,
                                                 modules: Path) -> None:
    runtime.start_worker("w1", [sys.executable, "-m", "bench_sleeper"], env_for(modules))
    handle = runtime.start_worker("w2", [sys.executable, "-m", "bench_exits"], env_for(modules))
    assert runtime.wait(handle, 30) == 3
    assert "exiting" in handle.log_path.read_text()
    assert runtime.forker is not None and runtime.forker.forked == 2


def test_worker_with_another_pythonpath_starts_cold(runtime: ProcessRuntime, modules: Path,
                                                    tmp_path: Path) -> None:
    runtime.start_worker("w1", [sys.executable, "-m", "bench_sleeper"], env_for(modules))
    other = tmp_path / "other"
    other.mkdir()
    (other / "bench_exits.py").write_text(MODULES["bench_exits"])
    handle = runtime.start_worker("w2", [sys.executable, "-m", "bench_exits"],
                                  {"PYTHONPATH": f"{other}:{env_for(modules)['PYTHONPATH']}"})
    assert runtime.wait(handle, 30) == 3
    assert runtime.forker is not None
    assert (runtime.forker.forked, runtime.forker.cold) == (1, 1)


def test_close_stops_workers_and_the_server(
    runtime: ProcessRuntime, modules: Path, proc_registry: ProcessRegistry,
    wait_gone: Callable[[int, float], bool],
) -> None:
    handle = runtime.start_worker("w1", [sys.executable, "-m", "bench_sleeper"],
                                  env_for(modules))
    helper = int(wait_for_line(handle.log_path, "helper")[1])
    assert runtime.forker is not None and runtime.forker._server is not None
    server = runtime.forker._server.process.pid
    pid = runtime.pid(handle)

    runtime.close()

    for gone in (pid, helper, server):
        assert wait_gone(gone, 10), f"pid {gone} still alive"
    assert list(proc_registry.folder.glob("*.json")) == []
    runtime.close()  # twice is fine
