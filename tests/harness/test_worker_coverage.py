"""``run --coverage``: real workers measured under real kills; takeover lines covered or not.

The lines are found by their text in the worker's source, so the tests
follow the code instead of line numbers: the takeover line of
``Worker._next_claim`` (the ``recovering=True`` claim) and the
``processing_resumed`` line of ``recovery.prepare`` run only when a live
worker takes over a dead one's job.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import coverage
import pytest

import system_under_test
from harness.checkers.base import Verdict
from harness.coverage_launch import DATA_FILE, DIR_ENV, PROGRAM, SOURCE_ENV
from harness.packs.reference.target import ReferenceTarget
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import resolve
from harness.target import Target
from harness.worker_coverage import (
    COVERAGE_DIR,
    CoverageTarget,
    write_combined_coverage,
    write_run_coverage,
)

SUT = Path(system_under_test.__file__).parent


def _line_of(module: str, text: str) -> int:
    lines = (SUT / module).read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def _run(name: str, tmp_path: Path, registry: ProcessRegistry) -> tuple[Path, dict[str, Any]]:
    target: Any = CoverageTarget(ReferenceTarget())
    measured: Target = target
    result = run_scenario(resolve(name), seed=3, registry=registry, runs_root=tmp_path,
                          target=measured)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
    written = write_run_coverage(result.run_dir, measured)
    assert written == result.run_dir / "coverage.json"
    return result.run_dir, json.loads(written.read_text(encoding="utf-8"))


def _launch_help(data_dir: Path) -> str:
    """``python -m system_under_test --help`` under the launcher; its output."""
    proc = subprocess.run([sys.executable, "-c", PROGRAM, "system_under_test", "--help"],
                          capture_output=True, text=True, check=False, timeout=60,
                          env={"PATH": "/usr/bin:/bin", DIR_ENV: str(data_dir),
                               SOURCE_ENV: "system_under_test"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _file(raw: dict[str, Any], module: str) -> dict[str, Any]:
    return next(data for path, data in raw["files"].items()
                if path.endswith(f"system_under_test/{module}"))


def _region(raw: dict[str, Any], region: str) -> dict[str, Any]:
    return next(r for r in raw["crashlab"]["recovery"]["regions"] if r["region"] == region)


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_takeover_lines_are_covered_only_when_a_worker_takes_over(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    takeover = _line_of("worker.py", "recovering=True")
    crashed_dir, crashed = _run("crash-after-transcription", tmp_path / "crash", registry)
    quiet_dir, quiet = _run("baseline", tmp_path / "quiet", registry)

    assert takeover in _file(crashed, "worker.py")["executed_lines"]
    assert takeover in _file(quiet, "worker.py")["missing_lines"]
    resumed = _line_of("recovery.py", "EventName.PROCESSING_RESUMED")
    assert resumed in _file(crashed, "recovery.py")["executed_lines"]
    assert resumed in _file(quiet, "recovery.py")["missing_lines"]
    assert _file(crashed, "recovery.py")["functions"]["prepare"]["summary"]["covered_lines"] > 0
    assert _file(quiet, "recovery.py")["functions"]["prepare"]["summary"]["covered_lines"] == 0
    next_claim = "system_under_test/worker.py:Worker._next_claim"
    assert takeover not in _region(crashed, next_claim)["missing_lines"]
    assert takeover in _region(quiet, next_claim)["missing_lines"]
    # every process of the run saved data: the API, w1 (SIGKILLed) and its replacement
    assert crashed["crashlab"]["processes"] == 3
    assert quiet["crashlab"]["processes"] == 3  # the API and two workers
    assert len(list((crashed_dir / COVERAGE_DIR).glob(f"{DATA_FILE}.*"))) == 3
    assert quiet_dir != crashed_dir


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_a_worker_sigkilled_at_a_phase_keeps_what_it_ran_up_to_the_failpoint(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    run_dir, _ = _run("crash-after-transcription", tmp_path, registry)
    history = [json.loads(line) for line in
               (run_dir / "history.jsonl").read_text(encoding="utf-8").splitlines()]
    killed = next(e["pid"] for e in history
                  if e["kind"] == "process_signal" and e["signal"] == "SIGKILL")
    data_file = next((run_dir / COVERAGE_DIR).glob(f"{DATA_FILE}.*pid{killed}.*"))
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    pipeline = next(f for f in data.measured_files() if f.endswith("pipeline.py"))
    # the kill came at the second chunk.committed hit; the line of that failpoint ran
    assert _line_of("pipeline.py", 'self.at("chunk.committed"') in (data.lines(pipeline) or [])


def test_launcher_measures_a_module_run_as_python_dash_m(tmp_path: Path) -> None:
    env_dir = tmp_path / "cov"
    assert "usage: python -m system_under_test" in _launch_help(env_dir)
    (data_file,) = env_dir.glob(f"{DATA_FILE}.*")
    data = coverage.CoverageData(basename=str(data_file))
    data.read()
    assert data.has_arcs()
    main = next(f for f in data.measured_files() if f.endswith("system_under_test/__main__.py"))
    assert _line_of("__main__.py", "args = _parser().parse_args(argv)") in (data.lines(main)
                                                                           or [])


def test_coverage_needs_a_python_dash_m_worker_command() -> None:
    class Odd(ReferenceTarget):
        def worker_argv(self) -> list[str]:
            return ["/usr/bin/env", "worker"]

    from harness.errors import SetupError

    with pytest.raises(SetupError, match="PYTHON -m MODULE"):
        CoverageTarget(Odd()).worker_argv()


def test_combined_coverage_is_over_every_run_and_lists_unrun_modules(tmp_path: Path) -> None:
    runs = [tmp_path / "one", tmp_path / "two"]
    for run in runs:
        _launch_help(run / COVERAGE_DIR)
    written = write_combined_coverage(runs, tmp_path / "all", ReferenceTarget())
    assert written == tmp_path / "all" / "coverage.json"
    summary = json.loads(written.read_text(encoding="utf-8"))["crashlab"]
    assert summary["processes"] == 2 and summary["runs"] == [str(r) for r in runs]
    assert summary["files"]["system_under_test/__main__.py"]["covered_lines"] > 0
    # never imported by --help: present, and nothing of it covered
    assert summary["files"]["system_under_test/recovery.py"]["covered_lines"] == 0
    regions = {r["region"]: r for r in summary["recovery"]["regions"]}
    assert all(r["found"] for r in regions.values()), [n for n, r in regions.items()
                                                       if not r["found"]]
    assert regions["system_under_test/worker.py:Worker._next_claim"]["covered_lines"] == 0


def test_coverage_is_refused_with_docker_or_a_mutant() -> None:
    from harness.cli_coverage import measured_target
    from harness.errors import SetupError

    with pytest.raises(SetupError, match="process runtime"):
        measured_target(ReferenceTarget(), "docker")
    with pytest.raises(SetupError, match="--mutant"):
        measured_target(ReferenceTarget(), "process", mutant="commit-without-epoch-check")
