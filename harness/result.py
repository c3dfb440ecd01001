"""A run's outcome: its verdict, each checker's result, the faults it fired.

``RunResult`` is what ``harness.runner.run_scenario`` returns and what a run
folder's ``results.json`` holds (``to_json``); every command prints from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.checkers.base import CheckResult, Verdict, tally, tally_words
from harness.turns import Turns


@dataclass(frozen=True)
class RunResult:
    scenario: str
    run_dir: Path
    seed: int
    verdict: Verdict
    checks: tuple[CheckResult, ...]
    faults_planned: int
    faults_fired: int
    duration_s: float
    # each repeating fault's turns taken against those its clock asked for
    turns: tuple[Turns, ...] = ()

    @property
    def tally(self) -> str:
        """``12 held, 1 unknown, 3 not applicable``."""
        return tally_words(c.verdict for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "run_dir": str(self.run_dir), "seed": self.seed,
            "verdict": str(self.verdict),
            "checkers": {c.checker: str(c.verdict) for c in self.checks},
            "counts": tally(c.verdict for c in self.checks),
            "checks": [c.to_json() for c in self.checks],
            "faults": {"planned": self.faults_planned, "fired": self.faults_fired},
            "turns": [t.to_json() for t in self.turns],
            "duration_s": round(self.duration_s, 3),
            "replay": f"crashlab replay {self.run_dir}",
        }
