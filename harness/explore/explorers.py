"""``crashlab explore --jobs N``: N explorers at once, each in its own environment.

Each explorer is a child ``crashlab explore`` process, the CLI run as a
program as ``crashlab run --parallel`` runs its children
(``harness.parallel``): its own session (data Redis, Toxiproxy, the
services, the API, a fork server and workers, all on free loopback ports)
and its own folder of runs, ``explorer-K/`` in the exploration's folder.
Nothing is shared between two explorers but the machine, the workload
(``seed``: the same media and jobs) and the example database (the state
dir's, or ``--example-db``), so a failure one of them saves is replayed
first by every exploration after it. Each searches from its own Hypothesis
seed (``search_seed``; the first explorer's is ``seed``, so ``--jobs 1``
searches exactly as a plain ``explore``) and runs its share of the examples.

The first explorer to find a failure claims it in the stop file
(``STOP_FILE`` in the exploration's folder, ``Exploration.stop_file``); the
others end at their next example, leaving the machine to the finder, which
shrinks its failure as a plain ``explore`` does. The merged summary
(``exploration.json`` in the exploration's folder) adds up the examples,
keeps each explorer's own line, and reports the claimed counterexample,
with the command that replays it.

Every way out stops the children: on Ctrl-C or SIGTERM (``Cleanup``), each
still running gets SIGINT, a Ctrl-C of its own, so it tears its session
down as a plain ``explore`` does; one still alive after ``GRACE_S`` is
SIGKILLed with its process group. A SIGKILLed parent takes its children
with it (``PR_SET_PDEATHSIG``, ``harness.procs``), and their services die
with them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.cleanup import Cleanup
from harness.parallel import CHILD_ARGV
from harness.procs import ManagedProcess, ProcessRegistry
from harness.runfolder import EXPLORATION_FILE, new_run_dir, point_at_latest

log = logging.getLogger(__name__)

STOP_FILE = "stop"  # written by the first explorer to find a failure: its index
GRACE_S = 60.0  # how long an interrupted explorer may take to tear its session down
POLL_S = 0.2  # how often the children's logs are read for progress lines
SEED_STRIDE = 1_000_003  # explorer K searches from seed + K * SEED_STRIDE


def search_seed(seed: int, index: int) -> int:
    """Explorer ``index``'s Hypothesis seed: ``seed`` for the first, apart for the others."""
    return seed + index * SEED_STRIDE


def shares(examples: int, jobs: int) -> list[int]:
    """``examples`` split over at most ``jobs`` explorers, none with none."""
    count = max(1, min(jobs, examples))
    return [examples // count + (1 if k < examples % count else 0) for k in range(count)]


@dataclass
class Explorer:
    """One child explorer: its index, its share, its process and what it reported."""

    index: int
    examples: int
    search_seed: int
    folder: Path
    process: ManagedProcess
    exit_code: int | None = None
    summary: dict[str, Any] | None = None
    _read: int = 0  # bytes of its log already relayed

    def new_lines(self) -> list[str]:
        """The log lines it wrote since the last call (a torn last line waits)."""
        try:
            with self.process.log_path.open("rb") as handle:
                handle.seek(self._read)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self._read += len(complete)
        return complete.decode("utf-8", "replace").splitlines()


@dataclass
class ParallelExploration:
    """What ``--jobs N`` asks for; ``child_options`` are passed to every explorer."""

    scenario: str
    examples: int
    jobs: int
    seed: int
    runs_root: Path
    child_options: Sequence[str] = ()
    child_env: Mapping[str, str] = field(default_factory=dict)  # added to this environment
    explorers: list[Explorer] = field(default_factory=list)


def explore_in_parallel(request: ParallelExploration, registry: ProcessRegistry, *,
                        on_line: Callable[[int, str], None] | None = None,
                        ) -> dict[str, Any]:
    """Run the explorers side by side until all have ended; the merged summary."""
    folder = new_run_dir(f"explore-{request.scenario}", request.runs_root, point_latest=False)
    stop = folder / STOP_FILE
    started = time.monotonic()
    for index, share in enumerate(shares(request.examples, request.jobs)):
        runs = folder / f"explorer-{index}"
        seed = search_seed(request.seed, index)
        argv = [*CHILD_ARGV, "explore", request.scenario, "--examples", str(share),
                "--seed", str(request.seed), "--search-seed", str(seed), "--runs", str(runs),
                "--stop-file", str(stop), "--explorer", str(index), "--no-report", "--json",
                *request.child_options]
        request.explorers.append(Explorer(index, share, seed, runs, ManagedProcess(
            f"explorer-{index}", argv, log_path=folder / "logs" / f"explorer-{index}.log",
            env={**os.environ, **request.child_env}, registry=registry)))
    interrupted: KeyboardInterrupt | None = None
    try:
        with Cleanup() as cleanup:  # SIGTERM unwinds like Ctrl-C; the children go either way
            # an explorer killed past its grace leaves its children's entries: swept after
            cleanup.callback(registry.reap_leftovers, "sweep what killed explorers left")
            cleanup.callback(lambda: _stop_all(request.explorers), "stop the explorers")
            for explorer in request.explorers:
                explorer.process.start()
            while any(e.process.is_running() for e in request.explorers):
                _relay(request.explorers, on_line)
                time.sleep(POLL_S)
    except KeyboardInterrupt as stop_now:
        interrupted = stop_now  # what the explorers did so far is still summed up
    _relay(request.explorers, on_line)
    for explorer in request.explorers:
        explorer.summary = _summary(explorer.folder)
    merged = merge(request, folder, time.monotonic() - started, _claimed(stop))
    (folder / EXPLORATION_FILE).write_text(json.dumps(merged, indent=2) + "\n")
    counter = merged.get("counterexample")
    if counter:
        point_at_latest(request.runs_root, Path(counter["run_dir"]))
    if interrupted is not None:
        raise interrupted
    return merged


def merge(request: ParallelExploration, folder: Path, wall_s: float,
          claimed: int | None) -> dict[str, Any]:
    """One summary of every explorer's: the sums, each explorer, the claimed failure."""
    reports = [e.summary or {} for e in request.explorers]
    finder = _finder(request.explorers, claimed)
    found = finder.summary if finder is not None and finder.summary else {}
    examples = sum(int(r.get("examples", 0)) for r in reports)
    return {
        "scenario": request.scenario, "folder": str(folder), "seed": request.seed,
        "jobs": len(request.explorers),
        "verdict": "invalid" if found.get("counterexample") else
        "valid" if all(r.get("verdict") for r in reports) else "unknown",
        "examples": examples,
        "inconclusive": sum(int(r.get("inconclusive", 0)) for r in reports),
        "failing_examples": sum(int(r.get("failing_examples", 0)) for r in reports),
        "errors": sum(int(r.get("errors", 0)) for r in reports),
        "first_error": next((r["first_error"] for r in reports if r.get("first_error")), None),
        "flaky": bool(found.get("flaky")),
        "found_by": None if finder is None else finder.index,
        "examples_to_first_failure": found.get("examples_to_first_failure"),
        "seconds_to_first_failure": found.get("seconds_to_first_failure"),
        "schedules_per_minute": round(examples / wall_s * 60, 1) if wall_s else None,
        "duration_s": round(wall_s, 1),
        "counterexample": found.get("counterexample"),
        "explorers": [{
            "explorer": e.index, "search_seed": e.search_seed, "share": e.examples,
            "exit_code": e.exit_code, "folder": (e.summary or {}).get("folder"),
            "examples": (e.summary or {}).get("examples", 0),
            "inconclusive": (e.summary or {}).get("inconclusive", 0),
            "verdict": (e.summary or {}).get("verdict"),
            "stopped": (e.summary or {}).get("stopped"),
            "log": str(e.process.log_path),
        } for e in request.explorers],
    }


def _finder(explorers: list[Explorer], claimed: int | None) -> Explorer | None:
    """The explorer whose failure is reported: the one that claimed the stop file,
    else the quickest to a failure."""
    failed = [e for e in explorers if e.summary and e.summary.get("counterexample")]
    for explorer in failed:
        if explorer.index == claimed:
            return explorer
    return min(failed, key=lambda e: (e.summary or {}).get("seconds_to_first_failure") or 0,
               default=None)


def _claimed(stop: Path) -> int | None:
    try:
        return int(stop.read_text().strip())
    except (OSError, ValueError):
        return None


def _summary(runs: Path) -> dict[str, Any] | None:
    """The ``exploration.json`` an explorer left in its folder of runs, if any."""
    for path in sorted(runs.glob(f"*-explore-*/{EXPLORATION_FILE}")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def _relay(explorers: list[Explorer], on_line: Callable[[int, str], None] | None) -> None:
    for explorer in explorers:
        for line in explorer.new_lines():
            if on_line is not None and line.strip():
                on_line(explorer.index, line)


def _stop_all(explorers: list[Explorer]) -> None:
    """SIGINT every explorer still running, SIGKILL what outlives ``GRACE_S``, reap all."""
    running = [e for e in explorers if e.process.is_running()]
    for explorer in running:
        log.info("stopping explorer %d (pid %d)", explorer.index, explorer.process.pid)
        explorer.process.signal(signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    for explorer in explorers:
        try:
            if explorer.process.is_running():
                explorer.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("explorer %d did not stop within %.0f s; killing it",
                        explorer.index, GRACE_S)
        try:
            explorer.exit_code = explorer.process.kill()
        except RuntimeError:  # never started (an earlier one failed to start)
            continue
