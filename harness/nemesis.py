"""The run's clock: jobs that arrive over time, and faults fired by time beside the others.

Two background threads a run may start once its first workers are up:

* ``Arrivals`` submits the workload at ``workload.rate`` jobs per second,
  ``burst`` at a time, with exponential gaps between arrivals drawn from the
  run's seed (a Poisson process), while the faults run. A submit the API
  refuses (Redis cut off behind it), or that fails in Redis for a pack that
  enqueues straight to Redis (Redis restarting), is recorded (``op
  submit_refused``) and tried again, as a client would; only an accepted
  submit is a job. Without a rate the workload is submitted at once, before
  the faults, as it always was.
* ``TimedNemesis`` fires each *timed* fault (``at_s`` and/or ``every_s`` on
  any fault kind, ``FaultSpecModel``) on its own thread: first at ``at_s``
  after the workload starts, then every ``every_s`` (plus or minus a seeded
  ``jitter_s``, at most ``times`` times), until the nemesis stops:
  ``time_limit_s`` after the start if the scenario gives one, else when the
  last job is submitted (with a rate), else when every job has settled.
  Faults on different threads overlap: a latency window during a kill
  sequence. Each repeat is recorded as a fault of its own (``f2``, ``f2.2``,
  ``f2.3``... each ``fault_planned``, ``fault_start``, ``fault_heal``), so
  fault coverage stays exact. A timed fault whose first turn never came is
  recorded skipped, which makes the run unknown, never valid. A turn starts
  only once the previous one is done, so a repeat can fall behind its clock;
  when the nemesis stops it records each repeating fault's turns taken
  against those asked for (``nemesis_turns``, ``harness.turns``). With
  ``supervise_s`` it runs the scenario's process manager (``harness.supervisor``)
  for as long as the faults run.

Replay: phase-anchored faults replay exactly; timed ones replay the same
plan (the same offsets and jitter, from the seed) but not the same
interleaving with the jobs, since the machine's speed decides which chunk a
kill at 12.3 s meets.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from harness.environment import Environment
from harness.errors import CrashlabError, ScenarioError
from harness.faults import Fault, FaultContext, build_fault, fault_colour
from harness.faults.registry import FaultSpecModel
from harness.history import EntryKind
from harness.scenario import Scenario
from harness.supervisor import Supervisor
from harness.target import LeasedTarget, Target
from harness.turns import Turns, count_turns

log = logging.getLogger(__name__)

Record = Callable[..., object]

RESUBMIT_S = 0.2
"""How soon a refused submit is tried again."""


def check_repeats(scenario: Scenario, target: Target) -> None:
    """``ScenarioError`` naming ``faults.N.every_s`` when a fault repeats more often than
    the target's lease: the jobs of a worker it kills could not be taken over before
    the next repeat, so the run would measure nothing but the fault."""
    if not isinstance(target, LeasedTarget):
        return
    lease = target.lease_s(scenario.settings_for(target.default_settings))
    for index, fault in enumerate(scenario.faults):
        if fault.every_s is not None and fault.every_s < lease:
            raise ScenarioError(
                f"scenario {scenario.name}: faults.{index}.every_s ({fault.every_s:g} s) is "
                f"shorter than a lease of {target.name} ({lease:g} s): no job could be "
                f"taken over between two repeats; give every_s of at least {lease:g}")


class Arrivals:
    """Submits the workload over time on a thread; ``done`` once every job is in."""

    def __init__(self, env: Environment, target: Target, scenario: Scenario, seed: int) -> None:
        self.env = env
        self.target = target
        self.scenario = scenario
        self.seed = seed
        self.submitted = 0
        self.done = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crashlab-arrivals", daemon=True)

    def start(self) -> Arrivals:
        self.env.submitting = True
        self._thread.start()
        return self

    def _run(self) -> None:
        work = self.scenario.workload
        assert work.rate is not None
        rng = random.Random(self.seed * 7919 + 1)
        mean_gap = work.burst / work.rate
        due = time.monotonic()
        try:
            for start in range(0, work.jobs, work.burst):
                if self._stop.wait(max(0.0, due - time.monotonic())):
                    return
                for index in range(start, min(start + work.burst, work.jobs)):
                    if not self._submit(index):
                        return
                    self.submitted = index + 1
                due += rng.expovariate(1 / mean_gap)
        except BaseException as exc:  # noqa: BLE001 - handed to the run's thread by join()
            self.error = exc
        finally:
            self.env.submitting = False
            self.done.set()

    def _submit(self, index: int) -> bool:
        """Submit job ``index`` as a client would: a refusal (the API answered that Redis
        is cut off, say) is recorded and the submit tried again until it is accepted;
        False if the run stops first."""
        deadline = time.monotonic() + self.scenario.timeout_s
        while True:
            try:
                self.target.submit_workload(self.env, self.scenario, self.seed, [index])
                return True
            except (CrashlabError, redis.RedisError) as exc:  # a pack enqueues to Redis itself
                if time.monotonic() >= deadline:
                    raise
                self.env.sink("op", op="submit_refused", job_index=index, reason=str(exc)[:300])
                if self._stop.wait(RESUBMIT_S):
                    return False

    def join(self) -> None:
        """Wait for the last job; a submission error is raised here, on the run's thread."""
        self._thread.join()
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


@dataclass
class _Timed:
    index: int
    first: Fault
    spec: FaultSpecModel
    fired: list[Fault] = field(default_factory=list)  # the repeats built (f2.2, f2.3...)
    starts: list[float] = field(default_factory=list)  # monotonic start of each turn
    turns_fired: int = 0


class TimedNemesis:
    """The timed faults of a run, each on its own thread; see the module docstring."""

    def __init__(self, faults: list[Fault], env: Environment, record: Record, seed: int,
                 phase_timeout: float, *, supervise_s: float | None = None) -> None:
        self.env = env
        self.record = record
        self.seed = seed
        self.phase_timeout = phase_timeout
        self.timed = [_Timed(i, f, spec) for i, f in enumerate(faults)
                      if isinstance(spec := getattr(f, "spec", None), FaultSpecModel)
                      and spec.timed]
        self.planned = len(self.timed)
        self.fired = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.started_at = 0.0
        self.stopped_at: float | None = None
        self.turns: tuple[Turns, ...] = ()  # of each repeating fault, once stopped
        self._counted = False
        # the scenario's process manager, which runs as long as the faults do
        self.supervisor = None if supervise_s is None else Supervisor(env, supervise_s)

    def owns(self, fault: Fault) -> bool:
        return any(t.first is fault for t in self.timed)

    def start(self) -> None:
        self.started_at = time.monotonic()
        if self.supervisor is not None:
            self.supervisor.start()
        for timed in self.timed:
            thread = threading.Thread(target=self._run, args=(timed,), daemon=True,
                                      name=f"crashlab-nemesis-{timed.first.fault_id}")
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Let no fault start any more, wait for those under way to finish, and (the
        first time) record each repeating fault's turns."""
        if self.stopped_at is None and self.started_at:
            self.stopped_at = time.monotonic()
        self.stopping.set()
        for thread in self._threads:
            thread.join(timeout=self.phase_timeout + 60)
        if self.supervisor is not None:
            self.supervisor.stop()
        if self.stopped_at is not None and not self._counted:
            self._counted = True
            self.turns = self._count_turns(self.stopped_at - self.started_at)
            for turns in self.turns:
                self.record(EntryKind.NEMESIS_TURNS, **turns.to_json())

    def _count_turns(self, window_s: float) -> tuple[Turns, ...]:
        counted = []
        with self._lock:
            for t in self.timed:
                if t.spec.every_s is not None:
                    counted.append(count_turns(
                        t.first.fault_id, t.spec.kind, at_s=t.spec.at_s, every_s=t.spec.every_s,
                        times=t.spec.times, window_s=window_s, fired=t.turns_fired,
                        starts=[start - self.started_at for start in t.starts]))
        return tuple(counted)

    def all_fired(self) -> list[Fault]:
        """Every fault instance the nemesis built (for healing)."""
        with self._lock:
            return [f for t in self.timed for f in t.fired] + [t.first for t in self.timed]

    def _run(self, timed: _Timed) -> None:
        spec = timed.spec
        rng = random.Random(self.seed * 1_000_003 + timed.index)
        ctx = FaultContext(self.env, rng, self.record, phase_timeout=self.phase_timeout)
        due = self.started_at + (spec.at_s or 0.0)
        turn = 1
        while True:
            if self.stopping.wait(max(0.0, due - time.monotonic())):
                if turn == 1:
                    self.record("fault_skipped", fault_id=timed.first.fault_id,
                                reason="the nemesis stopped before its first turn "
                                       f"(at_s {spec.at_s or 0:g})")
                return
            fault = timed.first if turn == 1 else self._repeat(timed, turn)
            with self._lock:
                timed.starts.append(time.monotonic())
            try:
                fired = ctx.fire(fault)
            except Exception as exc:  # noqa: BLE001 - recorded; the other faults go on
                log.exception("timed fault %s failed", fault.fault_id)
                self.record("fault_skipped", fault_id=fault.fault_id, reason=f"it failed: {exc}")
                fired = False
            else:
                if not fired:
                    self.record("fault_skipped", fault_id=fault.fault_id,
                                reason=ctx.skip_reason())
            with self._lock:
                self.fired += int(fired)
                timed.turns_fired += int(fired)
            turn += 1
            if spec.every_s is None or (spec.times is not None and turn > spec.times):
                return
            jitter = spec.jitter_s or 0.0
            due += spec.every_s + (rng.uniform(-jitter, jitter) if jitter else 0.0)

    def _repeat(self, timed: _Timed, turn: int) -> Fault:
        fault_id = f"{timed.first.fault_id}.{turn}"
        fault = build_fault(fault_id, timed.spec)
        self.record("fault_planned", fault_id=fault_id, fault=timed.spec.kind,
                    params=fault.describe(), colour=fault_colour(timed.spec.kind))
        with self._lock:
            timed.fired.append(fault)
            self.planned += 1
        return fault
