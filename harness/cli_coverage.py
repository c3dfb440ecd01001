"""``crashlab run --coverage``: the command's side; the measuring is ``harness.worker_coverage``.

``measured_target`` wraps the chosen target (process runtime only: a
container would need coverage.py and the data folder inside it; and not
with ``--mutant``: a planted bug runs a patched copy of the worker, whose
coverage is not the worker's). After each scenario, ``after_run`` writes
the run folder's ``coverage.json`` (before its report, which shows it). At
the end, ``finish`` combines the run folders of the command into
``runs/coverage/<time>/coverage.json`` and ``coverage.html`` (with one run,
its own ``coverage.json`` is already the whole), and prints the totals and
each recovery region with the branches no scenario took.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from harness.errors import SetupError
from harness.target import Target
from harness.worker_coverage import (
    COVERAGE_JSON,
    CoverageTarget,
    write_combined_coverage,
    write_run_coverage,
)

COMBINED_DIR = "coverage"  # under the runs root


def measured_target(target: Target, runtime: str, mutant: str | None = None) -> Target:
    """``target`` with its worker processes measured; a ``SetupError`` if it cannot be."""
    if runtime != "process":
        raise SetupError("--coverage measures workers on the process runtime only; "
                         "drop --runtime docker (or drop --coverage)")
    if mutant is not None:
        raise SetupError(f"--coverage measures the worker itself, not the patched copy that "
                         f"--mutant {mutant} runs: drop one of the two")
    # it has every attribute of ``target`` (delegated), which the Protocol cannot see
    return cast(Target, CoverageTarget(target))


def after_run(run_dir: Path, target: Target, out: Console, indent: str = "") -> Path | None:
    """``run_dir/coverage.json`` from that run's data files; says where, or that none came."""
    written = write_run_coverage(run_dir, target)
    if written is None:
        out.print(f"{indent}[yellow]coverage: no data was saved in {run_dir / 'coverage'}[/]")
    else:
        out.print(f"{indent}coverage: {written}")
    return written


def finish(run_dirs: Sequence[Path], runs_root: Path, target: Target,
           out: Console) -> Path | None:
    """Combine every run of the command, write its page and print the summary."""
    from reports.coverage_page import load_summary, write_coverage_report

    if not run_dirs:
        return None
    page: Path | None = None
    written: Path | None = None
    if len(run_dirs) == 1:  # the run's own file is the whole (a --parallel child's, too)
        own = run_dirs[0] / COVERAGE_JSON
        written = own if own.is_file() else None
    else:
        written = write_combined_coverage(run_dirs, combined_dir(runs_root), target)
    if written is None:
        out.print("[yellow]coverage: no run saved any coverage data[/]")
        return None
    if len(run_dirs) > 1:
        page = write_coverage_report(written)
    summary = load_summary(written)
    if summary is not None:
        print_summary(summary, out)
    out.print(f"coverage over {len(run_dirs)} run(s): {written}" +
              (f" and {page}" if page is not None else ""))
    return written


def combined_dir(runs_root: Path) -> Path:
    """A new folder ``runs_root/coverage/<time>`` (``-2``, ``-3``, ... if that second is taken)."""
    stem = runs_root / COMBINED_DIR / time.strftime("%Y%m%d-%H%M%S")
    folder, number = stem, 1
    while folder.exists():
        number += 1
        folder = stem.with_name(f"{stem.name}-{number}")
    folder.mkdir(parents=True)
    return folder


def print_summary(summary: Mapping[str, Any], out: Console) -> None:
    """Totals, then one row per recovery region with what never ran."""
    totals = summary.get("totals", {})
    recovery = summary.get("recovery", {}).get("totals", {})
    out.print(f"worker coverage: lines {totals.get('covered_lines')}/"
              f"{totals.get('statements')} ({totals.get('line_percent')} %), branches "
              f"{totals.get('covered_branches')}/{totals.get('branches')} "
              f"({totals.get('branch_percent')} %), {summary.get('processes')} processes")
    out.print(f"recovery regions: lines {recovery.get('covered_lines')}/"
              f"{recovery.get('statements')} ({recovery.get('line_percent')} %), branches "
              f"{recovery.get('covered_branches')}/{recovery.get('branches')} "
              f"({recovery.get('branch_percent')} %)")
    for region in summary.get("recovery", {}).get("regions", []):
        if not region.get("found"):
            out.print(f"  [yellow]not found[/] {region['region']}")
            continue
        arcs = ", ".join(f"{a}->{'exit' if b < 0 else b}" for a, b in region["missing_branches"])
        complete = not region["missing_lines"] and not region["missing_branches"]
        out.print(f"  [{'green' if complete else 'yellow'}]lines {region['covered_lines']}/"
                  f"{region['statements']}, branches {region['covered_branches']}/"
                  f"{region['branches']}[/] {region['region']}", soft_wrap=True)
        if arcs:
            out.print(f"      never taken: {arcs}", soft_wrap=True)
