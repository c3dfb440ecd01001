"""The prompt of ``crashlab debug``: where commands come from and what each one does.

Commands come from a ``CommandSource``: the terminal (``input()`` with
readline's line editing and a history kept between sessions), or a script (a
file, or stdin when it is not a terminal) whose lines are echoed after the
prompt, so a transcript reads like a terminal session. Blank lines and lines
starting with ``#`` are skipped. The end of the source (Ctrl-D, the script's
last line) finishes the run as ``crashlab run`` would.

``Commands`` parses a line, asks the session (``harness.debug``) to act or
gathers what to show, prints it through ``harness.debug_view``, and tells the
session whether to stay at the prompt or go on. A command that cannot be done
prints one line saying why, an unknown one a hint; neither ends the session.
The commands are listed in ``HELP``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.control_client import ControlError, FailpointHit
from harness.debug_stops import BreakSpec, Stop, StopKind
from harness.debug_view import (
    PROMPT,
    WorkerRow,
    calls_table,
    events_table,
    help_table,
    inspection_tables,
    jobs_table,
    lease_text,
    ledger_table,
    show,
    snapshot_tables,
    where_table,
)
from harness.environment import Worker
from harness.errors import DebugError
from harness.ledger import read_ledger
from harness.target import InspectableTarget

if TYPE_CHECKING:
    from harness.debug import DebugSession

log = logging.getLogger(__name__)

HELP: tuple[tuple[str, str], ...] = (
    ("where", "every worker: pid, where it is stopped, its job, chunk, epoch, phase, lease"),
    ("job [ID]", "a job's Redis state: record, indexes, lease, chunk plan and commits"),
    ("events [N] [ID|all]", "the job's last N events (default 12)"),
    ("calls [N]", "the last N billable calls (the transcription service's), or the last N "
                  "lines of the effects ledger (a pack's jobs)"),
    ("kill [WORKER]", "SIGKILL the worker (default: the one stopped here), as a scenario does"),
    ("continue, c", "let the stopped worker go on, until the next stop"),
    ("step, s", "let it go on until it reaches its next failpoint"),
    ("sever, heal", "cut the workers' Redis connection (Toxiproxy), restore it"),
    ("restart [WORKER]", "start the worker's next incarnation (killing the live one first)"),
    ("break POINT[#N]", "stop the first worker to reach the N-th hit of POINT from now"),
    ("points", "the failpoints and what the worker does at each"),
    ("finish", "stop stopping: run to the end as `crashlab run` would, then check"),
    ("help", "this list"),
    ("quit, q", "stop everything now and check the run as it is"),
)


class Action(StrEnum):
    """What the session does once a command is done (None: stay at the prompt)."""

    CONTINUE = "continue"
    FINISH = "finish"
    QUIT = "quit"


@dataclass(frozen=True)
class Held:
    """A worker the session holds paused at a stop."""

    worker: Worker
    hit: FailpointHit
    stop: Stop


@dataclass(frozen=True)
class Settled:
    """No worker is stopped and the faults are done: the jobs settled, or ran out of time."""

    reason: str
    settled: bool


Event = Held | Settled
Handler = Callable[[list[str], Event], Action | None]


class CommandSource(Protocol):
    def read(self) -> str | None:
        """The next command, or None when there are no more."""
        ...


class ScriptSource:
    """Commands from lines of text (a file, or stdin), each echoed after the prompt."""

    def __init__(self, lines: Iterable[str], console: Console) -> None:
        self._lines = iter(lines)
        self.console = console

    def read(self) -> str | None:
        for raw in self._lines:
            line = raw.strip()
            if line and not line.startswith("#"):
                self.console.print(PROMPT + line, markup=False, highlight=False)
                return line
        return None


class TerminalSource:
    """Commands typed at a terminal, with line editing and history (``readline``)."""

    def __init__(self, history_file: Path | None = None) -> None:
        import readline

        self._readline = readline
        self.history_file = history_file
        readline.set_history_length(1000)
        if history_file is not None and history_file.is_file():
            try:
                readline.read_history_file(history_file)
            except OSError:
                log.warning("cannot read the command history %s", history_file)

    def read(self) -> str | None:
        try:
            line = input(PROMPT)
        except EOFError:
            print()
            return None
        if self.history_file is not None:
            try:
                self.history_file.parent.mkdir(parents=True, exist_ok=True)
                self._readline.write_history_file(self.history_file)
            except OSError:
                log.warning("cannot save the command history to %s", self.history_file)
        return line


def command_source(script: Path | None, console: Console, *, interactive: bool,
                   lines: Iterable[str], history_file: Path | None = None) -> CommandSource:
    """A script file if given; else the terminal if ``interactive``; else ``lines`` (stdin)."""
    if script is not None:
        try:
            text = script.read_text(encoding="utf-8")
        except OSError as exc:
            raise DebugError(f"cannot read the command script {script}: {exc.strerror}") from None
        return ScriptSource(text.splitlines(), console)
    if interactive:
        return TerminalSource(history_file)
    return ScriptSource(lines, console)


class Commands:
    """Runs one command line at a time against a ``DebugSession``."""

    def __init__(self, session: DebugSession, console: Console) -> None:
        self.session = session
        self.console = console
        self._handlers: dict[str, Handler] = {
            "where": self.where, "w": self.where, "job": self.job, "events": self.events,
            "calls": self.calls, "kill": self.kill, "continue": self.cont, "c": self.cont,
            "step": self.step, "s": self.step, "sever": self.sever, "heal": self.heal,
            "restart": self.restart, "break": self.set_break, "b": self.set_break,
            "points": self.points, "finish": self.finish, "help": self.help, "?": self.help,
            "quit": self.quit, "q": self.quit, "exit": self.quit,
        }

    # -- the prompt ----------------------------------------------------------

    def intro(self) -> None:
        session = self.session
        stops = [k.stop.describe() + ("" if k.stop.prompt else ", strikes by itself")
                 for k in session.kills] + [b.describe() for b in session.breaks]
        self.console.print("stops: " + escape("; ".join(stops) if stops else "none (add one "
                                               "with --break-at POINT[#N])"), highlight=False)
        self.console.print("[dim]running; at a stop, type help for the commands "
                           "(Ctrl-C stops everything)[/]")

    def show_event(self, event: Event) -> None:
        if isinstance(event, Settled):
            if event.settled:
                self.console.print("[bold green]every job settled[/]: look around, then "
                                   "continue to check the run")
            else:
                self.console.print(f"[bold red]{event.reason}[/]: continue checks the run "
                                   "as it is")
            return
        hit, stop = event.hit, event.stop
        self.console.print(
            f"[bold yellow]stopped:[/] {event.worker.worker_id} (pid {hit.pid}) paused at "
            f"[bold]{hit.point}[/] · job {hit.job or '-'} chunk "
            f"{'-' if hit.chunk is None else hit.chunk}", highlight=False, soft_wrap=True)
        self.console.print(f"  {escape(stop.describe())}", highlight=False, soft_wrap=True)
        if stop.kind is StopKind.KILL:
            self.console.print(f"  the scenario SIGKILLs the worker here: kill does it; "
                               f"continue lets it go on and {stop.stop_id} never fires",
                               highlight=False)

    def prompt(self, event: Event) -> Action:
        """Read and run commands until one lets the session go on."""
        while True:
            line = self.session.source.read()
            if line is None:
                self.console.print("[dim]end of commands: finishing the run as "
                                   "`crashlab run` would[/]")
                self.session.finish()
                return Action.FINISH
            action = self.execute(line, event)
            if action is not None:
                return action

    def execute(self, line: str, event: Event) -> Action | None:
        words = line.split()
        if not words:
            return None
        handler = self._handlers.get(words[0].lower())
        if handler is None:
            self.console.print(escape(f"unknown command {words[0]!r}: type help for the list"),
                               highlight=False)
            return None
        try:
            return handler(words[1:], event)
        except Exception as exc:  # noqa: BLE001 - a command that fails never ends the session
            log.debug("command %r failed", line, exc_info=exc)
            self.console.print(f"[red]{escape(words[0])}:[/] {escape(str(exc))}",
                               highlight=False)
            return None

    # -- looking -------------------------------------------------------------

    def where(self, args: list[str], event: Event) -> None:
        session = self.session
        media = isinstance(session.target, InspectableTarget)
        show(self.console, [where_table(self._worker_rows(), media=media),
                            jobs_table([session.env.snapshot(j) for j in session.env.jobs],
                                       {j: self._lease(j) for j in session.env.jobs},
                                       media=media)])

    def job(self, args: list[str], event: Event) -> None:
        job_id = self._job(args[0] if args else None, event)
        target, env = self.session.target, self.session.env
        if isinstance(target, InspectableTarget):
            show(self.console, inspection_tables(target.inspect(env.client, job_id)))
        else:
            show(self.console, snapshot_tables(env.snapshot(job_id)))

    def events(self, args: list[str], event: Event) -> None:
        limit = self._count(args[0]) if args and args[0].isdigit() else 12
        rest = args[1:] if args and args[0].isdigit() else args
        job_id = None if rest and rest[0] == "all" else self._job(rest[0] if rest else None,
                                                                  event)
        self.console.print(events_table(self.session.env.events(), limit, job_id))

    def calls(self, args: list[str], event: Event) -> None:
        limit = self._count(args[0]) if args else 12
        env = self.session.env
        if env.transcription.is_running():
            self.console.print(calls_table(env.transcription.calls(), limit))
        else:  # a pack's jobs: what they recorded in the effects ledger
            self.console.print(ledger_table(read_ledger(env.ledger_path), limit))

    def points(self, args: list[str], event: Event) -> None:
        table = Table(title="failpoints", show_header=False, box=None, title_justify="left")
        table.add_column("point", style="bold")
        table.add_column("what the worker is doing there")
        for point, does in self.session.target.phases().items():
            table.add_row(point, does)
        self.console.print(table)

    def help(self, args: list[str], event: Event) -> None:
        self.console.print(help_table(HELP))

    # -- acting --------------------------------------------------------------

    def kill(self, args: list[str], event: Event) -> None:
        worker = self._worker(args, event)
        pid = self.session.env.runtime.pid(worker.handle)
        fault_id = self.session.kill(worker)
        self.console.print(f"SIGKILLed {worker.worker_id} (pid {pid}), recorded as fault "
                           f"{fault_id}", highlight=False)

    def cont(self, args: list[str], event: Event) -> Action:
        if isinstance(event, Held) and self.session.held_by(event.worker.worker_id) is event:
            self.session.release(event)
        return Action.CONTINUE

    def step(self, args: list[str], event: Event) -> Action | None:
        if not isinstance(event, Held) or self.session.held_by(event.worker.worker_id) is None:
            raise DebugError("no worker is stopped here to step; continue runs on")
        self.session.step(event)
        return Action.CONTINUE

    def sever(self, args: list[str], event: Event) -> None:
        fault_id = self.session.sever_redis()
        self.console.print(f"Redis cut off from the workers (fault {fault_id}); heal "
                           "restores it", highlight=False)

    def heal(self, args: list[str], event: Event) -> None:
        healed = self.session.heal_redis()
        self.console.print(f"healed {', '.join(healed)}: Redis reachable again" if healed
                           else "nothing to heal", highlight=False)

    def restart(self, args: list[str], event: Event) -> None:
        session = self.session
        if args:
            name = args[0]
        elif isinstance(event, Held) and session.env.runtime.is_running(event.worker.handle):
            name = event.worker.worker_id
        else:
            name = session.last_killed or "w1"
        worker = session.restart(name)
        self.console.print(f"started {worker.worker_id} (pid "
                           f"{session.env.runtime.pid(worker.handle)})", highlight=False)

    def set_break(self, args: list[str], event: Event) -> None:
        if len(args) != 1:
            raise DebugError("usage: break POINT[#N], e.g. break chunk.committed#2 "
                             "(points lists them)")
        stop = self.session.add_break(BreakSpec.parse(args[0], self.session.target.phases()))
        self.console.print(f"{stop.describe()} set: hits count from now in every worker",
                           highlight=False)

    def finish(self, args: list[str], event: Event) -> Action:
        self.session.finish()
        return Action.FINISH

    def quit(self, args: list[str], event: Event) -> Action:
        return Action.QUIT

    # -- arguments and data --------------------------------------------------

    @staticmethod
    def _count(text: str) -> int:
        if not text.isdigit() or int(text) < 1:
            raise DebugError(f"expected a count from 1, got {text!r}")
        return int(text)

    def _job(self, prefix: str | None, event: Event) -> str:
        jobs = list(self.session.env.jobs)
        if prefix is None:
            if isinstance(event, Held) and event.hit.job:
                return event.hit.job
            if not jobs:
                raise DebugError("no job was submitted")
            return jobs[0]
        found = [j for j in jobs if j.startswith(prefix)]
        if len(found) != 1:
            raise DebugError(f"{'no' if not found else 'more than one'} job starts with "
                             f"{prefix!r}; jobs: {', '.join(jobs)}")
        return found[0]

    def _worker(self, args: list[str], event: Event) -> Worker:
        env = self.session.env
        live = env.live_workers()
        if not args:
            if isinstance(event, Held) and event.worker in live:
                return event.worker
            raise DebugError(f"name a worker: {', '.join(w.worker_id for w in live) or 'none'}"
                             " is alive")
        for worker in live:
            if args[0] in (worker.worker_id, worker.worker_id.split(".")[0]):
                return worker
        raise DebugError(f"no live worker {args[0]!r}; alive: "
                         f"{', '.join(w.worker_id for w in live) or 'none'}")

    def _lease(self, job_id: str, worker_id: str | None = None) -> str:
        """Who holds the job's lease and for how long; for ``worker_id``'s row, how long."""
        target = self.session.target
        if not isinstance(target, InspectableTarget):
            return ""
        job = target.inspect(self.session.env.client, job_id)
        mine = worker_id is not None and (job.lease_holder or "").split("|")[0] == worker_id
        if mine and job.lease_ttl_ms is not None:
            return f"{job.lease_ttl_ms} ms"
        return lease_text(job.lease_holder, job.lease_ttl_ms)

    def _worker_rows(self) -> list[WorkerRow]:
        session = self.session
        runtime = session.env.runtime
        rows: list[WorkerRow] = []
        for worker in session.env.workers.values():
            pid = runtime.pid(worker.handle)
            if not runtime.is_running(worker.handle):
                rows.append(WorkerRow(worker.worker_id, pid,
                                      f"exited {runtime.exit_status(worker.handle)}", ""))
                continue
            held = session.held_by(worker.worker_id)
            at = f"{held.hit.point} ({held.stop.stop_id})" if held else ""
            state = "paused" if held else "running"
            try:
                jobs = worker.control.status(timeout=0.5).get("jobs") or {}
            except ControlError:
                rows.append(WorkerRow(worker.worker_id, pid, "no answer (frozen?)", at))
                continue
            if not jobs:  # a worker that does not report its jobs: the job of its stop
                rows.append(WorkerRow(worker.worker_id, pid, state, at,
                                      held.hit.job if held is not None else None))
            for job_id, info in jobs.items():
                here = held is not None and held.hit.job == job_id
                # the worker reports its phase as POINT#CHUNK: the chunk gets its column,
                # so the text is not read as a break's POINT#N (an occurrence)
                phase, _, chunk = str(info.get("phase") or "").partition("#")
                rows.append(WorkerRow(worker.worker_id, pid, state, at, job_id,
                                      held.hit.chunk if here and held else
                                      int(chunk) if chunk.isdigit() else None,
                                      info.get("epoch"), phase or None,
                                      self._lease(job_id, worker.worker_id)))
        return rows
