"""The stateful chaos machine on the real reference worker, through the plugin's fixture."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from harness.explore.stateful import ChaosSession, machine_for
from harness.packs.reference.mutants import mutant_target
from harness.procs import ProcessRegistry

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(900)]


def test_reference_worker_survives_random_chaos_steps(
    crashlab_chaos_machine: type[RuleBasedStateMachine],
) -> None:
    run_state_machine_as_test(crashlab_chaos_machine, settings=settings(
        max_examples=3, stateful_step_count=8, deadline=None, database=None))


def _kill_at_first_commit_then_recover(chaos: ChaosSession) -> None:
    machine = machine_for(chaos)()
    machine.submit(seed=7)
    machine.kill_worker(which=0, at="chunk.committed")
    machine.restart_workers()
    machine.quiesce()
    machine.state_is_consistent()
    machine.teardown()


def test_the_same_steps_pass_on_the_reference_worker(
    tmp_path: Path, registry: ProcessRegistry,
) -> None:
    with ChaosSession(tmp_path / "runs", registry) as chaos:
        _kill_at_first_commit_then_recover(chaos)


def test_the_machine_steps_and_invariants_catch_a_planted_bug(
    tmp_path: Path, registry: ProcessRegistry,
) -> None:
    # a resume after a kill at the first chunk commit skips a chunk, so the
    # job cannot be assembled and fails
    target = mutant_target("resume-offset-off-by-one", tmp_path)
    with ChaosSession(tmp_path / "runs", registry, target) as chaos, \
            pytest.raises(AssertionError) as caught:
        _kill_at_first_commit_then_recover(chaos)
    assert "not all COMPLETED" in str(caught.value) and "FAILED" in str(caught.value)
