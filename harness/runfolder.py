"""Run folders: ``runs/<time>-<scenario>/`` with everything a run leaves behind.

    history.jsonl     every operation, fault, hit, process event, SUT event, call
    results.json      verdicts per checker, faults planned/fired, duration
    state.json        final state snapshot the checkers read
    schedule.json     the schedule and seed (replayable)
    logs/             one log per process (workers, api, services)

``runs/latest`` is a symlink to the newest run folder.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

DEFAULT_ROOT = Path("runs")


def new_run_dir(name: str, root: Path = DEFAULT_ROOT) -> Path:
    """Create a fresh run folder and point ``root/latest`` at it."""
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
    latest = root / "latest"
    tmp = root / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(path.name)
    os.replace(tmp, latest)
    return path.resolve()
