"""The one run lifecycle: the hooks come in order, and a hook that fails still tears down."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from harness.debug import DebugSession
from harness.faults import Fault
from harness.procs import ProcessRegistry
from harness.runner import Run, RunHooks
from harness.scenario import parse_scenario

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCENARIO = parse_scenario(
    "name: hooked\ndescription: one short job, one kill\nworkload: {media_seconds: 2}\n"
    "faults:\n  - {kind: kill_at_phase, point: chunk.committed, occurrence: 1}\n",
    "hooked.yaml")


class Recording(RunHooks):
    """The default hooks, noting each call; ``fail_in`` makes one of them raise."""

    def __init__(self, fail_in: str | None = None) -> None:
        super().__init__()
        self.calls: list[str] = []
        self.fail_in = fail_in
        self.pids: list[int] = []

    def _note(self, name: str) -> None:
        self.calls.append(name)
        if name == self.fail_in:
            raise RuntimeError(f"planted failure in {name}")

    def plan_faults(self, run: Run) -> list[Fault]:
        self._note("plan_faults")
        return super().plan_faults(run)

    def opened(self, run: Run) -> None:
        self._note("opened")

    def before_workers(self, run: Run) -> None:
        self._note("before_workers")
        super().before_workers(run)

    def drive(self, run: Run) -> str:
        self.pids = [run.env.runtime.pid(w.handle) or 0 for w in run.env.live_workers()]
        self._note("drive")
        return super().drive(run)

    def hold(self, run: Run) -> None:
        self._note("hold")


def test_the_hooks_are_called_in_the_lifecycle_order(tmp_path: Path,
                                                     registry: ProcessRegistry) -> None:
    hooks = Recording()
    result = Run(SCENARIO, seed=3, registry=registry, runs_root=tmp_path, hooks=hooks).execute()
    assert hooks.calls == ["plan_faults", "opened", "before_workers", "drive", "hold"]
    assert (result.faults_planned, result.faults_fired) == (1, 1)
    assert str(result.verdict) == "valid", [c.witness for c in result.checks]


def test_a_hook_that_raises_still_stops_every_process(tmp_path: Path,
                                                      registry: ProcessRegistry) -> None:
    hooks = Recording(fail_in="drive")
    with pytest.raises(RuntimeError, match="planted failure in drive"):
        Run(SCENARIO, seed=3, registry=registry, runs_root=tmp_path, hooks=hooks).execute()
    assert hooks.pids and all(pid > 0 for pid in hooks.pids)
    assert not [pid for pid in hooks.pids if psutil.pid_exists(pid)
                and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_debug_is_the_same_lifecycle_with_its_own_hooks() -> None:
    assert issubclass(DebugSession, RunHooks)
    overridden = {name for name in ("plan_faults", "environment", "before_workers", "drive",
                                    "expectations", "counted")
                  if getattr(DebugSession, name) is not getattr(RunHooks, name)}
    assert overridden == {"plan_faults", "environment", "before_workers", "drive",
                          "expectations", "counted"}
