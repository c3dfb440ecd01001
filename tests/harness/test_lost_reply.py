"""lost_reply: Redis applies the worker's next command and its reply never arrives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.faults.lost_reply import LostReplySpec
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import parse_scenario, resolve


def entries(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_a_lost_commit_reply_is_retried_and_the_chunk_counted_once(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("lost-reply-during-commit"), seed=3, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    hit = next(e for e in history if e["kind"] == "failpoint_hit")
    lost = next(e for e in history if e["kind"] == "fault_start")
    healed = next(e for e in history if e["kind"] == "fault_heal")
    assert hit["index"] < lost["index"] < healed["index"]
    assert (lost["fault"], lost["worker"], lost["cut"], lost["chunk"]) == (
        "lost_reply", "w1", ["w1"], 1)
    assert lost["dropped_bytes"] > 0  # Redis answered, and the answer was dropped
    # the applied command: chunk 1 committed once, by w1, at its epoch
    commits = [e for e in history if e["kind"] == "sut_event"
               and e["event"] == "chunk_committed" and e["data"]["chunk"] == 1]
    assert len(commits) == 1 and commits[0]["worker_id"] == "w1"
    # the retry: the same commit again, which found the chunk there and changed nothing
    retried = [e for e in history if e["kind"] == "retried_write"]
    assert [(e["op"], e["item"], e["worker_id"], int(e["epoch"])) for e in retried] == [
        ("commit_chunk", "1", "w1", commits[0]["epoch"])]
    assert int(retried[0]["ts_ms"]) >= commits[0]["ts_ms"]
    state = json.loads((result.run_dir / "state.json").read_text())
    job = next(iter(state["jobs"].values()))
    assert job["chunks_done"] == job["chunk_count"] == len(job["committed_chunks"])


def test_a_point_no_worker_reaches_again_skips_the_fault(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    scenario = parse_scenario(
        "name: never\ndescription: the second claim of a one-job run never comes\n"
        "workload: {media_seconds: 2}\nphase_timeout_s: 5\n"
        "faults:\n  - {kind: lost_reply, point: job.claimed, occurrence: 2}\n", "never.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.faults_fired == 0 and result.verdict is Verdict.UNKNOWN
    assert not [e for e in entries(result.run_dir) if e["kind"] == "fault_start"]


def test_the_api_cannot_be_the_worker_that_loses_a_reply() -> None:
    with pytest.raises(ScenarioError, match=r"faults.0.lost_reply.workers: .*API has no "):
        parse_scenario("name: x\ndescription: d\nfaults:\n  - {kind: lost_reply, "
                       "point: chunk.committed, workers: [api]}\n", "x.yaml")


def test_exploration_draws_lost_replies_at_the_points_a_worker_reaches() -> None:
    from hypothesis import find, settings

    from harness.explore.strategies import schedules
    from harness.packs.reference.explore import vocabulary
    from harness.packs.reference.target import PHASES

    vocab = vocabulary(frozenset(p for p in PHASES if p.startswith("chunk.")),
                       frozenset(p for p in PHASES if p.startswith("recovery.")))
    found = find(schedules(list(PHASES), chunks=3, vocabulary=vocab),
                 lambda s: any(f.kind == "lost_reply" for f in s.faults),
                 settings=settings(max_examples=2000, database=None))
    lost = next(f for f in found.faults if f.kind == "lost_reply")
    assert isinstance(lost, LostReplySpec) and lost.point in PHASES and lost.occurrence >= 1
