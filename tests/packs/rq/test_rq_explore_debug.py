"""Exploration and the debugger on the rq pack: the same commands, a real RQ worker.

``crashlab debug --target rq`` stops a real RQ work horse inside the job at a
failpoint, shows the queue's own view of the job, and judges the run with the
pack's checkers; ``crashlab explore --target rq`` draws schedules from the rq
pack's failpoints and runs them against real RQ workers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RQ_POINTS = {"worker.dequeued", "worker.execution_prepared", "horse.started",
             "horse.before_success", "job.started", "job.before_charge", "job.charged",
             "job.before_return"}


def crashlab(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "import sys; from harness.cli import main; "
                           "sys.exit(main())", *args], cwd=cwd, input=stdin,
                          capture_output=True, text=True, timeout=280, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_debug_stops_an_rq_job_inside_the_job_and_judges_it(tmp_path: Path) -> None:
    done = crashlab("debug", "--target", "rq", "rq-baseline", "--no-faults",
                    "--break-at", "job.charged", "--runs", str(tmp_path / "runs"),
                    cwd=tmp_path, stdin="where\ncontinue\ncontinue\n")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "job.charged (b1)" in out  # the worker is paused there
    assert "held by" in out and "rq:wip:" in out  # the queue's own keys, not chunks
    assert "epoch" not in out.split("(crashlab) where", 1)[1].split("(crashlab)", 1)[0]
    assert "verdict: valid" in out
    run_dir = Path(os.readlink(tmp_path / "runs" / "latest"))
    run_dir = run_dir if run_dir.is_absolute() else tmp_path / "runs" / run_dir
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    hits = [e for e in history if e["kind"] == "failpoint_hit" and e.get("point") == "job.charged"]
    assert hits, "the break's hit is in the history"
    effects = [e for e in history if e["kind"] == "effect" and e.get("what") == "effect"]
    assert len(effects) == 3  # three jobs, each effect applied once


def test_explore_draws_from_the_rq_vocabulary_against_real_workers(tmp_path: Path) -> None:
    # one example: its fault strands a job for about a minute before rq lets it go
    done = crashlab("explore", "--target", "rq", "rq-baseline", "--examples", "1",
                    "--max-faults", "1", "--max-workers", "1", "--json",
                    "--runs", str(tmp_path / "runs"), cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    summary = json.loads(done.stdout)
    schedules = [p for p in sorted((Path(summary["folder"]) / "examples").glob("*/schedule.json"))
                 if not p.parent.is_symlink()]
    assert summary["examples"] >= 1 and len(schedules) == summary["examples"]
    drawn: set[str] = set()
    for path in schedules:
        schedule = json.loads(path.read_text())
        assert schedule["target"] == "rq"
        drawn |= {f.get("point") for f in schedule["scenario"]["faults"]} - {None}
    assert drawn and drawn <= RQ_POINTS, drawn
