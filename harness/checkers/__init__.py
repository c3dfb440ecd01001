"""The checkers: each decides one invariant from a run's history and final state.

Every checker registers itself (``registry``) in a suite; a target's
``checkers()`` names the suites it is judged by, and ``run_checkers`` runs
them and returns their results in report order (``combine`` of their
verdicts is the run's verdict). A history entry that breaks the schema makes
that checker's verdict unknown rather than crashing the report. The core's
suites:

    queue    jobs_settled, none_lost, effects_per_promise, recovery_bounded,
             retries_within_max: the job-queue invariants of any pack
    faults   fault_coverage: every planned fault fired and healed

Packs bring their own (the reference pack's domain checkers are its
``reference`` suite, listed in ``harness.packs.reference.checkers``).
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
from harness.checkers.registry import checker, registered, suite
from harness.history import FinalState, History, HistoryError, bulk

log = logging.getLogger(__name__)


def run_checkers(history: History, state: FinalState, expectations: Expectations | None,
                 checkers: Sequence[Checker]) -> list[CheckResult]:
    """Run ``checkers`` (a target's); ``expectations`` default to those parsed from
    ``state.expect``."""
    if expectations is None:
        expectations = Expectations.from_json(state.expect)
    results = []
    with bulk():  # the history's typed views are parsed on first use, in here
        for one in checkers:
            try:
                result = one.check(history, state, expectations)
            except HistoryError as exc:
                log.warning("checker %s could not read the history: %s", one.name, exc)
                result = CheckResult(one.name, Verdict.UNKNOWN,
                                     f"the history does not follow the schema: {exc}")
            log.debug("%s: %s (%s)", result.checker, result.verdict, result.witness)
            results.append(result)
    return results


__all__ = [
    "CheckResult",
    "Checker",
    "Expectations",
    "Verdict",
    "checker",
    "combine",
    "registered",
    "run_checkers",
    "suite",
]
