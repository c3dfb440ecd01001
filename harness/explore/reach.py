"""What a schedule's later faults can still reach: a model of the jobs' futures.

A fault that waits at a point no job passes any more never fires, and its
example is inconclusive. So the draws (``harness.explore.strategies``)
follow a small model of the workload. Every job's future is a *path*: the
points it will pass, in order, each with the item (chunk, part) it belongs
to. A schedule's first fault meets a fresh job. Each fault drawn changes
the model the way it changes the job it meets (its ``Effect``):

* a crash (a kill at a point) leaves the job to a takeover once its lease
  runs out: its future becomes the takeover's path (``JobModel.taken_over``),
  or nothing once the job has used up its retries (it fails at the takeover);
* a graceful stop hands the job back to the queue (``JobModel.released``);
* a pause at a point (a Redis cut or restart, a freeze, a reply lost while
  the worker waits) may outlast the lease or not: both futures are kept, as
  two *worlds*;
* a worker frozen past its lease is rescued: the rescuer's path from the
  point it was held at (the rescuer is a worker more, so jobs still in the
  queue may be claimed at any time: they are no longer counted on);
* a fault whose moment is a matter of time (a random kill, a cut after a
  delay, service errors, a file damaged on its own) leaves nothing known,
  so nothing is drawn after it;
* so does a cut of some workers only (a partial partition; or of every
  worker by name, which is what one shrinks to): the others keep Redis
  while it lasts, so they claim the queued jobs, and once the cut-off
  worker's lease has run out one of them takes its job over and runs it
  on, all before the next fault's turn comes (at the heal): where any job
  is by then, and which worker holds it, is the clock's. (A reply lost to
  one worker is brief: it holds the job at the point like any lost reply.)

A later fault is drawn only at a point, and an occurrence of it, that some
job passes in every world (``Reach.most``); where the model is not sure,
nothing is drawn there. Occurrences count per worker process from the
moment the point is armed, which is when the fault's turn comes (or when a
replacement starts), so they count along a job's future from its start.
Jobs not yet claimed when the first fault fires (more jobs than workers)
are fresh futures that come before the takeovers, which wait for a lease.

The model is a guess made before the run, from what the target says of its
jobs; a race the model does not see (another job reaching the point first)
can still leave a fault unfired, and the run is then inconclusive as ever.
The model of a job is the target's (``Vocabulary.model``); the core's
default reads it off the catalog (``harness.explore.sequence``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

from harness.faults import FaultSpec
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.lost_reply import LostReplySpec
from harness.faults.restart_redis import RestartRedisSpec
from harness.faults.sever_redis import SeverRedisSpec
from harness.faults.stop import StopSpec

Hit = tuple[str, int]  # a failpoint and which of its hits

# past this many worlds the model knows too little to be worth following
MAX_WORLDS = 16


class Step(NamedTuple):
    """One point a job passes, and the item (chunk, part) it belongs to, if any."""

    point: str
    item: int | None = None


Path = tuple[Step, ...]


class EffectKind(StrEnum):
    CRASH = "crash"      # the job waits for its lease, then a takeover (a retry)
    RELEASE = "release"  # handed back to the queue and claimed again (no retry)
    STALL = "stall"      # held at the point: goes on, or is taken over if its lease ran out
    RESCUE = "rescue"    # taken over while its worker sleeps; the rescuer is past a point
    UNKNOWN = "unknown"  # the clock decides what it meets: nothing is known afterwards


@dataclass(frozen=True)
class Effect:
    """What a group of faults (one drawn fault, or a crash and its damage) does to the
    job it meets at ``hit``."""

    kind: EffectKind
    hit: Hit | None = None
    damage: tuple[FaultSpec, ...] = ()  # CRASH: what the dead worker leaves damaged
    resumed_at: str | None = None  # RESCUE: the point the rescuer was held at


UNKNOWN = Effect(EffectKind.UNKNOWN)


class JobModel(Protocol):
    """A target's job, as the draws see it (see the module docstring)."""

    def fresh(self) -> Path:
        """The points a job passes from its claim to its end, in order."""
        ...

    def taken_over(self, path: Path, at: int, damage: tuple[FaultSpec, ...]) -> Path | None:
        """The takeover's path after a crash at ``path[at]`` (the job's future was
        ``path``) with ``damage`` left behind; ``()`` if the job ends there, None when
        not known."""
        ...

    def released(self, path: Path, at: int) -> Path | None:
        """The path of the next claim after a graceful stop at ``path[at]``; None when
        not known."""
        ...

    def effect(self, group: tuple[FaultSpec, ...]) -> Effect:
        """What ``group`` does to the job it meets (``core_effect`` for the core's kinds)."""
        ...


def core_effect(group: tuple[FaultSpec, ...]) -> Effect:
    """The effect of the core's fault kinds; a pack's model handles its own first."""
    head = group[0]
    if isinstance(head, KillAtPhaseSpec):
        return Effect(EffectKind.CRASH, (head.point, head.occurrence), damage=group[1:])
    point = getattr(head, "point", None)
    if point is None or len(group) > 1:
        return UNKNOWN
    if isinstance(head, StopSpec):
        return Effect(EffectKind.RELEASE, (point, head.occurrence))
    if isinstance(head, SeverRedisSpec) and head.workers is not None:
        return UNKNOWN  # a partial partition: the others run on meanwhile
    # a lost reply holds the job at the point while the fault waits for the drop (the
    # lease keeper is let go after half a lease), then the worker retries its write:
    # it goes on, or, if that took too long, is taken over
    if isinstance(head, SeverRedisSpec | RestartRedisSpec | FreezeSpec | LostReplySpec):
        return Effect(EffectKind.STALL, (point, head.occurrence))
    return UNKNOWN


@dataclass(frozen=True)
class Job:
    """One job's future: its path, the retries it used, whether it waits for a lease."""

    path: Path
    retries: int = 0
    waiting: bool = False


World = tuple[Job, ...]


@dataclass(frozen=True)
class Reach:
    """The futures the faults drawn so far leave, in every world the model keeps."""

    worlds: tuple[World, ...]
    first: bool = True
    queued: int = 0  # jobs still unclaimed when the first fault fires
    max_retries: int | None = None  # takeovers a job survives (None: not limited)
    # where the last fault crashed a job that now waits for its takeover, the same step
    # in every world (a pack may aim damage at what the dead worker left)
    crashed: Step | None = None

    @classmethod
    def start(cls, model: JobModel, *, jobs: int, workers: int,
              max_retries: int | None = None) -> Reach:
        return cls(worlds=((Job(model.fresh()),),), queued=max(0, jobs - workers),
                   max_retries=max_retries)

    def most(self, point: str) -> int:
        """The highest occurrence of ``point`` one job passes in every world (0: none)."""
        if not self.worlds:
            return 0
        return min(max((_count(job.path, point) for job in world), default=0)
                   for world in self.worlds)

    @property
    def open(self) -> bool:
        """Some job is sure to be left for a fault to meet: every world has one."""
        return self.first or (bool(self.worlds) and all(self.worlds))

    @property
    def waiting(self) -> bool:
        """In every world a job waits for its takeover: for the lease to run out, work
        is sure to be left, so a fault at a time (a delay) still meets some."""
        return bool(self.worlds) and all(any(j.waiting for j in w) for w in self.worlds)

    def after(self, model: JobModel, group: tuple[FaultSpec, ...]) -> Reach:
        """The futures once ``group`` has met the job it waits for."""
        effect = model.effect(group)
        worlds = self.worlds
        if self.first and self.queued:
            queued = tuple(Job(model.fresh()) for _ in range(self.queued))
            worlds = tuple(world + queued for world in worlds)
        if effect.kind is EffectKind.UNKNOWN or effect.hit is None:
            return Reach((), first=False, max_retries=self.max_retries)
        out: list[World] = []
        crashed: set[Step | None] = set()
        for world in worlds:
            found = _locate(world, effect.hit)
            if found is None:  # not reached in this world: it goes on as it was
                out.append(world)
                crashed.add(None)
                continue
            index, at = found
            job = world[index]
            futures = self._futures(model, job, at, effect)
            crashed.add(job.path[at] if effect.kind is EffectKind.CRASH
                        and all(f is not None and f.path for f in futures) else None)
            before, behind = world[:index], world[index + 1:]
            if effect.kind is EffectKind.RESCUE:
                # the rescuer is one worker more: a job in the queue may be claimed at
                # once, and be anywhere by now
                before = tuple(other for other in before if other.waiting)
                behind = tuple(other for other in behind if other.waiting)
            for future in futures:
                if future is None or not future.path:
                    out.append((*before, *behind))
                elif effect.kind is EffectKind.RELEASE:  # back in the queue, at its end
                    out.append(_ordered((*before, *behind, future)))
                else:
                    out.append(_ordered((*before, future, *behind)))
        unique = tuple(dict.fromkeys(out))
        if len(unique) > MAX_WORLDS:
            return Reach((), first=False, max_retries=self.max_retries)
        return Reach(unique, first=False, max_retries=self.max_retries,
                     crashed=crashed.pop() if len(crashed) == 1 else None)

    def _futures(self, model: JobModel, job: Job, at: int, effect: Effect) -> list[Job | None]:
        if effect.kind is EffectKind.CRASH:
            return [self._takeover(model, job, at, effect.damage, waiting=True)]
        if effect.kind is EffectKind.RELEASE:
            path = model.released(job.path, at)
            return [None if path is None else Job(path, job.retries)]
        if effect.kind is EffectKind.STALL:
            return [Job(job.path[at + 1:], job.retries),
                    self._takeover(model, job, at, (), waiting=False)]
        # RESCUE: the rescuer was held at ``resumed_at``; its path goes on from there
        rescued = self._takeover(model, job, at, (), waiting=False)
        if rescued is None or effect.resumed_at is None:
            return [None]
        points = [step.point for step in rescued.path]
        if effect.resumed_at not in points:
            return [None]
        return [Job(rescued.path[points.index(effect.resumed_at) + 1:], rescued.retries)]

    def _takeover(self, model: JobModel, job: Job, at: int, damage: tuple[FaultSpec, ...],
                  *, waiting: bool) -> Job | None:
        if self.max_retries is not None and job.retries + 1 > self.max_retries:
            return None  # past its retries the takeover fails the job: nothing more
        path = model.taken_over(job.path, at, damage)
        return None if path is None else Job(path, job.retries + 1, waiting)


def _count(path: Path, point: str) -> int:
    return sum(1 for step in path if step.point == point)


def _locate(world: World, hit: Hit) -> tuple[int, int] | None:
    """The first job (in the order they are met) that passes ``hit``, and where."""
    point, occurrence = hit
    for index, job in enumerate(world):
        at = [i for i, step in enumerate(job.path) if step.point == point]
        if len(at) >= occurrence:
            return index, at[occurrence - 1]
    return None


def _ordered(world: World) -> World:
    """Jobs that wait for a lease are met after the others."""
    return tuple(sorted(world, key=lambda job: job.waiting))
