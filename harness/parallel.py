"""``crashlab run --parallel N``: scenarios at once, each in its own environment.

Every scenario runs in a child ``crashlab run NAME --seed S --json`` process:
its own data Redis, Toxiproxy, transcription service, API, fork server and
workers, all on free loopback ports, and its own run folder. Nothing is
shared between two scenarios but the runs root and the machine, which is
what "isolated environment" means here (the same isolation a serial run
has between its scenarios, only side by side).

Seeds follow the serial numbering (the k-th run gets ``seed + k``), so a
parallel run and a serial run of the same selection judge the same
schedules with the same seeds and must give the same verdicts; on a
loaded machine only the durations differ. A child's exit code 3 (setup
error) stops the launch of further scenarios; the ones started finish.

A child is this interpreter running the ``crashlab`` entry point
(``harness.cli:main``) as a program, so it is exactly the command a person
would type; this module never imports the CLI.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SETUP, EXIT_VIOLATION

logger = logging.getLogger(__name__)

# The child is the CLI itself; run as a program, never imported from here (also the
# child of ``crashlab explore --jobs``, ``harness.explore.explorers``).
CHILD_ARGV = [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())"]


@dataclass(frozen=True)
class ParallelOutcome:
    """One scenario's child run: its exit code, its JSON summary, its stderr tail."""

    scenario: str
    seed: int
    exit_code: int
    summary: dict[str, Any] | None
    stderr_tail: str
    wall_s: float

    @property
    def verdict(self) -> str:
        """The child's verdict (valid, invalid, unknown), or ``setup`` when it had none."""
        if self.summary and self.summary.get("scenarios"):
            return str(self.summary["scenarios"][0]["verdict"])
        return "setup"


@dataclass
class ParallelPlan:
    """What to run: (scenario argument, seed) pairs and the options every child gets."""

    runs: list[tuple[str, int]]
    runs_root: Path
    runtime: str = "process"
    mutant: str | None = None
    report: bool = True
    extra: list[str] = field(default_factory=list)

    def argv(self, scenario: str, seed: int) -> list[str]:
        """The child's command line for one scenario."""
        args = [*CHILD_ARGV, "run", scenario, "--seed", str(seed), "--json",
                "--runs", str(self.runs_root), "--runtime", self.runtime, *self.extra]
        if self.mutant:
            args += ["--mutant", self.mutant]
        if not self.report:
            args.append("--no-report")
        return args


def run_parallel(plan: ParallelPlan, workers: int,
                 on_done: Callable[[ParallelOutcome], None] | None = None,
                 ) -> list[ParallelOutcome]:
    """Run the plan's scenarios ``workers`` at a time; outcomes in the plan's order."""
    outcomes: dict[int, ParallelOutcome] = {}
    stop = False
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {}
        for index, (scenario, seed) in enumerate(plan.runs):
            futures[pool.submit(_run_child, plan, scenario, seed, lambda: stop)] = index
        for future in as_completed(futures):
            outcome = future.result()
            outcomes[futures[future]] = outcome
            if outcome.exit_code == EXIT_SETUP and outcome.summary is None:
                stop = True  # the machine lacks something; don't start more children
            if on_done is not None:
                on_done(outcome)
    return [outcomes[i] for i in sorted(outcomes)]


def _run_child(plan: ParallelPlan, scenario: str, seed: int,
               stopped: Callable[[], bool]) -> ParallelOutcome:
    if stopped():
        return ParallelOutcome(scenario, seed, EXIT_SETUP, None,
                               "not started: an earlier scenario hit a setup error", 0.0)
    started = time.monotonic()
    logger.info("parallel: starting %s (seed %d)", scenario, seed)
    proc = subprocess.run(plan.argv(scenario, seed), capture_output=True, text=True,
                          check=False)
    wall = time.monotonic() - started
    summary: dict[str, Any] | None
    try:
        parsed = json.loads(proc.stdout) if proc.stdout.strip() else None
        summary = parsed if isinstance(parsed, dict) else None
    except json.JSONDecodeError:
        summary = None
    tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
    return ParallelOutcome(scenario, seed, proc.returncode, summary, tail, wall)


def combined_exit_code(outcomes: list[ParallelOutcome]) -> int:
    """The serial run's rule: a violation wins, then inconclusive, then setup, then ok."""
    codes = {o.exit_code for o in outcomes}
    for code in (EXIT_VIOLATION, EXIT_INCONCLUSIVE, EXIT_SETUP):
        if code in codes:
            return code
    return EXIT_OK if codes <= {EXIT_OK} else EXIT_SETUP
