"""graceful_stop_honoured: a SIGTERMed worker's jobs are released, or recovered if killed."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import Expectations, Verdict
from harness.history import FinalState, History
from harness.target import JobSnapshot
from tests.harness.checkers.builders import checker_named

CHECKER = checker_named("graceful_stop_honoured")
T0 = 1_700_000_000.0  # wall seconds; the events' ts_ms are on the same clock


class Run:
    """A tiny hand-written history: events and harness entries at chosen times."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = [{"kind": "run_start", "ts": T0, "scenario": "x",
                                            "seed": 1, "schedule": []}]
        self.seq = 0
        self.final = "COMPLETED"
        self.state_sets = ["COMPLETED"]

    def event(self, at: float, event: str, worker: str, epoch: int, **data: Any) -> Run:
        self.seq += 1
        self.rows.append({"kind": "sut_event", "ts": T0 + 100, "stream_id": f"{self.seq}-0",
                          "event": event, "job_id": "job-1", "worker_id": worker,
                          "epoch": epoch, "seq": self.seq, "ts_ms": int((T0 + at) * 1000),
                          "recovery": event == "recovery_started", "data": data})
        return self

    def stop(self, at: float, worker: str, outcome: str, took: float = 0.05,
             recorded_after: float = 0.0) -> Run:
        # ``recorded_after``: how long after the send the signal's own entry was written
        self.rows.append({"kind": "process_signal", "ts": T0 + at + recorded_after,
                          "name": worker, "pid": 7, "signal": "SIGTERM", "delivered": True,
                          "sent_ts": T0 + at})
        if outcome == "killed":
            self.rows.append({"kind": "process_signal", "ts": T0 + at + took, "name": worker,
                              "pid": 7, "signal": "SIGKILL", "delivered": True})
        self.rows.append({"kind": "worker_stop", "ts": T0 + at + took, "fault_id": "f1",
                          "worker": worker, "signal": "SIGTERM", "grace_ms": 1000,
                          "outcome": outcome, "exit_code": 0 if outcome == "exited" else -9,
                          "took_ms": round(took * 1000)})
        return self

    def history(self) -> History:
        # the harness's entries in time order, then the event stream copied at the end
        rows = sorted(self.rows, key=lambda r: r["ts"])
        return History.from_json([{**r, "index": i} for i, r in enumerate(rows)])

    def state(self) -> FinalState:
        snap = JobSnapshot(job_id="job-1", state=self.final, epoch=3, retry_count=0,
                           max_retries=3, chunk_count=2, chunks_done=2, progress=1.0,
                           error=None, transcript=None, committed_chunks={},
                           state_sets=self.state_sets)
        return FinalState({"job-1": snap})


def judge(run: Run) -> Any:
    return CHECKER.check(run.history(), run.state(), Expectations())


def claimed_by_w1() -> Run:
    return Run().event(0.0, "job_queued", "api", 0).event(0.1, "job_claimed", "w1", 1)


def test_a_released_job_finished_by_another_worker_is_valid() -> None:
    run = (claimed_by_w1().stop(1.0, "w1", "exited")
           .event(1.01, "job_released", "w1", 1).event(1.2, "job_claimed", "w1.2", 3)
           .event(2.0, "job_completed", "w1.2", 3))
    result = judge(run)
    assert result.verdict is Verdict.VALID, result.witness
    assert "1 job released and finished by another worker" in result.witness


def test_a_release_written_before_the_signal_entry_but_after_the_send_counts() -> None:
    # a loaded harness writes the SIGTERM's entry after the worker already answered it
    run = (claimed_by_w1().stop(1.0, "w1", "exited", took=0.3, recorded_after=0.2)
           .event(1.05, "job_released", "w1", 1).event(1.4, "job_claimed", "w1.2", 3)
           .event(2.0, "job_completed", "w1.2", 3))
    result = judge(run)
    assert result.verdict is Verdict.VALID, result.witness
    assert "1 job released and finished by another worker" in result.witness


def test_a_worker_that_left_by_itself_without_releasing_its_job_is_invalid() -> None:
    run = (claimed_by_w1().stop(1.0, "w1", "exited")
           .event(3.0, "recovery_started", "w1.2", 2).event(4.0, "job_completed", "w1.2", 2))
    result = judge(run)
    assert result.verdict is Verdict.INVALID
    assert "never released it" in result.witness and "w1 " in result.witness


def test_a_released_job_taken_back_by_recovery_consumed_a_retry_and_is_invalid() -> None:
    run = (claimed_by_w1().stop(1.0, "w1", "exited")
           .event(1.01, "job_released", "w1", 1).event(2.2, "recovery_started", "w1.2", 3)
           .event(3.0, "job_completed", "w1.2", 3))
    result = judge(run)
    assert result.verdict is Verdict.INVALID and "counts a retry" in result.witness


def test_a_kill_at_the_end_of_the_grace_recovered_by_another_worker_is_valid() -> None:
    run = (claimed_by_w1().stop(1.0, "w1", "killed", took=0.001)
           .event(2.5, "recovery_started", "w1.2", 2).event(3.0, "job_completed", "w1.2", 2))
    result = judge(run)
    assert result.verdict is Verdict.VALID, result.witness
    assert "1 job recovered after a kill" in result.witness


def test_a_job_a_graceful_stop_left_in_no_queue_and_no_worker_is_reported_lost() -> None:
    run = claimed_by_w1().stop(1.0, "w1", "exited")
    run.final, run.state_sets = "PROCESSING", ["app:state:PROCESSING"]
    result = judge(run)
    assert result.verdict is Verdict.INVALID
    assert any("was lost by worker w1" in d and "in no queue" in d for d in result.details)


def test_a_run_without_a_graceful_stop_is_not_applicable() -> None:
    run = claimed_by_w1().event(2.0, "job_completed", "w1", 1)
    result = judge(run)
    assert result.verdict is Verdict.NOT_APPLICABLE and "SIGTERM" in result.witness
