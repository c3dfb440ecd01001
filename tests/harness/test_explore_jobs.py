"""``crashlab explore --jobs N``: explorers side by side, each in its own environment.

Real children (the CLI as a program), each with its own redis-server,
toxiproxy-server, services and workers; a real planted bug; a real SIGINT.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import scenarios
from harness.explore.explorers import Explorer, ParallelExploration, merge, search_seed, shares
from harness.procs import ManagedProcess

CRASHLAB = str(Path(sys.executable).parent / "crashlab")
# the catalog's baseline as a file: a target given as module:attr has no catalog of its own
BASELINE = str(Path(scenarios.__file__).parent / "baseline.yaml")
FACTORY = '''
from harness.packs.reference.mutants import mutant_target


def planted():
    return mutant_target("resume-offset-off-by-one")
'''


def test_the_examples_are_shared_out_and_each_explorer_searches_apart() -> None:
    assert shares(50, 2) == [25, 25] and shares(7, 3) == [3, 2, 2] and shares(2, 4) == [1, 1]
    assert search_seed(5, 0) == 5  # --jobs 1 searches as a plain explore
    assert len({search_seed(5, k) for k in range(8)}) == 8


def test_the_merged_summary_reports_the_failure_the_stop_file_names(tmp_path: Path) -> None:
    def explorer(index: int, summary: dict[str, Any]) -> Explorer:
        process = ManagedProcess(f"explorer-{index}", ["true"], log_path=tmp_path / "x.log")
        return Explorer(index, 10, search_seed(1, index), tmp_path, process, 0, summary)

    quick = {"examples": 4, "inconclusive": 1, "failing_examples": 2, "verdict": "invalid",
             "seconds_to_first_failure": 3.0, "counterexample": {"run_dir": "a"}}
    claimed = {"examples": 9, "inconclusive": 0, "failing_examples": 5, "verdict": "invalid",
               "seconds_to_first_failure": 5.0, "counterexample": {"run_dir": "b"}}
    request = ParallelExploration("baseline", 20, 2, 1, tmp_path,
                                  explorers=[explorer(0, quick), explorer(1, claimed)])
    merged = merge(request, tmp_path, 30.0, claimed=1)
    assert (merged["examples"], merged["inconclusive"], merged["failing_examples"]) == (13, 1, 7)
    assert merged["found_by"] == 1 and merged["counterexample"] == {"run_dir": "b"}
    assert merged["schedules_per_minute"] == 26.0 and merged["verdict"] == "invalid"
    # no claim (an explorer that found one died before claiming): the quickest one
    assert merge(request, tmp_path, 30.0, claimed=None)["found_by"] == 0


def run(tmp_path: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state"),
           "PYTHONPATH": str(tmp_path)}
    return subprocess.run([CRASHLAB, "explore", BASELINE, "--runs", str(tmp_path / "runs"),
                           "--json", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=tmp_path)


def redis_port(folder: str) -> int:
    (conf,) = Path(folder).glob("session/redis/redis.conf")
    found = re.search(r"^port (\d+)", conf.read_text(), re.MULTILINE)
    assert found is not None
    return int(found.group(1))


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_two_explorers_run_in_their_own_environments_and_their_examples_add_up(
        tmp_path: Path) -> None:
    done = run(tmp_path, "--jobs", "2", "--examples", "4", "--seed", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["jobs"] == 2 and summary["verdict"] == "valid"
    explorers = summary["explorers"]
    assert [e["exit_code"] for e in explorers] == [0, 0]
    assert [e["examples"] for e in explorers] == [2, 2] and summary["examples"] == 4
    assert explorers[0]["search_seed"] != explorers[1]["search_seed"]
    # each its own folder, its own session, its own Redis on its own port
    folders = [e["folder"] for e in explorers]
    assert len(set(folders)) == 2 and all(f.startswith(summary["folder"]) for f in folders)
    assert redis_port(folders[0]) != redis_port(folders[1])
    assert "[0] " in done.stderr and "[1] " in done.stderr  # each one's progress, relayed
    stored = json.loads((Path(summary["folder"]) / "exploration.json").read_text())
    assert stored["examples"] == 4


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_the_first_failure_found_stops_the_other_explorer_and_is_shrunk_and_reported(
        tmp_path: Path) -> None:
    (tmp_path / "planted_bug.py").write_text(FACTORY)
    done = run(tmp_path, "--jobs", "2", "--examples", "200", "--seed", "3", "--max-workers",
               "1", "--target", "planted_bug:planted")
    assert done.returncode == 1, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    assert summary["verdict"] == "invalid"
    finder = summary["explorers"][summary["found_by"]]
    other = summary["explorers"][1 - summary["found_by"]]
    assert finder["verdict"] == "invalid"
    # the other one ended at its next example, far short of its hundred
    assert other["stopped"] == "stopped: another explorer found a failure first"
    assert other["examples"] < other["share"]
    counter = summary["counterexample"]
    assert counter["run_dir"].startswith(finder["folder"])
    assert counter["replay"] == f"crashlab replay {counter['run_dir']}"
    assert (Path(counter["run_dir"]) / "counterexample.json").is_file()
    assert (Path(counter["run_dir"]) / "report.html").is_file()  # written once, by the parent
    assert (tmp_path / "runs" / "latest").resolve() == Path(counter["run_dir"]).resolve()


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_every_explorer_and_leaves_no_process_behind(
        tmp_path: Path, signum: signal.Signals) -> None:
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")}
    output = tmp_path / "explore.log"
    with output.open("wb") as sink:
        parent = subprocess.Popen([CRASHLAB, "explore", "baseline", "--jobs", "2", "--examples",
                                   "400", "--runs", str(tmp_path / "runs")], env=env,
                                  cwd=tmp_path, stdout=sink, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    procs = tmp_path / "state" / "procs"
    seen: dict[int, float] = {}
    deadline = time.monotonic() + 300
    try:
        # until both explorers have run an example: their whole environments are up
        while time.monotonic() < deadline:
            logs = list((tmp_path / "runs").glob("*-explore-baseline/logs/explorer-*.log"))
            if len(logs) == 2 and all("example" in log.read_text() for log in logs):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the explorers did not get going")
        for entry in procs.glob("*.json"):
            data = json.loads(entry.read_text())
            seen[data["pid"]] = data["create_time"]
        assert len(seen) >= 2 + 2 * 3  # two explorers, and each one's Redis, proxy, service...
        os.killpg(parent.pid, signum)  # SIGINT: what a terminal's Ctrl-C does
        parent.wait(timeout=180)
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)
            parent.wait()
    alive = [pid for pid, created in seen.items() if _alive(pid, created)]
    assert alive == [], (alive, output.read_text())
    assert parent.returncode != 0  # interrupted, as a Ctrl-C'd command is
    assert list(procs.glob("*.json")) == []  # every child was reaped and unregistered
    (summary,) = (tmp_path / "runs").glob("*-explore-baseline/exploration.json")
    assert json.loads(summary.read_text())["jobs"] == 2  # what they did is summed up


def _alive(pid: int, created: float) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and abs(proc.create_time() - created) < 0.01
    except psutil.NoSuchProcess:
        return False
