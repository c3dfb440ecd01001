"""The reference worker's job model: what a takeover, a hand-back and damage leave.

Each expectation is read off ``system_under_test`` (pipeline, recovery,
upload); the property test at the end draws the schedules ``crashlab explore
baseline`` draws and checks each later fault against the model by hand.
"""

from __future__ import annotations

from hypothesis import find, given, settings

from harness.explore.explorer import exploring
from harness.explore.reach import Reach, Step
from harness.explore.strategies import Schedule, schedules
from harness.faults import FaultSpec
from harness.packs.reference.faults.files import CorruptChunkSpec, DeleteSourceSpec
from harness.packs.reference.reach import TranscribeJob, UploadJob
from harness.packs.reference.target import ReferenceTarget
from harness.scenario import resolve
from tests.harness.schedule_groups import groups

JOB = TranscribeJob(3)
FRESH = JOB.fresh()


def at(path: tuple[Step, ...], point: str, item: int | None = None) -> int:
    return path.index(Step(point, item))


def points(path: tuple[Step, ...] | None) -> list[str]:
    assert path is not None
    return [f"{s.point}#{s.item}" if s.item is not None else s.point for s in path]


def corrupt(chunk: int = 0) -> CorruptChunkSpec:
    return CorruptChunkSpec(kind="corrupt_chunk", chunk=chunk, at_crash=True)


def test_a_takeover_after_the_plan_resumes_at_the_chunk_in_hand() -> None:
    path = JOB.taken_over(FRESH, at(FRESH, "chunk.transcribed.before_commit", 1), ())
    assert points(path) == [
        "recovery.started", "recovery.verified", "recovery.resumed",
        "chunk.before_request#1", "chunk.transcribed.before_commit#1", "chunk.committed#1",
        "chunk.before_request#2", "chunk.transcribed.before_commit#2", "chunk.committed#2",
        "assembly.started", "job.before_complete", "job.completed"]


def test_a_takeover_before_the_plan_cuts_again_and_verifies_nothing() -> None:
    path = JOB.taken_over(FRESH, at(FRESH, "chunking.split"), ())
    assert points(path)[:5] == ["recovery.started", "chunking.started", "chunking.split",
                                "chunking.committed", "recovery.resumed"]
    assert "recovery.verified" not in points(path) and "chunk.committed#0" in points(path)
    # and without the source it fails right after it started
    gone = DeleteSourceSpec(kind="delete_source", at_crash=True)
    assert JOB.taken_over(FRESH, at(FRESH, "chunking.split"), (gone,)) == (
        Step("recovery.started"),)


def test_only_a_damaged_chunk_not_yet_committed_is_cut_again() -> None:
    open_chunk = JOB.taken_over(FRESH, at(FRESH, "chunk.before_request", 1), (corrupt(),))
    assert "recovery.rechunked" in points(open_chunk)  # the kill held chunk 1: damaged
    committed = JOB.taken_over(FRESH, at(FRESH, "chunk.committed", 1), (corrupt(),))
    assert "recovery.rechunked" not in points(committed)
    # no chunk in hand: the chunk drawn, here one already committed by then
    tail = JOB.taken_over(FRESH, at(FRESH, "assembly.started"), (corrupt(2),))
    assert points(tail) == ["recovery.started", "recovery.verified", "recovery.resumed",
                            "assembly.started", "job.before_complete", "job.completed"]


def test_a_kill_after_completion_leaves_nothing_to_take_over() -> None:
    assert JOB.taken_over(FRESH, at(FRESH, "job.completed"), ()) == ()


def test_a_released_job_is_claimed_fresh_and_keeps_its_committed_chunks() -> None:
    path = JOB.released(FRESH, at(FRESH, "chunk.committed", 0))
    assert points(path)[:4] == ["job.claimed", "chunking.started", "chunking.split",
                                "chunking.committed"]
    assert "chunk.committed#0" not in points(path) and "chunk.committed#1" in points(path)
    assert not any(p.startswith("recovery.") for p in points(path))


def test_an_upload_taken_over_after_s3_completed_it_only_writes_the_metadata() -> None:
    upload = UploadJob(1)
    fresh = upload.fresh()
    assert points(upload.taken_over(fresh, at(fresh, "upload.completed_in_s3"), ())) == [
        "recovery.started", "upload.verified", "recovery.resumed", "upload.metadata_written",
        "job.completed"]
    before = upload.taken_over(fresh, at(fresh, "upload.created"), ())
    assert points(before)[:4] == ["recovery.started", "upload.created", "upload.started",
                                  "recovery.resumed"]


TARGET = ReferenceTarget()
BASE = resolve("baseline")
PLAN = exploring(TARGET, BASE)
PHASES = list(TARGET.phases_for(BASE.workload.kind))


def timed(group: tuple[FaultSpec, ...]) -> bool:
    """Whether the clock decides what ``group`` meets."""
    head = group[0]
    return head.kind in {"kill_random", "service_errors", "delete_source", "corrupt_chunk"} \
        or getattr(head, "point", "") is None


@settings(max_examples=300, deadline=None)
@given(schedules(PHASES, chunks=PLAN.chunks, jobs=BASE.workload.jobs,
                 vocabulary=PLAN.vocabulary, max_retries=BASE.workload.max_retries))
def test_explore_baseline_draws_later_faults_only_where_a_job_is_left(
        schedule: Schedule) -> None:
    model = PLAN.vocabulary.model
    assert model is not None and 1 <= len(schedule.faults) <= 3
    drawn = groups(schedule.faults)
    assert getattr(drawn[0][0], "point", None) not in TARGET.after_crash_points
    reach = Reach.start(model, jobs=BASE.workload.jobs, workers=schedule.workers,
                        max_retries=BASE.workload.max_retries)
    for index, group in enumerate(drawn):
        head = group[0]
        point = getattr(head, "point", None)
        if index:
            # nothing comes after a fault the clock decides (a random kill, service errors,
            # a file damaged on its own, a cut or a freeze after a delay)
            assert not timed(drawn[index - 1]), schedule.faults
            # with two workers both jobs are claimed at once: claimed again only when
            # a graceful stop handed one back
            released = any(g[0].kind == "stop" for g in drawn[:index])
            assert point != "job.claimed" or schedule.workers == 1 or released
        if point == "recovery.rechunked":
            # reached only when a crash left a chunk not yet committed damaged
            assert any(isinstance(f, CorruptChunkSpec) for g in drawn[:index] for f in g)
        if point is not None:
            assert getattr(head, "occurrence", 1) <= reach.most(point), schedule.faults
        if len(group) == 2 and isinstance(group[1], CorruptChunkSpec):
            # a chunk damaged at a kill is one the takeover finds and cuts again
            plain = reach.after(model, group[:1]).most("recovery.rechunked")
            assert reach.after(model, group).most("recovery.rechunked") > plain, group
        reach = reach.after(model, group)


def corrupted_at_a_kill(schedule: Schedule) -> bool:
    """A kill before the service was asked for a chunk, then that chunk's file corrupted
    before the replacement starts."""
    return any(kill.kind == "kill_at_phase" and not getattr(kill, "restart", True)
               and getattr(kill, "point", "") in ("chunking.committed", "chunk.before_request")
               and isinstance(damage, CorruptChunkSpec) and damage.mode == "corrupt"
               for kill, damage in zip(schedule.faults, schedule.faults[1:], strict=False))


def test_the_menu_draws_a_kill_then_a_corrupted_chunk_the_takeover_must_read() -> None:
    # the schedule a recovery that trusts its chunk files needs; drawn, not built
    found = find(schedules(PHASES, chunks=PLAN.chunks, jobs=BASE.workload.jobs,
                           vocabulary=PLAN.vocabulary, max_retries=BASE.workload.max_retries),
                 corrupted_at_a_kill,
                 settings=settings(max_examples=2000, database=None, deadline=None))
    kill, damage = next((a, b) for a, b in zip(found.faults, found.faults[1:], strict=False)
                        if isinstance(b, CorruptChunkSpec))
    assert damage.at_crash and kill.kind == "kill_at_phase"


def test_an_upload_taken_over_anywhere_with_its_source_gone_has_a_future() -> None:
    # a crash at any point of an upload's path, or of a takeover's path after a first
    # crash, its source deleted: the takeover starts with recovery (a crash at the end
    # of a takeover's path once had nothing left to look at, and raised)
    job = UploadJob(3)
    gone = DeleteSourceSpec(kind="delete_source", at_crash=True)
    paths = [job.fresh()]
    paths += [p for at in range(len(paths[0])) if (p := job.taken_over(paths[0], at, ()))]
    for path in paths:
        for at in range(len(path)):
            future = job.taken_over(path, at, (gone,))
            assert future is not None
            if path[at].point == "job.completed":
                assert future == ()
            else:
                assert future[0] == Step("recovery.started"), (path, at, future)
