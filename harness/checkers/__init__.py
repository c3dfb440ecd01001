"""The checkers: each decides one recovery invariant from a run's history and final state.

``ALL_CHECKERS`` lists one instance of each; ``run_checkers`` runs them all
and returns their results in that order (``combine`` of their verdicts is
the run's verdict). A history entry that breaks the schema makes that
checker's verdict unknown rather than crashing the report.

    jobs_terminal            snapshot   every submitted job ended in an expected state
    transcript_exact         snapshot   completed transcripts equal the expected ones
    chunk_committed_once     chunks     one commit per chunk, matching the final state
    external_work_per_chunk  chunks     billable transcription work once per chunk
    recovery_paired          recovery   every recovery resumes and closes
    events_ordered           ordering   per-job seq 1..n, timestamps in order
    progress_monotonic       chunks     chunks_done rises by one per commit
    stale_epoch_rejected     ordering   one owner per epoch, no stale or zombie writes
    retry_accounting         recovery   retry_count counts recoveries; max_retries enforced
    state_index_exclusive    snapshot   each job in exactly its own state index
    upload_byte_exact        upload     uploads byte-exact from contiguous parts, no orphans
    fault_coverage           faults     every planned fault fired and healed
    graceful_stop_honoured   graceful   a SIGTERMed worker's jobs released, or recovered if killed
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from harness.checkers.base import (
    Checker,
    CheckResult,
    Expectations,
    Verdict,
    combine,
)
from harness.checkers.chunks import ChunkCommittedOnce, ExternalWorkPerChunk, ProgressMonotonic
from harness.checkers.failures import FailureJustified
from harness.checkers.faults import FaultCoverage
from harness.checkers.graceful import GracefulStopHonoured
from harness.checkers.ordering import EventsOrdered, StaleEpochRejected
from harness.checkers.recovery import RecoveryPaired, RetryAccounting
from harness.checkers.redundant import NoWorkAfterCommit
from harness.checkers.snapshot import JobsTerminal, StateIndexExclusive, TranscriptExact
from harness.checkers.takeover import TakeoverJustified
from harness.checkers.timeouts import TimeoutEnforced
from harness.checkers.upload import UploadByteExact
from harness.history import FinalState, History, HistoryError, bulk

log = logging.getLogger(__name__)

ALL_CHECKERS: list[Checker] = [
    JobsTerminal(),
    FailureJustified(),
    TranscriptExact(),
    ChunkCommittedOnce(),
    ExternalWorkPerChunk(),
    NoWorkAfterCommit(),
    RecoveryPaired(),
    EventsOrdered(),
    ProgressMonotonic(),
    StaleEpochRejected(),
    TakeoverJustified(),
    RetryAccounting(),
    StateIndexExclusive(),
    TimeoutEnforced(),
    UploadByteExact(),
    FaultCoverage(),
    GracefulStopHonoured(),
]


def run_checkers(history: History, state: FinalState,
                 expectations: Expectations | None = None, *,
                 checkers: Sequence[Checker] | None = None) -> list[CheckResult]:
    """Run ``checkers`` (a target's; default the reference pack's, ``ALL_CHECKERS``);
    ``expectations`` default to those parsed from ``state.expect``."""
    if expectations is None:
        expectations = Expectations.from_json(state.expect)
    results = []
    with bulk():  # the history's typed views are parsed on first use, in here
        for checker in ALL_CHECKERS if checkers is None else checkers:
            try:
                result = checker.check(history, state, expectations)
            except HistoryError as exc:
                log.warning("checker %s could not read the history: %s", checker.name, exc)
                result = CheckResult(checker.name, Verdict.UNKNOWN,
                                     f"the history does not follow the schema: {exc}")
            log.debug("%s: %s (%s)", result.checker, result.verdict, result.witness)
            results.append(result)
    return results


__all__ = [
    "ALL_CHECKERS",
    "CheckResult",
    "Checker",
    "Expectations",
    "Verdict",
    "combine",
    "run_checkers",
]
