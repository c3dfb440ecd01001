"""A service error fault counts as fired once a call got the error, even when the
service forgot the spent rule at once (``count: 1``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.checkers.base import Verdict
from harness.packs.reference.faults.service_errors import ServiceErrorsSpec
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import resolve


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(180)
def test_a_single_error_spent_on_the_first_call_counts_as_fired(
        tmp_path: Path, registry: ProcessRegistry) -> None:
    one = ServiceErrorsSpec(kind="service_errors", status=500, count=1, duration_ms=0)
    scenario = resolve("baseline").model_copy(update={"name": "one-service-error",
                                                     "faults": [one]})
    result = run_scenario(scenario, seed=1, registry=registry, runs_root=tmp_path)
    assert (result.faults_planned, result.faults_fired) == (1, 1)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks]
