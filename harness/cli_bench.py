"""CLI command ``crashlab bench``: the harness's own speed, against its targets.

Registered on the main app by ``harness.cli``. Exit codes: 0 every figure
was measured (whether or not it met its target: a benchmark is not a
test), 2 a figure could not be measured, 3 setup error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harness.errors import EXIT_INCONCLUSIVE, EXIT_OK, EXIT_SETUP, SetupError

console = Console()
err = Console(stderr=True)


def bench_command(
    quick: Annotated[bool, typer.Option(
        "--quick", help="a few samples of each figure: seconds, not minutes (a smoke test; "
        "its figures are not worth comparing)")] = False,
    seed: Annotated[int, typer.Option(help="Hypothesis seed of the exploration")] = 1,
    out: Annotated[Path | None, typer.Option(
        help="JSON lines file the record is appended to [default: .crashlab/bench.jsonl]")]
    = None,
    keep: Annotated[Path | None, typer.Option(
        help="keep the run folders in this folder (default: a temporary one, removed)")]
    = None,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="measure only this figure (repeatable): schedules_per_minute, "
        "parallel_schedules, inconclusive_share, recovery_latency, takeover_latency, "
        "event_latency, recovery_overhead, recovery_round_trips, recovery_overhead_instant, "
        "checker_speed, scaling (measured only when named: several minutes, --quick under "
        "two)")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the record as JSON")] = False,
) -> None:
    """Measure the harness's speed against its targets; append a JSON lines record.

    Ten figures by default: exploration rate with one explorer and with two,
    the share of inconclusive examples, recovery, takeover and event latency,
    the recovery machinery's overhead (at a 50 ms service, in Redis round trips
    per chunk, and at an instant service), and checker speed; and when named
    (--only scaling), run and check time, memory and report size of runs of
    200, 1,000 and 2,000 jobs.
    """
    from harness.bench import DEFAULT_FIGURES, BenchOptions, append_record, run_bench
    from harness.cli_explore import registry_after_reaping
    from harness.errors import CrashlabError
    from reports import write_run_report

    chosen = tuple(dict.fromkeys(only)) if only else DEFAULT_FIGURES
    try:
        options = (BenchOptions.quick_run(seed, chosen) if quick
                   else BenchOptions(seed=seed, only=chosen))
    except CrashlabError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    progress = err if as_json else console
    try:
        record = run_bench(options, registry_after_reaping(), workdir=keep,
                           say=lambda message: progress.print(f"[dim]bench:[/] {message}"),
                           render=write_run_report)
    except SetupError as exc:
        err.print(f"[red]setup error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    path = append_record(record, out)
    if as_json:
        print(json.dumps(record, indent=2))
    else:
        console.print(_table(record, options.only))
        machine = record["machine"]
        console.print(f"{machine['cpus']} x {machine['cpu_model'] or 'CPU'}, load average "
                      f"{machine['load_average']} -> {machine['load_average_end']}; "
                      f"{record['duration_s']} s; appended to {path}")
    failed = [name for name, figure in record["figures"].items() if figure.get("error")]
    raise typer.Exit(EXIT_INCONCLUSIVE if failed else EXIT_OK)


def _table(record: dict[str, Any], names: tuple[str, ...]) -> Table:
    table = Table(show_header=True, header_style="bold")
    table.add_column("figure", no_wrap=True)  # names are what --only takes: never cut
    for column in ("value", "target", "met", "detail"):
        table.add_column(column)
    for name in names:
        figure = record["figures"].get(name, {})
        if figure.get("error"):
            table.add_row(name, "[yellow]not measured[/]", "", "", figure["error"])
            continue
        met = figure.get("met")
        table.add_row(name, f"{figure['value']} {figure.get('unit', '')}",
                      figure.get("target") or "-",
                      "-" if met is None else ("[green]yes[/]" if met else "[red]no[/]"),
                      _detail(name, figure))
    return table


def _detail(name: str, figure: dict[str, Any]) -> str:
    if name == "recovery_latency":
        return (f"p50 {figure['total_ms']['p50']} ms; start p95 "
                f"{figure['replacement_start_ms']['p95']} ms, resume p95 "
                f"{figure['resume_ms']['p95']} ms (lease wait p95 "
                f"{(figure.get('lease_wait_ms') or {}).get('p95', '?')} ms)")
    if name == "takeover_latency":
        return f"p50 {figure['takeover_ms']['p50']} ms over {figure['trials']} trials"
    if name == "event_latency":
        return f"p50 {figure['latency_ms']['p50']} ms over {figure['latency_ms']['n']} commits"
    if name == "recovery_round_trips":
        return (f"+{figure['machinery_rest_per_job']} per job; all spread over the chunks "
                f"{figure['all_per_chunk']} ({figure['chunks_per_run']} chunks)")
    if name == "inconclusive_share":
        return f"{figure['inconclusive']} of {figure['examples']} schedules"
    if name == "parallel_schedules":
        return (f"{figure['examples']} schedules ({figure['inconclusive']} inconclusive) "
                f"by {figure['explorers']} explorers in {figure['duration_s']} s")
    if name in ("recovery_overhead", "recovery_overhead_instant"):
        speeds = f"{figure['on']['chunks_per_s']} chunks/s on, {figure['off']['chunks_per_s']} off"
        if figure.get("service_latency_ms"):
            speeds = f"service {figure['service_latency_ms']:g} ms; {speeds}"
        repeats = figure["repeats"]
        if repeats < 4:  # too few for quartiles to mean anything
            return f"{speeds}; {repeats} repeat{'' if repeats == 1 else 's'}"
        low, high = figure["ratio_quartiles"]
        return f"{speeds}; middle half of the {repeats} repeats {low:.3f}-{high:.3f}"
    if name == "checker_speed":
        return (f"{figure['entries']} entries, {figure['checkers']} checkers; with loading "
                f"the file {figure['with_load_entries_per_s']} entries/s")
    if name == "scaling":
        return _scaling_detail(figure)
    if name == "schedules_per_minute":
        return (f"{figure['examples']} schedules ({figure['inconclusive']} inconclusive) in "
                f"{figure['duration_s']} s; {figure['conclusive_per_minute']} conclusive/min")
    return ""


def _scaling_detail(figure: dict[str, Any]) -> str:
    """``200/1000/2000 jobs: run x1/4.6/9.1, check x1/5.0/10.2 (linear x1/5/10); ...``."""
    rows = figure["sizes"]

    def series(key: str) -> str:
        return "/".join(f"{row.get(key):g}" if row.get(key) is not None else "-"
                        for row in rows)

    text = (f"{series('jobs')} jobs: run x{series('run_ratio')}, check "
            f"x{series('check_ratio')} (linear x{series('linear_ratio')}); run "
            f"{series('run_s')} s, check {series('check_s')} s; peak RSS "
            f"{series('rss_peak_mb')} MB; history {series('history_entries')} entries; "
            f"arrivals kept {series('arrival_rate')} of {figure['rate']:g} jobs/s")
    if any(row.get("report_s") is not None for row in rows):
        text += f"; report {series('report_s')} s"
    if figure.get("verdict") != "valid":
        text += "; not every run valid: " + "/".join(row["verdict"] for row in rows)
    return text
