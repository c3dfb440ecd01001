"""Where ``crashlab debug`` holds a worker: break points, planned kills and steps.

A *stop* is a failpoint hit at which the debugger keeps a worker paused:

* a **break** (``--break-at POINT[#N]``, or ``break`` at the prompt) stops the
  first worker process to reach the N-th hit of POINT, counted from when the
  break was set (a worker started later counts from its own start); it stops
  once and is then disarmed everywhere;
* a **planned kill** is one of the scenario's ``kill_at_phase`` faults, which
  in debug mode the debugger carries out itself: the worker stops where the
  fault strikes, and the debugger either opens the prompt there or strikes at
  once, exactly as ``crashlab run`` would;
* a **step** stops one worker at the next failpoint it reaches, whatever it is.

Arming. A worker's failpoint registry holds one action list per point, and its
hit numbers count from when the point was armed. ``Arming`` keeps, per worker
and point, the pauses the debugger wants as ``{hit number under the current
arming: stop}``, writes them as actions (``1*off->1*pause->2*off->1*pause``)
and, when they change, reads the point's hit count, shifts the map by it and
arms the point again. Re-arming releases a hit paused at that point, so a
worker the session holds is re-armed only when it is let go. A hit that lands
in the instant between reading the count and re-arming would shift the count
by one; points are hit tens of milliseconds apart at the least, so the window
is accepted rather than locked away.

Arming and re-arming run on the session's main thread; ``DebugEnvironment``
may start workers from a fault's thread too, hence the lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from harness.control_client import ControlError, FailpointHit
from harness.environment import Environment, EnvironmentOptions, Sink, Worker
from harness.errors import DebugError
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.kill_at_phase import pause_at_hits as pause_actions
from harness.procs import ProcessRegistry
from harness.runtime.base import Runtime
from harness.target import Target

log = logging.getLogger(__name__)


class StopKind(StrEnum):
    BREAK = "break"
    KILL = "kill"  # a planned kill_at_phase of the scenario
    STEP = "step"


class Outcome(StrEnum):
    """How a planned kill ended."""

    STRUCK = "struck"  # the worker was SIGKILLed there: the fault fired
    RELEASED = "released"  # the operator let the worker go on: the fault did not fire
    MISSED = "missed"  # no worker reached it (phase timeout, jobs settled, session over)


@dataclass(frozen=True)
class BreakSpec:
    """``POINT[#N]``: the N-th hit of a failpoint."""

    point: str
    occurrence: int = 1

    @classmethod
    def parse(cls, text: str, phases: Mapping[str, str]) -> BreakSpec:
        """Parse ``chunk.committed#2``; ``DebugError`` naming the problem and the fix."""
        point, sep, count = text.strip().partition("#")
        point = point.strip()
        if point not in phases:
            raise DebugError(f"unknown failpoint {point!r} in break {text!r}; known points: "
                             f"{', '.join(phases)}")
        if not sep:
            return cls(point)
        if not count.strip().isdigit() or int(count) < 1:
            raise DebugError(f"bad occurrence in break {text!r}: write POINT#N with N a whole "
                             "number from 1, e.g. chunk.committed#2")
        return cls(point, int(count))

    def __str__(self) -> str:
        return f"{self.point}#{self.occurrence}"


@dataclass(eq=False)
class Stop:
    """One place the debugger pauses a worker (identity semantics: usable in sets)."""

    stop_id: str  # "b1" for a break, the fault id ("f1") for a planned kill, "step"
    kind: StopKind
    points: tuple[str, ...]
    occurrence: int = 1
    prompt: bool = True  # open the prompt there (a planned kill without it strikes at once)
    fault: KillAtPhaseSpec | None = None
    only: str | None = None  # the one worker a step applies to
    spent: bool = False
    outcome: Outcome | None = None
    hit: FailpointHit | None = None
    resolved: threading.Event = field(default_factory=threading.Event)

    def resolve(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.spent = True
        self.resolved.set()

    def describe(self) -> str:
        where = (f"{self.points[0]}#{self.occurrence}" if len(self.points) == 1
                 else "the next failpoint")
        if self.kind is StopKind.KILL:
            return f"planned fault {self.stop_id} (kill_at_phase {where})"
        if self.kind is StopKind.BREAK:
            return f"break {self.stop_id} ({where})"
        return "step"


Plan = dict[str, dict[int, Stop]]  # point -> {hit number under the current arming: stop}


class Arming:
    """The debugger's pauses in every worker; see the module docstring."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._active: list[Stop] = []  # armed in live workers and in every new one
        self._upcoming: list[Stop] = []  # armed only in workers started from now on
        self._plans: dict[str, Plan] = {}
        self._armed_in: dict[str, set[Stop]] = {}
        self._held: set[str] = set()
        self._dirty: dict[str, set[str]] = {}  # worker -> points to re-arm when let go

    # -- which stops are wanted ----------------------------------------------

    def active(self) -> list[Stop]:
        with self.lock:
            return list(self._active)

    def set_upcoming(self, stops: Iterable[Stop]) -> None:
        """Stops armed in workers started from now on, but not yet in live ones
        (the next planned kill, as ``run`` arms the next fault's points)."""
        with self.lock:
            self._upcoming = [s for s in stops if not s.spent]

    def activate(self, stop: Stop, workers: Iterable[Worker]) -> None:
        """Arm ``stop`` in ``workers`` (those already holding it are left alone) and
        in every worker started from now on."""
        with self.lock:
            if stop in self._upcoming:
                self._upcoming.remove(stop)
            if stop not in self._active:
                self._active.append(stop)
            for worker in workers:
                if stop.only in (None, worker.worker_id) and stop not in self._armed_in.get(
                        worker.worker_id, set()):
                    self._add(worker, stop)

    def spend(self, stop: Stop, workers: Iterable[Worker]) -> None:
        """``stop`` will not pause anyone again; disarm it in every worker not held."""
        with self.lock:
            stop.spent = True
            for group in (self._active, self._upcoming):
                if stop in group:
                    group.remove(stop)
            for worker_id, plan in self._plans.items():
                for point, hits in plan.items():
                    if stop in hits.values():
                        self._dirty.setdefault(worker_id, set()).add(point)
            for worker in workers:
                self.sync(worker)

    # -- workers -------------------------------------------------------------

    def plan_for_new_worker(self) -> Plan:
        """The pauses a worker about to start gets from its environment (hits from 1)."""
        with self.lock:
            plan: Plan = {}
            for stop in self._active + self._upcoming:
                if stop.only is None and not stop.spent:
                    for point in stop.points:
                        plan.setdefault(point, {}).setdefault(stop.occurrence, stop)
            return plan

    def register(self, worker_id: str, plan: Plan) -> None:
        """``worker_id`` started with ``plan`` armed (``plan_for_new_worker``)."""
        with self.lock:
            self._plans[worker_id] = plan
            self._armed_in[worker_id] = {s for hits in plan.values() for s in hits.values()}

    def knows(self, worker_id: str) -> bool:
        with self.lock:
            return worker_id in self._plans

    def forget(self, worker_id: str) -> None:
        """A worker is dead: nothing of it to arm or match any more."""
        with self.lock:
            self._plans.pop(worker_id, None)
            self._armed_in.pop(worker_id, None)
            self._held.discard(worker_id)
            self._dirty.pop(worker_id, None)

    def match(self, worker_id: str, hit: FailpointHit) -> Stop | None:
        """The stop a pause hit belongs to, or None (a fault of the scenario paused it)."""
        with self.lock:
            return self._plans.get(worker_id, {}).get(hit.point, {}).get(hit.hit)

    def steps_of(self, worker_id: str) -> list[Stop]:
        with self.lock:
            return [s for s in self._active if s.kind is StopKind.STEP and s.only == worker_id]

    def hold(self, worker_id: str) -> None:
        """The session holds this worker at a stop: do not re-arm it until ``let_go``."""
        with self.lock:
            self._held.add(worker_id)

    def let_go(self, worker: Worker, point: str) -> None:
        """Re-arm what changed while the worker was held at ``point``.

        ``point`` goes last: re-arming it releases the worker, which must not
        reach another point before that one is armed as wanted.
        """
        with self.lock:
            self._held.discard(worker.worker_id)
            self.sync(worker, last=point)

    def sync(self, worker: Worker, last: str | None = None) -> None:
        """Re-arm a worker's points if its wanted pauses changed and it is not held."""
        with self.lock:
            if worker.worker_id in self._held or worker.worker_id not in self._dirty:
                return
            points = self._dirty.pop(worker.worker_id)
            plan = self._plans.get(worker.worker_id)
            if plan is not None:
                self._rearm(worker, plan, sorted(points, key=lambda p: (p == last, p)))

    # -- arming --------------------------------------------------------------

    def _add(self, worker: Worker, stop: Stop) -> None:
        plan = self._plans.setdefault(worker.worker_id, {})
        counts = self._hit_counts(worker)
        for point in stop.points:
            hits = plan.setdefault(point, {})
            at = counts.get(point, 0) + stop.occurrence
            if at not in hits or hits[at].spent:
                hits[at] = stop
        self._armed_in.setdefault(worker.worker_id, set()).add(stop)
        if worker.worker_id in self._held:
            self._dirty.setdefault(worker.worker_id, set()).update(stop.points)
        else:
            self._rearm(worker, plan, list(stop.points), counts)

    def _rearm(self, worker: Worker, plan: Plan, points: list[str],
               counts: dict[str, int] | None = None) -> None:
        try:
            if counts is None:
                counts = self._hit_counts(worker)
            for point in points:
                hits = counts.get(point, 0)
                wanted = {n - hits: stop for n, stop in plan.get(point, {}).items()
                          if n > hits and not stop.spent}
                log.debug("%s: arm %s=%s for %s", worker.worker_id, point,
                          pause_actions(wanted), [s.stop_id for s in wanted.values()])
                if wanted:
                    worker.control.arm(point, pause_actions(wanted))
                    plan[point] = wanted
                else:
                    plan.pop(point, None)
                    if point in counts:
                        worker.control.disarm(point)
            self._armed_in[worker.worker_id] = {s for hits in plan.values()
                                                for s in hits.values()}
        except ControlError:
            pass  # the worker died or is frozen: its pauses died with it

    @staticmethod
    def _hit_counts(worker: Worker) -> dict[str, int]:
        """Hits so far of each armed point (under its current arming)."""
        try:
            armed = worker.control.armed()
        except ControlError:
            return {}
        return {point: int(info.get("hits", 0)) for point, info in armed.items()}


def merge_spec(given: str, plan: Plan) -> str:
    """A worker's ``CRASHLAB_FAILPOINTS``: the faults' own points plus the debugger's."""
    items = [item for item in given.split(";") if item.strip()
             and item.partition("=")[0].strip() not in plan]
    items += [f"{point}={pause_actions(hits)}" for point, hits in plan.items() if hits]
    return ";".join(items)


class DebugEnvironment(Environment):
    """An ``Environment`` whose every new worker starts with the debugger's pauses armed,
    whoever starts it (the session, a fault's replacement, ``top_up``)."""

    def __init__(self, arming: Arming, run_dir: Path, target: Target, runtime: Runtime, *,
                 registry: ProcessRegistry | None = None, sink: Sink | None = None,
                 options: EnvironmentOptions | None = None) -> None:
        super().__init__(run_dir, target, runtime, registry=registry, sink=sink,
                         options=options)
        self.arming = arming

    def start_worker(self, worker_id: str, *, failpoints: str = "",
                     settings: Mapping[str, str] | None = None,
                     wait_ready: bool = True) -> Worker:
        with self.arming.lock:
            plan = self.arming.plan_for_new_worker()
            worker = super().start_worker(worker_id, failpoints=merge_spec(failpoints, plan),
                                          settings=settings, wait_ready=wait_ready)
            self.arming.register(worker.worker_id, plan)
        return worker
