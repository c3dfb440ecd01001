"""``crashlab explore --example-db redis://...``: explorers that share one Redis database.

Two real explorer processes and one real redis-server: a failure the first
one finds and saves is the second one's first example.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

import scenarios
from harness.errors import SetupError
from harness.explore.database import check_url, open_database, shown
from harness.ports import free_port
from harness.services.redis_server import RedisServer

CRASHLAB = str(Path(sys.executable).parent / "crashlab")
# the catalog's baseline as a file: a target given as module:attr has no catalog of its own
BASELINE = str(Path(scenarios.__file__).parent / "baseline.yaml")
FACTORY = '''
from harness.packs.reference.mutants import mutant_target


def planted():
    return mutant_target("resume-offset-off-by-one")
'''


def test_only_a_redis_url_is_taken_and_its_password_is_never_shown(tmp_path: Path) -> None:
    assert check_url("redis://127.0.0.1:6379/2") == "redis://127.0.0.1:6379/2"
    for bad in ("127.0.0.1:6379", "http://host/0", "redis://"):
        with pytest.raises(SetupError, match="--example-db"):
            check_url(bad)
    assert shown("redis://:s3cret@host:1/0") == "redis://:***@host:1/0"
    # nothing listens there: a setup error naming the option, without the password
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    with pytest.raises(SetupError, match="no Redis answers") as raised:
        open_database(url, tmp_path)
    assert "s3cret" not in str(raised.value)


def test_a_bad_example_db_is_a_setup_error_of_the_cli(tmp_path: Path) -> None:
    done = subprocess.run([CRASHLAB, "explore", "baseline", "--example-db", "localhost:6379"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / "state")})
    assert done.returncode == 3 and "--example-db" in done.stderr


def explore(tmp_path: Path, name: str, url: str, seed: int) -> dict[str, Any]:
    env = {**os.environ, "CRASHLAB_STATE_DIR": str(tmp_path / name / "state"),
           "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([CRASHLAB, "explore", BASELINE, "--examples", "40", "--seed",
                           str(seed), "--max-workers", "1", "--target", "planted_bug:planted",
                           "--example-db", url, "--runs", str(tmp_path / name / "runs"),
                           "--json"], capture_output=True, text=True, timeout=900, env=env,
                          cwd=tmp_path)
    assert done.returncode == 1, done.stderr[-3000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary


def faults(run_dir: str | Path) -> list[dict[str, Any]]:
    stored = json.loads((Path(run_dir) / "schedule.json").read_text())
    return list(stored["scenario"]["faults"])


@pytest.mark.slow
@pytest.mark.chaos
@pytest.mark.timeout(1200)
def test_a_failure_saved_by_one_explorer_is_the_next_ones_first_example(
        tmp_path: Path, redis_server: RedisServer) -> None:
    (tmp_path / "planted_bug.py").write_text(FACTORY)
    url = redis_server.url.rsplit("/", 1)[0] + "/5"  # a database of its own
    shared = redis.Redis.from_url(url)
    shared.flushdb()
    first = explore(tmp_path, "machine-a", url, seed=3)
    assert first["verdict"] == "invalid"
    assert first["examples_to_first_failure"] > 1  # else the replay below proves nothing
    saved = list(shared.keys("hypothesis-example:*"))
    assert saved, "the first explorer saved nothing in the shared database"
    # another machine (its own state dir, its own services) runs the same command: on
    # its own it would search exactly as the first did; it starts with the saved failure
    second = explore(tmp_path, "machine-b", url, seed=3)
    assert second["examples_to_first_failure"] == 1
    firsts = sorted((Path(second["folder"]) / "examples").glob("*-x1"))
    assert faults(firsts[0]) == faults(first["counterexample"]["run_dir"])
