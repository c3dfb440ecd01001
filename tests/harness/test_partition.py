"""Partial partitions: one worker cut off from Redis while the others keep it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.faults.sever_redis import SeverRedisSpec
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import parse_scenario, resolve


def entries(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_the_survivor_takes_over_from_a_cut_off_worker_that_still_runs(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("partition-one-worker"), seed=2, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    cut = next(e for e in history if e["kind"] == "fault_start")
    healed = next(e for e in history if e["kind"] == "fault_heal")
    assert (cut["cut"], cut["worker"]) == (["w1"], "w1")  # the history names who was cut
    events = [e for e in history if e["kind"] == "sut_event"]
    takeover = next(e for e in events if e["event"] == "recovery_started")
    assert (takeover["worker_id"], takeover["data"]["previous_worker"]) == ("w2", "w1")
    # during the cut: w2 took the job over and went on committing, w1 wrote nothing
    during = [e for e in events if cut["ts"] * 1000 <= e["ts_ms"] <= healed["ts"] * 1000]
    assert {e["worker_id"] for e in during} == {"w2"}
    assert any(e["event"] == "chunk_committed" for e in during)
    # w1's process ran through the takeover: it exits only when the run stops it
    w1_exit = next(e for e in history if e["kind"] == "process_exit" and e["name"] == "w1")
    assert w1_exit["index"] > healed["index"]
    assert not [e for e in history if e["kind"] == "process_signal" and e["name"] == "w1"
                and e["signal"] == "SIGKILL"]


def test_a_fault_may_name_only_the_scenarios_workers_and_the_api() -> None:
    with pytest.raises(ScenarioError, match=r"faults.0.workers: no worker 'w3'.*api, w1, w2"):
        parse_scenario("name: x\ndescription: d\nworkers: 2\nfaults:\n"
                       "  - {kind: redis_toxic, toxic: latency, workers: [w3]}\n", "x.yaml")
    with pytest.raises(ScenarioError, match="needs a worker among workers"):
        parse_scenario("name: x\ndescription: d\nfaults:\n"
                       "  - {kind: sever_redis, point: job.claimed, workers: [api]}\n", "x.yaml")
    ok = parse_scenario("name: x\ndescription: d\ninitial_workers: 3\nfaults:\n"
                        "  - {kind: sever_redis, workers: [w3, api]}\n", "x.yaml")
    spec = ok.faults[0]
    assert isinstance(spec, SeverRedisSpec) and spec.workers == ["w3", "api"]


def test_a_toxic_on_one_worker_leaves_the_others_their_redis(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    scenario = parse_scenario(
        "name: reset-one\ndescription: w2's connections are reset, w1's are not\n"
        "workload: {jobs: 2, media_seconds: 2}\nworkers: 2\nfaults:\n"
        "  - {kind: redis_toxic, toxic: reset_peer, duration_ms: 60000, workers: [w2]}\n",
        "reset-one.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    assert next(e for e in history if e["kind"] == "fault_start")["cut"] == ["w2"]
    # every reply to w2 was reset (its commands were applied, as with a lost reply: a job
    # it claimed is taken over by w1 once the lease runs out); w1 never saw a Redis error
    logs = {name: (result.run_dir / "logs" / f"{name}.log").read_text() for name in ("w1", "w2")}
    assert "redis unavailable" in logs["w2"] or "lost Redis" in logs["w2"]
    assert "redis unavailable" not in logs["w1"] and "lost Redis" not in logs["w1"]


def test_a_drawn_cut_of_one_worker_is_a_valid_scenario_and_replays_as_it_ran(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    # what `explore --workloads` draws and shrinks to for "one worker cut off at a chunk
    # commit for longer than the exploration's lease (600 ms)"
    # (tests/harness/test_explore_draws.py finds it among the draws)
    from harness.explore.explorer import example_scenario, exploring
    from harness.explore.strategies import Schedule
    from harness.explore.workloads import DrawnWorkload, Example
    from harness.packs.reference.target import ReferenceTarget
    from harness.runner import SCHEDULE_FILE
    from harness.scenario import Scenario, ServiceSpec, Workload

    base = resolve("baseline")
    plan = exploring(ReferenceTarget(), base)
    work = Workload.model_validate({"max_retries": 1, "media_seconds_per_job": [1.0, 1.0]})
    cut = SeverRedisSpec(kind="sever_redis", point="chunk.committed", workers=["w1"],
                         duration_ms=1000)
    example = Example(DrawnWorkload(work, (1, 1), {"chunk_concurrency": "1",
                                                   "concurrency": "1"}, service=ServiceSpec()),
                      Schedule(workers=2, faults=(cut,)))
    assert example.schedule.partial() == [cut]
    scenario = example_scenario(base, example, plan, "baseline-x1")
    first = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path / "run")
    assert first.verdict is Verdict.VALID, [c.witness for c in first.checks if not c.ok]
    start = next(e for e in entries(first.run_dir) if e["kind"] == "fault_start")
    assert start["cut"] == ["w1"] and start["worker"] == "w1"
    # what `crashlab replay` runs: the scenario the run folder stored, with its workers
    stored = json.loads((first.run_dir / SCHEDULE_FILE).read_text())
    again = Scenario.model_validate(stored["scenario"])
    assert again.faults == scenario.faults and again.workload == scenario.workload
    replayed = run_scenario(again, seed=stored["seed"], registry=registry,
                            runs_root=tmp_path / "replay")
    assert replayed.verdict is Verdict.VALID
    assert next(e for e in entries(replayed.run_dir) if e["kind"] == "fault_start")["cut"] \
        == ["w1"]
