"""RedisServer: a real redis-server that starts on loopback, dies by SIGKILL and restarts."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from harness.errors import MissingBinaryError, SetupError
from harness.procs import ProcessRegistry
from harness.services.redis_server import RedisServer

Factory = Callable[..., RedisServer]


@pytest.fixture
def make_server(tmp_path: Path, proc_registry: ProcessRegistry) -> Iterator[Factory]:
    servers: list[RedisServer] = []

    def make(aof: bool = False, port: int | None = None) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", aof=aof, port=port,
                             registry=proc_registry)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def test_started_server_answers_ping_on_its_loopback_url(make_server: Factory) -> None:
    server = make_server().start()

    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    with redis.Redis.from_url(server.url, socket_timeout=2) as client:
        assert client.ping() is True
    config = server.config_path.read_text()
    assert "bind 127.0.0.1\n" in config
    assert 'save ""\n' in config
    assert "appendonly no\n" in config


def test_client_decodes_strings_and_targets_this_server(make_server: Factory) -> None:
    server = make_server().start()
    client = server.client()

    client.set("greeting", "hello")

    assert client.get("greeting") == "hello"
    assert client.info("server")["process_id"] == server.pid


def test_running_server_is_listed_in_the_registry_until_stopped(
    make_server: Factory, proc_registry: ProcessRegistry, wait_gone: Callable[[int, float], bool]
) -> None:
    server = make_server().start()
    pid = server.pid
    assert (proc_registry.folder / f"{pid}.json").exists()

    server.stop()

    assert wait_gone(pid, 5.0)
    assert not (proc_registry.folder / f"{pid}.json").exists()


def test_kill9_without_aof_loses_writes_and_restart_reuses_port(make_server: Factory) -> None:
    server = make_server(aof=False).start()
    port, client = server.port, server.client()
    client.set("job:1", "claimed")

    server.kill9()
    assert not server.is_running()
    server.restart()

    assert server.port == port
    assert client.get("job:1") is None


def test_kill9_with_aof_keeps_writes_after_restart(make_server: Factory) -> None:
    server = make_server(aof=True).start()
    client = server.client()
    client.set("job:1", "claimed")
    client.rpush("queue", "a", "b")
    time.sleep(1.2)  # past one appendfsync everysec period

    server.kill9()
    server.restart()

    assert client.get("job:1") == "claimed"
    assert client.lrange("queue", 0, -1) == ["a", "b"]
    assert "appendfsync everysec\n" in server.config_path.read_text()


def test_flush_removes_every_key(make_server: Factory) -> None:
    server = make_server().start()
    client = server.client()
    client.set("a", "1")
    client.set("b", "2")

    server.flush()

    assert client.dbsize() == 0


def test_context_manager_stops_the_server(
    make_server: Factory, wait_gone: Callable[[int, float], bool]
) -> None:
    with make_server() as server:
        pid = server.pid
        assert server.client().ping() is True

    assert wait_gone(pid, 5.0)


def test_port_taken_by_another_process_is_a_setup_error(make_server: Factory) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = make_server(port=taken.getsockname()[1])

        with pytest.raises(SetupError, match="already in use"):
            server.start()
    assert not server.is_running()


def test_missing_redis_server_binary_says_how_to_install(
    make_server: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    with pytest.raises(MissingBinaryError) as raised:
        make_server().start()

    assert raised.value.binary == "redis-server"
    assert "apt-get install redis-server" in str(raised.value)
