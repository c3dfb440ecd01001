"""``crashlab image``: the worker image of the docker runtime (part of the CLI).

``crashlab image build`` makes the image ``harness.image`` describes (a
debootstrapped Debian base, the project from a wheelhouse made on this
host, no registry and no network inside the build) and shows each step;
it reuses an image that is up to date. ``crashlab image status`` says which
image a docker run would use, without building anything. Only the CLI
imports this module.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

from harness.errors import EXIT_OK, EXIT_SETUP, CrashlabError, SetupError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="The worker image of the docker runtime.")
console = Console()
err = Console(stderr=True)


@app.command()
def build(
    base: Annotated[str | None, typer.Option(
        help="build on this image (Python 3.11 with venv, e.g. python:3.11-slim) instead of "
             "the Debian base made here with debootstrap")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="build again even if an up-to-date image exists")] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="print every line of debootstrap, pip and docker build")] = False,
) -> None:
    """Build the worker image (or find it up to date) and print its name."""
    from harness.image import ensure_image

    started = time.monotonic()

    with console.status("checking the worker image") as status:

        def progress(line: str) -> None:
            elapsed = time.monotonic() - started
            if verbose or _is_step(line):
                console.print(f"[dim]{elapsed:6.1f}s[/] {line}", highlight=False)
            status.update(f"{elapsed:.0f}s {line[:100]}")

        try:
            result = ensure_image(progress=progress, base=base, force=force)
        except SetupError as exc:
            err.print(f"[red]cannot build the worker image:[/] {exc}")
            raise typer.Exit(EXIT_SETUP) from None
        except CrashlabError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(EXIT_SETUP) from None
    verb = "built" if result.built else "up to date:"
    console.print(f"[green]{verb}[/] {result.ref} ({result.seconds:.1f} s)")
    raise typer.Exit(EXIT_OK)


@app.command()
def status() -> None:
    """The image a docker run would use now, and whether it must be built first."""
    from harness.docker_engine import Engine
    from harness.image import IMAGE_ENV, current_ref

    try:
        with Engine.connect() as engine:
            ref, present = current_ref(engine)
    except CrashlabError as exc:
        err.print(f"[red]{exc}[/]")
        raise typer.Exit(EXIT_SETUP) from None
    if present:
        console.print(f"[green]up to date:[/] {ref}")
        raise typer.Exit(EXIT_OK)
    console.print(f"[yellow]not built yet:[/] {ref or 'the base image'}; "
                  f"`crashlab image build` makes it (or set {IMAGE_ENV})")
    raise typer.Exit(EXIT_SETUP)


def ensure_worker_image(out: Console) -> str:
    """For ``crashlab run --runtime docker``: the image, built first if needed (exit 3 if not)."""
    from harness.image import ensure_image

    try:
        with out.status("worker image") as status:
            result = ensure_image(progress=lambda line: status.update(
                f"worker image: {line[:100]}"))
    except CrashlabError as exc:
        err.print(f"[red]cannot get the worker image:[/] {exc}")
        raise typer.Exit(EXIT_SETUP) from None
    if result.built:
        out.print(f"built the worker image {result.ref} ({result.seconds:.0f} s)")
    return result.ref


def _is_step(line: str) -> bool:
    """The lines worth keeping on screen; the rest scroll by in the status line."""
    return line.startswith(("debootstrap ", "packing ", "docker import ", "building ",
                            "wheelhouse:", "Step ", "removed ", "built ", "worker image "))
