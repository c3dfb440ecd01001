"""The generic job-queue invariants, on small histories written the way the packs write them."""

from __future__ import annotations

from typing import Any

from harness.checkers.base import Expectations, Verdict
from harness.checkers.queue import (
    EffectsPerPromise,
    JobsSettled,
    NoneLost,
    RecoveryBounded,
    RetriesWithinMax,
)
from harness.history import FinalState, History
from harness.target import JobSnapshot

T0 = 1_000_000.0


class Run:
    def __init__(self, effects: str = "at_least_once", limit: float = 10.0) -> None:
        self.rows: list[dict[str, Any]] = [{"kind": "run_start", "scenario": "s", "seed": 1,
                                            "target": "rq", "schedule": [], "effects": effects,
                                            "recovery_limit_s": limit}]
        self.jobs: dict[str, JobSnapshot] = {}

    def at(self, ts: float, kind: str, **fields: Any) -> Run:
        self.rows.append({"kind": kind, "ts": T0 + ts, **fields})
        return self

    def submit(self, job: str, ts: float = 0.0, max_retries: int | None = None) -> Run:
        return self.at(ts, "op", op="submit", job_id=job, job_kind="task",
                       max_retries=max_retries)

    def attempt(self, job: str, ts: float, pid: int, worker: str = "w1",
                effect: bool = True) -> Run:
        self.at(ts, "effect", job=job, what="start", pid=pid, worker=worker, effect_ts=T0 + ts)
        if effect:
            self.at(ts + 0.1, "effect", job=job, what="effect", pid=pid, worker=worker,
                    effect_ts=T0 + ts + 0.1)
        return self

    def kill(self, ts: float, pid: int, name: str = "w1") -> Run:
        return self.at(ts, "process_signal", name=name, pid=pid, signal="SIGKILL")

    def final(self, job: str, state: str, *, where: list[str] | None = None,
              ended: float | None = None, retries: int = 0, native: str | None = None) -> Run:
        self.jobs[job] = JobSnapshot(job_id=job, state=state, retry_count=retries,
                                     max_retries=3, error=None, state_sets=where or [],
                                     native_state=native,
                                     ended_at=None if ended is None else T0 + ended, kind="task")
        return self

    def check(self, checker: Any, **expect: Any) -> Any:
        rows = [*self.rows, {"kind": "run_end", "ts": T0 + 100, "reason": "settled"}]
        records = [{"index": i, "ts": row.pop("ts", T0), **row} for i, row in enumerate(rows)]
        return checker.check(History.from_json(records), FinalState(self.jobs),
                             Expectations(**expect))


def test_a_job_in_no_key_that_never_finished_is_lost() -> None:
    run = (Run().submit("j1").attempt("j1", 1, pid=50, effect=False).kill(2, pid=50)
           .final("j1", "PROCESSING", native="started"))
    result = run.check(NoneLost())
    assert result.verdict is Verdict.INVALID
    assert "job j1 is lost" in result.witness and "started" in result.witness
    assert run.check(JobsSettled()).verdict is Verdict.VALID  # lost, not stuck: none_lost's


def test_a_job_still_held_by_a_registry_is_stuck_with_where_and_how_long() -> None:
    run = Run().submit("j1").final("j1", "PROCESSING", where=["rq:wip:default"])
    result = run.check(JobsSettled())
    assert result.verdict is Verdict.INVALID
    assert "stuck" in result.witness and "rq:wip:default" in result.witness
    assert "100.0 s" in result.witness
    assert run.check(NoneLost()).verdict is Verdict.VALID


def test_a_job_that_ended_failed_breaks_an_expectation_of_completed() -> None:
    run = Run().submit("j1").final("j1", "FAILED", ended=3)
    assert run.check(JobsSettled()).verdict is Verdict.INVALID
    assert run.check(JobsSettled(), terminal_states=frozenset({"COMPLETED", "FAILED"})
                     ).verdict is Verdict.VALID


def test_a_repeated_effect_is_allowed_at_least_once_and_refused_at_most_once() -> None:
    run = (Run("at_least_once").submit("j1").attempt("j1", 1, pid=50).kill(1.5, pid=50)
           .attempt("j1", 3, pid=60, worker="w2").final("j1", "COMPLETED", ended=4))
    held = run.check(EffectsPerPromise())
    assert held.verdict is Verdict.VALID and "2 times" in held.witness
    refused = run.check(EffectsPerPromise(), effects="exactly_once")
    assert refused.verdict is Verdict.INVALID and "applied 2 times" in refused.witness


def test_a_completed_job_without_its_effect_breaks_at_least_once() -> None:
    run = (Run().submit("j1").submit("j2").attempt("j1", 1, pid=50)
           .attempt("j2", 1, pid=50, effect=False)
           .final("j1", "COMPLETED", ended=2).final("j2", "COMPLETED", ended=2))
    result = run.check(EffectsPerPromise())
    assert result.verdict is Verdict.INVALID and "job j2 COMPLETED" in result.witness


def test_an_empty_ledger_cannot_judge_effects() -> None:
    run = Run().submit("j1").final("j1", "COMPLETED", ended=2)
    assert run.check(EffectsPerPromise()).verdict is Verdict.UNKNOWN


def test_recovery_slower_than_the_limit_is_invalid_and_says_how_long() -> None:
    run = (Run(limit=10).submit("j1").attempt("j1", 1, pid=50, effect=False).kill(2, pid=50)
           .attempt("j1", 30, pid=60, worker="w2").final("j1", "COMPLETED", ended=32.5))
    result = run.check(RecoveryBounded())
    assert result.verdict is Verdict.INVALID
    assert "30.5 s later, over the 10 s limit" in result.witness
    quick = (Run(limit=60).submit("j1").attempt("j1", 1, pid=50, effect=False).kill(2, pid=50)
             .attempt("j1", 30, pid=60, worker="w2").final("j1", "COMPLETED", ended=32.5))
    assert quick.check(RecoveryBounded()).verdict is Verdict.VALID


def test_a_job_killed_again_on_its_retry_is_bounded_per_kill() -> None:
    # a soak's kills 30 s apart, as arq's claims: the retry meets the next kill
    def run(retake: float) -> Run:
        return (Run(limit=45).submit("j1", max_retries=4)
                .attempt("j1", 1, pid=50, effect=False).kill(5, pid=50, name="w1")
                .attempt("j1", retake, pid=60, worker="w2").kill(retake + 1, pid=60, name="w2")
                .attempt("j1", retake + 31, pid=70, worker="w3")
                .final("j1", "COMPLETED", ended=retake + 32))
    held = run(34).check(RecoveryBounded())  # ended 61 s after the first kill, 31 after its own
    assert held.verdict is Verdict.VALID, held.witness
    assert "j1 29.00 s to its next attempt" in held.witness and "j1 31.00 s" in held.witness
    slow = run(55).check(RecoveryBounded())  # the retry itself came 50 s after the first kill
    assert slow.verdict is Verdict.INVALID
    assert "its next attempt started 50.0 s later, over the 45 s limit" in slow.witness
    # a kill after the job ended does not make the earlier recovery a retake
    done = (Run(limit=45).submit("j1", max_retries=4).attempt("j1", 1, pid=50, effect=False)
            .kill(5, pid=50).attempt("j1", 50, pid=60, worker="w2")
            .final("j1", "COMPLETED", ended=51).kill(60, pid=60, name="w2"))
    late = done.check(RecoveryBounded())
    assert late.verdict is Verdict.INVALID and "46.0 s later, over the 45 s limit" in late.witness


def test_a_killed_job_with_retries_left_that_is_never_retried_is_invalid() -> None:
    run = (Run().submit("j1", max_retries=2).attempt("j1", 1, pid=50, effect=False)
           .kill(2, pid=50).final("j1", "FAILED", ended=40, native="failed"))
    result = run.check(RecoveryBounded())
    assert result.verdict is Verdict.INVALID and "although it had 2 retries" in result.witness
    no_retry = (Run().submit("j1").attempt("j1", 1, pid=50, effect=False).kill(2, pid=50)
                .final("j1", "FAILED", ended=40))
    assert no_retry.check(RecoveryBounded()).verdict is Verdict.VALID


def test_a_job_in_a_forked_child_of_a_killed_worker_was_in_flight() -> None:
    # RQ's work horse writes its own pid (51) and its worker's name; the kill names the worker
    run = (Run(limit=10).submit("j1", max_retries=1).attempt("j1", 1, pid=51, effect=False)
           .kill(2, pid=50, name="w1").final("j1", "PROCESSING", where=["rq:wip:q"]))
    result = run.check(RecoveryBounded())
    assert result.verdict is Verdict.INVALID and "in flight on w1 (pid 50)" in result.witness
    other = (Run().submit("j1", max_retries=1).attempt("j1", 1, pid=61, worker="w2",
                                                       effect=False)
             .kill(2, pid=50, name="w1").final("j1", "PROCESSING", where=["rq:wip:q"]))
    assert other.check(RecoveryBounded()).verdict is Verdict.NOT_APPLICABLE


def test_nothing_to_judge_is_not_applicable_with_what_was_missing() -> None:
    run = Run().submit("j1").attempt("j1", 1, pid=50).final("j1", "COMPLETED", ended=2)
    recovery = run.check(RecoveryBounded())
    assert recovery.verdict is Verdict.NOT_APPLICABLE and "no job was in flight" in \
        recovery.witness
    retries = run.check(RetriesWithinMax())
    assert retries.verdict is Verdict.NOT_APPLICABLE and "retry limit" in retries.witness
    assert Run().check(JobsSettled()).verdict is Verdict.NOT_APPLICABLE


def test_more_attempts_than_retries_allow_is_invalid() -> None:
    run = (Run().submit("j1", max_retries=1).attempt("j1", 1, pid=50)
           .attempt("j1", 2, pid=51).attempt("j1", 3, pid=52).final("j1", "COMPLETED", ended=4))
    result = run.check(RetriesWithinMax())
    assert result.verdict is Verdict.INVALID and "3 attempts" in result.witness


def test_an_unfinished_job_is_unknown_until_the_recovery_limit_is_up() -> None:
    # the run ends 98 s after the kill: invalid against a 60 s limit, unknown against 120 s
    def run(limit: float) -> Run:
        return (Run(limit=limit).submit("j1").attempt("j1", 1, pid=50, effect=False)
                .kill(2, pid=50).final("j1", "PROCESSING", where=["rq:wip:q"]))

    late = run(60).check(RecoveryBounded())
    assert late.verdict is Verdict.INVALID and "the limit is 60 s" in late.witness
    early = run(120).check(RecoveryBounded())
    assert early.verdict is Verdict.UNKNOWN
    assert "before the 120 s recovery limit" in early.witness and "timeout_s" in early.witness
