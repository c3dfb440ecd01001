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

Each fault after the first is drawn only where the faults before it leave
a job to meet: a point and an occurrence some job still passes, or a
delay while work is sure to be left (``harness.explore.reach``), so that
the examples are not spent on faults that never fire.

With ``partitions`` (drawn workloads: ``explore --workloads``) a schedule's
first fault may act on one worker while the others keep Redis: a cut
(``sever_redis``), a lost reply or a toxic (``redis_toxic``) with
``workers: [wK]``, shrinking towards every worker. Only the first, and only
where every worker surely holds a fresh job of the workload (as many jobs
without a deadline as all the workers run at once: a worker full with its own
cannot take another's), so the one cut off reaches the point; after a fault
the worker holding a given job is not known.
A cut of one worker ends what the model knows (``harness.explore.reach``).
Without ``partitions`` the draws are those of before, so a seed gives the
schedules it always gave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hypothesis import strategies as st

from harness.explore.reach import Hit as Hit  # re-exported: a pack's menu draws hits
from harness.explore.reach import JobModel, Reach
from harness.explore.sequence import SequenceModel
from harness.faults import FaultSpec
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.kill_random import KillRandomSpec
from harness.faults.lost_reply import LostReplySpec
from harness.faults.redis_toxic import RedisToxicSpec
from harness.faults.restart_redis import RestartRedisSpec
from harness.faults.sever_redis import SeverRedisSpec
from harness.faults.stop import StopSpec

if TYPE_CHECKING:
    from harness.explore.workloads import DrawnWorkload

Strategy = st.SearchStrategy[FaultSpec]
# After each fault, another one two times in three (about as often as ``st.lists`` of at
# most two went on: a schedule of three faults is the commonest); stopping comes first,
# so shrinking removes faults.
GO_ON = st.sampled_from([False, True, True])


@dataclass(frozen=True)
class Draws:
    """What one fault of a schedule is drawn from: the core's strategies, for a menu.

    ``points`` are where a fault may stop a worker: those some job still passes
    after the faults drawn before (``reach``, see ``harness.explore.reach``);
    ``after_crash`` is false for a schedule's first fault; ``hits`` draws a point
    and an occurrence that a worker reaches. ``window_ms`` is how long work is
    sure to be left (0: not sure at all), the longest delay a fault at a time
    may draw. A kind that cannot be drawn here is ``st.nothing()`` (a menu
    leaves it out, and the core drops every empty one). ``cut_off`` draws which
    workers a fault acts on where one may act on some only (None, every worker,
    first; None: there it cannot); ``partition`` is a fault on one worker's Redis
    while the others keep theirs, drawn only there (``fault_specs`` weighs it).
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
    reach: Reach = field(default_factory=lambda: Reach(()))
    window_ms: int = 0
    cut_off: st.SearchStrategy[list[str] | None] | None = None
    partition: st.SearchStrategy[FaultSpec] = field(default_factory=st.nothing)

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
    pack's menu adds its domain faults. ``model`` is what a job passes, in order
    (``harness.explore.reach``; default: read off the catalog with the points
    above, ``harness.explore.sequence``). ``busy_ms`` is how long the workload
    surely keeps a worker busy from the start, ``takeover_wait_ms`` how long a
    crashed job surely waits for its takeover: the longest delays drawn for a
    fault at a time, first and after a crash.
    """

    repeating: frozenset[str] = frozenset()
    after_crash: frozenset[str] = frozenset()
    quiet: frozenset[str] = frozenset()
    menu: Callable[[Draws], FaultMenu] = field(default=core_menu)
    model: JobModel | None = None
    busy_ms: int = 500
    takeover_wait_ms: int = 500


@dataclass(frozen=True)
class Exploring:
    """How a pack wants its runs explored (``Target.exploring``; else ``plain_exploring``):
    the worker settings, the items per job (``chunks``), the example's time limit, and
    the workloads it draws with ``explore --workloads`` (``harness.explore.workloads``;
    None: it draws none), and ``vocabulary_for`` the vocabulary for jobs of another
    number of items (a drawn workload's shortest job; None: ``vocabulary`` fits any).
    ``outlives_lease`` are the fault kinds after which a worker may go on working
    (and calling the external service) once its lease is gone: with a service that
    ignores idempotency keys, such a worker bills a chunk again however carefully the
    takeover checks first, so the examples expect at most a call per interruption."""

    settings: Mapping[str, str]
    vocabulary: Vocabulary
    chunks: int = 1
    timeout_s: float = 20.0
    workloads: st.SearchStrategy[DrawnWorkload] | None = None
    vocabulary_for: Callable[[int], Vocabulary] | None = None
    outlives_lease: frozenset[str] = frozenset({"freeze"})

    def vocabulary_of(self, chunks: int) -> Vocabulary:
        """The vocabulary for jobs of ``chunks`` items."""
        if self.vocabulary_for is None or chunks == self.chunks:
            return self.vocabulary
        return self.vocabulary_for(chunks)


@dataclass(frozen=True)
class Schedule:
    workers: int
    faults: tuple[FaultSpec, ...]

    def partial(self) -> list[FaultSpec]:
        """The faults that act on some of the workers only (a partial partition)."""
        return [f for f in self.faults
                if (names := getattr(f, "workers", None)) is not None
                and len(set(names)) < self.workers]

    def describe(self) -> str:
        parts = []
        for fault in self.faults:
            point = getattr(fault, "point", None)
            names = getattr(fault, "workers", None)
            parts.append(fault.kind + (f"@{point}" if point else "")
                         + (f"[{','.join(names)}]" if names else ""))
        return f"{self.workers} worker(s): " + ", ".join(parts)


def _point_and_occurrence(most: Mapping[str, int], *,
                          repeating: frozenset[str]) -> st.SearchStrategy[Hit]:
    """A point and an occurrence of it that a worker reaches: up to ``most[point]``
    (at most 3: a fault at the third chunk is as good as one at the tenth)."""
    def with_occurrence(point: str) -> st.SearchStrategy[Hit]:
        return st.tuples(st.just(point), st.integers(1, min(most[point], 3)))

    if not most:
        return st.nothing()
    # a job spends most of its time among its per-item points: they weigh double
    weighted = [p for p in most for _ in range(2 if p in repeating else 1)]
    return st.sampled_from(weighted).flatmap(with_occurrence)


def draws_for(reach: Reach, phases: Sequence[str], chunks: int, *, jobs: int = 1,
              vocabulary: Vocabulary | None = None, cut_off: Sequence[str] = ()) -> Draws:
    """The core's strategies for one fault where the faults before left ``reach``;
    ``cut_off`` names the workers one of which this fault may act on alone (none: it
    acts on every worker, as it always did)."""
    vocab = vocabulary or Vocabulary()
    most = {p: n for p in phases if p not in vocab.quiet and (n := reach.most(p)) > 0}
    points = tuple(most)
    anchored = bool(points)
    window = vocab.busy_ms if reach.first else vocab.takeover_wait_ms if reach.waiting else 0
    point = st.sampled_from(points) if anchored else st.nothing()
    hits = _point_and_occurrence(most, repeating=vocab.repeating)
    # a fault at a point, or (where work is sure to be left) after a delay
    somewhere: st.SearchStrategy[str | None] = (
        (st.none() | point) if anchored and window else point if anchored
        else st.none() if window else st.nothing())
    delay = st.integers(0, window)
    # every worker first, so that shrinking goes from one worker cut off to all of them;
    # one worker four times in five. (A partition names every worker rather than none:
    # the same kind of fault, so the schedule ends after it all the same and shrinking
    # it leaves the rest of the draw in place.)
    alone: list[list[str]] = [[name] for name in cut_off] * 2
    who = st.sampled_from([None, *alone]) if cut_off else None
    apart = st.sampled_from([list(cut_off), *alone]) if cut_off else None
    return Draws(
        phases=tuple(phases), points=points, chunks=chunks, jobs=jobs,
        after_crash=not reach.first, point=point, hits=hits, reach=reach, window_ms=window,
        cut_off=who, partition=_partition(hits, apart, window),
        sever=_unless_empty(somewhere, lambda: st.builds(
            SeverRedisSpec, kind=st.just("sever_redis"), duration_ms=st.integers(100, 1500),
            point=somewhere, delay_ms=delay)),
        restart=_unless_empty(somewhere, lambda: st.builds(
            RestartRedisSpec, kind=st.just("restart_redis"), duration_ms=st.integers(100, 800),
            point=somewhere, delay_ms=st.just(0))),
        random_kill=st.builds(KillRandomSpec, kind=st.just("kill_random"),
                              min_delay_ms=st.just(0),
                              max_delay_ms=st.integers(min(50, window), window),
                              restart=st.just(True)) if window else st.nothing(),
        # a deploy at a phase, with a grace long enough to release (a grace that runs
        # out is a kill, which kill_at_phase already draws)
        deploy=hits.map(lambda hit: StopSpec(kind="stop", point=hit[0], occurrence=hit[1],
                                             grace_ms=5000)),
        freeze=_unless_empty(somewhere, lambda: st.builds(
            FreezeSpec, kind=st.just("freeze"), point=somewhere,
            duration_ms=st.integers(200, 3000), delay_ms=delay)),
    )


def _partition(hits: st.SearchStrategy[Hit], who: st.SearchStrategy[list[str]] | None,
               window: int) -> Strategy:
    """One worker cut off from Redis at a point it reaches, for long enough that its lease
    may run out while it runs on (a partial partition); or its connections reset or
    slowed from a moment while work is sure to be left. Drawn only where a fault may act
    on one worker (``who``)."""
    if who is None or hits.is_empty:
        return st.nothing()
    cut = st.builds(lambda hit, names, ms: SeverRedisSpec(
        kind="sever_redis", point=hit[0], occurrence=hit[1], workers=names, duration_ms=ms),
        hits, who, st.integers(100, 2000))
    if not window:
        return cut
    toxic = st.builds(
        RedisToxicSpec, kind=st.just("redis_toxic"),
        toxic=st.sampled_from(["reset_peer", "latency"]),
        latency_ms=st.sampled_from([100, 400]), duration_ms=st.integers(200, 2000),
        delay_ms=st.integers(0, window), workers=who)
    return st.sampled_from([cut, cut, toxic]).flatmap(lambda kind: kind)


def _unless_empty(needed: st.SearchStrategy[object], build: Callable[[], Strategy],
                  ) -> Strategy:
    return st.nothing() if needed.is_empty else build()


def fault_specs(draws: Draws, vocabulary: Vocabulary | None = None,
                ) -> st.SearchStrategy[tuple[FaultSpec, ...]] | None:
    """One fault, or a crash and what it leaves behind (two faults); None when no kind
    can be drawn."""
    menu = (vocabulary or Vocabulary()).menu(draws)
    single = [kind for kind in menu.single if not kind.is_empty]
    crash = [] if menu.crash.is_empty else [menu.crash]
    # Weights (``one_of`` would flatten nested choices and drop repeats, so the
    # choice is a ``sampled_from`` over a list with repeats): a crash is drawn as
    # often as every other kind together; it is the fault most recovery bugs need.
    # Where one worker may be cut off (a schedule's first fault, and only with
    # ``partitions``), a partition as often as a crash: the chance is rare.
    kinds = crash * max(1, len(single)) + [kind.map(_alone) for kind in single]
    if not draws.partition.is_empty:
        kinds += [draws.partition.map(_alone)] * max(1, len(single))
    if not kinds:
        return None
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


def _alone(fault: FaultSpec) -> tuple[FaultSpec, ...]:
    return (fault,)


def schedules(phases: Sequence[str], *, chunks: int, jobs: int = 1, max_faults: int = 3,
              max_workers: int = 2, vocabulary: Vocabulary | None = None,
              max_retries: int | None = None, partitions: bool = False,
              undated: int | None = None, concurrency: int = 1,
              ) -> st.SearchStrategy[Schedule]:
    """Schedules of 1..``max_faults`` faults, each where the faults before it leave a
    job to meet (``harness.explore.reach``); ``max_retries`` is how many takeovers a
    job survives (None: not limited). With ``partitions`` the first fault may act on
    one worker (see the module docstring). ``undated`` is how many jobs, from the
    first, have no deadline (None: all): only those are counted on;
    ``concurrency`` is the jobs a worker runs at once."""
    vocab = vocabulary or Vocabulary()
    model: JobModel = vocab.model or SequenceModel(
        phases, repeating=vocab.repeating, after_crash=vocab.after_crash, quiet=vocab.quiet,
        items=chunks)
    counted = jobs if undated is None else undated
    kinds: dict[tuple[Reach, int], st.SearchStrategy[tuple[FaultSpec, ...]] | None] = {}

    def group(reach: Reach, workers: int) -> st.SearchStrategy[tuple[FaultSpec, ...]] | None:
        if not reach.open:
            return None  # no job is sure to be left: a fault here would likely miss
        if (reach, workers) not in kinds:  # the same few states come back in every example
            # one worker cut off: only at the first fault, and only where every worker
            # surely runs a job the faults can count on
            alone = partitions and reach.first and workers > 1 and \
                counted >= workers * concurrency
            cut_off = [f"w{k}" for k in range(1, workers + 1)] if alone else []
            kinds[reach, workers] = fault_specs(draws_for(
                reach, phases, chunks, jobs=jobs, vocabulary=vocab, cut_off=cut_off), vocab)
        return kinds[reach, workers]

    @st.composite
    def schedule(draw: st.DrawFn) -> Schedule:
        workers = draw(st.integers(1, max_workers))
        reach = Reach.start(model, jobs=counted, workers=workers, max_retries=max_retries)
        faults: tuple[FaultSpec, ...] = ()
        while len(faults) < max_faults:
            kind = group(reach, workers)
            if kind is None or (faults and not draw(GO_ON)):
                break
            drawn = draw(kind)
            faults, reach = (*faults, *drawn), reach.after(model, drawn)
        return Schedule(workers=workers, faults=faults[:max_faults])

    return schedule()


def lost_reply(draws: Draws) -> st.SearchStrategy[FaultSpec]:
    """The next Redis reply to a worker stopped at a hit is lost (``faults.lost_reply``):
    drawn at ``draws.hits``, the points and occurrences a worker still reaches; where a
    fault may act on one worker, the one that may be it (``draws.cut_off``)."""
    if draws.cut_off is None:
        return draws.hits.map(lambda hit: LostReplySpec(kind="lost_reply", point=hit[0],
                                                        occurrence=hit[1]))
    return st.builds(lambda hit, who: LostReplySpec(kind="lost_reply", point=hit[0],
                                                    occurrence=hit[1], workers=who),
                     draws.hits, draws.cut_off)
