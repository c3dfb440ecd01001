"""``crashlab bench --quick``: every figure measured, as sane JSON, appended to the file.

Structure and sanity only: a benchmark's numbers are never asserted against
time (that is what the figures' targets and the README are for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.bench import DEFAULT_FIGURES, FIGURES, TARGETS
from harness.bench.synthetic import synthetic_run
from harness.checkers.base import Verdict
from harness.history import History
from tests.harness.checkers.builders import check_reference

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(300)]


def test_quick_bench_prints_and_appends_every_default_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    state = tmp_path / "state"
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(state)}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "--quick", "--json", "--out", str(out)],
        capture_output=True, text=True, env=env, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert [json.loads(line) for line in out.read_text().splitlines()] == [record]

    figures: dict[str, Any] = record["figures"]
    assert set(figures) == set(DEFAULT_FIGURES) == set(FIGURES) - {"scaling"}
    for name, figure in figures.items():
        assert "error" not in figure, (name, figure)
        assert isinstance(figure["value"], int | float), name
        assert figure["value"] > 0 or (name == "inconclusive_share" and figure["value"] == 0)
        target = TARGETS[name]
        assert figure["target"] == (None if target is None else target.text)
        assert figure["met"] is (None if target is None else target.met(figure["value"]))
    assert record["machine"]["cpus"] >= 1 and len(record["machine"]["load_average_end"]) == 3
    assert record["options"]["quick"] is True

    explored = figures["schedules_per_minute"]
    assert explored["examples"] == 2 and explored["verdict"] == "valid"
    side_by_side = figures["parallel_schedules"]
    assert side_by_side["explorers"] == 2 and side_by_side["examples"] == 4
    assert side_by_side["verdict"] == "valid"
    share = figures["inconclusive_share"]
    assert share["examples"] == 6 and 0 <= share["value"] <= 100
    assert share["value"] == pytest.approx(100 * share["inconclusive"] / 6, abs=0.1)

    recovery = figures["recovery_latency"]
    total, start, lease = (recovery[k] for k in ("total_ms", "replacement_start_ms",
                                                  "lease_wait_ms"))
    assert total["n"] == start["n"] == lease["n"] == 3
    # in every trial the replacement is up before its first commit, and that commit
    # comes after the dead worker's lease ran out, so the distributions are ordered
    for q in ("p50", "max"):
        assert 0 < start[q] <= total[q] and 0 < lease[q] < total[q]
    assert recovery["value"] == total["p95"]

    assert figures["takeover_latency"]["takeover_ms"]["n"] == 3
    events = figures["event_latency"]["latency_ms"]
    assert events["n"] == 8 and events["p50"] <= events["p99"] <= events["max"]  # 2 jobs x 4 chunks

    overhead = figures["recovery_overhead"]
    assert overhead["chunks_per_run"] == 8  # 2 jobs of 2 s in 0.5 s chunks, both ways
    assert len(overhead["on"]["seconds"]) == len(overhead["off"]["seconds"]) == 1
    assert overhead["ratio"] == pytest.approx(
        overhead["on"]["seconds"][0] / overhead["off"]["seconds"][0], rel=0.01)
    assert overhead["ratio_quartiles"] == [overhead["ratio"]] * 2  # one repeat
    assert overhead["service_latency_ms"] == 50.0
    assert figures["recovery_overhead_instant"]["service_latency_ms"] == 0.0
    trips = figures["recovery_round_trips"]
    # the on worker commits each chunk in one round trip; the bare one sends none per chunk
    assert trips["on"]["per_chunk"] >= 1 and trips["off"]["per_chunk"] == 0
    assert trips["value"] == trips["machinery_per_chunk"] > 0
    assert trips["on"]["total"] > trips["off"]["total"] > 0

    checkers = figures["checker_speed"]
    assert checkers["verdict"] == "valid" and checkers["entries"] >= 4500
    # nothing the bench started is left running
    assert list((state / "procs").glob("*.json")) == []


def test_only_measures_the_figures_named_and_refuses_unknown_ones(tmp_path: Path) -> None:
    out = tmp_path / "bench.jsonl"
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")}
    base = [sys.executable, "-m", "harness.cli", "bench", "--quick", "--out", str(out)]
    done = subprocess.run([*base, "--only", "checker_speed", "--json"], capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert list(record["figures"]) == ["checker_speed"]
    assert record["options"]["only"] == ["checker_speed"]
    wrong = subprocess.run([*base, "--only", "checker-speed"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert wrong.returncode == 3
    assert "unknown bench figure(s) checker-speed" in wrong.stderr
    assert "checker_speed" in wrong.stderr  # the names to choose from
    assert len(out.read_text().splitlines()) == 1  # the refused run appended nothing


def test_quick_scaling_figure_comes_from_real_runs_of_growing_size(tmp_path: Path) -> None:
    keep = tmp_path / "kept"
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "bench", "--quick", "--only", "scaling", "--json",
         "--out", str(tmp_path / "bench.jsonl"), "--keep", str(keep)],
        capture_output=True, text=True, env=env, timeout=280)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert list(record["figures"]) == ["scaling"]
    figure = record["figures"]["scaling"]
    assert "error" not in figure, figure
    rows = figure["sizes"]
    assert [row["jobs"] for row in rows] == [20, 40, 80]
    # progress while the runs go: each size announced, and its outcome
    for row in rows:
        assert f"{row['jobs']} jobs at 20/s" in done.stderr
        assert f"{row['jobs']} jobs: {row['verdict']}, run {row['run_s']} s" in done.stderr
    first = rows[0]
    for row in rows:
        run_dir = Path(row["run_dir"])
        assert run_dir.is_relative_to(keep)
        history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text()
                   .splitlines()]
        submits = [e for e in history if e["kind"] == "op" and e.get("op") == "submit"]
        assert len(submits) == row["jobs"]  # a real run of that many jobs
        spread = submits[-1]["ts"] - submits[0]["ts"]
        assert row["arrival_s"] == pytest.approx(spread, abs=0.006)
        assert row["arrival_rate"] == pytest.approx((row["jobs"] - 1) / spread, rel=0.01)
        assert (row["history_entries"], row["history_bytes"]) == (
            len(history), (run_dir / "history.jsonl").stat().st_size)
        assert row["verdict"] == "valid"
        kills = [e for e in history if e["kind"] == "fault_start"]
        assert len(kills) == row["faults_fired"] >= 1
        [turns] = row["turns"]
        assert turns["fault"] == "kill_random" and turns["fired"] == row["faults_fired"]
        # the bench's run and check enclose the runner's own clock of the same run
        results = json.loads((run_dir / "results.json").read_text())
        assert row["run_s"] > 0 and row["check_s"] > 0
        assert row["run_s"] + row["check_s"] >= results["duration_s"] - 0.01
        assert row["rss_peak_mb"] > 0
        report = run_dir / "report.html"
        assert row["report_bytes"] == report.stat().st_size and row["report_s"] > 0
        # the ratios are computed from the recorded figures
        assert row["linear_ratio"] == row["jobs"] / 20
        for key, ratio in (("run_s", "run_ratio"), ("check_s", "check_ratio"),
                           ("history_bytes", "history_ratio"), ("report_s", "report_ratio")):
            assert row[ratio] == pytest.approx(row[key] / first[key], abs=0.006)
    entries = [row["history_entries"] for row in rows]
    assert entries == sorted(entries) and entries[0] < entries[-1]
    last = rows[-1]
    per_job = {key: (last[key] / 80) / (first[key] / 20) for key in ("run_s", "check_s")}
    assert figure["per_job_ratio"] == pytest.approx(per_job, abs=0.002)
    assert figure["value"] == max(figure["per_job_ratio"].values())
    assert figure["met"] is TARGETS["scaling"].met(figure["value"])  # type: ignore[union-attr]


def test_synthetic_history_is_valid_for_every_checker_and_breakable() -> None:
    records, state = synthetic_run(2_000)
    history = History.from_json(records)
    assert len(history.sut_events) >= 2_000
    results = check_reference(history, state)
    # the synthetic run has no upload job and no graceful stop: nothing for those two
    assert {r.checker: r.verdict for r in results if r.verdict is not Verdict.VALID} == {
        "upload_byte_exact": Verdict.NOT_APPLICABLE,
        "graceful_stop_honoured": Verdict.NOT_APPLICABLE,
        # the synthetic final state holds no read of the queue, lease and deadline keys
        "indexes_consistent": Verdict.NOT_APPLICABLE}
    # a chunk committed twice must be caught: the timing covers real checking
    commit = next(r for r in records if r["kind"] == "sut_event"
                  and r["event"] == "chunk_committed")
    twice = [*records, {**commit, "index": len(records), "stream_id": "9-9", "seq": 999}]
    verdicts = {r.checker: r.verdict for r in check_reference(History.from_json(twice), state)}
    assert verdicts["chunk_committed_once"] is Verdict.INVALID


def test_summary_table_keeps_every_figure_name_whole_in_80_columns() -> None:
    from rich.console import Console

    from harness.cli_bench import _table

    stats = {"n": 20, "p50": 173.95, "p95": 178.13}
    details = {
        "schedules_per_minute": {"examples": 20, "duration_s": 18.1, "inconclusive": 1,
                                 "conclusive_per_minute": 63.0},
        "parallel_schedules": {"examples": 40, "duration_s": 19.0, "inconclusive": 2,
                               "explorers": 2},
        "inconclusive_share": {"examples": 60, "inconclusive": 3},
        "recovery_round_trips": {"machinery_rest_per_job": 4.0, "all_per_chunk": 1.4,
                                 "chunks_per_run": 64},
        "recovery_overhead_instant": {"on": {"chunks_per_s": 152.3},
                                      "off": {"chunks_per_s": 179.3}, "repeats": 16,
                                      "ratio_quartiles": [1.081, 1.147]},
        "recovery_latency": {"total_ms": stats, "replacement_start_ms": stats,
                             "resume_ms": stats, "lease_wait_ms": stats},
        "takeover_latency": {"takeover_ms": stats, "trials": 20},
        "event_latency": {"latency_ms": stats},
        "recovery_overhead": {"on": {"chunks_per_s": 15.3}, "off": {"chunks_per_s": 15.5},
                              "repeats": 6, "ratio_quartiles": [1.004, 1.018],
                              "service_latency_ms": 50.0},
        "checker_speed": {"entries": 99068, "checkers": 16, "with_load_entries_per_s": 84241},
        "scaling": {"verdict": "valid", "sizes": [
            {"jobs": n, "run_s": 2.0 * n, "check_s": 0.1 * n, "run_ratio": n / 200,
             "check_ratio": n / 200, "linear_ratio": n / 200, "rss_peak_mb": 100,
             "history_entries": 10 * n, "report_s": None, "arrival_rate": 9.5}
            for n in (200, 1000, 2000)], "rate": 10.0},
    }
    figures = {name: {"value": 1.177, "unit": "on/off run time", "target": "ratio <= 1.05",
                      "met": False, **details[name]} for name in FIGURES}
    console = Console(width=80, record=True)
    console.print(_table({"figures": figures}, FIGURES))
    text = console.export_text()
    for name in FIGURES:  # what --only takes, so it must be copyable from the table
        assert name in text, text
    assert "1.081-1.147" in text


def test_overhead_ratio_pairs_each_repeats_runs_so_a_slow_spell_cannot_invert_it() -> None:
    from harness.bench.throughput import overhead_ratio

    # a real bench: the host was slow for the first four repeats, fast for the rest
    on = [1.0021, 0.9879, 1.0462, 0.6665, 0.7187, 0.6488, 0.6092]
    off = [0.8558, 0.8637, 0.9842, 0.8988, 0.5603, 0.5414, 0.5647]
    assert sorted(on)[3] / sorted(off)[3] < 0.85  # medians compared: "on" looks faster
    assert overhead_ratio(on, off) == pytest.approx(1.14, abs=0.01)
    assert overhead_ratio([1.1], [1.0]) == pytest.approx(1.1)


def test_ratio_quartiles_bound_the_middle_half_of_the_repeats() -> None:
    from harness.bench.throughput import ratio_quartiles

    on = [1.0, 1.3, 1.2, 1.1, 1.9]
    off = [1.0] * 5
    assert ratio_quartiles(on, off) == pytest.approx((1.1, 1.3))
    assert ratio_quartiles([1.1], [1.0]) == pytest.approx((1.1, 1.1))
