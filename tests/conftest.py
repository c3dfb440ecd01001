"""Shared fixtures: real servers, started once, cleaned up always.

A test that needs a binary that is missing fails with the install hint
(``SetupError``); nothing here skips, in CI or anywhere else.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.environment import Environment, EnvironmentOptions
from harness.packs.reference.target import ReferenceTarget
from harness.procs import ProcessRegistry
from harness.runtime.process import ProcessRuntime
from harness.services.redis_server import RedisServer

# fast leases so recovery tests do not wait long for a dead worker's lease
FAST_WORKER = {"lease_ttl_ms": "1000", "heartbeat_ms": "200", "chunk_seconds": "1.0",
               "chunk_concurrency": "1", "poll_interval_ms": "20"}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ProcessRegistry:
    return ProcessRegistry(tmp_path_factory.mktemp("registry"))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory,
                 registry: ProcessRegistry) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), registry=registry).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_db(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A clean database on the session's real redis-server."""
    client = redis_server.client()
    client.flushall()
    try:
        yield client
    finally:
        client.close()


class ReferenceWorld:
    """An Environment for the reference worker, reset between tests."""

    def __init__(self, run_dir: Path, registry: ProcessRegistry) -> None:
        self.runtime = ProcessRuntime(run_dir, registry)
        self.env = Environment(run_dir, ReferenceTarget(), self.runtime, registry=registry,
                               options=EnvironmentOptions(worker_settings=dict(FAST_WORKER)))

    def reset(self) -> None:
        self.runtime.stop_all(grace=2.0)
        self.env.proxy.heal() if self.env.proxy is not None else None
        self.env.target.reset(self.env.client)
        self.env.transcription.reset()
        self.env.jobs.clear()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory,
          registry: ProcessRegistry) -> Iterator[ReferenceWorld]:
    world = ReferenceWorld(tmp_path_factory.mktemp("world"), registry)
    world.env.start()
    try:
        yield world
    finally:
        world.env.close()


@pytest.fixture
def env(world: ReferenceWorld) -> Iterator[Environment]:
    world.reset()
    yield world.env
    world.runtime.stop_all(grace=2.0)
