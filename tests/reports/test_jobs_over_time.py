"""Throughput, latency, recovery and the timeline at scale, from histories written at chosen
times (``tests.reports.fakerun``) and read back as a report reads a run folder."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.checkers.base import Expectations, Verdict
from harness.checkers.queue import RecoveryBounded
from harness.history import load_history, load_state
from reports import render_run
from reports.charts import lane_colors, timeline_svg
from reports.crowd import (
    MAX_FAULT_LABELS,
    MAX_JOBS,
    MAX_LANES,
    Scale,
    busy_intervals,
    deaths,
    job_counts,
    plan,
    state_intervals,
)
from reports.jobtimes import (
    attempts,
    histogram,
    job_spans,
    kill_recoveries,
    nearest_rank,
    rate_bins,
)
from reports.rate_charts import rates_svg, recovery_svg
from reports.rundata import load_run
from reports.timeline import build_timeline
from tests.reports.fakerun import T0, FakeRun, job, soak


def section(page: str, anchor: str) -> str:
    match = re.search(rf'<section id="{anchor}">(.*?)</section>', page, re.S)
    assert match is not None, f"no section {anchor!r}"
    return match.group(1)


def seven_jobs() -> FakeRun:
    """Jobs submitted at 1 s and ending in the bins [2, 3) and [4, 5): known latencies."""
    run = FakeRun().worker("w1", 0.5)
    for number, end in enumerate((2.2, 2.4, 2.9, 4.1, 4.5, 4.6)):
        job(run, f"j{number}", "w1", 1.0, 1.5, end)
        run.final(f"j{number}", "COMPLETED", end)
    run.submit("bad", 1.0).event("bad", "job_failed", "w1", 4.7, reason="no audio")
    run.final("bad", "FAILED", 4.7)
    return run


def test_throughput_and_latency_are_binned_by_each_jobs_end(tmp_path: Path) -> None:
    folder = seven_jobs().save(tmp_path / "run")
    history, state = load_history(folder / "history.jsonl"), load_state(folder / "state.json")
    spans = job_spans(history, state, T0)
    assert [round(s.submitted, 6) for s in spans] == [1.0] * 7
    bins = rate_bins(spans, 1.0, 4.7, 1.0)
    assert [b.start for b in bins] == [1.0, 2.0, 3.0, 4.0]
    assert [(b.completed, b.other) for b in bins] == [(0, 0), (3, 0), (0, 0), (3, 1)]
    assert bins[1].rate == 3.0 and bins[3].rate == 4.0
    # latencies in [2, 3): 1.2, 1.4, 1.9; in [4, 5): 3.1, 3.5, 3.6 and the failed job's 3.7
    assert bins[1].p50 == pytest.approx(1.4) and bins[1].p99 == pytest.approx(1.9)
    assert bins[3].p50 == pytest.approx(3.5) and bins[3].p99 == pytest.approx(3.7)
    assert bins[0].p50 is None and bins[2].p99 is None
    assert nearest_rank([5.0, 1.0, 3.0, 2.0], 0.5) == 2.0


def test_a_jobs_end_is_its_snapshots_and_else_its_terminal_event(tmp_path: Path) -> None:
    run = FakeRun().worker("w1", 0.5)
    job(run, "old", "w1", 1.0, 1.2, 2.0)
    run.final("old", "COMPLETED", 2.0, record_end=False)  # a run folder from before ended_at
    job(run, "new", "w1", 1.0, 2.1, 3.0)
    run.final("new", "COMPLETED", 3.5)  # the queue's own record wins over the event
    run.submit("stuck", 1.0).final("stuck", "PROCESSING", None)
    folder = run.save(tmp_path / "run")
    spans = {s.job_id: s for s in job_spans(load_history(folder / "history.jsonl"),
                                            load_state(folder / "state.json"), T0)}
    assert spans["old"].ended == pytest.approx(2.0, abs=1e-3)
    assert spans["new"].ended == pytest.approx(3.5)
    assert spans["stuck"].ended is None and spans["stuck"].state == "PROCESSING"


def test_too_few_jobs_are_told_in_a_sentence_not_plotted(tmp_path: Path) -> None:
    run = FakeRun().worker("w1", 0.5)
    job(run, "only", "w1", 1.0, 1.1, 2.25)
    run.final("only", "COMPLETED", 2.25)
    rates = section(render_run(run.save(tmp_path / "run")), "rates")
    assert "<svg" not in rates
    assert "Only 1 job ended in this run, too few to plot" in rates and "1.25 s" in rates
    big = section(render_run(seven_jobs().save(tmp_path / "seven")), "rates")
    assert big.count("<svg") == 1 and "too few" not in big


def test_fault_windows_are_shaded_from_start_to_heal_and_kills_drawn_as_lines(
        tmp_path: Path) -> None:
    run = seven_jobs().window("f2", "sever_redis", 2.5, 3.25).window("f3", "redis_toxic", 3.5,
                                                                       3.75)
    run.worker("w2", 0.5).kill("w2", 3.0, "f1")
    folder = run.save(tmp_path / "run")
    history = load_history(folder / "history.jsonl")
    timeline = build_timeline(history, T0)
    heals = {e.get("fault_id"): e.ts - T0 for e in history.of_kind("fault_heal")}
    starts = {e.get("fault_id"): e.ts - T0 for e in history.of_kind("fault_start")}
    windows = {m.fault_id: (m.start, m.end) for m in timeline.faults if m.end is not None}
    assert windows == {f: (starts[f], heals[f]) for f in ("f2", "f3")}
    assert [m.fault_id for m in timeline.faults if m.end is None] == ["f1"]
    spans = job_spans(history, load_state(folder / "state.json"), T0)
    svg = rates_svg(rate_bins(spans, 1.0, 4.7, 1.0), spans, timeline.faults, (0.0, 5.0))
    shaded = sorted(re.findall(r'<g id="window-([\w.]+)-(rate|latency)"', svg))
    assert shaded == [("f2", "latency"), ("f2", "rate"), ("f3", "latency"), ("f3", "rate")]
    assert 'id="instants-kill_random-rate"' in svg and 'id="instants-kill_random-latency"' in svg


def rq_kills() -> FakeRun:
    """Three jobs in flight on killed rq workers, finished elsewhere 2, 4 and 9 s later, and
    one job the kill missed (it had ended)."""
    run = FakeRun(target="rq").worker("w1", 0.5).worker("w2", 0.5).worker("w3", 0.5)
    for name, kill_t, took in (("w1", 3.0, 2.0), ("w2", 3.0, 4.0), ("w3", 5.0, 9.0)):
        job_id = f"on-{name}"
        run.submit(job_id, 1.0).start_line(job_id, name, 2.0).kill(name, kill_t)
        run.worker(f"{name}.2", kill_t + 0.05).start_line(job_id, f"{name}.2", kill_t + 1.0)
        run.final(job_id, "COMPLETED", kill_t + took)
    run.submit("done", 1.0).start_line("done", "w3", 1.5).final("done", "COMPLETED", 2.5)
    return run


def test_recovery_histogram_counts_each_job_a_kill_interrupted(tmp_path: Path) -> None:
    folder = rq_kills().save(tmp_path / "run")
    history, state = load_history(folder / "history.jsonl"), load_state(folder / "state.json")
    found = kill_recoveries(history, job_spans(history, state, T0), T0)
    took = sorted(r.took for r in found if r.took is not None)
    assert took == pytest.approx([2.0, 4.0, 9.0]) and {r.job_id for r in found} == {
        "on-w1", "on-w2", "on-w3"}
    # the same numbers as the queue checker that judges them
    verdict = RecoveryBounded().check(history, state, Expectations())
    assert verdict.verdict is Verdict.VALID
    for value, job_id in ((2.0, "on-w1"), (4.0, "on-w2"), (9.0, "on-w3")):
        assert f"{job_id} {value:.2f} s" in verdict.witness
    counts = histogram(took, top=30.0)
    assert counts.width == 0.5 and sum(counts.counts) == 3
    assert [k for k, n in enumerate(counts.counts) if n] == [4, 8, 18]
    svg = recovery_svg(counts, 30.0, "rq")
    assert "limit 30 s (rq)" in svg and svg.count("<path") > 3
    recovery = section(render_run(folder), "recovery")
    assert 'aria-label="recovery latency histogram' in recovery
    assert '<div class="n">3</div><div class="l">jobs in flight at a SIGKILL' in recovery
    assert '<div class="n">0</div><div class="l">over the 30 s limit' in recovery


def test_a_job_is_queued_running_then_orphaned_until_taken_over(tmp_path: Path) -> None:
    run = FakeRun().worker("w1", 0.5).worker("w2", 0.5)
    run.submit("j", 1.0).event("j", "job_claimed", "w1", 2.0).kill("w1", 3.0)
    run.event("j", "recovery_started", "w2", 4.0, epoch=2)
    run.event("j", "job_completed", "w2", 5.0, epoch=2).final("j", "COMPLETED", 5.0)
    folder = run.save(tmp_path / "run")
    history, state = load_history(folder / "history.jsonl"), load_state(folder / "state.json")
    timeline = build_timeline(history, T0)
    spans = job_spans(history, state, T0)
    tries = attempts(history, spans, deaths(timeline.lanes), T0)
    found = {k: [(round(a, 3), round(b, 3)) for a, b in v]
             for k, v in state_intervals(spans, tries, timeline.lanes, 6.0).items()}
    assert found == {"queued": [(1.0, 2.0)], "running": [(2.0, 3.0), (4.0, 5.0)],
                     "orphaned": [(3.0, 4.0)]}
    counts = job_counts(spans, tries, timeline.lanes, 1.0, 5.0, bins=4)
    assert [round(counts.mean[s][k], 3) for s in ("queued", "running", "orphaned")
            for k in range(4)] == [1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0]
    assert counts.completed == (0, 0, 0, 1)
    busy = busy_intervals(timeline.lanes, tries)
    assert [(round(a, 3), round(b, 3)) for a, b in busy["w1"]] == [(2.0, 3.0)]
    assert [(round(a, 3), round(b, 3)) for a, b in busy["w2"]] == [(4.0, 5.0)]


def test_the_timeline_aggregates_each_part_only_past_its_threshold(tmp_path: Path) -> None:
    def scale_of(run: FakeRun, name: str) -> tuple[Scale, str]:
        folder = run.save(tmp_path / name)
        history, state = load_history(folder / "history.jsonl"), load_state(
            folder / "state.json")
        timeline = build_timeline(history, T0)
        spans = job_spans(history, state, T0)
        scale = plan(timeline, spans, attempts(history, spans, deaths(timeline.lanes), T0))
        return scale, timeline_svg(timeline, lane_colors([n.name for n in timeline.lanes]),
                                   scale)

    # kills every 8 s: 40 jobs -> 4 kills, 8 lanes, 4 fault marks: nothing aggregated
    small, small_svg = scale_of(soak(jobs=MAX_JOBS, workers=4, rate=1, kill_every=8.0),
                                "small")
    assert small == Scale() and not small.aggregated
    assert "one lane per worker incarnation" in small_svg and "chunks committed" in small_svg
    jobs, jobs_svg = scale_of(soak(jobs=MAX_JOBS + 1, workers=4, rate=1, kill_every=8.0),
                              "jobs")
    assert jobs.counts is not None and jobs.busy is not None
    assert jobs.slots is None and jobs.fault_kinds is None
    assert "jobs in flight" in jobs_svg and "chunks committed" not in jobs_svg
    # a kill every 0.5 s over ~45 s: more than MAX_LANES incarnations and MAX_FAULT_LABELS
    many, many_svg = scale_of(soak(jobs=MAX_JOBS + 5, workers=2, rate=1, kill_every=0.5),
                              "many")
    lanes = 2 + sum(slot.killed for slot in many.slots or ())
    assert many.slots is not None and lanes > MAX_LANES
    assert [s.name for s in many.slots] == ["w1", "w2"]
    assert many.fault_kinds == ("kill_random",)
    assert "one row per worker slot" in many_svg and ">w1 (" in many_svg
    row = re.search(r">kill_random ×(\d+)<", many_svg)
    assert row is not None and int(row.group(1)) > MAX_FAULT_LABELS


def test_a_soak_sized_report_aggregates_and_folds_its_long_tables(tmp_path: Path) -> None:
    folder = soak(jobs=300, workers=4, rate=6.667, kill_every=1.0, sever_every=30.0,
                  job_s=0.4).save(tmp_path / "soak")
    page = render_run(folder)
    timeline = section(page, "timeline")
    assert 'aria-label="timeline: one row per worker slot' in timeline
    assert "each of the 300 jobs&#x27; submit, claim and completion left out" in timeline
    run = load_run(folder)
    kills = len(run.history.worker_kills)
    assert f">kill_random ×{kills}<" in timeline
    rates = section(page, "rates")
    assert rates.count('<g id="window-f2') == 2  # the one Redis cut, on both panels
    assert f"{kills} kill_random (ticks along the top)" in rates
    jobs = section(page, "jobs")
    assert '<div class="n">300</div><div class="l">COMPLETED' in jobs
    assert "<details><summary>Every job (300)</summary>" in jobs
    assert "Every planned fault" in section(page, "coverage")
