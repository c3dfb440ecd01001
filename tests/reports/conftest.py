"""Real run folders to report on: the catalog's crash-after-transcription, run for real.

``report_runs`` runs the scenario twice (two seeds, so the index has a trend)
under one runs root, once per test session, and adds a third folder: a copy
of the first run with ``results.json`` and ``state.json`` removed, the shape
an interrupted run leaves behind. Tests that change a run folder work on their
own copy (``run_copy``).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.procs import ProcessRegistry
from harness.runner import RunResult, run_scenario
from harness.scenario import resolve

SCENARIO = "crash-after-transcription"


@dataclass(frozen=True)
class ReportRuns:
    root: Path
    results: tuple[RunResult, ...]
    interrupted: Path

    @property
    def first(self) -> RunResult:
        return self.results[0]

    @property
    def folders(self) -> list[Path]:
        return [r.run_dir for r in self.results] + [self.interrupted]


@pytest.fixture(scope="session")
def report_runs(tmp_path_factory: pytest.TempPathFactory,
                registry: ProcessRegistry) -> ReportRuns:
    root = tmp_path_factory.mktemp("runs")
    results = tuple(run_scenario(resolve(SCENARIO), seed=seed, registry=registry,
                                 runs_root=root) for seed in (41, 42))
    interrupted = root / f"{results[0].run_dir.name}-interrupted"
    shutil.copytree(results[0].run_dir, interrupted)
    (interrupted / "results.json").unlink()
    (interrupted / "state.json").unlink()
    return ReportRuns(root, results, interrupted)


@pytest.fixture
def run_copy(report_runs: ReportRuns, tmp_path: Path) -> Callable[[], Path]:
    """A private copy of the first run's folder, to damage or extend."""

    def copy() -> Path:
        target = tmp_path / "runs" / report_runs.first.run_dir.name
        shutil.copytree(report_runs.first.run_dir, target)
        return target

    return copy
