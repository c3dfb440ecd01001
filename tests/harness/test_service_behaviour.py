"""The scenario's service block: a transcription service that ignores idempotency keys,
or has no status endpoint, and what the worker must then do itself."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.packs.reference.mutants import Mutant, Patch, materialize
from harness.packs.reference.target import ReferenceTarget
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import parse_scenario, resolve
from harness.service_behaviour import check_service


def calls(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "external_call"]


def billed(run_dir: Path) -> Counter[int]:
    return Counter(c["chunk_index"] for c in calls(run_dir) if c["outcome"] == "new")


def test_the_service_block_is_validated_naming_its_field() -> None:
    scenario = parse_scenario("name: x\ndescription: d\nservice: {idempotency_keys: ignored, "
                              "status_endpoint: false, latency_median_ms: 5}\n", "x.yaml")
    assert scenario.service.has_behaviour and scenario.service.has_latency
    with pytest.raises(ScenarioError, match=r"service.idempotency_keys: Input should be "
                                            r"'honoured' or 'ignored'"):
        parse_scenario("name: x\ndescription: d\nservice: {idempotency_keys: maybe}\n",
                       "x.yaml")


def test_a_target_whose_service_cannot_ignore_keys_refuses_the_scenario() -> None:
    scenario = parse_scenario("name: x\ndescription: d\nworkload: {kind: task}\n"
                              "service: {idempotency_keys: ignored}\n", "x.yaml")
    with pytest.raises(ScenarioError, match=r"service.idempotency_keys: rq's external service"):
        check_service(scenario, load_target("rq"))


def test_with_keys_ignored_the_status_check_keeps_each_chunk_billed_once(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("service-ignores-idempotency"), seed=4, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    assert set(billed(result.run_dir).values()) == {1}
    # the chunk the service answered before the kill was asked about, not sent again
    asked = [c for c in calls(result.run_dir) if c["outcome"] == "status"]
    assert asked and asked[0]["chunk_index"] == 2 and asked[0]["text"]


def test_a_worker_that_skips_the_status_check_is_caught_when_keys_are_ignored(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    """The planted bug the scenario is for; with keys honoured the service would hide it
    (``crashlab mutants`` explores ``baseline``, whose service honours keys, so it is not
    among the shipped mutants)."""
    skip = Mutant("redo-without-status-check", "sends a chunk again without asking",
                  "service-ignores-idempotency",
                  (Patch("pipeline.py", "        if claim.epoch > 1:\n", "        if False:\n"),))
    planted = ReferenceTarget(pythonpath=materialize(skip, tmp_path / "mutant"))
    result = run_scenario(resolve("service-ignores-idempotency"), seed=4, registry=registry,
                          runs_root=tmp_path, target=planted)
    verdicts = {c.checker: c.verdict for c in result.checks}
    assert verdicts["external_work_per_chunk"] is Verdict.INVALID
    assert billed(result.run_dir)[2] == 2
    honoured = run_scenario(resolve("service-answered-before-crash"), seed=4,
                            registry=registry, runs_root=tmp_path, target=planted)
    assert honoured.verdict is Verdict.VALID  # the keys hide the bug


def test_a_job_released_by_a_stop_is_not_billed_again_by_its_next_worker(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    """The stop falls after the service answered and before the commit: the job goes back
    to the queue, and its next (fresh) claim must ask the service too."""
    scenario = parse_scenario(
        "name: stop-ignored\ndescription: d\nworkload: {media_seconds: 5}\n"
        "service: {idempotency_keys: ignored}\nfaults:\n"
        "  - {kind: stop, point: chunk.transcribed.before_commit, occurrence: 2, "
        "grace_ms: 10000}\nexpect: {retry_count: 0}\n", "stop-ignored.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    assert set(billed(result.run_dir).values()) == {1}


def test_without_a_status_endpoint_a_redo_is_billed_again_and_only_a_relaxed_bound_holds(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    text = ("name: no-status\ndescription: d\nworkload: {media_seconds: 4}\n"
            "service: {idempotency_keys: ignored, status_endpoint: false}\nfaults:\n"
            "  - {kind: kill_at_phase, point: chunk.transcribed.before_commit, occurrence: 3}\n")
    strict = run_scenario(parse_scenario(text, "no-status.yaml"), seed=1, registry=registry,
                          runs_root=tmp_path)
    verdicts = {c.checker: c.verdict for c in strict.checks}
    assert verdicts["external_work_per_chunk"] is Verdict.INVALID
    assert billed(strict.run_dir)[2] == 2
    assert {c["status_code"] for c in calls(strict.run_dir) if c["outcome"] == "status"} == {404}
    relaxed = run_scenario(parse_scenario(text + "expect: {idempotency_keys_honoured: false}\n",
                                          "no-status.yaml"), seed=1, registry=registry,
                           runs_root=tmp_path)
    assert relaxed.verdict is Verdict.VALID, [c.witness for c in relaxed.checks if not c.ok]
