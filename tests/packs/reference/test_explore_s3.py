"""The reference pack's exploration draws the S3 faults for upload workloads only."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st

from harness.explore.strategies import Schedule, schedules
from harness.packs.reference.explore import S3_POINTS, exploring, vocabulary
from harness.packs.reference.target import ReferenceTarget
from harness.scenario import resolve

S3_KINDS = ("s3_lost_reply", "s3_errors", "sever_s3", "s3_toxic")


def upload_schedules() -> st.SearchStrategy[Schedule]:
    target = ReferenceTarget()
    explored = exploring(resolve("upload-kill-after-checkpoint"), target.default_settings,
                         target.repeating_points, target.after_crash_points)
    return schedules(list(target.phases_for("upload")), chunks=explored.chunks,
                     vocabulary=explored.vocabulary)


@pytest.mark.parametrize("kind", S3_KINDS)
def test_an_upload_exploration_draws_each_s3_fault_at_a_point_before_an_s3_call(
    kind: str,
) -> None:
    found = find(upload_schedules(), lambda s: any(f.kind == kind for f in s.faults),
                 settings=settings(max_examples=3000, database=None))
    fault = next(f for f in found.faults if f.kind == kind)
    assert getattr(fault, "point", None) in S3_POINTS


def test_an_uploads_parts_are_its_chunks() -> None:
    target = ReferenceTarget()
    explored = exploring(resolve("upload-kill-after-checkpoint"), target.default_settings,
                         target.repeating_points, target.after_crash_points)
    assert explored.chunks == 10  # 600000 bytes in parts of 64 KiB


@settings(max_examples=300, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(list(ReferenceTarget().phases_for("transcribe")), chunks=3,
                 vocabulary=vocabulary(ReferenceTarget.repeating_points,
                                       ReferenceTarget.after_crash_points)))
def test_a_transcription_exploration_never_draws_an_s3_fault(schedule: Schedule) -> None:
    assert not [f for f in schedule.faults if f.kind in S3_KINDS]
