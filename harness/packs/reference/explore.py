"""How exploration attacks the reference worker: its faster leases and domain faults.

``ReferenceTarget.exploring`` gives the explorer (``harness.explore``) the
settings, the chunks per job, the workloads ``explore --workloads`` draws
(``harness.packs.reference.workloads``) and a ``Vocabulary`` whose menu adds the
reference world's faults to the core's: a worker paused past its lease (a
zombie), the media source deleted, a chunk file corrupted or deleted, the
transcription service answering errors, and after a kill the damage the
dead worker leaves for its replacement. An upload workload's menu has the S3
faults too (cut, latency, 503/500 answers, the lost reply), each started at a
point whose next step is an S3 call, and its "chunks" are the upload's parts.

Which points repeat per chunk or part and which follow only a crash are the
target's (``ReferenceTarget.repeating_points``, ``after_crash_points``).
Occurrences a workload cannot reach make faults that never fire
(inconclusive examples), so they are not generated.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

from hypothesis import strategies as st

from harness.explore.reach import JobModel
from harness.explore.strategies import Draws, Exploring, FaultMenu, Hit, Vocabulary, lost_reply
from harness.faults import FaultSpec
from harness.packs.reference.faults.files import CorruptChunkSpec, DeleteSourceSpec
from harness.packs.reference.faults.pause_past_lease import PausePastLeaseSpec
from harness.packs.reference.faults.s3_errors import S3ErrorsSpec
from harness.packs.reference.faults.s3_lost_reply import S3LostReplySpec
from harness.packs.reference.faults.s3_toxic import S3ToxicSpec
from harness.packs.reference.faults.service_errors import ServiceErrorsSpec
from harness.packs.reference.faults.sever_s3 import SeverS3Spec
from harness.packs.reference.reach import TranscribeJob, UploadJob
from harness.packs.reference.workloads import workloads
from harness.scenario import Scenario

# Faster leases than the catalog's: every takeover waits for one
EXPLORE_SETTINGS = {"lease_ttl_ms": "600", "heartbeat_ms": "120", "poll_interval_ms": "20"}
# points where a worker holds a chunk in hand: where a zombie has something to write
CHUNK_POINTS = ("chunk.before_request", "chunk.transcribed.before_commit", "chunk.committed")
# the heartbeat point is for stalling leases, not for killing at
NOT_FOR_KILLS = frozenset({"lease.renew"})
# upload points whose next step is an S3 call (a part, the completion, the metadata);
# the first two are passed once per part
S3_POINTS = ("upload.part.before_upload", "upload.part.committed", "upload.before_complete",
             "upload.completed_in_s3")
PER_PART = frozenset({"upload.part.before_upload", "upload.part.committed"})
# points where a job surely has its chunk files: cut, and not yet cleaned up at completion
WITH_CHUNK_FILES = frozenset({"chunking.split", "chunking.committed", *CHUNK_POINTS,
                              "assembly.started", "job.before_complete", "recovery.verified",
                              "recovery.rechunked", "recovery.resumed"})
# where a takeover cuts again the chunks it found damaged
RECUT = "recovery.rechunked"
# How long a fault at a time may wait and still meet work: the exploration's jobs (a few
# one-second chunks, a service that answers at once) are done in a few hundred
# milliseconds, and a crashed job waits for the lease (less a heartbeat) before its takeover
BUSY_MS = 150


def vocabulary(repeating: frozenset[str], after_crash: frozenset[str], *,
               chunk_files: bool = True, model: JobModel | None = None,
               lease_ms: int = 600) -> Vocabulary:
    """The reference world's vocabulary; ``chunk_files`` says whether the workload's
    jobs keep chunk files to damage (an upload job keeps none); ``model`` is what a job
    passes (``harness.packs.reference.reach``)."""

    def menu(draws: Draws) -> FaultMenu:
        return _menu(draws, chunk_files=chunk_files, model=model)

    return Vocabulary(repeating, after_crash, NOT_FOR_KILLS, menu, model=model,
                      busy_ms=BUSY_MS, takeover_wait_ms=lease_ms // 2)


def exploring(base: Scenario, default_settings: Mapping[str, str],
              repeating: frozenset[str], after_crash: frozenset[str]) -> Exploring:
    """The reference pack's exploration of ``base``'s workload."""
    settings = {**base.settings_for(default_settings), **EXPLORE_SETTINGS}
    # the chunks (an upload's parts) every job has: per-item faults wait for no more
    # than the shortest job makes
    work = base.workload
    transcribe = work.kind == "transcribe"
    if transcribe:
        chunk_s = float(settings["chunk_seconds"])
        chunks = max(1, min(round(work.media_of(i) / chunk_s) for i in range(work.jobs)))
    else:  # the last part may be short; an empty source still sends one
        part = int(settings["upload_part_bytes"])
        chunks = max(1, min(-(-work.size_of(i) // part) for i in range(work.jobs)))

    @functools.cache
    def vocabulary_for(items: int) -> Vocabulary:  # a drawn workload's shortest job
        model = TranscribeJob(items) if transcribe else UploadJob(items)
        return vocabulary(repeating, after_crash, chunk_files=not base.needs_s3,
                          model=model, lease_ms=int(settings["lease_ttl_ms"]))

    return Exploring(settings=settings, chunks=chunks, vocabulary=vocabulary_for(chunks),
                     workloads=workloads(base.workload, settings),
                     vocabulary_for=vocabulary_for,
                     outlives_lease=frozenset({"freeze", "pause_past_lease"}))


def _found(draws: Draws, model: JobModel | None, hit: Hit) -> list[int]:
    """The chunks whose damage, left by a kill at ``hit``, the takeover finds and cuts
    again (the model's ``recovery.rechunked``): the ones not committed whose files are
    still there. Damage anywhere else is never read, so it is not drawn. Without a
    model, any chunk at a point where the job has its chunk files."""
    if model is None:
        return list(range(draws.chunks)) if hit[0] in WITH_CHUNK_FILES else []
    if hit[0] not in WITH_CHUNK_FILES:
        return []
    kill = Draws.kill(hit, restart=False)
    plain = draws.reach.after(model, (kill,)).most(RECUT)
    return [chunk for chunk in range(draws.chunks)
            if draws.reach.after(model, (kill, CorruptChunkSpec(
                kind="corrupt_chunk", chunk=chunk, at_crash=True))).most(RECUT) > plain]


def _menu(draws: Draws, *, chunk_files: bool, model: JobModel | None = None) -> FaultMenu:
    chunks, jobs, reach = draws.chunks, draws.jobs, draws.reach
    held = [p for p in CHUNK_POINTS if p in draws.phases]
    chunk_points = [p for p in held if p in draws.points] if held else list(draws.points)
    zombie = _zombie(draws, chunk_points)
    delete = st.builds(DeleteSourceSpec, kind=st.just("delete_source"),
                       job=st.integers(0, max(0, jobs - 1)))
    # a service call is sure to come first, or when a takeover still has a chunk to ask
    # for (its first may be answered from the service's own record, without a call)
    calls = "chunk.before_request" in draws.phases and (
        reach.first or reach.most("chunk.before_request") >= 2)
    service = st.builds(ServiceErrorsSpec, kind=st.just("service_errors"),
                        status=st.sampled_from([429, 500, 503]), count=st.integers(1, 3),
                        duration_ms=st.just(0)) if calls else st.nothing()

    def crash_at(hit: Hit) -> st.SearchStrategy[tuple[FaultSpec, ...]]:
        """A kill at ``hit``, or a kill, then what the dead worker leaves for its
        replacement (started only after the damage): the chunk it held damaged,
        or the job's source gone."""
        damage_kinds: list[st.SearchStrategy[FaultSpec]] = [
            st.builds(DeleteSourceSpec, kind=st.just("delete_source"), at_crash=st.just(True))]
        found = _found(draws, model, hit) if chunk_files else []
        if found:
            # a corrupted file is the subtler damage (a missing one is plain to see)
            damage_kinds += [st.builds(CorruptChunkSpec, kind=st.just("corrupt_chunk"),
                                       chunk=st.sampled_from(found),
                                       mode=st.just(mode), at_crash=st.just(True))
                             for mode in ("corrupt", "corrupt", "delete")]
        damage = st.sampled_from(damage_kinds).flatmap(lambda kind: kind)
        plain = st.just((Draws.kill(hit, restart=True),))
        damaged = damage.map(lambda fault: (Draws.kill(hit, restart=False), fault))
        # where the takeover will read a chunk file, damage it twice as often as not
        return st.sampled_from([plain, damaged, damaged] if found else [plain, damaged]
                               ).flatmap(lambda kind: kind)

    # A chunk file exists to damage only once the media was cut, and until the job
    # completes: damage on its own comes only while a crashed job that has its files
    # waits for its takeover, and is aimed at what the dead worker left.
    single: list[st.SearchStrategy[FaultSpec]] = [zombie, delete, draws.sever, draws.restart,
                                                   service, draws.random_kill, draws.deploy,
                                                   lost_reply(draws)]
    if chunk_files and reach.crashed is not None and reach.crashed.point in WITH_CHUNK_FILES:
        single.append(st.builds(CorruptChunkSpec, kind=st.just("corrupt_chunk"),
                                chunk=st.integers(0, max(0, chunks - 1)),
                                mode=st.sampled_from(["corrupt", "delete"]),
                                at_crash=st.just(True)))
    if not chunk_files:
        single += _s3_faults(draws)
    return FaultMenu(single=single, crash=draws.hits.flatmap(crash_at))


def _zombie(draws: Draws, points: list[str]) -> st.SearchStrategy[FaultSpec]:
    """A worker frozen past its lease at a chunk point it reaches (its second chunk at
    most), rescued by a worker held at ``recovery.resumed`` until the zombie wrote."""
    if not points:
        return st.nothing()
    rescuer = st.just("recovery.resumed") if "recovery.resumed" in draws.phases else st.none()

    def at(point: str) -> st.SearchStrategy[FaultSpec]:
        return st.builds(PausePastLeaseSpec, kind=st.just("pause_past_lease"),
                         point=st.just(point),
                         occurrence=st.integers(1, max(1, min(draws.reach.most(point), 2))),
                         hold_leases=st.just(2.0), rescuer_point=rescuer)

    return st.sampled_from(points).flatmap(at)


def _s3_faults(draws: Draws) -> list[st.SearchStrategy[FaultSpec]]:
    """The S3 faults of an upload workload, each at a point whose next step is an S3 call
    (none if the workload's points have none of them)."""
    points = [p for p in S3_POINTS if p in draws.points]
    if not points:
        return []

    def hits() -> st.SearchStrategy[Hit]:
        def at(point: str) -> st.SearchStrategy[Hit]:
            # a part point as often as the reach model says a worker still passes it
            last = max(1, min(draws.reach.most(point), 3)) if point in PER_PART else 1
            return st.tuples(st.just(point), st.integers(1, last))

        return st.sampled_from(points).flatmap(at)

    lost = hits().map(lambda hit: S3LostReplySpec(kind="s3_lost_reply", point=hit[0],
                                                  occurrence=hit[1]))
    errors = st.builds(lambda hit, status, count: S3ErrorsSpec(
        kind="s3_errors", status=status, count=count, duration_ms=30_000, point=hit[0],
        occurrence=hit[1], operations=["UploadPart", "CompleteMultipartUpload", "PutObject"]),
        hits(), st.sampled_from([503, 500]), st.integers(1, 8))
    sever = st.builds(lambda hit, ms: SeverS3Spec(kind="sever_s3", point=hit[0],
                                                  occurrence=hit[1], duration_ms=ms),
                      hits(), st.sampled_from([300, 1500, 4000]))
    slow = st.builds(lambda hit, ms: S3ToxicSpec(kind="s3_toxic", toxic="latency",
                                                 latency_ms=ms, duration_ms=1500,
                                                 point=hit[0], occurrence=hit[1]),
                     hits(), st.sampled_from([100, 400]))
    return [lost, errors, sever, slow]
