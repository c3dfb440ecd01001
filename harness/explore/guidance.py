"""Optional guidance of a search: how far recovery got in a run, for Hypothesis ``target()``.

Hypothesis's targeted search (``hypothesis.target``) keeps the examples that
scored highest and spends part of the budget mutating them. The score here
is the number of distinct recovery stages a run's jobs reached, read from the
worker's events in the history (``SutEventName``): a takeover started
(``recovery_started``), a job resumed (``processing_resumed``), chunks cut
again on the way (``processing_resumed`` naming ``rechunked`` chunks),
recovery finished (``recovery_completed``) or failed (``recovery_failed``).
A schedule that drives recovery further reaches more of the code a recovery
bug hides in; whether that finds the planted bugs sooner is measured by
``crashlab mutants`` with and without it (README, "Guided search").
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import target

from harness.history import History, SutEventName, load_history
from harness.runfolder import HISTORY_FILE

LABEL = "recovery stages reached"


def recovery_stages(history: History) -> frozenset[str]:
    """The recovery stages the run's jobs reached (see the module docstring)."""
    stages: set[str] = set()
    for event in history.sut_events:
        if event.event in (SutEventName.RECOVERY_STARTED, SutEventName.PROCESSING_RESUMED,
                           SutEventName.RECOVERY_COMPLETED, SutEventName.RECOVERY_FAILED):
            stages.add(event.event)
        if event.event == SutEventName.PROCESSING_RESUMED and event.data.get("rechunked"):
            stages.add("rechunked")
    return frozenset(stages)


def guide(run_dir: Path) -> int:
    """Score the run in ``run_dir`` for Hypothesis (inside its test); the score."""
    path = run_dir / HISTORY_FILE
    score = len(recovery_stages(load_history(path))) if path.is_file() else 0
    target(score, label=LABEL)
    return score
