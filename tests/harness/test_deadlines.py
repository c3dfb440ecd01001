"""Deadlines: a job whose deadline passes while it still waits in the queue is timed out there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.checkers.base import Verdict
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import resolve


def sut_events(run_dir: Path) -> list[dict[str, Any]]:
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["kind"] == "sut_event"]


def test_the_catalog_has_a_deadline_that_passes_while_the_job_is_queued() -> None:
    scenario = resolve("deadline-passes-while-queued")
    work = scenario.workload
    deadlines = [work.timeout_of(i) for i in range(work.jobs)]
    # only a job behind every worker's first one has a deadline
    assert deadlines[:scenario.workers] == [None] * scenario.workers
    assert any(d is not None for d in deadlines[scenario.workers:])
    assert "TIMED_OUT" in scenario.expect.terminal_states


def test_a_deadline_that_passes_while_the_job_is_queued_ends_it_timed_out_unclaimed(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("deadline-passes-while-queued"), seed=1, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks if not c.ok]
    assert next(c for c in result.checks if c.checker == "timeout_enforced").verdict \
        is Verdict.VALID
    events = sut_events(result.run_dir)
    dated = [e["job_id"] for e in events
             if e["event"] == "job_queued" and e["data"].get("deadline_ms")]
    assert len(dated) == 1
    job = dated[0]
    timed_out = [e for e in events if e["event"] == "job_timed_out" and e["job_id"] == job]
    assert len(timed_out) == 1 and timed_out[0]["data"]["previous_state"] == "QUEUED"
    # no worker ever claimed it; the jobs without a deadline completed
    assert {e["event"] for e in events if e["job_id"] == job} == {"job_queued", "job_timed_out"}
    completed = {e["job_id"] for e in events if e["event"] == "job_completed"}
    assert len(completed) == 2 and job not in completed
