"""Checkers of the final state alone: where each job ended and what it produced.

jobs_terminal
    Every submitted job (``op`` submit) is in the final state and in one of the
    expected terminal states; when the scenario expects a failure reason, every
    FAILED job's error contains it.
transcript_exact
    Every COMPLETED submitted transcription job's transcript equals, character
    for character, the ``expected_transcript`` of its submit op (upload jobs
    are judged by ``upload_byte_exact``).
state_index_exclusive
    Every job of the final state is in exactly one state index, the one named
    by its ``state``.
"""

from __future__ import annotations

from harness.checkers.base import CheckResult, Expectations, Findings, plural
from harness.checkers.registry import checker
from harness.history import FinalState, History
from harness.target import JobSnapshot

COMPLETED = "COMPLETED"
FAILED = "FAILED"


@checker(suite="reference", rank=10)
class JobsTerminal:
    name = "jobs_terminal"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        wanted = sorted(expectations.terminal_states)
        reason = expectations.expect_failure_reason
        if not history.submits:
            found.unknown("no job was submitted (the history has no submit op), so there is "
                          "nothing to judge")
        for op in history.submits:
            snap = state.jobs.get(op.job_id)
            if snap is None:
                found.invalid(f"job {op.job_id} was submitted (history entry {op.index}) but is "
                              "missing from the final state")
            elif snap.state not in expectations.terminal_states:
                error = f" (error: {snap.error})" if snap.error else ""
                found.invalid(f"job {op.job_id} ended in {snap.state}{error}; the scenario "
                              f"expects one of {wanted}")
            elif reason is not None and snap.state == FAILED and reason not in (snap.error or ""):
                found.invalid(f"job {op.job_id} FAILED with error {snap.error!r}; the scenario "
                              f"expects a reason mentioning {reason!r}")
        states = wanted[0] if len(wanted) == 1 else "one of " + ", ".join(wanted)
        return found.result(f"every submitted job ({len(history.submits)}) ended in {states}")


@checker(suite="reference", rank=30)
class TranscriptExact:
    name = "transcript_exact"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        compared = 0
        for op in history.submits:
            snap = state.jobs.get(op.job_id)
            if snap is None or snap.state != COMPLETED or op.kind != "transcribe":
                continue  # jobs_terminal judges where it ended; upload_byte_exact uploads
            if op.expected_transcript is None:
                found.unknown(f"job {op.job_id} is COMPLETED but its submit op (history entry "
                              f"{op.index}) has no expected_transcript to compare with")
            elif snap.transcript is None:
                found.invalid(f"job {op.job_id} is COMPLETED but has no transcript")
            elif snap.transcript != op.expected_transcript:
                difference = first_difference(op.expected_transcript, snap.transcript)
                chunk = chunk_of_word(snap, first_word_off(op.expected_transcript,
                                                           snap.transcript))
                where = "" if chunk is None else f" (in chunk {chunk})"
                found.invalid(f"job {op.job_id}: {difference}{where}")
            compared += 1
        return found.result(f"{plural(compared, 'completed job')} matched the expected "
                            "transcript exactly")


def first_word_off(expected: str, actual: str) -> int:
    """Position of the first word that differs (or where one transcript ends)."""
    want, got = expected.split(), actual.split()
    for position, (a, b) in enumerate(zip(want, got, strict=False)):
        if a != b:
            return position
    return min(len(want), len(got))


def chunk_of_word(snap: JobSnapshot, position: int) -> int | None:
    """The committed chunk whose text holds word ``position`` of the transcript."""
    seen = 0
    for index in sorted(snap.committed_chunks):
        text = snap.committed_chunks[index].get("text")
        seen += len(str(text or "").split())
        if position < seen:
            return index
    return None


def first_difference(expected: str, actual: str) -> str:
    """Where ``actual`` first departs from ``expected``, in words (positions count from 0)."""
    want, got = expected.split(), actual.split()
    sizes = f"(expected {plural(len(want), 'word')}, got {len(got)})"
    for position, (a, b) in enumerate(zip(want, got, strict=False)):
        if a != b:
            return (f"transcript differs from the expected at word {position}: expected "
                    f"{a!r}, got {b!r} {sizes}")
    if len(got) < len(want):
        return (f"transcript ends early: word {len(got)} should be {want[len(got)]!r} but the "
                f"transcript stops there {sizes}")
    if len(got) > len(want):
        return (f"transcript has extra words from word {len(want)} on, starting with "
                f"{got[len(want)]!r} {sizes}")
    return "transcript has the expected words but different whitespace"


@checker(suite="reference", rank=130)
class StateIndexExclusive:
    name = "state_index_exclusive"

    def check(self, history: History, state: FinalState,
              expectations: Expectations) -> CheckResult:
        found = Findings(self.name)
        for job_id, snap in state.jobs.items():
            if snap.state_sets == [snap.state]:
                continue
            if not snap.state_sets:
                found.invalid(f"job {job_id} is {snap.state} but is in no state index")
            elif snap.state not in snap.state_sets:
                found.invalid(f"job {job_id} is {snap.state} but the state indices holding it "
                              f"are {sorted(snap.state_sets)}")
            else:
                found.invalid(f"job {job_id} is {snap.state} but is in "
                              f"{len(snap.state_sets)} state indices: "
                              f"{sorted(snap.state_sets)}")
        return found.result(f"every job ({len(state.jobs)}) is in exactly its own state index")
