"""A real run's report, opened offline in headless Chromium (Debian's ``chromium``).

The page is loaded from a ``file://`` URL with every background-network
feature off. ``--enable-logging=stderr`` makes Chromium print each console
message as a ``CONSOLE`` line, so a script error, a blocked resource or any
message at all from the page (which has no script) fails the test.
``--dump-dom`` gives the document after load, to check that the verdict, the
timeline and the replay command are in it; ``--screenshot`` keeps a picture
of the page as a test artifact (under pytest's tmp dir, and copied to
``.crashlab/artifacts/report.png`` for people to look at).

Chromium comes from ``scripts/setup.sh --with-chromium`` (``make test`` asks
for it). Without it this test fails with that hint; it never skips.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from reports import write_run_report
from tests.reports.conftest import SCENARIO, ReportRuns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ARTIFACTS = Path(__file__).resolve().parents[2] / ".crashlab" / "artifacts"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]


@dataclass(frozen=True)
class Loaded:
    dom: str
    console: list[str]  # every console message the page produced


def chromium() -> str:
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
    if found is None:
        pytest.fail("chromium is not installed: run `bash scripts/setup.sh --with-chromium` "
                    "(`make test` does), or `apt-get install chromium`")
    return found


def browse(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="crashlab-chromium-") as profile:
        return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", *extra,
                               page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=90)


def load(page: Path) -> Loaded:
    done = browse(page, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line
               or "Uncaught" in line]
    return Loaded(done.stdout, console)


def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text("<!DOCTYPE html><html><body><p>x</p>"
                      "<script>no_such_function();</script></body></html>")
    loaded = load(broken)
    assert any("no_such_function" in line for line in loaded.console), loaded.console
    assert "<p>x</p>" in loaded.dom


def test_report_opens_offline_without_console_errors(report_runs: ReportRuns,
                                                     tmp_path: Path) -> None:
    run = report_runs.first
    page = write_run_report(run.run_dir, tmp_path / "report.html")
    loaded = load(page)
    assert loaded.console == []
    assert f'<div class="word">{run.verdict}</div>' in loaded.dom
    assert 'aria-label="timeline' in loaded.dom and ">w1.2</text>" in loaded.dom
    assert f"crashlab run {SCENARIO} --seed {run.seed}" in loaded.dom
    assert f"crashlab replay {run.run_dir}" in loaded.dom

    shot = tmp_path / "report.png"
    done = browse(page, f"--screenshot={shot}", "--window-size=1400,3000")
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a rendered page, not a blank one
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "report.png")
