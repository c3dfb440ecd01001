"""No chunk is sent to the service again once it is committed.

no_work_after_commit
    For every call the transcription service logged with outcome ``new``,
    ``repeat`` or ``status`` (a status query), if the same (job, chunk)
    already had a ``chunk_committed`` event before the call reached the
    service, the worker redid (or re-asked about) work it had already
    committed: a resume that ignores committed chunks. With an
    idempotent service the repeat costs nothing but latency; against a
    service without idempotency keys it is paid twice, so it is invalid
    either way. Clocks: the event's Redis ``TIME`` and the service's arrival
    time come from the same host, but the event's time is cut to the
    millisecond, so a call counts as later only from the next millisecond
    on (a status query answered just before the commit it led to is not).
    A worker frozen with SIGSTOP can wake up and send a request it prepared
    before the commit, and the history cannot tell its calls apart, so runs
    with a SIGSTOP are not checked (the result says so).
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.chunks import commits_by_chunk
from harness.history import CallOutcome, FinalState, History

WORK = (CallOutcome.NEW, CallOutcome.REPEAT, CallOutcome.STATUS)


class NoWorkAfterCommit:
    name = "no_work_after_commit"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        if any(signal.signal == "SIGSTOP" for signal in history.signals):
            return found.result("not checked: a worker was frozen with SIGSTOP in this run, "
                                "and a thawed zombie may send what it prepared before")
        first_commit: dict[tuple[str, int], tuple[float, int]] = {}
        for job_id, events in history.events_by_job.items():
            for chunk, commits in commits_by_chunk(events).items():
                if chunk is not None and commits:
                    first = commits[0]
                    # the commit happened somewhere in its millisecond: surely
                    # before the call only if the call is past that millisecond
                    first_commit[(job_id, chunk)] = ((first.ts_ms + 1) / 1000, first.seq)
        checked = 0
        for call in history.external_calls:
            if call.outcome not in WORK or call.job_id is None or call.chunk_index is None:
                continue
            checked += 1
            committed = first_commit.get((call.job_id, call.chunk_index))
            if committed is None or call.call_ts is None:
                continue
            committed_at, seq = committed
            if call.call_ts > committed_at:
                found.invalid(
                    f"job {call.job_id} chunk {call.chunk_index} was sent to the service again "
                    f"(call {call.seq}, {call.outcome}) {call.call_ts - committed_at:.3f}s after "
                    f"it was committed (event seq {seq}): the resume redid committed work")
        return found.result(f"none of {plural(checked, 'call')} to the service redid a "
                            "committed chunk")
