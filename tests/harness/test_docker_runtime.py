"""The docker runtime against a real engine: real containers, real kill/pause, real cleanup.

Every test here needs a Docker engine and the worker image (built on first
use, which takes a minute or two on a cold machine). A missing engine fails
the tests with the fix, in CI and locally alike: nothing here skips.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from harness.checkers.base import Verdict
from harness.cleanup import reap_leftovers
from harness.docker_engine import LABEL_OWNER, LABEL_RUN, LABEL_RUNTIME, LABEL_WORKER, Engine
from harness.errors import SetupError
from harness.image import ensure_image
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.runtime.docker import IMAGE_PYTHON, DockerRuntime
from harness.scenario import resolve

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CRASHLAB = [sys.executable, "-m", "harness.cli"]


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    try:
        connected = Engine.connect(timeout=30)
    except SetupError as exc:
        pytest.fail(f"the docker tests need a Docker engine: {exc}", pytrace=False)
    try:
        yield connected
    finally:
        connected.close()


@pytest.fixture
def image(engine: Engine) -> str:
    # per test: quick once built (the process remembers it), and still right when a
    # harness started by a test built a newer one from an edited checkout
    return ensure_image(engine=engine).ref


Events = list[tuple[str, dict[str, object]]]


@pytest.fixture
def events() -> Events:
    return []


@pytest.fixture
def runtime(tmp_path: Path, image: str, events: Events) -> Iterator[DockerRuntime]:
    def record(kind: str, /, **fields: object) -> None:
        events.append((kind, fields))

    docker_runtime = DockerRuntime(tmp_path / "run", image, on_event=record)
    try:
        yield docker_runtime
    finally:
        docker_runtime.stop_all(grace=1.0)
        assert docker_ps(f"{LABEL_RUNTIME}={docker_runtime.runtime_id}") == []


def docker_ps(*labels: str) -> list[str]:
    """``docker ps -a --filter label=...``: the ids of every container carrying all ``labels``."""
    filters = [arg for label in labels for arg in ("--filter", f"label={label}")]
    out = subprocess.run(["docker", "ps", "-a", "-q", "--no-trunc", *filters],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.split()


def python(code: str) -> list[str]:
    """A worker command line that runs ``code`` with the harness's interpreter (translated)."""
    return [sys.executable, "-c", textwrap.dedent(code)]


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


TICKER = """
    import itertools, time
    for i in itertools.count():
        print(i, flush=True)
        time.sleep(0.02)
"""


def test_start_runs_the_image_python_on_the_host_network_and_logs_into_the_run_folder(
    runtime: DockerRuntime, events: Events
) -> None:
    code = """
        import os, socket, sys
        print("python", sys.executable, os.getcwd(), flush=True)
        print("env", os.environ.get("CRASHLAB_PROBE"), os.environ.get("PATH"), flush=True)
        print("owner", os.getuid(), os.getgid(), flush=True)
        open("from-container.txt", "w").write("hi")
        socket.create_connection(("127.0.0.1", int(os.environ["PROBE_PORT"])), 5).close()
        print("loopback ok", flush=True)
    """
    with socket_server() as port:
        handle = runtime.start_worker("w1", python(code),
                                      {"CRASHLAB_PROBE": "yes", "PROBE_PORT": str(port)})
        assert runtime.wait(handle, 30) == 0
    log = handle.log_path.read_text()
    assert handle.log_path == runtime.run_dir / "logs" / "w1.log"
    assert f"python {IMAGE_PYTHON} {runtime.run_dir}" in log
    assert "env yes /opt/crashlab/bin:" in log  # the image's PATH, not the host's
    assert f"owner {os.getuid()} {os.getgid()}" in log
    assert "loopback ok" in log
    written = runtime.run_dir / "from-container.txt"
    assert written.read_text() == "hi" and written.stat().st_uid == os.getuid()
    kinds = [kind for kind, _ in events]
    assert kinds == ["process_start", "process_exit"]
    start = events[0][1]
    assert start["name"] == "w1" and isinstance(start["pid"], int) and start["pid"] > 1


def test_sigkill_reports_minus_nine_and_removes_the_container(
    runtime: DockerRuntime, events: Events, engine: Engine
) -> None:
    handle = runtime.start_worker("w1", python(TICKER), {})
    pid = runtime.pid(handle)
    assert "-c" in psutil.Process(pid).cmdline()  # the container's process, seen from the host
    assert runtime.is_running(handle) and runtime.exit_status(handle) is None
    wait_for(lambda: handle.log_path.stat().st_size > 0)
    runtime.kill(handle, signal.SIGKILL)
    assert runtime.exit_status(handle) == -9
    assert not runtime.is_running(handle)
    signal_event = next(f for kind, f in events if kind == "process_signal")
    assert (signal_event["signal_name"], signal_event["delivered"]) == ("SIGKILL", True)
    exit_event = next(f for kind, f in events if kind == "process_exit")
    assert (exit_event["exit_code"], exit_event["signal"], exit_event["pid"]) == (-9, 9, pid)
    wait_for(lambda: engine.state(handle.ident) is None)
    runtime.kill(handle, signal.SIGKILL)  # already gone: recorded as not delivered
    assert [f["delivered"] for k, f in events if k == "process_signal"] == [True, False]


def test_pause_freezes_every_process_and_resume_thaws_them(
    runtime: DockerRuntime, events: Events
) -> None:
    handle = runtime.start_worker("w1", python(TICKER), {})
    wait_for(lambda: handle.log_path.stat().st_size > 0)
    runtime.pause(handle)
    frozen_at = handle.log_path.stat().st_size
    time.sleep(0.5)
    assert handle.log_path.stat().st_size == frozen_at
    assert runtime.is_running(handle)  # paused is alive
    runtime.resume(handle)
    wait_for(lambda: handle.log_path.stat().st_size > frozen_at, timeout=5)
    runtime.pause(handle)
    runtime.kill(handle, signal.SIGKILL)  # a frozen container can be killed
    assert runtime.wait(handle, 10) == -9
    names = [f["signal_name"] for kind, f in events if kind == "process_signal"]
    assert names == ["SIGSTOP", "SIGCONT", "SIGSTOP", "SIGKILL"]


def test_exit_status_of_a_worker_that_exits_on_its_own(runtime: DockerRuntime) -> None:
    handle = runtime.start_worker("w1", python("import sys; sys.exit(3)"), {})
    assert runtime.wait(handle, 30) == 3
    assert runtime.exit_status(handle) == 3


def test_stop_all_stops_and_removes_every_container_even_a_paused_one(
    runtime: DockerRuntime
) -> None:
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
               "time.sleep(600)"
    polite = runtime.start_worker("polite", python("import time; time.sleep(600)"), {})
    deaf = runtime.start_worker("deaf", python(stubborn), {})
    paused = runtime.start_worker("paused", python("import time; time.sleep(600)"), {})
    runtime.pause(paused)
    assert len(docker_ps(f"{LABEL_RUNTIME}={runtime.runtime_id}")) == 3
    runtime.stop_all(grace=1.0)
    assert runtime.exit_status(deaf) == -9
    assert runtime.exit_status(polite) is not None
    assert runtime.exit_status(paused) is not None
    assert docker_ps(f"{LABEL_RUNTIME}={runtime.runtime_id}") == []


def test_leftovers_of_a_sigkilled_harness_are_removed_at_the_next_start(
    tmp_path: Path, image: str
) -> None:
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from harness.runtime.docker import DockerRuntime
        runtime = DockerRuntime(Path({str(tmp_path / 'run')!r}), {image!r})
        handle = runtime.start_worker("w1", [sys.executable, "-c", "import time; time.sleep(600)"],
                                      {{}})
        print(handle.ident, flush=True)
        time.sleep(600)
    """)
    harness = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT)
    try:
        assert harness.stdout is not None
        container = harness.stdout.readline().strip()
        assert container, "the stand-in harness did not start its worker"
        label = f"{LABEL_OWNER}={harness.pid}"
        assert docker_ps(label) == [container]
        harness.kill()
        harness.wait(10)
        assert docker_ps(label) == [container]  # a container does not die with its harness
        removed = reap_leftovers(tmp_path / "state")
        assert any(container[:12] in line for line in removed), removed
        assert docker_ps(label) == []
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
        if harness.stdout is not None:
            harness.stdout.close()


@pytest.mark.parametrize("interrupt", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_docker_run_leaves_no_container(
    interrupt: int, tmp_path: Path, image: str
) -> None:
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")}
    run = subprocess.Popen([*CRASHLAB, "run", "zombie-worker", "--runtime", "docker",
                            "--runs", str(tmp_path / "runs"), "--no-report"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=env, cwd=ROOT)
    label = f"{LABEL_OWNER}={run.pid}"
    try:
        # a worker's container, not one the image check may run first
        wait_for(lambda: len(docker_ps(label, LABEL_WORKER)) > 0, timeout=120)
        run.send_signal(interrupt)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
    if interrupt == signal.SIGINT:
        assert run.returncode == 130, stderr[-2000:]
        assert docker_ps(label) == []
        return
    assert docker_ps(label) != []  # SIGKILL: no teardown ran, the containers are still there
    after = subprocess.run([*CRASHLAB, "run", "crash-after-transcription", "--runtime", "docker",
                            "--runs", str(tmp_path / "runs"), "--no-report"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert after.returncode == 0, after.stderr[-2000:]
    assert "removed a leftover of an interrupted run: container" in after.stderr
    assert docker_ps(label) == []


@pytest.mark.parametrize(("name", "signals"), [
    ("crash-after-transcription", {"SIGKILL"}),  # docker kill at the failpoint
    ("zombie-worker", {"SIGSTOP", "SIGCONT"}),  # docker pause past the lease, then unpause
    ("deploy-mid-job", {"SIGTERM"}),  # docker stop -t 10: the worker releases and leaves
    # docker stop -t 0, its gap closed (stopped first): killed before it can release
    ("deploy-grace-too-short", {"SIGSTOP", "SIGTERM", "SIGKILL"}),
])
def test_catalog_scenario_gives_a_valid_verdict_in_containers(
    name: str, signals: set[str], tmp_path: Path, registry: ProcessRegistry, image: str
) -> None:
    result = run_scenario(resolve(name), seed=5, registry=registry, runs_root=tmp_path,
                          runtime="docker")
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
    assert result.faults_fired == result.faults_planned
    with (result.run_dir / "history.jsonl").open() as lines:
        history = [json.loads(line) for line in lines]
    sent = {e["signal"] for e in history if e["kind"] == "process_signal" and e["delivered"]}
    assert signals <= sent
    started = {e["name"] for e in history if e["kind"] == "process_start"
               and e["role"] == "worker"}
    exited = {e["name"] for e in history if e["kind"] == "process_exit"}
    assert started and started <= exited
    assert docker_ps(f"{LABEL_RUN}={result.run_dir}") == []


class socket_server:
    """A listening socket on 127.0.0.1 (the container must reach the host's loopback)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_failing_probe_command_is_a_setup_error_and_leaves_no_container(
    engine: Engine, image: str
) -> None:
    with pytest.raises(SetupError, match="exited with 4"):
        engine.output_of(image, ["python3", "-c", "import sys; print('out'); sys.exit(4)"])
    assert engine.output_of(image, ["python3", "-c", "print('fine')"]) == "fine\n"
    assert docker_ps(f"{LABEL_OWNER}={os.getpid()}") == []
