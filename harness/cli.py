"""The ``crashlab`` command line. Thin: every command calls into the harness.

Exit codes (one place): 0 every invariant holds, 1 an invariant is violated,
2 inconclusive (a planned fault never fired, a job never settled), 3 setup
error (a binary, port or service is missing).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from harness.errors import CrashlabError, InconclusiveError, SetupError
from harness.procs import ProcessRegistry, default_state_dir
from harness.runfolder import DEFAULT_ROOT, new_run_dir

EXIT_OK, EXIT_VIOLATION, EXIT_INCONCLUSIVE, EXIT_SETUP = 0, 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Chaos and fault-injection harness for Redis-backed job workers.")
console = Console()
err = Console(stderr=True)


def _registry() -> ProcessRegistry:
    registry = ProcessRegistry(default_state_dir() / "procs")
    for leftover in registry.reap_leftovers():
        err.print(f"[yellow]removed a leftover of an interrupted run:[/] {leftover}")
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
    docker = shutil.which("docker")
    engine = docker is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=10).returncode == 0
    rows.append(("docker engine", engine, "answers" if engine else
                 "not running: scripts/setup.sh --with-docker (only the docker runtime needs it)"))
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


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; everything this run started was stopped[/]")
        sys.exit(130)
