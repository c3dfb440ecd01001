"""``crashlab bench``: the harness's figures in one run, against their targets.

    1 schedules_per_minute  a standard exploration: the ``baseline`` workload,
                            fixed seed, no example database, one explorer
                            (``harness.explore``); also its conclusive rate
    2 parallel_schedules    the same with two explorers at once (``--jobs 2``,
                            ``harness.explore.explorers``): conclusive schedules
                            per minute, its wall time
    3 inconclusive_share    the examples of 1 and 2 that were inconclusive (a
                            planned fault never fired), in percent
    4 recovery_latency      SIGKILL to the replacement's first resumed commit,
                            split into replacement start and resume (``latency``)
    5 takeover_latency      a dead worker's lease expiry to a live worker's
                            takeover (``latency``)
    6 event_latency         chunk commit to the event reaching a blocked stream
                            consumer (``latency``)
    7 recovery_overhead     run time with leases, checkpoints and events on,
                            over the same workload with them off, the service
                            answering each chunk after 50 ms (``throughput``)
    8 recovery_round_trips  what the machinery adds to each chunk in Redis round
                            trips, counted with MONITOR (``round_trips``)
    9 recovery_overhead_instant  7 with a service that answers at once: the
                            worst case, no target
   10 checker_speed         every checker over a synthetic history of 100k
                            entries, in entries per second (``synthetic``)
   11 scaling               run and check time, harness memory, history and
                            report size of a run of 200, 1,000 and 2,000 jobs
                            arriving at a rate beside kills, as ratios to the
                            smallest (``scaling``); minutes, so it is measured
                            only when named (``--only scaling``)

Everything runs on the process runtime with real services, in a temporary
folder removed at the end (on every exit path). Figures 4-9 share one
``Session``; the explorations bring their own. A figure that cannot be
measured records its error and the others still run. ``run_bench`` returns
one JSON-ready record; ``append_record`` adds it to a JSON lines file
(default ``.crashlab/bench.jsonl``) so runs can be compared.
"""

from __future__ import annotations

import json
import logging
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

from harness.bench.latency import (
    measure_event_latency,
    measure_recovery,
    measure_takeover,
)
from harness.bench.scaling import measure_scaling
from harness.bench.stats import machine, source_revision
from harness.bench.synthetic import synthetic_run
from harness.bench.throughput import count_round_trips, measure_throughput
from harness.checkers import run_checkers
from harness.checkers.base import Checker, CheckResult, Verdict, combine
from harness.errors import CrashlabError, SetupError
from harness.history import FinalState, History, load_history
from harness.packs_registry import load_target
from harness.procs import ProcessRegistry, default_state_dir
from harness.runfolder import HISTORY_FILE
from harness.runner import Session
from harness.scenario import DEFAULT_SETTINGS, resolve

log = logging.getLogger(__name__)

RECORD_VERSION = 1
BENCH_FILE = "bench.jsonl"
EXPLORATION_SCENARIO = "baseline"
# the services of figures 4-9: half-second chunks, so a job has several commits
SESSION_SETTINGS = {**DEFAULT_SETTINGS, "chunk_seconds": "0.5"}
FIGURES = ("schedules_per_minute", "parallel_schedules", "inconclusive_share",
           "recovery_latency", "takeover_latency", "event_latency", "recovery_overhead",
           "recovery_round_trips", "recovery_overhead_instant", "checker_speed", "scaling")
DEFAULT_FIGURES = FIGURES[:10]
"""What ``crashlab bench`` measures unless told (``scaling`` takes minutes)."""
EXPLORATION_FIGURES = FIGURES[:3]
SESSION_FIGURES = FIGURES[3:9]
PARALLEL_EXPLORERS = 2
Render = Callable[[Path], Path]
Say = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Target:
    """What a figure's ``value`` must reach: ``value >= bound`` (``at_least``) or below."""

    text: str
    bound: float
    at_least: bool

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value < self.bound


TARGETS: dict[str, Target | None] = {
    "schedules_per_minute": Target(">= 60 schedules/min", 60, at_least=True),
    "parallel_schedules": Target(">= 120 conclusive/min", 120, at_least=True),
    "inconclusive_share": Target("<= 10 %", 10 + 1e-9, at_least=False),
    "recovery_latency": Target("p95 < 300 ms", 300, at_least=False),
    "takeover_latency": None,
    "event_latency": Target("p99 < 10 ms", 10, at_least=False),
    "recovery_overhead": Target("ratio <= 1.02", 1.02 + 1e-9, at_least=False),
    "recovery_round_trips": Target("<= 1 per chunk", 1 + 1e-9, at_least=False),
    "recovery_overhead_instant": None,
    "checker_speed": Target(">= 100000 entries/s", 100_000, at_least=True),
    # per-job run and check time at the largest size within a quarter of the smallest's
    "scaling": Target("<= 1.25 x linear", 1.25 + 1e-9, at_least=False),
}


@dataclass(frozen=True)
class BenchOptions:
    """Sample sizes; ``quick()`` is a smoke run of seconds, the default one of minutes."""

    seed: int = 1
    examples: int = 20
    recovery_trials: int = 20
    takeover_trials: int = 20
    event_jobs: int = 8
    # 8 jobs of 32 half-second chunks: a p99 over 256 commits (over 64 it was the maximum)
    event_media_seconds: float = 16.0
    throughput_jobs: int = 8
    throughput_media_seconds: float = 8.0
    # even: on runs first as often as off runs; 16, since one repeat strays by several %
    throughput_repeats: int = 16
    # the overhead at a service latency: 4 jobs of 16 chunks, each answered after 50 ms
    service_latency_ms: float = 50.0
    latency_jobs: int = 4
    latency_media_seconds: float = 8.0
    latency_repeats: int = 6
    round_trip_jobs: int = 4
    round_trip_media_seconds: float = 8.0
    media_seconds: float = 2.0  # of the recovery and takeover trials' job
    checker_entries: int = 100_000
    scaling_sizes: tuple[int, ...] = (200, 1_000, 2_000)
    scaling_rate: float = 10.0  # jobs/s: 20, 100 and 200 s of arrivals
    quick: bool = False
    only: tuple[str, ...] = DEFAULT_FIGURES  # the figures to measure, a subset of FIGURES

    @classmethod
    def quick_run(cls, seed: int = 1, only: tuple[str, ...] = DEFAULT_FIGURES) -> BenchOptions:
        return cls(seed=seed, examples=2, recovery_trials=3, takeover_trials=3, event_jobs=2,
                   event_media_seconds=2.0, throughput_jobs=2, throughput_media_seconds=2.0,
                   throughput_repeats=1, latency_jobs=2, latency_media_seconds=2.0,
                   latency_repeats=1, round_trip_jobs=2, round_trip_media_seconds=2.0,
                   checker_entries=5_000, scaling_sizes=(20, 40, 80), scaling_rate=20.0,
                   quick=True, only=only)

    def __post_init__(self) -> None:
        unknown = [name for name in self.only if name not in FIGURES]
        if unknown or not self.only:
            raise CrashlabError(f"unknown bench figure(s) {', '.join(unknown) or '(none given)'}"
                                f"; choose from {', '.join(FIGURES)}")


def run_bench(options: BenchOptions, registry: ProcessRegistry, *,
              say: Say | None = None, workdir: Path | None = None,
              render: Render | None = None) -> dict[str, Any]:
    """Measure every figure; the record to print and append. ``workdir`` keeps the run
    folders there instead of in a temporary folder; ``render(run_dir)`` writes a run's
    report, timed by the scaling figure (the CLI passes the reports' own)."""
    progress: Say = say or (lambda message: None)
    started = time.monotonic()
    record: dict[str, Any] = {
        "bench": RECORD_VERSION, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "revision": source_revision(Path(__file__).resolve().parents[2]),
        "machine": machine(), "options": asdict(options), "figures": {},
    }
    figures: dict[str, Any] = record["figures"]
    with tempfile.TemporaryDirectory(prefix="crashlab-bench-") as scratch:
        root = workdir.resolve() if workdir is not None else Path(scratch)
        if set(options.only) & set(EXPLORATION_FIGURES):
            _exploration_figures(options, registry, root, figures, progress)
        if set(options.only) & set(SESSION_FIGURES):
            _session_figures(options, registry, root / "session", figures, progress)
        if "checker_speed" in options.only:
            progress(f"checkers over a synthetic history of {options.checker_entries} entries")
            _measure(figures, "checker_speed",
                     lambda: _checker_speed(options.checker_entries, root / HISTORY_FILE))
        if "scaling" in options.only:
            sizes = ", ".join(str(n) for n in options.scaling_sizes)
            progress(f"scaling: runs of {sizes} jobs at {options.scaling_rate:g}/s with kills")
            _measure(figures, "scaling", lambda: measure_scaling(
                options.scaling_sizes, options.scaling_rate, registry, root / "scaling",
                say=progress, render=render, seed=options.seed))
    record["machine"]["load_average_end"] = machine()["load_average"]
    record["duration_s"] = round(time.monotonic() - started, 1)
    return record


def append_record(record: dict[str, Any], path: Path | None = None) -> Path:
    """Append ``record`` as one line to ``path`` (default: the state dir's ``bench.jsonl``)."""
    target = path if path is not None else default_state_dir() / BENCH_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
    return target


# -- figures -------------------------------------------------------------------


def _session_figures(options: BenchOptions, registry: ProcessRegistry, folder: Path,
                     figures: dict[str, Any], progress: Say) -> None:
    """Figures 4-9, which share one session's services."""
    wanted = options.only
    progress("starting services for the latency and throughput figures")
    session = Session(folder, load_target(), registry, dict(SESSION_SETTINGS)).start()
    try:
        if "recovery_latency" in wanted:
            progress(f"recovery latency: {options.recovery_trials} kills with a replacement")
            _measure(figures, "recovery_latency", lambda: _latency(
                measure_recovery(session, options.recovery_trials, options.media_seconds),
                "total_ms", "p95"))
        if "takeover_latency" in wanted:
            progress(f"takeover latency: {options.takeover_trials} kills with a live worker")
            _measure(figures, "takeover_latency", lambda: _latency(
                measure_takeover(session, options.takeover_trials, options.media_seconds),
                "takeover_ms", "p95"))
        if "event_latency" in wanted:
            progress(f"event latency: {options.event_jobs} job(s), one worker")
            _measure(figures, "event_latency", lambda: _latency(
                measure_event_latency(session, options.event_jobs,
                                      options.event_media_seconds),
                "latency_ms", "p99"))
        if "recovery_overhead" in wanted:
            progress(f"throughput with the recovery machinery on and off, the service "
                     f"answering after {options.service_latency_ms:g} ms, "
                     f"{options.latency_repeats} time(s) each")
            _measure(figures, "recovery_overhead", lambda: _overhead(measure_throughput(
                session, jobs=options.latency_jobs, media_seconds=options.latency_media_seconds,
                repeats=options.latency_repeats, latency_ms=options.service_latency_ms)))
        if "recovery_round_trips" in wanted:
            progress("Redis round trips of one run on and one off (MONITOR)")
            _measure(figures, "recovery_round_trips", lambda: _round_trips(count_round_trips(
                session, jobs=options.round_trip_jobs,
                media_seconds=options.round_trip_media_seconds)))
        if "recovery_overhead_instant" in wanted:
            progress(f"throughput with the recovery machinery on and off, a service that "
                     f"answers at once, {options.throughput_repeats} time(s) each")
            _measure(figures, "recovery_overhead_instant", lambda: _overhead(measure_throughput(
                session, jobs=options.throughput_jobs,
                media_seconds=options.throughput_media_seconds,
                repeats=options.throughput_repeats)))
    finally:
        session.close()


def _measure(figures: dict[str, Any], name: str, measure: Callable[[], dict[str, Any]]) -> None:
    """Record figure ``name`` with its target; an error that is not a setup problem is
    recorded in its place."""
    started = time.monotonic()
    try:
        figure = measure()
    except SetupError:
        raise
    except CrashlabError as exc:
        log.warning("bench figure %s could not be measured: %s", name, exc)
        figures[name] = {"value": None, "error": str(exc)}
        return
    target = TARGETS[name]
    value = figure["value"]
    figures[name] = {**figure, "target": None if target is None else target.text,
                     "met": None if target is None else target.met(value),
                     "seconds": round(time.monotonic() - started, 1)}


def _exploration_figures(options: BenchOptions, registry: ProcessRegistry, root: Path,
                         figures: dict[str, Any], progress: Say) -> None:
    """Figures 1-3: one explorer, two at once, and the share of both that was
    inconclusive."""
    wanted = options.only
    if "schedules_per_minute" in wanted or "inconclusive_share" in wanted:
        progress(f"exploring {options.examples} schedules of {EXPLORATION_SCENARIO}")
        _measure(figures, "schedules_per_minute",
                 lambda: _exploration(options, registry, root / "explore"))
    if "parallel_schedules" in wanted or "inconclusive_share" in wanted:
        examples = options.examples * PARALLEL_EXPLORERS
        progress(f"exploring {examples} schedules of {EXPLORATION_SCENARIO} with "
                 f"{PARALLEL_EXPLORERS} explorers at once")
        _measure(figures, "parallel_schedules", lambda: _parallel_exploration(
            options, examples, registry, root / "explore-jobs"))
    if "inconclusive_share" in wanted:
        _measure(figures, "inconclusive_share", lambda: _inconclusive(figures))
    for name in EXPLORATION_FIGURES:
        if name not in wanted:
            figures.pop(name, None)  # measured only for the share


def _exploration(options: BenchOptions, registry: ProcessRegistry, root: Path) -> dict[str, Any]:
    from harness.explore.explorer import explore

    found = explore(resolve(EXPLORATION_SCENARIO), examples=options.examples,
                    seed=options.seed, registry=registry, runs_root=root, use_database=False)
    rate = found.examples / found.duration_s * 60 if found.duration_s else 0.0
    conclusive = found.examples - found.inconclusive
    return {"value": round(rate, 1), "unit": "schedules/min", "examples": found.examples,
            "inconclusive": found.inconclusive, "verdict": str(found.verdict),
            "conclusive_per_minute": round(conclusive / found.duration_s * 60, 1)
            if found.duration_s else 0.0,
            "duration_s": round(found.duration_s, 1), "scenario": EXPLORATION_SCENARIO,
            "seed": options.seed, "explorers": 1}


def _parallel_exploration(options: BenchOptions, examples: int, registry: ProcessRegistry,
                          root: Path) -> dict[str, Any]:
    """Figure 2: ``crashlab explore --jobs 2`` as a user runs it, without the example
    database; the rate is over the wall time of the whole (each explorer starts its own
    services, as it must)."""
    from harness.explore.explorers import ParallelExploration, explore_in_parallel

    request = ParallelExploration(EXPLORATION_SCENARIO, examples, PARALLEL_EXPLORERS,
                                  options.seed, root, child_options=["--no-database"])
    summary = explore_in_parallel(request, registry)
    failed = [e for e in summary["explorers"] if e["exit_code"] not in (0, 1)]
    if failed:
        raise CrashlabError(f"explorer {failed[0]['explorer']} exited with code "
                            f"{failed[0]['exit_code']}; see {failed[0]['log']}")
    wall = summary["duration_s"]
    conclusive = summary["examples"] - summary["inconclusive"]
    return {"value": round(conclusive / wall * 60, 1) if wall else 0.0,
            "unit": "conclusive schedules/min", "examples": summary["examples"],
            "inconclusive": summary["inconclusive"], "verdict": summary["verdict"],
            "schedules_per_minute": summary["schedules_per_minute"], "duration_s": wall,
            "scenario": EXPLORATION_SCENARIO, "seed": options.seed,
            "explorers": summary["jobs"]}


def _inconclusive(figures: dict[str, Any]) -> dict[str, Any]:
    """Figure 3: the inconclusive examples of the explorations measured, in percent."""
    measured = [figures[n] for n in EXPLORATION_FIGURES[:2]
                if figures.get(n, {}).get("examples")]
    if not measured:
        raise CrashlabError("no exploration was measured, so no share of it")
    examples = sum(f["examples"] for f in measured)
    inconclusive = sum(f["inconclusive"] for f in measured)
    return {"value": round(inconclusive / examples * 100, 1), "unit": "%",
            "examples": examples, "inconclusive": inconclusive}


def _latency(measured: dict[str, Any], key: str, quantile: str) -> dict[str, Any]:
    return {"value": measured[key][quantile], "unit": f"ms ({quantile})", **measured}


def _overhead(measured: dict[str, Any]) -> dict[str, Any]:
    return {"value": measured["ratio"], "unit": "on/off run time", **measured}


def _round_trips(measured: dict[str, Any]) -> dict[str, Any]:
    return {"value": measured["machinery_per_chunk"], "unit": "round trips/chunk", **measured}


def _checker_speed(entries: int, path: Path) -> dict[str, Any]:
    """Check a synthetic history in memory (entries/s), then load it from a file and check
    it again (what ``crashlab analyze`` does); and a tenth of it, to show the time is linear
    in the history's size. Each size is timed several times and its median taken: the
    first pass also pays one-time costs (imports, compiled patterns), and one slow moment
    of the host would otherwise read as a per-entry cost changing with size."""
    small_records, small_state = synthetic_run(_events_for(entries // 10))
    small, _ = _timed(5, lambda: _check(small_records, small_state))
    records, state = synthetic_run(_events_for(entries))
    checked, (history, checks) = _timed(3, lambda: _check(records, state))
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))
    started = time.perf_counter()
    run_checkers(load_history(path), state, None, _reference_checkers())
    analyzed = time.perf_counter() - started
    verdict = combine(c.verdict for c in checks)
    if verdict is not Verdict.VALID:
        bad = [f"{c.checker}: {c.witness}" for c in checks if c.verdict is not Verdict.VALID]
        raise CrashlabError(f"the synthetic history is not judged valid ({'; '.join(bad)}); "
                            "its timing would not cover every checker's whole path")
    events = len(history.sut_events)
    return {"value": round(len(records) / checked), "unit": "entries/s",
            "entries": len(records), "worker_events": events,
            "worker_events_per_s": round(events / checked),
            "check_s": round(checked, 3),
            "with_load_entries_per_s": round(len(records) / analyzed),
            # per-entry time at full size over that at a tenth of it: 1.0 is linear. About
            # 1.2 here: the full history outgrows the CPU caches (the per-entry time rises
            # from 10k to 50k entries, then stays flat up to 200k)
            "linearity": round((checked / len(records)) / (small / len(small_records)), 2),
            "checkers": len(checks), "verdict": str(verdict)}


def _reference_checkers() -> Sequence[Checker]:
    """The reference pack's checkers: the synthetic history is of its media jobs."""
    return load_target("reference").checkers()


def _check(records: list[dict[str, Any]],
           state: FinalState) -> tuple[History, list[CheckResult]]:
    history = History.from_json(records)
    return history, run_checkers(history, state, None, _reference_checkers())


def _timed(times: int, work: Callable[[], T]) -> tuple[float, T]:
    """The median of ``times`` runs of ``work`` in seconds, and what its last run returned."""
    took = []
    for _ in range(times):
        started = time.perf_counter()
        result = work()
        took.append(time.perf_counter() - started)
    return statistics.median(took), result


def _events_for(entries: int) -> int:
    """How many worker events make a synthetic history of about ``entries`` entries
    (about 52 % of its entries are events)."""
    return max(1, entries * 52 // 100)
