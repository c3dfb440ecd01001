"""Deploys (graceful stop, rolling restart) and the four verdicts, end to end.

Real worker processes, real SIGTERM and SIGKILL, real Redis: a graceful stop
releases its job without a retry, a grace that runs out is a crash, a worker
that skips its release is caught, and a checker with nothing of its kind in
the run says ``not_applicable`` (grey, with the reason, in the report).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.base import Verdict
from harness.packs.reference.mutants import mutant_target
from harness.procs import ProcessRegistry
from harness.runner import RunResult, run_scenario
from harness.scenario import resolve
from reports import write_run_report

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(180)]


def entries(result: RunResult, kind: str) -> list[dict[str, Any]]:
    lines = (result.run_dir / "history.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["kind"] == kind]


def check(result: RunResult, name: str) -> Any:
    return next(c for c in result.checks if c.checker == name)


def witnesses(result: RunResult) -> list[str]:
    return [f"{c.checker}: {c.witness}" for c in result.checks if c.verdict is not Verdict.VALID]


def test_a_deploy_mid_job_releases_the_job_to_its_successor_without_a_retry(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("deploy-mid-job"), seed=3, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, witnesses(result)
    (stop,) = entries(result, "worker_stop")
    assert (stop["signal"], stop["grace_ms"], stop["outcome"]) == ("SIGTERM", 10000, "exited")
    signals = [(s["name"], s["signal"]) for s in entries(result, "process_signal")]
    assert ("w1", "SIGTERM") in signals and ("w1", "SIGKILL") not in signals
    events = [e["event"] for e in entries(result, "sut_event")]
    assert "job_released" in events and "recovery_started" not in events
    assert check(result, "graceful_stop_honoured").verdict is Verdict.VALID
    assert "1 job released" in check(result, "graceful_stop_honoured").witness


def test_a_grace_that_runs_out_ends_in_a_kill_and_counts_as_a_crash(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("deploy-grace-too-short"), seed=3, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, witnesses(result)
    (stop,) = entries(result, "worker_stop")
    assert (stop["grace_ms"], stop["outcome"], stop["exit_code"]) == (0, "killed", -9)
    signals = [s["signal"] for s in entries(result, "process_signal") if s["name"] == "w1"]
    # stopped first, so the worker gets no time between SIGTERM and SIGKILL
    assert signals[:3] == ["SIGSTOP", "SIGTERM", "SIGKILL"]
    events = [e["event"] for e in entries(result, "sut_event")]
    assert "recovery_started" in events and "job_released" not in events
    assert "recovered after a kill" in check(result, "graceful_stop_honoured").witness


def test_a_worker_that_skips_its_release_on_sigterm_is_caught(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("deploy-mid-job"), seed=3, registry=registry,
                          runs_root=tmp_path,
                          target=mutant_target("shutdown-skips-release", tmp_path / "state"))
    assert result.verdict is Verdict.INVALID
    graceful = check(result, "graceful_stop_honoured")
    assert graceful.verdict is Verdict.INVALID and "never released it" in graceful.witness


def test_a_checker_with_nothing_to_judge_is_not_applicable_and_grey_in_the_report(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("baseline"), seed=3, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, witnesses(result)
    upload = check(result, "upload_byte_exact")
    assert upload.verdict is Verdict.NOT_APPLICABLE and "no upload jobs" in upload.witness
    stored = json.loads((result.run_dir / "results.json").read_text())
    assert stored["checkers"]["upload_byte_exact"] == "not_applicable"
    assert stored["counts"]["not_applicable"] >= 1 and stored["counts"]["invalid"] == 0
    held = stored["counts"]["valid"]
    assert held == sum(1 for c in result.checks if c.verdict is Verdict.VALID)
    html = write_run_report(result.run_dir).read_text()
    assert "bg-not_applicable" in html and "no upload jobs in this run" in html
    assert f"{held} held" in html and "not applicable" in html


def test_a_zombie_run_is_judged_for_work_after_a_commit(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("zombie-worker"), seed=3, registry=registry,
                          runs_root=tmp_path)
    redundant = check(result, "no_work_after_commit")
    assert redundant.verdict in (Verdict.VALID, Verdict.INVALID)
    assert "not checked" not in redundant.witness
    assert "frozen and thawed" in redundant.witness or redundant.verdict is Verdict.INVALID
