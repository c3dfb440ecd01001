"""Workloads and faults over time: arrivals beside the faults, a repeating nemesis,
the short soak every suite run makes, and the bad timing a scenario is refused for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.checkers.base import Verdict
from harness.errors import ScenarioError
from harness.packs.arq.target import ArqTarget
from harness.packs.reference.target import ReferenceTarget
from harness.packs.rq.target import RqTarget
from harness.procs import ProcessRegistry
from harness.runner import check_workload, run_scenario
from harness.scenario import SOAK_TAG, catalog, parse_scenario, resolve, runs_in_all
from reports import write_run_report
from reports.jobtimes import job_spans, kill_recoveries
from reports.rundata import load_run
from tests.reports.test_report_in_chromium import ARTIFACTS, browse, load


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args, "--runs",
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")})


@pytest.mark.parametrize(("body", "named"), [
    ("workload: {rate: -2, duration_s: 5}\n", "workload.rate"),
    ("workload: {rate: 2, duration_s: 100}\ntimeout_s: 30\n", "timeout_s"),
    ("faults:\n  - {kind: kill_random, every_s: 2, jitter_s: 3}\n", "jitter_s"),
    ("faults:\n  - {kind: sever_redis}\n  - {kind: kill_random, at_s: 1, every_s: 0.5}\n",
     "faults.1.every_s"),
])
def test_bad_timing_is_refused_naming_the_field_with_exit_3(tmp_path: Path, body: str,
                                                            named: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ndescription: bad timing\n" + body)
    proc = _cli(tmp_path, "run", str(path))
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert named in proc.stderr, proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").glob("*-bad"))


def test_a_repeat_must_outlast_each_targets_lease() -> None:
    text = ("name: r\ndescription: d\nworkload: {{kind: task}}\n"
            "faults:\n  - {{kind: kill_random, every_s: {every}}}\n")
    # rq keeps a killed attempt 65 s, arq's claim lasts job_timeout + 10 = 30 s
    for target, short, enough in ((RqTarget(), 60, 65), (ArqTarget(), 29, 30)):
        with pytest.raises(ScenarioError, match=r"faults.0.every_s \(.*\) is shorter than a "
                                                rf"lease of {target.name}"):
            check_workload(parse_scenario(text.format(every=short), "r.yaml"), target)
        check_workload(parse_scenario(text.format(every=enough), "r.yaml"), target)
    slow = parse_scenario("name: r\ndescription: d\nsettings: {lease_ttl_ms: 5000}\n"
                          "faults:\n  - {kind: kill_random, every_s: 3}\n", "r.yaml")
    with pytest.raises(ScenarioError, match="lease of reference \\(5 s\\)"):
        check_workload(slow, ReferenceTarget())


def test_soaks_are_left_out_of_run_all(tmp_path: Path) -> None:
    soaks = {name for name, s in catalog().items() if SOAK_TAG in s.tags}
    assert {"soak", "soak-quick"} <= soaks
    everything = {s.name for s in runs_in_all(catalog())}
    assert not everything & soaks and len(everything) == len(catalog()) - len(soaks)
    listed = subprocess.run([sys.executable, "-m", "harness.cli", "list"], capture_output=True,
                            text=True, timeout=60)
    assert "soak-quick" in listed.stdout
    soak = resolve("soak")
    assert soak.workload.jobs == 2000 and soak.workers == 4
    assert soak.workload.arrival_s == pytest.approx(300, rel=0.01)


@pytest.mark.parametrize("pack", ["rq", "arq"])
def test_each_queue_pack_has_a_soak_and_a_quick_soak_within_its_lease(pack: str) -> None:
    from harness.packs_registry import load_target
    from harness.project import catalog_for

    target = load_target(pack)
    shipped = catalog_for(pack)
    soak, quick = shipped[f"{pack}-soak"], shipped[f"{pack}-soak-quick"]
    everything = {s.name for s in runs_in_all(shipped)}
    for scenario in (soak, quick):
        assert SOAK_TAG in scenario.tags and scenario.name not in everything
        check_workload(scenario, target)  # every repeat outlasts the pack's lease
        kinds = {f.kind for f in scenario.faults}
        assert {"kill_random", "sever_redis", "restart_redis"} <= kinds
        assert scenario.workload.rate is not None and scenario.workers >= 3
        assert scenario.supervise_s is not None  # these libraries' workers exit on a cut
    assert soak.time_limit_s == 300 and soak.workload.arrival_s == pytest.approx(300)
    assert any(f.every_s is not None for f in soak.faults if f.kind == "kill_random")
    assert quick.time_limit_s is not None and quick.time_limit_s <= 60
    assert quick.workload.arrival_s <= 60


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(240)
def test_the_quick_soak_loses_nothing_and_fires_every_repeat(
        tmp_path: Path, registry: ProcessRegistry) -> None:
    scenario = resolve("soak-quick")
    said: list[str] = []
    result = run_scenario(scenario, seed=3, registry=registry, runs_root=tmp_path,
                          progress=said.append)
    assert result.verdict is Verdict.VALID, [c.witness for c in result.checks
                                             if c.verdict is not Verdict.VALID]
    # every repeat of every timed fault is a planned fault, and each fired
    repeats = sum(f.times or 1 for f in scenario.faults)
    assert (result.faults_planned, result.faults_fired) == (repeats, repeats)
    history = [json.loads(line) for line in
               (result.run_dir / "history.jsonl").read_text().splitlines()]
    submits = [e["index"] for e in history if e["kind"] == "op" and e.get("op") == "submit"]
    starts = [e for e in history if e["kind"] == "fault_start"]
    assert len(submits) == scenario.workload.jobs
    # submission ran beside the faults: jobs arrived after the first and before the
    # last kill, and the kills came at least a repeat apart, in the order of the clock
    assert submits[0] < starts[0]["index"] < submits[-1]
    kills = [e["ts"] for e in starts if e["fault"] == "kill_random"]
    assert len(kills) == 9 and all(b - a >= 1.0 for a, b in zip(kills, kills[1:], strict=False))
    assert kills[-1] - kills[0] <= scenario.time_limit_s
    # each repeating fault's turns: all nine kills and both cuts, none skipped
    turns = {t.fault: t for t in result.turns}
    assert set(turns) == {"kill_random", "sever_redis"}
    assert (turns["kill_random"].taken, turns["kill_random"].fired) == (9, 9)
    assert turns["kill_random"].asked == 9 and turns["sever_redis"].asked == 2
    # the progress lines of the long waits: jobs finished of submitted, faults, elapsed
    lines = [re.search(r"jobs (\d+)/(\d+) finished \(of 120\), faults fired (\d+), "
                       r"(\d+) s$", line) for line in said]
    figures = [tuple(int(n) for n in m.groups()) for m in lines if m is not None]
    assert len(figures) >= 3, said
    for done, submitted, fired, _ in figures:
        assert done <= submitted <= 120 and fired <= repeats
    for field in range(4):  # none goes back as the run goes on
        assert [f[field] for f in figures] == sorted(f[field] for f in figures), figures
    _the_report_reads_at_soak_scale(result.run_dir)


def _the_report_reads_at_soak_scale(run_dir: Path) -> None:
    """The soak's report: the timeline aggregated, throughput and latency with every fault
    window shaded, the recovery of every job a kill interrupted; it opens in Chromium."""
    page_file = write_run_report(run_dir)
    page = page_file.read_text(encoding="utf-8")
    run = load_run(run_dir)
    assert run.state is not None
    assert all(snap.ended_at is not None for snap in run.state.jobs.values()
               if snap.state == "COMPLETED")  # the reference pack says when each job ended
    timeline = page[page.index('<section id="timeline">'):page.index('<section id="rates">')]
    assert "jobs in flight" in timeline and ">kill_random ×9<" in timeline
    rates = page[page.index('<section id="rates">'):page.index('<section id="recovery">')]
    windows = len(run.history.of_kind("fault_heal")) - 9  # every fault but the 9 kills
    assert rates.count('<g id="window-') == 2 * windows == 6  # 2 cuts, 1 restart; 2 panels
    assert '<g id="instants-kill_random-rate"' in rates
    t0 = run.started or 0.0
    interrupted = kill_recoveries(run.history, job_spans(run.history, run.state, t0), t0)
    recovered = [r.took for r in interrupted if r.took is not None]
    assert recovered and all(0 < took < 30 for took in recovered)  # the reference's limit
    recovery = page[page.index('<section id="recovery">'):page.index('<section id="calls">')]
    assert (f'<div class="n">{len(interrupted)}</div><div class="l">jobs in flight at a '
            "SIGKILL") in recovery
    assert ('aria-label="recovery latency histogram' in recovery) == (len(recovered) >= 3)
    loaded = load(page_file)
    assert loaded.console == [] and "Throughput and latency" in loaded.dom
    shot = run_dir / "report.png"
    done = browse(page_file, f"--screenshot={shot}", "--window-size=1400,3000")
    assert done.returncode == 0 and shot.stat().st_size > 50_000, done.stderr[-2000:]
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot.replace(ARTIFACTS / "soak-report.png")
