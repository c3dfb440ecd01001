"""``crashlab explore``: search crash schedules with Hypothesis, keep the smallest failure.

One exploration is one Hypothesis test over ``strategies.schedules``. Each
example becomes a scenario (the base scenario's workload and settings, the
generated workers and faults; with ``workloads``, a workload drawn by the
target, ``harness.explore.workloads``, and faults that workload reaches) run
by ``runner.run_scenario`` in a shared ``Session``, so services start once.
An invalid verdict fails the example; Hypothesis shrinks it to the smallest
schedule (and workload) that still fails and runs
that one last, so the last invalid run folder *is* the counterexample: it is
recorded in ``exploration.json`` with the command that replays it. Examples
whose faults did not all fire are inconclusive, not failures; so is an
example whose run raised (a worker that did not come up in time on a loaded
machine, say): it is counted, logged with its traceback and named in the
summary, and ``MAX_ERRORS_IN_A_ROW`` of them in a row end the exploration
with that error, since the harness, not the schedule, is then what fails.

The example database lives in the state dir (``.crashlab/hypothesis``), or
in a Redis database several machines share (``--example-db``,
``harness.explore.database``), keyed by target, scenario and worker copy,
so a known failure is tried first next time, wherever it was found.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import Flaky
from hypothesis.strategies import SearchStrategy

from harness.checkers.base import Verdict
from harness.errors import SetupError
from harness.explore.database import Prefixed, open_database
from harness.explore.guidance import guide
from harness.explore.strategies import Exploring, Schedule, Vocabulary, schedules
from harness.explore.workloads import DrawnWorkload, Example, WorkloadSpread, fixed, with_schedules
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry, default_state_dir
from harness.runfolder import COUNTEREXAMPLE_FILE as COUNTEREXAMPLE_FILE  # re-exported
from harness.runfolder import DEFAULT_ROOT, new_run_dir, point_at_latest
from harness.runfolder import EXPLORATION_FILE as EXPLORATION_FILE  # re-exported
from harness.runner import RunResult, Session, run_scenario
from harness.scenario import ExpectSpec, Scenario
from harness.target import ExplorableTarget, Target

log = logging.getLogger(__name__)

# past a pack's recovery limit, so that a job stuck after a crash is judged, not cut short
RECOVERY_MARGIN_S = 15.0
# examples in a row whose run raised before the exploration gives up with the error
MAX_ERRORS_IN_A_ROW = 3


@dataclass
class Exploration:
    """What one exploration found; ``counterexample`` is the shrunk failing run."""

    scenario: str
    folder: Path
    seed: int
    examples: int = 0
    inconclusive: int = 0
    failures: int = 0
    examples_to_first_failure: int | None = None
    seconds_to_first_failure: float | None = None
    counterexample: RunResult | None = None
    schedule: Schedule | None = None
    duration_s: float = 0.0
    flaky: bool = False  # the counterexample did not reproduce when Hypothesis re-ran it
    runs: list[str] = field(default_factory=list)
    workload: DrawnWorkload | None = None  # the counterexample's
    drawn_workloads: bool = False  # workloads drawn (explore --workloads), not the base's
    spread: WorkloadSpread = field(default_factory=WorkloadSpread)
    search_seed: int | None = None  # Hypothesis's seed, when it is not ``seed``
    stopped: str | None = None  # why it ended before its examples were spent
    errors: int = 0  # examples whose run raised (each also counted inconclusive)
    first_error: str | None = None
    errors_in_a_row: int = 0

    @property
    def verdict(self) -> Verdict:
        return Verdict.INVALID if self.counterexample is not None else Verdict.VALID

    def to_json(self) -> dict[str, Any]:
        counter = self.counterexample
        return {
            "scenario": self.scenario, "folder": str(self.folder), "seed": self.seed,
            "search_seed": self.seed if self.search_seed is None else self.search_seed,
            "stopped": self.stopped,
            "verdict": str(self.verdict), "examples": self.examples,
            "inconclusive": self.inconclusive, "failing_examples": self.failures,
            "errors": self.errors, "first_error": self.first_error,
            "flaky": self.flaky,
            "examples_to_first_failure": self.examples_to_first_failure,
            "seconds_to_first_failure": self.seconds_to_first_failure,
            "schedules_per_minute": round(self.examples / self.duration_s * 60, 1)
            if self.duration_s else None,
            "duration_s": round(self.duration_s, 1),
            "workloads": {"drawn": self.drawn_workloads, **self.spread.to_json()},
            "counterexample": None if counter is None else {
                "run_dir": str(counter.run_dir),
                "schedule": self.schedule.describe() if self.schedule else None,
                "workload": self.workload.to_json() if self.workload else None,
                "faults": len(self.schedule.faults) if self.schedule else None,
                "failing_checks": [c.to_json() for c in counter.checks
                                   if c.verdict is Verdict.INVALID],
                "replay": f"crashlab replay {counter.run_dir}",
            },
        }


def _errored(found: Exploration, name: str, exc: Exception) -> None:
    """An example whose run raised: inconclusive, logged, named; the last of
    ``MAX_ERRORS_IN_A_ROW`` in a row raises it again."""
    found.examples += 1
    found.inconclusive += 1
    found.errors += 1
    found.errors_in_a_row += 1
    if found.first_error is None:
        found.first_error = f"{name}: {type(exc).__name__}: {exc}"
    if found.errors_in_a_row >= MAX_ERRORS_IN_A_ROW:
        raise _TooManyErrors(exc)
    log.warning("example %s raised, counted inconclusive: %r", name, exc, exc_info=exc)


def exploring(target: Target, base: Scenario) -> Exploring:
    """How ``target`` wants ``base`` explored: its own plan, else the core's process
    and Redis faults at its points, its default settings, and time to recover."""
    if isinstance(target, ExplorableTarget):
        return target.exploring(base)
    return Exploring(settings=base.settings_for(target.default_settings),
                     vocabulary=Vocabulary(frozenset(target.repeating_points),
                                           frozenset(target.after_crash_points)),
                     timeout_s=max(base.timeout_s, target.recovery_limit_s + RECOVERY_MARGIN_S))


def _phases(target: Target, kind: str) -> Mapping[str, str]:
    """The target's points a job of ``kind`` passes (``phases_for``), else all of them."""
    phases_for: Callable[[str], Mapping[str, str]] | None = getattr(target, "phases_for", None)
    return target.phases() if phases_for is None else phases_for(kind)


def _schedules_for(phases: list[str], plan: Exploring, *, max_faults: int, max_workers: int,
                   partitions: bool = False,
                   ) -> Callable[[DrawnWorkload], SearchStrategy[Schedule]]:
    """The schedules for a drawn workload: per-item faults at occurrences every job reaches,
    counting on the jobs without a deadline; with ``partitions`` (drawn workloads only,
    so that the base workload's schedules stay those a seed always gave) a first fault
    may cut off one worker."""
    def for_workload(drawn: DrawnWorkload) -> SearchStrategy[Schedule]:
        extra: dict[str, Any] = {} if not partitions else {
            "partitions": True, "undated": drawn.undated, "concurrency": drawn.concurrency}
        return schedules(phases, chunks=drawn.chunks, jobs=drawn.workload.jobs,
                         max_faults=max_faults, max_workers=max_workers,
                         vocabulary=plan.vocabulary_of(drawn.chunks),
                         max_retries=drawn.workload.max_retries, **extra)
    return for_workload


def example_scenario(base: Scenario, example: Example, plan: Exploring, name: str) -> Scenario:
    """The scenario one example runs: ``base`` with the example's workers, faults and
    workload (its settings and service block over the plan's and the base's), and what
    its checkers expect. The run folder stores it whole, so ``crashlab replay`` runs it
    again as it was."""
    schedule, drawn = example.schedule, example.workload
    return base.model_copy(update={
        "name": name, "workers": schedule.workers, "initial_workers": None,
        "faults": list(schedule.faults), "workload": drawn.workload,
        "settings": {**plan.settings, **drawn.settings},
        "service": base.service if drawn.service is None else base.service.model_copy(
            update=drawn.service.model_dump(exclude_unset=True)),
        "phase_timeout_s": 5.0, "timeout_s": plan.timeout_s,
        "expect": _example_expect(base, example, plan)})


def _example_expect(base: Scenario, example: Example, plan: Exploring) -> ExpectSpec:
    """What an example's checkers expect: any of the ends a fault may bring (TIMED_OUT too
    where a job has a deadline), and each chunk billed once unless the service ignores
    keys and nothing stops a second call: its status endpoint is off, or a worker may
    call it after losing its lease (``Exploring.outlives_lease``, a partial cut)."""
    ends = ["COMPLETED", "FAILED"]
    if any(d is not None for d in example.workload.deadlines):
        ends.append("TIMED_OUT")
    update: dict[str, Any] = {"terminal_states": ends, "retry_count": None,
                              "failure_reason": None, "min_rejected_writes": None}
    service = example.workload.service
    if service is not None and service.idempotency_keys == "ignored":
        # a worker cut off from Redis alone still reaches the service (a lost reply is
        # over before a lease could run out)
        schedule = example.schedule
        zombies = any(f.kind in plan.outlives_lease for f in schedule.faults) or any(
            f.kind != "lost_reply" for f in schedule.partial())
        if zombies or not service.status_endpoint:
            update["idempotency_keys_honoured"] = False
    return base.expect.model_copy(update=update)


@dataclass(frozen=True)
class StopFile:
    """Where the explorers of one ``--jobs N`` exploration claim the first failure:
    the file holds the index of the explorer that found it."""

    path: Path
    explorer: int

    def claim(self) -> bool:
        """Claim the first failure; False if another explorer claimed one before."""
        try:
            with self.path.open("x") as handle:
                handle.write(f"{self.explorer}\n")
            return True
        except FileExistsError:
            return False

    def claimed_by_another(self) -> bool:
        try:
            return self.path.read_text().strip() != str(self.explorer)
        except FileNotFoundError:
            return False


class _OutOfTime(BaseException):
    """Ends an exploration at its time budget (a BaseException: Hypothesis lets it pass)."""


class _TooManyErrors(BaseException):
    """Ends an exploration whose runs keep raising; ``error``, the last, is re-raised."""

    def __init__(self, error: Exception) -> None:
        super().__init__(f"{MAX_ERRORS_IN_A_ROW} examples in a row raised; the last: {error!r}")
        self.error = error


def explore(base: Scenario, *, examples: int, seed: int, registry: ProcessRegistry,
            runs_root: Path = DEFAULT_ROOT, target: Target | None = None,
            database_key: str = "", use_database: bool = True, max_faults: int = 3,
            time_budget_s: float | None = None, shrink_runs: int = 60, max_workers: int = 2,
            workloads: bool = False,
            progress: Callable[[Exploration, RunResult], None] | None = None,
            search_seed: int | None = None, stop_file: StopFile | None = None,
            example_db: str | None = None, guided: bool = False) -> Exploration:
    """Search ``examples`` schedules on ``base``'s workload; see the module docstring.

    With ``time_budget_s``, no new example starts once the budget is spent;
    shrinking stops after ``shrink_runs`` runs past the first failure. The
    workload (media, job seeds) is the same in every example: ``seed`` is
    both Hypothesis's seed and the runs' seed, so only the schedule varies;
    with ``workloads`` the target draws each example's workload too (job
    counts, lengths, concurrency), shrunk with the faults.
    Without ``use_database``, known failures are not replayed first (a fresh
    search, for measuring how fast one is found). ``search_seed`` seeds
    Hypothesis apart from the runs (the explorers of ``--jobs N`` share the
    workload and search apart); with ``stop_file``, the first failure is
    claimed there and a failure claimed by another explorer ends this one
    (``harness.explore.explorers``). ``example_db`` is a Redis URL for the
    example database instead of the state dir's folder (``harness.explore.database``).
    ``guided`` scores each run by how far recovery got, for Hypothesis's targeted
    search (``harness.explore.guidance``).
    """
    target = target or load_target()
    # before anything starts: a database that does not answer is a setup error
    database = None if not use_database else Prefixed(
        open_database(example_db, default_state_dir()),
        f"{target.name}/{base.name}/{database_key}/".encode())
    folder = new_run_dir(f"explore-{base.name}", runs_root, point_latest=False)
    found = Exploration(base.name, folder, seed, drawn_workloads=workloads,
                        search_seed=search_seed)
    plan = exploring(target, base)
    if workloads and plan.workloads is None:
        raise SetupError(f"target {target.name!r} draws no workloads: explore it without "
                         f"--workloads (on the scenario's own workload)")
    drawn = plan.workloads if workloads and plan.workloads is not None \
        else fixed(base.workload, plan.chunks)
    settings_ = dict(plan.settings)
    session = Session(folder / "session", target, registry, settings_,
                      s3=base.needs_s3).start()
    started = time.monotonic()

    def one(example: Example) -> None:
        schedule, workload = example.schedule, example.workload
        if time_budget_s is not None and time.monotonic() - started > time_budget_s:
            raise _OutOfTime(f"stopped at its {time_budget_s:.0f}s budget")
        if stop_file is not None and stop_file.claimed_by_another():
            raise _OutOfTime("stopped: another explorer found a failure first")
        if found.examples_to_first_failure is not None and \
                found.examples - found.examples_to_first_failure >= shrink_runs:
            # every failing run Hypothesis tries while shrinking is smaller than
            # the last one, so the last is the best found so far
            raise _OutOfTime(f"stopped shrinking after {shrink_runs} runs")
        scenario = example_scenario(base, example, plan, f"{base.name}-x{found.examples + 1}")
        try:
            result = run_scenario(scenario, seed=seed, registry=registry,
                                  runs_root=folder / "examples", session=session)
        except Exception as exc:
            _errored(found, scenario.name, exc)
            return
        found.errors_in_a_row = 0
        point_at_latest(runs_root, result.run_dir)  # runs/latest: always a run folder
        found.examples += 1
        found.runs.append(str(result.run_dir))
        found.spread.add(workload, schedule.workers, partial=[
            f"{f.kind} {','.join(getattr(f, 'workers', None) or ())}"
            for f in schedule.partial()])
        if guided:
            guide(result.run_dir)
        if result.verdict is Verdict.UNKNOWN:
            found.inconclusive += 1
        if progress is not None:
            progress(found, result)
        if result.verdict is Verdict.INVALID:
            found.failures += 1
            if found.examples_to_first_failure is None:
                found.examples_to_first_failure = found.examples
                found.seconds_to_first_failure = round(time.monotonic() - started, 1)
                if stop_file is not None:
                    stop_file.claim()
            found.counterexample, found.schedule = result, schedule
            found.workload = workload
            witnesses = "; ".join(f"{c.checker}: {c.witness}" for c in result.checks
                                  if c.verdict is Verdict.INVALID)
            raise AssertionError(witnesses)

    schedule_for = _schedules_for(list(_phases(target, base.workload.kind)), plan,
                                  max_faults=max_faults, max_workers=max_workers,
                                  partitions=workloads)
    if isinstance(drawn, DrawnWorkload):
        own = drawn

        def one_schedule(schedule: Schedule) -> None:
            one(Example(own, schedule))

        # the schedules alone: wrapping them (even in a ``map``) would change which
        # schedules a seed gives, and with them every measured search
        given_one = given(schedule_for(own))(one_schedule)
    else:
        given_one = given(with_schedules(drawn, schedule_for))(one)
    # ``seed`` first, then the settings: a seed alone turns the example database off
    # (Hypothesis's ``seed`` sets ``database=None``), and these settings name it again,
    # so a seeded search still replays and saves its failures
    test = settings(
        max_examples=examples, deadline=None, database=database, derandomize=False,
        phases=[Phase.reuse, Phase.generate, Phase.shrink] if use_database
        else [Phase.generate, Phase.shrink], verbosity=Verbosity.quiet,
        suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
        print_blob=False,
    )(hypothesis_seed(seed if search_seed is None else search_seed)(given_one))
    try:
        test()
    except AssertionError:
        pass  # the counterexample is recorded in ``found``
    except Flaky as exc:
        # the failure did not happen again on the same schedule: a race the
        # faults do not pin down. The failing run is kept, marked as such.
        found.flaky = True
        log.warning("exploration of %s is flaky: %s", base.name, str(exc).splitlines()[0])
    except _OutOfTime as stop:
        found.stopped = str(stop)
        log.warning("exploration of %s %s", base.name, stop)
    except _TooManyErrors as stop:
        found.stopped = str(stop)
        raise stop.error from None
    finally:
        session.close()
        found.duration_s = time.monotonic() - started
        summary = found.to_json()
        (folder / EXPLORATION_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if found.counterexample is not None:
            # the shrunk run's own folder says what it is, for its report and for replay
            counter = dict(summary["counterexample"])
            counter["summary"] = (f"shrunk by Hypothesis from {found.failures} failing "
                                  f"schedule(s) in {found.examples} examples of {base.name}")
            (found.counterexample.run_dir / COUNTEREXAMPLE_FILE).write_text(
                json.dumps(counter, indent=2) + "\n")
    return found
