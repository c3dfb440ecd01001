"""Generated workloads: drawn with the faults, valid, reachable, shrunk and replayed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.explore.explorer import EXPLORATION_FILE, explore
from harness.explore.strategies import Schedule, schedules
from harness.explore.workloads import DrawnWorkload, Example, WorkloadSpread, with_schedules
from harness.packs.reference.mutants import Mutant, Patch, materialize
from harness.packs.reference.target import PHASES, ReferenceTarget
from harness.packs.reference.workloads import MAX_CHUNKS, MAX_JOBS, MAX_PARTS
from harness.procs import ProcessRegistry
from harness.runner import SCHEDULE_FILE, run_scenario
from harness.scenario import DEFAULT_SETTINGS, Scenario, parse_scenario, resolve
from system_under_test.media import chunk_bounds

TARGET = ReferenceTarget()
TRANSCRIBE = TARGET.exploring(resolve("baseline"))
UPLOAD = TARGET.exploring(resolve("upload-kill-after-checkpoint"))
QUICK = settings(max_examples=150, deadline=None, database=None,
                 suppress_health_check=list(HealthCheck))


def _examples(plan: object) -> st.SearchStrategy[Example]:
    from harness.explore.strategies import Exploring

    assert isinstance(plan, Exploring) and plan.workloads is not None
    return with_schedules(plan.workloads, lambda drawn: schedules(
        list(PHASES), chunks=drawn.chunks, jobs=drawn.workload.jobs,
        vocabulary=plan.vocabulary_of(drawn.chunks)))


@QUICK
@given(_examples(TRANSCRIBE))
def test_drawn_transcribe_workloads_are_valid_and_their_faults_reachable(
        example: Example) -> None:
    drawn, schedule = example.workload, example.schedule
    work = drawn.workload
    assert 1 <= work.jobs <= MAX_JOBS and len(drawn.items) == work.jobs
    chunk_seconds = float(TRANSCRIBE.settings["chunk_seconds"])
    for index, items in enumerate(drawn.items):
        # the worker cuts each job into exactly the chunks the draw says
        assert 1 <= items <= MAX_CHUNKS
        assert len(chunk_bounds(work.media_of(index), chunk_seconds)) == items
    assert 1 <= int(drawn.settings["chunk_concurrency"]) <= 4
    assert 1 <= int(drawn.settings["concurrency"]) <= 3
    # a per-chunk fault waits for no chunk the shortest job lacks
    for fault in schedule.faults:
        occurrence = getattr(fault, "occurrence", 1)
        if (getattr(fault, "point", None) or "").startswith("chunk."):
            assert occurrence <= drawn.chunks
        if fault.kind == "corrupt_chunk":
            assert fault.chunk < drawn.chunks and fault.job < work.jobs
    # the stored scenario carries the drawn workload: what replay reads back
    scenario = resolve("baseline").model_copy(update={
        "workload": work, "faults": list(schedule.faults)})
    again = Scenario.model_validate(json.loads(json.dumps(scenario.model_dump(mode="json"))))
    assert again.workload == work
    assert [again.workload.media_of(i) for i in range(work.jobs)] == \
        [work.media_of(i) for i in range(work.jobs)]


@QUICK
@given(_examples(UPLOAD))
def test_drawn_upload_workloads_sit_on_and_around_part_boundaries(example: Example) -> None:
    drawn = example.workload
    work = drawn.workload
    part = int(UPLOAD.settings["upload_part_bytes"])
    assert work.kind == "upload" and 1 <= work.jobs <= MAX_JOBS
    for index, items in enumerate(drawn.items):
        size = work.size_of(index)
        assert size == 0 or size % part in (0, 1, part - 1)
        assert size <= MAX_PARTS * part + 1
        assert items == max(1, -(-size // part))


def test_the_upload_draw_reaches_every_boundary_and_growing_sources() -> None:
    seen: set[str] = set()

    @QUICK
    @given(UPLOAD.workloads)
    def collect(drawn: DrawnWorkload) -> None:
        seen.update(drawn.shapes)

    collect()
    for shape in ("empty", "one part", "one part + 1 byte", "whole parts",
                  "whole parts + 1 byte", "whole parts - 1 byte"):
        assert shape in seen or f"{shape}, growing" in seen, (shape, seen)
    assert any(shape.endswith(", growing") for shape in seen)


def test_the_smallest_draw_is_one_job_of_one_chunk() -> None:
    from hypothesis import find

    assert TRANSCRIBE.workloads is not None
    smallest = find(TRANSCRIBE.workloads, lambda drawn: True)
    assert smallest.items == (1,)
    assert smallest.settings == {"chunk_concurrency": "1", "concurrency": "1"}
    # and a long job shrinks to the shortest that is long
    long = find(TRANSCRIBE.workloads, lambda drawn: max(drawn.items) > 10)
    assert long.items == (11,)


def test_spread_sums_up_what_was_tried() -> None:
    spread = WorkloadSpread()
    work = parse_scenario("name: x\ndescription: y\nworkload: {media_seconds_per_job: "
                          "[1, 10.5, 40]}", "t").workload
    spread.add(DrawnWorkload(work, (1, 11, 40), {"chunk_concurrency": "2"}), workers=2)
    summary = spread.to_json()
    assert summary["jobs"] == {"min": 3, "median": 3, "max": 3}
    assert summary["items_per_job"] == {"min": 1, "median": 11, "max": 40}
    assert summary["items_histogram"] == {"1": 1, "11-20": 1, "21-40": 1}
    assert summary["upload_bytes"] is None and summary["workers_histogram"] == {"2": 1}
    assert summary["settings"] == {"chunk_concurrency=2": 1}


@pytest.mark.parametrize(("workload", "field"), [
    ("{jobs: 3, media_seconds_per_job: [1, 2]}", "workload"),
    ("{media_seconds_per_job: [1, 0]}", "workload.media_seconds_per_job.1"),
    ("{kind: upload, size_bytes_per_job: [-1]}", "workload.size_bytes_per_job.0"),
    ("{kind: upload, media_seconds_per_job: [1]}", "workload"),
    ("{media_seconds: 3, media_seconds_per_job: [1]}", "workload"),
    ("{media_seconds_per_job: []}", "workload.media_seconds_per_job"),
    ("{jobs: 2, timeout_s_per_job: [1]}", "workload"),
    ("{timeout_s: 1, timeout_s_per_job: [1]}", "workload"),
    ("{timeout_s_per_job: [0]}", "workload.timeout_s_per_job.0"),
])
def test_bad_per_job_lengths_name_the_field(workload: str, field: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(f"name: x\ndescription: y\nworkload: {workload}\n", "bad.yaml")
    assert f"  {field}: " in str(caught.value), str(caught.value)


def test_per_job_lengths_set_the_job_count() -> None:
    work = parse_scenario("name: x\ndescription: y\nworkload: {kind: upload, "
                          "size_bytes_per_job: [0, 65536, 65537]}", "t").workload
    assert work.jobs == 3 and [work.size_of(i) for i in range(3)] == [0, 65536, 65537]


def test_per_job_deadlines_give_each_job_its_own_or_none() -> None:
    work = parse_scenario("name: x\ndescription: y\nworkload: {media_seconds_per_job: [1, 2], "
                          "timeout_s_per_job: [null, 0.5]}", "t").workload
    assert [work.timeout_of(i) for i in range(2)] == [None, 0.5]
    every = parse_scenario("name: x\ndescription: y\nworkload: {jobs: 2, timeout_s: 3}",
                           "t").workload
    assert [every.timeout_of(i) for i in range(2)] == [3.0, 3.0]


# A planted bug only a long job shows: on resume the plan read back from Redis is
# ordered by chunk number as text, so with 11 chunks or more chunk 10 comes before
# chunk 2 and the transcript is out of order. The fixed baseline (3 chunks) can never
# show it; a drawn workload can, and shrinking must find the shortest job that does.
PLAN_ORDER_AS_TEXT = Mutant(
    "plan-sorted-as-text", "the resumed plan is sorted by chunk number as text",
    "none", (Patch("store.py", "        return sorted(chunks, key=lambda c: c.index)\n",
                   "        return sorted(chunks, key=lambda c: str(c.index))\n"),))


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(900)
def test_a_long_job_bug_is_found_shrunk_to_the_shortest_job_and_replayed(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    target = ReferenceTarget(pythonpath=materialize(PLAN_ORDER_AS_TEXT, tmp_path / "mutant"))
    found = explore(resolve("baseline"), examples=60, seed=5, registry=registry,
                    runs_root=tmp_path / "runs", target=target, use_database=False,
                    time_budget_s=700, max_workers=1, max_faults=1, workloads=True)
    assert found.counterexample is not None, found.to_json()
    assert found.workload is not None
    # the smallest job that shows it: one job of 11 chunks (10 and 2 swap places)
    assert found.workload.items == (11,), found.workload.describe()
    summary = json.loads((found.folder / EXPLORATION_FILE).read_text())
    assert summary["counterexample"]["workload"]["items_per_job"] == [11]
    assert summary["workloads"]["drawn"] and summary["workloads"]["examples"] == found.examples
    stored = json.loads((found.counterexample.run_dir / SCHEDULE_FILE).read_text())
    scenario = Scenario.model_validate(stored["scenario"])
    assert scenario.workload == found.workload.workload
    assert scenario.settings["chunk_concurrency"] == found.workload.settings["chunk_concurrency"]
    verdicts = [run_scenario(scenario, seed=stored["seed"], registry=registry,
                             runs_root=tmp_path / "replays", target=target).verdict
                for _ in range(3)]
    assert verdicts == [Verdict.INVALID] * 3
    # the same schedule on the fixed baseline's 3-chunk jobs: the bug stays hidden
    short = scenario.model_copy(update={"workload": resolve("baseline").workload})
    assert run_scenario(short, seed=stored["seed"], registry=registry,
                        runs_root=tmp_path / "short", target=target).verdict is Verdict.VALID


def test_schedules_alone_still_work_without_a_workload() -> None:
    # the schedule strategy is unchanged for callers that draw no workload
    @QUICK
    @given(schedules(list(PHASES), chunks=3, jobs=2, vocabulary=TRANSCRIBE.vocabulary))
    def check(schedule: Schedule) -> None:
        assert 1 <= len(schedule.faults) <= 3

    check()


def test_the_catalog_has_a_long_job_beside_others_and_many_small_jobs() -> None:
    chunk_s = float(DEFAULT_SETTINGS["chunk_seconds"])
    long = resolve("long-job-beside-others")
    lengths = [len(chunk_bounds(long.workload.media_of(i), chunk_s))
               for i in range(long.workload.jobs)]
    assert max(lengths) > 10 and len(lengths) > 1 and int(long.settings["concurrency"]) > 1
    # the crash reaches only the long job: past every commit the short ones make together
    kill = long.faults[0]
    assert kill.kind == "kill_at_phase" and kill.occurrence > sum(sorted(lengths)[:-1])
    small = resolve("many-small-jobs")
    sizes = [len(chunk_bounds(small.workload.media_of(i), chunk_s))
             for i in range(small.workload.jobs)]
    assert len(sizes) >= 10 and max(sizes) <= 2 and small.faults[0].kind == "kill_at_phase"
