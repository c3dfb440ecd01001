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
    A worker frozen with SIGSTOP past its lease (a zombie) may wake up and
    send a request it prepared before another worker committed the chunk:
    that is exactly redundant work after a commit, so runs with a SIGSTOP
    are judged like any other. The history records when each worker was
    frozen and thawed (``process_signal`` SIGSTOP / SIGCONT), so a call
    that reached the service after a thaw names the thawed worker as its
    likely sender in the witness.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import CallOutcome, EntryKind, FinalState, History
from harness.packs.reference.checkers.chunks import commits_by_chunk

WORK = (CallOutcome.NEW, CallOutcome.REPEAT, CallOutcome.STATUS)


@checker(suite="reference", rank=60)
class NoWorkAfterCommit:
    name = "no_work_after_commit"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        thaws = thaw_times(history)
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
                thawed = [name for name, at in thaws if at <= call.call_ts]
                who = (f" (after worker {thawed[-1]} was thawed from SIGSTOP: a zombie "
                       "sending what it prepared before)" if thawed else "")
                found.invalid(
                    f"job {call.job_id} chunk {call.chunk_index} was sent to the service again "
                    f"(call {call.seq}, {call.outcome}) {call.call_ts - committed_at:.3f}s after "
                    f"it was committed (event seq {seq}){who}: committed work was redone")
        frozen = f", with {plural(len(thaws), 'worker')} frozen and thawed" if thaws else ""
        return found.result(f"none of {plural(checked, 'call')} to the service redid a "
                            f"committed chunk{frozen}")


def thaw_times(history: History) -> list[tuple[str, float]]:
    """(worker name, wall time) of every SIGCONT that thawed a worker frozen by SIGSTOP."""
    frozen: set[str] = set()
    thaws = []
    for entry in history.of_kind(EntryKind.PROCESS_SIGNAL):
        name, sig = str(entry.get("name")), entry.get("signal")
        if sig == "SIGSTOP":
            frozen.add(name)
        elif sig == "SIGCONT" and name in frozen:
            frozen.discard(name)
            thaws.append((name, entry.ts))
    return thaws
