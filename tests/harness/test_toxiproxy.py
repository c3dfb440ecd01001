"""Toxiproxy between a Redis client and a real redis-server: sever, heal, latency, resets."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.errors import MissingBinaryError
from harness.services.redis_server import RedisServer
from harness.services.toxiproxy import Proxy, ToxiproxyError, ToxiproxyServer

_names = itertools.count(1)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def toxiproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ToxiproxyServer]:
    server = ToxiproxyServer(tmp_path_factory.mktemp("toxiproxy"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def proxy(toxiproxy: ToxiproxyServer, upstream: RedisServer) -> Iterator[Proxy]:
    proxy = toxiproxy.create_proxy(f"redis-{next(_names)}", upstream.port)
    yield proxy
    proxy.delete()


def direct(proxy: Proxy, timeout: float = 2.0) -> redis.Redis:
    """A client through the proxy that fails at once instead of retrying."""
    return redis.Redis(host="127.0.0.1", port=proxy.listen_port, decode_responses=True,
                       socket_timeout=timeout, socket_connect_timeout=1.0,
                       retry=Retry(NoBackoff(), 0))


def test_server_reports_its_version(toxiproxy: ToxiproxyServer) -> None:
    assert toxiproxy.version() != ""
    assert toxiproxy.api_url == f"http://127.0.0.1:{toxiproxy.api_port}"


def test_commands_through_the_proxy_reach_the_upstream_redis(
    proxy: Proxy, upstream: RedisServer
) -> None:
    assert proxy.url_for_redis() == f"redis://127.0.0.1:{proxy.listen_port}/0"
    assert proxy.listen_port != upstream.port
    with redis.Redis.from_url(proxy.url_for_redis(), decode_responses=True) as client:
        assert client.ping() is True
        client.set("via-proxy", "yes")

    assert upstream.client().get("via-proxy") == "yes"


def test_disable_severs_open_connections_and_refuses_new_ones(proxy: Proxy) -> None:
    client = direct(proxy)
    assert client.ping() is True

    proxy.disable()

    assert proxy.is_enabled() is False
    with pytest.raises(redis.ConnectionError):
        client.ping()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=1.0).close()
    client.close()


def test_enable_after_disable_serves_again_on_the_same_port(proxy: Proxy) -> None:
    port = proxy.listen_port
    proxy.disable()

    proxy.enable()

    assert proxy.is_enabled() is True
    assert proxy.listen_port == port
    with direct(proxy) as client:
        assert client.ping() is True


def test_latency_toxic_delays_every_reply(proxy: Proxy) -> None:
    with direct(proxy) as client:
        client.ping()  # connection set up before the toxic

        toxic = proxy.add_latency(300)
        started = time.monotonic()
        client.ping()
        elapsed = time.monotonic() - started

    assert elapsed >= 0.3
    assert (toxic.type, toxic.stream, toxic.attributes["latency"]) == ("latency", "downstream", 300)
    assert [t.name for t in proxy.toxics()] == ["latency_downstream"]


def test_reset_peer_toxic_makes_commands_fail_with_a_connection_error(proxy: Proxy) -> None:
    proxy.add_reset_peer()

    with direct(proxy) as client, pytest.raises(redis.ConnectionError):
        client.ping()


def test_timeout_toxic_swallows_commands_until_the_client_times_out(proxy: Proxy) -> None:
    with direct(proxy, timeout=0.3) as client:
        client.ping()
        proxy.add_timeout(0)

        with pytest.raises(redis.TimeoutError):
            client.ping()


def test_limit_data_downstream_loses_the_reply_of_a_command_redis_applied(
    proxy: Proxy, upstream: RedisServer
) -> None:
    with direct(proxy) as client:
        client.set("counter", 1)
        before = proxy.bytes_counted().get("downstream", (0, 0))
        proxy.add_limit_data(0, stream="downstream")

        with pytest.raises(redis.ConnectionError):  # closed at once: no socket timeout
            client.incr("counter")

        assert upstream.client().get("counter") == "2"  # the command was applied
        deadline = time.monotonic() + 5
        while (counts := proxy.bytes_counted().get("downstream", (0, 0))) == before:
            assert time.monotonic() < deadline, "toxiproxy never counted the closed connection"
            time.sleep(0.01)
        received, sent = counts[0] - before[0], counts[1] - before[1]
        assert received - sent == len(b":2\r\n")  # the reply Redis sent, never delivered

        proxy.remove_toxics()
        assert client.incr("counter") == 3  # the retry, on a fresh connection


def test_remove_toxics_restores_fast_replies(proxy: Proxy) -> None:
    proxy.add_latency(1000)
    proxy.add_latency(1000, stream="upstream")

    proxy.remove_toxics()

    assert proxy.toxics() == []
    with direct(proxy) as client:
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started < 1.0


def test_heal_enables_the_proxy_and_removes_every_toxic(proxy: Proxy) -> None:
    proxy.add_reset_peer()
    proxy.disable()

    proxy.heal()

    assert proxy.is_enabled() is True
    assert proxy.toxics() == []
    with direct(proxy) as client:
        assert client.ping() is True


def test_enable_fails_loudly_when_the_port_was_taken_while_disabled(proxy: Proxy) -> None:
    proxy.disable()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", proxy.listen_port))
        squatter.listen()

        with pytest.raises(ToxiproxyError, match="address already in use") as raised:
            proxy.enable()

    assert raised.value.status == 500
    proxy.enable()  # the port is free again


def test_duplicate_proxy_and_toxic_names_raise_conflicts(
    toxiproxy: ToxiproxyServer, upstream: RedisServer, proxy: Proxy
) -> None:
    with pytest.raises(ToxiproxyError) as raised:
        toxiproxy.create_proxy(proxy.name, upstream.port)
    assert raised.value.status == 409

    proxy.add_latency(10)
    with pytest.raises(ToxiproxyError) as raised:
        proxy.add_latency(20)
    assert raised.value.status == 409


def test_two_servers_in_one_process_do_not_share_state(
    tmp_path: Path, toxiproxy: ToxiproxyServer, upstream: RedisServer, proxy: Proxy
) -> None:
    with ToxiproxyServer(tmp_path / "second") as second:
        other = second.create_proxy(proxy.name, upstream.port)  # no conflict: separate server
        other.disable()
        assert proxy.is_enabled() is True
        assert second.proxy(proxy.name).listen_port == other.listen_port

    started = time.monotonic()
    with pytest.raises(ToxiproxyError):
        other.enable()  # its server is gone: an error, at once
    assert time.monotonic() - started < 5.0


def test_missing_toxiproxy_binary_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))

    with pytest.raises(MissingBinaryError) as raised:
        ToxiproxyServer(tmp_path / "toxiproxy").start()

    assert raised.value.binary == "toxiproxy-server"
