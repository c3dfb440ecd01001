"""Exploration: Hypothesis finds a planted bug, shrinks it, and the replay is exact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from harness.checkers.base import Verdict
from harness.explore.explorer import COUNTEREXAMPLE_FILE, EXPLORATION_FILE, explore
from harness.explore.reach import Reach
from harness.explore.sequence import SequenceModel
from harness.explore.strategies import schedules
from harness.faults import FAULT_KINDS
from harness.packs.reference.explore import vocabulary
from harness.packs.reference.mutants import mutant_target
from harness.packs.reference.target import PHASES, ReferenceTarget
from harness.procs import ProcessRegistry
from harness.runner import run_scenario
from harness.scenario import Scenario, resolve
from tests.harness.schedule_groups import groups

# the catalog's convention: a chunk. point per chunk, a recovery. point after a crash
VOCABULARY = vocabulary(frozenset(p for p in PHASES if p.startswith("chunk.")),
                        frozenset(p for p in PHASES if p.startswith("recovery.")))
# what the draws follow without a pack's model: the catalog read in order
MODEL = SequenceModel(list(PHASES), repeating=VOCABULARY.repeating,
                      after_crash=VOCABULARY.after_crash, quiet=VOCABULARY.quiet, items=3)


@settings(max_examples=200, deadline=None)
@given(schedules(list(PHASES), chunks=3, jobs=2, vocabulary=VOCABULARY))
def test_generated_schedules_are_valid_scenarios(schedule: object) -> None:
    from harness.explore.strategies import Schedule

    assert isinstance(schedule, Schedule)
    assert 1 <= len(schedule.faults) <= 3 and 1 <= schedule.workers <= 2
    scenario = resolve("baseline").model_copy(update={"faults": list(schedule.faults)})
    again = Scenario.model_validate(scenario.model_dump(mode="json"))
    assert [f.kind for f in again.faults] == [f.kind for f in schedule.faults]
    assert all(f.kind in FAULT_KINDS for f in again.faults)
    for fault in schedule.faults:
        point = getattr(fault, "point", None)
        assert point is None or point in PHASES
    # only what the workload can reach: no recovery point and no chunk damage before
    # something crashed; each later fault at a point, and an occurrence of it, that the
    # model says a job still passes after the faults before it
    first = schedule.faults[0]
    assert not (getattr(first, "point", None) or "").startswith("recovery.")
    assert first.kind != "corrupt_chunk"
    reach = Reach.start(MODEL, jobs=2, workers=schedule.workers)
    for group in groups(schedule.faults):
        point = getattr(group[0], "point", None)
        assert reach.open, schedule.faults
        if point is not None:
            assert 1 <= getattr(group[0], "occurrence", 1) <= reach.most(point), schedule.faults
        reach = reach.after(MODEL, group)


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_exploration_finds_shrinks_and_replays_a_planted_bug(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    target = mutant_target("resume-offset-off-by-one", tmp_path)
    found = explore(resolve("baseline"), examples=40, seed=3, registry=registry,
                    runs_root=tmp_path / "runs", target=target, use_database=False,
                    time_budget_s=400, max_workers=1)  # one worker: no race between workers
    assert not found.flaky
    assert found.counterexample is not None, found.to_json()
    assert found.schedule is not None and 1 <= len(found.schedule.faults) <= 3
    summary = json.loads((found.folder / EXPLORATION_FILE).read_text())
    assert summary["verdict"] == "invalid"
    counter_dir = found.counterexample.run_dir
    assert summary["counterexample"]["replay"] == f"crashlab replay {counter_dir}"
    assert (counter_dir / COUNTEREXAMPLE_FILE).is_file()
    stored = json.loads((counter_dir / "schedule.json").read_text())
    scenario = Scenario.model_validate(stored["scenario"])
    assert stored["mutant"] == "resume-offset-off-by-one"
    verdicts = []
    for _ in range(3):
        # what `crashlab replay` does: the stored mutant, planted again
        replayed = run_scenario(scenario, seed=stored["seed"], registry=registry,
                                runs_root=tmp_path / "replays",
                                target=mutant_target(stored["mutant"], tmp_path))
        verdicts.append(replayed.verdict)
    assert verdicts == [Verdict.INVALID] * 3
    # and the command the exploration printed does the same
    cli = subprocess.run([str(Path(sys.executable).parent / "crashlab"), "replay",
                          str(counter_dir), "--runs", str(tmp_path / "cli"), "--json"],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 1, cli.stderr
    assert json.loads(cli.stdout)["verdict"] == "invalid"


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_exploration_of_the_reference_worker_breaks_nothing(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    found = explore(resolve("baseline"), examples=12, seed=11, registry=registry,
                    runs_root=tmp_path, use_database=False)
    assert found.counterexample is None, found.to_json()["counterexample"]
    assert found.examples == 12


class _RaisingTarget(ReferenceTarget):
    """The reference worker, whose submits raise on the calls listed (1-based)."""

    def __init__(self, raising: set[int] | None) -> None:
        super().__init__()
        self.raising, self.calls = raising, 0

    def submit_workload(self, env: Any, scenario: Scenario, seed: int,
                        indices: Any = None) -> None:
        self.calls += 1
        if self.raising is None or self.calls in self.raising:
            raise RuntimeError(f"submit {self.calls} went wrong")
        super().submit_workload(env, scenario, seed, indices)


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(600)
def test_an_example_that_raises_is_counted_inconclusive_and_named_and_errors_in_a_row_stop(
    tmp_path: Path, registry: ProcessRegistry
) -> None:
    found = explore(resolve("baseline"), examples=3, seed=11, registry=registry,
                    runs_root=tmp_path / "once", use_database=False,
                    target=_RaisingTarget({2}), max_faults=1)
    assert found.counterexample is None and not found.flaky
    assert (found.examples, found.errors) == (3, 1) and found.inconclusive >= 1
    summary = json.loads((found.folder / EXPLORATION_FILE).read_text())
    assert summary["errors"] == 1
    assert summary["first_error"] == "baseline-x2: RuntimeError: submit 2 went wrong"
    # a harness that fails every time is not a search that found nothing
    with pytest.raises(RuntimeError, match="submit 3 went wrong"):
        explore(resolve("baseline"), examples=10, seed=11, registry=registry,
                runs_root=tmp_path / "always", use_database=False, target=_RaisingTarget(None))
