"""The HTML report of a real run: every part is there, true to the run folder, and offline."""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.history import load_history
from reports import REPORT_FILE, render_index, render_run, write_index, write_run_report
from reports.charts import MAX_CALL_BARS, bin_chunks, calls_svg
from reports.measures import ChunkCalls, recoveries
from reports.rundata import format_log_line
from tests.reports.conftest import SCENARIO, ReportRuns

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MAX_BYTES = 2 * 1024 * 1024
EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//"""
                      r"""|url\(\s*["']?\s*(?:https?:)?//|@import""", re.I)


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match is not None, f"no section {anchor!r} in the report"
    return match.group(1)


def results_of(run_dir: Path) -> dict[str, object]:
    raw = json.loads((run_dir / "results.json").read_text())
    assert isinstance(raw, dict)
    return raw


def test_report_shows_the_verdict_and_every_checkers_witness(report_runs: ReportRuns) -> None:
    run = report_runs.first
    page = render_run(run.run_dir)
    banner = re.search(r'<div class="banner bg-(\w+)" id="verdict"><div class="word">(\w+)<',
                       page)
    assert banner is not None and banner.groups() == (str(run.verdict), str(run.verdict))
    checks = section(page, "checks")
    for check in run.checks:
        assert f"<code>{check.checker}</code>" in checks
        assert html.escape(check.witness) in checks
    assert checks.count('class="badge') == len(run.checks)


def test_timeline_has_one_lane_per_worker_incarnation(report_runs: ReportRuns) -> None:
    run_dir = report_runs.first.run_dir
    history = load_history(run_dir / "history.jsonl")
    workers = [p.name for p in history.processes if p.role == "worker"]
    assert len(workers) >= 2, workers  # the killed worker and its replacement
    timeline = section(render_run(run_dir), "timeline")
    svg = re.search(r'<svg role="img" aria-label="timeline.*?</svg>', timeline, re.S)
    assert svg is not None
    lane_labels = re.findall(r">([^<>]+)</text>", svg.group(0))
    for name in workers + ["nemesis"]:
        assert name in lane_labels, f"no lane {name!r}; labels: {lane_labels}"
    kill = next(s for s in history.signals if s.signal == "SIGKILL")
    assert f"{kill.name} (SIGKILL)" in timeline
    assert "chunks committed" in lane_labels  # the job progress panel


def test_replay_command_seed_and_schedule_are_shown(report_runs: ReportRuns) -> None:
    run = report_runs.first
    reproduce = section(render_run(run.run_dir), "reproduce")
    assert html.escape(str(results_of(run.run_dir)["replay"])) in reproduce
    assert f"crashlab run {SCENARIO} --seed {run.seed}" in reproduce
    assert "kill_at_phase" in reproduce and "chunk.committed" in reproduce


def test_fault_coverage_lists_planned_and_fired(report_runs: ReportRuns) -> None:
    run = report_runs.first
    coverage = section(render_run(run.run_dir), "coverage")
    assert f'<div class="n">{run.faults_planned}</div><div class="l">planned' in coverage
    assert f'<div class="n">{run.faults_fired}</div><div class="l">fired' in coverage
    assert "<code>f1</code>" in coverage and "fired and healed" in coverage


def test_recovery_latency_runs_from_the_kill_to_the_next_owners_commit(
    report_runs: ReportRuns,
) -> None:
    run_dir = report_runs.first.run_dir
    history = load_history(run_dir / "history.jsonl")
    kill = next(e for e in history if e.kind == "process_signal" and e.get("signal") == "SIGKILL")
    resumed = min(e.ts_ms for e in history.sut_events
                  if e.event == "chunk_committed" and e.epoch > 1)
    t0 = history[0].ts
    (found,) = recoveries(history, t0)
    assert found.worker == kill.get("name") and found.cause == "SIGKILL"
    assert found.latency == pytest.approx(resumed / 1000 - kill.ts, abs=1e-6)
    recovery = section(render_run(run_dir), "recovery")
    assert f"{found.latency:.2f} s" in recovery
    assert 'aria-label="recovery latency distribution"' in recovery


def test_calls_per_chunk_count_every_logged_call(report_runs: ReportRuns) -> None:
    run_dir = report_runs.first.run_dir
    history = load_history(run_dir / "history.jsonl")
    calls = section(render_run(run_dir), "calls")
    assert f'<div class="n">{len(history.external_calls)}</div><div class="l">calls' in calls
    assert 'aria-label="external calls per chunk, by outcome"' in calls
    repeated = {(c.job_id, c.chunk_index) for c in history.external_calls
                if sum(1 for d in history.external_calls
                       if (d.job_id, d.chunk_index) == (c.job_id, c.chunk_index)) > 1}
    assert ("Chunks called more than once" in calls) == bool(repeated)


def test_log_tails_end_with_each_logs_last_line(report_runs: ReportRuns) -> None:
    run_dir = report_runs.first.run_dir
    logs = section(render_run(run_dir), "logs")
    t0 = load_history(run_dir / "history.jsonl")[0].ts
    for log in sorted((run_dir / "logs").glob("*.log")):
        assert f"<code>logs/{log.name}</code>" in logs
        last = log.read_text().splitlines()[-1]
        assert html.escape(format_log_line(last, t0)[:200]) in logs


def test_page_is_small_and_fetches_nothing(report_runs: ReportRuns) -> None:
    target = write_run_report(report_runs.first.run_dir)
    assert target == report_runs.first.run_dir / REPORT_FILE
    page = target.read_text(encoding="utf-8")
    assert 10_000 < target.stat().st_size < MAX_BYTES
    assert EXTERNAL.search(page) is None, EXTERNAL.search(page)
    for tag in ("<script", "<link", "<img", "<iframe", "<object"):
        assert tag not in page
    assert page.count("<svg") == 3  # timeline, recovery latency, calls per chunk


def test_text_from_the_run_is_escaped(run_copy: Callable[[], Path]) -> None:
    run_dir = run_copy()
    hostile = "<img src=x onerror=alert(1)>"
    with (run_dir / "logs" / "w1.log").open("a") as log:
        log.write(f"plain line {hostile}\n")
    results = results_of(run_dir)
    checks = results["checks"]
    assert isinstance(checks, list)
    checks[0]["witness"] = f"job {hostile} was lost"
    (run_dir / "results.json").write_text(json.dumps(results))
    page = render_run(run_dir)
    assert hostile not in page
    assert html.escape(f"job {hostile} was lost") in page
    assert html.escape(f"plain line {hostile}") in page


def test_interrupted_run_still_shows_its_timeline_and_logs(report_runs: ReportRuns) -> None:
    page = render_run(report_runs.interrupted)
    assert 'class="banner bg-incomplete"' in page
    assert "no results.json" in page
    assert 'aria-label="timeline' in section(page, "timeline")
    assert "logs/w1.log" in section(page, "logs")


def test_counterexample_comes_first(report_runs: ReportRuns) -> None:
    counterexample = {
        "checker": "chunk_committed_once",
        "witness": "job j1: chunk 2 committed twice <by w1 & w1.2>",
        "schedule": [{"kind": "kill_at_phase", "point": "chunk.committed", "occurrence": 2}],
        "replay": "crashlab replay runs/x",
        "shrink_steps": 7,
    }
    page = render_run(report_runs.first.run_dir, counterexample=counterexample)
    found = section(page, "counterexample")
    assert page.index('<section id="counterexample">') < page.index('<section id="checks">')
    assert html.escape(counterexample["witness"]) in found  # type: ignore[arg-type]
    assert "point=chunk.committed, occurrence=2" in found
    assert "crashlab replay runs/x" in found and "shrink_steps" in found
    assert '<section id="counterexample">' not in render_run(report_runs.first.run_dir)


def test_counterexample_as_the_explorer_records_it(report_runs: ReportRuns) -> None:
    run = report_runs.first
    failing = {"checker": "no_work_after_commit", "verdict": "invalid", "witness": "chunk 1 redone"}
    found = section(render_run(run.run_dir, counterexample={
        "run_dir": str(run.run_dir), "schedule": "kill_at_phase(chunk.committed#2)", "faults": 1,
        "failing_checks": [failing], "replay": f"crashlab replay {run.run_dir}"}), "counterexample")
    assert "<pre>kill_at_phase(chunk.committed#2)</pre>" in found
    assert '<tr class="bad"><td><code>no_work_after_commit</code>' in found
    assert "chunk 1 redone" in found and f"crashlab replay {run.run_dir}" in found
    assert "<dt>faults</dt><dd><code>1</code></dd>" in found


def test_index_lists_every_run_with_its_verdict_and_trend(report_runs: ReportRuns) -> None:
    index = write_index([report_runs.root])
    page = index.read_text(encoding="utf-8")
    assert index == report_runs.root / "index.html"
    everything = section(page, "runs")
    for folder in report_runs.folders:
        assert folder.name in everything
    assert f"All runs ({len(report_runs.folders)})" in page
    scenarios = section(page, "scenarios")
    assert scenarios.count('title="') == len(report_runs.folders)  # one trend square per run
    assert EXTERNAL.search(page) is None


def test_index_links_each_run_to_its_report(report_runs: ReportRuns, tmp_path: Path) -> None:
    reports = {r.run_dir: write_run_report(r.run_dir, tmp_path / f"{r.run_dir.name}.html")
               for r in report_runs.results}
    page = render_index([report_runs.root], tmp_path, reports)
    for run_dir in reports:
        assert f'href="{run_dir.name}.html"' in page


def test_index_lists_a_run_that_died_before_recording(run_copy: Callable[[], Path]) -> None:
    run_dir = run_copy()
    dead = run_dir.parent / "20200101-000000-redis-latency"
    (dead / "logs").mkdir(parents=True)
    (run_dir.parent / "notes").mkdir()  # not named like a run: not listed
    page = render_index([run_dir.parent], run_dir.parent)
    everything = section(page, "runs")
    assert "All runs (2)" in page
    assert dead.name in everything and "no history.jsonl" in everything
    assert "notes" not in everything
    assert "<code>redis-latency</code>" in section(page, "scenarios")


def test_thousands_of_chunks_are_summed_into_bars_that_keep_every_call() -> None:
    chunks = [ChunkCalls(f"job-{i // 2}", i % 2, ("new",) if i != 777 else ("new", "new"))
              for i in range(3001)]
    chunks[10] = ChunkCalls("job-5", 0, ("new", "repeat", "status"))
    bins = bin_chunks(chunks)
    assert len(bins) <= MAX_CALL_BARS and sum(b.size for b in bins) == len(chunks)
    total = sum((b.counts for b in bins), Counter())
    assert total == sum((c.counts for c in chunks), Counter())
    assert [b.first.job_id for b in bins if b.billed_twice] == \
        [next(b for b in bins if b.first is chunks[777 - 777 % bins[0].size]).first.job_id]
    svg = calls_svg(chunks, {f"job-{i}": i + 1 for i in range(1501)})
    assert f"3001 chunks in job order, {bins[0].size} to a bar" in svg
    assert svg.count("<path") < 4 * MAX_CALL_BARS  # bars, not one per chunk
