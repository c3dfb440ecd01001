"""fault_coverage: a planned fault that did not fire, or was never healed, makes the run unknown."""

from __future__ import annotations

from harness.checkers import Expectations, Verdict
from harness.checkers.faults import FaultCoverage
from harness.history import History
from tests.harness.checkers.builders import check, one_job


def test_planned_fault_fired_and_healed_is_valid() -> None:
    result = check(FaultCoverage(), one_job())
    assert result.verdict is Verdict.VALID
    assert "(1)" in result.witness


def test_run_without_planned_faults_is_valid() -> None:
    result = check(FaultCoverage(), one_job(crash_after=None))
    assert result.verdict is Verdict.VALID
    assert result.witness == "no faults were planned"


def test_skipped_fault_is_unknown_and_names_fault_and_reason() -> None:
    run = one_job()
    run.timeline = [r for r in run.timeline if r["kind"] != "fault_start"]
    run.add("fault_skipped", fault_id="f1", reason="phase chunk.transcribed not reached in 30s")

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert result.witness == ("planned fault f1 (kill_worker chunk=2, job=job-1, "
                              "point=chunk.transcribed) never fired: skipped (phase "
                              "chunk.transcribed not reached in 30s)")


def test_planned_fault_with_no_record_at_all_is_unknown() -> None:
    run = one_job()
    run.run_start["schedule"].append({"fault_id": "f2", "fault": "partition", "params": {}})

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert result.witness == "planned fault f2 (partition) never fired: no fault_start was recorded"


def test_fault_never_healed_is_unknown() -> None:
    run = one_job()
    run.timeline = [r for r in run.timeline if r["kind"] != "fault_heal"]

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "fault f1 (kill_worker) started at history entry" in result.witness
    assert "never healed" in result.witness


def test_heal_recorded_before_the_start_does_not_count() -> None:
    run = one_job()
    heal = run.of_kind("fault_heal")[0]
    run.timeline.remove(heal)
    run.timeline.insert(0, heal)

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "never healed" in result.witness


def test_fault_that_fired_without_being_planned_is_unknown() -> None:
    run = one_job()
    run.run_start["schedule"] = []

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "fault f1 (kill_worker) fired at history entry" in result.witness
    assert "not in the schedule" in result.witness


def test_history_without_run_start_is_unknown() -> None:
    run = one_job()
    rows = [entry.to_json() for entry in run.history() if entry.kind != "run_start"]

    result = FaultCoverage().check(History.from_json(rows), run.state(), Expectations())

    assert result.verdict is Verdict.UNKNOWN
    assert "no run_start" in result.witness


def test_fault_planned_during_the_run_counts_as_planned() -> None:
    run = one_job()
    run.add("fault_planned", fault_id="debug-1", fault="kill_random",
            params={"by": "debugger", "worker": "w1"})
    run.add("fault_start", fault_id="debug-1", fault="kill_random", params={})
    run.add("fault_heal", fault_id="debug-1")

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.VALID
    assert "(2)" in result.witness
    assert [f.fault_id for f in run.history().schedule] == ["f1", "debug-1"]


def test_fault_planned_during_the_run_that_never_fired_is_unknown() -> None:
    run = one_job()
    run.add("fault_planned", fault_id="debug-1", fault="sever_redis", params={})

    result = check(FaultCoverage(), run)

    assert result.verdict is Verdict.UNKNOWN
    assert "planned fault debug-1 (sever_redis) never fired" in result.witness
