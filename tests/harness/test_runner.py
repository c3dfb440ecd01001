"""Whole scenarios through the runner: verdicts, stored runs, planted bugs, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.checkers.base import Verdict
from harness.packs.reference.mutants import MUTANTS, materialize
from harness.packs.reference.target import ReferenceTarget
from harness.procs import ProcessRegistry
from harness.runner import analyze, run_scenario
from harness.scenario import parse_scenario, resolve

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(180)]

# planted bugs about one chunk: their witness must name the chunk as well as the job
CHUNK_BUGS = {"commit-without-epoch-check", "event-in-separate-step",
              "resume-ignores-committed-chunks", "chunk-checksum-not-verified",
              "resume-offset-off-by-one"}


def test_catalog_scenario_is_valid_and_analyze_reproduces_it(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    result = run_scenario(resolve("crash-after-transcription"), seed=7, registry=registry,
                          runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
    assert (result.faults_planned, result.faults_fired) == (1, 1)
    for name in ("history.jsonl", "state.json", "results.json", "schedule.json"):
        assert (result.run_dir / name).is_file()
    assert (tmp_path / "latest").resolve() == result.run_dir
    checks, stored = analyze(result.run_dir)
    assert stored is not None
    assert {c.checker: str(c.verdict) for c in checks} == stored["checkers"]


def test_fault_that_never_fires_makes_the_run_unknown(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    scenario = parse_scenario(
        "name: never\ndescription: the job has 2 chunks, so no 9th commit\n"
        "workload: {media_seconds: 2}\nphase_timeout_s: 3\n"
        "faults:\n  - {kind: kill_at_phase, point: chunk.committed, occurrence: 9}\n",
        "never.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.UNKNOWN
    coverage = next(c for c in result.checks if c.checker == "fault_coverage")
    assert "never fired" in coverage.witness and "f1" in coverage.witness


@pytest.mark.timeout(90)
def test_timed_fault_due_after_every_job_settled_is_skipped_not_sat_out(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    # due in 600 s: the test's 90 s timeout fails it if the runner waits for it
    scenario = parse_scenario(
        "name: late\ndescription: a Redis cut due long after the one short job ends\n"
        "workload: {media_seconds: 2}\n"
        "faults:\n  - {kind: sever_redis, delay_ms: 600000, duration_ms: 1000}\n",
        "late.yaml")
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.UNKNOWN and result.faults_fired == 0
    history = [json.loads(line) for line in
               (result.run_dir / "history.jsonl").read_text().splitlines()]
    assert not [e for e in history if e["kind"] == "fault_start"]
    skipped = [e for e in history if e["kind"] == "fault_skipped"]
    assert [e["reason"] for e in skipped] == ["every job had settled before it was due"]
    state = json.loads((result.run_dir / "state.json").read_text())
    assert [job["state"] for job in state["jobs"].values()] == ["COMPLETED"]


def test_file_fault_at_crash_damages_the_chunk_the_killed_worker_held(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    scenario = parse_scenario(
        "name: at-crash\ndescription: kill before sending chunk 2, damage that chunk\n"
        "workload: {jobs: 2, media_seconds: 4}\nworkers: 2\nfaults:\n"
        "  - {kind: kill_at_phase, point: chunk.before_request, occurrence: 2, "
        "restart: false}\n"
        "  - {kind: corrupt_chunk, at_crash: true}\n", "at-crash.yaml")
    result = run_scenario(scenario, seed=5, registry=registry, runs_root=tmp_path)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
    entries = [json.loads(line) for line in
               (result.run_dir / "history.jsonl").read_text().splitlines()]
    hit = next(e for e in entries if e["kind"] == "failpoint_hit")
    damage = next(e for e in entries if e["kind"] == "fault_start"
                  and e["fault"] == "corrupt_chunk")
    assert hit["chunk"] == 1  # the second chunk: index 1
    assert damage["job"] == hit["job"]
    assert Path(damage["path"]).name == "chunk-0001.wav"
    # the killed worker's replacement starts only once the damage is done
    replacement = next(e for e in entries if e["kind"] == "process_start"
                       and e["name"] == f"{hit['worker']}.2")
    assert replacement["index"] > damage["index"]


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_planted_recovery_bug_is_caught_with_a_witness(
    name: str, tmp_path: Path, registry: ProcessRegistry
) -> None:
    mutant = MUTANTS[name]
    copy = materialize(mutant, tmp_path / "mutant")
    result = run_scenario(resolve(mutant.scenario), seed=3, registry=registry,
                          runs_root=tmp_path / "runs", target=ReferenceTarget(pythonpath=copy))
    assert result.verdict is Verdict.INVALID
    failing = [c for c in result.checks if c.verdict is Verdict.INVALID]
    job_ids = json.loads((result.run_dir / "state.json").read_text())["jobs"]
    named = [c.witness for c in failing if any(job in c.witness for job in job_ids)]
    assert named, [c.witness for c in failing]
    if name in CHUNK_BUGS:
        assert any("chunk" in witness for witness in named), named


def test_mutant_run_exits_1_from_the_cli(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", "zombie-worker", "--mutant",
         "commit-without-epoch-check", "--runs", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=170,
        env={**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")})
    assert proc.returncode == 1, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    assert summary["scenarios"][0]["checkers"]["stale_epoch_rejected"] == "invalid"


def test_ctrl_c_during_run_all_leaves_no_process_behind(tmp_path: Path) -> None:
    with (tmp_path / "harness.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", "--all", "--runs", str(tmp_path)],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")})
    harness = psutil.Process(proc.pid)
    seen: dict[int, psutil.Process] = {}
    deadline = time.monotonic() + 60
    # wait until the run is in full swing: services, API and a worker are up
    while time.monotonic() < deadline:
        for child in harness.children(recursive=True):
            seen.setdefault(child.pid, child)
        names = " ".join(" ".join(c.cmdline()) for c in seen.values() if c.is_running())
        if "toxiproxy-server" in names and "system_under_test worker" in names:
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("the run never started its worker")
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=60)
    assert code != 0
    time.sleep(0.5)
    left = [p for p in seen.values() if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [" ".join(p.cmdline()) for p in left]
    assert list((tmp_path / "state" / "procs").glob("*.json")) == []
