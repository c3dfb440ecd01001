"""sever_s3: the workers' way to S3 is cut for a while, Redis stays."""

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


def test_a_cut_longer_than_botocores_retries_delays_the_part_without_a_takeover(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("upload-s3-severed"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    history = entries(result.run_dir)
    start = next(e for e in history if e["kind"] == "fault_start")
    heal = next(e for e in history if e["kind"] == "fault_heal")
    assert (start["fault"], start["cut"], start["worker"], start["part"]) == (
        "sever_s3", ["w1"], "w1", 3)
    assert heal["ts"] - start["ts"] >= 4.0
    # nothing of part 3 reached S3 during the cut; once healed it went through once
    part3 = [e for e in history if e["kind"] == "s3_call" and e["operation"] == "UploadPart"
             and e["part"] == 3]
    assert [(e["status"], e["call_ts"] >= heal["ts"] - 0.5) for e in part3] == [(200, True)]
    assert not [e for e in history if e["kind"] == "sut_event"
                and e["event"] == "recovery_started"]  # the lease was kept
