"""A repeating fault's turns taken against those its clock asked for: the counting, and a
real run whose kills fall behind (each waits for its replacement) saying so."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.turns import Turns, asked_turns, count_turns, median_gap


def test_turns_asked_are_those_planned_before_the_nemesis_stopped() -> None:
    # the reference soak: a kill at 2 s, then every 2 s, at most 149, for 300 s
    assert asked_turns(2, 2, 149, 300.04) == 149
    assert asked_turns(2, 2, None, 300.04) == 150  # due at 2, 4, ..., 300 (300 < 300.04)
    assert asked_turns(2, 2, 149, 150.0) == 74  # 2 .. 148; the turn due at 150 is not asked
    assert asked_turns(None, 1, None, 3.0) == 3  # at_s defaults to 0: 0, 1, 2
    assert asked_turns(10, 1, None, 10.0) == 0  # stopped before the first turn was due
    assert asked_turns(0, 0.3, 5, 100) == 5


def test_counted_turns_say_how_far_behind_and_the_gap_between_them() -> None:
    starts = [2.0, 6.1, 10.5, 14.6, 19.0]  # every 4.1-4.4 s where every 2 s was asked
    turns = count_turns("f1", "kill_random", at_s=2, every_s=2, times=None, window_s=20.0,
                        starts=starts, fired=4)
    assert (turns.asked, turns.taken, turns.fired) == (9, 5, 4)
    assert turns.behind
    assert turns.median_gap_s == pytest.approx(4.25)  # gaps 4.1, 4.4, 4.1, 4.4
    assert turns.line() == ("kill_random f1: 5 of 9 turns, median gap 4.2 s (every 2 s "
                            "asked), 1 skipped")
    assert Turns.from_json(json.loads(json.dumps(turns.to_json()))) == turns
    kept_up = count_turns("f2", "sever_redis", at_s=6, every_s=12, times=2, window_s=30.0,
                          starts=[6.0, 18.0], fired=2)
    assert not kept_up.behind and kept_up.line() == ("sever_redis f2: 2 of 2 turns, median "
                                                     "gap 12.0 s (every 12 s asked)")
    assert median_gap([1.0]) is None and median_gap([]) is None
    assert count_turns("f3", "kill_random", at_s=0, every_s=1, times=None, window_s=0.5,
                       starts=[0.0], fired=1).line() == ("kill_random f3: 1 of 1 turns "
                                                         "(every 1 s asked)")


SCENARIO = """\
name: kills-behind
description: a kill asked every 0.3 s, each waiting for a cold replacement worker
workload: {kind: transcribe, rate: 1, duration_s: 10, media_seconds: 1, max_retries: 50}
workers: 2
settings: {lease_ttl_ms: 200, heartbeat_ms: 50}
faults:
  - {kind: kill_random, at_s: 0.5, every_s: 0.3, max_delay_ms: 0}
time_limit_s: 10
timeout_s: 90
"""


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(200)
def test_a_run_records_and_prints_the_turns_each_repeat_took(tmp_path: Path) -> None:
    path = tmp_path / "kills-behind.yaml"
    path.write_text(SCENARIO)
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(path), "--no-report",
         "--runs", str(tmp_path / "runs")], capture_output=True, text=True, timeout=180,
        env={**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state"), "COLUMNS": "200"})
    assert done.returncode in (0, 1, 2), done.stdout + done.stderr
    run_dir = next((tmp_path / "runs").glob("*-kills-behind"))
    results = json.loads((run_dir / "results.json").read_text())
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]

    [raw] = results["turns"]
    turns = Turns.from_json(raw)
    assert (turns.fault_id, turns.fault, turns.every_s) == ("f1", "kill_random", 0.3)
    # the history says the same, and every turn taken is there as a fault of its own
    [recorded] = [e for e in history if e["kind"] == "nemesis_turns"]
    assert Turns.from_json(recorded) == turns
    mine = {"f1"} | {f"f1.{n}" for n in range(2, turns.taken + 1)}
    started = [e for e in history if e["kind"] == "fault_start" and e["fault_id"] in mine]
    skipped = [e for e in history if e["kind"] == "fault_skipped" and e["fault_id"] in mine]
    assert len(started) == turns.fired and len(started) + len(skipped) == turns.taken
    # asked from the plan and the nemesis's own window, which outlasts the time limit
    assert turns.window_s >= 10
    assert turns.asked == asked_turns(0.5, 0.3, None, turns.window_s) >= 32
    assert turns.taken <= turns.asked and turns.behind is (turns.taken < turns.asked)
    assert results["faults"]["fired"] == turns.fired  # a turn behind still counts as fired
    gaps = [b["ts"] - a["ts"] for a, b in zip(started, started[1:], strict=False)]
    assert turns.taken >= 1 and (turns.median_gap_s is None) is (turns.taken < 2)
    if gaps and not skipped:  # the turns' starts, a kill's own moment a little after each
        assert min(gaps) - 0.5 <= (turns.median_gap_s or 0) <= max(gaps) + 0.5
    assert f"kill_random f1: {turns.taken} of {turns.asked} turns, median gap" in done.stdout
    # not a terminal, so no live bar: the run's steps and progress lines, one a line
    progress = re.findall(r"^kills-behind: timed faults firing: jobs (\d+)/(\d+) finished "
                          r"\(of 10\), faults fired (\d+), (\d+) s$", done.stdout, re.M)
    assert progress, done.stdout
    assert "kills-behind: starting services" in done.stdout
