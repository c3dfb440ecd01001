"""The job-queue invariants every pack can be judged by (Jepsen's total queue, for jobs).

They read the submits (``op``), the kills (``process_signal``), the effects
ledger and the billable service's log (``effect``, ``service_call``;
``harness.ledger``) and each job's final snapshot, never the worker's own
events, so they hold for any library:

    jobs_settled         every acknowledged submit ended in an expected terminal state;
                         one that did not is reported stuck, with how long and where
    none_lost            no job is gone: submitted, never finished, and in no key
    effects_per_promise  each job's side effect applied at most / at least / exactly
                         once, as the pack promises (``run_start.effects``) or the
                         scenario demands (``expect.effects``)
    recovery_bounded     a job whose worker was killed mid-attempt finished elsewhere
                         within the pack's ``recovery_limit_s``, or ended for a reason;
                         when a later kill struck it again, its next attempt started
                         within the limit (each kill is bounded on its own)
    retries_within_max   no job ran more attempts than its retries allow

A job is *in flight* at a kill when its last ``start`` before the kill was
written by the killed process, or by the killed worker (the ledger line's
``worker`` is the kill's name: a forked child, such as RQ's work horse, writes
its own pid but its worker's name, and dies with it), and it had not ended
by then (``harness.ledger.killed_attempts``, which the report's recovery
histogram reads too).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from harness.checkers.base import CheckResult, Expectations, Findings, Verdict, plural
from harness.checkers.registry import checker
from harness.history import EntryKind, FinalState, History
from harness.ledger import (
    START,
    KilledAttempt,
    LedgerLine,
    attempt_starts,
    billed_calls,
    killed_attempts,
    ledger_lines,
)
from harness.target import JobSnapshot

TERMINAL = frozenset({"COMPLETED", "FAILED", "TIMED_OUT", "CANCELLED"})


@dataclass(frozen=True)
class Kill:
    pid: int
    name: str
    ts: float


def _kills(history: History) -> list[Kill]:
    return [Kill(int(e.get("pid") or 0), str(e.get("name")), e.ts)
            for e in history.of_kind(EntryKind.PROCESS_SIGNAL) if e.get("signal") == "SIGKILL"]


def _submits(history: History) -> dict[str, dict[str, object]]:
    """Submitted jobs by id, with their op fields and the submit's timestamp."""
    return {str(e.get("job_id")): {**e.fields, "submit_ts": e.ts}
            for e in history.of_kind(EntryKind.OP) if e.get("op") == "submit"}


def _end_ts(history: History) -> float:
    ends = history.of_kind(EntryKind.RUN_END)
    return ends[-1].ts if ends else (history[-1].ts if len(history) else 0.0)


def _where(snap: JobSnapshot) -> str:
    return ", ".join(snap.state_sets) if snap.state_sets else "no key"


def _state(snap: JobSnapshot) -> str:
    native = f" ({snap.native_state})" if snap.native_state else ""
    return f"{snap.state}{native}"


@checker(suite="queue", rank=1)
class JobsSettled:
    name = "jobs_settled"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        submits = _submits(history)
        end = _end_ts(history)
        if not submits:
            return found.not_applicable("no job was submitted in this run")
        for job_id, op in submits.items():
            snap = state.jobs.get(job_id)
            if snap is None:
                found.unknown(f"job {job_id} has no final snapshot")
                continue
            age = end - float(str(op["submit_ts"]))
            if snap.state not in TERMINAL:
                if snap.state_sets:  # a job in no key is none_lost's to report
                    found.invalid(f"job {job_id} is stuck: {_state(snap)} {age:.1f} s after "
                                  f"its submit, still in {_where(snap)}")
            elif snap.state not in expectations.terminal_states:
                reason = f" ({snap.error})" if snap.error else ""
                found.invalid(f"job {job_id} ended {_state(snap)}{reason}; expected "
                              f"{' or '.join(sorted(expectations.terminal_states))}")
        return found.result(f"every submitted job ({len(submits)}) ended "
                            f"{' or '.join(sorted(expectations.terminal_states))}")


@checker(suite="queue", rank=2)
class NoneLost:
    name = "none_lost"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        submits = _submits(history)
        kills = _kills(history)
        for job_id in submits:
            snap = state.jobs.get(job_id)
            if snap is None or snap.state in TERMINAL or snap.state_sets:
                continue
            crash = next((k for k in reversed(kills)), None)
            after = (f"; the last SIGKILL before the end was {crash.name} (pid {crash.pid})"
                     if crash else "")
            found.invalid(f"job {job_id} is lost: submitted, never finished "
                          f"({_state(snap)}), and no key of the queue holds it any more{after}")
        return found.result(f"none of {plural(len(submits), 'submitted job')} was lost: each "
                            "finished or is still held by a key of the queue")


@checker(suite="queue", rank=3)
class EffectsPerPromise:
    name = "effects_per_promise"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        start = history.run_start
        promise = expectations.effects or (str(start.get("effects")) if start is not None
                                           and start.get("effects") else None)
        if promise is None:
            found.unknown("the run names no effects promise (run_start.effects)")
            return found.result("")
        lines = ledger_lines(history)
        submits = _submits(history)
        effects: dict[str, int] = defaultdict(int)
        for line in lines:
            if line.what != START:
                effects[line.job] += 1
        billed = billed_calls(history)
        if not lines and not billed:
            completed = [j for j in submits if (s := state.jobs.get(j)) and s.state == "COMPLETED"]
            if completed:
                found.unknown(f"{plural(len(completed), 'job')} completed but the effects "
                              "ledger is empty: the jobs do not record their effects "
                              "(harness.failpoint.record), so nothing can be judged")
        for job_id in sorted(set(effects) | set(billed)):
            if job_id not in submits:
                found.invalid(f"an effect of job {job_id} was applied, but no such job was "
                              "submitted")
        duplicates = []
        for job_id in submits:
            snap = state.jobs.get(job_id)
            applied = max(effects.get(job_id, 0), billed.get(job_id, 0))
            if applied > 1:
                duplicates.append(f"job {job_id}: {applied} times "
                                  f"({effects.get(job_id, 0)} in the ledger, "
                                  f"{billed.get(job_id, 0)} billed)")
                if promise in ("at_most_once", "exactly_once"):
                    found.invalid(f"job {job_id}'s effect was applied {applied} times "
                                  f"({effects.get(job_id, 0)} ledger lines, "
                                  f"{billed.get(job_id, 0)} billed calls); promised {promise}")
            if (snap is not None and snap.state == "COMPLETED" and applied == 0
                    and promise in ("at_least_once", "exactly_once") and (lines or billed)):
                found.invalid(f"job {job_id} COMPLETED but its effect was never applied "
                              f"(no ledger line, no billed call); promised {promise}")
        note = f"; applied more than once, as {promise} allows: {'; '.join(duplicates)}" \
            if duplicates and found.verdict is Verdict.VALID else ""
        return found.result(f"each job's effect was applied as promised ({promise}) over "
                            f"{plural(len(lines), 'ledger line')}{note}")


@checker(suite="queue", rank=4)
class RecoveryBounded:
    name = "recovery_bounded"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        start = history.run_start
        limit = float(start.get("recovery_limit_s") or 0) if start is not None else 0.0
        starts = attempt_starts(history)
        submits = _submits(history)
        latencies: list[str] = []
        crashed = 0
        killed_list = killed_attempts(history, starts)
        for killed in killed_list:
            job_id, kill = killed.job, Kill(killed.pid, killed.name, killed.ts)
            snap = state.jobs.get(job_id)
            if snap is None or (snap.ended_at is not None and snap.ended_at <= kill.ts):
                continue
            crashed += 1
            later = killed.later
            op = submits.get(job_id, {})
            retries = op.get("max_retries")
            again = _next_hit(killed, killed_list, snap.ended_at)
            if again is not None:  # taken up again, then killed again: bounded to the retake
                took = again.ts - kill.ts
                latencies.append(f"{job_id} {took:.2f} s to its next attempt")
                if limit and took > limit:
                    found.invalid(f"job {job_id} was in flight on {kill.name} (pid "
                                  f"{kill.pid}) when it was SIGKILLed; its next attempt "
                                  f"started {took:.1f} s later, over the {limit:.0f} s "
                                  f"limit")
            elif snap.state == "COMPLETED" and snap.ended_at is not None and later:
                took = snap.ended_at - kill.ts
                latencies.append(f"{job_id} {took:.2f} s")
                if limit and took > limit:
                    found.invalid(f"job {job_id} was in flight on {kill.name} (pid "
                                  f"{kill.pid}) when it was SIGKILLed; it finished on "
                                  f"{later[-1].worker or 'another worker'} {took:.1f} s "
                                  f"later, over the {limit:.0f} s limit")
            elif snap.state in TERMINAL:
                if not later and retries not in (None, 0):
                    found.invalid(f"job {job_id} was in flight on {kill.name} (pid "
                                  f"{kill.pid}) when it was SIGKILLed and ended "
                                  f"{_state(snap)} without another attempt, although "
                                  f"it had {retries} retries")
            else:
                waited = _end_ts(history) - kill.ts
                words = (f"job {job_id} was in flight on {kill.name} (pid {kill.pid}) when "
                         f"it was SIGKILLed and had not finished {waited:.1f} s later "
                         f"({_state(snap)}, in {_where(snap)})")
                if limit and waited < limit:  # the run ended before the limit was up
                    found.unknown(f"{words}, but the run ended before the {limit:.0f} s "
                                  f"recovery limit: raise the scenario's timeout_s to see "
                                  f"whether it recovers in time")
                else:
                    found.invalid(f"{words}; the limit is {limit:.0f} s")
        if _kills(history) and not starts:
            found.unknown("workers were killed but the ledger has no attempt starts to "
                          "place their jobs")
        elif not crashed:
            return found.not_applicable("no job was in flight when a worker was killed")
        timing = f" ({', '.join(latencies)})" if latencies else ""
        return found.result(f"{plural(crashed, 'job')} in flight at a kill, each recovered "
                            f"within {limit:.0f} s or ended for a reason{timing}")


def _next_hit(killed: KilledAttempt, every: list[KilledAttempt],
              ended: float | None) -> LedgerLine | None:
    """When a later SIGKILL struck the same job again in one of its attempts after
    ``killed`` (before the job ``ended``), the first of those attempts: the recovery from
    the earlier kill ended when it started. None when no later kill struck the job."""
    for other in every:
        if other.job != killed.job or other.ts <= killed.ts:
            continue
        if ended is not None and ended <= other.ts:
            continue
        if killed.later:
            return killed.later[0]
    return None


@checker(suite="queue", rank=5)
class RetriesWithinMax:
    name = "retries_within_max"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        attempts: dict[str, int] = defaultdict(int)
        for line in ledger_lines(history):
            if line.what == START:
                attempts[line.job] += 1
        for job_id, op in _submits(history).items():
            retries = op.get("max_retries")
            if retries is None:
                continue
            allowed = 1 + int(str(retries))
            if attempts.get(job_id, 0) > allowed:
                found.invalid(f"job {job_id} ran {attempts[job_id]} attempts; max_retries "
                              f"{retries} allows {allowed}")
            snap = state.jobs.get(job_id)
            if snap is not None and snap.retry_count > int(str(retries)):
                found.invalid(f"job {job_id} counts {snap.retry_count} retries; max_retries "
                              f"is {retries}")
        if all(op.get("max_retries") is None for op in _submits(history).values()):
            return found.not_applicable("no job was submitted with a retry limit")
        total = sum(attempts.values())
        return found.result(f"{plural(total, 'attempt')} over {plural(len(attempts), 'job')}, "
                            "none beyond its retries")
