"""Run one worker process under coverage.py, saving its data so that kills lose little.

``crashlab run --coverage`` starts every process of the worker under test (its
workers and its API) as::

    python -c "from harness.coverage_launch import main; main()" MODULE ARGS...

with ``CRASHLAB_COVERAGE_DIR`` (where the data files go) and
``CRASHLAB_COVERAGE_SOURCE`` (the packages measured, comma separated) in its
environment (``harness.worker_coverage`` builds both). This module starts a
``coverage.Coverage`` with branch measurement, one data file per process
(``data_suffix``), then runs ``MODULE`` as ``python -m MODULE ARGS`` would.

The point of the harness is to kill these processes, and coverage.py keeps
its data in memory until it saves. So the data is saved

- by a thread, every ``CRASHLAB_COVERAGE_SAVE_S`` seconds (default 0.25);
- just before a failpoint pause or error is reported (``harness.failpoint.on_hit``),
  so a SIGKILL at a phase, which the harness sends only after it saw the
  hit, keeps every line the paused job ran up to the failpoint (the
  process's other tasks lose what they ran since the last save);
- on SIGTERM when the worker left SIGTERM to its default action (the signal
  is then delivered again with that action), and at a normal exit.

What no save can catch is a SIGKILL at a random time: the lines run since the
last periodic save (at most one interval) are lost. The command is not of
the ``python -m`` form on purpose: the fork server imports the worker's
modules before forking, and lines run at import time in the server would
never be measured, so under coverage every worker starts cold.
"""

from __future__ import annotations

import logging
import os
import runpy
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import coverage

from harness import failpoint

log = logging.getLogger(__name__)

DIR_ENV = "CRASHLAB_COVERAGE_DIR"
SOURCE_ENV = "CRASHLAB_COVERAGE_SOURCE"
INTERVAL_ENV = "CRASHLAB_COVERAGE_SAVE_S"
DEFAULT_INTERVAL_S = 0.25
DATA_FILE = ".coverage"  # the base name; each process adds its own suffix
# the program text a command line runs (``python -c PROGRAM MODULE ARGS``)
PROGRAM = "from harness.coverage_launch import main; main()"


class Saver:
    """Saves one ``Coverage`` now and then, and on demand; saves never overlap."""

    def __init__(self, cov: coverage.Coverage, interval: float) -> None:
        self.cov = cov
        self.interval = interval
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crashlab-coverage-save",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def save(self) -> None:
        """Write what was measured so far to this process's data file."""
        with self._lock:
            if not self._stopped.is_set():
                self.cov.save()

    def finish(self) -> None:
        """Stop measuring and save for the last time (at exit or on SIGTERM)."""
        with self._lock:
            if self._stopped.is_set():
                return
            self._stopped.set()
            self.cov.stop()
            self.cov.save()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.save()
            except Exception:  # noqa: BLE001 - measuring must never take the worker down
                log.exception("saving coverage data failed")


def start(data_dir: Path, source: list[str], interval: float) -> Saver:
    """Start measuring this process; returns the saver that keeps its data."""
    data_dir.mkdir(parents=True, exist_ok=True)
    cov = coverage.Coverage(data_file=str(data_dir / DATA_FILE), data_suffix=True,
                            branch=True, source_pkgs=source, config_file=False)
    cov.start()
    saver = Saver(cov, interval)
    saver.start()
    failpoint.on_hit(saver.save)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            saver.finish()
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    return saver


def main() -> None:
    """``MODULE ARGS...`` from ``sys.argv``: run the module under coverage."""
    if len(sys.argv) < 2 or not os.environ.get(DIR_ENV) or not os.environ.get(SOURCE_ENV):
        sys.exit(f"usage: {DIR_ENV}=DIR {SOURCE_ENV}=PKG[,PKG] "
                 f'python -c "{PROGRAM}" MODULE [ARGS...]')
    module = sys.argv[1]
    source = [p for p in os.environ[SOURCE_ENV].split(",") if p]
    interval = float(os.environ.get(INTERVAL_ENV) or DEFAULT_INTERVAL_S)
    saver = start(Path(os.environ[DIR_ENV]), source, interval)
    sys.argv = [module, *sys.argv[2:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        saver.finish()
