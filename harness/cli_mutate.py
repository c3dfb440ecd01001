"""``crashlab mutants --generate``: the command around ``harness.mutation_engine``.

Prints a line per mutant as it is judged (to stderr), then the score: a
table, or with ``--json`` one JSON object on stdout. The summary is saved
as ``mutation.json`` and ``report.html`` in the session folder. Exit 0
when the session ran (a survivor is a finding, not an error), 3 when it
could not (cosmic-ray missing, a target without source to mutate, the
scenarios not valid on the unmutated worker, a session made with other
choices).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_OK, EXIT_SETUP, SetupError
from harness.mutation_engine import OUTCOMES, SUMMARY, MutantResult, MutationSession
from harness.packs_registry import load_target
from harness.procs import default_state_dir
from harness.target import MutableSourceTarget

console = Console()
err = Console(stderr=True)
COLOURS = {"killed": "green", "survived": "red", "timed_out": "yellow"}


def generate(target_name: str, *, sample: int, seed: int, budget_s: float,
             scenarios: list[str] | None, session: Path | None, fresh: bool,
             as_json: bool) -> None:
    try:
        target = load_target(target_name)
        if not isinstance(target, MutableSourceTarget):
            raise SetupError(f"target {target_name!r} names no source to mutate (a pack "
                             "offers it with mutation_source() and with_source())")
        folder = session or default_state_dir() / "mutation" / target_name
        run = MutationSession(folder, target_name, target.mutation_source(), sample=sample,
                              seed=seed, budget_s=budget_s, scenarios=scenarios)
        pending = run.open(fresh=fresh)
        err.print(f"mutation session {folder}: {pending} of {sample} sampled mutants to judge, "
                  f"each by {', '.join(run.choices.scenarios)}")
        if pending:
            err.print("checking that every scenario is valid on the unmutated worker ...")
            run.baseline()
    except SetupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None

    def step(number: int, total: int, row: MutantResult) -> None:
        colour = COLOURS.get(row.outcome, "magenta")
        err.print(f"[{number}/{total}] {row.file}:{row.line} {row.operator}: "
                  f"[{colour}]{row.outcome}[/] in {row.seconds} s  [dim]{row.detail[:160]}[/]",
                  soft_wrap=True)

    run.run(step)
    summary = run.summary()
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2))
    from reports.mutation_page import write_mutation_report

    page = write_mutation_report(summary, folder)
    if as_json:
        print(json.dumps({k: v for k, v in summary.items() if k != "mutants"}
                         | {"survivors": [m for m in summary["mutants"]
                                          if m["outcome"] == "survived"],
                            "report": str(page)}, indent=2))
        raise typer.Exit(EXIT_OK)
    table = Table(show_header=True, header_style="bold")
    for column in ("score", *OUTCOMES):
        table.add_column(column.replace("_", " "))
    score = summary["score"]
    table.add_row("—" if score is None else f"{score * 100:.1f} %",
                  *(str(summary["counts"][o]) for o in OUTCOMES))
    console.print(table)
    for m in summary["mutants"]:
        if m["outcome"] == "survived":
            console.print(f"[red]survived[/] {m['file']}:{m['line']} {m['operator']}")
    console.print(f"report: {page}")
    raise typer.Exit(EXIT_OK)
