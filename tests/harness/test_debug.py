"""``crashlab debug``: break points, the arming behind them, scripted and terminal sessions.

The first tests drive ``harness.debug_stops`` against a real ``Failpoints``
registry in this process (no worker needed); the slow ones run the real
command against the real worker, fed commands from a script, from a pipe, and
once through tmux as a person at a terminal would, and check what it shows,
what it records and that nothing it started outlives it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rich.console import Console

from harness.control_client import FailpointHit
from harness.debug import DebugSession, DebugTarget, load_debug_target
from harness.debug_commands import ScriptSource
from harness.debug_stops import (
    Arming,
    BreakSpec,
    Stop,
    StopKind,
    merge_spec,
    pause_actions,
)
from harness.environment import Worker
from harness.errors import DebugError
from harness.packs.reference.target import PHASES
from harness.procs import ProcessRegistry
from harness.scenario import resolve
from system_under_test.failpoints import Failpoints

ROOT = Path(__file__).resolve().parents[2]

# -- break points and arming (fast) ---------------------------------------------


def test_break_spec_parses_point_and_occurrence_and_names_the_fix() -> None:
    assert BreakSpec.parse("chunk.committed#2", PHASES) == BreakSpec("chunk.committed", 2)
    assert BreakSpec.parse("job.claimed", PHASES) == BreakSpec("job.claimed", 1)
    with pytest.raises(DebugError, match="unknown failpoint 'chunk.comitted'.*known points"):
        BreakSpec.parse("chunk.comitted#2", PHASES)
    with pytest.raises(DebugError, match="POINT#N"):
        BreakSpec.parse("chunk.committed#0", PHASES)


def test_pause_actions_pause_exactly_at_the_given_hits() -> None:
    assert pause_actions([1]) == "1*pause"
    assert pause_actions([3, 1]) == "1*pause->1*off->1*pause"
    assert pause_actions([2, 3]) == "1*off->1*pause->1*pause"
    assert merge_spec("lease.renew=pause;chunk.committed=off", {
        "chunk.committed": {2: Stop("b1", StopKind.BREAK, ("chunk.committed",), 2)},
    }) == "lease.renew=pause;chunk.committed=1*off->1*pause"


class InProcessControl:
    """The control channel's failpoint calls, answered by a real registry in this process."""

    url = "in-process"

    def __init__(self, failpoints: Failpoints) -> None:
        self.failpoints = failpoints

    def arm(self, point: str, actions: str) -> None:
        self.failpoints.arm(point, actions)

    def disarm(self, point: str) -> None:
        self.failpoints.disarm(point)

    def armed(self) -> dict[str, Any]:
        return self.failpoints.armed()

    def release(self, point: str | None = None) -> int:
        return self.failpoints.release(point)


async def reach(failpoints: Failpoints, point: str) -> tuple[asyncio.Task[None],
                                                             FailpointHit | None]:
    """The worker reaches ``point``: the task, and the hit if it paused there."""
    before = len(failpoints.hits)
    task = asyncio.create_task(failpoints.hit(point, job="job-1"))
    for _ in range(3):
        await asyncio.sleep(0)
    if task.done() or len(failpoints.hits) == before:
        return task, None
    return task, FailpointHit.from_json(failpoints.hits[-1].to_json())


def test_arming_counts_hits_across_re_arming_and_holds_a_paused_worker() -> None:
    async def scenario() -> None:
        arming = Arming()
        brk = Stop("b1", StopKind.BREAK, ("chunk.committed",), 2)
        kill = Stop("f1", StopKind.KILL, ("chunk.committed",), 3)
        arming.activate(brk, [])
        arming.set_upcoming([kill])
        plan = arming.plan_for_new_worker()
        failpoints = Failpoints("w1", merge_spec("", plan))
        worker = Worker("w1", None, InProcessControl(failpoints))  # type: ignore[arg-type]
        arming.register("w1", plan)
        arming.activate(kill, [worker])  # armed at start already: its count is not reset

        task, hit = await reach(failpoints, "chunk.committed")
        assert hit is None and task.done()
        held, hit = await reach(failpoints, "chunk.committed")
        assert hit is not None and arming.match("w1", hit) is brk

        arming.hold("w1")
        arming.spend(brk, [worker])
        step = Stop("step", StopKind.STEP, ("chunk.committed", "job.completed"), 1, only="w1")
        arming.activate(step, [worker])
        await asyncio.sleep(0)
        assert not held.done(), "a held worker must not be released by re-arming"

        arming.let_go(worker, "chunk.committed")
        await asyncio.sleep(0)
        assert held.done(), "letting go re-arms the point, which releases the worker"
        third, hit = await reach(failpoints, "chunk.committed")
        assert hit is not None and arming.match("w1", hit) is kill  # hit 3 of the process
        assert failpoints.armed()["job.completed"]["actions"] == "1*pause"
        third.cancel()

    asyncio.run(scenario())


def session_for(name: str, *breaks: str, no_faults: bool = False,
                registry: ProcessRegistry | None = None) -> DebugSession:
    console = Console(width=120)
    return DebugSession(resolve(name), seed=1,
                        registry=registry or ProcessRegistry(Path("/nonexistent")),
                        console=console, source=ScriptSource([], console),
                        breaks=[BreakSpec.parse(b, PHASES) for b in breaks],
                        no_faults=no_faults)


def test_a_break_where_a_planned_kill_strikes_is_that_kills_stop() -> None:
    same = session_for("crash-after-transcription", "chunk.committed#2")
    assert [k.stop.prompt for k in same.kills] == [True] and same.breaks == []
    other = session_for("crash-after-transcription", "chunk.committed")
    assert [k.stop.prompt for k in other.kills] == [False]
    assert [b.describe() for b in other.breaks] == ["break b1 (chunk.committed#1)"]
    default = session_for("repeated-recovery")
    assert [k.stop.prompt for k in default.kills] == [True] * len(default.kills) != []
    assert session_for("crash-after-transcription", "job.claimed", no_faults=True).kills == []


def test_a_break_on_a_point_another_fault_pauses_is_refused() -> None:
    with pytest.raises(DebugError, match="f2 pauses recovery.verified itself"):
        session_for("redis-lost-during-recovery", "recovery.verified")


def test_arrivals_and_timed_faults_are_refused_naming_the_fields() -> None:
    with pytest.raises(DebugError, match=r"workload.rate"):
        session_for("soak-quick", "job.claimed", no_faults=True)
    timed = resolve("soak-quick").model_copy(
        update={"workload": resolve("baseline").workload})
    with pytest.raises(DebugError, match=r"faults.0, faults.1, faults.2 fire by the clock"):
        DebugSession(timed, seed=1, registry=ProcessRegistry(Path("/nonexistent")),
                     console=Console(), source=ScriptSource([], Console()))
    supervised = resolve("baseline").model_copy(update={"supervise_s": 1.0})
    with pytest.raises(DebugError, match=r"\(supervise_s\)"):
        DebugSession(supervised, seed=1, registry=ProcessRegistry(Path("/nonexistent")),
                     console=Console(), source=ScriptSource([], Console()))


def test_a_run_folder_gives_its_stored_scenario_and_seed(tmp_path: Path) -> None:
    scenario = resolve("crash-at-init")
    (tmp_path / "schedule.json").write_text(json.dumps(
        {"scenario": scenario.model_dump(mode="json"), "seed": 42, "target": "reference",
         "mutant": "retry-limit-not-enforced"}))
    assert load_debug_target(str(tmp_path)) == DebugTarget(scenario, 42,
                                                           "retry-limit-not-enforced",
                                                           "reference")
    assert load_debug_target("crash-at-init") == DebugTarget(scenario)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DebugError, match="not a run folder"):
        load_debug_target(str(tmp_path / "empty"))


# -- whole sessions against the real worker (slow) -------------------------------


def history(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def run_folder(output: str) -> Path:
    """The run folder a session names on its first line."""
    marker = "run folder "
    start = output.index(marker) + len(marker)
    return Path(output[start:output.index(")", start)].strip())


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a crashlab command in a test: its own state and temp folders."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    return {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state"),
            "TMPDIR": str(tmp_path / "tmp"), **extra}


def assert_nothing_left(started: list[psutil.Process], tmp_path: Path) -> None:
    """No process of the session runs, none is registered, no temp dir or file is left."""
    assert running(started) == []
    state = tmp_path / "state"
    assert list(state.glob("procs/*.json")) == [] and list(state.glob("tempdirs/*")) == []
    assert list((tmp_path / "tmp").iterdir()) == []


def running(processes: list[psutil.Process]) -> list[str]:
    alive = []
    for proc in processes:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(" ".join(proc.cmdline()))
        except psutil.NoSuchProcess:
            continue
    return alive


class DebugProcess:
    """``crashlab debug`` fed commands through a pipe, its output read as it comes."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.tmp_path = tmp_path
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "debug", *args, "--runs",
             str(tmp_path / "runs")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=cli_env(tmp_path), cwd=ROOT)
        self.output = ""
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        """Read until ``text`` has been printed; returns the output so far."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"{text!r} never appeared; output:\n{self.output[-4000:]}")
            self.output += line
        return self.output

    def send(self, *commands: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{c}\n" for c in commands))
        self.proc.stdin.flush()

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def end(self, timeout: float = 90.0) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=timeout)
        while (line := self._lines.get(timeout=10)) is not None:
            self.output += line
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return code


def debug_cli(tmp_path: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "debug", *args, "--runs", str(tmp_path / "runs")],
        input=stdin, capture_output=True, text=True, timeout=150, cwd=ROOT, env=cli_env(tmp_path))


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_scripted_inspect_kill_restart_continue_ends_with_the_scenarios_verdict(
        tmp_path: Path) -> None:
    script = tmp_path / "session.txt"
    script.write_text("# stand where the scenario kills, look, then do it by hand\n"
                      "where\njob\nevents 5\ncalls\nkill\nrestart\ncontinue\njob\n")
    proc = debug_cli(tmp_path, "crash-after-transcription", "--break-at", "chunk.committed#2",
                     "--script", str(script), "--seed", "7")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert "Traceback" not in out + proc.stderr
    assert "stopped: w1" in out and "paused at chunk.committed" in out
    assert "planned fault f1 (kill_at_phase chunk.committed#2)" in out
    # where: the paused worker with its job, epoch and a live lease
    where = out[out.index("(crashlab) where"):out.index("(crashlab) job")]
    assert "paused" in where and "chunk.committed (f1)" in where and " ms" in where
    assert "chunk.committed#" not in where  # the chunk has its own column, not POINT#N
    # job: the record, its state index, 2 of 6 chunks committed before the kill
    job = out[out.index("(crashlab) job"):out.index("(crashlab) events")]
    assert "crashlab:state:PROCESSING" in job and "chunks: 2 committed of 6 planned" in job
    assert "chunk_committed" in out and "external calls (2 billable)" in out
    assert "SIGKILLed w1" in out and "recorded as fault f1" in out
    assert "started w1.2" in out and "every job settled" in out
    final = out[out.rindex("(crashlab) job"):]
    assert "crashlab:state:COMPLETED" in final and "chunks: 6 committed of 6" in final
    assert "verdict: valid crash-after-transcription (faults fired 1/1)" in out

    run_dir = run_folder(out)
    entries = history(run_dir)
    kill = next(e for e in entries if e["kind"] == "fault_start")
    assert (kill["fault_id"], kill["worker"], kill["chunk"]) == ("f1", "w1", 1)
    assert any(e["kind"] == "process_signal" and e["name"] == "w1" and e["signal"] == "SIGKILL"
               for e in entries)
    assert json.loads((run_dir / "results.json").read_text())["verdict"] == "valid"

    # the run folder replays: same scenario and seed, to the end without a command
    again = debug_cli(tmp_path, str(run_dir))
    assert again.returncode == 0, again.stdout[-3000:]
    assert "crash-after-transcription (seed 7" in again.stdout
    assert "verdict: valid" in again.stdout


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_step_break_sever_and_mistakes_at_the_prompt(tmp_path: Path) -> None:
    proc = debug_cli(tmp_path, "crash-after-transcription", "--no-faults", "--break-at",
                     "chunking.committed", stdin="bogus\nbreak nope\nkill w9\nstep\nstep\n"
                     "break chunk.committed#2\nsever\nheal\ncontinue\nwhere\nhelp\nfinish\n")
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    assert "Traceback" not in out + proc.stderr
    assert "unknown command 'bogus': type help for the list" in out
    assert "break: unknown failpoint 'nope'" in out and "kill: no live worker 'w9'" in out
    stops = [line.split("paused at ")[1].split(" ·")[0] for line in out.splitlines()
             if line.startswith("stopped:")]
    assert stops == ["chunking.committed", "chunk.before_request",
                     "chunk.transcribed.before_commit", "chunk.committed"]
    assert "break b2 (chunk.committed#2)" in out.split("stopped:")[-1]
    assert "break POINT[#N]" in out  # the help table, markup and all
    assert "verdict: valid" in out

    entries = history(run_folder(out))
    planned = [e for e in entries if e["kind"] == "fault_planned"]
    assert [(e["fault_id"], e["fault"]) for e in planned] == [("debug-1", "sever_redis")]
    started = [e["fault_id"] for e in entries if e["kind"] == "fault_start"]
    healed = [e["fault_id"] for e in entries if e["kind"] == "fault_heal"]
    assert started == ["debug-1"] and "debug-1" in healed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_operator_kill_is_a_recorded_fault_and_quit_leaves_nothing_running(
        tmp_path: Path) -> None:
    session = DebugProcess(tmp_path, "crash-after-transcription", "--break-at",
                           "chunk.committed")
    session.wait_for("(chunk.committed#1)\n")
    started = session.descendants()
    assert any("system_under_test" in " ".join(p.cmdline()) for p in started)
    session.send("kill", "where", "quit")
    code = session.end()
    out = session.output
    assert "recorded as fault debug-1" in out and "exited -9" in out
    assert "not checking expect.retry_count: the session added debug-1" in out
    assert code == 1 and "verdict: invalid" in out  # quit before the job could finish
    assert_nothing_left(started, tmp_path)

    entries = history(run_folder(out))
    kinds = [(e["kind"], e.get("fault_id")) for e in entries if e.get("fault_id")]
    assert kinds[:3] == [("fault_planned", "debug-1"), ("fault_start", "debug-1"),
                         ("fault_heal", "debug-1")]
    assert any(e["kind"] == "run_end" and "quit" in e["reason"] for e in entries)


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("when", ["at the prompt", "while running"])
def test_ctrl_c_stops_everything(tmp_path: Path, when: str) -> None:
    if when == "at the prompt":
        session = DebugProcess(tmp_path, "crash-after-transcription")
        session.wait_for("stopped: w1")
    else:
        scenario = tmp_path / "long.yaml"
        scenario.write_text("name: long\ndescription: a job long enough to interrupt\n"
                            "workload: {media_seconds: 40}\n")
        session = DebugProcess(tmp_path, str(scenario))
        session.wait_for("running;")
        time.sleep(1.0)
    started = session.descendants()
    assert any("system_under_test worker" in " ".join(p.cmdline()) for p in started)
    session.proc.send_signal(signal.SIGINT)
    assert session.end() == 130, session.output[-3000:]
    assert_nothing_left(started, tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_terminal_session_through_tmux(tmp_path: Path) -> None:
    tmux = shutil.which("tmux")
    assert tmux is not None, "tmux is missing: scripts/setup.sh installs it"
    socket, name = f"crashlab-test-{os.getpid()}", "debug"
    state = tmp_path / "state"

    # the tmux server passes its environment on; a stale COLUMNS would pin rich to it
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}

    def tmux_run(*args: str) -> str:
        return subprocess.run([tmux, "-L", socket, *args], capture_output=True, text=True,
                              check=True, timeout=10, env=env).stdout

    def screen() -> str:
        return tmux_run("capture-pane", "-p", "-t", name, "-S", "-200")

    def wait_screen(text: str, timeout: float = 60.0, count: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while (shown := screen()).count(text) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"{text!r} never showed (x{count}); screen:\n{shown}")
            time.sleep(0.2)
        return shown

    (tmp_path / "tmp").mkdir()
    command = (f"cd {ROOT} && CRASHLAB_STATE_DIR={state} TMPDIR={tmp_path / 'tmp'} "
               f"{sys.executable} -m harness.cli "
               f"debug crash-after-transcription --break-at chunk.committed#2 "
               f"--runs {tmp_path / 'runs'}; echo EXIT=$?; sleep 60")
    tmux_run("new-session", "-d", "-s", name, "-x", "200", "-y", "60", command)
    try:
        wait_screen("(crashlab)")  # capture-pane drops the prompt's trailing space
        pid = int(tmux_run("display-message", "-p", "-t", name, "#{pane_pid}").strip())
        started = psutil.Process(pid).children(recursive=True)
        tmux_run("send-keys", "-t", name, "where", "Enter")
        shown = wait_screen("lease")
        assert "paused" in shown and "chunk.committed (f1)" in shown
        tmux_run("send-keys", "-t", name, "Up", "Enter")  # readline: the last command again
        wait_screen("workers", count=2)
        tmux_run("send-keys", "-t", name, "help", "Enter")
        wait_screen("restart [WORKER]")
        tmux_run("send-keys", "-t", name, "kill", "Enter")
        wait_screen("recorded as fault f1")
        tmux_run("send-keys", "-t", name, "restart", "Enter")
        wait_screen("started w1.2")
        tmux_run("send-keys", "-t", name, "c", "Enter")
        wait_screen("every job settled")
        tmux_run("send-keys", "-t", name, "c", "Enter")
        shown = wait_screen("EXIT=", timeout=90)
        assert "verdict: valid crash-after-transcription" in shown and "EXIT=0" in shown
        assert_nothing_left(started, tmp_path)  # the shell's `sleep` starts after these
        # kept for the next session (readline keeps one of two equal lines in a row)
        assert (state / "debug_history").read_text().split() == [
            "where", "help", "kill", "restart", "c"]
    finally:
        subprocess.run([tmux, "-L", socket, "kill-session", "-t", name], capture_output=True,
                       timeout=10)


def held_until_enter(tmp_path: Path, *args: str) -> tuple[str, str, int]:
    """Run ``crashlab ARGS --keep-on-failure`` until it waits for Enter; check that what it
    prints reaches the kept services; press Enter; check that everything is gone.
    Returns what it printed before and after Enter, and its exit code."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args, "--keep-on-failure",
         "--runs", str(tmp_path / "runs")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=cli_env(tmp_path, COLUMNS="300"), cwd=ROOT)
    assert proc.stdout is not None and proc.stdin is not None
    seen = ""
    deadline = time.monotonic() + 90
    while "Press Enter" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "Press Enter" in seen, seen
    port = int(seen.split("redis-cli -p ")[1].split()[0])
    # no retries: once the run is over, the refused connection must show at once
    client = redis.Redis(port=port, decode_responses=True, retry=Retry(NoBackoff(), 0))
    assert client.ping() and client.keys("crashlab:job:*")
    logs = [Path(path) for path in re.findall(r"(/\S+\.log)\b", seen)]
    assert len(logs) >= 3 and all(log.is_file() for log in logs), logs  # api and workers
    started = psutil.Process(proc.pid).children(recursive=True)
    assert any("redis-server" in " ".join(p.cmdline()) for p in started)
    proc.stdin.write("\n")
    proc.stdin.flush()
    rest, _ = proc.communicate(timeout=60)
    assert_nothing_left(started, tmp_path)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    return seen, rest, proc.returncode


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_keep_on_failure_keeps_services_up_until_enter(tmp_path: Path) -> None:
    seen, rest, code = held_until_enter(tmp_path, "run", "crash-after-transcription",
                                        "--mutant", "retry-counter-not-incremented",
                                        "--no-report")
    assert code == 1 and "invalid" in rest, seen + rest
    assert "invariant violated" in seen and "retry_accounting" in seen
    [run_dir] = (tmp_path / "runs").glob("*-crash-after-transcription")
    assert f"crashlab debug {run_dir}" in seen and str(run_dir / "logs" / "w1.log") in seen

    # replay runs the stored schedule (planted bug included) and holds the same way
    seen, rest, code = held_until_enter(tmp_path, "replay", str(run_dir))
    assert code == 1 and "invalid" in rest, seen + rest
    assert "retry_accounting" in seen and f"crashlab debug {run_dir}" not in seen

    # so does debug: the end of its (no) commands runs on as `run` does, to the same failure
    debugged = debug_cli(tmp_path, str(run_dir))
    assert debugged.returncode == 1, debugged.stdout[-3000:] + debugged.stderr[-2000:]
    assert "planted bug retry-counter-not-incremented" in debugged.stdout
    assert "retry_accounting" in debugged.stdout and "verdict: invalid" in debugged.stdout
