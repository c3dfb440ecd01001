"""Hypothesis strategies over crash schedules.

A schedule is 1..``max_faults`` faults plus a number of workers. Faults are
drawn from every kind the harness has, with their phases taken from the
target's catalog, and are made deterministic where possible: a kill, a
freeze or a Redis cut happens while the worker is paused at a failpoint,
so a schedule replays exactly and shrinks reliably. Kill at phase comes
first in the choice of kinds, so shrinking prefers the simplest fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hypothesis import strategies as st

from harness.faults import FaultSpec
from harness.faults.files import CorruptChunkSpec, DeleteSourceSpec
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.kill_random import KillRandomSpec
from harness.faults.pause_past_lease import PausePastLeaseSpec
from harness.faults.restart_redis import RestartRedisSpec
from harness.faults.service_errors import ServiceErrorsSpec
from harness.faults.sever_redis import SeverRedisSpec
from harness.faults.stop import StopSpec

# points where a worker holds a chunk in hand: where a zombie has something to write
CHUNK_POINTS = ("chunk.before_request", "chunk.transcribed.before_commit", "chunk.committed")
# the heartbeat point is for stalling leases, not for killing at
NOT_FOR_KILLS = ("lease.renew",)
# Naming convention of the phase catalog: a ``chunk.`` point is hit once per
# chunk, a ``recovery.`` point only after a crash, every other point once
# per job and attempt. Occurrences a workload cannot reach make faults that
# never fire (inconclusive examples), so they are not generated.
PER_CHUNK_PREFIX = "chunk."
AFTER_CRASH_PREFIX = "recovery."
# points a job reaches before its media is cut: no chunk file to damage yet
BEFORE_CHUNK_FILES = ("job.claimed", "chunking.started")


@dataclass(frozen=True)
class Vocabulary:
    """What a target's points and world allow a schedule to use.

    ``repeating`` points are hit once per item (a chunk, a part), so a fault may
    wait for a later hit; ``after_crash`` points are reached only after a crash,
    so they never come first; ``media`` says whether the target has the
    reference pack's world (chunk files, a source file, a transcription service,
    leases with a rescuer), whose faults are drawn only then.
    """

    repeating: frozenset[str] = frozenset()
    after_crash: frozenset[str] = frozenset()
    media: bool = True

    @classmethod
    def by_convention(cls, phases: Sequence[str]) -> Vocabulary:
        """The reference pack's naming: ``chunk.`` per chunk, ``recovery.`` after a crash."""
        return cls(frozenset(p for p in phases if p.startswith(PER_CHUNK_PREFIX)),
                   frozenset(p for p in phases if p.startswith(AFTER_CRASH_PREFIX)))


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
                          repeating: frozenset[str]) -> st.SearchStrategy[tuple[str, int]]:
    """A point and an occurrence of it that a worker reaches.

    Hits are counted per worker process, and a worker usually carries one
    job at a time: a ``chunk.`` point is reached once per chunk, the others
    once.
    """
    def with_occurrence(point: str) -> st.SearchStrategy[tuple[str, int]]:
        most = min(chunks, 3) if point in repeating else 1
        return st.tuples(st.just(point), st.integers(1, most))

    # a job spends most of its time among its per-chunk points: they weigh double
    weighted = [p for p in points for _ in range(2 if p in repeating else 1)]
    return st.sampled_from(weighted).flatmap(with_occurrence)


def fault_specs(phases: Sequence[str], chunks: int, *, jobs: int = 1,
                after_crash: bool = True, chunk_files: bool = True,
                vocabulary: Vocabulary | None = None,
                ) -> st.SearchStrategy[tuple[FaultSpec, ...]]:
    """One fault, or a crash and the damage it leaves on disk (two faults).

    ``after_crash`` allows points a worker only reaches after a crash;
    ``chunk_files`` says whether the workload's jobs keep chunk files to damage.
    """
    vocab = vocabulary or Vocabulary.by_convention(phases)
    points = [p for p in phases if p not in NOT_FOR_KILLS
              and (after_crash or p not in vocab.after_crash)]
    chunk_points = [p for p in CHUNK_POINTS if p in phases] or points
    point = st.sampled_from(points)
    # a later fault usually meets a fresh worker (a replacement, or one that
    # just took a job over), whose hit counts start again: its first hit
    hits = _point_and_occurrence(points, chunks=1 if after_crash else chunks,
                                 repeating=vocab.repeating)
    zombie = st.builds(PausePastLeaseSpec, kind=st.just("pause_past_lease"),
                       point=st.sampled_from(chunk_points),
                       occurrence=st.integers(1, max(1, min(chunks, 2))),
                       hold_leases=st.just(2.0),
                       rescuer_point=st.just("recovery.resumed") if "recovery.resumed" in phases
                       else st.none())
    sever = st.builds(SeverRedisSpec, kind=st.just("sever_redis"),
                      duration_ms=st.integers(100, 1500), point=st.none() | point,
                      delay_ms=st.integers(0, 500))
    restart = st.builds(RestartRedisSpec, kind=st.just("restart_redis"),
                        duration_ms=st.integers(100, 800), point=st.none() | point,
                        delay_ms=st.just(0))
    corrupt = st.builds(CorruptChunkSpec, kind=st.just("corrupt_chunk"),
                        chunk=st.integers(0, max(0, chunks - 1)),
                        mode=st.sampled_from(["corrupt", "delete"]),
                        job=st.integers(0, max(0, jobs - 1)))
    delete = st.builds(DeleteSourceSpec, kind=st.just("delete_source"),
                       job=st.integers(0, max(0, jobs - 1)))
    service = st.builds(ServiceErrorsSpec, kind=st.just("service_errors"),
                        status=st.sampled_from([429, 500, 503]), count=st.integers(1, 3),
                        duration_ms=st.just(0))
    random_kill = st.builds(KillRandomSpec, kind=st.just("kill_random"), min_delay_ms=st.just(0),
                            max_delay_ms=st.integers(50, 1500), restart=st.just(True))
    # a deploy at a phase, with a grace long enough to release (a grace that runs
    # out is a kill, which kill_at_phase already draws)
    deploy = hits.map(lambda hit: StopSpec(kind="stop", point=hit[0], occurrence=hit[1],
                                           grace_ms=5000))
    freeze = st.builds(FreezeSpec, kind=st.just("freeze"), point=st.none() | point,
                       duration_ms=st.integers(200, 3000), delay_ms=st.integers(0, 500))
    if not vocab.media:  # a queue library's worker: process and Redis faults only
        plain: list[st.SearchStrategy[FaultSpec]] = [freeze, sever, restart, random_kill,
                                                     deploy]
        kill = hits.map(lambda hit: (_kill(hit, restart=True),))
        return st.sampled_from([kill] * len(plain) + [kind.map(_alone) for kind in plain]
                               ).flatmap(lambda kind: kind)

    def crash_at(hit: tuple[str, int]) -> st.SearchStrategy[tuple[FaultSpec, ...]]:
        """A kill at ``hit``, or a kill, then what the dead worker leaves for its
        replacement (started only after the damage): the chunk it held damaged,
        or the job's source gone."""
        damage_kinds: list[st.SearchStrategy[FaultSpec]] = [
            st.builds(DeleteSourceSpec, kind=st.just("delete_source"), at_crash=st.just(True))]
        if chunk_files and hit[0] not in BEFORE_CHUNK_FILES:
            # a corrupted file is the subtler damage (a missing one is plain to see)
            damage_kinds += [st.builds(CorruptChunkSpec, kind=st.just("corrupt_chunk"),
                                       chunk=st.integers(0, max(0, chunks - 1)),
                                       mode=st.just(mode), at_crash=st.just(True))
                             for mode in ("corrupt", "corrupt", "delete")]
        damage = st.sampled_from(damage_kinds).flatmap(lambda kind: kind)
        return st.just((_kill(hit, restart=True),)) | damage.map(
            lambda fault: (_kill(hit, restart=False), fault))

    crash = hits.flatmap(crash_at)
    # Weights (``one_of`` would flatten nested choices and drop repeats, so the
    # choice is a ``sampled_from`` over a list with repeats): a crash, with or
    # without damage, is drawn as often as every other kind together; it is
    # the fault most recovery bugs need. A chunk file exists to damage only
    # once the media was cut, so damage on its own comes only after a fault.
    single: list[st.SearchStrategy[FaultSpec]] = [zombie, delete, sever, restart, service,
                                                   random_kill, deploy]
    if after_crash and chunk_files:
        single.append(corrupt)
    kinds = [crash] * len(single) + [kind.map(_alone) for kind in single]
    return st.sampled_from(kinds).flatmap(lambda kind: kind)


def _kill(hit: tuple[str, int], *, restart: bool) -> FaultSpec:
    return KillAtPhaseSpec(kind="kill_at_phase", point=hit[0], occurrence=hit[1],
                           restart=restart)


def _alone(fault: FaultSpec) -> tuple[FaultSpec, ...]:
    return (fault,)


def schedules(phases: Sequence[str], *, chunks: int, jobs: int = 1, max_faults: int = 3,
              max_workers: int = 2, chunk_files: bool = True,
              vocabulary: Vocabulary | None = None) -> st.SearchStrategy[Schedule]:
    """Schedules of 1..``max_faults`` faults; only a later fault may wait for a recovery."""
    first = fault_specs(phases, chunks, jobs=jobs, after_crash=False, chunk_files=chunk_files,
                        vocabulary=vocabulary)
    later = st.lists(fault_specs(phases, chunks, jobs=jobs, chunk_files=chunk_files,
                                 vocabulary=vocabulary), max_size=max_faults - 1)
    return st.builds(
        Schedule,
        workers=st.integers(1, max_workers),
        faults=st.tuples(first, later).map(
            lambda parts: (*parts[0], *(f for group in parts[1] for f in group))[:max_faults]),
    )
