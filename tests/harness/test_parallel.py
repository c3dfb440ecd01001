"""``crashlab run --quick`` and ``--parallel``: the tagged subset, and side-by-side runs that
judge like serial ones (real children, real workers, real SIGKILLs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.parallel import ParallelOutcome, ParallelPlan, combined_exit_code, run_parallel
from harness.runfolder import new_run_dir
from harness.scenario import QUICK_TAG, catalog, tagged


def test_quick_subset_is_tagged_and_small() -> None:
    quick = tagged(QUICK_TAG)
    assert 3 <= len(quick) <= 6
    assert all(QUICK_TAG in s.tags for s in quick)
    # every fault family the quick run promises: a phase kill, a zombie, an upload
    kinds = {f.kind for s in quick for f in s.faults}
    assert {"kill_at_phase", "pause_past_lease"} <= kinds
    assert any(s.workload.kind == "upload" for s in quick)
    assert len(quick) < len(catalog())


def test_combined_exit_code_follows_the_serial_rule() -> None:
    def outcome(code: int) -> ParallelOutcome:
        return ParallelOutcome("s", 1, code, None, "", 0.0)

    assert combined_exit_code([outcome(0), outcome(0)]) == 0
    assert combined_exit_code([outcome(0), outcome(2)]) == 2
    assert combined_exit_code([outcome(2), outcome(1), outcome(3)]) == 1
    assert combined_exit_code([outcome(0), outcome(3)]) == 3


def test_same_name_in_the_same_second_gets_distinct_folders(tmp_path: Path) -> None:
    first, second = new_run_dir("x", tmp_path), new_run_dir("x", tmp_path)
    assert first != second and first.is_dir() and second.is_dir()


@pytest.mark.slow
def test_parallel_runs_are_isolated_and_judge_like_serial(tmp_path: Path) -> None:
    # the same scenario twice at once: same names, ports drawn at the same time
    plan = ParallelPlan(runs=[("crash-after-transcription", 1), ("crash-after-transcription", 2)],
                        runs_root=tmp_path, report=False)
    outcomes = run_parallel(plan, 2)
    assert [o.exit_code for o in outcomes] == [0, 0], [o.stderr_tail for o in outcomes]
    assert [o.verdict for o in outcomes] == ["valid", "valid"]
    dirs = {o.summary["scenarios"][0]["run_dir"] for o in outcomes if o.summary}
    assert len(dirs) == 2
    for run_dir in dirs:
        assert (Path(run_dir) / "history.jsonl").stat().st_size > 0
    # a planted bug is still caught, and its exit code is the whole run's
    bad = ParallelPlan(runs=[("crash-after-transcription", 1)], runs_root=tmp_path,
                       mutant="resume-ignores-committed-chunks", report=False)
    caught = run_parallel(bad, 2)
    assert [o.verdict for o in caught] == ["invalid"]
    assert combined_exit_code(outcomes + caught) == 1
