"""Guided search: a run's score is the recovery stages its jobs reached."""

from __future__ import annotations

from harness.explore.guidance import recovery_stages
from tests.harness.checkers.builders import RunBuilder


def test_a_run_without_a_crash_reached_no_recovery_stage() -> None:
    builder = RunBuilder()
    builder.add_job(crash_after=None)
    assert recovery_stages(builder.history()) == frozenset()


def test_a_crash_recovered_counts_its_start_resume_and_end_and_a_recut_counts_apart() -> None:
    builder = RunBuilder()
    builder.add_job(crash_after=1)
    reached = recovery_stages(builder.history())
    assert reached == {"recovery_started", "processing_resumed", "recovery_completed"}
    resumed = builder.event(event="processing_resumed")
    resumed["data"]["rechunked"] = [2]
    assert recovery_stages(builder.history()) == reached | {"rechunked"}
