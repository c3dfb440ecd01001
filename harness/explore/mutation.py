"""``crashlab mutants``: how fast exploration exposes each planted recovery bug.

For every mutant a target ships (``MutantTarget``; the reference pack's are
in ``harness/packs/reference/mutants.py``), a patched copy of its worker is
explored on the target's ``baseline`` workload with Hypothesis (with
``workloads``, on workloads drawn around it), with a budget of examples and
seconds. A mutant is *killed* when the exploration
finds an invalid schedule; the result records how many examples and seconds
that took and how many faults the shrunk schedule has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.explore.explorer import Exploration, explore
from harness.procs import ProcessRegistry
from harness.project import resolve_for
from harness.runfolder import DEFAULT_ROOT
from harness.runner import RunResult
from harness.target import MutantTarget

BASE_SCENARIO = "baseline"


@dataclass(frozen=True)
class MutantOutcome:
    name: str
    description: str
    exploration: Exploration

    @property
    def killed(self) -> bool:
        return self.exploration.counterexample is not None

    def to_json(self) -> dict[str, Any]:
        found = self.exploration
        counter = found.to_json()["counterexample"]
        return {
            "mutant": self.name, "description": self.description,
            "killed": self.killed, "examples": found.examples,
            "examples_to_first_failure": found.examples_to_first_failure,
            "seconds_to_first_failure": found.seconds_to_first_failure,
            "shrunk_faults": None if counter is None else counter["faults"],
            "shrunk_schedule": None if counter is None else counter["schedule"],
            "witness": None if counter is None else
            "; ".join(c["witness"] for c in counter["failing_checks"]),
            "replay": None if counter is None else counter["replay"],
            "duration_s": round(found.duration_s, 1),
        }


def hunt(target: MutantTarget, names: list[str], *, examples: int, seed: int,
         registry: ProcessRegistry, runs_root: Path = DEFAULT_ROOT,
         time_budget_s: float = 300.0, workloads: bool = False, guided: bool = False,
         progress: Callable[[str, Exploration, RunResult], None] | None = None,
         ) -> list[MutantOutcome]:
    mutants = target.mutants()
    outcomes = []
    for name in names:
        planted = target.with_mutant(name)
        base = resolve_for(BASE_SCENARIO, planted.name)

        def step(found: Exploration, result: RunResult, name: str = name) -> None:
            if progress is not None:
                progress(name, found, result)

        found = explore(base, examples=examples, seed=seed, registry=registry,
                        runs_root=runs_root, target=planted,
                        use_database=False, time_budget_s=time_budget_s,
                        workloads=workloads, progress=step, guided=guided)
        outcomes.append(MutantOutcome(name, mutants[name], found))
    return outcomes
