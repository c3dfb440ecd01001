"""What drawn workloads add to a schedule: one worker cut off, the service's behaviour, deadlines.

Partial partitions (a fault on one worker's Redis), the scenario's ``service``
block and per-job deadlines are drawn with ``explore --workloads`` only
(``harness.explore.strategies``, ``harness.packs.reference.workloads``); the
base workload's schedules stay those a seed always gave.
"""

from __future__ import annotations

import hashlib
import json

from hypothesis import HealthCheck, Phase, Verbosity, find, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from harness.explore.explorer import (
    _example_expect,
    _phases,
    _schedules_for,
    example_scenario,
    exploring,
)
from harness.explore.reach import EffectKind, Reach, core_effect
from harness.explore.strategies import Schedule
from harness.explore.workloads import DrawnWorkload, Example, WorkloadSpread, fixed, with_schedules
from harness.faults.freeze import FreezeSpec
from harness.faults.kill_at_phase import KillAtPhaseSpec
from harness.faults.lost_reply import LostReplySpec
from harness.faults.sever_redis import SeverRedisSpec
from harness.packs.reference.reach import TranscribeJob
from harness.packs.reference.target import ReferenceTarget
from harness.packs.reference.workloads import DEADLINES_S
from harness.scenario import Scenario, ServiceSpec, parse_scenario, resolve

TARGET = ReferenceTarget()
BASE = resolve("baseline")
PLAN = exploring(TARGET, BASE)
PHASES = list(_phases(TARGET, "transcribe"))
DRAWN = _schedules_for(PHASES, PLAN, max_faults=3, max_workers=2, partitions=True)
EXAMPLES = with_schedules(PLAN.workloads, DRAWN) if PLAN.workloads is not None else st.nothing()
QUICK = settings(max_examples=300, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))
FIND = settings(max_examples=5000, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
PARTIAL_KINDS = {"sever_redis", "redis_toxic", "lost_reply"}


def _partial(schedule: Schedule) -> list[int]:
    """The indices of the faults that name the workers they act on."""
    return [i for i, f in enumerate(schedule.faults) if getattr(f, "workers", None) is not None]


def _scenario(example: Example) -> Scenario:
    """The example as the explorer runs it, and as replay reads it back from the run folder."""
    scenario = example_scenario(BASE, example, PLAN, "baseline-x1")
    return Scenario.model_validate(json.loads(json.dumps(scenario.model_dump(mode="json"))))


@QUICK
@given(EXAMPLES)
def test_a_fault_on_one_worker_is_first_where_every_worker_holds_a_job_and_ends_the_schedule(
        example: Example) -> None:
    drawn, schedule = example.workload, example.schedule
    partial = _partial(schedule)
    if not partial:
        return
    assert partial == [0], schedule.faults  # only the first fault
    first = schedule.faults[0]
    assert first.kind in PARTIAL_KINDS and schedule.workers >= 2
    names = getattr(first, "workers", None)
    every = [f"w{k}" for k in range(1, schedule.workers + 1)]
    assert names is not None and (len(names) == 1 and names[0] in every or names == every)
    assert schedule.partial() == ([first] if len(names) == 1 else [])
    # every worker's first job is one without a deadline, so the one named reaches the point
    assert drawn.undated >= schedule.workers * drawn.concurrency
    if first.kind != "lost_reply":  # the others ran on meanwhile: nothing more is known
        assert len(schedule.faults) == 1, schedule.faults
    # a valid scenario, which the run folder stores and replay reads back as it was
    again = _scenario(example)
    assert getattr(again.faults[0], "workers", None) == names
    assert again.workers == schedule.workers


def test_one_worker_cut_off_is_drawn_and_shrinks_towards_every_worker() -> None:
    cut = find(EXAMPLES, lambda ex: ex.schedule.faults[0].kind == "sever_redis"
               and bool(ex.schedule.partial()), settings=FIND)
    fault = cut.schedule.faults[0]
    assert isinstance(fault, SeverRedisSpec) and fault.point is not None
    assert cut.schedule.workers == 2 and fault.workers == ["w1"]
    assert cut.schedule.describe() == "2 worker(s): sever_redis@job.claimed[w1]"
    # the one tests/harness/test_partition.py runs and replays
    long = find(EXAMPLES, lambda ex: bool(ex.schedule.partial()) and isinstance(
        f := ex.schedule.faults[0], SeverRedisSpec) and f.point == "chunk.committed"
        and f.duration_ms >= 1000, settings=FIND)
    assert long.workload.items == (1, 1) and long.workload.concurrency == 1
    assert long.schedule.faults == (SeverRedisSpec(
        kind="sever_redis", point="chunk.committed", workers=["w1"], duration_ms=1000),)
    # the smallest cut of Redis at a point on two workers that ends the schedule cuts both
    every = find(EXAMPLES, lambda ex: ex.schedule.workers == 2 and isinstance(
        ex.schedule.faults[0], SeverRedisSpec) and ex.schedule.faults[0].workers is not None,
        settings=FIND)
    assert getattr(every.schedule.faults[0], "workers", None) == ["w1", "w2"]
    assert not every.schedule.partial()


def test_the_base_workloads_schedules_cut_off_no_worker_alone() -> None:
    fixed_schedules = _schedules_for(PHASES, PLAN, max_faults=3, max_workers=2)(
        fixed(BASE.workload, PLAN.chunks))

    @QUICK
    @given(fixed_schedules)
    def check(schedule: Schedule) -> None:
        assert not _partial(schedule), schedule.faults

    check()


def test_the_base_workloads_schedules_at_seed_1_are_those_of_before() -> None:
    # ``crashlab mutants`` and the README's figures rest on the schedules a seed gives on
    # ``baseline``: the draws of drawn workloads must not shift them. (Change the default
    # draws on purpose, and this digest changes with the figures measured anew.)
    drawn: list[str] = []
    fixed_schedules = _schedules_for(PHASES, PLAN, max_faults=3, max_workers=2)(
        fixed(BASE.workload, PLAN.chunks))

    @settings(max_examples=60, deadline=None, database=None, phases=[Phase.generate],
              verbosity=Verbosity.quiet, suppress_health_check=list(HealthCheck))
    @hypothesis_seed(1)
    @given(fixed_schedules)
    def collect(schedule: Schedule) -> None:
        drawn.append(json.dumps({"w": schedule.workers, "f": [
            f.model_dump(mode="json") for f in schedule.faults]}))

    collect()
    digest = hashlib.sha256("\n".join(drawn).encode()).hexdigest()
    assert digest == SEED_1_DIGEST, (digest, drawn[:3])


SEED_1_DIGEST = "4018332fbd4d788acd339226069e82894af23f300125a0283a3e0b9215875b80"


def test_a_cut_of_one_worker_leaves_nothing_known_and_a_reply_lost_to_one_holds_its_job() -> None:
    model = TranscribeJob(3)
    cut = SeverRedisSpec(kind="sever_redis", point="chunk.committed", workers=["w2"],
                         duration_ms=1500)
    assert core_effect((cut,)).kind is EffectKind.UNKNOWN
    start = Reach.start(model, jobs=2, workers=2)
    assert not start.after(model, (cut,)).open
    everyone = cut.model_copy(update={"workers": None})
    assert core_effect((everyone,)).kind is EffectKind.STALL  # as before
    lost = LostReplySpec(kind="lost_reply", point="chunk.committed", workers=["w2"])
    assert core_effect((lost,)).kind is EffectKind.STALL
    assert start.after(model, (lost,)).most("chunk.committed") >= 1


@QUICK
@given(EXAMPLES)
def test_drawn_deadlines_fall_on_the_last_jobs_and_the_faults_count_on_the_others(
        example: Example) -> None:
    drawn, schedule = example.workload, example.schedule
    deadlines = drawn.deadlines
    assert len(deadlines) == drawn.workload.jobs
    dated = [d for d in deadlines if d is not None]
    if not dated:
        return
    assert deadlines[0] is None and set(dated) <= set(DEADLINES_S) and len(set(dated)) == 1
    assert all(d is not None for d in deadlines[drawn.undated:])
    expect = _scenario(example).expect
    assert "TIMED_OUT" in expect.terminal_states
    assert len(schedule.faults) >= 1


def test_the_smallest_workload_has_no_deadline_and_a_service_that_keeps_its_promises() -> None:
    assert PLAN.workloads is not None
    smallest = find(PLAN.workloads, lambda drawn: True)
    assert smallest.deadlines == (None,)
    assert smallest.service == ServiceSpec() and not smallest.service.has_behaviour
    dated = find(PLAN.workloads, lambda drawn: any(d is not None for d in drawn.deadlines),
                 settings=FIND)
    assert dated.deadlines == (None, DEADLINES_S[0]) and dated.items == (1, 1)
    ignoring = find(PLAN.workloads, lambda drawn: drawn.service is not None
                    and drawn.service.idempotency_keys == "ignored", settings=FIND)
    assert ignoring.service is not None and ignoring.service.status_endpoint


def test_the_service_draw_reaches_every_behaviour() -> None:
    seen: set[tuple[str, bool]] = set()

    @QUICK
    @given(PLAN.workloads if PLAN.workloads is not None else st.nothing())
    def collect(drawn: DrawnWorkload) -> None:
        assert drawn.service is not None
        seen.add((drawn.service.idempotency_keys, drawn.service.status_endpoint))

    collect()
    assert seen == {("honoured", True), ("honoured", False), ("ignored", True),
                    ("ignored", False)}


def _example(service: ServiceSpec, *faults: object, deadlines: list[float | None] | None = None
             ) -> Example:
    work = parse_scenario("name: x\ndescription: y\nworkload: {media_seconds_per_job: [3, 3]}",
                          "t").workload
    if deadlines is not None:
        work = work.model_copy(update={"timeout_s_per_job": deadlines})
    return Example(DrawnWorkload(work, (3, 3), service=service),
                   Schedule(workers=2, faults=tuple(faults)))  # type: ignore[arg-type]


def test_keys_ignored_expect_one_billing_unless_nothing_could_stop_a_second() -> None:
    kill = KillAtPhaseSpec(kind="kill_at_phase", point="chunk.transcribed.before_commit")
    ignored = ServiceSpec(idempotency_keys="ignored")

    def honoured(example: Example) -> bool:
        return _example_expect(BASE, example, PLAN).idempotency_keys_honoured

    # the worker's status check before redoing a chunk must keep the work single
    assert honoured(_example(ignored, kill))
    assert honoured(_example(ServiceSpec(status_endpoint=False), kill))  # the keys do
    # no status to ask: once per interruption at most
    assert not honoured(_example(ignored.model_copy(update={"status_endpoint": False}), kill))
    # a worker that outlives its lease calls the service again, whatever the takeover asked
    freeze = FreezeSpec(kind="freeze", point="chunk.before_request", duration_ms=2000)
    assert not honoured(_example(ignored, freeze))
    cut = SeverRedisSpec(kind="sever_redis", point="chunk.committed", workers=["w1"])
    assert not honoured(_example(ignored, cut))
    lost = LostReplySpec(kind="lost_reply", point="chunk.committed", workers=["w1"])
    assert honoured(_example(ignored, lost))
    ends = _example_expect(BASE, _example(ServiceSpec(), kill, deadlines=[None, 0.3]), PLAN)
    assert set(ends.terminal_states) == {"COMPLETED", "FAILED", "TIMED_OUT"}
    assert "TIMED_OUT" not in _example_expect(BASE, _example(ServiceSpec(), kill),
                                              PLAN).terminal_states


def test_the_spread_reports_deadlines_service_behaviours_and_partitions() -> None:
    spread = WorkloadSpread()
    ignoring = _example(ServiceSpec(idempotency_keys="ignored"), deadlines=[None, 1.0])
    spread.add(ignoring.workload, 2, partial=["sever_redis w2"])
    spread.add(_example(ServiceSpec()).workload, 1)
    summary = spread.to_json()
    assert summary["deadlines"] == {"examples": 1, "jobs": 1, "deadline_s_histogram": {"1": 1}}
    assert summary["service"] == {"keys ignored": 1, "keys honoured": 1}
    assert summary["partitions"] == {"examples": 1, "faults": {"sever_redis w2": 1}}
    line = spread.describe()
    assert "deadlines in 1 example(s)" in line and "keys ignored x1" in line
    assert "some workers cut off in 1 example(s)" in line
    assert ignoring.workload.to_json()["timeout_s_per_job"] == [None, 1.0]
