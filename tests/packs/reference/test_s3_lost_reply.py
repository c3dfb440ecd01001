"""s3_lost_reply: S3 stores a part and its answer never reaches the worker."""

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


def test_a_part_whose_answer_is_lost_is_sent_again_and_checkpointed_once(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-lost-reply"), seed=2, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    lost = next(e for e in history if e["kind"] == "fault_start")
    assert (lost["fault"], lost["worker"], lost["cut"], lost["part"]) == (
        "s3_lost_reply", "w1", ["w1"], 2)
    assert lost["dropped_bytes"] > 100  # S3's whole answer, not only the 100 Continue
    # S3 stored part 2 and answered (the answer lost), then the worker's retry: both 200
    part2 = [(e["status"], e["refused"]) for e in history if e["kind"] == "s3_call"
             and e["operation"] == "UploadPart" and e["part"] == 2]
    assert part2 == [(200, False), (200, False)]
    committed = [e["data"]["part"] for e in history
                 if e["kind"] == "sut_event" and e["event"] == "part_committed"]
    assert committed == [1, 2, 3, 4, 5]
    assert {c.checker: c.verdict for c in result.checks}["upload_byte_exact"] is Verdict.VALID


def test_a_create_sent_twice_after_a_lost_answer_leaves_no_upload_in_progress(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-lost-create-reply"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    lost = next(e for e in history if e["kind"] == "fault_start")
    assert (lost["fault"], lost["worker"], lost["part"]) == ("s3_lost_reply", "w1", None)
    ops = [e["operation"] for e in history if e["kind"] == "s3_call"]
    # the listing before it passed untouched; S3 made two uploads, the worker aborted one
    assert ops[:3] == ["ListMultipartUploads", "CreateMultipartUpload",
                       "CreateMultipartUpload"]
    assert ops.count("AbortMultipartUpload") == 1
    pending = next(e for e in history if e["kind"] == "s3_uploads")
    assert pending["uploads"] == []


def test_a_completion_whose_answer_is_lost_completes_the_job_once(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-lost-complete-reply"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    assert next(e for e in history if e["kind"] == "fault_start")["dropped_bytes"] > 0
    ops = [e["operation"] for e in history if e["kind"] == "s3_call"]
    assert ops.count("CompleteMultipartUpload") == 2
    done = [e for e in history if e["kind"] == "sut_event" and e["event"] == "job_completed"]
    assert len(done) == 1


def test_an_s3_fault_outside_an_upload_workload_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"s3_lost_reply acts on the traffic of upload "
                                            r"jobs; give the scenario workload: \{kind: upload\}"):
        parse_scenario("name: x\ndescription: d\nfaults:\n  - {kind: s3_lost_reply}\n",
                       "x.yaml")


def test_an_operation_s3_does_not_have_is_refused() -> None:
    with pytest.raises(ScenarioError, match=r"faults.0.s3_lost_reply.operation"):
        parse_scenario("name: x\ndescription: d\nworkload: {kind: upload}\nfaults:\n"
                       "  - {kind: s3_lost_reply, operation: CopyObject}\n", "x.yaml")


def test_the_api_is_not_a_worker_that_talks_to_s3() -> None:
    with pytest.raises(ScenarioError, match="the API does not talk to S3"):
        parse_scenario("name: x\ndescription: d\nworkload: {kind: upload}\nfaults:\n"
                       "  - {kind: s3_lost_reply, workers: [api]}\n", "x.yaml")
