"""Fault kinds and checkers register themselves: a new one is one file, found by the core.

The outside pack here is a real distribution on ``sys.path`` (a folder with
its ``.dist-info`` and entry points), imported by a fresh interpreter, the
way an installed third-party pack is found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.checkers import registered, suite
from harness.errors import SetupError
from harness.faults import FAULT_KINDS, fault_colour
from harness.faults.registry import FaultSpecModel, fault_kind, kinds

FAULT_MODULE = '''
"""A fault kind of an outside pack."""
from typing import Any, Literal
from harness.faults.registry import FaultSpecModel, fault_kind

class NudgeSpec(FaultSpecModel):
    kind: Literal["nudge"]
    strength: int = 1

@fault_kind(NudgeSpec, colour="#123456")
class Nudge:
    def __init__(self, fault_id: str, spec: NudgeSpec) -> None:
        self.fault_id, self.spec = fault_id, spec
    def describe(self) -> dict[str, Any]:
        return self.spec.model_dump()
'''

CHECKER_MODULE = '''
"""A checker of an outside pack."""
from harness.checkers.base import CheckResult, Verdict
from harness.checkers.registry import checker

@checker(suite="nudges", rank=7)
class NudgesFelt:
    name = "nudges_felt"
    def check(self, history, state, expectations):
        return CheckResult(self.name, Verdict.VALID, "felt")
'''

PROBE = '''
import json
from harness.checkers import suite
from harness.faults import FAULT_KINDS, build_fault, fault_colour
from harness.scenario import parse_scenario
text = "name: n\\ndescription: d\\nfaults: [{kind: nudge, strength: 3}]"
scenario = parse_scenario(text, "n.yaml")
fault = build_fault("f1", scenario.faults[0])
print(json.dumps({"kinds": list(FAULT_KINDS), "colour": fault_colour("nudge"),
                  "built": type(fault).__name__, "described": fault.describe(),
                  "suite": [c.name for c in suite("nudges")]}))
'''


def outside_pack(root: Path, entry_points: str) -> Path:
    package = root / "nudgepack"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""An outside pack."""\n')
    (package / "nudge.py").write_text(FAULT_MODULE)
    (package / "felt.py").write_text(CHECKER_MODULE)
    info = root / "nudgepack-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nudgepack\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    return root


def probe(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120,
                          check=False)


def test_a_pack_brings_a_fault_kind_and_a_checker_in_one_file_each(tmp_path: Path) -> None:
    root = outside_pack(tmp_path, """
        [crashlab.faults]
        nudges = nudgepack.nudge

        [crashlab.checkers]
        nudges = nudgepack
    """)
    done = probe(root)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert "nudge" in seen["kinds"] and "kill_at_phase" in seen["kinds"]
    assert seen["colour"] == "#123456"
    assert seen["built"] == "Nudge" and seen["described"] == {"kind": "nudge", "strength": 3}
    assert seen["suite"] == ["nudges_felt"]


def test_an_entry_point_whose_module_does_not_import_is_a_setup_error(tmp_path: Path) -> None:
    root = outside_pack(tmp_path, """
        [crashlab.faults]
        broken = nudgepack.not_there
    """)
    done = probe(root)
    assert done.returncode != 0
    assert "crashlab.faults entry point 'broken'" in done.stderr
    assert "nudgepack.not_there" in done.stderr and "reinstall" in done.stderr


def test_every_core_fault_module_registers_its_kinds() -> None:
    folder = Path(kinds()["kill_at_phase"].module.replace(".", "/")).parent
    modules = {k.module.rsplit(".", 1)[1] for k in kinds().values()
               if k.module.startswith("harness.faults.")}
    files = {p.stem for p in (Path(__file__).parents[2] / folder).glob("*.py")}
    assert files - modules == {"__init__", "base", "registry"}
    assert FAULT_KINDS == tuple(sorted(FAULT_KINDS))
    assert fault_colour("sever_redis") != fault_colour("no_such_kind")


def test_the_suites_hold_what_the_packs_are_judged_by() -> None:
    assert [c.name for c in suite("queue")] == [
        "jobs_settled", "none_lost", "effects_per_promise", "recovery_bounded",
        "retries_within_max"]
    assert {registered()[name].suite for name in ("fault_coverage", "transcript_exact")} \
        == {"faults", "reference"}
    with pytest.raises(SetupError, match="no checker suite named 'nope'"):
        suite("queue", "nope")
    mixed = [c.name for c in suite("faults", extra=("none_lost",))]
    assert mixed == ["none_lost", "fault_coverage"]
    with pytest.raises(SetupError, match="no checker named 'nope'"):
        suite("faults", extra=("nope",))


def test_a_kind_registered_twice_by_two_modules_is_refused() -> None:
    class TwiceSpec(FaultSpecModel):
        kind: str = "sever_redis"

    with pytest.raises(SetupError, match="one literal string"):
        fault_kind(TwiceSpec)

    from typing import Literal

    class SeverAgainSpec(FaultSpecModel):
        kind: Literal["sever_redis"]

    class SeverAgain:
        pass

    with pytest.raises(SetupError, match="registered twice"):
        fault_kind(SeverAgainSpec)(SeverAgain)
