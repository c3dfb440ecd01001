"""``crashlab run --parallel N``: the command's output; the work is in ``harness.parallel``.

Prints one line per scenario as its child finishes (verdict, duration, run
folder, the witnesses of what was not valid), then the wall time, and
returns the exit code of the whole selection with the serial run's rule.
``--json`` prints the same summary shape as a serial ``run --json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from harness.parallel import ParallelOutcome, ParallelPlan, combined_exit_code, run_parallel
from harness.target import Target
from harness.turns import Turns


def run_parallel_command(names: list[str], *, repeat: int, seed: int, workers: int, runs: Path,
                         runtime: str, mutant: str | None, report: bool, as_json: bool,
                         out: Console, err: Console, target: str | None = None,
                         measured: Target | None = None) -> int:
    """Run ``names`` (each ``repeat`` times, seeds numbered as serially) ``workers`` at once.

    With ``measured`` (``--coverage``), every child measures its workers and the
    coverage of all of them is combined at the end.
    """
    pairs = [(name, seed + number) for number, name in
             enumerate(n for n in names for _ in range(repeat))]
    plan = ParallelPlan(runs=pairs, runs_root=runs, runtime=runtime, mutant=mutant,
                        report=report, extra=[*(["--target", target] if target else []),
                                              *(["--coverage"] if measured else [])])
    out.print(f"running {len(pairs)} scenario runs, {workers} at a time, each in its own "
              f"environment")
    started = time.monotonic()

    def done(outcome: ParallelOutcome) -> None:
        colour = {"valid": "green", "invalid": "red"}.get(outcome.verdict, "yellow")
        line = f"[{colour}]{outcome.verdict:<8}[/] {outcome.scenario} ({outcome.wall_s:.1f} s)"
        if outcome.summary and outcome.summary.get("scenarios"):
            first = outcome.summary["scenarios"][0]
            line += f" {first['run_dir']}"
            out.print(line)
            for check in first["checks"]:
                if check.get("verdict") != "valid":
                    out.print(f"         [{colour}]{check.get('checker')}[/]: "
                              f"{check.get('witness')}")
            for raw in first.get("turns") or ():  # a repeat behind its clock, in yellow
                turns = Turns.from_json(raw)
                text = escape(turns.line())
                out.print(f"         [yellow]{text}[/]" if turns.behind else f"         {text}")
        else:
            out.print(line)
            err.print(f"[red]{outcome.scenario} (exit {outcome.exit_code}):[/] "
                      f"{outcome.stderr_tail}")

    outcomes = run_parallel(plan, workers, on_done=done)
    code = combined_exit_code(outcomes)
    out.print(f"{len(outcomes)} runs in {time.monotonic() - started:.1f} s wall time")
    if measured is not None:
        from harness.cli_coverage import finish

        finish([Path(o.summary["scenarios"][0]["run_dir"]) for o in outcomes
                if o.summary and o.summary.get("scenarios")], runs, measured, out)
    if as_json:
        scenarios = [o.summary["scenarios"][0] for o in outcomes
                     if o.summary and o.summary.get("scenarios")]
        print(json.dumps({"verdict": ("valid", "invalid", "unknown")[code] if code < 3 else "",
                          "exit_code": code, "parallel": workers,
                          "scenarios": scenarios}, indent=2))
    return code
