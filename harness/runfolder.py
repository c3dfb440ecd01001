"""Run folders: ``runs/<time>-<scenario>/`` with everything a run leaves behind.

    history.jsonl     every operation, fault, hit, process event, SUT event, call
    results.json      verdicts per checker, faults planned/fired, duration
    state.json        final state snapshot the checkers read
    schedule.json     the schedule, seed and target (replayable)
    report.html       the run's page (``crashlab report``)
    data/ledger.jsonl the effects ledger the jobs write (``harness.failpoint.record``)
    logs/             one log per process (workers, api, services)

An exploration's folder holds ``exploration.json`` and, when it found a
failure, ``counterexample.json``; a folder of runs has ``index.html``. Those
names are defined here, once, and every module reads them from here.

``runs/latest`` is a symlink to the newest run folder, and only ever to a run
folder: an exploration's folder (``runs/<time>-explore-<scenario>/``) is made
without touching it (``point_latest=False``), keeps its own pointer to its
newest example in ``examples/latest``, and points ``runs/latest`` at each
example run as it finishes (``point_latest``).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

DEFAULT_ROOT = Path("runs")

HISTORY_FILE = "history.jsonl"
RESULTS_FILE = "results.json"
STATE_FILE = "state.json"
SCHEDULE_FILE = "schedule.json"
REPORT_FILE = "report.html"
LEDGER_FILE = "ledger.jsonl"
EXPLORATION_FILE = "exploration.json"
COUNTEREXAMPLE_FILE = "counterexample.json"
INDEX_FILE = "index.html"


def new_run_dir(name: str, root: Path = DEFAULT_ROOT, *, point_latest: bool = True) -> Path:
    """Create a fresh run folder and (unless ``point_latest`` is False: a folder that is
    no run, like an exploration's) point ``root/latest`` at it."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{stamp}-{slug}"
    suffix = 1
    while True:  # mkdir, not exists(): `run --parallel` children may race for a name
        try:
            path.mkdir()
            break
        except FileExistsError:
            suffix += 1
            path = root / f"{stamp}-{slug}-{suffix}"
    (path / "logs").mkdir()
    if point_latest:
        point_at_latest(root, path)
    return path.resolve()


def point_at_latest(root: Path, run_dir: Path) -> None:
    """Make ``root/latest`` a relative symlink to ``run_dir`` (somewhere under ``root``),
    atomically, so a reader never sees it missing."""
    latest = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(run_dir.resolve(), root.resolve()))
    os.replace(tmp, latest)
