"""The run's supervisor against real arq workers, which exit when they lose Redis: each
one that failed by itself is started again after ``supervise_s``; one the harness
killed is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checkers.base import Verdict
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import parse_scenario

SCENARIO = """\
name: supervised
description: a Redis cut that makes every arq worker exit, then a kill without a replacement
target: arq
workload: {kind: task, rate: 2, duration_s: 8, work_ms: 200, max_retries: 2}
workers: 2
settings: {job_timeout: 2, max_tries: 3, poll_delay: 0.1}
faults:
  - {kind: sever_redis, at_s: 1, duration_ms: 1000}
  - {kind: kill_random, at_s: 5, max_delay_ms: 0, restart: false}
time_limit_s: 8
supervise_s: 0.5
timeout_s: 90
"""


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_workers_that_fail_by_themselves_are_restarted_and_killed_ones_are_not(
        tmp_path: Path, registry: ProcessRegistry) -> None:
    from harness.packs.arq.target import ArqTarget

    scenario = parse_scenario(SCENARIO, "supervised.yaml")
    result = run_scenario(scenario, seed=5, registry=registry, runs_root=tmp_path,
                          target=ArqTarget())
    history = [json.loads(line) for line in
               (result.run_dir / "history.jsonl").read_text().splitlines()]
    exits = {e["name"]: e for e in history if e["kind"] == "process_exit"}
    restarts = [e for e in history if e["kind"] == "supervisor_restart"]
    cut = next(e for e in history if e["kind"] == "fault_start" and e["fault_id"] == "f1")
    kill = next(e for e in history if e["kind"] == "fault_start" and e["fault_id"] == "f2")
    # the cut makes arq's workers exit with an error (code 1): each is started again,
    # as its next incarnation, no sooner than supervise_s after its exit
    failed = [name for name, e in exits.items() if e["code"] > 0 and e["ts"] < kill["ts"]]
    assert failed and all(exits[name]["ts"] > cut["ts"] for name in failed)
    assert {r["replaces"] for r in restarts} >= set(failed)
    started = {e["name"]: e for e in history if e["kind"] == "process_start"}
    for restart in restarts:
        gone = exits[restart["replaces"]]
        assert restart["code"] == gone["code"] > 0 and restart["delay_s"] == 0.5
        assert restart["name"].split(".")[0] == restart["replaces"].split(".")[0]
        assert started[restart["name"]]["ts"] >= gone["ts"] + 0.5
    # the worker the harness killed (SIGKILL, no replacement asked) is left alone
    victim = kill["worker"]
    assert exits[victim]["code"] < 0 and victim not in {r["replaces"] for r in restarts}
    # the restarted workers did the work that arrived after the cut
    restarted = {r["name"] for r in restarts}
    assert any(e["kind"] == "effect" and e.get("worker") in restarted for e in history)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks
                                             if c.verdict is not Verdict.VALID]
