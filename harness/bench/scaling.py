"""The ``scaling`` figure of ``crashlab bench``: a run's cost as its workload grows.

The same run at several sizes (200, 1,000 and 2,000 jobs; ``--quick``: 20, 40
and 80): the reference pack on the process runtime, jobs arriving at a fixed
rate beside a ``kill_random`` every few seconds (so the kills grow with the
run, as the jobs do), four workers. Each size is an ordinary ``crashlab run``
(``harness.runner.run_scenario``) and is timed in two parts, split where the
runner says ``checking``: the run (services up, arrivals, faults, settling,
the final state) and the check (loading the history, every checker, the
results file). Beside them: the peak resident memory of the harness's own
process during the run and the check (sampled every 0.1 s; the workers,
Redis and the services are processes of their own and not counted), the
history's size, how long the submits took and the rate they kept (a
loaded machine cannot always submit as fast as asked: each reference job is
a media file written and an API call), and, when the caller gives a
renderer, the time to render the run's report, its size and the memory it
took.

Every figure is also given as a ratio to the smallest size's, beside the
ratio of the job counts: linear is 5 and 10 for 200, 1,000 and 2,000. With a
fixed rate the run is bound by the arrivals, so its ratio near linear says
the harness kept up; the check's ratio says whether the checkers stay
linear. ``value`` is the worse of the two per-job ratios (time per job at the
largest size over that at the smallest): 1.0 is linear, below it the fixed
costs (starting services, settling) still weigh.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from harness.errors import CrashlabError
from harness.procs import ProcessRegistry
from harness.result import RunResult
from harness.runfolder import HISTORY_FILE
from harness.runner import run_scenario
from harness.scenario import Scenario

Say = Callable[[str], None]
Render = Callable[[Path], Path]

SAMPLE_EVERY_S = 0.1
CHECKING = "checking"
"""The runner's progress word as it starts judging the saved run: the run/check split."""
WORKERS = 4
MEDIA_SECONDS = 2.0
KILL_EVERY_S = 10.0
MB = 1024 * 1024
RATIOS = {"run_s": "run_ratio", "check_s": "check_ratio", "rss_peak_mb": "rss_ratio",
          "history_bytes": "history_ratio", "report_s": "report_ratio"}
"""Each size's figures given as a ratio to the smallest size's, and the ratio's name."""


def scaling_scenario(jobs: int, rate: float, *, kill_at_s: float,
                     kill_every_s: float = KILL_EVERY_S) -> Scenario:
    """``jobs`` two-second transcriptions arriving at ``rate``/s against four workers, a
    random worker killed (and replaced) at ``kill_at_s`` and then every ``kill_every_s``
    until the last job arrives."""
    arrival_s = jobs / rate
    return Scenario.model_validate({
        "name": f"bench-scaling-{jobs}",
        "description": f"crashlab bench scaling: {jobs} jobs at {rate:g}/s, kills",
        "origin": "harness.bench.scaling",
        "workload": {"kind": "transcribe", "jobs": jobs, "rate": rate,
                     "media_seconds": MEDIA_SECONDS, "max_retries": 10},
        "workers": WORKERS,
        "faults": [{"kind": "kill_random", "at_s": kill_at_s, "every_s": kill_every_s,
                    "max_delay_ms": 0}],
        "timeout_s": round(arrival_s + 300),
    })


class PeakRss:
    """The largest resident set size of this process seen while it runs, sampled on a
    thread (``with PeakRss() as peak: ...; peak.bytes``)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self.every_s = every_s
        self.bytes = 0
        self._process = psutil.Process()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="crashlab-bench-rss",
                                        daemon=True)

    def _sample(self) -> None:
        while True:
            self.bytes = max(self.bytes, self._process.memory_info().rss)
            if self._stop.wait(self.every_s):
                return

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.bytes = max(self.bytes, self._process.memory_info().rss)


def measure_scaling(sizes: Sequence[int], rate: float, registry: ProcessRegistry,
                    root: Path, *, say: Say | None = None, render: Render | None = None,
                    seed: int = 1) -> dict[str, Any]:
    """Run the scaling scenario at each of ``sizes`` (ascending) and return the figure."""
    if len(sizes) < 2 or list(sizes) != sorted(set(sizes)):
        raise CrashlabError(f"scaling sizes must be two or more, ascending: {list(sizes)}")
    progress: Say = say or (lambda message: None)
    rows = []
    for number, jobs in enumerate(sizes, start=1):
        progress(f"scaling {number}/{len(sizes)}: {jobs} jobs at {rate:g}/s "
                 f"(about {jobs / rate:.0f} s of arrivals)")
        rows.append(_one_size(jobs, rate, registry, root, progress, render, seed))
    first = rows[0]
    for row in rows:
        row["linear_ratio"] = round(row["jobs"] / first["jobs"], 2)
        for key, ratio in RATIOS.items():
            if row.get(key) is not None and first.get(key):
                row[ratio] = round(row[key] / first[key], 2)
    last = rows[-1]
    per_job = {key: round((last[key] / last["jobs"]) / (first[key] / first["jobs"]), 3)
               for key in ("run_s", "check_s")}
    return {"value": max(per_job.values()), "unit": "x linear",
            "per_job_ratio": per_job, "sizes": rows, "rate": rate, "workers": WORKERS,
            "media_seconds": MEDIA_SECONDS, "kill_every_s": KILL_EVERY_S, "seed": seed,
            "verdict": "valid" if all(r["verdict"] == "valid" for r in rows)
            else "not valid"}


def _one_size(jobs: int, rate: float, registry: ProcessRegistry, root: Path, progress: Say,
              render: Render | None, seed: int) -> dict[str, Any]:
    scenario = scaling_scenario(jobs, rate, kill_at_s=min(5.0, jobs / rate / 4))
    marks: dict[str, float] = {}

    def step(message: str) -> None:
        if message == CHECKING:
            marks["checking"] = time.monotonic()
        if message.endswith(" s") or message == CHECKING:  # progress lines, not every step
            progress(f"  {jobs} jobs: {message}")

    started = time.monotonic()
    with PeakRss() as peak:
        result = run_scenario(scenario, seed=seed, registry=registry, runs_root=root,
                              progress=step)
    ended = time.monotonic()
    if "checking" not in marks:
        raise CrashlabError("the runner never said it was checking: cannot split run "
                            "from check time")
    row = _row(jobs, result, run_s=marks["checking"] - started,
               check_s=ended - marks["checking"], rss=peak.bytes)
    if render is not None:
        progress(f"  {jobs} jobs: rendering the report")
        with PeakRss() as rendering:
            began = time.monotonic()
            report = render(result.run_dir)
            row["report_s"] = round(time.monotonic() - began, 2)
        row["report_bytes"] = report.stat().st_size
        row["report_rss_peak_mb"] = round(rendering.bytes / MB, 1)
    else:
        row["report_s"] = None
    progress(f"  {jobs} jobs: {result.verdict}, run {row['run_s']} s, check "
             f"{row['check_s']} s, peak RSS {row['rss_peak_mb']} MB")
    return row


def _row(jobs: int, result: RunResult, *, run_s: float, check_s: float,
         rss: int) -> dict[str, Any]:
    history = result.run_dir / HISTORY_FILE
    entries, submits = history_counts(history)
    arrival_s = submits[-1] - submits[0] if len(submits) > 1 else 0.0
    return {"jobs": jobs, "run_s": round(run_s, 2), "check_s": round(check_s, 3),
            "rss_peak_mb": round(rss / MB, 1), "history_bytes": history.stat().st_size,
            "history_entries": entries, "verdict": str(result.verdict),
            # how long the submits took, first to last, and the rate they kept: below the
            # asked rate when submitting (a media file and an API call each) fell behind
            "arrival_s": round(arrival_s, 2),
            "arrival_rate": round((len(submits) - 1) / arrival_s, 2) if arrival_s else None,
            "faults_planned": result.faults_planned, "faults_fired": result.faults_fired,
            "turns": [t.to_json() for t in result.turns],
            "run_dir": str(result.run_dir)}


def history_counts(path: Path) -> tuple[int, list[float]]:
    """A history file's entry count and the times of its submits, in order."""
    entries = 0
    submits: list[float] = []
    with path.open("rb") as handle:
        for line in handle:
            entries += 1
            if b'"op":"submit"' in line:
                submits.append(float(json.loads(line)["ts"]))
    return entries, submits
