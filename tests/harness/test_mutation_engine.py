"""``crashlab mutants --generate``: the Lua operators, the sample, the judge, a session.

The operators are run through cosmic-ray's own mutation machinery; the
judge (``harness.mutation_check``) and the session run real scenarios on a
real worker copy, with real Redis.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cosmic_ray.mutating import mutate_code
from cosmic_ray.plugins import operator_names

import system_under_test
from harness.errors import SetupError
from harness.mutation_check import RESULT_MARK
from harness.mutation_engine import KILLED, OUTCOMES, SURVIVED, MutationSession, _spread_sample
from harness.mutation_ops import DeleteRedisCall, FlipLuaComparison, comparisons, statement_calls
from harness.packs.reference.target import ReferenceTarget
from harness.target import MutationSource

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = '''S = """
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if redis.call('GET', KEYS[2]) == 'x' then redis.call('DEL', KEYS[2]) end
-- a comment with == and redis.call('SET', 'k', 'v')
redis.call('SET', KEYS[3], 'a >= b')
return n < 3
"""
'''


def test_the_lua_operators_are_registered_with_cosmic_ray() -> None:
    names = operator_names()
    assert "crashlab/DeleteRedisCall" in names and "crashlab/FlipLuaComparison" in names


def test_only_calls_that_stand_alone_are_deleted_and_quoted_text_is_skipped() -> None:
    calls = [SCRIPT[a:b] for a, b in statement_calls(SCRIPT)]
    # the assignment, the condition and the call in the comment stay; these two go
    assert calls == ["redis.call('DEL', KEYS[2])", "redis.call('SET', KEYS[3], 'a >= b')"]
    assert [SCRIPT[a:b] for a, b in comparisons(SCRIPT)] == ["==", "<"]


def test_each_mutation_changes_one_thing_and_keeps_python_valid() -> None:
    deleted = mutate_code(SCRIPT, DeleteRedisCall(), 1)
    assert deleted is not None and "redis.call('SET', KEYS[3]" not in deleted
    assert deleted.count("redis.call(") == SCRIPT.count("redis.call(") - 1
    flipped = mutate_code(SCRIPT, FlipLuaComparison(), 1)
    assert flipped is not None and "return n >= 3" in flipped
    assert mutate_code(SCRIPT, FlipLuaComparison(), 2) is None  # only two comparisons
    for code in (deleted, flipped):
        compile(code, "<mutant>", "exec")


class _Item:
    def __init__(self, job_id: str, path: str) -> None:
        self.job_id = job_id
        self.mutations = [type("M", (), {"module_path": path})()]


def test_the_sample_is_spread_over_modules_and_seeded() -> None:
    items = [_Item(f"big{i}", "big.py") for i in range(90)]
    items += [_Item(f"small{i}", "small.py") for i in range(3)]
    chosen = _spread_sample(items, 6, seed=4)
    assert len(chosen) == 6
    assert sum(j.startswith("small") for j in chosen) == 3  # not crowded out by big.py
    assert chosen == _spread_sample(items, 6, seed=4)
    assert chosen != _spread_sample(items, 6, seed=5)


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(Path(system_under_test.__file__).parent, root / "system_under_test",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _judge(root: Path, runs: Path, *scenarios: str) -> tuple[int, dict[str, object]]:
    cmd = [sys.executable, "-m", "harness.mutation_check", "--target", "reference",
           "--source", str(root), "--runs", str(runs)]
    for name in scenarios:
        cmd += ["--scenario", name]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=240)
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_MARK), done.stderr[-2000:]
    return done.returncode, json.loads(last[len(RESULT_MARK):])


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_judge_passes_the_shipped_worker_and_kills_a_lost_event(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    code, found = _judge(root, tmp_path / "runs", "crash-mid-transcription")
    assert code == 0 and found["stopped_by"] is None
    # delete the XADD to the global event stream inside the scripts' shared emit
    lua = root / "system_under_test" / "lua.py"
    text = lua.read_text()
    wanted = "redis.call('XADD', KEYS[2], '*', unpack(fields))"
    occurrence = next(i for i in range(200)
                      if (m := mutate_code(text, DeleteRedisCall(), i)) is not None
                      and wanted not in m)
    mutated = mutate_code(text, DeleteRedisCall(), occurrence)
    assert mutated is not None
    lua.write_text(mutated)
    code, found = _judge(root, tmp_path / "runs", "crash-mid-transcription", "zombie-worker")
    stop = found["stopped_by"]
    assert code == 1 and isinstance(stop, dict)
    assert stop["scenario"] == "crash-mid-transcription" and stop["verdict"] == "invalid"
    assert [r["scenario"] for r in found["ran"]] == ["crash-mid-transcription"]  # stopped there
    assert Path(str(stop["run_dir"])).is_dir()  # the killing run is kept


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_session_judges_its_sample_resumes_and_refuses_other_choices(tmp_path: Path) -> None:
    source = ReferenceTarget().mutation_source()
    small = MutationSource(source.package, ("recovery.py", "lua.py"), ("baseline",))
    folder = tmp_path / "session"
    session = MutationSession(folder, "reference", small, sample=2, seed=3, budget_s=200)
    assert session.open(fresh=False) == 2
    session.baseline()
    seen: list[str] = []
    session.run(lambda n, total, row: seen.append(row.outcome))
    summary = session.summary()
    assert len(seen) == 2 and summary["done"] == 2
    assert sum(summary["counts"].values()) == 2 and set(seen) <= set(OUTCOMES)
    assert {m["file"] for m in summary["mutants"]} == {"recovery.py", "lua.py"}
    for m in summary["mutants"]:
        assert m["diff"].count("\n+") >= 1  # the change it judged
        if m["outcome"] == KILLED:
            assert m["detail"].startswith("baseline: ")
        if m["outcome"] == SURVIVED:
            assert m["scenarios_ran"] == ["baseline"]
    # the copy cosmic-ray mutated is back to the shipped code
    for name in small.files:
        assert (folder / "src" / "system_under_test" / name).read_text() == \
            (source.package / name).read_text()
    again = MutationSession(folder, "reference", small, sample=2, seed=3, budget_s=200)
    assert again.open(fresh=False) == 0  # resumed: nothing left to judge
    other = MutationSession(folder, "reference", small, sample=3, seed=3, budget_s=200)
    with pytest.raises(SetupError, match="sample"):
        other.open(fresh=False)
