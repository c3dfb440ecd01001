"""The reach model: later faults are drawn only where a job is sure to be met."""

from __future__ import annotations

from hypothesis import given, settings

from harness.explore.reach import Job, Reach, Step
from harness.explore.sequence import SequenceModel
from harness.explore.strategies import Schedule, Vocabulary, schedules
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.kill_random import KillRandomSpec
from harness.faults.stop import StopSpec

POINTS = ("claimed", "cut", "item.sent", "item.done", "finished", "resumed", "heartbeat")
REPEATING = frozenset({"item.sent", "item.done", "heartbeat"})
AFTER_CRASH = frozenset({"resumed"})
QUIET = frozenset({"heartbeat"})


def model(items: int = 3, after_crash: frozenset[str] = AFTER_CRASH) -> SequenceModel:
    return SequenceModel(POINTS, repeating=REPEATING, after_crash=after_crash, quiet=QUIET,
                         items=items)


def kill(point: str, occurrence: int = 1) -> KillAtPhaseSpec:
    return KillAtPhaseSpec(kind="kill_at_phase", point=point, occurrence=occurrence)


def test_a_fresh_job_passes_the_catalog_in_order_with_its_items_repeated() -> None:
    assert model(items=2).fresh() == (
        Step("claimed"), Step("cut"), Step("item.sent", 0), Step("item.done", 0),
        Step("item.sent", 1), Step("item.done", 1), Step("finished"))


def test_the_first_fault_reaches_every_point_but_the_after_crash_ones() -> None:
    reach = Reach.start(model(), jobs=2, workers=2)
    assert {p: reach.most(p) for p in POINTS} == {
        "claimed": 1, "cut": 1, "item.sent": 3, "item.done": 3, "finished": 1, "resumed": 0,
        "heartbeat": 0}


def test_after_a_crash_the_takeover_redoes_the_item_in_hand_and_not_the_claim() -> None:
    the_model = model()
    reach = Reach.start(the_model, jobs=2, workers=2).after(the_model, (kill("item.sent", 2),))
    # the takeover: resumed, item 1 again, item 2, finished; nobody claims a job afresh
    assert [(p, reach.most(p)) for p in POINTS] == [
        ("claimed", 0), ("cut", 0), ("item.sent", 2), ("item.done", 2), ("finished", 1),
        ("resumed", 1), ("heartbeat", 0)]
    assert reach.waiting and reach.crashed == Step("item.sent", 1)
    # a crash at an item's last point finishes it: only item 2 is left
    done = Reach.start(the_model, jobs=2, workers=2).after(the_model, (kill("item.done", 2),))
    assert done.most("item.done") == 1


def test_jobs_left_in_the_queue_are_still_claimed_fresh() -> None:
    the_model = model()
    reach = Reach.start(the_model, jobs=3, workers=1).after(the_model, (kill("finished"),))
    assert reach.most("claimed") == 1 and reach.most("item.done") == 3
    assert reach.most("resumed") == 1  # the killed job's takeover, which finishes it


def test_a_job_past_its_retries_fails_at_the_takeover_and_nothing_is_left() -> None:
    the_model = model()
    reach = Reach.start(the_model, jobs=1, workers=2, max_retries=1)
    reach = reach.after(the_model, (kill("item.sent", 1),))
    assert reach.open and reach.most("resumed") == 1
    reach = reach.after(the_model, (kill("resumed"),))
    assert not reach.open and all(reach.most(p) == 0 for p in POINTS)


def test_a_fault_the_clock_decides_leaves_nothing_known() -> None:
    the_model = model()
    random_kill = KillRandomSpec(kind="kill_random", max_delay_ms=100)
    reach = Reach.start(the_model, jobs=1, workers=1).after(the_model, (random_kill,))
    assert not reach.open and reach.most("finished") == 0


def test_a_pause_at_a_point_keeps_both_futures_and_draws_what_both_pass() -> None:
    the_model = model()
    freeze = FreezeSpec(kind="freeze", point="item.done", occurrence=1, duration_ms=900)
    reach = Reach.start(the_model, jobs=1, workers=1).after(the_model, (freeze,))
    assert len(reach.worlds) == 2
    # going on: items 1 and 2; taken over: resumed, then items 1 and 2 too
    assert reach.most("item.sent") == 2 and reach.most("resumed") == 0
    assert not reach.waiting  # a cut lease may be taken over at once


def test_a_target_naming_no_after_crash_points_gets_nothing_drawn_after_a_crash() -> None:
    the_model = model(after_crash=frozenset())
    reach = Reach.start(the_model, jobs=1, workers=1).after(the_model, (kill("cut"),))
    assert not reach.open


def test_a_graceful_stop_is_not_followed_when_the_model_does_not_know_it() -> None:
    the_model = model()
    stop = StopSpec(kind="stop", point="cut", grace_ms=5000)
    reach = Reach.start(the_model, jobs=1, workers=1).after(the_model, (stop,))
    assert not reach.open


def test_a_released_job_goes_to_the_back_of_the_queue() -> None:
    fresh = Job(model().fresh())

    class Releasing(SequenceModel):
        def released(self, path: tuple[Step, ...], at: int) -> tuple[Step, ...] | None:
            return path[at:]

    the_model = Releasing(POINTS, repeating=REPEATING, after_crash=AFTER_CRASH, quiet=QUIET,
                          items=3)
    reach = Reach(((fresh, fresh),), first=False).after(
        the_model, (StopSpec(kind="stop", point="cut", grace_ms=5000),))
    (world,) = reach.worlds
    assert world[0] == fresh and world[1].path[0] == Step("cut")


VOCAB = Vocabulary(REPEATING, AFTER_CRASH, QUIET)


@settings(max_examples=300, deadline=None)
@given(schedules(list(POINTS), chunks=3, jobs=2, max_workers=2, vocabulary=VOCAB,
                 max_retries=1))
def test_every_later_fault_waits_where_the_faults_before_it_leave_a_job(
        schedule: Schedule) -> None:
    assert 1 <= len(schedule.faults) <= 3
    # walk the schedule by hand: only crashes keep the future known, and each later
    # fault is at a point the jobs still pass
    the_model = model()
    reach = Reach.start(the_model, jobs=2, workers=schedule.workers, max_retries=1)
    for index, fault in enumerate(schedule.faults):
        point = getattr(fault, "point", None)
        if point is not None:
            assert 1 <= getattr(fault, "occurrence", 1) <= reach.most(point), (index, fault)
        else:
            assert index == 0 or reach.waiting, (index, fault)  # a delay where work is left
        if index == 0:
            assert point not in AFTER_CRASH and point != "heartbeat"
        else:
            assert point != "claimed" or schedule.workers < 2  # both jobs claimed at once
        reach = reach.after(the_model, (fault,))


def test_a_rescued_job_goes_on_past_the_rescuer_and_the_queue_is_not_counted_on() -> None:
    from harness.explore.reach import Effect, EffectKind

    class Rescuing(SequenceModel):
        def effect(self, group: tuple[object, ...]) -> Effect:  # type: ignore[override]
            return Effect(EffectKind.RESCUE, ("item.sent", 1), resumed_at="resumed")

    the_model = Rescuing(POINTS, repeating=REPEATING, after_crash=AFTER_CRASH, quiet=QUIET,
                         items=3)
    reach = Reach.start(the_model, jobs=2, workers=1).after(the_model, (kill("item.sent"),))
    # the rescuer is past "resumed" and redoes item 0; the second job, queued for the one
    # worker, may be claimed by the rescuer's frozen victim meanwhile: not counted on
    assert reach.most("resumed") == 0 and reach.most("item.sent") == 3
    assert reach.most("claimed") == 0


def test_a_crash_during_a_takeovers_recovery_is_recovered_from_once() -> None:
    the_model = model(after_crash=frozenset({"cut", "resumed"}))  # a takeover: cut, resumed
    reach = Reach.start(the_model, jobs=1, workers=1).after(the_model, (kill("item.sent", 2),))
    assert reach.most("cut") == 1 and reach.most("resumed") == 1
    again = reach.after(the_model, (kill("cut"),))
    # the second takeover passes its recovery once, not the first one's rest as well
    assert again.most("cut") == 1 and again.most("resumed") == 1
    assert again.most("item.sent") == 2
