"""Keep a failed run's services up for a look (``--keep-on-failure``).

``keep_on_failure`` makes the ``hold`` that ``run_scenario`` (``harness.runner``)
calls once the run's history and final state are saved and before anything is
stopped. It runs the checkers on the saved files; if an invariant is violated
it prints how to reach everything the run started (``redis-cli`` on the data
Redis and through the proxy, the worker's API, the transcription service,
each worker's pid and log, the run folder) and waits until Enter is pressed,
stdin ends or Ctrl-C, after which the run tears down and is judged as usual.
``crashlab run`` and ``crashlab replay`` use it under ``--keep-on-failure``::

    result = run_scenario(..., hold=keep_on_failure(console, progress=bar))
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from harness.checkers.base import CheckResult, Verdict
from harness.environment import Environment
from harness.history import HISTORY_FILE
from harness.runner import judge

Hold = Callable[[Environment, Path], None]


def _wait_for_enter() -> None:
    try:
        sys.stdin.readline()
    except (OSError, ValueError):
        pass  # no stdin to wait on (closed, detached): go on at once


def keep_on_failure(console: Console, *, progress: Progress | None = None,
                    wait: Callable[[], object] = _wait_for_enter) -> Hold:
    """A ``hold`` that keeps an invalid run's services up until ``wait()`` returns.

    ``progress`` (a live rich progress bar) is stopped while waiting, so the
    text stays readable, and started again afterwards.
    """

    def hold(env: Environment, run_dir: Path) -> None:
        failed = [c for c in judge(run_dir) if c.verdict is Verdict.INVALID]
        if not failed:
            return
        if progress is not None:
            progress.stop()
        try:
            console.print(connection_table(env, run_dir, failed))
            console.print("[bold]Press Enter[/] to stop everything and finish the run "
                          "(Ctrl-C stops everything too).")
            wait()
        finally:
            if progress is not None:
                progress.start()

    return hold


def connection_table(env: Environment, run_dir: Path, failed: list[CheckResult]) -> Table:
    """How to reach what a run started, and what failed."""
    table = Table(title="invariant violated: the run's services are still up",
                  title_justify="left", title_style="bold red", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("how", overflow="fold")
    for check in failed:
        table.add_row(f"[red]{check.checker}[/]", check.witness)
    table.add_row("run folder", f"{run_dir}  ({HISTORY_FILE}, state.json, logs/)")
    table.add_row("replay, stopping", f"crashlab debug {run_dir}   (stops where its kills "
                                      "strike)")
    table.add_row("redis", f"redis-cli -p {env.redis.port}   (the data Redis itself)")
    if env.proxy is not None and env.proxy.slots:
        slots = env.proxy.slots
        first = next((slot for slot in slots if slot != "api"), slots[0])
        table.add_row("redis, as workers see it",
                      f"redis-cli -p {env.proxy.slot(first).listen_port}   (through {first}'s "
                      f"proxy; one each: {env.proxy.describe()}; Toxiproxy API "
                      f"{env.toxiproxy.api_url})")
    table.add_row("worker API", f"{env.api_url}/docs")
    table.add_row("transcription service", f"{env.transcription.base_url}  (call log "
                                           f"{env.transcription.call_log_path})")
    for worker in env.workers.values():
        alive = env.runtime.is_running(worker.handle)
        table.add_row(f"worker {worker.worker_id}",
                      f"{'running' if alive else 'exited'}, pid "
                      f"{env.runtime.pid(worker.handle)}, log "
                      f"{env.runtime.log_path(worker.handle)}, control {worker.control.url}")
    if env.api is not None:
        table.add_row("api log", str(run_dir / "logs" / "api.log"))
    return table
