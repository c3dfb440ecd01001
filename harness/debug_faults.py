"""The scenario's faults in a ``crashlab debug`` session.

``FaultThread.plan`` decides what becomes of each fault of the scenario: a
``kill_at_phase`` becomes a ``PlannedKill``, which the debugger carries out
itself at a stop (``harness.debug_stops``), opening the prompt there when no
``--break-at`` was given or when a break names its point and occurrence;
every other kind is built as ``crashlab run`` builds it. Breaks that name no
planned kill are returned as stops of their own, and a break on a point that
another fault pauses itself (``sever_redis``, ``restart_redis`` and
``pause_past_lease`` with a ``point``) is refused.

``FaultThread`` then fires the faults in schedule order on a thread of its
own, as ``run_scenario`` fires them on its main thread: the next fault's
points are armed in workers started meanwhile, a fault that does not fire is
recorded as ``fault_skipped``. It waits before each fault while the prompt
is open (``running`` is clear), and a planned kill's phase timeout counts
only time spent running. Arming and killing happen on the session's main
thread: the fault thread hands those over as ``requests``.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from harness.debug_stops import Arming, BreakSpec, Outcome, Stop, StopKind
from harness.environment import Environment
from harness.errors import DebugError
from harness.faults import Fault, FaultContext, FaultSpec, build_fault
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.runner import heal_all

log = logging.getLogger(__name__)


class PlannedKill:
    """A scenario ``kill_at_phase`` the debugger carries out (a ``Fault`` for the thread)."""

    def __init__(self, fault_id: str, spec: KillAtPhaseSpec, prompt: bool,
                 thread: FaultThread) -> None:
        self.fault_id = fault_id
        self.spec = spec
        self.stop = Stop(fault_id, StopKind.KILL, (spec.point,), spec.occurrence,
                         prompt=prompt, fault=spec)
        self.thread = thread

    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()

    def points(self) -> dict[str, str]:
        return {}  # the debugger arms its point itself (harness.debug_stops)

    def fire(self, ctx: FaultContext) -> bool:
        return self.thread.await_kill(self, ctx)

    def heal(self, ctx: FaultContext) -> None:
        """A kill is over the moment it happens; nothing to heal."""


def reserved_points(specs: Sequence[FaultSpec]) -> dict[str, str]:
    """Points that faults other than ``kill_at_phase`` pause themselves -> fault id."""
    reserved: dict[str, str] = {}
    for index, spec in enumerate(specs):
        if isinstance(spec, KillAtPhaseSpec):
            continue
        for attr in ("point", "rescuer_point"):
            point = getattr(spec, attr, None)
            if point:
                reserved[point] = f"f{index + 1}"
        if spec.kind == "pause_past_lease":
            reserved["lease.renew"] = f"f{index + 1}"
    return reserved


class FaultThread:
    """Fires the scenario's faults in order; see the module docstring."""

    def __init__(self, arming: Arming) -> None:
        self.arming = arming
        self.faults: list[Fault] = []
        self.kills: list[PlannedKill] = []
        self.reserved: dict[str, str] = {}
        self.running = threading.Event()  # set while no prompt is open
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.requests: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.fired = 0
        self._thread: threading.Thread | None = None

    def plan(self, specs: Sequence[FaultSpec], breaks: Sequence[BreakSpec]) -> list[Stop]:
        """Build the faults; returns the breaks that are stops of their own."""
        self.reserved = reserved_points(specs)
        for brk in breaks:
            if brk.point in self.reserved:
                raise DebugError(f"--break-at {brk}: the scenario's fault "
                                 f"{self.reserved[brk.point]} pauses {brk.point} itself; "
                                 "break at another point, or pass --no-faults")
        wanted = {(b.point, b.occurrence) for b in breaks}
        for index, spec in enumerate(specs):
            fault_id = f"f{index + 1}"
            if isinstance(spec, KillAtPhaseSpec):
                at = (spec.point, spec.occurrence)
                kill = PlannedKill(fault_id, spec, not breaks or at in wanted, self)
                wanted.discard(at)
                self.kills.append(kill)
                self.faults.append(kill)
            else:
                self.faults.append(build_fault(fault_id, spec))
        stops: list[Stop] = []
        for brk in breaks:
            if (brk.point, brk.occurrence) in wanted:
                wanted.discard((brk.point, brk.occurrence))
                stops.append(Stop(f"b{len(stops) + 1}", StopKind.BREAK, (brk.point,),
                                  brk.occurrence))
        return stops

    def announce(self, index: int, ctx: FaultContext) -> None:
        """Arm fault ``index``'s points in workers started from now on, as ``run`` does."""
        following = self.faults[index] if index < len(self.faults) else None
        ctx.upcoming = following.points() if following is not None else {}
        self.arming.set_upcoming([following.stop] if isinstance(following, PlannedKill)
                                 else [])

    def start(self, ctx: FaultContext) -> None:
        self._thread = threading.Thread(target=self._fire_all, args=(ctx,),
                                        name="debug-faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No further fault starts; a planned kill not yet carried out is missed."""
        self.stopping.set()
        for kill in self.kills:
            if not kill.stop.resolved.is_set():
                kill.stop.resolve(Outcome.MISSED)
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    def heal_all(self, ctx: FaultContext) -> None:
        heal_all(self.faults, ctx)

    def _fire_all(self, ctx: FaultContext) -> None:
        try:
            for index, fault in enumerate(self.faults):
                while not self.running.wait(0.1):
                    if self.stopping.is_set():
                        return
                if self.stopping.is_set():
                    return
                self.announce(index + 1, ctx)
                reason = None
                try:
                    fired = ctx.fire(fault)
                except Exception as exc:  # noqa: BLE001 - an operator's kill can pull the rug
                    if self.stopping.is_set():
                        return
                    log.warning("fault %s failed: %s", fault.fault_id, exc)
                    fired, reason = False, f"failed during the debug session: {exc}"
                if isinstance(fault, PlannedKill) and fault.stop.outcome is Outcome.RELEASED:
                    reason = "the worker was let go at the debugger prompt"
                if fired:
                    self.fired += 1
                elif not self.stopping.is_set():
                    ctx.record("fault_skipped", fault_id=fault.fault_id,
                               reason=reason or ctx.skip_reason())
        finally:
            self.done.set()

    def await_kill(self, kill: PlannedKill, ctx: FaultContext) -> bool:
        """Arm a planned kill (on the main thread) and wait until it struck, was let go or
        missed; time at the prompt does not count against the phase timeout."""
        stop, env = kill.stop, ctx.env
        self.requests.put(lambda: self.arming.activate(stop, env.live_workers()))
        waited, gave_up = 0.0, False
        while not stop.resolved.wait(0.1):
            if self.stopping.is_set():
                return False
            if gave_up or stop.hit is not None or not self.running.is_set():
                continue
            waited += 0.1
            if waited >= ctx.phase_timeout or ctx.settled():
                gave_up = True
                self.requests.put(lambda: self._retire(stop, env))
        return stop.outcome is Outcome.STRUCK

    def _retire(self, stop: Stop, env: Environment) -> None:
        if not stop.spent:
            self.arming.spend(stop, env.live_workers())
            stop.resolve(Outcome.MISSED)
