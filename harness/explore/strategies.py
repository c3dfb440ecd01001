"""Hypothesis strategies over crash schedules.

A schedule is 1..``max_faults`` faults plus a number of workers. The core
draws the process and Redis faults every pack shares (a kill at a phase,
a random kill, a freeze, a deploy, a Redis cut or restart); a pack adds its
domain faults through a ``Vocabulary.menu`` (the reference pack's:
``harness.packs.reference.explore``). Faults are made deterministic where
possible: a kill, a freeze or a Redis cut happens while the worker is
paused at a failpoint, so a schedule replays exactly and shrinks reliably.
Kill at phase comes first in the choice of kinds, so shrinking prefers the
simplest fault.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from hypothesis import strategies as st

from harness.faults import FaultSpec
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.kill_random import KillRandomSpec
from harness.faults.restart_redis import RestartRedisSpec
from harness.faults.sever_redis import SeverRedisSpec
from harness.faults.stop import StopSpec

Hit = tuple[str, int]  # a failpoint and which of its hits


@dataclass(frozen=True)
class Draws:
    """What one fault of a schedule is drawn from: the core's strategies, for a menu.

    ``points`` are where a fault may stop a worker; ``after_crash`` is false for
    a schedule's first fault (nothing crashed before it); ``hits`` draws a point
    and an occurrence that a worker reaches.
    """

    phases: tuple[str, ...]
    points: tuple[str, ...]
    chunks: int
    jobs: int
    after_crash: bool
    point: st.SearchStrategy[str]
    hits: st.SearchStrategy[Hit]
    sever: st.SearchStrategy[FaultSpec]
    restart: st.SearchStrategy[FaultSpec]
    random_kill: st.SearchStrategy[FaultSpec]
    deploy: st.SearchStrategy[FaultSpec]
    freeze: st.SearchStrategy[FaultSpec]

    @staticmethod
    def kill(hit: Hit, *, restart: bool) -> FaultSpec:
        """A kill at ``hit``; with ``restart``, a replacement starts at once."""
        return KillAtPhaseSpec(kind="kill_at_phase", point=hit[0], occurrence=hit[1],
                               restart=restart)


@dataclass(frozen=True)
class FaultMenu:
    """The kinds one fault is drawn from: ``crash`` (a kill, alone or with what it
    leaves behind) as often as all of ``single`` together, then each of those."""

    single: Sequence[st.SearchStrategy[FaultSpec]]
    crash: st.SearchStrategy[tuple[FaultSpec, ...]]


def core_menu(draws: Draws) -> FaultMenu:
    """A queue library's worker: process and Redis faults only."""
    return FaultMenu(single=[draws.freeze, draws.sever, draws.restart, draws.random_kill,
                             draws.deploy, lost_reply(draws)],
                     crash=draws.hits.map(lambda hit: (Draws.kill(hit, restart=True),)))


@dataclass(frozen=True)
class Vocabulary:
    """What a target's points and world allow a schedule to use.

    ``repeating`` points are hit once per item (a chunk, a part), so a fault may
    wait for a later hit; ``after_crash`` points are reached only after a crash,
    so they never come first; ``quiet`` points are never killed at (a heartbeat,
    for stalling leases); ``menu`` chooses the kinds (default ``core_menu``); a
    pack's menu adds its domain faults.
    """

    repeating: frozenset[str] = frozenset()
    after_crash: frozenset[str] = frozenset()
    quiet: frozenset[str] = frozenset()
    menu: Callable[[Draws], FaultMenu] = field(default=core_menu)


@dataclass(frozen=True)
class Exploring:
    """How a pack wants its runs explored (``Target.exploring``; else ``plain_exploring``):
    the worker settings, the items per job (``chunks``), the example's time limit."""

    settings: Mapping[str, str]
    vocabulary: Vocabulary
    chunks: int = 1
    timeout_s: float = 20.0


@dataclass(frozen=True)
class Schedule:
    workers: int
    faults: tuple[FaultSpec, ...]

    def describe(self) -> str:
        parts = []
        for fault in self.faults:
            point = getattr(fault, "point", None)
            parts.append(fault.kind + (f"@{point}" if point else ""))
        return f"{self.workers} worker(s): " + ", ".join(parts)


def _point_and_occurrence(points: Sequence[str], *, chunks: int,
                          repeating: frozenset[str]) -> st.SearchStrategy[Hit]:
    """A point and an occurrence of it that a worker reaches.

    Hits are counted per worker process, and a worker usually carries one
    job at a time: a repeating point is reached once per item, the others
    once.
    """
    def with_occurrence(point: str) -> st.SearchStrategy[Hit]:
        most = min(chunks, 3) if point in repeating else 1
        return st.tuples(st.just(point), st.integers(1, most))

    # a job spends most of its time among its per-item points: they weigh double
    weighted = [p for p in points for _ in range(2 if p in repeating else 1)]
    return st.sampled_from(weighted).flatmap(with_occurrence)


def fault_specs(phases: Sequence[str], chunks: int, *, jobs: int = 1,
                after_crash: bool = True, vocabulary: Vocabulary | None = None,
                ) -> st.SearchStrategy[tuple[FaultSpec, ...]]:
    """One fault, or a crash and what it leaves behind (two faults).

    ``after_crash`` allows points a worker only reaches after a crash.
    """
    vocab = vocabulary or Vocabulary()
    points = tuple(p for p in phases if p not in vocab.quiet
                   and (after_crash or p not in vocab.after_crash))
    point = st.sampled_from(points)
    # a later fault usually meets a fresh worker (a replacement, or one that
    # just took a job over), whose hit counts start again: its first hit
    hits = _point_and_occurrence(points, chunks=1 if after_crash else chunks,
                                 repeating=vocab.repeating)
    draws = Draws(
        phases=tuple(phases), points=points, chunks=chunks, jobs=jobs, after_crash=after_crash,
        point=point, hits=hits,
        sever=st.builds(SeverRedisSpec, kind=st.just("sever_redis"),
                        duration_ms=st.integers(100, 1500), point=st.none() | point,
                        delay_ms=st.integers(0, 500)),
        restart=st.builds(RestartRedisSpec, kind=st.just("restart_redis"),
                          duration_ms=st.integers(100, 800), point=st.none() | point,
                          delay_ms=st.just(0)),
        random_kill=st.builds(KillRandomSpec, kind=st.just("kill_random"),
                              min_delay_ms=st.just(0), max_delay_ms=st.integers(50, 1500),
                              restart=st.just(True)),
        # a deploy at a phase, with a grace long enough to release (a grace that runs
        # out is a kill, which kill_at_phase already draws)
        deploy=hits.map(lambda hit: StopSpec(kind="stop", point=hit[0], occurrence=hit[1],
                                             grace_ms=5000)),
        freeze=st.builds(FreezeSpec, kind=st.just("freeze"), point=st.none() | point,
                         duration_ms=st.integers(200, 3000), delay_ms=st.integers(0, 500)),
    )
    menu = vocab.menu(draws)
    # Weights (``one_of`` would flatten nested choices and drop repeats, so the
    # choice is a ``sampled_from`` over a list with repeats): a crash is drawn as
    # often as every other kind together; it is the fault most recovery bugs need.
    kinds = [menu.crash] * len(menu.single) + [kind.map(_alone) for kind in menu.single]
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


def _alone(fault: FaultSpec) -> tuple[FaultSpec, ...]:
    return (fault,)


def schedules(phases: Sequence[str], *, chunks: int, jobs: int = 1, max_faults: int = 3,
              max_workers: int = 2,
              vocabulary: Vocabulary | None = None) -> st.SearchStrategy[Schedule]:
    """Schedules of 1..``max_faults`` faults; only a later fault may wait for a recovery."""
    first = fault_specs(phases, chunks, jobs=jobs, after_crash=False, vocabulary=vocabulary)
    later = st.lists(fault_specs(phases, chunks, jobs=jobs, vocabulary=vocabulary),
                     max_size=max_faults - 1)
    return st.builds(
        Schedule,
        workers=st.integers(1, max_workers),
        faults=st.tuples(first, later).map(
            lambda parts: (*parts[0], *(f for group in parts[1] for f in group))[:max_faults]),
    )


def lost_reply(draws: Draws) -> st.SearchStrategy[FaultSpec]:
    """The next Redis reply to a worker stopped at a hit is lost (``faults.lost_reply``)."""
    from harness.faults.lost_reply import LostReplySpec

    return draws.hits.map(lambda hit: LostReplySpec(kind="lost_reply", point=hit[0],
                                                    occurrence=hit[1]))
