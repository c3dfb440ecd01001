"""The pytest plugin as a user's suite meets it.

Each test writes a small user suite into a pytester folder (no ini file, so
nothing is declared there) and runs pytest on it in a subprocess, where the
plugin arrives through its ``pytest11`` entry point alone. The user suites
start real services and real workers; the state directory of each is its
own, and every test checks that the inner run left no process registered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

INNER_TIMEOUT = 240.0


@pytest.fixture
def state_dir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The inner session's crashlab state directory (registry of live children)."""
    folder = pytester.path / "crashlab-state"
    monkeypatch.setenv("CRASHLAB_STATE_DIR", str(folder))
    return folder


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # -W error: the plugin must not warn in a suite that turns warnings into errors
    return pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", *args,
                                         timeout=INNER_TIMEOUT)


def assert_nothing_left(state_dir: Path) -> None:
    procs = state_dir / "procs"
    assert procs.is_dir(), "the inner run never registered a process"
    assert sorted(p.name for p in procs.glob("*.json")) == []


def test_crashlab_run_passes_a_valid_catalog_scenario(pytester: pytest.Pytester,
                                                      state_dir: Path) -> None:
    pytester.makepyfile(test_user="""
        import pytest
        from harness.pytest_plugin import assert_valid

        @pytest.mark.chaos
        def test_recovers_after_a_kill(crashlab_run):
            result = crashlab_run("crash-after-transcription")
            assert result.scenario == "crash-after-transcription"
            assert result.seed == 7
            assert (result.faults_planned, result.faults_fired) == (1, 1)
            crashlab_run.assert_valid(result)
            assert_valid(result)
    """)
    runs = pytester.path / "my-runs"
    result = run(pytester, "--crashlab-runs", str(runs), "--crashlab-seed", "7")
    result.assert_outcomes(passed=1)
    folders = [p for p in runs.iterdir() if p.is_dir() and not p.is_symlink()]
    assert len(folders) == 1, folders
    stored = json.loads((folders[0] / "results.json").read_text())
    assert (stored["scenario"], stored["seed"], stored["verdict"]) == (
        "crash-after-transcription", 7, "valid")
    assert_nothing_left(state_dir)


def test_crashlab_env_kills_a_worker_at_a_failpoint(pytester: pytest.Pytester,
                                                    state_dir: Path) -> None:
    pytester.makeconftest("""
        import pytest
        from harness.packs.reference.target import ReferenceTarget

        class UserTarget(ReferenceTarget):
            name = "user-target"

        @pytest.fixture(scope="session")
        def crashlab_target():
            return UserTarget()

        @pytest.fixture
        def crashlab_worker_settings():
            return {"chunk_seconds": 2}
    """)
    pytester.makepyfile(test_user="""
        import signal

        import pytest

        pytestmark = pytest.mark.chaos

        def test_killed_after_a_commit_then_replaced(crashlab_env):
            assert crashlab_env.target.name == "user-target"
            worker = crashlab_env.start_worker("w", failpoints="chunk.committed=1*pause")
            job = crashlab_env.submit(seed=3, seconds=4)
            hit = worker.control.wait_for_hit("chunk.committed", timeout=30)
            assert hit is not None and hit.job == job.job_id
            crashlab_env.runtime.kill(worker.handle, signal.SIGKILL)
            assert crashlab_env.runtime.wait(worker.handle, 10) == -signal.SIGKILL
            crashlab_env.start_worker("w")
            assert crashlab_env.wait_terminal(timeout=60)
            final = crashlab_env.snapshot(job.job_id)
            assert final.state == "COMPLETED", final.error
            assert final.transcript == job.expected_transcript
            assert final.retry_count == 1
            assert final.chunk_count == 2  # 4 s in chunks of 2 s: the settings override

        def test_each_test_gets_a_fresh_environment(crashlab_env):
            assert crashlab_env.target.job_ids(crashlab_env.client) == []
            assert crashlab_env.workers == {}

        def test_a_failure_names_the_run_folder(crashlab_env):
            crashlab_env.start_worker("w")
            assert False, "user assertion"
    """)
    runs = pytester.path / "env-runs"
    result = run(pytester, "--crashlab-runs", str(runs))
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*- crashlab run folders -*",
                                 f"{runs}/*test_a_failure_names_the_run_folder*"])
    logs = sorted(p.name for p in runs.glob("*test_killed_after_a_commit*/logs/*.log"))
    assert {"api.log", "w.log", "w.2.log"} <= set(logs), logs
    assert_nothing_left(state_dir)


def test_markers_are_declared_for_strict_markers(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.chaos
        @pytest.mark.slow
        @pytest.mark.docker
        def test_marked():
            pass
    """)
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    # without the plugin the same file is rejected: the plugin is what declares them
    without = run(pytester, "--strict-markers", "-p", "no:crashlab")
    assert without.ret != 0
    without.stdout.fnmatch_lines(["*'chaos' not found in `markers` configuration option*"])


def test_markers_declared_by_the_project_too_are_listed_once(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("""
        [pytest]
        markers =
            chaos: the project's own wording
    """)
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.chaos
        @pytest.mark.docker
        def test_marked():
            pass
    """)
    run(pytester, "--strict-markers").assert_outcomes(passed=1)
    listed = run(pytester, "--markers").stdout.lines
    chaos = [line for line in listed if line.startswith("@pytest.mark.chaos:")]
    assert chaos == ["@pytest.mark.chaos: the project's own wording"]
    assert len([line for line in listed if line.startswith("@pytest.mark.docker:")]) == 1


def test_a_broken_invariant_fails_the_test_with_its_witness(pytester: pytest.Pytester,
                                                            state_dir: Path) -> None:
    suite = pytester.mkpydir("suite")
    # beside the test file, not in the current directory: crashlab_run looks there too
    (suite / "impossible.yaml").write_text(
        "name: impossible-retries\n"
        "description: one kill, yet five retries expected; cannot hold.\n"
        "workload: {jobs: 1, media_seconds: 3}\n"
        "faults:\n"
        "  - {kind: kill_at_phase, point: chunk.committed, occurrence: 1}\n"
        "expect: {retry_count: 5}\n")
    (suite / "test_user.py").write_text(
        "def test_impossible(crashlab_run):\n"
        "    result = crashlab_run('impossible.yaml')\n"
        "    assert result.faults_fired == 1\n"
        "    crashlab_run.assert_valid(result)\n")
    result = run(pytester, "suite")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*crashlab: scenario 'impossible-retries' (seed 1) is invalid: "
        "1 of * checker(s) invalid or unknown*",
        "*retry_accounting: invalid: job * ended with retry_count 1; "
        "the scenario expects 5*",
        "*- crashlab run folders -*",
    ])
    assert_nothing_left(state_dir)
