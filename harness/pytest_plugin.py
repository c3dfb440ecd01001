"""crashlab as a pytest plugin: chaos tests in your own test suite.

Installing crashlab registers this module with pytest (entry point
``pytest11: crashlab``), so nothing needs enabling; ``-p no:crashlab`` turns
it off. It gives you:

* markers ``chaos``, ``slow`` and ``docker``, declared for you (``--strict-markers``
  accepts them without an ini entry; declaring them yourself as well is fine);
* options ``--crashlab-runs DIR`` (where run folders go, relative to the current
  directory; default a temporary directory per session, under pytest's
  ``--basetemp``) and ``--crashlab-seed N`` (the seed ``crashlab_run`` uses
  when a test gives none; default 1);
* the fixtures below. Everything they start is stopped when the test (or the
  session) ends, whether it passed, failed or was interrupted.

Fixtures
--------

``crashlab_target`` (session)
    The worker under attack: ``ReferenceTarget()`` unless you override it. To
    attack your own worker, override it in your ``conftest.py`` with an object
    that implements ``harness.target.Target``.

``crashlab_worker_settings`` (function)
    A dict of worker settings for ``crashlab_env``, laid over the scenario
    defaults (``harness.scenario.DEFAULT_SETTINGS``: ``lease_ttl_ms``,
    ``heartbeat_ms``, ``chunk_seconds``, ...); values may be numbers. Default: ``{}``.

``crashlab_registry`` (session)
    The process registry in crashlab's state directory (``$CRASHLAB_STATE_DIR``,
    default ``./.crashlab``), after killing whatever a SIGKILLed earlier
    session left running.

``crashlab_runs_dir`` (session)
    The folder run folders go in (``--crashlab-runs``, or a temporary one).

``crashlab_env`` (function)
    A started ``harness.environment.Environment`` of its own for each test:
    a fresh Redis behind Toxiproxy, the transcription service and the
    target's API, no workers yet. Start workers with ``start_worker``, submit
    jobs with ``submit``, kill through ``runtime``, read state with
    ``snapshot`` and ``events``. Its logs are in its run folder under
    ``crashlab_runs_dir``; it is closed after the test. A fresh environment
    costs about a second and needs no resetting, so tests cannot leak into
    each other.

``crashlab_run`` (function)
    ``crashlab_run(scenario, seed=None) -> RunResult`` runs one scenario end to
    end (``harness.runner.run_scenario``) against ``crashlab_target``. The
    scenario is a catalog name (``crashlab list``), a path to a YAML file
    (a relative path is looked up from the current directory, then from the
    test file's directory) or a ``harness.scenario.Scenario``. It uses the
    scenario's own worker settings, not ``crashlab_worker_settings``.
    ``crashlab_run.assert_valid(result)`` (or ``assert_valid`` from this
    module) fails the test listing every checker that is not valid, with
    its witness. The run's judgement is returned, not asserted: a test can
    also expect a violation.

``crashlab_chaos_machine`` (function)
    The stateful chaos machine (``harness.explore.stateful``) over
    ``crashlab_target``: a Hypothesis ``RuleBasedStateMachine`` class whose
    steps submit jobs, SIGKILL and restart workers, sever and heal Redis,
    corrupt chunk files and wait for quiescence, with the invariants checked
    on Redis after every step. Its services start once for the test and are
    reset for each example. Run it with
    ``hypothesis.stateful.run_state_machine_as_test(crashlab_chaos_machine,
    settings=settings(max_examples=3, stateful_step_count=8, deadline=None))``;
    a broken invariant fails the test with the shrunk sequence of steps.

When a test that used ``crashlab_env`` or ``crashlab_run`` fails, its report
gets a "crashlab run folders" section naming the folders to look at (and to
``crashlab replay``).

Example
-------

``conftest.py``, plugging in your own worker::

    import pytest
    from harness.packs.reference.target import ReferenceTarget

    # Same API, Redis layout and failpoints as the reference worker, another command;
    # a worker that differs more implements harness.target.Target in full.
    class MyTarget(ReferenceTarget):
        name = "my-worker"

        def worker_argv(self):
            return ["python", "-m", "my_worker"]

    @pytest.fixture(scope="session")
    def crashlab_target():
        return MyTarget()

    @pytest.fixture
    def crashlab_worker_settings():
        return {"lease_ttl_ms": 500}

``test_chaos.py``::

    import signal

    import pytest

    pytestmark = [pytest.mark.chaos, pytest.mark.slow]

    def test_recovers_after_a_kill(crashlab_run):
        result = crashlab_run("crash-after-transcription")
        crashlab_run.assert_valid(result)

    def test_my_own_scenario(crashlab_run):
        result = crashlab_run("scenarios/lost-lease.yaml", seed=7)
        crashlab_run.assert_valid(result)

    def test_killed_after_a_commit(crashlab_env):
        worker = crashlab_env.start_worker("w", failpoints="chunk.committed=1*pause")
        job = crashlab_env.submit(seed=1, seconds=4)
        assert worker.control.wait_for_hit("chunk.committed", timeout=30) is not None
        crashlab_env.runtime.kill(worker.handle, signal.SIGKILL)
        crashlab_env.start_worker("w")
        assert crashlab_env.wait_terminal(timeout=60)
        final = crashlab_env.snapshot(job.job_id)
        assert final.state == "COMPLETED"
        assert final.transcript == job.expected_transcript
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

# The plugin is loaded into every pytest session of an environment where
# crashlab is installed; the harness (Redis client, httpx, pydantic models)
# is imported only when a test asks for one of its fixtures.
if TYPE_CHECKING:
    from hypothesis.stateful import RuleBasedStateMachine

    from harness.environment import Environment
    from harness.procs import ProcessRegistry
    from harness.runner import RunResult
    from harness.scenario import Scenario
    from harness.target import Target

log = logging.getLogger(__name__)

MARKERS = {
    "chaos": "runs fault scenarios against a real worker (crashlab)",
    "slow": "takes more than a few seconds (real worker processes, real kills)",
    "docker": "needs a Docker engine",
}

_RUN_DIRS = pytest.StashKey[list[Path]]()

# -- hooks -------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crashlab", "crashlab chaos tests")
    group.addoption("--crashlab-runs", metavar="DIR", default=None,
                    help="folder for crashlab run folders (default: a temporary folder "
                         "per session)")
    group.addoption("--crashlab-seed", metavar="N", type=int, default=1,
                    help="seed crashlab_run uses when a test gives none (default: 1)")


def pytest_configure(config: pytest.Config) -> None:
    declared = {_marker_name(line) for line in config.getini("markers")}
    for name, description in MARKERS.items():
        if name not in declared:  # a project that declares them keeps its wording
            config.addinivalue_line("markers", f"{name}: {description}")


def _marker_name(line: str) -> str:
    return line.split(":", 1)[0].split("(", 1)[0].strip()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None],
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    folders = item.stash.get(_RUN_DIRS, [])
    if report.failed and folders:
        report.sections.append(("crashlab run folders",
                                "\n".join(str(folder) for folder in folders)))
    return report


def _remember(node: pytest.Item, run_dir: Path) -> None:
    node.stash.setdefault(_RUN_DIRS, []).append(run_dir)


# -- fixtures ----------------------------------------------------------------


@pytest.fixture(scope="session")
def crashlab_target() -> Target:
    """The worker under attack (the ``[tool.crashlab]`` target, else the reference
    pack); override this fixture to plug in your own."""
    from harness.packs_registry import load_target

    return load_target()


@pytest.fixture
def crashlab_worker_settings() -> Mapping[str, object]:
    """Worker settings ``crashlab_env`` lays over the scenario defaults."""
    return {}


@pytest.fixture(scope="session")
def crashlab_registry() -> ProcessRegistry:
    """The process registry in crashlab's state directory, leftovers reaped first."""
    from harness.cleanup import process_registry, reap_leftovers
    from harness.procs import default_state_dir

    state_dir = default_state_dir()
    for leftover in reap_leftovers(state_dir):
        log.warning("crashlab removed a leftover of an interrupted run: %s", leftover)
    return process_registry(state_dir)


@pytest.fixture(scope="session")
def crashlab_runs_dir(request: pytest.FixtureRequest,
                      tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where run folders go: ``--crashlab-runs``, or a temporary folder per session."""
    option = request.config.getoption("crashlab_runs")
    if option is None:
        return tmp_path_factory.mktemp("crashlab-runs")
    folder = Path(option).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def crashlab_env(request: pytest.FixtureRequest, crashlab_target: Target,
                 crashlab_registry: ProcessRegistry, crashlab_runs_dir: Path,
                 crashlab_worker_settings: Mapping[str, object]) -> Iterator[Environment]:
    """A started Environment of this test's own (services and API, no workers)."""
    from harness.cleanup import Cleanup
    from harness.environment import Environment, EnvironmentOptions
    from harness.runfolder import new_run_dir
    from harness.runtime.process import ProcessRuntime
    from harness.scenario import DEFAULT_SETTINGS

    settings = {**DEFAULT_SETTINGS,
                **{str(k): str(v) for k, v in crashlab_worker_settings.items()}}
    run_dir = new_run_dir(request.node.name, crashlab_runs_dir)
    _remember(request.node, run_dir)
    with Cleanup() as cleanup:
        runtime = ProcessRuntime(run_dir, crashlab_registry)
        env = Environment(run_dir, crashlab_target, runtime, registry=crashlab_registry,
                          options=EnvironmentOptions(worker_settings=settings))
        cleanup.callback(env.close, "environment")
        env.start()
        yield env


@pytest.fixture
def crashlab_chaos_machine(request: pytest.FixtureRequest, crashlab_target: Target,
                           crashlab_registry: ProcessRegistry,
                           crashlab_runs_dir: Path) -> Iterator[type[RuleBasedStateMachine]]:
    """The stateful chaos machine over ``crashlab_target``, its services up for this test."""
    from harness.explore.stateful import ChaosSession, machine_for
    from harness.runfolder import new_run_dir

    run_dir = new_run_dir(request.node.name, crashlab_runs_dir)
    _remember(request.node, run_dir)
    with ChaosSession(run_dir, crashlab_registry, crashlab_target) as chaos:
        yield machine_for(chaos)


class CrashlabRun:
    """``crashlab_run(scenario, seed=None)``: run a scenario, return its ``RunResult``."""

    def __init__(self, node: pytest.Item, target: Target, registry: ProcessRegistry,
                 runs_dir: Path, default_seed: int) -> None:
        self.node = node
        self.target = target
        self.registry = registry
        self.runs_dir = runs_dir
        self.default_seed = default_seed
        self.results: list[RunResult] = []

    def __call__(self, scenario: str | os.PathLike[str] | Scenario,
                 seed: int | None = None) -> RunResult:
        from harness.runner import run_scenario

        resolved = self.resolve(scenario)
        result = run_scenario(resolved, seed=self.default_seed if seed is None else seed,
                              registry=self.registry, runs_root=self.runs_dir,
                              target=self.target,
                              progress=lambda message: log.info("%s: %s", resolved.name,
                                                                message))
        _remember(self.node, result.run_dir)
        self.results.append(result)
        return result

    def resolve(self, scenario: str | os.PathLike[str] | Scenario) -> Scenario:
        """A Scenario from a catalog name, a file (cwd first, then the test's folder)."""
        from harness.scenario import Scenario, resolve

        if isinstance(scenario, Scenario):
            return scenario
        text = os.fspath(scenario)
        path = Path(text)
        beside_test = self.node.path.parent / path
        if not path.is_absolute() and not path.exists() and beside_test.is_file():
            text = str(beside_test)
        return resolve(text)

    @staticmethod
    def assert_valid(result: RunResult) -> None:
        assert_valid(result)


@pytest.fixture
def crashlab_run(request: pytest.FixtureRequest, crashlab_target: Target,
                 crashlab_registry: ProcessRegistry, crashlab_runs_dir: Path) -> CrashlabRun:
    """``crashlab_run(scenario, seed=None) -> RunResult``; see ``CrashlabRun``."""
    node = request.node
    assert isinstance(node, pytest.Item)
    return CrashlabRun(node, crashlab_target, crashlab_registry, crashlab_runs_dir,
                       request.config.getoption("crashlab_seed"))


# -- judging -----------------------------------------------------------------


def failure_message(result: RunResult) -> str | None:
    """Every checker that is invalid or unknown, with its witness and details; None if
    none is (a ``not_applicable`` checker had nothing to judge: no failure)."""
    bad = [check for check in result.checks
           if check.verdict in ("invalid", "unknown")]
    if not bad:
        return None
    lines = [f"crashlab: scenario {result.scenario!r} (seed {result.seed}) is "
             f"{result.verdict}: {len(bad)} of {len(result.checks)} checker(s) invalid or unknown",
             f"run folder: {result.run_dir}", f"replay: crashlab replay {result.run_dir}"]
    for check in bad:
        lines.append(f"  {check.checker}: {check.verdict}: {check.witness}")
        first = f"{check.verdict}: {check.witness}"
        lines.extend(f"      {detail}" for detail in check.details if detail != first)
    return "\n".join(lines)


def assert_valid(result: RunResult) -> None:
    """Fail the test unless every checker of ``result`` is valid, naming each one that is not."""
    message = failure_message(result)
    if message is not None:
        pytest.fail(message, pytrace=False)


__all__ = ["MARKERS", "CrashlabRun", "assert_valid", "failure_message"]
