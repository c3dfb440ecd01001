"""s3_toxic: latency on the workers' S3 connections."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.checkers.base import Verdict
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import resolve


def entries(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_slow_s3_slows_the_parts_sent_meanwhile_and_changes_nothing_else(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-latency"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    start = next(e for e in history if e["kind"] == "fault_start")
    heal = next(e for e in history if e["kind"] == "fault_heal")
    assert (start["fault"], start["cut"]) == ("s3_toxic", ["w1"])
    calls = [e for e in history if e["kind"] == "s3_call" and e["operation"] == "UploadPart"]
    during = [e for e in calls if start["ts"] <= e["call_ts"] <= heal["ts"]]
    # the worker was released into the toxic: its next part went through it
    assert during and during[0]["part"] == 2
    assert [e["part"] for e in calls] == list(range(1, 11))  # each part sent once
