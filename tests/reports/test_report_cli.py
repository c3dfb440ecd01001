"""``crashlab report`` and the report ``crashlab run`` writes after each scenario."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import EXIT_SETUP, app
from reports import INDEX_FILE, REPORT_FILE
from tests.reports.conftest import SCENARIO, ReportRuns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def test_report_writes_beside_the_run_and_indexes_its_runs_folder(
    report_runs: ReportRuns,
) -> None:
    run_dir = report_runs.results[1].run_dir
    (run_dir / REPORT_FILE).unlink(missing_ok=True)
    done = CliRunner().invoke(app, ["report", str(report_runs.root / "latest")])
    assert done.exit_code == 0, done.output
    assert (run_dir / REPORT_FILE).is_file()
    index = (report_runs.root / INDEX_FILE).read_text(encoding="utf-8")
    assert all(folder.name in index for folder in report_runs.folders)


def test_report_out_puts_every_page_in_one_folder(report_runs: ReportRuns,
                                                   tmp_path: Path) -> None:
    runs = [str(r.run_dir) for r in report_runs.results]
    done = CliRunner().invoke(app, ["report", *runs, "--out", str(tmp_path / "site")])
    assert done.exit_code == 0, done.output
    pages = sorted(p.name for p in (tmp_path / "site").iterdir())
    assert pages == sorted([f"{Path(r).name}.html" for r in runs] + [INDEX_FILE])
    index = (tmp_path / "site" / INDEX_FILE).read_text(encoding="utf-8")
    assert all(f'href="{Path(r).name}.html"' in index for r in runs)


def test_report_refuses_a_folder_that_is_not_a_run(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert done.exit_code == EXIT_SETUP
    assert not (tmp_path / REPORT_FILE).exists()


@pytest.mark.chaos
@pytest.mark.parametrize("flags", [[], ["--no-report"]], ids=["default", "no-report"])
def test_run_writes_the_report_and_refreshes_the_index_unless_told_not_to(
    flags: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRASHLAB_STATE_DIR", str(tmp_path / "state"))
    runs = tmp_path / "runs"
    done = CliRunner().invoke(app, ["run", SCENARIO, "--seed", "5", "--runs", str(runs),
                                    *flags])
    assert done.exit_code == 0, done.output
    run_dir = (runs / "latest").resolve()
    assert (run_dir / "results.json").is_file()
    assert (run_dir / REPORT_FILE).is_file() is (not flags)
    assert (runs / INDEX_FILE).is_file() is (not flags)


def test_the_index_lists_an_explorations_examples_not_its_folder(tmp_path: Path) -> None:
    from reports.index_page import find_runs

    run = tmp_path / "20261123-120000-baseline"
    run.mkdir()
    exploration = tmp_path / "20261123-120100-explore-baseline"
    (exploration / "examples" / "20261123-120101-baseline-x1").mkdir(parents=True)
    assert find_runs([tmp_path]) == [run.resolve()]
    assert find_runs([exploration / "examples"]) == [
        (exploration / "examples" / "20261123-120101-baseline-x1").resolve()]
