"""CLI commands for exploration: ``explore``, ``replay`` and ``mutants``.

Registered on the main app by ``harness.cli``; same exit codes (0 valid,
1 invariant violated, 2 inconclusive, 3 setup error).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.cleanup import process_registry, reap_leftovers
from harness.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_VIOLATION,
    CrashlabError,
    ScenarioError,
    SetupError,
)
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry, default_state_dir
from harness.project import Project, find_project, resolve_for
from harness.runfolder import DEFAULT_ROOT

console = Console()
err = Console(stderr=True)

EXAMPLE_DB_ENV = "CRASHLAB_EXAMPLE_DB"  # what --example-db reads when it is not given


def registry_after_reaping() -> ProcessRegistry:
    """The process registry, after removing what an interrupted run left behind."""
    state_dir = default_state_dir()
    for leftover in reap_leftovers(state_dir):
        err.print(f"[yellow]removed a leftover of an interrupted run:[/] {leftover}")
    return process_registry(state_dir)


TargetOption = Annotated[str | None, typer.Option(
    "--target", metavar="NAME|MODULE:ATTR",
    help="the worker to attack: a pack (reference, rq, arq, or one registered in the "
         "crashlab.packs entry points) or your own adapter; default: [tool.crashlab] "
         "target in pyproject.toml, else reference")]


def choose_target(flag: str | None) -> tuple[str, Project]:
    """The target's name and the user's project (``[tool.crashlab]``), made importable."""
    project = find_project()
    project.activate()
    return project.target_name(flag), project


WorkloadsOption = Annotated[bool, typer.Option(
    "--workloads", help="draw each example's workload as well (job count, lengths, "
                        "concurrency, deadlines, the service's behaviour; the target's "
                        "own), instead of the scenario's, and let a first fault cut off "
                        "one worker")]


def explore_command(
    scenario: Annotated[str, typer.Argument(help="catalog name or scenario file: the workload")],
    examples: Annotated[int, typer.Option(min=1, help="schedules to try")] = 50,
    seed: Annotated[int, typer.Option(help="Hypothesis seed")] = 1,
    max_faults: Annotated[int, typer.Option(min=1, max=6, help="faults per schedule")] = 3,
    max_workers: Annotated[int, typer.Option(
        min=1, max=4, help="workers per schedule (1 makes every race the faults' own)")] = 2,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, max=32, help="explorers at once, each in its own environment (its "
        "own Redis, Toxiproxy, services and ports), sharing the example database and the "
        "schedules to try; the first failure found is shrunk and reported")] = 1,
    example_db: Annotated[str | None, typer.Option(
        "--example-db", metavar="redis://HOST:PORT/DB", envvar=EXAMPLE_DB_ENV,
        help="keep failing examples in this Redis database instead of .crashlab/hypothesis: "
             "explorers on several machines that share it replay a failure found on any of "
             "them first")] = None,
    runs: Annotated[Path, typer.Option(help="folder for run folders")] = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary")] = False,
    target_flag: TargetOption = None,
    workloads: WorkloadsOption = False,
    guided: Annotated[bool, typer.Option(
        "--guided", help="steer the search toward schedules that drive recovery further "
                         "(Hypothesis target() on the recovery stages a run reached)")] = False,
    search_seed: Annotated[int | None, typer.Option(hidden=True)] = None,
    stop_file: Annotated[Path | None, typer.Option(hidden=True)] = None,
    explorer: Annotated[int, typer.Option(hidden=True)] = 0,
    report: Annotated[bool, typer.Option(hidden=True)] = True,
    database: Annotated[bool, typer.Option(hidden=True)] = True,
) -> None:
    """Search crash schedules with Hypothesis; save the smallest failing one for replay.

    With --workloads each example draws its workload too (the reference worker:
    1-8 jobs of 1-40 chunks, partial last chunks, 1-4 chunks of a job and 1-3 jobs
    of a worker at once; uploads on and around part boundaries, growing sources;
    a deadline of 0.3-3 s on the last jobs, which may pass while they are queued;
    a service that ignores idempotency keys or has no status endpoint), and its
    first fault may cut off one worker of two or more (sever_redis, redis_toxic,
    lost_reply naming one worker in workers); all shrunk with the faults (to no
    deadline, a service that keeps its promises, every worker). exploration.json's
    "workloads" is the spread tried. Without it, a seed draws the schedules it
    always drew.
    """
    from harness.explore.database import check_url
    from harness.explore.explorer import StopFile, explore
    from harness.runner import RunResult

    try:
        name, project = choose_target(target_flag)
        base = project.with_settings(resolve_for(scenario, name, project))
        target = load_target(name)
        if example_db is not None:
            check_url(example_db)
    except (ScenarioError, SetupError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None
    out = err if as_json else console
    if jobs > 1:
        options = ["--max-faults", str(max_faults), "--max-workers", str(max_workers),
                   *(["--target", target_flag] if target_flag else []),
                   *(["--guided"] if guided else []),
                   *(["--workloads"] if workloads else [])]
        # the URL goes by the environment: a password in it stays out of argv and logs
        summary = _explore_in_parallel(scenario, examples=examples, jobs=jobs, seed=seed,
                                       runs=runs, options=options, out=out,
                                       env={EXAMPLE_DB_ENV: example_db} if example_db else {})
        _finish(summary, as_json=as_json, out=out, report=report)
    started = time.monotonic()

    def step(found: object, result: RunResult) -> None:
        from harness.explore.explorer import Exploration

        assert isinstance(found, Exploration)
        colour = {"valid": "green", "invalid": "red"}.get(result.verdict, "yellow")
        rate = found.examples / max(time.monotonic() - started, 1e-9) * 60
        out.print(f"[{colour}]{result.verdict:<8}[/] example {found.examples:>4}/{examples} "
                  f"({rate:.1f}/min) faults fired {result.faults_fired}/{result.faults_planned}")

    try:
        found = explore(base, examples=examples, seed=seed, registry=registry_after_reaping(),
                        runs_root=runs, max_faults=max_faults, max_workers=max_workers,
                        progress=step, target=target, workloads=workloads,
                        search_seed=search_seed,
                        stop_file=None if stop_file is None else StopFile(stop_file, explorer),
                        example_db=example_db, use_database=database, guided=guided)
    except SetupError as exc:
        err.print(f"[red]setup error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    origin = "drawn" if workloads else "the scenario's own"
    _finish(found.to_json(), as_json=as_json, out=out, report=report,
            spread=f"workloads tried ({origin}): {found.spread.describe()}",
            on=found.workload.describe() if found.workload is not None and workloads
            else None)


def _explore_in_parallel(scenario: str, *, examples: int, jobs: int, seed: int, runs: Path,
                         options: list[str], out: Console,
                         env: dict[str, str]) -> dict[str, Any]:
    """``--jobs N``: the explorers side by side (``harness.explore.explorers``)."""
    from harness.explore.explorers import ParallelExploration, explore_in_parallel

    request = ParallelExploration(scenario, examples, jobs, seed, runs, child_options=options,
                                  child_env=env)
    out.print(f"exploring {scenario} with {min(jobs, examples)} explorers, each in its own "
              "environment")

    def relay(index: int, line: str) -> None:
        out.print(Text.assemble((f"[{index}] ", "dim"), line))  # the line is plain text

    summary = explore_in_parallel(request, registry_after_reaping(), on_line=relay)
    codes = [e["exit_code"] for e in summary["explorers"]]
    if summary["counterexample"] is None and EXIT_SETUP in codes:
        bad = next(e for e in summary["explorers"] if e["exit_code"] == EXIT_SETUP)
        err.print(f"[red]setup error in explorer {bad['explorer']}:[/] see {bad['log']}")
        raise typer.Exit(EXIT_SETUP)
    return summary


def _finish(summary: dict[str, Any], *, as_json: bool, out: Console, report: bool,
            spread: str | None = None, on: str | None = None) -> None:
    """Print an exploration's summary (its report first) and exit with its verdict;
    ``spread`` is the line about the workloads tried, ``on`` the counterexample's
    drawn workload (one explorer's; ``--jobs`` has them in each explorer's own)."""
    counter = summary["counterexample"]
    if counter is not None and report:
        from reports import write_run_report

        try:
            page = write_run_report(Path(counter["run_dir"]))
            out.print(f"report of the counterexample: {page}")
        except Exception as exc:  # noqa: BLE001 - the report must not hide the verdict
            err.print(f"[yellow]could not write the report:[/] {exc!r}")
    if spread is not None:
        out.print(spread)
    if as_json:
        print(json.dumps(summary, indent=2))
    elif counter is not None:
        out.print(f"[red bold]counterexample[/] ({counter['faults']} fault(s)): "
                  f"{counter['schedule']}")
        if on is not None:
            out.print(f"  on {on}")
        for check in counter["failing_checks"]:
            out.print(f"  [red]{check['checker']}[/]: {check['witness']}")
        out.print(f"replay it with: [bold]{counter['replay']}[/]")
    else:
        out.print(f"[green]no invariant broken[/] in {summary['examples']} schedules "
                  f"({summary['inconclusive']} inconclusive); "
                  f"{summary['schedules_per_minute']}/min")
    if summary.get("errors") and not as_json:
        err.print(f"[yellow]{summary['errors']} example(s) raised and were counted "
                  f"inconclusive[/] (see the log); the first: {summary['first_error']}")
    raise typer.Exit(EXIT_VIOLATION if counter is not None else EXIT_OK)


def replay_command(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (its schedule.json)")],
    runs: Annotated[Path, typer.Option(help="folder for the new run folder")] = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    keep: Annotated[bool, typer.Option(
        "--keep-on-failure", help="when an invariant fails, keep the services up and print "
                                  "how to reach them, until Enter is pressed")] = False,
) -> None:
    """Run a stored schedule again, exactly (same scenario, faults, seed, planted bug)."""
    from harness.keep import keep_on_failure
    from harness.runner import SCHEDULE_FILE, read_schedule, run_scenario

    try:
        stored = read_schedule(run_dir)
    except (OSError, ValueError, KeyError) as exc:
        err.print(f"[red]cannot replay {run_dir}:[/] {run_dir / SCHEDULE_FILE} is missing or "
                  f"unreadable ({exc})")
        raise typer.Exit(EXIT_SETUP) from None
    scenario, seed = stored.scenario, stored.seed
    try:
        # a counterexample found in a mutant is replayed against the same planted bug,
        # and a run of another pack against that pack
        choose_target(None)
        target = load_target(stored.target, mutant=stored.mutant)
        result = run_scenario(scenario, seed=seed, registry=registry_after_reaping(),
                              runs_root=runs, target=target,
                              hold=keep_on_failure(err if as_json else console) if keep else None)
    except CrashlabError as exc:
        err.print(f"[red]setup error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    if as_json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        console.print(f"{result.verdict:<8} {scenario.name} (seed {seed}) -> {result.run_dir}")
        for check in result.checks:
            if check.verdict != "valid":
                console.print(f"  {check.checker}: {check.witness}")
    raise typer.Exit({"valid": EXIT_OK, "invalid": EXIT_VIOLATION}.get(result.verdict,
                                                                      EXIT_INCONCLUSIVE))


def mutants_command(
    names: Annotated[list[str] | None, typer.Argument(help="mutants (default: all)")] = None,
    examples: Annotated[int, typer.Option(min=1, help="schedules per mutant")] = 100,
    budget: Annotated[float, typer.Option(help="seconds per mutant")] = 300.0,
    seed: Annotated[int, typer.Option(help="Hypothesis seed")] = 1,
    runs: Annotated[Path, typer.Option(help="folder for run folders")] = DEFAULT_ROOT,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary")] = False,
    target_flag: TargetOption = None,
    workloads: WorkloadsOption = False,
    guided: Annotated[bool, typer.Option(
        "--guided", help="steer the search toward schedules that drive recovery further "
                         "(Hypothesis target() on the recovery stages a run reached)")] = False,
    generate: Annotated[bool, typer.Option(
        "--generate", help="instead of the planted bugs, let cosmic-ray mutate the worker's "
                           "recovery code and judge each mutant by scenario runs "
                           "(harness/mutation_engine.py); resumes its session")] = False,
    sample: Annotated[int, typer.Option(min=1, help="--generate: mutants to judge, drawn "
                                                    "from every one cosmic-ray can make")] = 60,
    scenario: Annotated[list[str] | None, typer.Option(
        help="--generate: a scenario that judges each mutant (repeat; default: the "
             "target's mutation scenarios)")] = None,
    session: Annotated[Path | None, typer.Option(
        help="--generate: the session folder (default .crashlab/mutation/<target>)")] = None,
    fresh: Annotated[bool, typer.Option(help="--generate: start a new session")] = False,
) -> None:
    """Explore each planted recovery bug; report killed/survived and time to detect.

    With --generate: a mutation score from cosmic-ray (see --sample, --budget, which is
    then the seconds per mutant for its scenarios, --scenario, --session, --fresh).
    """
    if generate:
        from harness.cli_mutate import generate as generated

        if names:
            err.print("[red]--generate takes no mutant names[/]")
            raise typer.Exit(EXIT_SETUP)
        generated(choose_target(target_flag)[0], sample=sample, seed=seed, budget_s=budget,
                  scenarios=scenario, session=session, fresh=fresh, as_json=as_json)
    from harness.explore.explorer import Exploration
    from harness.explore.mutation import hunt
    from harness.runner import RunResult
    from harness.target import MutantTarget

    name, project = choose_target(target_flag)
    try:
        target = load_target(name)
    except SetupError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None
    if not isinstance(target, MutantTarget):
        err.print(f"[red]target {name} ships no planted bugs[/]")
        raise typer.Exit(EXIT_SETUP)
    MUTANTS = target.mutants()  # noqa: N806 - the catalog, as a constant
    chosen = names or list(MUTANTS)
    unknown = [n for n in chosen if n not in MUTANTS]
    if unknown:
        err.print(f"[red]unknown mutant(s) {', '.join(unknown)}[/]; known: {', '.join(MUTANTS)}")
        raise typer.Exit(EXIT_SETUP)
    out = err if as_json else console

    def step(mutant: str, found: Exploration, result: RunResult) -> None:
        out.print(f"{mutant:<38} example {found.examples:>3}: {result.verdict}")

    outcomes = hunt(target, chosen, examples=examples, seed=seed, registry=registry_after_reaping(),
                    runs_root=runs, time_budget_s=budget, progress=step, workloads=workloads,
                    guided=guided)
    rows = [o.to_json() for o in outcomes]
    if as_json:
        print(json.dumps({"killed": sum(r["killed"] for r in rows), "mutants": len(rows),
                          "results": rows}, indent=2))
    else:
        table = Table(show_header=True, header_style="bold")
        for column in ("mutant", "killed", "examples", "seconds", "shrunk faults"):
            table.add_column(column)
        for row in rows:
            table.add_row(row["mutant"], "yes" if row["killed"] else "[red]SURVIVED[/]",
                          str(row["examples_to_first_failure"] or row["examples"]),
                          str(row["seconds_to_first_failure"] or row["duration_s"]),
                          str(row["shrunk_faults"] or "-"))
        console.print(table)
    raise typer.Exit(EXIT_OK if all(r["killed"] for r in rows) else EXIT_VIOLATION)
