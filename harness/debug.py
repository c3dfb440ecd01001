"""``crashlab debug``: run a scenario and stop, like a debugger, where it matters.

A session is the one run lifecycle (``harness.runner.Run``) with the debugger's hooks:
the same environment, the same history, and at the end the same collection of
the worker's events and the service's calls, the same final state and the same
checkers, so its verdict and exit code mean what ``run``'s do. What differs:

* The workload is submitted as in ``run``. The scenario's faults fire in order
  from a background thread, as in ``run``, except that no fault starts while
  the prompt is open (one already under way, e.g. a timed Redis cut, goes
  on). ``--no-faults`` drops them all, and with them the scenario's ``expect``
  (it describes their outcome): the default expectations are checked.
* The scenario's ``kill_at_phase`` faults are carried out by the debugger
  (``harness.debug_stops``): the worker stops where the fault strikes. Without
  ``--break-at`` each of them opens the prompt; with ``--break-at``, those a
  break names (same point and occurrence) open it and the others strike by
  themselves. At such a stop ``kill`` strikes (recorded as that fault; no
  replacement is started: ``restart`` one, or let the session top the workers
  up once the faults are done, as ``run`` does) and ``continue`` lets the
  worker go on, so the fault never fires and the verdict is at best unknown.
* Each other ``--break-at POINT[#N]`` stops the first worker process to reach
  the N-th hit of POINT (hits count per worker process, from when the break
  was set), once. A break may not share its point with a scenario fault other
  than ``kill_at_phase``: that fault pauses the point itself.
* Faults you cause are faults: ``kill`` (or ``restart`` of a live worker) and
  ``sever``/``heal`` record ``fault_planned``, ``fault_start`` and ``fault_heal``
  with ids ``debug-1``, ``debug-2``, ... (the kill's ``process_signal`` comes
  from the runtime), so fault coverage stays truthful. Such faults change how
  often a job is recovered, so the scenario's ``expect.retry_count`` is then
  not checked (the session says so); every other expectation is.
* When the faults are done the session heals them, tops the workers up to the
  scenario's count and waits for the jobs; when they settle the prompt opens a
  last time and ``continue`` runs the checkers. ``quit`` stops at once and
  checks what there is. The end of the commands (a script's end, Ctrl-D)
  finishes the run as ``run`` would: paused workers go on, planned kills
  strike, breaks no longer stop. Ctrl-C stops everything and checks nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rich.console import Console

from harness.checkers.base import Expectations
from harness.control_client import ControlError, FailpointHit
from harness.debug_commands import Action, Commands, CommandSource, Held, Settled
from harness.debug_faults import FaultThread
from harness.debug_stops import Arming, BreakSpec, DebugEnvironment, Outcome, Stop, StopKind
from harness.environment import TERMINAL, Environment, EnvironmentOptions, Worker
from harness.errors import DebugError
from harness.faults import Fault, FaultContext, fault_colour
from harness.history import HistoryWriter
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry
from harness.project import Project, resolve_for
from harness.runfolder import DEFAULT_ROOT, SCHEDULE_FILE
from harness.runner import Run, RunHooks, RunResult, check_phases, read_schedule
from harness.runtime.base import Runtime
from harness.scenario import ExpectSpec, Scenario
from harness.target import Target

log = logging.getLogger(__name__)


@dataclass
class OperatorFault:
    """A fault the person at the prompt caused (``debug-N``)."""

    fault_id: str
    kind: str
    open: bool = False  # a Redis cut not yet healed


@dataclass(frozen=True)
class DebugTarget:
    """What ``crashlab debug`` runs: a scenario, and from a run folder its seed and mutant."""

    scenario: Scenario
    seed: int | None = None
    mutant: str | None = None  # the planted bug the stored run ran (the target's mutants)
    target: str | None = None  # the target a stored run ran against


def load_debug_target(spec: str, target: str = "reference",
                      project: Project | None = None) -> DebugTarget:
    """A name in ``target``'s catalog or a scenario file, or a run folder: its stored
    schedule (and the target it ran against)."""
    path = Path(spec)
    if path.is_dir():
        schedule = path / SCHEDULE_FILE
        if not schedule.is_file():
            raise DebugError(f"{path} is not a run folder (no {SCHEDULE_FILE}); give a "
                             "scenario name, a scenario file or a run folder")
        stored = read_schedule(path)
        return DebugTarget(stored.scenario, stored.seed, stored.mutant, stored.target)
    return DebugTarget(resolve_for(spec, target, project))


class DebugSession(RunHooks):
    """One ``crashlab debug`` run: the run lifecycle (``harness.runner.Run``) with the
    debugger's hooks; see the module docstring for what it does."""

    def __init__(self, scenario: Scenario, *, seed: int, registry: ProcessRegistry,
                 console: Console, source: CommandSource, breaks: Sequence[BreakSpec] = (),
                 no_faults: bool = False, runs_root: Path = DEFAULT_ROOT,
                 target: Target | None = None) -> None:
        super().__init__()
        self.scenario = scenario
        self.seed = seed
        self.registry = registry
        self.console = console
        self.source = source
        self.runs_root = runs_root
        self.target: Target = target or load_target()
        check_phases(scenario, self.target)
        _refuse_the_clock(scenario, no_faults)
        self.arming = Arming()
        self.no_faults = no_faults
        self.nemesis = FaultThread(self.arming)
        self.breaks = self.nemesis.plan([] if no_faults else scenario.faults, breaks)
        self.faults, self.kills = self.nemesis.faults, self.nemesis.kills
        self.reserved = self.nemesis.reserved
        self.held: deque[Held] = deque()
        self.operator_faults: list[OperatorFault] = []
        self.finishing = False
        self.last_killed: str | None = None
        self.commands = Commands(self, console)
        self._cursor: dict[str, int] = {}
        self._settle_left = scenario.timeout_s
        self._topped_up = False
        self._run: Run | None = None

    # -- what the commands use -----------------------------------------------

    @property
    def env(self) -> DebugEnvironment:
        assert self._run is not None, "the session has not started"
        env = self._run.env
        assert isinstance(env, DebugEnvironment)
        return env

    @property
    def ctx(self) -> FaultContext:
        assert self._run is not None, "the session has not started"
        return self._run.ctx

    @property
    def history(self) -> HistoryWriter:
        assert self._run is not None, "the session has not started"
        return self._run.history

    def say(self, message: str) -> None:
        self.console.print(f"[dim]{message}[/]", highlight=False)

    def held_by(self, worker_id: str) -> Held | None:
        return next((h for h in self.held if h.worker.worker_id == worker_id), None)

    def jobs_terminal(self) -> bool:
        try:
            return all(self.env.snapshot(job_id).state in TERMINAL for job_id in self.env.jobs)
        except redis.RedisError:
            return False  # Redis is being restarted by a fault

    # -- the run: the lifecycle's hooks ----------------------------------------

    def run(self) -> RunResult:
        """Run the scenario with the prompt; returns the result, judged as ``run`` judges."""
        self._run = Run(self.scenario, seed=self.seed, registry=self.registry,
                        runs_root=self.runs_root, target=self.target, progress=self.say,
                        hooks=self)
        return self._run.execute()

    def plan_faults(self, run: Run) -> list[Fault]:
        return list(self.faults)

    def run_start(self, run: Run) -> dict[str, object]:
        return {"debug": {"breaks": [s.describe() for s in self.breaks]}}

    def opened(self, run: Run) -> None:
        self.console.print(f"[bold]crashlab debug[/] {self.scenario.name} (seed {self.seed}, "
                           f"run folder {run.run_dir})", highlight=False, soft_wrap=True)

    def environment(self, run: Run, runtime: Runtime, settings: dict[str, str]) -> Environment:
        return DebugEnvironment(self.arming, run.run_dir, self.target, runtime,
                                registry=self.registry, sink=run.history.record,
                                options=EnvironmentOptions(redis_aof=self.scenario.needs_aof,
                                                           s3=self.scenario.needs_s3,
                                                           worker_settings=settings))

    def before_workers(self, run: Run) -> None:
        run.cleanup.callback(self.heal_everything, "heal faults")
        run.cleanup.callback(self.nemesis.stop, "fault thread")
        for stop in self.breaks:
            self.arming.activate(stop, [])
        self.nemesis.announce(0, run.ctx)

    def drive(self, run: Run) -> str:
        self.commands.intro()
        self.nemesis.start(run.ctx)
        reason = self._loop()
        self.nemesis.stop()
        self.heal_everything()
        if self.no_faults and self.scenario.expect != ExpectSpec():
            self.say("--no-faults: checking the default expectations, not the scenario's "
                     "expect (it describes the outcome of its faults)")
        elif self.checked_expectations() != self.scenario.expectations():
            self.say(f"not checking expect.retry_count: the session added "
                     f"{', '.join(f.fault_id for f in self.operator_faults)}")
        return reason

    def expectations(self, run: Run) -> Expectations:
        return self.checked_expectations()

    def counted(self, run: Run) -> tuple[int, int]:
        return (len(self.faults) + len(self.operator_faults),
                self.nemesis.fired + len(self.operator_faults))

    def checked_expectations(self) -> Expectations:
        """The scenario's; the defaults under ``--no-faults`` (its ``expect`` describes the
        outcome of its faults); without ``retry_count`` once the operator added faults."""
        base = self.scenario.expectations()
        if self.no_faults:
            return Expectations(idempotency_keys_honoured=base.idempotency_keys_honoured,
                                max_retries=base.max_retries)
        if self.operator_faults and base.expect_retry_count is not None:
            return dataclasses.replace(base, expect_retry_count=None)
        return base

    # -- the loop --------------------------------------------------------------

    def _loop(self) -> str:
        """Run, stop, prompt, until the run is over; returns why it ended."""
        while True:
            event = self._run_until_stop()
            if isinstance(event, Settled) and self.finishing:
                return event.reason
            self.commands.show_event(event)
            action = self.commands.prompt(event)
            if action is Action.QUIT:
                return "quit at the debugger prompt"
            if isinstance(event, Settled):
                return event.reason

    def _run_until_stop(self) -> Held | Settled:
        """Let the workers run until one is held at a stop, or the jobs settle."""
        self.nemesis.running.set()
        last = time.monotonic()
        try:
            while True:
                self._poll()
                if self.held:
                    return self.held[0]
                now = time.monotonic()
                if self.nemesis.done.is_set():
                    if not self._topped_up:
                        self._after_faults()
                    elif self.jobs_terminal():
                        return Settled("settled", True)
                    else:
                        self._settle_left -= now - last
                        if self._settle_left <= 0:
                            return Settled(f"jobs still running after "
                                           f"{self.scenario.timeout_s:.0f}s", False)
                last = now
                time.sleep(0.05)
        finally:
            self.nemesis.running.clear()

    def _after_faults(self) -> None:
        """As ``run`` does once its faults are done: heal them, top the workers up."""
        self.nemesis.heal_all(self.ctx)
        self.ctx.upcoming = {}
        self.arming.set_upcoming([])
        self.say("faults done: workers topped up, waiting for the jobs to settle")
        self.env.top_up(self.scenario.workers)
        self._topped_up = True

    def heal_everything(self) -> None:
        self.nemesis.heal_all(self.ctx)
        self.heal_redis()

    # -- hits ----------------------------------------------------------------

    def _poll(self) -> None:
        """Do what the fault thread asked, then read every worker's new pause hits."""
        while True:
            try:
                request = self.nemesis.requests.get_nowait()
            except queue.Empty:
                break
            request()
        for worker in self.env.live_workers():
            worker_id = worker.worker_id
            if not self.arming.knows(worker_id):
                continue  # still starting: its hits wait for the next round
            try:
                hits = worker.control.hits(self._cursor.get(worker_id, 0), timeout=0.5)
            except ControlError:
                continue  # frozen (SIGSTOP) or just died
            for hit in hits:
                self._cursor[worker_id] = max(self._cursor.get(worker_id, 0), hit.id)
                stop = self.arming.match(worker_id, hit) if hit.action == "pause" else None
                log.debug("%s: hit %s#%d (%s) -> %s", worker_id, hit.point, hit.hit, hit.action,
                          stop and stop.describe())
                if stop is not None:
                    self._on_hit(worker, hit, stop)

    def _on_hit(self, worker: Worker, hit: FailpointHit, stop: Stop) -> None:
        if stop.spent:  # another worker reached this one-shot stop first
            self._release_point(worker, hit.point)
            return
        self.history.record("failpoint_hit", worker=worker.worker_id, point=hit.point,
                            hit=hit.hit, job=hit.job, chunk=hit.chunk, pid=hit.pid,
                            action=hit.action)
        if stop.kind is StopKind.KILL:
            stop.hit = hit
            if not stop.prompt or self.finishing:
                self._strike_as_planned(stop, worker, hit)
                return
        live = self.env.live_workers()
        self.arming.hold(worker.worker_id)
        for step in self.arming.steps_of(worker.worker_id):
            self.arming.spend(step, live)
        self.arming.spend(stop, live)
        self.held.append(Held(worker, hit, stop))

    def _release_point(self, worker: Worker, point: str) -> None:
        try:
            worker.control.release(point)
        except ControlError:
            pass  # gone: nothing is paused any more

    def _drop_held(self, worker_id: str) -> None:
        for held in [h for h in self.held if h.worker.worker_id == worker_id]:
            self.held.remove(held)

    # -- actions (the commands call these) -----------------------------------

    def release(self, held: Held) -> None:
        """Let a held worker go on from where it stopped."""
        self._drop_held(held.worker.worker_id)
        self.arming.let_go(held.worker, held.hit.point)
        self._release_point(held.worker, held.hit.point)
        if held.stop.kind is StopKind.KILL and not held.stop.resolved.is_set():
            held.stop.resolve(Outcome.RELEASED)

    def step(self, held: Held) -> None:
        """Let a held worker go on until it reaches its next failpoint, whatever it is."""
        points = tuple(p for p in self.target.phases()
                       if p not in self.reserved and p != "lease.renew")
        stop = Stop("step", StopKind.STEP, points, 1, only=held.worker.worker_id)
        self.arming.activate(stop, [held.worker])
        self.release(held)

    def strike(self, stop: Stop, worker: Worker, hit: FailpointHit, *, replace: bool) -> None:
        """Carry out a planned kill where it stopped, recorded as that fault."""
        assert stop.fault is not None
        self.arming.forget(worker.worker_id)
        self._drop_held(worker.worker_id)
        self.ctx.kill(worker)
        self.history.record("fault_start", fault_id=stop.stop_id, fault=stop.fault.kind,
                            params=stop.fault.model_dump(), worker=worker.worker_id,
                            job=hit.job, chunk=hit.chunk)
        self.arming.spend(stop, self.env.live_workers())
        if replace:
            self.ctx.replace(worker)
        self.history.record("fault_heal", fault_id=stop.stop_id)
        stop.resolve(Outcome.STRUCK)
        self.last_killed = worker.worker_id

    def _strike_as_planned(self, stop: Stop, worker: Worker, hit: FailpointHit) -> None:
        """A planned kill without the prompt: exactly what ``run`` does there."""
        assert stop.fault is not None
        self.strike(stop, worker, hit, replace=stop.fault.restart)
        self.say(f"{stop.stop_id}: SIGKILLed {worker.worker_id} at {hit.point} (hit {hit.hit})"
                 f"{', replacement started' if stop.fault.restart else ''}")

    def kill(self, worker: Worker) -> str:
        """SIGKILL a worker: the planned kill it is stopped at, or an operator fault."""
        held = self.held_by(worker.worker_id)
        if held is not None and held.stop.kind is StopKind.KILL \
                and not held.stop.resolved.is_set():
            self.strike(held.stop, worker, held.hit, replace=False)
            return held.stop.stop_id
        fault_id = f"debug-{len(self.operator_faults) + 1}"
        kind = "kill_at_phase" if held is not None else "kill_random"
        params: dict[str, Any] = {"by": "debugger", "worker": worker.worker_id}
        if held is not None:
            params |= {"point": held.hit.point, "occurrence": held.hit.hit, "restart": False}
        self.history.record("fault_planned", fault_id=fault_id, fault=kind, params=params,
                            colour=fault_colour(kind))
        self.operator_faults.append(OperatorFault(fault_id, kind))
        self.arming.forget(worker.worker_id)
        self._drop_held(worker.worker_id)
        self.ctx.kill(worker)
        self.history.record("fault_start", fault_id=fault_id, fault=kind, params=params,
                            worker=worker.worker_id, job=held.hit.job if held else None,
                            chunk=held.hit.chunk if held else None)
        self.history.record("fault_heal", fault_id=fault_id)
        self.last_killed = worker.worker_id
        return fault_id

    def restart(self, name: str) -> Worker:
        """The next incarnation of worker ``name`` (its live incarnation is killed first)."""
        base = name.split(".")[0]
        for worker in self.env.live_workers():
            if worker.worker_id.split(".")[0] == base:
                self.kill(worker)
        return self.ctx.start_worker(base)

    def sever_redis(self) -> str:
        proxy = self.env.proxy
        assert proxy is not None
        if not proxy.is_enabled():
            raise DebugError("Redis is already cut off; `heal` restores it")
        fault = OperatorFault(f"debug-{len(self.operator_faults) + 1}", "sever_redis", True)
        params = {"by": "debugger"}
        self.history.record("fault_planned", fault_id=fault.fault_id, fault=fault.kind,
                            params=params, colour=fault_colour(fault.kind))
        self.operator_faults.append(fault)
        proxy.disable()
        self.history.record("fault_start", fault_id=fault.fault_id, fault=fault.kind,
                            params=params)
        return fault.fault_id

    def heal_redis(self) -> list[str]:
        healed = []
        for fault in self.operator_faults:
            if fault.open:
                if self.env.proxy is not None:
                    self.env.proxy.enable()
                fault.open = False
                self.history.record("fault_heal", fault_id=fault.fault_id)
                healed.append(fault.fault_id)
        return healed

    def add_break(self, spec: BreakSpec) -> Stop:
        if spec.point in self.reserved:
            raise DebugError(f"the scenario's fault {self.reserved[spec.point]} pauses "
                             f"{spec.point} itself; break at another point")
        stop = Stop(f"b{len(self.breaks) + 1}", StopKind.BREAK, (spec.point,),
                    spec.occurrence)
        self.breaks.append(stop)
        self.arming.activate(stop, self.env.live_workers())
        return stop

    def finish(self) -> None:
        """From now on run as ``run`` would: no stop opens the prompt any more."""
        self.finishing = True
        live = self.env.live_workers()
        for stop in self.arming.active():
            if stop.kind is not StopKind.KILL:
                self.arming.spend(stop, live)
        for held in list(self.held):
            if held.stop.kind is StopKind.KILL and not held.stop.resolved.is_set():
                self._strike_as_planned(held.stop, held.worker, held.hit)
            else:
                self.release(held)
        if self._topped_up:
            self.env.top_up(self.scenario.workers)


def _refuse_the_clock(scenario: Scenario, no_faults: bool) -> None:
    """``DebugError`` for what runs by the clock: a debugger holds workers at its
    prompt for as long as it likes, and jobs that arrive or faults that fire on a
    timer would meet a run that is not going on."""
    if scenario.workload.rate is not None:
        raise DebugError(f"scenario {scenario.name} submits at a rate (workload.rate): "
                         "debug a scenario whose jobs are submitted at once")
    if scenario.supervise_s is not None:
        raise DebugError(f"scenario {scenario.name} restarts failed workers by the clock "
                         "(supervise_s): debug it without supervise_s")
    timed = [f"faults.{i}" for i, f in enumerate(scenario.faults) if f.timed]
    if timed and not no_faults:
        raise DebugError(f"scenario {scenario.name}: {', '.join(timed)} fire by the clock "
                         "(at_s/every_s), which a paused debugger cannot keep; pass "
                         "--no-faults, or break at the point such a fault would hit")
