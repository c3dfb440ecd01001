"""The ``crashlab`` command line. Thin: every command calls into the harness.

Exit codes (one place): 0 every invariant holds, 1 an invariant is violated,
2 inconclusive (a planned fault never fired, a job never settled), 3 setup
error (a binary, port or service is missing).
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from harness.cleanup import process_registry, reap_leftovers
from harness.cli_bench import bench_command
from harness.cli_explore import (
    TargetOption,
    choose_target,
    explore_command,
    mutants_command,
    replay_command,
)
from harness.cli_image import app as image_app
from harness.errors import (
    EXIT_INCONCLUSIVE,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_VIOLATION,
    CrashlabError,
    InconclusiveError,
    ScenarioError,
    SetupError,
)
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry, default_state_dir
from harness.project import catalog_for, resolve_for
from harness.runfolder import DEFAULT_ROOT, HISTORY_FILE, STATE_FILE, new_run_dir
from harness.target import Target

if TYPE_CHECKING:
    from harness.checkers.base import CheckResult
    from harness.turns import Turns


app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Chaos and fault-injection harness for Redis-backed job workers.")
console = Console()
err = Console(stderr=True)


def _registry() -> ProcessRegistry:
    """The process registry, after removing what an interrupted run left behind."""
    state_dir = default_state_dir()
    for leftover in reap_leftovers(state_dir):
        err.print(f"[yellow]removed a leftover of an interrupted run:[/] {leftover}")
    registry = process_registry(state_dir)
    atexit.register(registry.release_own)  # what an interrupt left unregistered
    return registry


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


@app.command()
def doctor() -> None:
    """Which binaries and services crashlab can use here, their versions, what to install."""
    rows: list[tuple[str, bool, str]] = []

    def version(argv: list[str]) -> str:
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"error: {exc}"
        text = (out.stdout or out.stderr).strip()
        return text.splitlines()[0] if text else ""

    for binary, argv, fix in [
        ("redis-server", ["redis-server", "--version"], "apt-get install redis-server"),
        ("toxiproxy-server", ["toxiproxy-server", "-version"],
         "scripts/setup.sh (go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0)"),
    ]:
        found = shutil.which(binary)
        rows.append((binary, found is not None, version(argv) if found else f"missing: {fix}"))
    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        rows.append(("ffmpeg (imageio-ffmpeg)", True, version([ffmpeg, "-version"])[:60]))
    except Exception as exc:  # noqa: BLE001 - report, don't crash the doctor
        rows.append(("ffmpeg (imageio-ffmpeg)", False,
                     f"missing: pip install imageio-ffmpeg ({exc})"))
    rows.append(_docker_row())
    for name, ok, detail in rows:
        console.print(f"{'[green]ok[/]  ' if ok else '[red]MISSING[/]'} {name:<26} {detail}")
    required_ok = all(ok for name, ok, _ in rows if name != "docker engine")
    raise typer.Exit(EXIT_OK if required_ok else EXIT_SETUP)


@app.command()
def demo(
    runs: Annotated[Path, typer.Option(help="folder for run folders")] = DEFAULT_ROOT,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Kill a real worker mid-transcription and prove the job recovers exactly."""
    from harness.demo import run_demo

    _configure_logging(verbose)
    registry = _registry()
    run_dir = new_run_dir("demo", runs)
    console.print(f"[bold]crashlab demo[/] (run folder {run_dir})")
    try:
        result = run_demo(run_dir, registry, console)
    except SetupError as exc:
        err.print(f"[red]setup error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    except InconclusiveError as exc:
        err.print(f"[yellow]inconclusive:[/] {exc}")
        raise typer.Exit(EXIT_INCONCLUSIVE) from None
    except CrashlabError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    if result.ok:
        console.print(f"[green bold]recovered:[/] job {result.job_id} completed with the exact "
                      f"transcript; no chunk transcribed or committed twice "
                      f"({result.seconds:.1f} s)")
        raise typer.Exit(EXIT_OK)
    console.print(f"[red bold]invariant violated[/] for job {result.job_id}")
    raise typer.Exit(EXIT_VIOLATION)


@app.command("list")
def list_scenarios(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    target: TargetOption = None,
) -> None:
    """The scenario catalog of a target: name, origin, faults."""
    try:
        name, project = choose_target(target)
        scenarios = catalog_for(name, project)
    except (ScenarioError, SetupError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None
    if as_json:
        print(json.dumps([{"name": s.name, "description": s.description, "origin": s.origin,
                           "faults": [f.kind for f in s.faults]} for s in scenarios.values()],
                         indent=2))
        return
    table = Table(show_header=True, header_style="bold")
    for column in ("scenario", "faults", "origin"):
        table.add_column(column)
    for s in scenarios.values():
        table.add_row(s.name, ", ".join(f.kind for f in s.faults) or "-", s.origin)
    console.print(table)


@app.command()
def run(
    scenarios: Annotated[list[str] | None, typer.Argument(
        help="catalog names or scenario files", show_default=False)] = None,
    all_: Annotated[bool, typer.Option(
        "--all", help="run the whole catalog but its soaks (tagged soak: run them by name)")
    ] = False,
    quick: Annotated[bool, typer.Option(
        "--quick", help="the catalog's scenarios tagged quick (under 30 s in all)")] = False,
    parallel: Annotated[int, typer.Option(
        min=1, help="run N scenarios at once, each in its own environment "
                    "(harness/parallel.py)")] = 1,
    repeat: Annotated[int, typer.Option(min=1, help="run each scenario N times")] = 1,
    seed: Annotated[int, typer.Option(help="seed of the first run (then seed+1, ...)")] = 1,
    runtime: Annotated[str, typer.Option(
        help="where workers run: process, or docker (containers of `crashlab image build`)")
    ] = "process",
    runs: Annotated[Path, typer.Option(help="folder for run folders")] = DEFAULT_ROOT,
    mutant: Annotated[str | None, typer.Option(
        help="attack a copy of the reference worker with this planted bug "
             "(see harness/packs/reference/mutants.py); the run should come out invalid")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON summary")] = False,
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="skip the HTML report of each run and the runs index")] = False,
    keep: Annotated[bool, typer.Option(
        "--keep-on-failure", help="when an invariant fails, keep the services up and print "
                                  "how to reach them, until Enter is pressed")] = False,
    target_flag: TargetOption = None,
    measure: Annotated[bool, typer.Option(
        "--coverage", help="line and branch coverage of the worker under the faults, recovery "
                           "code apart: coverage.json per run and over all (docs/running.md)")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run scenarios against the real worker and check every invariant."""
    from harness.runner import RunResult, run_scenario

    _configure_logging(verbose)
    from harness.runner import RUNTIMES

    if runtime not in RUNTIMES:
        err.print(f"[red]unknown runtime {runtime!r}[/]: known are {', '.join(RUNTIMES)}")
        raise typer.Exit(EXIT_SETUP)
    try:
        name, project = choose_target(target_flag)
        shipped = catalog_for(name, project)
        from harness.scenario import QUICK_TAG, runs_in_all

        chosen = runs_in_all(shipped) if all_ else \
            [resolve_for(n, name, project) for n in scenarios or []]
        if quick:
            chosen += [s for s in shipped.values() if QUICK_TAG in s.tags and s not in chosen]
        chosen = [project.with_settings(s) for s in chosen]
        target = _load(name, mutant)
        if measure:
            from harness.cli_coverage import measured_target

            target = measured_target(target, runtime, mutant)
    except (ScenarioError, SetupError) as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None
    if not chosen:
        err.print("nothing to run: name scenarios or pass --all (`crashlab list` shows them)")
        raise typer.Exit(EXIT_SETUP)
    if parallel > 1:
        from harness.cli_parallel import run_parallel_command

        raise typer.Exit(run_parallel_command(
            [s.name for s in chosen] if all_ else
            [*(scenarios or []), *(s.name for s in chosen[len(scenarios or []):])],
            repeat=repeat, seed=seed, workers=parallel, runs=runs, runtime=runtime,
            mutant=mutant, report=not no_report, as_json=as_json, out=err if as_json else console,
            err=err, target=name, measured=target if measure else None))
    registry = _registry()
    out = err if as_json else console
    if runtime == "docker":  # once, before the first scenario's clock starts
        from harness.cli_image import ensure_worker_image

        ensure_worker_image(out)
    results: list[RunResult] = []
    written: dict[Path, Path] = {}  # run folder -> its report
    total = len(chosen) * repeat
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=out,
                  transient=False) as bar:
        task = bar.add_task("scenarios", total=total)
        for number, scenario in enumerate(s for s in chosen for _ in range(repeat)):
            run_seed = seed + number

            def step(message: str, name: str = scenario.name) -> None:
                bar.update(task, description=f"{name}: {message}")
                if not out.is_terminal:  # a log (CI) gets no live bar: one line per step
                    bar.console.print(f"[dim]{escape(name)}: {escape(message)}[/]",
                                      soft_wrap=True)

            try:
                result = run_scenario(scenario, seed=run_seed, registry=registry,
                                      runs_root=runs, target=target, progress=step,
                                      runtime=runtime, hold=_keep(keep, out, bar))
            except (SetupError, ScenarioError) as exc:
                bar.stop()
                err.print(f"[red]setup error in {scenario.name}:[/] {exc}")
                raise typer.Exit(EXIT_SETUP) from None
            results.append(result)
            bar.advance(task)
            if measure:  # before the report, which shows it
                from harness.cli_coverage import after_run

                after_run(result.run_dir, target, bar.console, indent="         ")
            colour = {"valid": "green", "invalid": "red"}.get(result.verdict, "yellow")
            bar.console.print(f"[{colour}]{result.verdict:<8}[/] {scenario.name} "
                              f"({result.duration_s:.1f} s, faults fired {result.faults_fired}/"
                              f"{result.faults_planned}; {result.tally}) {result.run_dir}")
            for check in result.checks:
                if check.verdict != "valid":
                    bar.console.print(f"         {_check_line(check)}")
            for turns in result.turns:  # a repeat that fell behind its clock, in yellow
                bar.console.print(f"         {_turns_line(turns)}")
            if not no_report:
                written |= _write_run_reports([result.run_dir], None, bar.console,
                                              indent="         ") or {}
    if measure:
        from harness.cli_coverage import finish

        finish([r.run_dir for r in results], runs, target, out)
    # once, at the end: the index reads every run folder under the runs root
    index = _write_index(written, None) if written else None
    if index is not None:
        out.print(f"index of every run: {index}")
    code = _exit_code([r.verdict for r in results])
    if as_json:
        print(json.dumps({"verdict": ("valid", "invalid", "unknown")[code] if code < 3 else "",
                          "exit_code": code,
                          "scenarios": [r.to_json() for r in results]}, indent=2))
    raise typer.Exit(code)


def _turns_line(turns: Turns) -> str:
    """``kill_random f1: 73 of 149 turns, median gap 4.3 s (every 2 s asked)``."""
    return f"[yellow]{escape(turns.line())}[/]" if turns.behind else escape(turns.line())


def _load(name: str, mutant: str | None) -> Target:
    """The target named ``name``, with ``mutant`` planted if given."""
    return load_target(name, mutant=mutant)


def _keep(keep: bool, out: Console, bar: Progress) -> Callable[..., None] | None:
    """``--keep-on-failure``: the runner's hold (``harness.keep``), or None."""
    from harness.keep import keep_on_failure

    return keep_on_failure(out, progress=bar) if keep else None


@app.command()
def debug(
    what: Annotated[str, typer.Argument(
        metavar="SCENARIO|RUN_DIR",
        help="a catalog name, a scenario file, or a run folder (its stored schedule, seed "
             "and planted bug)")],
    break_at: Annotated[list[str] | None, typer.Option(
        "--break-at", metavar="POINT[#N]",
        help="stop the first worker to reach the N-th hit of this failpoint (repeatable); "
             "without any, stop where each of the scenario's kill_at_phase faults strikes")
    ] = None,
    script: Annotated[Path | None, typer.Option(
        help="read the commands from this file instead of the terminal (stdin is read "
             "when it is not a terminal)")] = None,
    no_faults: Annotated[bool, typer.Option(
        "--no-faults", help="drop the scenario's faults: only your break points and "
                            "commands")] = False,
    seed: Annotated[int | None, typer.Option(
        help="seed (default: the run folder's, else 1)")] = None,
    mutant: Annotated[str | None, typer.Option(
        help="debug a copy of the reference worker with this planted bug (see "
             "harness/packs/reference/mutants.py; default: the run folder's)")] = None,
    runs: Annotated[Path, typer.Option(help="folder for run folders")] = DEFAULT_ROOT,
    target_flag: TargetOption = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run a scenario and stop at break points with the worker paused, to look and act.

    At the prompt: where, job, events, calls to look; kill, restart, sever, heal to
    act; continue, step, break, finish to go on; help; quit. The end of the commands
    (Ctrl-D, a script's end) runs on as crashlab run would; Ctrl-C stops everything.
    Exit codes as crashlab run.
    """

    from harness.debug import DebugSession, load_debug_target
    from harness.debug_commands import command_source
    from harness.debug_stops import BreakSpec

    _configure_logging(verbose)
    try:
        name, project = choose_target(target_flag)
        chosen = load_debug_target(what, name, project)
        scenario, mutant = project.with_settings(chosen.scenario), mutant or chosen.mutant
        target = _load(chosen.target or name, mutant)
        breaks = [BreakSpec.parse(text, target.phases()) for text in break_at or []]
        # a transcript (not a terminal) gets room for the tables instead of 80 columns
        out = console if console.is_terminal else Console(width=120)
        source = command_source(script, out, interactive=sys.stdin.isatty(),
                                lines=sys.stdin, history_file=default_state_dir() / "debug_history")
        session = DebugSession(scenario, seed=seed if seed is not None else chosen.seed or 1,
                               registry=_registry(), console=out, source=source,
                               breaks=breaks, no_faults=no_faults, runs_root=runs,
                               target=target)
        if mutant:
            out.print(f"[dim]the worker runs with the planted bug {mutant}[/]")
        result = session.run()
    except CrashlabError as exc:
        err.print(f"[red]cannot debug {escape(what)}:[/] {escape(str(exc))}")
        raise typer.Exit(EXIT_SETUP) from None
    colour = {"valid": "green", "invalid": "red"}.get(result.verdict, "yellow")
    for check in result.checks:
        if check.verdict != "valid":
            out.print(_check_line(check))
    out.print(f"verdict: [bold {colour}]{result.verdict}[/] {scenario.name} (faults fired "
              f"{result.faults_fired}/{result.faults_planned}) {result.run_dir}", soft_wrap=True)
    raise typer.Exit(_exit_code([result.verdict]))


@app.command()
def analyze(
    run_dir: Annotated[Path, typer.Argument(help="a run folder, e.g. runs/latest")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Re-check a stored run from its history and final state; runs nothing."""
    from harness.checkers.base import combine, tally, tally_words
    from harness.runner import analyze as analyze_run

    if not (run_dir / HISTORY_FILE).is_file():
        err.print(f"[red]{run_dir} is not a run folder[/] (no history.jsonl)")
        raise typer.Exit(EXIT_SETUP)
    if not (run_dir / STATE_FILE).is_file():
        err.print(f"[yellow]{run_dir} has no state.json[/]: the run is still going or was "
                  "interrupted before its final state was saved; nothing to check")
        raise typer.Exit(EXIT_INCONCLUSIVE)
    try:
        checks, stored = analyze_run(run_dir.resolve())
    except CrashlabError as exc:
        err.print(f"[red]cannot analyze {run_dir}:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    verdict = combine(c.verdict for c in checks)
    if as_json:
        print(json.dumps({"verdict": str(verdict), "counts": tally(c.verdict for c in checks),
                          "checks": [c.to_json() for c in checks],
                          "stored_verdict": stored and stored.get("verdict")}, indent=2))
    else:
        for check in checks:
            console.print(f"{check.verdict:<8} {check.checker}: {check.witness}")
        console.print(f"verdict: [bold]{verdict}[/] ({tally_words(c.verdict for c in checks)})"
                      + (f" (stored: {stored['verdict']})" if stored else ""))
    raise typer.Exit(_exit_code([verdict]))


@app.command()
def report(
    run_dirs: Annotated[list[Path], typer.Argument(
        help="run folders, e.g. runs/latest", show_default=False)],
    out: Annotated[Path | None, typer.Option(
        help="write RUN.html per run and index.html here instead of report.html in each "
             "run folder and index.html in its runs folder")] = None,
) -> None:
    """Write a self-contained HTML report per run, and the index of every run beside them."""
    from reports import is_run_folder

    missing = [str(d) for d in run_dirs if not is_run_folder(d)]
    if missing:
        err.print(f"[red]not a run folder (no history.jsonl):[/] {', '.join(missing)}")
        raise typer.Exit(EXIT_SETUP)
    index = _write_reports(run_dirs, out, console)
    if index is None:
        raise typer.Exit(EXIT_SETUP)
    console.print(f"index:  {index}")


def _write_reports(run_dirs: list[Path], out: Path | None, say: Console,
                   indent: str = "") -> Path | None:
    """Each run's report, then the index of their runs folders (its path is returned)."""
    written = _write_run_reports(run_dirs, out, say, indent)
    return None if written is None else _write_index(written, out)


def _write_run_reports(run_dirs: list[Path], out: Path | None, say: Console,
                       indent: str = "") -> dict[Path, Path] | None:
    """Each run's report (run folder -> report); None if one cannot be written: a broken
    report is a warning, never a change to a run's verdict."""
    from reports import write_run_report

    written: dict[Path, Path] = {}
    try:
        for run_dir in (d.resolve() for d in run_dirs):
            target = None if out is None else out / f"{run_dir.name}.html"
            written[run_dir] = write_run_report(run_dir, target)
            say.print(f"{indent}report: {written[run_dir]}")
    except Exception as exc:  # noqa: BLE001 - a broken report must not hide the run's verdict
        err.print(f"[yellow]could not write the report:[/] {exc!r}")
        return None
    return written


def _write_index(written: dict[Path, Path], out: Path | None) -> Path | None:
    """The index of the runs folders of ``written`` (it reads every run in them)."""
    from reports import write_index

    roots = list(dict.fromkeys(d.parent for d in written))
    try:
        return write_index(roots, None if out is None else out / "index.html", written)
    except Exception as exc:  # noqa: BLE001 - a broken index must not hide the verdicts
        err.print(f"[yellow]could not write the index:[/] {exc!r}")
        return None


def _check_line(check: CheckResult) -> str:
    """One checker that did not hold, coloured by its verdict (not applicable in grey)."""
    colour = {"invalid": "red", "unknown": "yellow", "not_applicable": "dim"}.get(
        check.verdict, "green")
    return f"[{colour}]{check.verdict}[/] {check.checker}: {escape(check.witness)}"


def _exit_code(verdicts: list[str]) -> int:
    if "invalid" in verdicts:
        return EXIT_VIOLATION
    if "unknown" in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def _docker_row() -> tuple[str, bool, str]:
    """The doctor's line on the Docker engine: its version, or how to get one."""
    from harness.docker_engine import Engine

    try:
        with Engine.connect(timeout=10) as engine:
            return ("docker engine", True, engine.version())
    except SetupError:
        return ("docker engine", False, "not running: bash scripts/setup.sh --with-docker "
                "(only the docker runtime needs it)")


app.add_typer(image_app, name="image")


# exploration commands live in their own module; registered here, as the CLI's own
app.command("explore")(explore_command)
app.command("replay")(replay_command)
app.command("mutants")(mutants_command)
app.command("bench")(bench_command)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; everything this run started was stopped[/]")
        sys.exit(130)
if __name__ == "__main__":
    main()
