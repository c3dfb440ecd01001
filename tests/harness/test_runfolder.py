"""Run folders and the ``latest`` pointer: it only ever names a run folder."""

from __future__ import annotations

from pathlib import Path

from harness.runfolder import new_run_dir, point_at_latest


def test_a_new_run_folder_becomes_latest(tmp_path: Path) -> None:
    first = new_run_dir("baseline", tmp_path)
    second = new_run_dir("baseline", tmp_path)
    assert first != second and (first / "logs").is_dir()
    assert (tmp_path / "latest").resolve() == second


def test_a_folder_that_is_no_run_leaves_latest_alone(tmp_path: Path) -> None:
    run = new_run_dir("baseline", tmp_path)
    new_run_dir("explore-baseline", tmp_path, point_latest=False)
    assert (tmp_path / "latest").resolve() == run


def test_latest_can_name_a_run_nested_in_an_exploration(tmp_path: Path) -> None:
    exploration = new_run_dir("explore-baseline", tmp_path, point_latest=False)
    example = new_run_dir("baseline-x1", exploration / "examples")
    point_at_latest(tmp_path, example)
    assert (tmp_path / "latest").resolve() == example
    assert not (tmp_path / "latest").readlink().is_absolute()  # the runs folder can move
    assert (exploration / "examples" / "latest").resolve() == example
