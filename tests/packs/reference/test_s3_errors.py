"""s3_errors: S3 answers 503 SlowDown or 500 InternalError, through the S3 gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import parse_scenario, resolve


def entries(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_slowdown_past_botocores_own_retries_delays_the_upload_and_does_not_fail_it(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-slowdown"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    start = next(e for e in history if e["kind"] == "fault_start")
    heal = next(e for e in history if e["kind"] == "fault_heal")
    assert (start["fault"], start["worker"], heal["refused"]) == ("s3_errors", "w1", 8)
    part2 = [(e["status"], e["refused"]) for e in history if e["kind"] == "s3_call"
             and e["operation"] == "UploadPart" and e["part"] == 2]
    # eight refusals (more than botocore's five tries), then the part went through once
    assert part2 == [(503, True)] * 8 + [(200, False)]
    assert not [e for e in history if e["kind"] == "s3_call" and e["refused"]
                and e["operation"] != "UploadPart"]
    state = json.loads((result.run_dir / "state.json").read_text())
    assert [job["state"] for job in state["jobs"].values()] == ["COMPLETED"]


def test_errors_at_a_point_never_reached_do_not_fire(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    scenario = parse_scenario(
        "name: never\ndescription: a one-part upload has no second part\n"
        "workload: {kind: upload, size_bytes: 1000}\nphase_timeout_s: 5\n"
        "faults:\n  - {kind: s3_errors, point: upload.part.before_upload, occurrence: 2}\n",
        "never.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.faults_fired == 0 and result.verdict is Verdict.UNKNOWN
    assert not [e for e in entries(result.run_dir) if e["kind"] == "s3_call" and e["refused"]]


def test_only_the_statuses_s3_answers_are_accepted() -> None:
    with pytest.raises(ScenarioError, match=r"faults.0.s3_errors.status"):
        parse_scenario("name: x\ndescription: d\nworkload: {kind: upload}\nfaults:\n"
                       "  - {kind: s3_errors, status: 404}\n", "x.yaml")
