"""An RQ app in a folder of its own, attacked with ``crashlab run --all`` and no flags.

The folder has what a user's repository has: a ``pyproject.toml`` whose
``[tool.crashlab]`` table names the target, the scenario folder and the job,
the job's module, and one scenario file. The real CLI runs in that folder
as a user would run it; the job is the user's, not the pack's example.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

JOB = '''
import time
from harness.failpoint import failpoint, record
from harness.packs.rq.app import bill


def send_invoice(key, work_ms):
    record(key, "start")
    failpoint("job.before_charge", job=key)
    time.sleep(work_ms / 1000)
    bill(key)
    record(key, "effect")
    return "sent"
'''

PYPROJECT = '''
[project]
name = "invoices"
version = "0"

[tool.crashlab]
target = "rq"
scenarios = "chaos"

[tool.crashlab.settings]
job = "invoices_jobs:send_invoice"
'''

SCENARIO = '''
name: invoice-horse-killed
description: the work horse dies before the invoice is sent; Retry must send it
target: rq
workload: {kind: task, jobs: 2, work_ms: 200, max_retries: 1}
workers: 1
faults:
  - {kind: kill_at_phase, point: job.before_charge, process: hit}
timeout_s: 60
'''


def make_app(root: Path) -> Path:
    app = root / "invoices"
    (app / "chaos").mkdir(parents=True)
    (app / "pyproject.toml").write_text(PYPROJECT)
    (app / "invoices_jobs.py").write_text(JOB)
    (app / "chaos" / "invoice-horse-killed.yaml").write_text(SCENARIO)
    return app


def crashlab(app: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], cwd=app, env=env,
                          capture_output=True, text=True, timeout=240)


@pytest.mark.slow
def test_a_users_rq_app_is_attacked_with_run_all_and_no_flags(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    listed = crashlab(app, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [s["name"] for s in json.loads(listed.stdout)] == ["invoice-horse-killed"]
    done = crashlab(app, "run", "--all", "--json", "--no-report", "--runs", str(app / "runs"))
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    (run,) = summary["scenarios"]
    assert run["verdict"] == "valid" and run["faults"] == {"planned": 1, "fired": 1}
    history = [json.loads(line) for line in
               (Path(run["run_dir"]) / "history.jsonl").read_text().splitlines()]
    start = next(e for e in history if e["kind"] == "run_start")
    assert start["target"] == "rq"
    assert start["settings"]["job"] == "invoices_jobs:send_invoice"
    submits = [e for e in history if e["kind"] == "op" and e.get("op") == "submit"]
    assert {e["func"] for e in submits} == {"invoices_jobs.send_invoice"}
    # the user's job ran: two attempts of the job whose horse was killed, one of the other
    starts = [e for e in history if e["kind"] == "effect" and e["what"] == "start"]
    assert len(starts) == 3


def test_a_bad_target_in_the_table_is_a_setup_error(tmp_path: Path) -> None:
    app = make_app(tmp_path)
    (app / "pyproject.toml").write_text(PYPROJECT.replace('"rq"', '"celeryish"'))
    done = crashlab(app, "run", "--all")
    assert done.returncode == 3
    assert "no target named 'celeryish'" in done.stderr and "rq" in done.stderr
    (app / "pyproject.toml").write_text(PYPROJECT.replace('"rq"', '"nowhere_mod:Target"'))
    done = crashlab(app, "run", "--all")
    assert done.returncode == 3 and "does not import" in done.stderr
