"""The failpoint helper users import: real processes, a real fork, the real control client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.control_client import ControlClient, ControlError
from harness.failpoint import Registry, action_for, parse_actions
from harness.ports import free_port

APP = Path(__file__).with_name("failpoint_app.py")


def lines(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[object]:
    started: list[subprocess.Popen[bytes]] = []

    def start(mode: str, failpoints: str = "") -> tuple[ControlClient, Path, int]:
        log = tmp_path / f"{mode}-{len(started)}.log"
        url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "CRASHLAB_CONTROL_URL": url, "CRASHLAB_FAILPOINTS": failpoints,
               "CRASHLAB_WORKER_ID": "w1",
               "PYTHONPATH": os.pathsep.join([str(Path.cwd()), *sys.path])}
        proc = subprocess.Popen([sys.executable, str(APP), mode, str(log)], env=env)
        started.append(proc)
        control = ControlClient(url)
        wait_for(control.ready)
        return control, log, proc.pid

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_actions_follow_their_counts() -> None:
    terms = parse_actions("2*off->pause->off")
    assert [action_for(terms, hit).kind.value for hit in (1, 2, 3, 4)] == \
        ["off", "off", "pause", "pause"]
    assert action_for(parse_actions("1*error"), 2).kind.value == "off"
    with pytest.raises(ValueError, match="sleep needs milliseconds"):
        parse_actions("sleep")


def test_a_declared_catalog_refuses_unknown_points() -> None:
    registry = Registry("w1", points={"job.start": "began"})
    with pytest.raises(ValueError, match="unknown failpoint 'job.strat'"):
        registry.arm("job.strat", "pause")


def test_a_forked_child_pauses_at_the_servers_count_and_can_be_killed_alone(
        start_app: object) -> None:
    control, log, parent = start_app("fork", "job.start=1*off->pause")  # type: ignore[operator]
    assert control.points() == {"job.start": "the job began",
                                "job.effect": "the effect is about to be applied"}
    hit = control.wait_for_hit("job.start", timeout=10)
    assert hit is not None and hit.job == "b" and hit.hit == 2  # the first child passed
    assert hit.pid != parent  # the child's own pid, not the server's
    assert any(line.startswith("effect-a") for line in lines(log))
    assert not any(line.startswith("start-b") for line in lines(log))
    os.kill(hit.pid, signal.SIGKILL)
    wait_for(lambda: any(line.startswith("done") for line in lines(log)))
    assert "child-b-exit--9" in " ".join(lines(log))
    assert control.status()["pid"] == parent  # the server outlived the child


def test_an_async_pause_holds_one_job_while_the_loop_runs_the_other(start_app: object) -> None:
    control, log, _ = start_app("async")  # type: ignore[operator]
    wait_for(lambda: any(line.startswith("done") for line in lines(log)))
    control, log, _ = start_app("async", "job.start=1*pause")  # type: ignore[operator]
    hit = control.wait_for_hit("job.start", timeout=10)
    assert hit is not None and hit.job == "a"
    wait_for(lambda: any(line.startswith("start-b") for line in lines(log)))
    assert not any(line.startswith("start-a") for line in lines(log))
    assert control.release("job.start") == 1
    wait_for(lambda: any(line.startswith("done") for line in lines(log)))


def test_an_error_action_raises_in_the_child_and_arming_a_bad_action_is_refused(
        start_app: object) -> None:
    control, log, _ = start_app("fork", "job.effect=error")  # type: ignore[operator]
    wait_for(lambda: any(line.startswith("done") for line in lines(log)))
    assert "child-a-exit-1" in " ".join(lines(log))  # FailpointError ended it
    assert not any(line.startswith("effect-") for line in lines(log))
    with pytest.raises(ControlError, match="bad failpoint action"):
        control.arm("job.start", "pause(3)x")


def test_an_unarmed_point_outside_a_run_does_nothing() -> None:
    script = ("import harness.failpoint as f, time\n"
              "t = time.perf_counter()\n"
              "for _ in range(100000): f.failpoint('anything')\n"
              "print(f._enabled)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRASHLAB_")}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "False"


def test_points_armed_from_the_environment_count_hits_in_process() -> None:
    registry = Registry("w", "p=1*off->error")
    assert registry.enter("p", pid=1, job="j", chunk=None)[0].kind.value == "off"
    assert registry.enter("p", pid=1, job="j", chunk=3)[0].kind.value == "error"
    assert registry.armed() == {"p": {"actions": "1*off->error", "hits": 2}}
    assert [(h["hit"], h["chunk"]) for h in registry.hits] == [(2, 3)]


def test_hit_hooks_run_before_a_pause_or_error_is_visible_and_cannot_break_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.failpoint as failpoint

    monkeypatch.setattr(failpoint, "_hit_hooks", [])
    registry = Registry("w", "p=1*off->1*pause->error")
    seen: list[int] = []
    failpoint.on_hit(lambda: seen.append(len(registry.hits)))

    def broken() -> None:
        raise OSError("disk full")

    failpoint.on_hit(broken)
    assert registry.enter("p", pid=1, job="j", chunk=None)[0].kind.value == "off"
    assert seen == []  # a hit that passes is not reported, so nothing runs
    assert registry.enter("p", pid=1, job="j", chunk=None)[0].kind.value == "pause"
    assert registry.enter("p", pid=1, job="j", chunk=None)[0].kind.value == "error"
    assert seen == [0, 1]  # each ran while its hit was not yet listed
    assert len(registry.hits) == 2
