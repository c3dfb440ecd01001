"""Run one scenario end to end and judge it from what was recorded.

``Run`` is the one run lifecycle, and every command drives it: ``run``,
``replay``, ``explore`` (in a ``Session`` of long-lived services), ``bench``
and the pytest plugin through ``run_scenario`` with the default ``RunHooks``,
``debug`` with hooks of its own. One path, top to bottom: make the run
folder, start the environment (every teardown pushed on a ``Cleanup``), start
the workers, submit the workload, fire the schedule's faults in order, heal
them all, top the workers back up, wait for every job to settle, collect what
the target recorded (events, service call logs, the effects ledger) into the
history, snapshot the final state, tear everything down, and only then run
the target's checkers on the saved files. ``analyze`` re-runs the checkers on
a stored run folder without starting anything.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from harness.checkers import run_checkers
from harness.checkers.base import CheckResult, Expectations, combine
from harness.cleanup import Cleanup
from harness.environment import Environment, EnvironmentOptions, record_nothing
from harness.errors import ScenarioError, SetupError
from harness.faults import Fault, FaultContext, build_fault, fault_colour
from harness.faults.registry import FaultSpecModel
from harness.history import (
    HISTORY_FILE,
    STATE_FILE,
    HistoryWriter,
    load_history,
    load_state,
    save_state,
)
from harness.nemesis import Arrivals, TimedNemesis, check_repeats
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry
from harness.result import RunResult as RunResult  # re-exported
from harness.runfolder import DEFAULT_ROOT, new_run_dir
from harness.runfolder import RESULTS_FILE as RESULTS_FILE  # re-exported
from harness.runfolder import SCHEDULE_FILE as SCHEDULE_FILE  # re-exported
from harness.runtime.base import EventSink, Runtime
from harness.runtime.process import ProcessRuntime
from harness.scenario import Scenario
from harness.service_behaviour import check_service, configure_service
from harness.target import Target
from harness.turns import Turns

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 5.0
"""How often a long wait says how far the run got."""

RUNTIMES = ("process", "docker")
Progress = Callable[[str], None]


@dataclass(frozen=True)
class StoredSchedule:
    """What a run folder's ``schedule.json`` says: enough to run it again exactly."""

    scenario: Scenario
    seed: int
    target: str
    mutant: str | None  # the planted bug it ran against (``harness.packs.reference.mutants``)


def read_schedule(run_dir: Path) -> StoredSchedule:
    """The stored schedule of ``run_dir``; ``OSError``, ``ValueError`` (a pydantic
    ``ValidationError`` is one) or ``KeyError`` when it is missing or unreadable."""
    stored = json.loads((run_dir / SCHEDULE_FILE).read_text())
    return StoredSchedule(Scenario.model_validate(stored["scenario"]), int(stored["seed"]),
                          str(stored.get("target", "reference")), stored.get("mutant"))


def check_phases(scenario: Scenario, target: Target) -> None:
    phases = target.phases()
    for index, fault in enumerate(scenario.faults):
        point = getattr(fault, "point", None)
        if point is not None and point not in phases:
            raise ScenarioError(f"scenario {scenario.name}: faults.{index}.point: unknown phase "
                                f"{point!r} for target {target.name}; known phases: "
                                f"{', '.join(phases)}")


class Session:
    """Services kept up across many runs (exploration), reset between them.

    Starting Redis, Toxiproxy, the transcription service and the API costs
    about two seconds; an exploration runs hundreds of schedules, so it starts
    them once. Between runs every worker is stopped, the proxy healed, the
    worker's keys and the service's results and call log cleared, and (with
    ``s3``, for upload workloads) the growing-file writers stopped and the
    bucket emptied of objects and multipart uploads. Redis runs
    with AOF so that ``restart_redis`` schedules work in any session. Workers
    are forked from a fork server that has the target's ``worker_preload``
    imported (``harness.runtime.forkserver``), so each starts in milliseconds.
    """

    def __init__(self, root: Path, target: Target, registry: ProcessRegistry,
                 worker_settings: dict[str, str], *, s3: bool = False) -> None:
        self.target = target
        self.runtime = ProcessRuntime(root, registry, fork_server=True,
                                      preload=getattr(target, "worker_preload", ()))
        worker_settings = {**target.default_settings, **worker_settings}
        self.env = Environment(root, target, self.runtime, registry=registry,
                               options=EnvironmentOptions(redis_aof=True, s3=s3,
                                                          worker_settings=worker_settings))

    def start(self) -> Session:
        self.env.start()
        return self

    def reset(self) -> None:
        self.runtime.stop_all(grace=1.0)
        self.env.heal_proxies()
        if not self.env.redis.is_running():
            self.env.redis.restart()
        if self.env.transcription.is_running():
            self.env.transcription.clear_faults()
            self.env.transcription.reset()
        self.env.target.reset(self.env.client)  # a pack resets its own services here too
        self.env.ledger_path.unlink(missing_ok=True)
        self.env.reset_uploads()
        self.env.forget_jobs()

    def close(self) -> None:
        try:
            self.env.close()
        finally:
            self.runtime.close()  # the fork server, after the workers


def make_runtime(kind: str, run_dir: Path, registry: ProcessRegistry, *,
                 on_event: EventSink | None = None,
                 progress: Progress | None = None) -> Runtime:
    """The runtime named ``kind`` (one of ``RUNTIMES``) for one run folder.

    ``docker`` first makes sure the worker image is up to date with this
    checkout (``harness.image``), building it if needed.
    """
    if kind == "process":
        return ProcessRuntime(run_dir, registry, on_event=on_event)
    if kind == "docker":
        from harness.docker_engine import Engine
        from harness.image import ensure_image
        from harness.runtime.docker import DockerRuntime

        engine = Engine.connect()
        try:
            image = ensure_image(engine=engine, progress=progress)
            return DockerRuntime(run_dir, image.ref, engine=engine, on_event=on_event)
        except BaseException:
            engine.close()
            raise
    raise SetupError(f"unknown runtime {kind!r}; known: {', '.join(RUNTIMES)}")


def run_scenario(scenario: Scenario, *, seed: int, registry: ProcessRegistry,
                 runs_root: Path = DEFAULT_ROOT, target: Target | None = None,
                 progress: Progress | None = None, session: Session | None = None,
                 runtime: str = "process",
                 hold: Callable[[Environment, Path], None] | None = None) -> RunResult:
    """Run one scenario and judge it; with ``session``, reuse its running services.

    ``runtime`` says where the workers run (``RUNTIMES``); a session brings its own.
    ``hold(env, run_dir)`` is called once the history and final state are saved,
    before anything is stopped (``harness.keep``: keep a failed run up for a look).
    """
    return Run(scenario, seed=seed, registry=registry, runs_root=runs_root, target=target,
               progress=progress, session=session, runtime=runtime,
               hooks=RunHooks(hold=hold)).execute()


class RunHooks:
    """What a command changes in the one run lifecycle (``Run``); the defaults are
    ``crashlab run``'s. ``crashlab debug`` overrides them (``harness.debug``);
    ``explore``, ``replay``, ``bench`` and the pytest plugin use the defaults."""

    def __init__(self, *, hold: Callable[[Environment, Path], None] | None = None) -> None:
        self._hold = hold

    def plan_faults(self, run: Run) -> list[Fault]:
        """The schedule's faults, built from the scenario."""
        return [build_fault(f"f{i + 1}", spec) for i, spec in enumerate(run.scenario.faults)]

    def run_start(self, run: Run) -> dict[str, object]:
        """Extra fields of the history's ``run_start`` entry."""
        return {}

    def opened(self, run: Run) -> None:
        """The run folder and the history exist; nothing is started yet."""

    def environment(self, run: Run, runtime: Runtime, settings: dict[str, str]) -> Environment:
        """The environment of a run without a session."""
        return Environment(run.run_dir, run.target, runtime, registry=run.registry,
                           sink=run.history.record,
                           options=EnvironmentOptions(redis_aof=run.scenario.needs_aof,
                                                      s3=run.scenario.needs_s3,
                                                      worker_settings=settings))

    def before_workers(self, run: Run) -> None:
        """The services run; arm what the first fault in order needs in the first
        workers (timed faults arm their own points when their turn comes)."""
        if phased := _phased(run.faults):
            run.ctx.upcoming = phased[0].points()
            _prearm(phased[0], run.ctx)

    def drive(self, run: Run) -> str:
        """Fire the faults in order while the timed ones fire by the clock
        (``harness.nemesis``), stop the nemesis, heal every fault, top the workers up
        and wait for the jobs; returns why the run ended."""
        ctx, scenario = run.ctx, run.scenario
        nemesis = TimedNemesis(run.faults, run.env, run.history.record, run.seed,
                               scenario.phase_timeout_s, supervise_s=scenario.supervise_s)
        run.cleanup.callback(nemesis.stop, "timed faults")
        run.cleanup.callback(lambda: heal_all(nemesis.all_fired(), ctx), "heal timed faults")
        run.nemesis = nemesis
        nemesis.start()
        faults = _phased(run.faults)
        for index, fault in enumerate(faults):
            ctx.upcoming = faults[index + 1].points() if index + 1 < len(faults) else {}
            if index > 0:
                _prearm(fault, ctx)
            run.say(f"fault {fault.fault_id}: {fault.describe()['kind']}")
            if ctx.fire(fault):
                run.fired += 1
            else:
                run.history.record("fault_skipped", fault_id=fault.fault_id,
                                   reason=ctx.skip_reason())
        ctx.upcoming = {}
        if nemesis.timed:
            run.wait(_nemesis_end(run), "timed faults firing",
                     scenario.time_limit_s or scenario.timeout_s)
        nemesis.stop()
        if run.arrivals is not None:
            run.wait(run.arrivals.done.is_set, "jobs arriving", scenario.timeout_s)
            run.arrivals.join()
        heal_all([*run.faults, *nemesis.all_fired()], ctx)
        run.env.top_up(scenario.workers)
        if run.wait(lambda: run.env.wait_terminal(0.0), "waiting for jobs to settle",
                    scenario.timeout_s):
            return "settled"
        return f"jobs still running after {scenario.timeout_s:.0f}s"

    def expectations(self, run: Run) -> Expectations:
        return run.scenario.expectations()

    def counted(self, run: Run) -> tuple[int, int]:
        """Faults planned (a timed fault's repeats each count) and fired, for the result."""
        repeats = 0 if run.nemesis is None else run.nemesis.planned - len(run.nemesis.timed)
        return len(run.faults) + repeats, run.fired + (run.nemesis.fired if run.nemesis else 0)

    def hold(self, run: Run) -> None:
        """The history and final state are saved; everything still runs."""
        if self._hold is not None:
            self._hold(run.env, run.run_dir)


class Run:
    """One run of a scenario against a target, the lifecycle every command drives.

    ``execute`` goes top to bottom: check the scenario against the target, make
    the run folder and its schedule, open the history, start the environment
    (or reset a session's), start the first workers, submit the workload,
    ``hooks.drive`` (faults, healing, settling), save the final state while
    everything still runs, tear down, and only then judge the saved files.
    Every teardown is pushed on a ``Cleanup``, so each exit path (Ctrl-C, a
    harness error) stops what was started.
    """

    def __init__(self, scenario: Scenario, *, seed: int, registry: ProcessRegistry,
                 runs_root: Path = DEFAULT_ROOT, target: Target | None = None,
                 progress: Progress | None = None, session: Session | None = None,
                 runtime: str = "process", hooks: RunHooks | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.registry = registry
        self.runs_root = runs_root
        self.target = session.target if session is not None else (target or load_target())
        self.session = session
        self.runtime = runtime
        self.hooks = hooks or RunHooks()
        self.say: Progress = progress or (lambda message: None)
        self.fired = 0
        self.faults: list[Fault] = []
        self.arrivals: Arrivals | None = None
        self.nemesis: TimedNemesis | None = None
        self._started = time.monotonic()
        self._run_dir: Path | None = None
        self._history: HistoryWriter | None = None
        self._env: Environment | None = None
        self._ctx: FaultContext | None = None
        self._cleanup: Cleanup | None = None

    @property
    def run_dir(self) -> Path:
        assert self._run_dir is not None, "the run has not started"
        return self._run_dir

    @property
    def history(self) -> HistoryWriter:
        assert self._history is not None, "the run has not started"
        return self._history

    @property
    def env(self) -> Environment:
        assert self._env is not None, "the run has not started"
        return self._env

    @property
    def ctx(self) -> FaultContext:
        assert self._ctx is not None, "the run has not started"
        return self._ctx

    @property
    def cleanup(self) -> Cleanup:
        """Where a hook pushes a teardown of its own (run before the environment's)."""
        assert self._cleanup is not None, "the run is not under way"
        return self._cleanup

    def progress(self) -> str:
        """One progress line: jobs finished of submitted, faults fired, elapsed."""
        env = self.env
        fired = self.fired + (self.nemesis.fired if self.nemesis is not None else 0)
        return (f"jobs {env.finished()}/{len(env.jobs)} finished "
                f"(of {self.scenario.workload.jobs}), faults fired {fired}, "
                f"{time.monotonic() - self._started:.0f} s")

    def wait(self, done: Callable[[], bool], what: str, timeout: float) -> bool:
        """Until ``done()`` (True) or ``timeout`` s (False), saying ``what`` and a progress
        line every ``PROGRESS_EVERY_S``."""
        self.say(what)
        deadline = time.monotonic() + timeout
        said = time.monotonic()
        while True:
            try:
                if done():
                    return True
            except redis.RedisError:
                pass  # Redis is being restarted by a fault
            now = time.monotonic()
            if now >= deadline:
                return False
            if now - said >= PROGRESS_EVERY_S:
                self.say(f"{what}: {self.progress()}")
                said = now
            time.sleep(0.05)

    def execute(self) -> RunResult:
        scenario, target, hooks = self.scenario, self.target, self.hooks
        check_phases(scenario, target)
        check_workload(scenario, target)
        settings = scenario.settings_for(target.default_settings)
        started = self._started = time.monotonic()
        self._run_dir = run_dir = new_run_dir(scenario.name, self.runs_root)
        write_schedule(run_dir, scenario, self.seed, target)
        self.faults = hooks.plan_faults(self)
        with Cleanup() as cleanup:
            self._cleanup = cleanup
            self._history = history = cleanup.enter(HistoryWriter(run_dir / HISTORY_FILE),
                                                    "history")
            record_run_start(history, scenario, self.seed, target, self.faults,
                             **hooks.run_start(self))
            hooks.opened(self)
            self._env = env = self._environment(cleanup, settings)
            configure_service(target, env, scenario.service, self.seed)
            self._ctx = FaultContext(env, random.Random(self.seed), history.record,
                                     phase_timeout=scenario.phase_timeout_s)
            cleanup.callback(lambda: heal_all(self.faults, self.ctx), "heal faults")
            hooks.before_workers(self)
            env.top_up(scenario.initial_workers or scenario.workers,
                       failpoints=self.ctx.upcoming_spec)
            if scenario.workload.rate is None:
                self.say(f"submitting {scenario.workload.jobs} job(s)")
                target.submit_workload(env, scenario, self.seed)
            else:
                self.say(f"submitting {scenario.workload.jobs} job(s) at "
                         f"{scenario.workload.rate:g}/s beside the faults")
                self.arrivals = Arrivals(env, target, scenario, self.seed).start()
                cleanup.callback(self.arrivals.stop, "arrivals")
            reason = hooks.drive(self)
            expectations = hooks.expectations(self)
            save_final_state(env, history, run_dir, expectations, reason)
            hooks.hold(self)
        self._cleanup = None
        self.say("checking")
        planned, fired = hooks.counted(self)
        return judge_run(run_dir, scenario.name, self.seed, expectations, planned, fired,
                         started, target=target,
                         turns=self.nemesis.turns if self.nemesis is not None else ())

    def _environment(self, cleanup: Cleanup, settings: dict[str, str]) -> Environment:
        session = self.session
        if session is None:
            workers = make_runtime(self.runtime, self.run_dir, self.registry,
                                   on_event=_runtime_sink(self.history), progress=self.say)
            env = self.hooks.environment(self, workers, settings)
            cleanup.callback(env.close, "environment")
            self.say("starting services")
            env.start()
            return env
        session.reset()
        session.env.options.worker_settings = settings
        session.env.sink = self.history.record
        session.runtime.on_event = _runtime_sink(self.history)
        cleanup.callback(lambda: _detach(session), "workers")
        return session.env


def write_schedule(run_dir: Path, scenario: Scenario, seed: int, target: Target) -> None:
    """``schedule.json``: what ``read_schedule`` and ``crashlab replay`` need."""
    (run_dir / SCHEDULE_FILE).write_text(json.dumps(
        {"scenario": scenario.model_dump(mode="json"), "seed": seed, "target": target.name,
         # a planted bug (``harness.packs.reference.mutants``) travels with the schedule, for replay
         "mutant": getattr(target, "mutant", None)},
        indent=2) + "\n")


def record_run_start(history: HistoryWriter, scenario: Scenario, seed: int, target: Target,
                     faults: list[Fault], **extra: object) -> None:
    history.record("run_start", scenario=scenario.name, seed=seed, target=target.name,
                   settings=scenario.settings_for(target.default_settings),
                   effects=str(target.effects), recovery_limit_s=target.recovery_limit_s,
                   workers=scenario.workers,
                   schedule=[{"fault_id": f.fault_id, "fault": f.describe()["kind"],
                              "params": f.describe(), "colour": fault_colour(f.describe()["kind"])}
                             for f in faults], **extra)


def save_final_state(env: Environment, history: HistoryWriter, run_dir: Path,
                     expectations: Expectations, reason: str) -> None:
    """While everything still runs: the event stream and service log into the history,
    each job's final state into ``state.json``, then ``run_end``."""
    env.target.collect(env, history)
    snapshots = {job_id: env.snapshot(job_id) for job_id in env.jobs}
    save_state(run_dir / STATE_FILE, snapshots, expect=expectations.to_json())
    history.record("run_end", reason=reason)


def judge_run(run_dir: Path, scenario: str, seed: int, expectations: Expectations,
              planned: int, fired: int, started: float, *,
              target: Target | None = None, turns: tuple[Turns, ...] = ()) -> RunResult:
    """Check the saved run, write ``results.json``; ``started`` is its monotonic start,
    ``turns`` the repeating faults' (``harness.turns``)."""
    checks = tuple(judge(run_dir, expectations, target=target))
    result = RunResult(scenario, run_dir, seed, combine(c.verdict for c in checks), checks,
                       planned, fired, time.monotonic() - started, turns)
    (run_dir / RESULTS_FILE).write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return result


def judge(run_dir: Path, expectations: Expectations | None = None, *,
          target: Target | None = None) -> list[CheckResult]:
    """Run the target's checkers on a stored run folder (the target its
    ``schedule.json`` names, unless given)."""
    history = load_history(run_dir / HISTORY_FILE)
    state = load_state(run_dir / STATE_FILE)
    if expectations is None:
        expectations = Expectations.from_json(state.expect)
    if target is None:
        target = load_target(stored_target_name(run_dir))
    return run_checkers(history, state, expectations, target.checkers())


def stored_target_name(run_dir: Path) -> str:
    """The target a run folder was made against (``reference`` for older folders)."""
    try:
        return str(json.loads((run_dir / SCHEDULE_FILE).read_text()).get("target")
                   or "reference")
    except (OSError, ValueError):
        return "reference"


def check_workload(scenario: Scenario, target: Target) -> None:
    """``ScenarioError`` when the target cannot submit the scenario's workload or the
    scenario was written for another target."""
    if scenario.target is not None and scenario.target != target.name:
        raise ScenarioError(f"scenario {scenario.name} is written for target "
                            f"{scenario.target!r}, not {target.name!r}; run it with "
                            f"--target {scenario.target}")
    if scenario.workload.kind not in target.workload_kinds:
        raise ScenarioError(f"scenario {scenario.name}: workload.kind: {target.name} submits "
                            f"{', '.join(sorted(target.workload_kinds))}, not "
                            f"{scenario.workload.kind!r}")
    check_repeats(scenario, target)
    check_service(scenario, target)


def analyze(run_dir: Path) -> tuple[list[CheckResult], dict[str, Any] | None]:
    """Re-check a stored run; returns the checks and the stored results (if any)."""
    stored_path = run_dir / RESULTS_FILE
    stored = json.loads(stored_path.read_text()) if stored_path.is_file() else None
    return judge(run_dir), stored


def _detach(session: Session) -> None:
    """After a run in a session: stop its workers and stop recording into its history."""
    session.runtime.stop_all(grace=1.0)
    session.runtime.on_event = None
    session.env.sink = record_nothing


def heal_all(faults: list[Fault], ctx: FaultContext) -> None:
    """Heal every fault; one failing to heal does not stop the others."""
    for fault in faults:
        try:
            fault.heal(ctx)
        except Exception:  # noqa: BLE001 - every fault must get its chance to heal
            log.exception("healing %s failed", fault.fault_id)


def _phased(faults: list[Fault]) -> list[Fault]:
    """The faults fired in schedule order (the others are timed: ``harness.nemesis``)."""
    return [f for f in faults
            if not (isinstance(spec := getattr(f, "spec", None), FaultSpecModel) and spec.timed)]


def _nemesis_end(run: Run) -> Callable[[], bool]:
    """When the timed faults stop: ``time_limit_s`` after the start, else once the last
    job arrived (with a rate), else once every job settled."""
    scenario = run.scenario
    if scenario.time_limit_s is not None and run.nemesis is not None:
        end = run.nemesis.started_at + scenario.time_limit_s
        return lambda: time.monotonic() >= end
    if run.arrivals is not None:
        return run.arrivals.done.is_set
    return lambda: run.env.wait_terminal(0.0)


def _prearm(fault: Fault, ctx: FaultContext) -> None:
    """Let the next fault arm what workers would otherwise race past (service errors).

    Optional for a fault: only those with a ``prearm(ctx)`` method have one.
    """
    prearm: Callable[[FaultContext], None] | None = getattr(fault, "prearm", None)
    if prearm is not None:
        prearm(ctx)


def _runtime_sink(history: HistoryWriter) -> Callable[..., None]:
    """Translate the runtime's process events into the history's schema."""

    def sink(kind: str, /, **fields: object) -> None:
        name = str(fields.get("name"))
        if kind == "process_start":
            history.record(kind, name=name, role="worker", pid=fields.get("pid"),
                           incarnation=int(name.rsplit(".", 1)[1]) if "." in name else 1)
        elif kind == "process_signal":
            # ``sent_ts``: when the runtime sent it; the entry's own ``ts`` comes after, and
            # a worker may answer the signal (a release) in between
            history.record(kind, name=name, pid=fields.get("pid"),
                           signal=fields.get("signal_name"),
                           delivered=fields.get("delivered"), sent_ts=fields.get("ts"))
        elif kind == "process_exit":
            history.record(kind, name=name, pid=fields.get("pid"),
                           code=fields.get("exit_code"))

    return sink
