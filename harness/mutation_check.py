"""The test command cosmic-ray runs for each mutant (``crashlab mutants --generate``).

    python -m harness.mutation_check --target NAME --source ROOT \\
        --scenario S1 --scenario S2 ... --runs DIR [--seed N]

It runs the scenarios in order against the target's worker loaded from
``ROOT`` (the session's mutated copy) and stops at the first that is not
valid: one invalid verdict is enough to kill a mutant. The last line on
stdout (cosmic-ray keeps stdout with the result) is ``RESULT_MARK`` and a
JSON object: every scenario that ran with its verdict, and the witness of
the one that stopped it. Run folders of valid runs are removed; the one
that killed the mutant is kept for a look.

Exit codes, as cosmic-ray reads them (anything but 0 kills the mutant):
0 every scenario valid (the mutant survived), 1 a verdict was invalid,
2 a run could not conclude (a planned fault never fired, a job never
settled), 3 the run could not start (the mutated worker would not start).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from harness.checkers.base import Verdict
from harness.cleanup import process_registry
from harness.errors import CrashlabError
from harness.packs_registry import load_target
from harness.procs import default_state_dir
from harness.runner import run_scenario
from harness.scenario import resolve
from harness.target import MutableSourceTarget

RESULT_MARK = "crashlab-mutation-result "
EXIT_SURVIVED, EXIT_INVALID, EXIT_INCONCLUSIVE, EXIT_SETUP = 0, 1, 2, 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.mutation_check")
    parser.add_argument("--target", required=True)
    parser.add_argument("--source", required=True, type=Path)
    parser.add_argument("--scenario", action="append", required=True)
    parser.add_argument("--runs", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    ran: list[dict[str, object]] = []
    code, stopped_by, current = EXIT_SURVIVED, None, None
    try:
        base = load_target(args.target)
        if not isinstance(base, MutableSourceTarget):
            raise CrashlabError(f"target {args.target!r} has no source to mutate")
        target = base.with_source(args.source)
        registry = process_registry(default_state_dir())
        for name in args.scenario:
            current = name
            result = run_scenario(resolve(name), seed=args.seed, registry=registry,
                                  runs_root=args.runs, target=target)
            witness = "; ".join(f"{c.checker}: {c.witness}" for c in result.checks
                                if c.verdict is not Verdict.VALID
                                and c.verdict is not Verdict.NOT_APPLICABLE)
            ran.append({"scenario": name, "verdict": str(result.verdict),
                        "run_dir": str(result.run_dir)})
            if result.verdict is Verdict.VALID:
                shutil.rmtree(result.run_dir, ignore_errors=True)
                continue
            code = EXIT_INVALID if result.verdict is Verdict.INVALID else EXIT_INCONCLUSIVE
            if result.faults_fired < result.faults_planned:
                missed = result.faults_planned - result.faults_fired
                witness = "; ".join(filter(None, (witness, f"{missed} planned fault(s) never "
                                                           "fired")))
            stopped_by = {"scenario": name, "verdict": str(result.verdict),
                          "witness": witness, "run_dir": str(result.run_dir)}
            break
    except CrashlabError as exc:
        code = EXIT_SETUP
        stopped_by = {"scenario": current, "verdict": "setup",
                      "witness": str(exc), "run_dir": None}
    print(RESULT_MARK + json.dumps({"ran": ran, "stopped_by": stopped_by}), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
